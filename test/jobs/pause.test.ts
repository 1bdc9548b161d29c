/** The pause, resume and resumedFrom transitions of the job state machine (src/jobs/state.ts). */
import { describe, expect, it } from "vitest";
import { claim, complete, createQueued, heartbeat, onAlarm, requestCancel, requestPause, resumedFrom, resumePaused } from "../../src/jobs/state.js";
import type { FineTuneResult } from "../../src/schema/result.js";
import { job, policy } from "./fixtures.js";

const queued = () => createQueued(job, "owner", "gpu-node", "inputs/x", 0, policy, 4).state;
const running = () => claim(queued(), "node", 0, policy, "lease-1").state;
const epochs = (n: number) => Array.from({ length: n }, (_, i) => ({ epoch: i + 1, train_loss: 1 / (i + 1), lr: 0.1 }));
const pausedResult = (n: number): Omit<FineTuneResult, "weights" | "id"> => ({
  status: "paused",
  metrics: { history: epochs(n), best_epoch: null, steps: n, samples_per_second: 1, duration_ms: 1 },
  plan: { ...job.plan },
  engine: { kernel: "wasm-simd", threads: 1, runtime: "node" },
});

describe("pause and resume", () => {
  it("a queued job pauses at once and is not dispatched; resume queues it again", () => {
    const paused = requestPause(queued(), 10);
    expect(paused.state.job.status).toBe("paused");
    expect(paused.effects).toEqual({ alarmAt: null });
    expect(onAlarm(paused.state, 10_000, policy).effects.enqueue).toBeUndefined();
    expect(claim(paused.state, "node", 20, policy, "l").lease).toBeNull();
    const resumed = resumePaused(paused.state, 30, policy);
    expect(resumed.state.job.status).toBe("queued");
    expect(resumed.effects.enqueue).toBe(true);
    expect(resumePaused(resumed.state, 40, policy).changed).toBe(false);
  });

  it("a running job is told at its next heartbeat, and completes as paused: not final, no weights", () => {
    const asked = requestPause(running(), 10);
    expect(asked.state.job.status).toBe("running");
    expect(heartbeat(asked.state, "lease-1", 20, policy)).toMatchObject({ ok: true, cancel: false, pause: true });
    expect(heartbeat(running(), "lease-1", 20, policy)).not.toHaveProperty("pause");
    const done = complete(asked.state, "lease-1", pausedResult(2), null, 30);
    expect(done.accepted).toBe(true);
    expect(done.state.job).toMatchObject({ status: "paused", finished_at: null, weights_url: null });
    expect(done.state.job.metrics?.history.map((h) => h.epoch)).toEqual([1, 2]);
    expect(done.state.pauseRequested).toBe(false);
    expect(done.state.lease).toBeNull();
  });

  it("cancel ends a paused job; retries count afresh after a resume", () => {
    const paused = complete(requestPause(running(), 10).state, "lease-1", pausedResult(1), null, 20).state;
    expect(requestCancel(paused, 30).state.job.status).toBe("cancelled");
    // attempt 1 was used before the pause; maxAttempts (2) counts from the resume
    const again = claim(resumePaused(paused, 30, policy).state, "node", 40, policy, "lease-2").state;
    expect(again.attempt).toBe(2);
    const lapsed = onAlarm(again, 40 + policy.leaseMs + 1, policy);
    expect(lapsed.state.job.status).toBe("queued");
  });

  it("resumedFrom records the checkpoint's history as the attempt's first epochs and says so in a status event", () => {
    const r = resumedFrom(running(), "lease-1", 3, epochs(3), 10, policy);
    expect(r.ok).toBe(true);
    expect(r.state.job.metrics?.history.map((h) => h.epoch)).toEqual([1, 2, 3]);
    expect(r.state.unsaved.events.at(-1)).toMatchObject({ event: "status", data: { status: "running", attempt: 1, resumed_from_epoch: 3 } });
    expect(resumedFrom(running(), "stale", 3, epochs(3), 10, policy).ok).toBe(false);
  });
});
