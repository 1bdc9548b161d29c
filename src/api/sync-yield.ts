/**
 * How often a sync job gives its isolate back while it trains (issue 20, finding 8). A Worker
 * isolate runs one piece of JavaScript at a time: a sync job that trains for seconds without a
 * pause holds up every other request the isolate serves (`/healthz`, other keys' jobs, the
 * Durable Objects it hosts under `wrangler dev`). Training therefore takes a 0 ms timer turn
 * every SYNC_YIELD_MS, during which those requests run; docs/security.md has the figures.
 */
import type { RunPlan } from "../engine/plan.js";
import type { FineTuneRequest } from "../schema/request.js";
import { estimateCpuMs, stepTrafficBytes, type EdgeBudget } from "./budget.js";

/** The longest a sync job trains between two turns of the event loop, in ms. */
export const SYNC_YIELD_MS = 20;

/**
 * The turns of a sync job: every SYNC_YIELD_MS on the run's clock, and every so many steps as
 * the plan's cost model (the budget's, as `decide` uses it) expects to take SYNC_YIELD_MS, for a
 * deployed Worker whose clock does not move while code runs (only I/O and timers advance it).
 *
 * @example
 * ```ts
 * syncYield(request, { flops: 2e9, steps: 640, params: 1000, trainable_params: 1000 }, DEFAULT_EDGE_BUDGET);
 * // { ms: 20, steps: 107 }: 0.186 ms a step (0.156 ms of FLOPs, 0.03 ms of overhead)
 * ```
 */
export function syncYield(
  request: Pick<FineTuneRequest, "training" | "model">,
  plan: Pick<RunPlan, "flops" | "steps" | "lr_finder_steps" | "params" | "trainable_params">,
  budget: EdgeBudget,
): { ms: number; steps: number } {
  const steps = Math.max(1, plan.steps + (plan.lr_finder_steps ?? 0));
  const traffic = plan.params === undefined ? 0 : stepTrafficBytes(plan, request.training.optimizer, request.model.base_dtype);
  const msPerStep = estimateCpuMs(plan, budget, traffic) / steps;
  return { ms: SYNC_YIELD_MS, steps: Math.max(1, Math.floor(SYNC_YIELD_MS / Math.max(msPerStep, 1e-6))) };
}
