/**
 * A stopping GPU node hands a claimed job back (POST /v1/nodes/jobs/{id}/release): the job is
 * queued again as if the claim had not happened, and the next node trains it. The state machine,
 * then the protocol through the app with the in-process store.
 */
import { describe, expect, it } from "vitest";
import * as m from "../../src/jobs/state.js";
import { NodeClient } from "../../src/jobs/node-client.js";
import { runClaimedJob } from "../../src/jobs/runner.js";
import type { Job } from "../../src/schema/job.js";
import { job, policy } from "../jobs/fixtures.js";
import { seedRequest } from "../helpers.js";
import { NODE_TOKEN, testApp } from "./app.js";

const running = () => m.claim(m.createQueued(job, "o", "gpu-node", "inputs/x", 0, policy).state, "n1", 10, policy, "L1").state;

describe("release (state machine)", () => {
  it("queued again, the attempt not counted, dispatched again", () => {
    const r = m.release(running(), "L1", 20, policy);
    expect(r.accepted).toBe(true);
    expect(r.state).toMatchObject({ attempt: 0, lease: null, job: { status: "queued", started_at: null } });
    expect(r.state.unsaved.events.at(-1)!.data).toEqual({ status: "queued", attempt: 0 });
    expect(r.effects).toEqual({ enqueue: true, alarmAt: 1020 });
    // claimed again: attempt 1 once more, not 2
    expect(m.claim(r.state, "n2", 30, policy, "L2").state.attempt).toBe(1);
  });

  it("a stale lease changes nothing; a cancel asked meanwhile ends the job", () => {
    const state = running();
    expect(m.release(state, "other", 20, policy)).toMatchObject({ accepted: false, state });
    const cancelled = m.release(m.requestCancel(state, 15).state, "L1", 20, policy);
    expect(cancelled.state.job.status).toBe("cancelled");
  });
});

describe("POST /v1/nodes/jobs/{id}/release", () => {
  it("a node hands its claim back; another node then claims and trains it as attempt 1", async () => {
    const { app, runtime } = await testApp();
    const node = new NodeClient({ baseUrl: "http://edge.test", token: NODE_TOKEN, fetch: async (url, init) => app.request(url, init) });
    const res = await app.request("/v1/fine-tunes", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...seedRequest(32, { training: { epochs: 2 } }), mode: "async", placement: "gpu-node" }) });
    const { id } = (await res.json()) as { id: string };
    const first = (await node.claim("stopping-node"))!;
    expect(await node.release(id, first.leaseId)).toEqual({ accepted: true });
    expect(await node.release(id, first.leaseId)).toEqual({ accepted: false }); // once
    expect(await node.heartbeat(id, first.leaseId)).toEqual({ ok: false, cancel: false });
    expect(((await (await app.request(`/v1/fine-tunes/${id}`)).json()) as Job).status).toBe("queued");

    const second = (await node.claim("next-node"))!;
    expect(second).toMatchObject({ job: { id }, attempt: 1 });
    expect(await runClaimedJob(node, second, runtime, { placement: "gpu-node" })).toBe("completed");
    expect(((await (await app.request(`/v1/fine-tunes/${id}`)).json()) as Job).status).toBe("succeeded");
  });
});

describe("POST /v1/nodes/stop", () => {
  it("no claim is made for a stopped node, even with a job waiting; other nodes still claim", async () => {
    const { app } = await testApp();
    const node = new NodeClient({ baseUrl: "http://edge.test", token: NODE_TOKEN, fetch: async (url, init) => app.request(url, init) });
    await node.stop("stopping-node");
    const res = await app.request("/v1/fine-tunes", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...seedRequest(32, { training: { epochs: 1 } }), mode: "async", placement: "gpu-node" }) });
    const { id } = (await res.json()) as { id: string };
    expect(await node.claim("stopping-node", 50)).toBeNull();
    expect((await node.claim("other-node"))!.job.id).toBe(id);
  });
});
