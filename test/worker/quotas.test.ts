/**
 * Quotas and retention inside workerd: the real Worker, its Durable Objects, R2 and Queue,
 * called with vars of the test's own (a short JOB_TTL_SECONDS, small quotas).
 */
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../worker/index.js";
import { seedRequest } from "../helpers.js";
import { ownerIndex } from "./owner-index.js";

const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;

type Vars = Partial<Record<"MAX_ACTIVE_JOBS_PER_KEY" | "MAX_STORED_BYTES_PER_KEY" | "JOB_TTL_SECONDS" | "JOB_TTL_DAYS" | "RATE_LIMIT_PER_MINUTE", string>>;

/** The test env with its own key, `key`, and `vars`. */
const envWith = (key: string, vars: Vars = {}) => ({ ...env, EDGETUNE_API_KEYS: key, ...vars }) as Env;

function client(key: string, vars: Vars = {}) {
  const e = envWith(key, vars);
  const call = (path: string, init: RequestInit = {}) =>
    worker.fetch(new Request(`http://edgetune.test${path}`, { ...init, headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...init.headers } }), e, ctx);
  const create = (mode: "sync" | "async", placement: "edge" | "gpu-node" = "gpu-node", headers: Record<string, string> = {}) =>
    call("/v1/fine-tunes", { method: "POST", headers, body: JSON.stringify({ ...seedRequest(8, { training: { epochs: 2, batch_size: 4 } }), mode, ...(mode === "async" ? { placement } : {}) }) });
  return { call, create };
}

const idOf = async (res: Response) => ((await res.json()) as { id: string }).id;

/** Polls `done` until it holds; 60 s at most (an edge job may wait behind another test file's long one in the queue). */
async function waitFor(what: string, done: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (await done()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("quotas in workerd", () => {
  it("MAX_ACTIVE_JOBS_PER_KEY: the third queued job of a key with 2 is refused with 429 too_many_active_jobs and Retry-After", async () => {
    const { call, create } = client("active-key", { MAX_ACTIVE_JOBS_PER_KEY: "2" });
    const first = await create("async");
    expect(first.status).toBe(202);
    const firstId = await idOf(first);
    expect((await create("async")).status).toBe(202);
    const refused = await create("async");
    expect(refused.status).toBe(429);
    expect(refused.headers.get("content-type")).toBe("application/problem+json");
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(((await refused.json()) as { code: string }).code).toBe("too_many_active_jobs");
    expect((await create("sync")).status).toBe(200); // sync runs are not queued jobs

    // a job that ends frees its slot (the index learns it from the job's own object)
    expect((await call(`/v1/fine-tunes/${firstId}/cancel`, { method: "POST" })).status).toBe(200);
    const third = await create("async");
    expect(third.status).toBe(202);
    expect((await create("async")).status).toBe(429);
    for (const res of [await call("/v1/fine-tunes?status=queued")]) {
      const queued = ((await res.json()) as { data: { id: string }[] }).data;
      expect(queued).toHaveLength(2);
      for (const { id } of queued) await call(`/v1/fine-tunes/${id}/cancel`, { method: "POST" });
    }
  });

  it("MAX_STORED_BYTES_PER_KEY: a create past it is refused with 429 storage_quota_exceeded; DELETE frees the bytes", async () => {
    const probe = client("bytes-probe-key");
    await probe.create("sync");
    const oneJob = await (await ownerIndex("bytes-probe-key")).usage();
    expect(oneJob.storedBytes).toBeGreaterThan(0);

    const { call, create } = client("bytes-key", { MAX_STORED_BYTES_PER_KEY: String(oneJob.storedBytes) });
    const kept = await idOf(await create("sync"));
    const refused = await create("sync");
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { code: string }).code).toBe("storage_quota_exceeded");
    expect((await call(`/v1/fine-tunes/${kept}`, { method: "DELETE" })).status).toBe(204);
    expect((await call(`/v1/fine-tunes/${kept}`)).status).toBe(404);
    expect((await env.BLOBS.list({ prefix: `inputs/${kept}` })).objects).toHaveLength(0);
    expect((await env.BLOBS.list({ prefix: `weights/${kept}` })).objects).toHaveLength(0);
    expect((await create("sync")).status).toBe(200);
  });

  it("GET /v1/fine-tunes?status= filters, pages with a cursor, and refuses an unknown state naming status", async () => {
    const { call, create } = client("status-key");
    const queued: string[] = [];
    for (let i = 0; i < 3; i++) {
      queued.unshift(await idOf(await create("async")));
      await create("sync");
      await create("sync");
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res = await call(`/v1/fine-tunes?status=queued&limit=1${cursor ? `&cursor=${cursor}` : ""}`);
      const page = (await res.json()) as { data: { id: string; status: string }[]; next_cursor: string | null };
      for (const j of page.data) {
        expect(j.status).toBe("queued");
        seen.push(j.id);
      }
      cursor = page.next_cursor;
    } while (cursor !== null);
    expect(seen).toEqual(queued);
    const succeeded = ((await (await call("/v1/fine-tunes?status=succeeded,cancelled&limit=100")).json()) as { data: { status: string }[] }).data;
    expect(succeeded.map((j) => j.status)).toEqual(Array(6).fill("succeeded"));
    const bad = await call("/v1/fine-tunes?status=finished");
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe("status");
    for (const id of queued) await call(`/v1/fine-tunes/${id}/cancel`, { method: "POST" });
  });
});

describe("expiry in workerd (JOB_TTL_SECONDS for tests; JOB_TTL_DAYS deployed)", () => {
  it("an ended job's alarm deletes its record, logs, input, weights and listing; storage stays flat over many create/expire cycles", async () => {
    const key = "expiry-key";
    // the polls below are many requests for one key: not what this test is about. The time to
    // live is long enough that an ended job's weights are still there when the test looks at them
    // (at 50 ms its alarm could delete them between the poll that saw it succeed and the look)
    const { call, create } = client(key, { JOB_TTL_SECONDS: "1", RATE_LIMIT_PER_MINUTE: "0" });
    const index = await ownerIndex(key);
    const indexKeys = () => runInDurableObject(index, async (_i, state) => [...(await state.storage.list()).keys()].sort());
    const blobCount = async () => (await env.BLOBS.list()).objects.length;

    const sizes: { blobs: number; indexKeys: string[] }[] = [];
    for (let cycle = 0; cycle < 8; cycle++) {
      const ids = [
        await idOf(await create("sync", "edge", { "idempotency-key": `cycle-${cycle}` })),
        await idOf(await create("async", "edge")),
        await idOf(await create("async", "gpu-node")),
      ];
      await call(`/v1/fine-tunes/${ids[2]}/cancel`, { method: "POST" });
      await waitFor("the async edge job to end", async () => ((await (await call(`/v1/fine-tunes/${ids[1]}`)).json()) as { status: string }).status === "succeeded");
      expect((await env.BLOBS.list({ prefix: `weights/${ids[1]}/` })).objects).toHaveLength(1);
      // every job has ended: each alarm (also run here, in case the runtime has not yet) deletes it
      for (const id of ids) {
        const stub = env.JOBS.get(env.JOBS.idFromName(id));
        await waitFor(`${id} to expire`, async () => {
          await runDurableObjectAlarm(stub);
          return (await call(`/v1/fine-tunes/${id}`)).status === 404;
        });
        const left = await runInDurableObject(stub, async (_i, state) => ({
          keys: (await state.storage.list()).size,
          tables: state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('events', 'history')").toArray().length,
        }));
        expect(left).toEqual({ keys: 0, tables: 0 });
        for (const prefix of [`inputs/${id}`, `weights/${id}`, `checkpoints/${id}/`]) expect((await env.BLOBS.list({ prefix })).objects).toHaveLength(0);
      }
      expect(((await (await call("/v1/fine-tunes")).json()) as { data: unknown[] }).data).toHaveLength(0);
      expect(await index.usage()).toEqual({ activeJobs: 0, storedBytes: 0 });
      // the cancelled GPU job is off the dispatcher's waiting list too
      const dispatcher = env.DISPATCHER.get(env.DISPATCHER.idFromName("gpu-nodes"));
      expect(await runInDurableObject(dispatcher, async (_i, state) => (await state.storage.get(`id:${ids[2]}`)) ?? null)).toBeNull();
      sizes.push({ blobs: await blobCount(), indexKeys: await indexKeys() });
    }
    // flat: what is stored after every cycle is what was stored after the first
    for (const s of sizes) expect(s).toEqual(sizes[0]);
    expect(sizes[0]!.indexKeys).toEqual(["bytes"]);
  }, 180_000);

  it("JOB_TTL_DAYS: a finished job's alarm is set that long after it ended", async () => {
    const { create } = client("ttl-days-key", { JOB_TTL_DAYS: "2" });
    const res = await create("sync");
    const id = await idOf(res);
    const stub = env.JOBS.get(env.JOBS.idFromName(id));
    const { alarm, finished } = await runInDurableObject(stub, async (_i, state) => ({
      alarm: await state.storage.getAlarm(),
      finished: Date.parse(((await state.storage.get<{ job: { finished_at: string } }>("record"))!).job.finished_at),
    }));
    expect(alarm).toBe(finished + 2 * 24 * 60 * 60 * 1000);
    // before that, the alarm keeps the job
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await runInDurableObject(stub, async (_i, state) => (await state.storage.get("record")) !== undefined)).toBe(true);
  });
});
