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

/** POST /v1/nodes/jobs/{id}/progress: epochs finished since the last report (also renews the lease). */
export const ProgressRequest = z.strictObject({
  lease_id: z.string(),
  epochs: z.array(EpochMetrics).max(10_000),
  engine: EngineInfo.optional(),
});

/** POST /v1/nodes/jobs/{id}/heartbeat */
export const HeartbeatRequest = z.strictObject({ lease_id: z.string() });

/** The answer to progress and heartbeat: keep going, stop (cancelled), or abandon (lease lost). */
export const LeaseStatus = z.object({ ok: z.boolean(), cancel: z.boolean() });

/** POST /v1/nodes/jobs/{id}/complete: the run's result without weights (uploaded first), or a failure. */
export const CompleteRequest = z.strictObject({
  lease_id: z.string(),
  weights_key: z.string().nullable(),
  outcome: z.union([FineTuneResult.omit({ weights: true, id: true }), z.strictObject({ failure: z.string().max(2000) })]),
});
