/**
 * A hyperparameter search (issue 15, item 4): the request's `search`, and what a search job
 * reports about its trials. One schema for the API, the SDK and OpenAPI (docs/strategy.md,
 * "Searches").
 */
import { z } from "zod";
import { int } from "./fields.js";

/** Trials of one search, at most: the parent's record lists each of them. */
export const MAX_TRIALS = 64;

const bounds = () => z.tuple([z.number(), z.number()]);

/**
 * Where one field's values are drawn from. `log_uniform`: exp(U(ln a, ln b)) (a > 0);
 * `uniform`: U(a, b); `int_uniform`: an integer in [a, b], both included; `choice`: one of the
 * values, equally likely. A grid search takes `choice` values and `int_uniform` integers as
 * they are, and `grid_points` points of `uniform`/`log_uniform` (linearly / geometrically
 * spaced, both ends included).
 *
 * @example
 * ```json
 * { "log_uniform": [1e-4, 1e-1] }
 * ```
 */
export const Distribution = z.union([
  z.strictObject({ log_uniform: bounds() }),
  z.strictObject({ uniform: bounds() }),
  z.strictObject({ int_uniform: z.tuple([int(), int()]) }),
  z.strictObject({ choice: z.array(z.union([z.number(), z.string(), z.boolean(), z.null()])).min(1).max(MAX_TRIALS) }),
]);
export type Distribution = z.infer<typeof Distribution>;

/**
 * The request's `search`: train `trials` variants of the request, each with the fields of
 * `space` (dotted request paths) set to drawn values, at most `parallel` at once, and keep the
 * one with the best `metric`. A search is always an async job (docs/strategy.md, "Searches").
 *
 * @example
 * ```json
 * { "space": { "training.optimizer.lr": { "log_uniform": [1e-4, 1e-1] }, "training.batch_size": { "choice": [16, 32] } },
 *   "trials": 4, "parallel": 2, "metric": "val_loss", "mode": "min", "algorithm": "random", "seed": 0 }
 * ```
 */
export const SearchSpec = z.strictObject({
  /** Dotted request paths ("training.optimizer.lr", "adapter.r", ...) to the distribution of their values. */
  space: z
    .record(z.string().min(1).max(200), Distribution)
    .refine((s) => Object.keys(s).length > 0, "give at least one field to search over")
    .refine((s) => Object.keys(s).length <= 16, "at most 16 fields"),
  /** Trials to run. A grid search runs every point of the grid: give its size here (or leave it out). */
  trials: int().min(1).max(MAX_TRIALS).optional(),
  /** Trials running at once, at most; a search holds this many of the key's active jobs (MAX_ACTIVE_JOBS_PER_KEY). */
  parallel: int().min(1).max(MAX_TRIALS).default(1),
  /** The epoch metric that ranks trials: val_loss (default), val_accuracy, val_perplexity or train_loss. */
  metric: z.enum(["val_loss", "val_accuracy", "val_perplexity", "train_loss"]).default("val_loss"),
  /** min: the lowest metric wins; max: the highest. Default: max for val_accuracy, else min. */
  mode: z.enum(["min", "max"]).optional(),
  /** random (seeded draws) or grid (every combination, in order). */
  algorithm: z.enum(["random", "grid"]).default("random"),
  /** Seeds the random draws: the same seed, the same trials. */
  seed: int().min(0).max(2 ** 32 - 1).default(0),
  /** Points of a uniform or log_uniform field in a grid search. */
  grid_points: int().min(2).max(MAX_TRIALS).default(3),
  /**
   * Asynchronous successive halving (ASHA, Li et al. 2018, as Ray Tune's AsyncHyperBandScheduler):
   * at each rung (grace_epochs · reduction_factor^k epochs, below the trial's last epoch), a trial
   * whose metric is worse than the (1 − 1/reduction_factor) quantile of the trials recorded at that
   * rung before it is stopped (docs/strategy.md, "Searches").
   */
  early_termination: z
    .strictObject({ type: z.literal("asha"), grace_epochs: int().min(1).max(100_000).default(1), reduction_factor: int().min(2).max(100).default(3) })
    .nullable()
    .optional(),
});
export type SearchSpecInput = z.input<typeof SearchSpec>;
export type SearchSpec = z.output<typeof SearchSpec>;

/**
 * The value a trial gave one searched field.
 *
 * @example
 * ```json
 * 0.003
 * ```
 */
export const TrialParamValue = z.union([z.number(), z.string(), z.boolean(), z.null()]);

/**
 * One trial as the parent job reports it: `pending` until a slot is free for it, then its own
 * job's status; `metric` is its ranking metric at the epoch its weights are from (`epoch`), once
 * it has one.
 *
 * @example
 * ```json
 * { "id": "ft_...", "params": { "training.optimizer.lr": 0.003 }, "status": "succeeded", "metric": 0.12, "epoch": 8 }
 * ```
 */
export const Trial = z.object({
  id: z.string(),
  params: z.record(z.string(), TrialParamValue),
  status: z.enum(["pending", "queued", "running", "paused", "succeeded", "failed", "cancelled", "diverged"]),
  metric: z.number().nullable(),
  epoch: z.number().int().nullable(),
  /** Successive halving stopped it at this rung (an epoch): it ends cancelled and is not ranked. */
  stopped_at_rung: z.number().int().optional(),
});
export type Trial = z.infer<typeof Trial>;
