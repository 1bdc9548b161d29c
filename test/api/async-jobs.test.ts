/**
 * Asynchronous jobs in Node: the API (app.request), the in-process store running the job
 * state machine, and a GPU node speaking the /v1/nodes protocol through the same app.
 */
import { describe, expect, it } from "vitest";
import { NodeClient } from "../../src/jobs/node-client.js";
import { runClaimedJob } from "../../src/jobs/runner.js";
import { writeSafetensors } from "../../src/formats/safetensors.js";
import { seedRequest } from "../helpers.js";
import { NODE_TOKEN, testApp } from "./app.js";

const json = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
const gpuRequest = (epochs = 4) => ({ ...seedRequest(96, { training: { epochs, batch_size: 32 } }), mode: "async", placement: "gpu-node" });

async function setup(leaseMs = 60_000) {
  const t = await testApp({ lease: { leaseMs, maxAttempts: 3 } });
  const node = new NodeClient({ baseUrl: "http://edge.test", token: NODE_TOKEN, fetch: async (url, init) => t.app.request(url, init) });
  const submit = async (body: unknown) => {
    const res = await t.app.request("/v1/fine-tunes", json(body));
    expect(res.status).toBe(202);
    return ((await res.json()) as { id: string }).id;
  };
  const job = async (id: string) => (await (await t.app.request(`/v1/fine-tunes/${id}`)).json()) as Record<string, any>;
  return { ...t, node, submit, job };
}

function sseEvents(text: string) {
  return [...text.matchAll(/^id: (\d+)\nevent: (\w+)\ndata: (.*)$/gm)].map((m) => ({ id: Number(m[1]), event: m[2]!, data: JSON.parse(m[3]!) }));
}

describe("asynchronous GPU-node jobs", () => {
  it("a node claims, trains, uploads and completes; the job succeeds with one event per epoch", async () => {
    const { node, submit, job, app, runtime } = await setup();
    const id = await submit(gpuRequest(4));
    expect((await job(id)).status).toBe("queued");

    const claim = await node.claim("node-a");
    expect(claim?.job.id).toBe(id);
    expect(await node.claim("node-b")).toBeNull(); // nothing else waiting
    expect(await runClaimedJob(node, claim!, runtime, { placement: "gpu-node" })).toBe("completed");

    const done = await job(id);
    expect(done).toMatchObject({ status: "succeeded", plan: { placement: "gpu-node" }, engine: { runtime: "node" } });
    expect(done.metrics.history.map((h: { epoch: number }) => h.epoch)).toEqual([1, 2, 3, 4]);
    const weights = await app.request(`/v1/fine-tunes/${id}/weights`);
    expect(weights.status).toBe(200);
    expect((await weights.arrayBuffer()).byteLength).toBeGreaterThan(500);

    const events = sseEvents(await (await app.request(`/v1/fine-tunes/${id}/events`)).text());
    // queued; no node had polled yet, so waiting_for_node; running; the epochs; succeeded
    expect(events.map((e) => e.event)).toEqual(["status", "status", "status", "epoch", "epoch", "epoch", "epoch", "status", "done"]);
    expect(events[1]!.data).toMatchObject({ status: "queued", waiting_for_node: true });
    expect(events.map((e) => e.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const resumed = sseEvents(await (await app.request(`/v1/fine-tunes/${id}/events`, { headers: { "last-event-id": "7" } })).text());
    expect(resumed.map((e) => e.id)).toEqual([8, 9]);
  });

  it("a reader waiting for events is woken by the job's next write, not at the end of its wait", async () => {
    const { node, submit, store } = await setup();
    const id = await submit(gpuRequest(2));
    const claim = (await node.claim("node-a"))!;
    const before = (await store.events(id, 0))!.events.length;
    // a wait far past the test's timeout: only the write can end it
    const waiting = store.events(id, before, 100, 10 * 60_000);
    await node.progress(id, claim.leaseId, [{ epoch: 1, train_loss: 0.5, lr: 0.001 }]);
    const page = await waiting;
    expect(page!.events.map((e) => e.event)).toEqual(["epoch"]);
  });

  it("a second completion and a stale lease change nothing", async () => {
    const { node, submit, job, runtime } = await setup();
    const id = await submit(gpuRequest(2));
    const claim = (await node.claim("node-a"))!;
    await runClaimedJob(node, claim, runtime, { placement: "gpu-node" });
    const before = await job(id);
    const again = await node.complete(id, claim.leaseId, { failure: "late duplicate" }, null);
    expect(again.accepted).toBe(false);
    expect(await node.heartbeat(id, claim.leaseId)).toEqual({ ok: false, cancel: false });
    expect(await job(id)).toEqual(before);
  });

  it("a node that dies loses its lease; the job is requeued, run again, and has one entry per epoch", async () => {
    const { node, submit, job, store, runtime } = await setup(50);
    const id = await submit(gpuRequest(3));
    const dead = (await node.claim("node-dead"))!;
    // the dead node reported one epoch, then went silent
    await node.progress(id, dead.leaseId, [{ epoch: 1, train_loss: 9, lr: 0.001 }]);
    await new Promise((r) => setTimeout(r, 80));
    await store.tick();
    expect((await job(id)).status).toBe("queued");
    const claim = (await node.claim("node-b"))!;
    expect(claim.attempt).toBe(2);
    expect(await runClaimedJob(node, claim, runtime, { placement: "gpu-node" })).toBe("completed");
    const done = await job(id);
    expect(done.status).toBe("succeeded");
    expect(done.metrics.history.map((h: { epoch: number }) => h.epoch)).toEqual([1, 2, 3]);
    expect(done.metrics.history[0].train_loss).not.toBe(9);
    // the dead node comes back: its lease is gone
    expect((await node.progress(id, dead.leaseId, [{ epoch: 2, train_loss: 1, lr: 0.001 }])).ok).toBe(false);
    expect(await node.saveWeights(id, dead.leaseId, writeSafetensors([{ name: "w", shape: [1], data: new Float32Array(1) }]))).toBeNull();
  });

  it("a job whose workers keep dying fails after maxAttempts", async () => {
    const { node, submit, job, store } = await setup(20);
    const id = await submit(gpuRequest(2));
    for (let attempt = 1; attempt <= 3; attempt++) {
      expect((await node.claim(`node-${attempt}`))?.attempt).toBe(attempt);
      await new Promise((r) => setTimeout(r, 40));
      await store.tick();
    }
    expect(await job(id)).toMatchObject({ status: "failed", error: { code: "worker_lost" } });
  });

  it("cancelling a queued job ends it at once; a running one stops at its next report (reports are coalesced: a few a second)", async () => {
    const { node, submit, job, app, runtime } = await setup();
    const queued = await submit(gpuRequest(2));
    const res = await app.request(`/v1/fine-tunes/${queued}/cancel`, { method: "POST" });
    expect(((await res.json()) as { status: string }).status).toBe("cancelled");
    expect(await node.claim("node-a")).toBeNull();

    const id = await submit(gpuRequest(20_000));
    const claim = (await node.claim("node-a"))!;
    const run = runClaimedJob(node, claim, runtime, { placement: "gpu-node" });
    await new Promise((r) => setTimeout(r, 30));
    expect(((await (await app.request(`/v1/fine-tunes/${id}/cancel`, { method: "POST" })).json()) as { status: string }).status).toBe("running");
    expect(await run).toBe("completed");
    const done = await job(id);
    expect(done.status).toBe("cancelled");
    expect(done.metrics.epochs).toBeLessThan(20_000);
    expect((await app.request(`/v1/fine-tunes/${id}/weights`)).status).toBe(200);
  });

  it("edge async jobs run through the in-process consumer", async () => {
    const { store, submit, job, runtime } = await setup();
    const id = await submit({ ...seedRequest(64, { training: { epochs: 2 } }), mode: "async" });
    const claim = (await store.takeEdgeJob("consumer"))!;
    expect(await runClaimedJob(store.channel, claim, runtime, { placement: "edge" })).toBe("completed");
    expect(await job(id)).toMatchObject({ status: "succeeded", plan: { placement: "edge" } });
  });

  it("the node API needs a node token", async () => {
    const { app } = await setup();
    const res = await app.request("/v1/nodes/claim", json({ node: "x" }));
    expect(res.status).toBe(401);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
  });

  it("live SSE: a stream opened while the job runs receives every epoch, then done", async () => {
    const { node, submit, app, runtime } = await setup();
    const id = await submit(gpuRequest(5));
    const stream = Promise.resolve(app.request(`/v1/fine-tunes/${id}/events`)).then((r) => r.text());
    await new Promise((r) => setTimeout(r, 20));
    await runClaimedJob(node, (await node.claim("node-a"))!, runtime, { placement: "gpu-node" });
    const events = sseEvents(await stream);
    expect(events.filter((e) => e.event === "epoch").map((e) => e.data.epoch)).toEqual([1, 2, 3, 4, 5]);
    expect(events.at(-1)!.event).toBe("done");
  });
});

describe("the node protocol checks what nodes send", () => {
  it("an upload that is not safetensors is refused (422); a weights_key of another lease is refused (400)", async () => {
    const { node, submit, app } = await setup();
    const id = await submit(gpuRequest(1));
    const claim = (await node.claim("node-a"))!;
    const bad = await app.request(`/v1/nodes/jobs/${id}/weights?lease_id=${claim.leaseId}`, {
      method: "PUT", headers: { authorization: `Bearer ${NODE_TOKEN}`, "content-type": "application/octet-stream" }, body: new Uint8Array(8),
    });
    expect(bad.status).toBe(422);
    const stolen = await app.request(`/v1/nodes/jobs/${id}/complete`, {
      method: "POST", headers: { authorization: `Bearer ${NODE_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ lease_id: claim.leaseId, weights_key: "weights/ft_other/lease.safetensors", outcome: { failure: "x" } }),
    });
    expect(stolen.status).toBe(400);
    expect(((await stolen.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe("weights_key");
  });
});
