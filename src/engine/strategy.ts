/**
 * The automatic choices of a run (docs/strategy.md): the loss from the targets, the batch size
 * from the memory budget, and the learning rate from a range test.
 *
 *   chooseLoss         "loss": {"type": "auto"}   (prepareRun)
 *   batchSizeCandidates "batch_size": "auto"      (prepareRun tries them against the plan)
 *   lrRangeTest + suggestLearningRate  "lr": "auto", onecycle "max_lr": "auto"   (the run, train.ts)
 *
 * The range test reproduces fastai's `Learner.lr_find` (fastai/callback/schedule.py: LRFinder,
 * AvgSmoothLoss, `steep`, `minimum`), after Smith, "Cyclical Learning Rates for Training Neural
 * Networks" (2015, arXiv:1506.01186), section 3.3.
 */
import type { Table } from "../formats/dataset.js";
import type { LossSpec } from "../schema/request.js";
import type { TrainingBackend } from "./backend.js";
import type { OutputLayout, PreparedRun } from "./prepare.js";
import { identityOrder, MT19937, mixSeed, shuffleInPlace } from "./rng.js";

/**
 * The range test's settings, fastai's `lr_find` defaults: start_lr 1e-7, end_lr 10, num_it 100,
 * stop_div (a smoothed loss above 4x its minimum), AvgSmoothLoss beta 0.98.
 *
 * @example
 * ```ts
 * planRun(request, model, output, data, { lrFinderSteps: LR_FINDER.steps }); // the plan counts 100 steps
 * ```
 */
export const LR_FINDER = {
  startLr: 1e-7,
  endLr: 10,
  /** At most this many optimizer steps (fastai's num_it); the plan counts all of them. */
  steps: 100,
  /** The smoothing of AvgSmoothLoss: an exponential moving average with bias correction. */
  beta: 0.98,
  /** The test stops once the smoothed loss exceeds this multiple of its minimum (stop_div). */
  divergeFactor: 4,
} as const;

/**
 * The learning rate of range-test step `i` (0-based): fastai's SchedExp at pos = i / num_it,
 * start * (end / start) ** pos. Step 0 runs at 1e-7, step 50 at 1e-3, step 99 at 10 ** 0.92 (pos 0.99).
 *
 * @example
 * ```ts
 * rangeTestLr(0); // 1e-7
 * rangeTestLr(50); // 1e-3
 * ```
 */
export function rangeTestLr(i: number): number {
  return LR_FINDER.startLr * (LR_FINDER.endLr / LR_FINDER.startLr) ** (i / LR_FINDER.steps);
}

/**
 * What a range test recorded: each step's learning rate and smoothed loss.
 *
 * @example
 * ```ts
 * const curve: RangeTestCurve = { lrs: [1e-7, 1.2e-7], losses: [2.31, 2.31] };
 * ```
 */
export interface RangeTestCurve {
  lrs: number[];
  losses: number[];
}

/**
 * The range test's report (metrics.lr_finder).
 *
 * @example
 * ```ts
 * const report: LrFinderReport = { ...curve, ...suggestLearningRate(curve) };
 * ```
 */
export interface LrFinderReport extends RangeTestCurve {
  /** The suggested learning rate: what the run then trained with. */
  lr: number;
  /** "steep": the steepest descent; "minimum": a tenth of the lowest loss's rate; "start": no step finished. */
  method: "steep" | "minimum" | "start";
}

/**
 * Suggests a learning rate from a range test's curve, as fastai's lr_find does with
 * suggest_funcs=(steep,): the points recorded from num_it // 10 up to the last 5 are kept
 * (`lrs[num_it//10:-5]`), and the suggestion is the rate at the steepest descent of the smoothed
 * loss against log(lr) (`steep`: argmin of diff(losses) / diff(log(lrs))). When that window has
 * fewer than two points, or the loss never descends in it, it falls back to a tenth of the rate
 * at the lowest loss (`minimum`), over the window, or over the whole curve when the window is empty.
 *
 * @example
 * ```ts
 * suggestLearningRate({ lrs, losses }); // { lr: 0.0063, method: "steep" }
 * ```
 */
export function suggestLearningRate(curve: RangeTestCurve, numIt: number = LR_FINDER.steps): { lr: number; method: LrFinderReport["method"] } {
  const n = curve.losses.length;
  if (n === 0) return { lr: LR_FINDER.startLr, method: "start" };
  const from = Math.floor(numIt / 10);
  const to = n - 5; // python's [from:-5]
  const lrs = from < to ? curve.lrs.slice(from, to) : [];
  const losses = from < to ? curve.losses.slice(from, to) : [];
  if (lrs.length >= 2) {
    let steepest = 0;
    let slope = Infinity;
    for (let i = 0; i + 1 < lrs.length; i++) {
      const g = (losses[i + 1]! - losses[i]!) / (Math.log(lrs[i + 1]!) - Math.log(lrs[i]!));
      if (g < slope) {
        slope = g; // torch.argmin: the first of equal minima
        steepest = i;
      }
    }
    if (slope < 0) return { lr: lrs[steepest]!, method: "steep" };
  }
  const pool = lrs.length > 0 ? { lrs, losses } : curve;
  let lowest = 0;
  for (let i = 1; i < pool.losses.length; i++) if (pool.losses[i]! < pool.losses[lowest]!) lowest = i;
  return { lr: pool.lrs[lowest]! / 10, method: "minimum" };
}

/**
 * Runs the learning-rate range test on a backend that holds a copy of the starting weights (the
 * caller closes it; the run then starts again from the original weights). Step i trains one
 * batch at rangeTestLr(i), in the order of the request's shuffle and drop_last over as many
 * passes as it takes (fastai fits num_it // len(dl) + 1 epochs), with its own seeded stream so
 * that the run after it is the run with that learning rate written in. After each step the loss
 * is smoothed as AvgSmoothLoss does (val = beta * val + (1 - beta) * loss; reported
 * val / (1 - beta^count)) and recorded; the test stops after `steps` steps, once the smoothed
 * loss exceeds 4x its minimum (that point is recorded, as fastai's Recorder does), at a
 * non-finite loss (not recorded, as lr_find drops NaN), or when `signal` aborts.
 *
 * @example
 * ```ts
 * const curve = await lrRangeTest(backend, prepared);
 * const { lr, method } = suggestLearningRate(curve);
 * ```
 */
export async function lrRangeTest(backend: TrainingBackend, prepared: PreparedRun, signal?: AbortSignal): Promise<RangeTestCurve> {
  const t = prepared.request.training;
  const rows = prepared.train.rows;
  const perPass = prepared.plan.stepsPerEpoch;
  const seed = mixSeed(t.seed, 0x4c_52_46_54); // "LRFT": apart from the run's shuffle and dropout
  const rng = new MT19937(seed);
  const order = identityOrder(rows);
  const lrs: number[] = [];
  const losses: number[] = [];
  let average = 0;
  let best = Infinity;
  let lastYield = performance.now();
  for (let i = 0; i < LR_FINDER.steps; i++) {
    if (signal?.aborted) break;
    const b = i % perPass;
    if (b === 0 && t.shuffle) shuffleInPlace(rng, order);
    const start = b * t.batch_size;
    const lr = rangeTestLr(i);
    backend.group.lr = lr;
    const pending = backend.step({ order: t.shuffle ? order : null, start, rows: Math.min(t.batch_size, rows - start) }, mixSeed(seed, i + 1));
    const outcome = pending instanceof Promise ? await pending : pending;
    if ("fault" in outcome) break;
    // AvgSmoothLoss: torch.lerp(loss, val, beta) (weight >= 0.5: end - (end - start) * (1 - weight)),
    // debiased by 1 - beta^count
    average = average - (average - outcome.loss) * (1 - LR_FINDER.beta);
    const smooth = average / (1 - LR_FINDER.beta ** (i + 1));
    lrs.push(lr);
    losses.push(smooth);
    if (smooth < best) best = smooth;
    if (smooth > LR_FINDER.divergeFactor * best) break;
    if (signal && performance.now() - lastYield > 50) {
      await new Promise((resolve) => setTimeout(resolve, 0)); // let the event loop deliver an abort
      lastYield = performance.now();
    }
  }
  return { lrs, losses };
}

/**
 * The loss for `"loss": {"type": "auto"}`, from the training targets and the model's output
 * width (docs/strategy.md): one integer class per prediction (-100 ignored) and more than one
 * output: cross_entropy; one 0/1 target per prediction and one output: bce_with_logits;
 * anything else (real values, several target columns): mse.
 *
 * @example
 * ```ts
 * chooseLoss(table, { positions: 1, classes: 10 }); // { type: "cross_entropy", ... } for labels 0..9
 * ```
 */
export function chooseLoss(table: Table, output: OutputLayout): LossSpec {
  const y = table.y;
  const onePerPrediction = table.targets === output.positions;
  let integers = true;
  let binary = true;
  for (let i = 0; i < y.length; i++) {
    const v = y[i]!;
    if (!Number.isInteger(v) || (v < 0 && v !== -100)) integers = false;
    if (v !== 0 && v !== 1) binary = false;
    if (!integers && !binary) break;
  }
  if (onePerPrediction && integers && output.classes > 1) return { type: "cross_entropy", weight: null, ignore_index: -100, label_smoothing: 0 };
  if (onePerPrediction && binary && output.classes === 1) return { type: "bce_with_logits", pos_weight: null };
  return { type: "mse" };
}

/**
 * The most rows per batch "auto" chooses unless the budget forces fewer.
 *
 * @example
 * ```ts
 * batchSizeCandidates(10_000)[0] === AUTO_BATCH_SIZE_CAP; // true
 * ```
 */
export const AUTO_BATCH_SIZE_CAP = 256;

/**
 * The batch sizes "auto" tries, largest first: the powers of two up to the training rows, at
 * most 256 (AUTO_BATCH_SIZE_CAP). prepareRun keeps the first whose plan is valid and fits the
 * memory budget.
 *
 * @example
 * ```ts
 * batchSizeCandidates(1437); // [256, 128, 64, 32, 16, 8, 4, 2, 1]
 * batchSizeCandidates(100);  // [64, 32, 16, 8, 4, 2, 1]
 * ```
 */
export function batchSizeCandidates(rows: number): number[] {
  const out: number[] = [];
  let b = 1;
  while (b * 2 <= Math.min(rows, AUTO_BATCH_SIZE_CAP)) b *= 2;
  for (; b >= 1; b /= 2) out.push(b);
  return out;
}
