/**
 * Checkpoints, from_checkpoint, retries that resume, pause and resume inside workerd: the
 * Worker's R2 (checkpoints listed from their custom metadata), the job Durable Object's state
 * machine, and a node speaking /v1/nodes to the Worker (NodeClient over SELF.fetch, with the
 * Worker's own kernel build).
 */
import { SELF, env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import relaxedKernels from "../../build/wasm/relaxed-simd.wasm";
import { NodeClient } from "../../src/jobs/node-client.js";
import { runClaimedJob } from "../../src/jobs/runner.js";
import type { Claim, WorkerChannel } from "../../src/jobs/store.js";
import type { JobState } from "../../src/jobs/state.js";
import type { EngineRuntime } from "../../src/engine/run-types.js";
import { readTrainingCheckpoint } from "../../src/engine/checkpoint.js";
import { parseSafetensors } from "../../src/formats/safetensors.js";
import { seedRequest } from "../helpers.js";
import { ConflictError, Edgetune, NotFoundError } from "../../src/sdk/index.js";

const auth = { authorization: "Bearer worker-test-key" };
const post = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json", ...auth }, body: JSON.stringify(body) });
const call = (path: string, init: RequestInit = { headers: auth }) => SELF.fetch(`http://edgetune.test${path}`, init);
const runtime: EngineRuntime = { module: relaxedKernels, variant: "wasm-relaxed-simd", runtime: "workerd" };
const node = new NodeClient({ baseUrl: "http://edgetune.test", token: "edgetune-dev-node-token", fetch: (url, init) => SELF.fetch(url, init) });

/** Shuffled, with dropout, AdamW and cosine; checkpoints every epoch, the newest `keep` kept. */
function request(epochs: number, keep = 10, checkpoints = true) {
  const r = seedRequest(64, { training: { epochs, batch_size: 16, seed: 4, shuffle: true, optimizer: { type: "adamw", lr: 1e-2 }, schedule: { type: "cosine" }, checkpoints: checkpoints ? { every: 1, keep } : null } });
  r.model.layers!.splice(2, 0, { type: "dropout", p: 0.2 });
  return r;
}

async function create(body: unknown, status = 200): Promise<string> {
  const res = await call("/v1/fine-tunes", post(body));
  expect(res.status, await res.clone().text()).toBe(status);
  return ((await res.json()) as { id: string }).id;
}
const job = async (id: string) => (await (await call(`/v1/fine-tunes/${id}`)).json()) as Record<string, any>;
const weights = async (id: string) => new Uint8Array(await (await call(`/v1/fine-tunes/${id}/weights`)).arrayBuffer());

/** Claims until job `id` comes (other jobs of this file may wait in the same dispatcher: handed back). */
async function claimOf(id: string): Promise<Claim> {
  for (let i = 0; i < 20; i++) {
    const claim = await node.claim("worker-test-node");
    if (claim?.job.id === id) return claim;
    if (claim) await node.release(claim.job.id, claim.leaseId);
  }
  throw new Error(`no claim of ${id}`);
}

describe("checkpoints in workerd", () => {
  it("a sync job's checkpoints are listed from R2 (the newest `keep`) and each one's weights download", async () => {
    const id = await create(request(4, 2));
    const list = (await (await call(`/v1/fine-tunes/${id}/checkpoints`)).json()) as { object: string; data: { epoch: number; step: number; metrics: { epoch: number }; created_at: string }[] };
    expect(list.object).toBe("list");
    expect(list.data.map((c) => [c.epoch, c.step, c.metrics.epoch])).toEqual([[3, 12, 3], [4, 16, 4]]);
    expect(Date.parse(list.data[0]!.created_at)).not.toBeNaN();
    const file = await call(`/v1/fine-tunes/${id}/checkpoints/3/weights`);
    expect(file.status).toBe(200);
    expect([...parseSafetensors(new Uint8Array(await file.arrayBuffer())).tensors.keys()]).toEqual(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
    expect((await call(`/v1/fine-tunes/${id}/checkpoints/1/weights`)).status).toBe(404);
    const listed = await env.BLOBS.list({ prefix: `checkpoints/${id}/` });
    expect(listed.objects.map((o) => o.key).sort()).toEqual([`checkpoints/${id}/3.safetensors`, `checkpoints/${id}/4.safetensors`]);
  });

  it("from_checkpoint continues bit-identically; an absent epoch is a 422 naming from_checkpoint.epoch", async () => {
    const first = await create(request(5));
    const second = await create({ ...request(5), from_checkpoint: { job: first, epoch: 2 } });
    expect(await weights(second)).toEqual(await weights(first));
    expect((await job(second)).metrics.history).toEqual((await job(first)).metrics.history);
    const res = await call("/v1/fine-tunes", post({ ...request(5), from_checkpoint: { job: first, epoch: 9 } }));
    expect(res.status).toBe(422);
    expect(((await res.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe("from_checkpoint.epoch");
  });

  it("a retry after the lease lapsed continues from the last checkpoint; the history stays one entry per epoch", async () => {
    const straight = await create(request(4));
    const id = await create({ ...request(4), mode: "async", placement: "gpu-node" }, 202);
    // the first node dies once its checkpoint of epoch 2 is stored
    let dead = false;
    const dying: WorkerChannel = {
      readInput: (...a) => node.readInput(...a),
      progress: async (...a) => (dead ? Promise.reject(new Error("dead")) : node.progress(...a)),
      heartbeat: async (...a) => (dead ? Promise.reject(new Error("dead")) : node.heartbeat(...a)),
      saveWeights: async () => Promise.reject(new Error("dead")),
      complete: async () => Promise.reject(new Error("dead")),
      release: (...a) => node.release(...a),
      resumeFrom: (...a) => node.resumeFrom(...a),
      saveCheckpoint: async (jobId, leaseId, bytes, keep) => {
        if (dead) throw new Error("dead");
        const saved = await node.saveCheckpoint(jobId, leaseId, bytes, keep);
        dead = readTrainingCheckpoint(bytes).state.epoch === 2;
        return saved;
      },
    };
    await expect(runClaimedJob(dying, await claimOf(id), runtime, { placement: "gpu-node" })).rejects.toThrow("dead");
    // the lease lapses (its time moved to the past) and the job's timer queues it again
    const stub = env.JOBS.get(env.JOBS.idFromName(id));
    await runInDurableObject(stub, async (_instance, state) => {
      const s = (await state.storage.get<JobState>("state"))!;
      await state.storage.put("state", { ...s, lease: { ...s.lease!, expiresAt: 0 } });
    });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await job(id)).status).toBe("queued");
    expect(await runClaimedJob(node, await claimOf(id), runtime, { placement: "gpu-node" })).toBe("completed");
    const done = await job(id);
    expect(done.status).toBe("succeeded");
    expect(done.metrics.history.map((h: { epoch: number }) => h.epoch)).toEqual([1, 2, 3, 4]);
    expect(await weights(id)).toEqual(await weights(straight));
    const events = await (await call(`/v1/fine-tunes/${id}/events`)).text();
    expect(events).toContain('"status":"running","attempt":2,"resumed_from_epoch":2');
  });

  it("pause checkpoints a running job and stops it; resume continues it to the uninterrupted run's weights", async () => {
    const straight = await create(request(4, 10, false));
    const id = await create({ ...request(4, 10, false), mode: "async", placement: "gpu-node" }, 202);
    const claim = await claimOf(id);
    const paused = await call(`/v1/fine-tunes/${id}/pause`, post({}));
    expect(paused.status).toBe(200);
    expect(await runClaimedJob(node, claim, runtime, { placement: "gpu-node" })).toBe("completed");
    const stopped = await job(id);
    expect(stopped.status).toBe("paused");
    const kept = (await (await call(`/v1/fine-tunes/${id}/checkpoints`)).json()) as { data: { epoch: number }[] };
    expect(kept.data).toHaveLength(1);
    expect(kept.data[0]!.epoch).toBe(stopped.metrics.history.at(-1).epoch);

    expect(((await (await call(`/v1/fine-tunes/${id}/resume`, post({}))).json()) as { status: string }).status).toBe("queued");
    expect(await runClaimedJob(node, await claimOf(id), runtime, { placement: "gpu-node" })).toBe("completed");
    const done = await job(id);
    expect(done.status).toBe("succeeded");
    expect(done.metrics.history.map((h: { epoch: number }) => h.epoch)).toEqual([1, 2, 3, 4]);
    expect(await weights(id)).toEqual(await weights(straight));
    expect((await call(`/v1/fine-tunes/${id}/pause`, post({}))).status).toBe(409);
  });

  it("the SDK: checkpoints.list and .weights, pause, resume and their refusals", async () => {
    const client = new Edgetune({ baseURL: "http://edgetune.test", apiKey: "worker-test-key", maxRetries: 0, fetch: (url, init) => SELF.fetch(url, init) });
    const sync = await create(request(3, 2));
    expect((await client.fineTunes.checkpoints.list(sync)).map((c) => c.epoch)).toEqual([2, 3]);
    const bytes = await client.fineTunes.checkpoints.weights(sync, 3);
    expect([...parseSafetensors(bytes).tensors.keys()]).toContain("fc1.weight");
    await expect(client.fineTunes.checkpoints.weights(sync, 1)).rejects.toBeInstanceOf(NotFoundError);
    await expect(client.fineTunes.pause(sync)).rejects.toBeInstanceOf(ConflictError);

    const id = await create({ ...request(3), mode: "async", placement: "gpu-node" }, 202);
    expect((await client.fineTunes.pause(id)).status).toBe("paused");
    expect((await client.fineTunes.waitForCompletion(id, { timeout: 10_000 })).status).toBe("paused");
    expect((await client.fineTunes.resume(id)).status).toBe("queued");
    await expect(client.fineTunes.resume(id)).rejects.toBeInstanceOf(ConflictError);
    expect((await client.fineTunes.cancel(id)).status).toBe("cancelled");
  });
});
