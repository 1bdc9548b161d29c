/**
 * An explanation computed on a GPU node (issue 18, docs/explain.md "On a GPU node"): the
 * resource that POST /v1/fine-tunes/{id}/explain answers with 202 and
 * GET /v1/fine-tunes/{id}/explanations/{eid} returns, and the body a node uploads the result in.
 * One schema for the API, the SDK, the node and OpenAPI.
 */
import { z } from "zod";
import { Explanations } from "./explain.js";
import { EngineInfo, RunError } from "./result.js";

/**
 * An explanation task: queued for a GPU node, running on one, then succeeded with `result`
 * (or failed, with `error`).
 *
 * @example
 * ```json
 * { "id": "ex_0190e4c2a1b20000a1b2c3d4e5f60718", "object": "explanation", "fine_tune": "ft_…", "status": "succeeded",
 *   "placement": "gpu-node", "created_at": "…", "started_at": "…", "finished_at": "…",
 *   "engine": { "kernel": "wasm-simd", "threads": 1, "runtime": "node" }, "result": { "method": "integrated_gradients", "…": "…" }, "error": null }
 * ```
 */
export const Explanation = z.object({
  id: z.string(),
  object: z.literal("explanation"),
  /** The fine-tune whose final weights are explained. */
  fine_tune: z.string(),
  status: z.enum(["queued", "running", "succeeded", "failed", "cancelled"]),
  placement: z.literal("gpu-node"),
  created_at: z.string(),
  started_at: z.string().nullable(),
  finished_at: z.string().nullable(),
  /** Where it was computed, once a node has computed it. */
  engine: EngineInfo.nullable(),
  /** The explanations, once succeeded: the 200 answer of the in-Worker path. */
  result: Explanations.nullable(),
  error: RunError.nullable(),
  /** Why it waits (no GPU node is polling). */
  hint: z.string().optional(),
});
export type Explanation = z.infer<typeof Explanation>;

/**
 * POST /v1/nodes/jobs/{id}/explanation: a node's result for an explanation task it holds the
 * lease of. The edge checks it against the task (rows x features, finite values) before it is
 * taken, and the task ends `succeeded`.
 *
 * @example
 * ```json
 * { "lease_id": "…", "explanations": { "method": "kernel_shap", "…": "…" }, "engine": { "kernel": "wasm-simd", "threads": 1, "runtime": "node" }, "duration_ms": 812 }
 * ```
 */
export const ExplanationUpload = z.strictObject({
  lease_id: z.string(),
  explanations: Explanations,
  engine: EngineInfo,
  duration_ms: z.number().min(0),
});
export type ExplanationUpload = z.infer<typeof ExplanationUpload>;
