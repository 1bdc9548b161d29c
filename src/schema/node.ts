/**
 * The GPU-node protocol (/v1/nodes): bodies shared by the Worker's routes and the node client.
 * Nodes pull: they need only outbound HTTP to the edge. See docs/gpu-node.md.
 */
import { z } from "zod";
import { EngineInfo, EpochMetrics, FineTuneResult } from "./result.js";
import { Job } from "./job.js";

/**
 * POST /v1/nodes/claim
 *
 * @example
 * ```json
 * { "node": "gpu-node-7f3a" }
 * ```
 */
export const ClaimRequest = z.strictObject({
  node: z.string().min(1).max(128),
  /** Long poll: wait up to this long for a job before answering 204. */
  wait_ms: z.number().int().min(0).max(25_000).default(0),
});

/**
 * POST /v1/nodes/stop: the node is shutting down; no claim is made for it from now on, not even
 * by a long poll of its that the edge has not yet seen end.
 *
 * @example
 * ```json
 * { "node": "gpu-node-7f3a" }
 * ```
 */
export const StopRequest = z.strictObject({ node: z.string().min(1).max(128) });

/** 200 from /v1/nodes/claim: the job and the lease to report under. (204: nothing waiting.) */
export const ClaimResponse = z.object({
  job: Job,
  lease_id: z.string(),
  lease_ms: z.number().int(),
  attempt: z.number().int(),
});
export type ClaimResponse = z.infer<typeof ClaimResponse>;

/**
 * The largest JSON body any /v1/nodes route reads, in bytes (16 MiB): a completion carries the
 * run's whole history and its explanations; everything else is far smaller. Past it: 413
 * (docs/gpu-node.md). Weights uploads have their own limit, MAX_BODY_BYTES.
 */
export const NODE_JSON_BODY_MAX_BYTES = 16 * 1024 * 1024;

/** Issues for a list of epochs that do not each follow the one before (one history entry per epoch). */
function checkSequence(epochs: readonly { epoch: number }[], path: (string | number)[], ctx: z.RefinementCtx): void {
  epochs.forEach((e, i) => {
    if (i === 0 ? e.epoch < 1 : e.epoch !== epochs[i - 1]!.epoch + 1) {
      const expected = i === 0 ? "at least 1" : `${epochs[i - 1]!.epoch + 1}, the epoch after the entry before`;
      ctx.addIssue({ code: "custom", path: [...path, i, "epoch"], message: `is ${e.epoch}; epochs must be in sequence: expected ${expected}` });
    }
  });
}

/**
 * POST /v1/nodes/jobs/{id}/progress: epochs finished since the last report (also renews the
 * lease), in sequence. A retried report may repeat epochs already taken; one that skips an epoch,
 * or goes past the run's epochs, is a 422 (src/jobs/state.ts). Metrics are finite numbers (JSON
 * has no NaN; 1e999 parses to Infinity and is refused).
 */
export const ProgressRequest = z
  .strictObject({
    lease_id: z.string(),
    epochs: z.array(EpochMetrics).max(10_000),
    engine: EngineInfo.optional(),
  })
  .superRefine((body, ctx) => checkSequence(body.epochs, ["epochs"], ctx));

/** POST /v1/nodes/jobs/{id}/heartbeat */
export const HeartbeatRequest = z.strictObject({ lease_id: z.string() });

/**
 * The answer to progress and heartbeat: keep going, stop (cancelled), or abandon (lease lost);
 * `pause`: checkpoint at the epoch's end and complete with the run's paused result.
 */
export const LeaseStatus = z.object({ ok: z.boolean(), cancel: z.boolean(), pause: z.boolean().optional() });

/**
 * POST /v1/nodes/jobs/{id}/complete: the run's result without weights (uploaded first), or a
 * failure. A run that ended `succeeded` or `diverged` has weights: without a weights_key it is a
 * 400; its history is in sequence.
 */
export const CompleteRequest = z
  .strictObject({
    lease_id: z.string(),
    weights_key: z.string().nullable(),
    outcome: z.union([FineTuneResult.omit({ weights: true, id: true }), z.strictObject({ failure: z.string().max(2000) })]),
  })
  .superRefine((body, ctx) => {
    if ("failure" in body.outcome) return;
    checkSequence(body.outcome.metrics.history, ["outcome", "metrics", "history"], ctx);
    if (body.weights_key === null && (body.outcome.status === "succeeded" || body.outcome.status === "diverged")) {
      ctx.addIssue({ code: "custom", path: ["weights_key"], message: `is null, but a run that ended ${body.outcome.status} has weights: upload them first (PUT .../weights)` });
    }
  });
