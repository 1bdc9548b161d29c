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
