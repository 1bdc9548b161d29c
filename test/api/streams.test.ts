/** MAX_STREAMS_PER_KEY on the Node app (the in-memory store), as test/worker/streams.test.ts in workerd. */
import { describe, expect, it } from "vitest";
import { seedRequest } from "../helpers.js";
import { testApp } from "./app.js";

describe("SSE streams per key (Node app)", () => {
  it("the stream past MAX_STREAMS_PER_KEY is a 429 too_many_streams with Retry-After; a cancelled one frees its slot", async () => {
    const { app } = await testApp({ apiKeys: ["k1"], streams: { maxPerKey: 1, leaseMs: 60_000 } });
    const headers = { authorization: "Bearer k1", "content-type": "application/json" };
    const created = await app.request("/v1/fine-tunes", { method: "POST", headers, body: JSON.stringify({ ...seedRequest(8, { training: { epochs: 2, batch_size: 4 } }), mode: "async", placement: "gpu-node" }) });
    expect(created.status).toBe(202);
    const { id } = (await created.json()) as { id: string };
    const first = await app.request(`/v1/fine-tunes/${id}/events`, { headers });
    expect(first.status).toBe(200);
    const reader = first.body!.getReader();
    await reader.read();
    const refused = await app.request(`/v1/fine-tunes/${id}/events`, { headers });
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBe("60");
    expect(((await refused.json()) as { code: string }).code).toBe("too_many_streams");
    await reader.cancel();
    const again = await app.request(`/v1/fine-tunes/${id}/events`, { headers });
    expect(again.status).toBe(200);
    await again.body!.cancel();
  });
});
