/**
 * The job resource (GET /v1/fine-tunes/{id}) and the error envelope, shared by the API, the
 * SDK and OpenAPI.
 */
import { z } from "zod";
import { EngineInfo, FineTuneStatus, HuggingFaceReport, Metrics, Plan, RunError } from "./result.js";

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
  metrics: Metrics.nullable(),
  engine: EngineInfo.nullable(),
  error: RunError.nullable(),
  /** Hugging Face models: config.json as given and what reading the checkpoint did (as in the result). */
  huggingface: HuggingFaceReport.optional(),
  /** Adapter runs, once finished: adapter_config.json as PEFT writes it (as in the result). */
  adapter_config: z.record(z.string(), z.unknown()).optional(),
  /** As the result's warnings. */
  warnings: z.array(z.string()).optional(),
  /** Where the weights can be downloaded once the job has ended with weights. */
  weights_url: z.string().nullable(),
});
export type Job = z.infer<typeof Job>;

/**
 * GET /v1/fine-tunes: newest first; pass `next_cursor` as `cursor` for the next page.
 *
 * @example
 * ```json
 * { "object": "list", "data": [ { "id": "ft_..." } ], "next_cursor": "eyJ..." }
 * ```
 */
export const JobList = z.object({
  object: z.literal("list"),
  data: z.array(Job),
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
