/** A body that trickles, or stops, gets a 408 at the read deadline (issue 21, finding 6). */
import { describe, expect, it } from "vitest";
import { BODY_READ_TIMEOUT_MS, readCreateBody } from "../../src/api/body.js";
import { EdgetuneError } from "../../src/errors.js";

/** A request whose body sends its first bytes and then nothing more, never ending. */
function stalled(contentType: string): { request: Request; cancelled: Promise<void> } {
  let onCancel!: () => void;
  const cancelled = new Promise<void>((resolve) => (onCancel = resolve));
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode('{"model": '));
    },
    cancel() {
      onCancel();
    },
  });
  return { request: new Request("http://x.test/v1/fine-tunes", { method: "POST", headers: { "content-type": contentType }, body, duplex: "half" } as RequestInit), cancelled };
}

describe("the body read deadline", () => {
  it.each(["application/json", "multipart/form-data; boundary=x"])("%s: a stalled body -> 408 body_timeout, and the stream is cancelled", async (type) => {
    const { request, cancelled } = stalled(type);
    const error = await readCreateBody(request, 1 << 20, 50).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EdgetuneError);
    expect(error).toMatchObject({ status: 408, code: "body_timeout", errors: [{ path: "(body)" }] });
    await cancelled; // the connection's stream is let go, not left open
  });
  it("the deployed deadline is 30 s", () => {
    expect(BODY_READ_TIMEOUT_MS).toBe(30_000);
  });
  it("a body that arrives in time is read as before", async () => {
    const request = new Request("http://x.test/v1/fine-tunes", { method: "POST", headers: { "content-type": "application/json" }, body: '{"model": {"layers": []}, "data": {}}' });
    const { request: parsed } = await readCreateBody(request, 1 << 20, 50);
    expect(parsed).toEqual({ model: { layers: [] }, data: {} });
  });
});
