/**
 * limitedBytes (src/api/body.ts): a body with a Content-Length is read into one buffer of that
 * size (held once, not as chunks plus their concatenation), reserved only once
 * BODY_RESERVE_AFTER_BYTES have arrived; one that is shorter or longer than it declared still
 * comes back whole, and one over the limit is a 413 however it arrives.
 */
import { describe, expect, it } from "vitest";
import { BODY_RESERVE_AFTER_BYTES, limitedBytes } from "../../src/api/body.js";

/** A request whose body arrives in the given chunks, with an optional Content-Length. */
function chunked(chunks: Uint8Array[], contentLength?: number): Request {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of chunks) controller.enqueue(c);
      controller.close();
    },
  });
  const headers: Record<string, string> = contentLength === undefined ? {} : { "content-length": String(contentLength) };
  return new Request("http://x/", { method: "POST", body, headers, duplex: "half" } as RequestInit);
}

const bytes = (n: number, from = 0) => Uint8Array.from({ length: n }, (_, i) => (from + i) % 251);
const joined = (...parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => [...p]));

describe("limitedBytes", () => {
  it("reads a declared length into one buffer of that size", async () => {
    const parts = [bytes(5), bytes(64, 5), bytes(1, 69)];
    const out = await limitedBytes(chunked(parts, 70), 1000);
    expect(out).toEqual(joined(...parts));
    expect(out.buffer.byteLength).toBe(70); // one allocation, the body's size
  });

  it("a large declared length is reserved once BODY_RESERVE_AFTER_BYTES have arrived, then filled in place", async () => {
    const MiB = BODY_RESERVE_AFTER_BYTES;
    const parts = [bytes(MiB / 2), bytes(MiB / 2, 7), bytes(MiB, 3), bytes(5, 1)];
    const out = await limitedBytes(chunked(parts, 2 * MiB + 5), 4 * MiB);
    expect(out.buffer.byteLength).toBe(2 * MiB + 5);
    expect(out).toEqual(joined(...parts));
  });

  it("a client that declares much and sends little holds what it sent, not what it declared", async () => {
    const out = await limitedBytes(chunked([bytes(10)], 10 * BODY_RESERVE_AFTER_BYTES), 64 * BODY_RESERVE_AFTER_BYTES);
    expect(out).toEqual(bytes(10));
    expect(out.buffer.byteLength).toBe(10);
  });

  it("a body shorter than it declared: what arrived", async () => {
    expect(await limitedBytes(chunked([bytes(3), bytes(4, 3)], 10), 1000)).toEqual(bytes(7));
  });

  it("a body longer than it declared: all of it, in order", async () => {
    const parts = [bytes(4), bytes(5, 4), bytes(63, 9)];
    expect(await limitedBytes(chunked(parts, 6), 1000)).toEqual(joined(...parts));
  });

  it("without a length: the chunks joined", async () => {
    expect(await limitedBytes(chunked([bytes(1), bytes(65, 1)]), 1000)).toEqual(bytes(66));
  });

  it("past the limit: 413, with a short declared length too", async () => {
    await expect(limitedBytes(chunked([bytes(60), bytes(60, 60)], 64), 100)).rejects.toMatchObject({ status: 413 });
    await expect(limitedBytes(chunked([bytes(60), bytes(60, 60)]), 100)).rejects.toMatchObject({ status: 413 });
  });

  it("an empty body", async () => {
    expect(await limitedBytes(chunked([], 0), 100)).toEqual(new Uint8Array(0));
  });
});
