/**
 * Checkpoints of a fine-tune (docs/api.md "Checkpoints, pause and resume"): what
 * GET /v1/fine-tunes/{id}/checkpoints lists. Shared by the API, the SDK and OpenAPI.
 */
import { z } from "zod";
import { EpochMetrics } from "./result.js";

/**
 * One stored checkpoint: after which epoch, after how many optimizer steps, that epoch's metrics.
 *
 * @example
 * ```json
 * { "epoch": 4, "step": 128, "metrics": { "epoch": 4, "train_loss": 0.12, "lr": 0.001 }, "created_at": "2026-12-01T13:00:00.000Z" }
 * ```
 */
export const Checkpoint = z.object({
  epoch: z.number().int(),
  step: z.number().int(),
  metrics: EpochMetrics,
  created_at: z.string(),
});

/**
 * GET /v1/fine-tunes/{id}/checkpoints: the job's stored checkpoints, oldest first (the newest
 * `training.checkpoints.keep`).
 *
 * @example
 * ```json
 * { "object": "list", "data": [{ "epoch": 4, "step": 128, "metrics": { ... }, "created_at": "..." }] }
 * ```
 */
export const CheckpointList = z.object({ object: z.literal("list"), data: z.array(Checkpoint) });

export type Checkpoint = z.infer<typeof Checkpoint>;
export type CheckpointList = z.infer<typeof CheckpointList>;
