import { describe, it, expect } from "vitest";
import { decodeBase64, encodeBase64 } from "../../../src/formats/base64.js";
import { RequestValidationError } from "../../../src/errors.js";

/** Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
function randomBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let state = seed | 1;
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out[i] = state & 255;
  }
  return out;
}

const oracle = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");

function decodeError(text: string, field?: string): RequestValidationError {
  try {
    decodeBase64(text, field);
  } catch (error) {
    expect(error).toBeInstanceOf(RequestValidationError);
    return error as RequestValidationError;
  }
  throw new Error(`decoding ${JSON.stringify(text)} did not throw`);
}

describe("encodeBase64 / decodeBase64", () => {
  for (let length = 0; length <= 10; length++) {
    it(`round-trips ${length} random bytes, matching Buffer`, () => {
      const bytes = randomBytes(length, 1000 + length);
      const text = encodeBase64(bytes);
      expect(text).toBe(oracle(bytes));
      expect([...decodeBase64(text)]).toEqual([...bytes]);
    });
  }

  it("matches Buffer on many random lengths and every byte value", () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(encodeBase64(all)).toBe(oracle(all));
    for (let seed = 1; seed <= 300; seed++) {
      const bytes = randomBytes((seed * 37) % 1000, seed);
      const text = encodeBase64(bytes);
      expect(text).toBe(oracle(bytes));
      expect(Buffer.from(decodeBase64(text)).equals(Buffer.from(bytes))).toBe(true);
    }
  });

  it("handles tens of MB (chunked encoding crosses chunk boundaries correctly)", () => {
    const bytes = randomBytes(12 * 1024 * 1024 + 1, 42);
    const text = encodeBase64(bytes);
    expect(text.length).toBe(oracle(bytes).length);
    expect(text === oracle(bytes)).toBe(true);
    const back = decodeBase64(text);
    expect(Buffer.from(back).equals(Buffer.from(bytes))).toBe(true);
  });

  describe("against a plain reference encoder (no tables, no chunks)", () => {
    /** RFC 4648 section 4 spelled out: 6 bits at a time from a bit accumulator, one character each. */
    function referenceEncode(bytes: Uint8Array): string {
      const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
      let text = "";
      let bits = 0;
      let count = 0;
      for (const byte of bytes) {
        bits = (bits << 8) | byte;
        count += 8;
        while (count >= 6) {
          count -= 6;
          text += alphabet[(bits >>> count) & 63];
        }
        bits &= (1 << count) - 1;
      }
      if (count > 0) text += alphabet[(bits << (6 - count)) & 63];
      while (text.length % 4 !== 0) text += "=";
      return text;
    }

    it("agrees for every length 0..70, at every alignment of the view", () => {
      for (let length = 0; length <= 70; length++) {
        for (let offset = 0; offset < 4; offset++) {
          const bytes = randomBytes(length + offset, 7 * length + offset + 1).subarray(offset);
          const text = encodeBase64(bytes);
          expect(text, `length ${length}, offset ${offset}`).toBe(referenceEncode(bytes));
          expect(decodeBase64(text), `length ${length}, offset ${offset}`).toEqual(bytes);
        }
      }
    });

    it("agrees around the chunk size (24,576 input bytes per chunk) and for 1 MB and 3 MB + 1", () => {
      const chunk = 24_576;
      const lengths = [chunk - 1, chunk, chunk + 1, chunk + 11, chunk + 12, 2 * chunk - 1, 2 * chunk, 2 * chunk + 2, 1 << 20, 3 * (1 << 20) + 1];
      for (const [k, length] of lengths.entries()) {
        const offset = k % 4; // unaligned views take the same big-endian reads
        const bytes = randomBytes(length + offset, 500 + k).subarray(offset);
        const text = encodeBase64(bytes);
        expect(text.length).toBe(Math.ceil(length / 3) * 4);
        expect(text === referenceEncode(bytes), `length ${length}`).toBe(true);
        expect(Buffer.from(decodeBase64(text)).equals(Buffer.from(bytes)), `length ${length}`).toBe(true);
      }
    });

    it("agrees on bytes that hit every 12-bit table entry and every tail", () => {
      // 4096 12-bit values packed two per 3 bytes, then 0, 1 and 2 leftover bytes
      const packed = new Uint8Array(4096 * 1.5);
      for (let v = 0; v < 4096; v += 2) {
        const triple = (v << 12) | (4095 - v);
        packed.set([triple >>> 16, (triple >>> 8) & 255, triple & 255], (v / 2) * 3);
      }
      for (const extra of [[], [0xff], [0xfe, 0x01]]) {
        const bytes = Uint8Array.from([...packed, ...extra]);
        expect(encodeBase64(bytes)).toBe(referenceEncode(bytes));
      }
    });
  });

  it("encodes a subarray view, not its whole buffer", () => {
    const backing = randomBytes(20, 9);
    const view = backing.subarray(5, 12);
    expect(encodeBase64(view)).toBe(oracle(view));
  });

  it("accepts missing padding", () => {
    expect([...decodeBase64("aGk")]).toEqual([104, 105]);
    expect([...decodeBase64("aA")]).toEqual([104]);
    expect([...decodeBase64("")]).toEqual([]);
  });

  it("ignores ASCII whitespace and line breaks anywhere", () => {
    const bytes = randomBytes(100, 5);
    const wrapped = oracle(bytes).replace(/.{1,10}/g, (m) => `${m}\r\n`) + "  \t";
    expect([...decodeBase64(` ${wrapped}`)]).toEqual([...bytes]);
  });

  it("accepts the URL-safe alphabet", () => {
    const bytes = Uint8Array.from([0xfb, 0xff, 0xbf, 0xfe]);
    const urlSafe = Buffer.from(bytes).toString("base64url");
    expect(urlSafe).toMatch(/[-_]/);
    expect([...decodeBase64(urlSafe)]).toEqual([...bytes]);
  });

  it("rejects an invalid character, naming the field and the offset", () => {
    const error = decodeError("aGk$aGk=", "weights");
    expect(error.errors).toEqual([{ path: "weights", message: expect.stringContaining("at offset 3") }]);
    expect(error.errors[0]!.message).toContain('"$"');
  });

  it("rejects non-ASCII characters", () => {
    const error = decodeError("aGké", "data.weights");
    expect(error.errors[0]!.path).toBe("data.weights");
    expect(error.errors[0]!.message).toContain("offset 3");
  });

  it("rejects an impossible length", () => {
    const error = decodeError("aGkab");
    expect(error.errors[0]!.path).toBe("weights");
    expect(error.errors[0]!.message).toMatch(/length/);
  });

  it("rejects padding in the middle and wrong padding counts", () => {
    expect(decodeError("aA==aA==").errors[0]!.message).toContain("offset 4");
    expect(decodeError("aA=").errors[0]!.message).toMatch(/padding/);
    expect(decodeError("aGk==").errors[0]!.message).toMatch(/padding/);
    expect(decodeError("aGlo=").errors[0]!.message).toMatch(/padding/);
  });
});
