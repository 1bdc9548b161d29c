/**
 * Checkpoints, from_checkpoint, retries that resume, pause and resume, through the real app
 * (app.request), the in-process store and a GPU node speaking /v1/nodes through the same app.
 * The same routes run in workerd in test/worker/checkpoints.test.ts, and with real processes in
 * test/e2e/checkpoints.test.ts.
 */
import { describe, expect, it } from "vitest";
import { NodeClient } from "../../src/jobs/node-client.js";
import { runClaimedJob } from "../../src/jobs/runner.js";
import type { WorkerChannel } from "../../src/jobs/store.js";
import { parseSafetensors, writeSafetensors } from "../../src/formats/safetensors.js";
import { encodeBase64 } from "../../src/formats/base64.js";
import { seedRequest } from "../helpers.js";
import { NODE_TOKEN, testApp } from "./app.js";

const KEY = "k1";
const OTHER_KEY = "k2";
const post = (body: unknown, key = KEY) => ({ method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${key}` }, body: JSON.stringify(body) });
const get = (key = KEY) => ({ headers: { authorization: `Bearer ${key}` } });

/** A request whose run shuffles and drops out (dropout on the hidden layer), with checkpoints every `every` epochs. */
function checkpointedRequest(epochs = 5, every = 1, keep = 3) {
  const request = seedRequest(96, { training: { epochs, batch_size: 16, seed: 9, shuffle: true, optimizer: { type: "adamw", lr: 1e-2 }, schedule: { type: "cosine" }, checkpoints: { every, keep } } });
  request.model.layers!.splice(2, 0, { type: "dropout", p: 0.2 });
  return request;
}

async function setup(leaseMs = 60_000) {
  const t = await testApp({ apiKeys: [KEY, OTHER_KEY], lease: { leaseMs, maxAttempts: 3 } });
  const node = new NodeClient({ baseUrl: "http://edge.test", token: NODE_TOKEN, fetch: async (url, init) => t.app.request(url, init) });
  const create = async (body: unknown, key = KEY) => t.app.request("/v1/fine-tunes", post(body, key));
  const job = async (id: string) => (await (await t.app.request(`/v1/fine-tunes/${id}`, get())).json()) as Record<string, any>;
  const weights = async (id: string) => new Uint8Array(await (await t.app.request(`/v1/fine-tunes/${id}/weights`, get())).arrayBuffer());
  const events = async (id: string) =>
    [...(await (await t.app.request(`/v1/fine-tunes/${id}/events`, get())).text()).matchAll(/^event: (\w+)\ndata: (.*)$/gm)].map((m) => ({ event: m[1]!, data: JSON.parse(m[2]!) }));
  return { ...t, node, create, job, weights, events };
}

describe("checkpoints of a sync job", () => {
  it("are listed (the newest `keep`), and each one's weights download with the state_dict names", async () => {
    const { app, create } = await setup();
    const res = await create(checkpointedRequest(5, 1, 2));
    expect(res.status).toBe(200);
    const { id } = (await res.json()) as { id: string };
    const list = (await (await app.request(`/v1/fine-tunes/${id}/checkpoints`, get())).json()) as { data: { epoch: number; step: number; metrics: { epoch: number } }[] };
    expect(list.data.map((c) => [c.epoch, c.step, c.metrics.epoch])).toEqual([[4, 24, 4], [5, 30, 5]]);
    const file = await app.request(`/v1/fine-tunes/${id}/checkpoints/4/weights`, get());
    expect(file.status).toBe(200);
    expect([...parseSafetensors(new Uint8Array(await file.arrayBuffer())).tensors.keys()]).toEqual(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
    expect((await app.request(`/v1/fine-tunes/${id}/checkpoints/2/weights`, get())).status).toBe(404); // deleted: keep 2
    expect((await app.request(`/v1/fine-tunes/${id}/checkpoints/x/weights`, get())).status).toBe(404);
    expect((await app.request(`/v1/fine-tunes/${id}/checkpoints`, get(OTHER_KEY))).status).toBe(404);
  });
});

describe("a create that fails after its run stored checkpoints", () => {
  it("leaves none behind (a float16 output out of range is refused at the end of the run)", async () => {
    const { create, store } = await setup();
    const weights = writeSafetensors([
      { name: "fc.weight", shape: [1, 10], data: new Float32Array(10).fill(0.1) },
      { name: "fc.bias", shape: [1], data: new Float32Array([1e6]) }, // past float16's 65504
    ]);
    const before = store.storedCounts().blobs;
    const res = await create({
      ...seedRequest(32, { training: { epochs: 3, optimizer: { type: "sgd", lr: 1e-9 }, checkpoints: { every: 1, keep: 3 } } }),
      model: { layers: [{ type: "linear", name: "fc", in_features: 10, out_features: 1 }] },
      weights: encodeBase64(weights),
      output: { dtype: "float16" },
    });
    expect(res.status).toBe(422);
    expect(store.storedCounts().blobs).toBe(before);
  });
});

describe("the storage quota", () => {
  it("charges a job's checkpoints: keep x (weights + optimizer state) as float32", async () => {
    const { create, store } = await setup();
    const owner = [...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(KEY)))].map((b) => b.toString(16).padStart(2, "0")).join("");
    const without = checkpointedRequest(2);
    const before = (await store.usage(owner)).storedBytes;
    expect((await create({ ...without, training: { ...without.training, checkpoints: null } })).status).toBe(200);
    const plain = (await store.usage(owner)).storedBytes - before;
    expect((await create(checkpointedRequest(2, 1, 3))).status).toBe(200);
    const withCheckpoints = (await store.usage(owner)).storedBytes - before - plain;
    // 121 parameters, AdamW's exp_avg and exp_avg_sq: 3 files x 4 x (121 + 2 x 121) bytes, and the request's few more bytes
    expect(withCheckpoints - plain).toBeGreaterThanOrEqual(3 * 4 * 363);
    expect(withCheckpoints - plain).toBeLessThan(3 * 4 * 363 + 100);
  });
});

describe("from_checkpoint", () => {
  it("continues a job from its checkpoint and ends bit-identical to the uninterrupted run (sync)", async () => {
    const { create, weights } = await setup();
    const first = (await (await create(checkpointedRequest(6, 1, 10))).json()) as { id: string; metrics: { history: unknown[] } };
    const resumed = await create({ ...checkpointedRequest(6, 1, 10), from_checkpoint: { job: first.id, epoch: 3 } });
    expect(resumed.status).toBe(200);
    const second = (await resumed.json()) as { id: string; metrics: { history: unknown[]; steps: number } };
    expect(second.metrics.history).toEqual(first.metrics.history);
    expect(second.metrics.steps).toBe(36);
    expect(await weights(second.id)).toEqual(await weights(first.id));
  });

  it("an absent epoch is a 422 naming from_checkpoint.epoch; another key's job a 404; another model a 422", async () => {
    const { create } = await setup();
    const first = (await (await create(checkpointedRequest(4, 2, 10))).json()) as { id: string };
    const absent = await create({ ...checkpointedRequest(4), from_checkpoint: { job: first.id, epoch: 3 } });
    expect(absent.status).toBe(422);
    const problem = (await absent.json()) as { errors: { path: string; message: string }[] };
    expect(problem.errors[0]).toMatchObject({ path: "from_checkpoint.epoch" });
    expect(problem.errors[0]!.message).toContain("epochs 2, 4");
    expect((await create({ ...checkpointedRequest(4), from_checkpoint: { job: first.id, epoch: 2 } }, OTHER_KEY)).status).toBe(404);
    const otherModel = seedRequest(96, { training: { epochs: 4 } });
    otherModel.model.layers = [{ type: "linear", name: "fc1", in_features: 10, out_features: 12 }, { type: "relu" }, { type: "linear", name: "fc2", in_features: 12, out_features: 1 }];
    const mismatch = await create({ ...otherModel, from_checkpoint: { job: first.id, epoch: 2 } });
    expect(mismatch.status).toBe(422);
    expect(((await mismatch.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe("from_checkpoint");
  });

  it("an async job on a GPU node continues from the checkpoint it names", async () => {
    const { create, node, runtime, job, weights } = await setup();
    const straight = (await (await create(checkpointedRequest(5, 1, 10))).json()) as { id: string };
    const res = await create({ ...checkpointedRequest(5, 1, 10), mode: "async", placement: "gpu-node", from_checkpoint: { job: straight.id, epoch: 2 } });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    expect(await runClaimedJob(node, (await node.claim("node-a"))!, runtime, { placement: "gpu-node" })).toBe("completed");
    expect((await job(id)).status).toBe("succeeded");
    expect(await weights(id)).toEqual(await weights(straight.id));
  });
});

/** A node that dies after the checkpoint of `epoch` is stored: every later call fails, as to a killed process. */
function dyingAfter(channel: WorkerChannel, epoch: number): WorkerChannel {
  let dead = false;
  const guard = <A extends unknown[], R>(f: (...a: A) => Promise<R>) => async (...a: A): Promise<R> => {
    if (dead) throw new Error("the node is dead");
    return f(...a);
  };
  return {
    readInput: guard(channel.readInput.bind(channel)),
    progress: guard(channel.progress.bind(channel)),
    heartbeat: guard(channel.heartbeat.bind(channel)),
    saveWeights: guard(channel.saveWeights.bind(channel)),
    complete: guard(channel.complete.bind(channel)),
    release: guard(channel.release.bind(channel)),
    resumeFrom: guard(channel.resumeFrom.bind(channel)),
    saveCheckpoint: guard(async (id: string, leaseId: string, bytes: Uint8Array, keep: number) => {
      const saved = await channel.saveCheckpoint(id, leaseId, bytes, keep);
      const { state } = (await import("../../src/engine/checkpoint.js")).readTrainingCheckpoint(bytes);
      if (state.epoch === epoch) dead = true;
      return saved;
    }),
  };
}

describe("a retry after a node died", () => {
  it("continues from the last checkpoint: the history stays one entry per epoch and the weights are the uninterrupted run's", async () => {
    const { create, node, runtime, job, weights, events, store } = await setup(1000);
    const straight = (await (await create(checkpointedRequest(5, 1, 2))).json()) as { id: string };
    const { id } = (await (await create({ ...checkpointedRequest(5, 1, 2), mode: "async", placement: "gpu-node" })).json()) as { id: string };

    const first = (await node.claim("node-a"))!;
    await expect(runClaimedJob(dyingAfter(node, 3), first, runtime, { placement: "gpu-node" })).rejects.toThrow("the node is dead");
    expect((await job(id)).status).toBe("running");
    await store.tick(Date.now() + 5_000); // the lease lapses: queued again
    expect((await job(id)).status).toBe("queued");

    const second = (await node.claim("node-b"))!;
    expect(second.attempt).toBe(2);
    expect(await runClaimedJob(node, second, runtime, { placement: "gpu-node" })).toBe("completed");
    const done = await job(id);
    expect(done.status).toBe("succeeded");
    expect(done.metrics.history.map((h: { epoch: number }) => h.epoch)).toEqual([1, 2, 3, 4, 5]);
    expect(await weights(id)).toEqual(await weights(straight.id));
    const resumedEvent = (await events(id)).find((e) => e.event === "status" && e.data.resumed_from_epoch !== undefined);
    expect(resumedEvent?.data).toEqual({ status: "running", attempt: 2, resumed_from_epoch: 3 });
  });
});

describe("pause and resume", () => {
  it("a running job checkpoints and stops at its epoch's end; resumed, it ends as the uninterrupted run", async () => {
    const { app, create, node, runtime, job, weights } = await setup();
    const request = { ...checkpointedRequest(5), training: { ...checkpointedRequest(5).training, checkpoints: null } };
    const straight = (await (await create(request)).json()) as { id: string };
    const { id } = (await (await create({ ...request, mode: "async", placement: "gpu-node" })).json()) as { id: string };
    const claim = (await node.claim("node-a"))!;
    const paused = await app.request(`/v1/fine-tunes/${id}/pause`, post({}));
    expect(paused.status).toBe(200);
    expect(((await paused.json()) as { status: string }).status).toBe("running"); // until its epoch ends
    expect(await runClaimedJob(node, claim, runtime, { placement: "gpu-node" })).toBe("completed");
    const stopped = await job(id);
    expect(stopped.status).toBe("paused");
    expect(stopped.finished_at).toBeNull();
    const list = (await (await app.request(`/v1/fine-tunes/${id}/checkpoints`, get())).json()) as { data: { epoch: number }[] };
    expect(list.data.map((c) => c.epoch)).toEqual([stopped.metrics.history.at(-1).epoch]);
    expect(list.data[0]!.epoch).toBeLessThan(5);
    expect(await node.claim("node-a")).toBeNull(); // a paused job is not claimed

    const resumed = await app.request(`/v1/fine-tunes/${id}/resume`, post({}));
    expect(resumed.status).toBe(200);
    expect(((await resumed.json()) as { status: string }).status).toBe("queued");
    expect(await runClaimedJob(node, (await node.claim("node-b"))!, runtime, { placement: "gpu-node" })).toBe("completed");
    const done = await job(id);
    expect(done.status).toBe("succeeded");
    expect(done.metrics.history.map((h: { epoch: number }) => h.epoch)).toEqual([1, 2, 3, 4, 5]);
    expect(await weights(id)).toEqual(await weights(straight.id));
    expect((await app.request(`/v1/fine-tunes/${id}/resume`, post({}))).status).toBe(409);
  });

  it("a queued job pauses at once; a sync job cannot be paused; cancel ends a paused job", async () => {
    const { app, create, job } = await setup();
    const { id } = (await (await create({ ...checkpointedRequest(3), mode: "async", placement: "gpu-node" })).json()) as { id: string };
    const paused = (await (await app.request(`/v1/fine-tunes/${id}/pause`, post({}))).json()) as { status: string };
    expect(paused.status).toBe("paused");
    expect((await app.request(`/v1/fine-tunes/${id}/pause`, post({}))).status).toBe(200); // a retried pause
    expect((await (await app.request(`/v1/fine-tunes/${id}/cancel`, post({}))).json()) as { status: string }).toMatchObject({ status: "cancelled" });
    expect((await job(id)).status).toBe("cancelled");
    const sync = (await (await create(checkpointedRequest(2))).json()) as { id: string };
    const refused = await app.request(`/v1/fine-tunes/${sync.id}/pause`, post({}));
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as { code: string }).code).toBe("not_pausable");
  });
});
