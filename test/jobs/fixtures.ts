/** A queued GPU-node job and a short lease policy, for the state-machine tests (not a test file). */
import type { LeasePolicy } from "../../src/jobs/state.js";
import type { Job } from "../../src/schema/job.js";

export const policy: LeasePolicy = { leaseMs: 1000, maxAttempts: 2 };

export const job: Job = {
  id: "ft_0123456789abcdef0123456789abcdef", object: "fine_tune", status: "queued", mode: "async",
  created_at: "2026-11-29T00:00:00.000Z", started_at: null, finished_at: null,
  plan: { params: 1, trainable_params: 1, flops: 1, memory_bytes: 1, steps: 1, placement: "gpu-node" },
  metrics: null, engine: null, error: null, weights_url: null,
};
