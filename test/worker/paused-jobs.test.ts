/**
 * Paused jobs inside workerd (issue 16, quotas and retention): a paused job does not count
 * toward MAX_ACTIVE_JOBS_PER_KEY (resuming it counts it again, refused when the key has no room),
 * its bytes still count, and it is deleted JOB_TTL_DAYS after it was paused.
 */
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../worker/index.js";
import type { JobState } from "../../src/jobs/state.js";
import { seedRequest } from "../helpers.js";
import { ownerIndex } from "./owner-index.js";

const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;

function client(key: string, vars: Record<string, string>) {
  const e = { ...env, EDGETUNE_API_KEYS: key, ...vars } as Env;
  const call = (path: string, init: RequestInit = {}) =>
    worker.fetch(new Request(`http://edgetune.test${path}`, { ...init, headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...init.headers } }), e, ctx);
  // GPU-node jobs: nothing claims them here, so they stay queued until paused or cancelled
  const create = async () => {
    const res = await call("/v1/fine-tunes", { method: "POST", body: JSON.stringify({ ...seedRequest(8, { training: { epochs: 2, batch_size: 4 } }), mode: "async", placement: "gpu-node" }) });
    return { res, id: res.status === 202 ? ((await res.clone().json()) as { id: string }).id : "" };
  };
  const post = (path: string) => call(path, { method: "POST", body: "{}" });
  return { call, create, post };
}

const jobObject = (id: string) => env.JOBS.get(env.JOBS.idFromName(id));

describe("paused jobs in workerd", () => {
  it("a paused job frees its active slot; resuming takes one again, refused with 429 while the key has none", async () => {
    const { create, post } = client("paused-active-key", { MAX_ACTIVE_JOBS_PER_KEY: "1" });
    const a = await create();
    expect(a.res.status).toBe(202);
    expect((await create()).res.status).toBe(429); // the one slot is A's

    expect(((await (await post(`/v1/fine-tunes/${a.id}/pause`)).json()) as { status: string }).status).toBe("paused");
    const usage = await (await ownerIndex("paused-active-key")).usage();
    expect(usage.activeJobs).toBe(0);
    expect(usage.storedBytes).toBeGreaterThan(0); // its input is still stored

    const b = await create();
    expect(b.res.status).toBe(202);
    const refused = await post(`/v1/fine-tunes/${a.id}/resume`);
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).not.toBeNull();
    expect(((await refused.json()) as { code: string }).code).toBe("too_many_active_jobs");

    expect((await post(`/v1/fine-tunes/${b.id}/cancel`)).status).toBe(200);
    const resumed = await post(`/v1/fine-tunes/${a.id}/resume`);
    expect(resumed.status).toBe(200);
    expect(((await resumed.json()) as { status: string }).status).toBe("queued");
    expect((await (await ownerIndex("paused-active-key")).usage()).activeJobs).toBe(1);
    expect((await create()).res.status).toBe(429); // counted again
    expect((await post(`/v1/fine-tunes/${a.id}/cancel`)).status).toBe(200);
  });

  it("a paused job is deleted JOB_TTL_DAYS after it was paused, with its input and its bytes", async () => {
    const { call, create, post } = client("paused-ttl-key", { JOB_TTL_DAYS: "1" });
    const { id } = await create();
    expect(((await (await post(`/v1/fine-tunes/${id}/pause`)).json()) as { status: string }).status).toBe("paused");
    const state = await runInDurableObject(jobObject(id), async (_i, s) => (await s.storage.get<JobState>("state"))!);
    const alarm = await runInDurableObject(jobObject(id), (_i, s) => s.storage.getAlarm());
    expect(alarm).toBe(state.pausedAt! + 24 * 60 * 60 * 1000);

    // its alarm before that day has passed (run early): kept, the alarm set again
    expect(await runDurableObjectAlarm(jobObject(id))).toBe(true);
    expect((await call(`/v1/fine-tunes/${id}`)).status).toBe(200);
    expect(await runInDurableObject(jobObject(id), (_i, s) => s.storage.getAlarm())).toBe(alarm);

    // paused a day ago: its alarm deletes it
    await runInDurableObject(jobObject(id), async (_i, s) => {
      await s.storage.put("state", { ...state, pausedAt: Date.now() - 24 * 60 * 60 * 1000 - 1 });
    });
    expect(await runDurableObjectAlarm(jobObject(id))).toBe(true);
    expect((await call(`/v1/fine-tunes/${id}`)).status).toBe(404);
    expect((await env.BLOBS.list({ prefix: `inputs/${id}` })).objects).toEqual([]);
    expect(await (await ownerIndex("paused-ttl-key")).usage()).toEqual({ activeJobs: 0, storedBytes: 0 });
  });
});
