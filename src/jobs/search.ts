/**
 * A search job's orchestration as pure transitions (issue 15, item 4; docs/strategy.md,
 * "Searches"), run by the same stores as the job state machine (state.ts): the parent is an
 * async job that trains nothing itself; each trial is an async job of its own (`parent` set)
 * that the parent creates when a slot is free, at most `parallel` at once. A trial's every
 * change reaches the parent (`trialChanged`), which records it, emits a `trial` event, and
 * names the trials to start next; once every trial has ended, the store copies the best
 * trial's weights to the parent (`finishSearch`).
 */
import type { Job, JobMetrics } from "../schema/job.js";
import type { Plan } from "../schema/result.js";
import type { SearchSpec, Trial } from "../schema/search.js";
import { isFinal, queuedJob } from "./job.js";
import { emit, setStatus, type JobState } from "./state.js";

/** What the parent keeps of each trial besides its public entry (job.trials). */
export interface TrialSlot {
  id: string;
  placement: "edge" | "gpu-node";
  plan: Plan;
  /** The trial's training.epochs. */
  epochs: number;
  /** Its run restores the best epoch's weights (early_stopping.restore_best_weights): its metric is that epoch's. */
  restoresBest: boolean;
  /** Where its weights are stored, once it has ended with weights. */
  weightsKey: string | null;
}

/** A search job's own part of its state. */
export interface SearchRun {
  metric: SearchSpec["metric"];
  mode: "min" | "max";
  parallel: number;
  slots: TrialSlot[];
  /** Successive halving: its rungs' recorded metrics, by rung epoch then trial id. */
  asha?: { grace: number; factor: number; rungs: Record<string, Record<string, number>> };
}

/**
 * The rungs of a trial of `epochs` epochs: grace · factor^k for k = 0, 1, ... below its last
 * epoch (a trial at its last epoch has finished; Ray Tune's milestones min_t · rf^k, max_t not stopped at).
 *
 * @example
 * ```ts
 * rungsOf(1, 3, 20); // [1, 3, 9]
 * ```
 */
export function rungsOf(grace: number, factor: number, epochs: number): number[] {
  const rungs: number[] = [];
  for (let r = grace; r < epochs; r *= factor) rungs.push(r);
  return rungs;
}

/**
 * numpy.percentile's default (linear) interpolation: the q-th percentile of `values`.
 *
 * @example
 * ```ts
 * percentile([1, 2, 3, 4], 50); // 2.5
 * ```
 */
export function percentile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const position = (q / 100) * (sorted.length - 1);
  const lo = Math.floor(position);
  const hi = Math.ceil(position);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (position - lo);
}

/**
 * ASHA's decisions for a trial that has reported epochs up to its last (Li et al. 2018,
 * "A System for Massively Parallel Hyperparameter Tuning", algorithm 2 as Ray Tune's
 * AsyncHyperBandScheduler runs it, `_Bracket.on_result`): at each rung the trial has reached and
 * not been recorded at, in order, the cutoff is the (1 − 1/factor)·100th percentile of the
 * rewards recorded there before it (reward: the metric, negated for mode min), none when none
 * were; a reward below the cutoff stops the trial (`canStop`: it is still running). The trial's
 * reward is recorded either way.
 * Returns the updated rungs, and the rung it was stopped at, if any.
 */
function ashaStep(
  asha: NonNullable<SearchRun["asha"]>,
  mode: SearchRun["mode"],
  trialId: string,
  epochs: number,
  values: ReadonlyMap<number, number>,
  canStop: boolean,
): { rungs: NonNullable<SearchRun["asha"]>["rungs"]; stoppedAt: number | null } {
  let rungs = asha.rungs;
  const last = Math.max(0, ...values.keys());
  for (const rung of rungsOf(asha.grace, asha.factor, epochs)) {
    if (rung > last) break;
    const recorded = rungs[rung] ?? {};
    const metric = values.get(rung);
    if (trialId in recorded || metric === undefined) continue;
    const reward = mode === "max" ? metric : -metric;
    const before = Object.values(recorded);
    const cutoff = before.length === 0 ? null : percentile(before, (1 - 1 / asha.factor) * 100);
    rungs = { ...rungs, [rung]: { ...recorded, [trialId]: reward } };
    if (canStop && cutoff !== null && reward < cutoff) return { rungs, stoppedAt: rung };
  }
  return { rungs, stoppedAt: null };
}

/**
 * Where a search job keeps its copy of the best trial's weights (under its own prefix: it
 * outlives the trial's deletion).
 *
 * @example
 * ```ts
 * searchWeightsKeyOf("ft_1"); // "weights/ft_1/best.safetensors"
 * ```
 */
export function searchWeightsKeyOf(id: string): string {
  return `weights/${id}/best.safetensors`;
}

/**
 * A trial's ranking metric and the epoch it is from: the epoch whose weights the trial returns
 * (the best epoch when its run restores it, else its last), null before it has one.
 *
 * @example
 * ```ts
 * trialMetric(job.metrics, "val_loss", false); // { metric: 0.12, epoch: 8 }
 * ```
 */
export function trialMetric(metrics: JobMetrics | null, metric: SearchRun["metric"], restoresBest: boolean): { metric: number | null; epoch: number | null } {
  const last = metrics?.history.at(-1);
  if (!metrics || !last) return { metric: null, epoch: null };
  const epoch = restoresBest && metrics.best_epoch !== null ? metrics.best_epoch : last.epoch;
  const value = metrics.history.find((h) => h.epoch === epoch)?.[metric];
  return { metric: typeof value === "number" && Number.isFinite(value) ? value : null, epoch };
}

/** Whether a trial's entry has ended (pending has not begun). */
const ended = (status: Trial["status"]) => status !== "pending" && isFinal(status);

const better = (mode: SearchRun["mode"], a: number, b: number) => (mode === "min" ? a < b : a > b);

/**
 * The succeeded trial with the best metric (the first of equals), or null.
 *
 * @example
 * ```ts
 * bestTrial(job.trials, "min")?.id;
 * ```
 */
export function bestTrial(trials: readonly Trial[], mode: SearchRun["mode"]): Trial | null {
  let best: Trial | null = null;
  for (const t of trials) if (t.status === "succeeded" && t.metric !== null && (best === null || better(mode, t.metric, best.metric!))) best = t;
  return best;
}

/** Starts pending trials while fewer than `parallel` are queued or running; returns their ids. */
function fill(state: JobState): { state: JobState; start: string[] } {
  const trials = state.job.trials!.map((t) => ({ ...t }));
  let active = trials.filter((t) => t.status === "queued" || t.status === "running").length;
  const start: string[] = [];
  for (const t of trials) {
    if (active >= state.search!.parallel) break;
    if (t.status !== "pending") continue;
    t.status = "queued";
    start.push(t.id);
    active++;
  }
  return { state: start.length === 0 ? state : { ...state, job: { ...state.job, trials } }, start };
}

/**
 * A new search job, running from the start (it trains nothing itself), its first `parallel`
 * trials to be created now (`start`).
 *
 * @example
 * ```ts
 * const { state, start } = createSearch(job, owner, run, Date.now());
 * for (const id of start) await createTrial(id);
 * ```
 */
export function createSearch(job: Job, owner: string, run: SearchRun, inputKey: string, now: number): { state: JobState; start: string[] } {
  const at = new Date(now).toISOString();
  let state: JobState = {
    job: { ...job, status: "queued", best_trial: null },
    owner,
    placement: "edge",
    inputKey,
    eventCount: 0,
    unsaved: { events: [], history: [], resetHistory: false },
    attempt: 0,
    lease: null,
    cancelRequested: false,
    weightsKey: null,
    search: run,
  };
  state = emit(state, "status", { status: "queued", attempt: 0 });
  state = setStatus(state, "running", at);
  return fill(state);
}

/**
 * The parent learns of a trial's change (its status, its epochs): the trial's entry is updated
 * and a `trial` event emitted; successive halving may stop it (`stop`: the store cancels it);
 * when it has ended, the next pending trials start (`start`); when
 * every trial has ended, `finish` names the best trial and where its weights are (the store
 * copies them, then calls finishSearch). A search that has ended only records the change.
 *
 * @example
 * ```ts
 * const r = trialChanged(parent, trialJob, trialWeightsKey, Date.now());
 * for (const id of r.start) await createTrial(id);
 * if (r.finish) await copyWeights(r.finish.weightsKey, searchWeightsKeyOf(parent.job.id));
 * ```
 */
export function trialChanged(
  state: JobState,
  trial: Job,
  weightsKey: string | null,
  now: number,
): { state: JobState; start: string[]; stop: string[]; finish: { best: string; weightsKey: string } | null | undefined; changed: boolean } {
  const unchanged = { state, start: [], stop: [], finish: undefined, changed: false };
  const run0 = state.search;
  const index = state.job.trials?.findIndex((t) => t.id === trial.id) ?? -1;
  if (!run0 || index < 0) return unchanged;
  let run = run0;
  const slot = run.slots[index]!;
  const before = state.job.trials![index]!;
  // a trial's entry only moves forward: a pending trial is created by the parent, never reported before
  if (ended(before.status) || before.status === "pending") return unchanged;
  const { metric, epoch } = trialMetric(trial.metrics, run.metric, slot.restoresBest);
  const entry: Trial = { ...before, status: trial.status, metric, epoch };
  if (entry.status === before.status && entry.epoch === before.epoch && entry.metric === before.metric) return unchanged;
  const stop: string[] = [];
  // a trial that reports its rungs only with its completion (short epochs are reported together) is recorded, not stopped
  if (run.asha && (trial.status === "running" || trial.status === "succeeded") && before.stopped_at_rung === undefined && !isFinal(state.job.status)) {
    const values = new Map<number, number>();
    for (const h of trial.metrics?.history ?? []) {
      const v = h[run.metric];
      if (typeof v === "number" && Number.isFinite(v)) values.set(h.epoch, v);
    }
    const step = ashaStep(run.asha, run.mode, trial.id, slot.epochs, values, trial.status === "running");
    run = { ...run, asha: { ...run.asha, rungs: step.rungs } };
    if (step.stoppedAt !== null) {
      entry.stopped_at_rung = step.stoppedAt;
      stop.push(trial.id);
    }
  }
  const trials = state.job.trials!.map((t, i) => (i === index ? entry : t));
  const slots = ended(entry.status) ? run.slots.map((s, i) => (i === index ? { ...s, weightsKey } : s)) : run.slots;
  const best = bestTrial(trials, run.mode);
  let next: JobState = { ...state, search: { ...run, slots }, job: { ...state.job, trials, best_trial: best?.id ?? null } };
  if (isFinal(state.job.status)) return { state: next, start: [], stop: [], finish: undefined, changed: true };
  next = emit(next, "trial", entry);
  const filled = fill(next);
  return { state: filled.state, start: filled.start, stop, finish: finishOf(filled.state), changed: true };
}

/**
 * Whether the search is ready to end: undefined while a trial has not ended; else the best
 * trial and its weights' key, or null when no trial succeeded with a metric.
 *
 * @example
 * ```ts
 * if (finishOf(state) !== undefined) await copyBestWeightsAndFinish();
 * ```
 */
export function finishOf(state: JobState): { best: string; weightsKey: string } | null | undefined {
  if (isFinal(state.job.status) || !state.job.trials!.every((t) => ended(t.status))) return undefined;
  const best = bestTrial(state.job.trials!, state.search!.mode);
  const key = best ? state.search!.slots.find((s) => s.id === best.id)?.weightsKey : null;
  return best && key ? { best: best.id, weightsKey: key } : null;
}

/**
 * Ends the search once every trial has: succeeded with the best trial's metrics, engine and
 * weights (copied to `weightsKey`), or failed when no trial succeeded with a metric. Nothing
 * changes when the search has already ended.
 *
 * @example
 * ```ts
 * finishSearch(parent, bestTrialJob, searchWeightsKeyOf(parent.job.id), Date.now());
 * ```
 */
export function finishSearch(state: JobState, best: Job | null, weightsKey: string | null, now: number): { state: JobState; changed: boolean } {
  if (isFinal(state.job.status) || finishOf(state) === undefined) return { state, changed: false };
  const at = new Date(now).toISOString();
  if (!best || weightsKey === null) {
    const failed = state.job.trials!.filter((t) => t.status !== "succeeded").length;
    const error = { code: "no_trial_succeeded", message: `no trial succeeded with a ${state.search!.metric} (${failed} of ${state.job.trials!.length} did not succeed)` };
    return { state: setStatus(state, "failed", at, { error, best_trial: null }), changed: true };
  }
  const next = setStatus({ ...state, weightsKey }, "succeeded", at, {
    best_trial: best.id,
    metrics: best.metrics,
    engine: best.engine,
    plan: best.plan,
    error: null,
    ...(best.adapter_config ? { adapter_config: best.adapter_config } : {}),
    weights_url: `/v1/fine-tunes/${state.job.id}/weights`,
  });
  return { state: next, changed: true };
}

/**
 * The owner cancels the search: it ends cancelled at once, its pending trials with it; the
 * trials that are queued or running are to be cancelled by the store (`cancel`).
 *
 * @example
 * ```ts
 * const r = cancelSearch(parent, Date.now());
 * for (const id of r.cancel) await store.cancel(id);
 * ```
 */
export function cancelSearch(state: JobState, now: number): { state: JobState; cancel: string[]; changed: boolean } {
  if (isFinal(state.job.status)) return { state, cancel: [], changed: false };
  const cancel = state.job.trials!.filter((t) => t.status === "queued" || t.status === "running").map((t) => t.id);
  const trials = state.job.trials!.map((t) => (t.status === "pending" ? { ...t, status: "cancelled" as const } : t));
  const next = setStatus({ ...state, cancelRequested: true, job: { ...state.job, trials } }, "cancelled", new Date(now).toISOString());
  return { state: next, cancel, changed: true };
}

/**
 * A trial's queued job, created by its parent when a slot is free: its own id, `parent` set,
 * its own plan and placement.
 *
 * @example
 * ```ts
 * const job = trialJob(parent, slot, new Date().toISOString());
 * ```
 */
export function trialJob(parent: JobState, slot: TrialSlot, createdAt: string): Job {
  return queuedJob(slot.id, createdAt, slot.plan, { parent: parent.job.id });
}
