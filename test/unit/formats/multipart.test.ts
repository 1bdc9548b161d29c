import { describe, expect, it } from "vitest";
import { multipartBoundary, readMultipartStream, type ChunkReader, type MultipartPartHeaders } from "../../../src/formats/multipart.js";
import { RequestValidationError } from "../../../src/errors.js";

/**
 * A reader that hands out `bytes` cut at the given offsets; `reuse`: every chunk in one buffer,
 * overwritten (with 0xee first) on each read, as a BYOB reader's one buffer is filled again.
 */
function readerOf(bytes: Uint8Array, cuts: number[] = [], reuse = false): ChunkReader {
  const bounds = [0, ...cuts.filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b), bytes.length];
  const one = new Uint8Array(bytes.length);
  let i = 0;
  return {
    async read() {
      if (i >= bounds.length - 1) return { done: true };
      const chunk = bytes.subarray(bounds[i]!, bounds[i + 1]!);
      i++;
      if (!reuse) return { done: false, value: chunk.slice() };
      one.fill(0xee);
      one.set(chunk, 0);
      return { done: false, value: one.subarray(0, chunk.length) };
    },
  };
}

interface Part extends MultipartPartHeaders {
  bytes: Uint8Array;
  writes: number;
}

async function parts(bytes: Uint8Array, boundary: string, cuts: number[] = [], reuse = false): Promise<Part[]> {
  const out: Part[] = [];
  await readMultipartStream(readerOf(bytes, cuts, reuse), boundary, (headers) => {
    const chunks: Uint8Array[] = [];
    const part: Part = { ...headers, bytes: new Uint8Array(0), writes: 0 };
    return {
      write: (c) => {
        chunks.push(c.slice());
        part.writes++;
      },
      end: () => {
        const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
        let at = 0;
        for (const c of chunks) all.set(c, (at += c.length) - c.length);
        part.bytes = all;
        out.push(part);
      },
    };
  });
  return out;
}

/** A body as FormData writes it (the platform's own encoder), its boundary and the parts' contents. */
async function formBody(): Promise<{ bytes: Uint8Array; boundary: string; binary: Uint8Array }> {
  const binary = new Uint8Array(300);
  for (let i = 0; i < binary.length; i++) binary[i] = (i * 37 + 11) & 0xff;
  // bytes that look like the start of a delimiter inside the content
  binary.set(new TextEncoder().encode("\r\n--\r\n-"), 100);
  const form = new FormData();
  form.set("request", '{"mode":"sync"}');
  form.set("weights", new Blob([binary], { type: "application/octet-stream" }), "model.safetensors");
  form.set("empty", new Blob([]), "empty.csv");
  const res = new Response(form);
  const type = res.headers.get("content-type")!;
  return { bytes: new Uint8Array(await res.arrayBuffer()), boundary: multipartBoundary(type), binary };
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe("readMultipartStream", () => {
  it("reads FormData's own encoding: names, file names, content types and bytes", async () => {
    const { bytes, boundary, binary } = await formBody();
    const got = await parts(bytes, boundary);
    expect(got.map((p) => p.name)).toEqual(["request", "weights", "empty"]);
    expect(text(got[0]!.bytes)).toBe('{"mode":"sync"}');
    expect(got[0]!.filename).toBeNull();
    expect(got[1]!.filename).toBe("model.safetensors");
    expect(got[1]!.contentType).toBe("application/octet-stream");
    expect([...got[1]!.bytes]).toEqual([...binary]);
    expect(got[2]!.bytes.length).toBe(0);
  });

  it("gives the same parts whatever offset the body is cut at, once or byte by byte", async () => {
    const { bytes, boundary } = await formBody();
    const whole = await parts(bytes, boundary);
    for (let cut = 1; cut < bytes.length; cut++) {
      const got = await parts(bytes, boundary, [cut]);
      expect(got.map((p) => [p.name, p.filename, p.contentType, [...p.bytes]]), `cut at ${cut}`).toEqual(
        whole.map((p) => [p.name, p.filename, p.contentType, [...p.bytes]]),
      );
    }
    const bytewise = await parts(bytes, boundary, Array.from({ length: bytes.length }, (_, i) => i));
    expect(bytewise.map((p) => [...p.bytes])).toEqual(whole.map((p) => [...p.bytes]));
    // a large part is written as it arrives, not once at its end
    expect(bytewise[1]!.writes).toBeGreaterThan(100);
  });

  it("gives the same parts when the reader fills one buffer again for every chunk (a BYOB reader)", async () => {
    const { bytes, boundary } = await formBody();
    const whole = await parts(bytes, boundary);
    const shape = (ps: Part[]) => ps.map((p) => [p.name, p.filename, p.contentType, [...p.bytes]]);
    for (const size of [1, 2, 3, 5, 7, 16, 61, 64, 100]) {
      const cuts = Array.from({ length: Math.ceil(bytes.length / size) }, (_, i) => i * size);
      expect(shape(await parts(bytes, boundary, cuts, true)), `chunks of ${size}`).toEqual(shape(whole));
    }
    for (let cut = 1; cut < bytes.length; cut += 3) expect(shape(await parts(bytes, boundary, [cut], true)), `cut at ${cut}`).toEqual(shape(whole));
  });

  it("reads a preamble, transport padding, quoted names and a part without Content-Type", async () => {
    const body = [
      "preamble line\r\n",
      "--b1 \t\r\n",
      'Content-Disposition: form-data; name="a;b"; filename="x\\"y.csv"\r\n',
      "\r\n",
      "one,two\r\n",
      "--b1\r\n",
      "content-disposition: FORM-DATA; name=plain\r\n",
      "\r\n",
      "v\r\n",
      "--b1--\r\nepilogue",
    ].join("");
    const got = await parts(new TextEncoder().encode(body), "b1");
    expect(got.map((p) => [p.name, p.filename, p.contentType, text(p.bytes)])).toEqual([
      ["a;b", 'x"y.csv', null, "one,two"],
      ["plain", null, null, "v"],
    ]);
  });

  const bad: [string, string][] = [
    ["no delimiter", "hello"],
    ["ends inside a part", '--b1\r\nContent-Disposition: form-data; name="a"\r\n\r\nvalue'],
    ["ends inside the headers", '--b1\r\nContent-Disposition: form-data; name="a"\r\n'],
    ["no Content-Disposition", "--b1\r\nContent-Type: text/plain\r\n\r\nv\r\n--b1--"],
    ["not form-data", '--b1\r\nContent-Disposition: attachment; name="a"\r\n\r\nv\r\n--b1--'],
    ["no name", "--b1\r\nContent-Disposition: form-data\r\n\r\nv\r\n--b1--"],
    ["text after the delimiter", '--b1junk\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n--b1--'],
    ["a header line without a colon", "--b1\r\nnonsense\r\n\r\nv\r\n--b1--"],
    ["empty body", ""],
  ];
  for (const [why, body] of bad) {
    it(`refuses a body with ${why}: 400 naming (body)`, async () => {
      const error = await parts(new TextEncoder().encode(body), "b1").catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RequestValidationError);
      expect((error as RequestValidationError).status).toBe(400);
      expect((error as RequestValidationError).errors[0]!.path).toBe("(body)");
      expect((error as RequestValidationError).errors[0]!.message).toMatch(/is not valid multipart\/form-data/);
    });
  }

  it("refuses a header block over maxHeaderBytes", async () => {
    const body = `--b1\r\nContent-Disposition: form-data; name="a"\r\nX-Pad: ${"p".repeat(2000)}\r\n\r\nv\r\n--b1--`;
    await expect(readMultipartStream(readerOf(new TextEncoder().encode(body), [100, 600]), "b1", () => ({ write() {}, end() {} }), { maxHeaderBytes: 1024 })).rejects.toThrow(
      /headers are longer than 1024 bytes/,
    );
  });
});

describe("multipartBoundary", () => {
  it("reads quoted and plain boundaries and refuses a missing one (400 naming content-type)", () => {
    expect(multipartBoundary("multipart/form-data; boundary=abc")).toBe("abc");
    expect(multipartBoundary('multipart/form-data; charset=utf-8; boundary="a b;c"')).toBe("a b;c");
    for (const type of ["multipart/form-data", "multipart/form-data; boundary=", `multipart/form-data; boundary=${"x".repeat(71)}`]) {
      let error: unknown;
      try {
        multipartBoundary(type);
      } catch (e) {
        error = e;
      }
      expect((error as RequestValidationError).errors[0]!.path).toBe("content-type");
    }
  });
});
