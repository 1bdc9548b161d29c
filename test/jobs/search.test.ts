/**
 * A search job's transitions (src/jobs/search.ts), without a runtime: the parallel bound, the
 * ranking, the end, cancelling, and successive halving (ASHA) as Ray Tune's AsyncHyperBandScheduler.
 */
import { describe, expect, it } from "vitest";
import type { Job } from "../../src/schema/job.js";
import { bestTrial, cancelSearch, createSearch, finishOf, finishSearch, percentile, rungsOf, trialChanged, trialMetric, type SearchRun } from "../../src/jobs/search.js";
import type { EpochMetrics } from "../../src/schema/result.js";

const plan = { params: 10, trainable_params: 10, flops: 1, memory_bytes: 1, steps: 1, placement: "edge" as const, groups: [] };
const ids = ["ft_a", "ft_b", "ft_c", "ft_d"];

function parent(run: Partial<SearchRun> = {}, count = 4) {
  const job: Job = {
    id: "ft_search", object: "fine_tune", status: "queued", mode: "async", created_at: "2026-12-01T00:00:00.000Z", started_at: null, finished_at: null,
    plan, metrics: null, engine: null, error: null, weights_url: null,
    trials: ids.slice(0, count).map((id, i) => ({ id, params: { "training.optimizer.lr": i }, status: "pending", metric: null, epoch: null })),
  };
  const slots = ids.slice(0, count).map((id) => ({ id, placement: "edge" as const, plan, epochs: 4, restoresBest: false, weightsKey: null }));
  return createSearch(job, "owner", { metric: "val_loss", mode: "min", parallel: 2, slots, ...run }, "inputs/ft_search.safetensors", 0);
}

function trial(id: string, status: Job["status"], losses: number[]): Job {
  const history: EpochMetrics[] = losses.map((v, i) => ({ epoch: i + 1, train_loss: v, val_loss: v, lr: 0.1 }));
  return {
    id, object: "fine_tune", status, mode: "async", created_at: "", started_at: null, finished_at: null, plan, engine: null, error: null, weights_url: null, parent: "ft_search",
    metrics: { history, epochs: history.length, history_truncated: false, best_epoch: null, steps: 1, samples_per_second: 1, duration_ms: 1 },
  };
}

describe("search transitions", () => {
  it("starts `parallel` trials, then one per trial that ends; ranks by the metric; ends with the best one's key", () => {
    const created = parent();
    expect(created.start).toEqual(["ft_a", "ft_b"]);
    let s = created.state;
    expect(s.job.status).toBe("running");
    const step = (job: Job, key: string | null = null) => {
      const r = trialChanged(s, job, key, 1);
      s = r.state;
      return r;
    };
    expect(step(trial("ft_a", "running", [0.9])).start).toEqual([]);
    expect(step(trial("ft_a", "running", [0.9])).changed).toBe(false); // nothing new
    expect(step(trial("ft_a", "succeeded", [0.9, 0.5, 0.4, 0.3]), "w/a").start).toEqual(["ft_c"]);
    expect(s.job.trials![0]).toMatchObject({ status: "succeeded", metric: 0.3, epoch: 4 });
    expect(s.job.best_trial).toBe("ft_a");
    expect(step(trial("ft_b", "diverged", [Number.NaN])).start).toEqual(["ft_d"]);
    step(trial("ft_c", "succeeded", [0.8, 0.2]), "w/c");
    expect(s.job.best_trial).toBe("ft_c");
    const last = step(trial("ft_d", "failed", []));
    expect(last.finish).toEqual({ best: "ft_c", weightsKey: "w/c" });
    const ended = finishSearch(s, trial("ft_c", "succeeded", [0.8, 0.2]), "weights/ft_search/best.safetensors", 2);
    expect(ended.state.job).toMatchObject({ status: "succeeded", best_trial: "ft_c", weights_url: "/v1/fine-tunes/ft_search/weights" });
    expect(ended.state.weightsKey).toBe("weights/ft_search/best.safetensors");
    expect(finishSearch(ended.state, null, null, 3).changed).toBe(false);
    const events = ended.state.unsaved.events.map((e) => e.event);
    expect(events.filter((e) => e === "trial")).toHaveLength(5);
    expect(events.at(-1)).toBe("done");
  });

  it("no trial succeeded with a metric: the search fails", () => {
    let s = parent({}, 2).state;
    for (const id of ["ft_a", "ft_b"]) s = trialChanged(s, trial(id, "failed", []), null, 1).state;
    expect(finishOf(s)).toBeNull();
    expect(finishSearch(s, null, null, 2).state.job).toMatchObject({ status: "failed", error: { code: "no_trial_succeeded" } });
  });

  it("cancel: pending trials end with the search; queued and running ones are to be cancelled; later reports are recorded without events", () => {
    const r = cancelSearch(parent().state, 1);
    expect(r.cancel).toEqual(["ft_a", "ft_b"]);
    expect(r.state.job.status).toBe("cancelled");
    expect(r.state.job.trials!.map((t) => t.status)).toEqual(["queued", "queued", "cancelled", "cancelled"]);
    const later = trialChanged(r.state, trial("ft_a", "cancelled", [1]), null, 2);
    expect(later.state.job.trials![0]!.status).toBe("cancelled");
    expect(later.start).toEqual([]);
    expect(later.state.unsaved.events.length).toBe(r.state.unsaved.events.length);
  });

  it("the metric of a run that restores its best epoch is that epoch's; max mode ranks the highest", () => {
    const job = trial("ft_a", "succeeded", [0.5, 0.2, 0.4]);
    job.metrics!.best_epoch = 2;
    expect(trialMetric(job.metrics, "val_loss", true)).toEqual({ metric: 0.2, epoch: 2 });
    expect(trialMetric(job.metrics, "val_loss", false)).toEqual({ metric: 0.4, epoch: 3 });
    const t = (id: string, metric: number) => ({ id, params: {}, status: "succeeded" as const, metric, epoch: 1 });
    expect(bestTrial([t("a", 1), t("b", 3), t("c", 3)], "max")!.id).toBe("b");
    expect(bestTrial([t("a", 1), t("b", 3)], "min")!.id).toBe("a");
  });
});

describe("successive halving (ASHA)", () => {
  it("rungs are grace · factor^k below the last epoch; the cutoff is numpy.percentile's (linear)", () => {
    expect(rungsOf(1, 3, 20)).toEqual([1, 3, 9]);
    expect(rungsOf(2, 2, 8)).toEqual([2, 4]);
    expect(rungsOf(5, 2, 5)).toEqual([]);
    // numpy.percentile([1,2,3,4], 50), ([3,-1.5,2.25], 200/3), ([0.5], 50), ([5,1,4,2,3], 75)
    expect(percentile([1, 2, 3, 4], 50)).toBe(2.5);
    expect(percentile([3, -1.5, 2.25], (1 - 1 / 3) * 100)).toBeCloseTo(2.5, 12);
    expect(percentile([0.5], 50)).toBe(0.5);
    expect(percentile([5, 1, 4, 2, 3], 75)).toBe(4);
  });

  it("the first trial at a rung goes on; a later one worse than the cutoff of those before it is stopped there; one that completed is only recorded", () => {
    let s = parent({ asha: { grace: 1, factor: 2, rungs: {} } }).state;
    const step = (job: Job) => {
      const r = trialChanged(s, job, null, 1);
      s = r.state;
      return r;
    };
    expect(step(trial("ft_a", "running", [0.5])).stop).toEqual([]); // first at rung 1
    expect(step(trial("ft_b", "running", [0.6])).stop).toEqual(["ft_b"]); // reward -0.6 < cutoff -0.5
    expect(s.job.trials![1]!.stopped_at_rung).toBe(1);
    expect(step(trial("ft_b", "running", [0.6, 0.1])).stop).toEqual([]); // decided once
    expect(s.search!.asha!.rungs).toEqual({ 1: { ft_a: -0.5, ft_b: -0.6 } });
    expect(step(trial("ft_a", "running", [0.5, 0.4])).stop).toEqual([]); // first at rung 2
    // ft_c: rung 1 cutoff = percentile([-0.5, -0.6], 50) = -0.55; -0.52 passes; rung 2 cutoff -0.4: -0.45 stops
    step(trial("ft_b", "cancelled", [0.6, 0.1]));
    expect(step(trial("ft_c", "running", [0.52, 0.45])).stop).toEqual(["ft_c"]);
    expect(s.job.trials![2]!.stopped_at_rung).toBe(2);
    // ft_d completes before any report reached the parent: recorded at both rungs, never stopped
    step(trial("ft_a", "succeeded", [0.5, 0.4, 0.3, 0.2]));
    expect(step(trial("ft_d", "succeeded", [0.9, 0.9, 0.9, 0.9])).stop).toEqual([]);
    expect(s.search!.asha!.rungs[2]).toMatchObject({ ft_d: -0.9 });
    expect(s.job.trials![3]!.stopped_at_rung).toBeUndefined();
  });
});
