/**
 * Async edge jobs started by the request that accepted them (issue 16 item 3; docs/api.md,
 * "Async edge jobs start at once"): which jobs the API hands to `directStart` (stored first),
 * and what a first run skips (the stored input it has in memory, the checkpoint it cannot have).
 */
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/api/app.js";
import { DEFAULT_EDGE_BUDGET, jobCpuMs } from "../../src/api/budget.js";
import { prepareRun } from "../../src/engine/train.js";
import { MemoryJobStore } from "../../src/jobs/memory-store.js";
import { runClaimedJob } from "../../src/jobs/runner.js";
import { DEFAULT_LEASE_POLICY, firstRun } from "../../src/jobs/state.js";
import { storedBytes, type Claim, type WorkerChannel } from "../../src/jobs/store.js";
import { loadNodeRuntime } from "../../src/node/kernel-module.js";
import { seedRequest } from "../helpers.js";

const runtime = await loadNodeRuntime();
const json = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

function setup(maxCpuMs: number) {
  const store = new MemoryJobStore(DEFAULT_LEASE_POLICY);
  const started: { claim: Claim; input: Uint8Array; stored: ReturnType<MemoryJobStore["get"]> }[] = [];
  const app = createApp(() => ({
    runtime,
    store,
    apiKeys: [],
    budget: DEFAULT_EDGE_BUDGET,
    maxBodyBytes: 8 * 1024 * 1024,
    version: "test",
    lease: DEFAULT_LEASE_POLICY,
    nodeTokens: [],
    pollMs: 10,
    rateLimiter: null,
    corsOrigins: [],
    directStart: {
      maxCpuMs,
      // the job as it stands when it is handed over (the in-memory store reads it at the call)
      start: (claim, input) => started.push({ claim, input, stored: store.get(claim.job.id) }),
    },
  }));
  const create = async (body: unknown, status = 202) => {
    const res = await app.request("/v1/fine-tunes", json(body));
    expect(res.status, await res.clone().text()).toBe(status);
    return ((await res.json()) as { id: string }).id;
  };
  return { store, app, started, create };
}

const edgeJob = (epochs = 3, checkpoints = false) => ({
  ...seedRequest(32, { training: { epochs, batch_size: 16, ...(checkpoints ? { checkpoints: { every: 1, keep: 3 } } : {}) } }),
  mode: "async",
  placement: "edge",
});

describe("async edge jobs started by the accepting request", () => {
  it("an async edge job within maxCpuMs is stored, claimed for edge-direct and handed over once with its stored input", async () => {
    const { store, started, create } = setup(5_000);
    const id = await create(edgeJob());
    expect(started.map((s) => s.claim.job.id)).toEqual([id]);
    expect(started[0]!.claim).toMatchObject({ attempt: 1, fresh: true });
    expect((await started[0]!.stored)?.job.status).toBe("running");
    expect(store.leaseOf(id)).toBe(started[0]!.claim.leaseId);
    expect(started[0]!.input).toEqual(await storedBytes((await store.getInput(id))!));
    // nothing else can claim it now
    expect(await store.takeEdgeJob("edge-queue-consumer")).toBeNull();
  });

  it("GPU-node jobs, sync runs and edge jobs estimated over maxCpuMs wait for their dispatch", async () => {
    const small = setup(5_000);
    await small.create({ ...edgeJob(), placement: "gpu-node" });
    await small.create({ ...edgeJob(), mode: "sync" }, 200);
    expect(small.started).toEqual([]);

    const estimate = jobCpuMs(prepareRun(edgeJob(300) as never).request, prepareRun(edgeJob(300) as never).plan, DEFAULT_EDGE_BUDGET);
    expect(estimate).toBeGreaterThan(0);
    const bounded = setup(estimate * 0.99);
    await bounded.create(edgeJob(300));
    expect(bounded.started).toEqual([]);
    const roomy = setup(estimate * 1.01);
    await roomy.create(edgeJob(300));
    expect(roomy.started).toHaveLength(1);
  });

  it("a first run reads neither its input nor a checkpoint from the store; a retry looks for its checkpoint", async () => {
    const { store, started, create } = setup(5_000);
    const id = await create(edgeJob(3, true));
    const calls: string[] = [];
    const counted: WorkerChannel = {
      ...store.channel,
      readInput: (...a) => (calls.push("readInput"), store.channel.readInput(...a)),
      resumeFrom: (...a) => (calls.push("resumeFrom"), store.channel.resumeFrom(...a)),
    };
    const { claim, input } = started[0]!;
    expect(claim).toMatchObject({ attempt: 1, fresh: true });
    expect(await runClaimedJob(counted, claim, runtime, { placement: "edge", input })).toBe("completed");
    expect(calls).toEqual([]);
    expect((await store.get(id))?.job.status).toBe("succeeded");
    expect((await store.listCheckpoints(id)).map((c) => c.epoch)).toEqual([1, 2, 3]);
  });

  it("firstRun: only the first claim of a job created without a checkpoint, never paused and resumed", () => {
    expect(firstRun({ attempt: 1, startsFresh: true })).toBe(true);
    expect(firstRun({ attempt: 2, startsFresh: true })).toBe(false); // a retry: continue from the last checkpoint
    expect(firstRun({ attempt: 1, startsFresh: true, attemptsBeforeResume: 0 })).toBe(false); // resumed
    expect(firstRun({ attempt: 1 })).toBe(false); // from_checkpoint, or stored before startsFresh was kept
  });

  it("a from_checkpoint job's first claim is not fresh: it continues from that checkpoint", async () => {
    const { started, create } = setup(5_000);
    const first = await create({ ...edgeJob(4, true), mode: "sync" }, 200);
    await create({ ...edgeJob(4, true), from_checkpoint: { job: first, epoch: 2 } });
    const { claim } = started[0]!;
    expect(claim.attempt).toBe(1);
    expect(claim.fresh).toBeUndefined();
  });
});
