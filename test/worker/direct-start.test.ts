/**
 * Async edge jobs started by the request that accepted them, inside workerd (issue 16 item 3;
 * docs/api.md, "Async edge jobs start at once"): the run goes on under the request's waitUntil,
 * the job's Queue message finds it claimed and is acknowledged without a second run, and a
 * direct run that stops reporting is recovered by the lease and the Queue like any lost worker.
 */
import { SELF, createExecutionContext, createMessageBatch, env, getQueueResult, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../worker/index.js";
import type { FineTuneJob } from "../../worker/store.js";
import type { JobState } from "../../src/jobs/state.js";
import { seedRequest } from "../helpers.js";

const auth = { authorization: "Bearer worker-test-key" };
const jobOf = async (id: string) => (await (await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${id}`, { headers: auth })).json()) as Record<string, any>;
const stateOf = (id: string) => runInDurableObject(env.JOBS.get(env.JOBS.idFromName(id)), async (_instance, state) => (await state.storage.get<JobState>("state"))!);

/** POSTs through the Worker's fetch handler with an execution context of the test's own, whose waitUntil work can be awaited. */
async function createDirect(body: unknown) {
  const ctx = createExecutionContext();
  const request = new Request("http://edgetune.test/v1/fine-tunes", { method: "POST", headers: { "content-type": "application/json", ...auth }, body: JSON.stringify(body) });
  const res = await worker.fetch(request as never, env, ctx);
  expect(res.status, await res.clone().text()).toBe(202);
  return { id: ((await res.json()) as { id: string }).id, ctx };
}

/** Delivers one message of the dispatch queue to the Worker's consumer, as a redelivery would. */
async function deliver(id: string) {
  const batch = createMessageBatch("edgetune-jobs", [{ id: crypto.randomUUID(), timestamp: new Date(), attempts: 1, body: { id } }]);
  const ctx = createExecutionContext();
  await worker.queue(batch as never, env, ctx);
  return getQueueResult(batch, ctx);
}

/** The job's events, from its stream (it has ended: the stream ends after the final event). */
async function eventsOf(id: string) {
  const text = await (await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${id}/events`, { headers: auth })).text();
  return [...text.matchAll(/^event: (\w+)\ndata: (.*)$/gm)].map((m) => ({ event: m[1]!, data: JSON.parse(m[2]!) as Record<string, any> }));
}

async function untilEnded(id: string) {
  let job = await jobOf(id);
  for (let i = 0; i < 1200 && (job.status === "queued" || job.status === "running"); i++) {
    await new Promise((r) => setTimeout(r, 50));
    job = await jobOf(id);
  }
  return job;
}

describe("async edge jobs started by the accepting request", () => {
  it("the run ends within the request's waitUntil; the Queue message is acknowledged without a second run", async () => {
    const { id, ctx } = await createDirect({ ...seedRequest(64, { training: { epochs: 20 } }), mode: "async" });
    // nothing but the direct run keeps this context: once it settles the job has ended, with no Queue hop
    await waitOnExecutionContext(ctx);
    const done = await jobOf(id);
    expect(done.status).toBe("succeeded");
    // a (re)delivery of its message: acknowledged, the job untouched
    const result = await deliver(id);
    expect(result.explicitAcks).toHaveLength(1);
    expect(result.retryMessages).toEqual([]);
    expect(await jobOf(id)).toEqual(done);
    // one claim, one run: one running status, each epoch once, one final event
    const events = await eventsOf(id);
    expect(events.filter((e) => e.event === "status").map((e) => [e.data.status, e.data.attempt])).toEqual([["queued", 0], ["running", 1], ["succeeded", 1]]);
    expect(events.filter((e) => e.event === "epoch").map((e) => e.data.epoch)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(events.filter((e) => e.event === "done")).toHaveLength(1);
    expect((await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${id}/weights`, { headers: auth })).status).toBe(200);
  });

  it("a message delivered while the direct run holds the job is acknowledged; the job still runs once", async () => {
    const { id, ctx } = await createDirect({ ...seedRequest(1, { training: { epochs: 20_000, batch_size: 1 } }), mode: "async" });
    const result = await deliver(id); // however far the direct run has got: queued, running or ended
    expect(result.explicitAcks).toHaveLength(1);
    await waitOnExecutionContext(ctx);
    const done = await untilEnded(id);
    expect(done.status).toBe("succeeded");
    // its completion carried only the epochs not reported yet and the kept tail: the job counts all
    expect(done.metrics).toMatchObject({ epochs: 20_000, history_truncated: true });
    expect(done.metrics.history.map((e: { epoch: number }) => e.epoch)).toEqual(Array.from({ length: 100 }, (_, i) => 19_901 + i));
    const events = await eventsOf(id);
    expect(events.filter((e) => e.event === "status" && e.data.status === "running")).toHaveLength(1);
    expect(events.filter((e) => e.event === "epoch").map((e) => e.data.epoch)).toEqual(Array.from({ length: 20_000 }, (_, i) => i + 1));
    expect(events.filter((e) => e.event === "done")).toHaveLength(1);
  });

  it("a direct run that stops reporting loses its lease; the job is queued again and the consumer runs it to the end, once", async () => {
    // long enough that the lease is taken from it while it trains (about a second here, estimated well under the 5 s bound)
    const { id, ctx } = await createDirect({ ...seedRequest(8, { training: { epochs: 20_000, batch_size: 1 } }), mode: "async" });
    let state = await stateOf(id);
    for (let i = 0; i < 2000 && state.lease === null && state.job.status === "queued"; i++) state = await stateOf(id);
    expect(state.lease?.worker).toBe("edge-direct");
    expect(state.job.status).toBe("running");
    // its small run input is held by its object (stored with the job in one write), not put to R2:
    // the consumer's attempt 2 below reads it from there
    expect(await env.BLOBS.head(`inputs/${id}.safetensors`)).toBeNull();
    expect(await runInDurableObject(env.JOBS.get(env.JOBS.idFromName(id)), async (_i, s) => (await s.storage.get<Uint8Array>("blob:input"))?.byteLength ?? 0)).toBeGreaterThan(0);
    // its lease lapses, as when the isolate running it is cut off, and the job's alarm queues it
    // again: one step, so that no report of the direct run renews the lease in between
    await runInDurableObject(env.JOBS.get(env.JOBS.idFromName(id)), (instance: FineTuneJob, s) =>
      s.blockConcurrencyWhile(async () => {
        const current = (await s.storage.get<JobState>("state"))!;
        await s.storage.put("state", { ...current, lease: { ...current.lease!, expiresAt: 0 } });
        await instance.alarm();
      }),
    );
    expect((await stateOf(id)).job.status).not.toBe("succeeded");
    // the direct run hears at its next report that its lease is gone, and stops without completing
    await waitOnExecutionContext(ctx);
    const done = await untilEnded(id);
    expect(done.status).toBe("succeeded");
    expect(done.metrics.epochs).toBe(20_000);
    const statuses = (await eventsOf(id)).filter((e) => e.event === "status").map((e) => [e.data.status, e.data.attempt]);
    expect(statuses).toEqual([["queued", 0], ["running", 1], ["queued", 1], ["running", 2], ["succeeded", 2]]);
  }, 120_000);
});
