/**
 * The job resource (GET /v1/fine-tunes/{id}) and the error envelope, shared by the API, the
 * SDK and OpenAPI.
 */
import { z } from "zod";
import { EngineInfo, EpochMetrics, FineTuneStatus, HuggingFaceReport, Metrics, Plan, RunError } from "./result.js";
import { Explanations } from "./explain.js";
import { SearchSpec, Trial } from "./search.js";

/** How many epochs a job keeps in `metrics.history`: the last ones; GET .../metrics has them all. */
export const JOB_HISTORY_TAIL = 100;

/**
 * A job's metrics: as the result's, except that `history` holds only the last JOB_HISTORY_TAIL
 * epochs, so that a job record (and GET /v1/fine-tunes/{id}) stays bounded however many epochs
 * the run has. `epochs` counts them all; when `history_truncated` is true, the earlier ones are
 * at GET /v1/fine-tunes/{id}/metrics (cursor-paginated).
 *
 * @example
 * ```json
 * { "history": [ { "epoch": 19901, "train_loss": 0.01, "lr": 0.001 }, "..." ], "epochs": 20000, "history_truncated": true,
 *   "best_epoch": 19990, "steps": 20000, "samples_per_second": 9000, "duration_ms": 2200 }
 * ```
 */
export const JobMetrics = Metrics.extend({
  /** Epochs in the whole history (of the current attempt, while it runs). */
  epochs: z.number().int(),
  /** true: `history` is the last JOB_HISTORY_TAIL of `epochs` entries. */
  history_truncated: z.boolean(),
});
export type JobMetrics = z.infer<typeof JobMetrics>;

/**
 * A fine-tune job: its state, its plan, the metrics so far, and why it failed if it did.
 * The weights are not inline: GET /v1/fine-tunes/{id}/weights.
 *
 * @example
 * ```json
 * { "id": "ft_3b1f...", "object": "fine_tune", "status": "succeeded", "mode": "sync",
 *   "created_at": "2026-11-29T12:00:00.000Z", "plan": { ... }, "metrics": { ... } }
 * ```
 */
export const Job = z.object({
  id: z.string(),
  object: z.literal("fine_tune"),
  status: FineTuneStatus,
  mode: z.enum(["sync", "async"]),
  created_at: z.string(),
  started_at: z.string().nullable(),
  finished_at: z.string().nullable(),
  plan: Plan,
  metrics: JobMetrics.nullable(),
  engine: EngineInfo.nullable(),
  error: RunError.nullable(),
  /** Hugging Face models: config.json as given and what reading the checkpoint did (as in the result). */
  huggingface: HuggingFaceReport.optional(),
  /** Adapter runs, once finished: adapter_config.json as PEFT writes it (as in the result). */
  adapter_config: z.record(z.string(), z.unknown()).optional(),
  /** As the result's warnings. */
  warnings: z.array(z.string()).optional(),
  /** The request's `explain`, once the job has succeeded (as in the result). */
  explanations: Explanations.optional(),
  /** Why a queued job is not running yet: e.g. no GPU node is polling for work (gone once one claims it). */
  hint: z.string().optional(),
  /** Where the job's final event is POSTed (the request's `webhook`). */
  webhook: z.object({ url: z.string() }).optional(),
  /** Where the weights can be downloaded once the job has ended with weights. */
  weights_url: z.string().nullable(),
  /** A search's trial: the id of its search job (docs/strategy.md, "Searches"). */
  parent: z.string().optional(),
  /** A search job: its request's `search`, as parsed. */
  search: SearchSpec.optional(),
  /** A search job: its trials, in order; a trial is `pending` until a slot is free for it. */
  trials: z.array(Trial).optional(),
  /** A search job: the id of the trial with the best metric so far (its weights are the job's once it has ended); null before one has a metric. */
  best_trial: z.string().nullable().optional(),
});
export type Job = z.infer<typeof Job>;

/**
 * A job as a list shows it: its metrics without the per-epoch history (the number of epochs and
 * the last one instead), and without config.json and adapter_config.json, so that an item's size
 * does not grow with the run; GET /v1/fine-tunes/{id} has the whole job.
 *
 * @example
 * ```json
 * { "id": "ft_...", "status": "succeeded", "metrics": { "epochs": 30000, "last": { "epoch": 30000, "train_loss": 0.01, "lr": 0.001 }, "best_epoch": 29990, "steps": 30000, ... }, ... }
 * ```
 */
export const JobSummary = Job.omit({ adapter_config: true, huggingface: true, metrics: true, explanations: true }).extend({
  // the range test's curve is the job's to show (GET /v1/fine-tunes/{id}), not the list's
  metrics: Metrics.omit({ history: true, lr_finder: true })
    .extend({
      /** Epochs in the history. */
      epochs: z.number().int(),
      /** The last epoch's metrics, or null before the first ends. */
      last: EpochMetrics.nullable(),
    })
    .nullable(),
  huggingface: HuggingFaceReport.omit({ config: true }).optional(),
});
export type JobSummary = z.infer<typeof JobSummary>;

/**
 * The list item of a job (JobSummary).
 *
 * @example
 * ```ts
 * const item = jobSummary(record.job);
 * ```
 */
export function jobSummary(job: Job): JobSummary {
  const { adapter_config: _adapter, huggingface, metrics, explanations: _explanations, ...rest } = job;
  const summary: JobSummary = {
    ...rest,
    metrics: metrics ? { ...omitTail(metrics), epochs: metrics.epochs, last: metrics.history.at(-1) ?? null } : null,
  };
  if (huggingface) {
    const { config: _config, ...report } = huggingface;
    summary.huggingface = report;
  }
  return summary;
}

function omitTail(metrics: JobMetrics): Omit<JobMetrics, "history" | "epochs" | "history_truncated" | "lr_finder"> {
  const { history: _history, epochs: _epochs, history_truncated: _truncated, lr_finder: _lrFinder, ...rest } = metrics;
  return rest;
}

/**
 * GET /v1/fine-tunes/{id}/metrics: one page of the job's per-epoch history, oldest first (of the
 * current attempt while it runs); pass `next_cursor` as `cursor` for the next page, null at the end
 * so far.
 *
 * @example
 * ```json
 * { "object": "list", "data": [ { "epoch": 1, "train_loss": 0.9, "lr": 0.001 } ], "next_cursor": "100" }
 * ```
 */
export const MetricsPage = z.object({
  object: z.literal("list"),
  data: z.array(EpochMetrics),
  next_cursor: z.string().nullable(),
});
export type MetricsPage = z.infer<typeof MetricsPage>;

/**
 * GET /v1/fine-tunes: newest first; pass `next_cursor` as `cursor` for the next page. Items are
 * JobSummary: bounded whatever the run's length.
 *
 * @example
 * ```json
 * { "object": "list", "data": [ { "id": "ft_..." } ], "next_cursor": "eyJ..." }
 * ```
 */
export const JobList = z.object({
  object: z.literal("list"),
  data: z.array(JobSummary),
  next_cursor: z.string().nullable(),
});
export type JobList = z.infer<typeof JobList>;

/**
 * RFC 9457 problem details, the body of every error response (`application/problem+json`).
 *
 * @example
 * ```json
 * { "type": "https://edgetune.dev/problems/invalid_request", "title": "Invalid request", "status": 400,
 *   "detail": "Invalid request: training.optimizer.betas[1]: Too big: expected number to be <1",
 *   "errors": [ { "path": "training.optimizer.betas[1]", "message": "Too big: expected number to be <1" } ] }
 * ```
 */
export const Problem = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  code: z.string(),
  instance: z.string().optional(),
  errors: z
    .array(z.object({ path: z.string(), message: z.string(), line: z.number().int().optional(), column: z.string().optional() }))
    .optional(),
});
export type Problem = z.infer<typeof Problem>;
