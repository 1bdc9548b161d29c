/**
 * Quotas and retention over the in-process store (the same contract as the Durable Objects,
 * which test/worker/quotas.test.ts checks inside workerd): active jobs and stored bytes per key,
 * expiry of ended jobs, DELETE, and the list's status filter.
 */
import { describe, expect, it } from "vitest";
import { runClaimedJob } from "../../src/jobs/runner.js";
import { seedRequest } from "../helpers.js";
import { testApp } from "./app.js";

const KEY = "quota-key";
const auth = { authorization: `Bearer ${KEY}` };
const json = (body: unknown, method = "POST") => ({ method, headers: { "content-type": "application/json", ...auth }, body: JSON.stringify(body) });

type App = Awaited<ReturnType<typeof testApp>>;
const create = (t: App, mode: "sync" | "async", placement: "edge" | "gpu-node" = "gpu-node") =>
  t.app.request("/v1/fine-tunes", json({ ...seedRequest(8, { training: { epochs: 2, batch_size: 4 } }), mode, ...(mode === "async" ? { placement } : {}) }));
const idOf = async (res: Response) => ((await res.json()) as { id: string }).id;
const get = (t: App, path: string, init: RequestInit = {}) => t.app.request(path, { ...init, headers: auth });

describe("MAX_ACTIVE_JOBS_PER_KEY", () => {
  it("over it a create answers 429 too_many_active_jobs with Retry-After; sync runs and other keys are not counted; a slot frees when a job ends", async () => {
    const t = await testApp({ apiKeys: [KEY, "other-key"], quotas: { maxActiveJobs: 2, maxStoredBytes: null } });
    const first = await idOf(await create(t, "async"));
    await create(t, "async");
    const refused = await create(t, "async");
    expect(refused.status).toBe(429);
    expect(refused.headers.get("content-type")).toBe("application/problem+json");
    expect(refused.headers.get("retry-after")).toBe("30");
    const body = (await refused.json()) as { code: string; detail: string };
    expect(body.code).toBe("too_many_active_jobs");
    expect(body.detail).toMatch(/MAX_ACTIVE_JOBS_PER_KEY=2/);
    // the refused create stored nothing: still two jobs
    expect(((await (await get(t, "/v1/fine-tunes")).json()) as { data: unknown[] }).data).toHaveLength(2);
    expect(await t.store.usage(await ownerOf(KEY))).toMatchObject({ activeJobs: 2 });

    // sync jobs are not queued, so not counted; another key has its own slots
    expect((await create(t, "sync")).status).toBe(200);
    const other = await t.app.request("/v1/fine-tunes", { ...json({ ...seedRequest(8), mode: "async", placement: "gpu-node" }), headers: { "content-type": "application/json", authorization: "Bearer other-key" } });
    expect(other.status).toBe(202);

    expect((await get(t, `/v1/fine-tunes/${first}/cancel`, { method: "POST" })).status).toBe(200);
    expect((await create(t, "async")).status).toBe(202);
    expect((await create(t, "async")).status).toBe(429);
  });

  it("an Idempotency-Key retry of an admitted create replays it rather than being refused", async () => {
    const t = await testApp({ apiKeys: [KEY], quotas: { maxActiveJobs: 1, maxStoredBytes: null } });
    const body = json({ ...seedRequest(8), mode: "async", placement: "gpu-node" });
    const withKey = { ...body, headers: { ...body.headers, "idempotency-key": "once" } };
    const a = await t.app.request("/v1/fine-tunes", withKey);
    const b = await t.app.request("/v1/fine-tunes", withKey);
    expect([a.status, b.status]).toEqual([202, 202]);
    expect(b.headers.get("idempotent-replayed")).toBe("true");
    expect(await idOf(b)).toBe(await idOf(a));
  });
});

describe("MAX_STORED_BYTES_PER_KEY", () => {
  it("a create past the limit answers 429 storage_quota_exceeded; DELETE of an ended job frees its bytes", async () => {
    const t = await testApp({ apiKeys: [KEY], quotas: { maxActiveJobs: 8, maxStoredBytes: 1 } });
    const refused = await create(t, "sync");
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { code: string }).code).toBe("storage_quota_exceeded");

    // room for exactly one job: its input plus its weights
    const probe = await testApp({ apiKeys: [KEY] });
    await create(probe, "sync");
    const oneJob = (await probe.store.usage(await ownerOf(KEY))).storedBytes;
    expect(oneJob).toBeGreaterThan(121 * 4); // the input, and 121 parameters as float32
    const u = await testApp({ apiKeys: [KEY], quotas: { maxActiveJobs: 8, maxStoredBytes: oneJob } });
    const kept = await idOf(await create(u, "sync"));
    expect((await create(u, "sync")).status).toBe(429);

    const deleted = await get(u, `/v1/fine-tunes/${kept}`, { method: "DELETE" });
    expect(deleted.status).toBe(204);
    expect((await get(u, `/v1/fine-tunes/${kept}`)).status).toBe(404);
    expect(u.store.storedCounts()).toMatchObject({ jobs: 0, blobs: 0, admitted: 0 });
    expect((await create(u, "sync")).status).toBe(200);
  });

  it("DELETE refuses a job that has not ended (409 job_active) and another key's job (404)", async () => {
    const t = await testApp({ apiKeys: [KEY, "other-key"] });
    const queued = await idOf(await create(t, "async"));
    const res = await get(t, `/v1/fine-tunes/${queued}`, { method: "DELETE" });
    expect(res.status).toBe(409);
    expect(((await res.json()) as { code: string }).code).toBe("job_active");
    const foreign = await t.app.request(`/v1/fine-tunes/${queued}`, { method: "DELETE", headers: { authorization: "Bearer other-key" } });
    expect(foreign.status).toBe(404);
  });
});

describe("JOB_TTL_DAYS: ended jobs expire", () => {
  it("an ended job is deleted with its input, weights and logs once its time to live has passed; a running one never is", async () => {
    const ttl = 60_000;
    const t = await testApp({ apiKeys: [KEY], jobTtlMs: ttl });
    const syncId = await idOf(await create(t, "sync"));
    const asyncId = await idOf(await create(t, "async", "edge"));
    const claim = (await t.store.takeEdgeJob("consumer"))!;
    expect(await runClaimedJob(t.store.channel, claim, t.runtime, { placement: "edge" })).toBe("completed");
    const queued = await idOf(await create(t, "async", "gpu-node"));
    expect(t.store.storedCounts()).toMatchObject({ jobs: 3, blobs: 5 }); // 3 inputs, 2 weights

    await t.store.tick(Date.now() + ttl / 2);
    expect((await get(t, `/v1/fine-tunes/${syncId}`)).status).toBe(200);
    await t.store.tick(Date.now() + ttl + 1000);
    for (const id of [syncId, asyncId]) expect((await get(t, `/v1/fine-tunes/${id}`)).status).toBe(404);
    expect((await get(t, `/v1/fine-tunes/${queued}`)).status).toBe(200);
    expect(t.store.storedCounts()).toMatchObject({ jobs: 1, blobs: 1, logs: 2, admitted: 1 });
    expect(((await (await get(t, "/v1/fine-tunes")).json()) as { data: { id: string }[] }).data.map((j) => j.id)).toEqual([queued]);
  });

  it("storage stays flat over many create/expire cycles", async () => {
    const ttl = 1000;
    const t = await testApp({ apiKeys: [KEY], jobTtlMs: ttl });
    const empty = t.store.storedCounts();
    const owner = await ownerOf(KEY);
    for (let cycle = 0; cycle < 20; cycle++) {
      const idem = { ...json({ ...seedRequest(8, { training: { epochs: 1, batch_size: 8 } }), mode: "sync" }) };
      expect((await t.app.request("/v1/fine-tunes", { ...idem, headers: { ...idem.headers, "idempotency-key": `k-${cycle}` } })).status).toBe(200);
      expect((await create(t, "async", "edge")).status).toBe(202);
      const claim = (await t.store.takeEdgeJob("consumer"))!;
      await runClaimedJob(t.store.channel, claim, t.runtime, { placement: "edge" });
      const cancelled = await idOf(await create(t, "async", "gpu-node"));
      await get(t, `/v1/fine-tunes/${cancelled}/cancel`, { method: "POST" });
      expect(t.store.storedCounts().jobs).toBe(3);
      await t.store.tick(Date.now() + ttl + 1000);
      expect(t.store.storedCounts()).toEqual(empty);
      expect(await t.store.usage(owner)).toEqual({ activeJobs: 0, storedBytes: 0 });
    }
  });
});

describe("GET /v1/fine-tunes?status=", () => {
  it("filters by one or more states; an unknown state is a 400 naming status", async () => {
    const t = await testApp({ apiKeys: [KEY] });
    const done = await idOf(await create(t, "sync"));
    const queued = await idOf(await create(t, "async"));
    const cancelled = await idOf(await create(t, "async"));
    await get(t, `/v1/fine-tunes/${cancelled}/cancel`, { method: "POST" });
    const ids = async (query: string) => ((await (await get(t, `/v1/fine-tunes?${query}`)).json()) as { data: { id: string }[] }).data.map((j) => j.id);
    expect(await ids("status=succeeded")).toEqual([done]);
    expect(await ids("status=queued")).toEqual([queued]);
    expect(await ids("status=queued,cancelled")).toEqual([cancelled, queued]);
    expect(await ids("status=running")).toEqual([]);
    expect(await ids("")).toEqual([cancelled, queued, done]);
    const bad = await get(t, "/v1/fine-tunes?status=done");
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe("status");
  });
});

describe("webhook on a create", () => {
  const body = (url: string) => json({ ...seedRequest(8), mode: "sync", webhook: { url } });
  it("without a webhook secret the create answers 503 webhooks_not_configured (nothing would deliver it)", async () => {
    const t = await testApp({ apiKeys: [KEY] });
    const res = await t.app.request("/v1/fine-tunes", body("https://example.com/hook"));
    expect(res.status).toBe(503);
    expect(((await res.json()) as { code: string }).code).toBe("webhooks_not_configured");
    expect(t.store.storedCounts().jobs).toBe(0);
  });

  it("with one, a private URL is a 400 naming webhook.url, and a public one is kept on the job", async () => {
    const t = await testApp({ apiKeys: [KEY], webhooks: { key: new Uint8Array(32), allowLocal: false } });
    const bad = await t.app.request("/v1/fine-tunes", body("https://169.254.169.254/latest/meta-data"));
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe("webhook.url");
    const ok = await t.app.request("/v1/fine-tunes", body("https://example.com/hook"));
    expect(ok.status).toBe(200);
    const job = (await (await get(t, `/v1/fine-tunes/${await idOf(ok)}`)).json()) as { webhook: { url: string } };
    expect(job.webhook).toEqual({ url: "https://example.com/hook" });
  });
});

/** The owner of a key, as the API stores it (SHA-256 of the key, hex). */
async function ownerOf(key: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}
