/** The job state machine, transition by transition (no runtime). */
import { describe, expect, it } from "vitest";
import * as m from "../../src/jobs/state.js";
import { job, policy } from "./fixtures.js";

const queued = () => m.createQueued(job, "owner", "gpu-node", "inputs/x", 0, policy).state;
const outcome = { status: "succeeded" as const, metrics: { history: [], best_epoch: null, steps: 1, samples_per_second: 1, duration_ms: 1 }, plan: job.plan, engine: { kernel: "wasm-simd" as const, threads: 1, runtime: "node" as const } };

describe("job state machine", () => {
  it("create: queued, one status event, dispatch and an alarm", () => {
    const r = m.createQueued(job, "owner", "gpu-node", "inputs/x", 5, policy);
    expect(r.state.job.status).toBe("queued");
    expect(r.state.unsaved.events.map((e) => e.event)).toEqual(["status"]);
    expect(r.effects).toEqual({ enqueue: true, alarmAt: 1005 });
  });

  it("claim: only a queued job, once", () => {
    const a = m.claim(queued(), "n1", 10, policy, "L1");
    expect(a.lease).toEqual({ id: "L1", worker: "n1", expiresAt: 1010 });
    expect(a.state.job.status).toBe("running");
    expect(a.state.job.started_at).toBe(new Date(10).toISOString());
    expect(m.claim(a.state, "n2", 11, policy, "L2").lease).toBeNull();
  });

  it("progress: renews the lease, records each epoch once, refuses a stale lease", () => {
    const running = m.claim(queued(), "n1", 0, policy, "L1").state;
    const p = m.progress(running, "L1", [{ epoch: 1, train_loss: 1, lr: 0.1 }, { epoch: 2, train_loss: 0.5, lr: 0.1 }], 500, policy);
    expect(p.ok).toBe(true);
    expect(p.state.lease!.expiresAt).toBe(1500);
    const again = m.progress(p.state, "L1", [{ epoch: 2, train_loss: 0.5, lr: 0.1 }], 600, policy);
    expect(again.state.job.metrics!.history.map((h) => h.epoch)).toEqual([1, 2]);
    expect(m.progress(p.state, "other", [], 600, policy).ok).toBe(false);
  });

  it("complete: first completion wins; repeats and stale leases are not applied", () => {
    const running = m.claim(queued(), "n1", 0, policy, "L1").state;
    const done = m.complete(running, "L1", outcome, "weights/k", 50);
    expect(done.accepted).toBe(true);
    expect(done.state.job.status).toBe("succeeded");
    expect(done.state.unsaved.events.at(-1)!.event).toBe("done");
    expect(done.effects.alarmAt).toBeNull();
    const twice = m.complete(done.state, "L1", { failure: "again" }, null, 60);
    expect(twice.accepted).toBe(false);
    expect(twice.state).toBe(done.state);
  });

  it("complete: a cancel-requested job ends cancelled whatever the worker reports (issue 20, finding 3)", () => {
    const running = m.claim(queued(), "n1", 0, policy, "L1").state;
    const flagged = m.requestCancel(running, 10).state;
    const done = m.complete(flagged, "L1", outcome, "weights/k", 50);
    expect(done.accepted).toBe(true);
    expect(done.state.job.status).toBe("cancelled");
    expect(done.state.job.error).toMatchObject({ code: "cancelled" });
    expect(done.state.unsaved.events.at(-1)!.event).not.toBe("done");
    // a failure stays a failure
    expect(m.complete(flagged, "L1", { failure: "out of memory" }, null, 50).state.job.status).toBe("failed");
  });

  it("progress and complete: epochs must follow the last one reported and stay within the run's epochs (issue 20, finding 3)", () => {
    const e = (epoch: number) => ({ epoch, train_loss: 1, lr: 0.1 });
    const running = m.claim(m.createQueued(job, "owner", "gpu-node", "inputs/x", 0, policy, 3).state, "n1", 0, policy, "L1").state;
    const gap = m.progress(running, "L1", [e(2)], 100, policy);
    expect(gap.invalid).toEqual({ path: "epochs[0].epoch", message: expect.stringMatching(/last epoch reported is 0/) });
    expect(gap.state.job.metrics).toBeNull();
    expect(gap.state.lease!.expiresAt).toBe(1100); // renewed all the same
    const one = m.progress(running, "L1", [e(1)], 100, policy).state;
    const past = m.progress(one, "L1", [e(1), e(2), e(3), e(4)], 200, policy);
    expect(past.invalid).toEqual({ path: "epochs[3].epoch", message: expect.stringMatching(/past the run's 3 epochs/) });
    expect(past.state.job.metrics!.history.map((h) => h.epoch)).toEqual([1]);
    const tooLong = m.complete(one, "L1", { ...outcome, metrics: { ...outcome.metrics, history: [e(1), e(2), e(3), e(4)] } }, "weights/k", 300);
    expect(tooLong).toMatchObject({ accepted: false, invalid: { path: "outcome.metrics.history[3].epoch" } });
    expect(tooLong.state).toBe(one);
  });

  it("alarm: a lapsed lease requeues (new attempt), then fails after maxAttempts", () => {
    let s = m.claim(queued(), "n1", 0, policy, "L1").state;
    expect(m.onAlarm(s, 999, policy).state).toBe(s); // not lapsed yet
    const r1 = m.onAlarm(s, 1001, policy);
    expect(r1.state.job.status).toBe("queued");
    expect(r1.effects.enqueue).toBe(true);
    s = m.claim(r1.state, "n2", 1100, policy, "L2").state;
    expect(s.attempt).toBe(2);
    expect(s.job.metrics).toBeNull(); // the new attempt starts its history afresh
    const r2 = m.onAlarm(s, 2200, policy);
    expect(r2.state.job).toMatchObject({ status: "failed", error: { code: "worker_lost" } });
  });

  it("alarm: a queued edge job is re-sent every lease (a lost Queue message); a queued GPU-node job once, then no timer (issue 20, finding 5)", () => {
    const edge = m.createQueued(job, "owner", "edge", "inputs/x", 0, policy).state;
    expect(m.onAlarm(edge, 5000, policy).effects).toEqual({ enqueue: true, alarmAt: 6000 });
    expect(m.onAlarm(queued(), 5000, policy).effects).toEqual({ enqueue: true, alarmAt: null });
  });

  it("cancel: queued ends at once; running is flagged and told; a dead worker ends it cancelled", () => {
    expect(m.requestCancel(queued(), 1).state.job.status).toBe("cancelled");
    const running = m.claim(queued(), "n1", 0, policy, "L1").state;
    const flagged = m.requestCancel(running, 10).state;
    expect(flagged.job.status).toBe("running");
    expect(m.heartbeat(flagged, "L1", 20, policy).cancel).toBe(true);
    expect(m.onAlarm(flagged, 5000, policy).state.job.status).toBe("cancelled");
  });

  it("fail: ends a job unless it already ended", () => {
    const failed = m.fail(queued(), "poison", 1);
    expect(failed.state.job).toMatchObject({ status: "failed", error: { message: "poison" } });
    expect(m.fail(failed.state, "again", 2).changed).toBe(false);
  });

  it("event ids are dense and 1-based", () => {
    const running = m.claim(queued(), "n1", 0, policy, "L1").state;
    const p = m.progress(running, "L1", [{ epoch: 1, train_loss: 1, lr: 0.1 }], 1, policy).state;
    const done = m.complete(p, "L1", outcome, "k", 2).state;
    expect(done.unsaved.events.map((e) => e.id)).toEqual([1, 2, 3, 4, 5]);
    // drained in between, the ids carry on
    const drained = m.drain(m.progress(running, "L1", [{ epoch: 1, train_loss: 1, lr: 0.1 }], 1, policy).state);
    expect(drained.log.events.map((e) => e.id)).toEqual([1, 2, 3]);
    expect(m.complete(drained.state, "L1", outcome, "k", 2).state.unsaved.events.map((e) => e.id)).toEqual([4, 5]);
  });

  it("the stored state stays bounded however many epochs: history and events go to the logs (issue 20, finding 1)", () => {
    let s = m.drain(m.claim(queued(), "n1", 0, policy, "L1").state).state;
    const sizes: number[] = [];
    const logged: number[] = [];
    for (let epoch = 1; epoch <= 2000; epoch++) {
      const { state, log } = m.drain(m.progress(s, "L1", [{ epoch, train_loss: 0.5, lr: 0.1 }], epoch, policy).state);
      s = state;
      logged.push(...log.history.map((h) => h.epoch));
      if (epoch === 1500 || epoch === 2000) sizes.push(JSON.stringify(s).length);
    }
    expect(sizes[1]).toBeLessThanOrEqual(sizes[0]! + 20); // O(1) per epoch: no growth with the run
    expect(logged).toEqual(Array.from({ length: 2000 }, (_, i) => i + 1));
    expect(s.eventCount).toBe(2 + 2000);
    expect(s.job.metrics).toMatchObject({ epochs: 2000, history_truncated: true });
    expect(s.job.metrics!.history.map((h) => h.epoch)).toEqual(Array.from({ length: 100 }, (_, i) => 1901 + i));
  });

  it("complete logs the epochs the worker ran but had not reported (coalesced reports), once", () => {
    const running = m.drain(m.claim(queued(), "n1", 0, policy, "L1").state).state;
    const reported = m.drain(m.progress(running, "L1", [{ epoch: 1, train_loss: 1, lr: 0.1 }], 1, policy).state).state;
    const history = [1, 2, 3].map((epoch) => ({ epoch, train_loss: 1 / epoch, lr: 0.1 }));
    const { state, log } = m.drain(m.complete(reported, "L1", { ...outcome, metrics: { ...outcome.metrics, history } }, "k", 2).state);
    expect(log.history.map((h) => h.epoch)).toEqual([2, 3]);
    expect(log.events.map((e) => e.event)).toEqual(["epoch", "epoch", "status", "done"]);
    expect(state.job.metrics).toMatchObject({ epochs: 3, history_truncated: false });
  });

  it("a new attempt resets the stored history", () => {
    const s = m.drain(m.progress(m.claim(queued(), "n1", 0, policy, "L1").state, "L1", [{ epoch: 1, train_loss: 1, lr: 0.1 }], 1, policy).state).state;
    const again = m.claim(m.onAlarm(s, 5000, policy).state, "n2", 5001, policy, "L2").state;
    expect(again.unsaved.resetHistory).toBe(true);
    expect(again.unsaved.history).toEqual([]);
  });
});
