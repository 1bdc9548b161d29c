/**
 * readCreateBody's weightsBuffer (api/body.ts): a multipart `weights` file part is written into
 * the buffer the caller hands back once the part's safetensors header has arrived, sized from the
 * header, whatever the chunks the body arrives in; a part whose header cannot be sized so is held
 * in the heap as before.
 */
import { describe, expect, it } from "vitest";
import { readCreateBody } from "../../src/api/body.js";
import { writeSafetensors } from "../../src/formats/safetensors.js";

const checkpoint = writeSafetensors(
  [
    { name: "fc1.weight", shape: [10, 10], data: Float32Array.from({ length: 100 }, (_, i) => Math.sin(i)) },
    { name: "fc1.bias", shape: [10], data: new Float32Array(10) },
  ],
  { dtype: "float16", metadata: { format: "pt" } },
);

/**
 * The form's body as a request that delivers it `chunk` bytes at a time; `byteStream`: as a byte
 * stream (a socket's body in workerd and Node is one), whose readers the body's reader asks
 * for are recorded in `modes`.
 */
async function chunkedRequest(weights: Uint8Array, chunk: number, byteStream?: { modes: (string | undefined)[] }): Promise<Request> {
  const form = new FormData();
  form.set("request", JSON.stringify({ model: { layers: [{ type: "linear", in_features: 10, out_features: 10 }] } }));
  form.set("weights", new Blob([weights as Uint8Array<ArrayBuffer>]), "model.safetensors");
  const res = new Response(form);
  const bytes = new Uint8Array(await res.arrayBuffer());
  let at = 0;
  const pull = (c: ReadableStreamDefaultController<Uint8Array> | ReadableByteStreamController) => {
    if (at >= bytes.length) return c.close();
    c.enqueue(bytes.slice(at, (at += chunk)));
  };
  const body = byteStream ? new ReadableStream({ type: "bytes", pull }) : new ReadableStream<Uint8Array>({ pull });
  if (byteStream) {
    const getReader = body.getReader.bind(body) as (options?: { mode?: "byob" }) => ReadableStreamReader<Uint8Array>;
    Object.assign(body, { getReader: (options?: { mode?: "byob" }) => (byteStream.modes.push(options?.mode), getReader(options)) });
  }
  return new Request("http://x/v1/fine-tunes", { method: "POST", body, headers: { "content-type": res.headers.get("content-type")! }, duplex: "half" } as RequestInit);
}

describe("readCreateBody's weightsBuffer", () => {
  for (const chunk of [1, 7, 64, 65536]) {
    it(`stages a weights file part arriving ${chunk} bytes at a time into the buffer it is given, sized from its header`, async () => {
      const calls: [number, number][] = [];
      let given: Uint8Array | null = null;
      const body = await readCreateBody(await chunkedRequest(checkpoint, chunk), 1 << 20, undefined, {
        weightsBuffer: (bytes, dataStart) => {
          calls.push([bytes, dataStart]);
          given = new Uint8Array(new ArrayBuffer(bytes + 48), 16, bytes);
          return given;
        },
      });
      const dataStart = 8 + Number(new DataView(checkpoint.buffer).getBigUint64(0, true));
      expect(calls).toEqual([[checkpoint.length, dataStart]]);
      const weights = body.request.weights as Uint8Array;
      expect(weights.buffer).toBe(given!.buffer);
      expect(Buffer.compare(weights, checkpoint)).toBe(0);
      expect(body.stagedBytes).toBe(checkpoint.length);
      expect(body.bodyBytes).toBeGreaterThan(checkpoint.length);
    });
  }

  for (const chunk of [1, 7, 65536, 300_000]) {
    it(`reads a byte stream arriving ${chunk} bytes at a time into one reused buffer (a BYOB reader), and stages the same bytes`, async () => {
      const modes: (string | undefined)[] = [];
      let given: Uint8Array | null = null;
      const body = await readCreateBody(await chunkedRequest(checkpoint, chunk, { modes }), 1 << 20, undefined, {
        weightsBuffer: (bytes) => (given = new Uint8Array(bytes)),
      });
      // one buffer for the whole body: its chunks are no garbage left for V8 to find (BENCHMARKS.md, the lora row)
      expect(modes).toEqual(["byob"]);
      expect((body.request.weights as Uint8Array).buffer).toBe(given!.buffer);
      expect(Buffer.compare(body.request.weights as Uint8Array, checkpoint)).toBe(0);
      expect(body.request.model).toEqual({ layers: [{ type: "linear", in_features: 10, out_features: 10 }] });
    });
  }

  it("holds a part in the heap when its header cannot be sized (the parser judges it later)", async () => {
    const bad = Uint8Array.from([...new Uint8Array(new BigUint64Array([5n]).buffer), ...new TextEncoder().encode("nope!"), 1, 2, 3]);
    let called = false;
    const body = await readCreateBody(await chunkedRequest(bad, 3), 1 << 20, undefined, {
      weightsBuffer: (bytes) => {
        called = true;
        return new Uint8Array(bytes);
      },
    });
    expect(called).toBe(false);
    expect([...(body.request.weights as Uint8Array)]).toEqual([...bad]);
    expect(body.stagedBytes).toBe(0);
  });
});
