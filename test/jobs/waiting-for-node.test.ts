/**
 * `waiting_for_node`: a GPU job queued while no node polls says so in its events and its hint;
 * the hint goes when a node claims it. The state machine, then the in-process store (the
 * Durable Object path is tested end to end in test/e2e/gpu-node.test.ts).
 */
import { describe, expect, it } from "vitest";
import * as m from "../../src/jobs/state.js";
import { MemoryJobStore } from "../../src/jobs/memory-store.js";
import type { Job } from "../../src/schema/job.js";

const policy: m.LeasePolicy = { leaseMs: 60_000, maxAttempts: 2 };
const job = (id: string): Job => ({
  id, object: "fine_tune", status: "queued", mode: "async",
  created_at: "2026-11-29T00:00:00.000Z", started_at: null, finished_at: null,
  plan: { params: 1, trainable_params: 1, flops: 1, memory_bytes: 1, steps: 1, placement: "gpu-node" },
  metrics: null, engine: null, error: null, weights_url: null,
});
const queued = (placement: "gpu-node" | "edge" = "gpu-node") => m.createQueued(job("ft_0123456789abcdef0123456789abcdef"), "o", placement, "inputs/x", 0, policy).state;

describe("waitingForNode (state machine)", () => {
  it("a queued GPU job gets the hint and one status event, once", () => {
    const r = m.waitingForNode(queued());
    expect(r.changed).toBe(true);
    expect(r.state.job.hint).toBe(m.WAITING_FOR_NODE_HINT);
    expect(r.state.unsaved.events.at(-1)).toEqual({ id: 2, event: "status", data: { status: "queued", attempt: 0, waiting_for_node: true, hint: m.WAITING_FOR_NODE_HINT } });
    const again = m.waitingForNode(r.state);
    expect(again.changed).toBe(false);
    expect(again.state.unsaved.events).toHaveLength(2);
  });

  it("not for edge jobs, nor for jobs no longer queued", () => {
    expect(m.waitingForNode(queued("edge")).changed).toBe(false);
    const running = m.claim(queued(), "n", 1, policy, "L").state;
    expect(m.waitingForNode(running).changed).toBe(false);
  });

  it("a claim clears the hint", () => {
    const waiting = m.waitingForNode(queued()).state;
    const running = m.claim(waiting, "n", 1, policy, "L").state;
    expect(running.job.status).toBe("running");
    expect("hint" in running.job).toBe(false);
  });
});

describe("waiting_for_node in the in-process store", () => {
  it("with no node ever polling, a submitted GPU job waits for a node; once a node polls, later jobs do not", async () => {
    const store = new MemoryJobStore(policy);
    const first = m.createQueued(job("ft_00000000000000000000000000000001"), "o", "gpu-node", "inputs/1", Date.now(), policy).state;
    await store.submit(first, new Uint8Array(1));
    const events = (await store.events(first.job.id, 0))!.events;
    expect(events.map((e) => e.data)).toEqual([{ status: "queued", attempt: 0 }, expect.objectContaining({ status: "queued", waiting_for_node: true })]);
    expect((await store.get(first.job.id))!.job.hint).toMatch(/No GPU node is polling/);

    const claim = await store.claimNext("node-1"); // a node polls (and takes the first)
    expect(claim!.job.id).toBe(first.job.id);
    expect(claim!.job.hint).toBeUndefined();
    const second = m.createQueued(job("ft_00000000000000000000000000000002"), "o", "gpu-node", "inputs/2", Date.now(), policy).state;
    await store.submit(second, new Uint8Array(1));
    expect((await store.get(second.job.id))!.job.hint).toBeUndefined();
    expect((await store.events(second.job.id, 0))!.events).toHaveLength(1);
  });
});
