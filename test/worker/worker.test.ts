/**
 * The Worker inside workerd (@cloudflare/vitest-pool-workers): the real fetch handler, the
 * kernel module imported as a compiled WebAssembly.Module, Durable Objects and R2.
 */
import { SELF, env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../worker/index.js";
import { seedRequest } from "../helpers.js";

const auth = { authorization: "Bearer worker-test-key" };
const post = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json", ...auth }, body: JSON.stringify(body) });

describe("the Worker in workerd", () => {
  it("healthz reports the workerd runtime and the SIMD kernels", async () => {
    const res = await SELF.fetch("http://edgetune.test/healthz");
    expect(await res.json()).toMatchObject({ status: "ok", kernel: "wasm-simd", runtime: "workerd" });
  });

  it("runs a sync fine-tune, stores the job in a Durable Object and the weights in R2", async () => {
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post(seedRequest(200, { training: { epochs: 5 } })));
    expect(res.status).toBe(200);
    const result = (await res.json()) as { id: string; status: string; weights: string; engine: { runtime: string }; metrics: { history: { train_loss: number }[] } };
    expect(result.status).toBe("succeeded");
    expect(result.engine.runtime).toBe("workerd");
    const h = result.metrics.history;
    expect(h.at(-1)!.train_loss).toBeLessThan(h[0]!.train_loss);

    const job = (await (await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${result.id}`, { headers: auth })).json()) as { status: string };
    expect(job.status).toBe("succeeded");
    const object = await env.BLOBS.get(`weights/${result.id}.safetensors`);
    expect(object).not.toBeNull();
    const stored = new Uint8Array(await object!.arrayBuffer());
    const downloaded = new Uint8Array(await (await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${result.id}/weights`, { headers: auth })).arrayBuffer());
    expect(downloaded).toEqual(stored);
    expect(btoa(String.fromCharCode(...stored))).toBe(result.weights);
  });

  it("lists the key's jobs from its Durable Object index", async () => {
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post(seedRequest(32, { training: { epochs: 1 } })));
    const { id } = (await res.json()) as { id: string };
    const list = (await (await SELF.fetch("http://edgetune.test/v1/fine-tunes?limit=100", { headers: auth })).json()) as { data: { id: string }[] };
    expect(list.data.map((j) => j.id)).toContain(id);
  });

  it("serves openapi.json without a key", async () => {
    const doc = (await (await SELF.fetch("http://edgetune.test/openapi.json")).json()) as { openapi: string };
    expect(doc.openapi).toBe("3.1.0");
  });

  it("answers bad requests with problem+json, never a 5xx", async () => {
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post({ model: { layers: [] }, data: {} }));
    expect(res.status).toBe(400);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    const unauthorized = await SELF.fetch("http://edgetune.test/v1/fine-tunes", { method: "POST", body: "{}" });
    expect(unauthorized.status).toBe(401);
  });

  it("the default export is a fetch handler (unit call)", async () => {
    const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;
    const res = await worker.fetch(new Request("http://edgetune.test/healthz"), env, ctx);
    expect(res.status).toBe(200);
  });
});
