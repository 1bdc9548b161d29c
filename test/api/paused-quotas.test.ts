/**
 * Paused jobs and the key's quotas through the app and the in-process store (issue 16, quotas
 * and retention): a paused job does not count as active, resuming it counts it again (429 when
 * the key has no room), and it expires JOB_TTL_DAYS after it was paused.
 */
import { describe, expect, it } from "vitest";
import { seedRequest } from "../helpers.js";
import { testApp } from "./app.js";

const gpuJob = () => ({ ...seedRequest(8, { training: { epochs: 2, batch_size: 4 } }), mode: "async", placement: "gpu-node" });
const post = (body: unknown = {}) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

describe("paused jobs and quotas (in-process store)", () => {
  it("a paused job frees its active slot; its resume is refused with 429 while the key has none", async () => {
    const { app, store } = await testApp({ quotas: { maxActiveJobs: 1, maxStoredBytes: null } });
    const a = ((await (await app.request("/v1/fine-tunes", post(gpuJob()))).json()) as { id: string }).id;
    expect((await app.request("/v1/fine-tunes", post(gpuJob()))).status).toBe(429);
    expect(((await (await app.request(`/v1/fine-tunes/${a}/pause`, post())).json()) as { status: string }).status).toBe("paused");
    expect((await store.usage("")).activeJobs).toBe(0);

    const b = await app.request("/v1/fine-tunes", post(gpuJob()));
    expect(b.status).toBe(202);
    const refused = await app.request(`/v1/fine-tunes/${a}/resume`, post());
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { code: string }).code).toBe("too_many_active_jobs");
    expect(((await (await app.request(`/v1/fine-tunes/${a}`)).json()) as { status: string }).status).toBe("paused");

    await app.request(`/v1/fine-tunes/${((await b.json()) as { id: string }).id}/cancel`, post());
    expect((await app.request(`/v1/fine-tunes/${a}/resume`, post())).status).toBe(200);
    expect((await store.usage("")).activeJobs).toBe(1);
  });

  it("a paused job expires JOB_TTL_DAYS after it was paused; a queued one never does", async () => {
    const ttl = 60_000;
    const { app, store } = await testApp({ jobTtlMs: ttl });
    const paused = ((await (await app.request("/v1/fine-tunes", post(gpuJob()))).json()) as { id: string }).id;
    const queued = ((await (await app.request("/v1/fine-tunes", post(gpuJob()))).json()) as { id: string }).id;
    await app.request(`/v1/fine-tunes/${paused}/pause`, post());
    await store.tick(Date.now() + ttl / 2);
    expect((await app.request(`/v1/fine-tunes/${paused}`)).status).toBe(200);
    await store.tick(Date.now() + ttl + 1000);
    expect((await app.request(`/v1/fine-tunes/${paused}`)).status).toBe(404);
    expect(await store.getInput(paused)).toBeNull();
    expect((await app.request(`/v1/fine-tunes/${queued}`)).status).toBe(200);
  });
});
