/**
 * Where a job runs. wrangler dev and workerd do not enforce the Workers CPU and memory limits,
 * so the plan does: a job runs in the Worker only if its FLOPs and memory fit the configured
 * in-Worker budget (EDGE_MAX_FLOPS, EDGE_MAX_MEMORY_BYTES).
 */
import { UnprocessableError } from "../errors.js";
import type { FineTuneRequest } from "../schema/request.js";
import type { RunPlan } from "../engine/plan.js";

/** The in-Worker budget. */
export interface EdgeBudget {
  /** Floating-point operations a sync job may take (about CPU-seconds x measured FLOP/s). */
  maxFlops: number;
  /** Bytes of WebAssembly memory a sync job may use (the isolate has 128 MB in all). */
  maxMemoryBytes: number;
}

/**
 * Defaults: 2e10 FLOPs is about 10 s of CPU at the ~2 GFLOP/s the kernels reach on small
 * models in one isolate (half the 30 s default paid CPU limit); 96 MB leaves a third of the
 * 128 MB isolate to the request, the response and the runtime.
 */
export const DEFAULT_EDGE_BUDGET: EdgeBudget = { maxFlops: 2e10, maxMemoryBytes: 96 * 1024 * 1024 };

/** How a create request will be served. */
export type Decision = { run: "sync" } | { run: "async"; placement: "edge" | "gpu-node" };

/**
 * Decides sync or async, edge or GPU node, from the request's mode and placement and the plan.
 *
 * @example
 * ```ts
 * decide(request, plan, DEFAULT_EDGE_BUDGET); // { run: "sync" } for the tiny MLP
 * ```
 */
export function decide(request: FineTuneRequest, plan: RunPlan, budget: EdgeBudget): Decision {
  const fits = plan.flops <= budget.maxFlops && plan.memory_bytes <= budget.maxMemoryBytes;
  const why = () =>
    `this job needs ${plan.flops.toExponential(2)} FLOPs and ${(plan.memory_bytes / 2 ** 20).toFixed(1)} MiB; ` +
    `the in-Worker budget is ${budget.maxFlops.toExponential(2)} FLOPs and ${(budget.maxMemoryBytes / 2 ** 20).toFixed(1)} MiB`;
  if (request.mode === "sync") {
    if (request.placement === "gpu-node") {
      throw new UnprocessableError("sync_on_gpu_node", [
        { path: "placement", message: 'sync runs happen in the Worker; use mode "async" with placement "gpu-node"' },
      ]);
    }
    if (!fits) {
      throw new UnprocessableError("over_budget", [
        { path: "mode", message: `${why()}. Send it with mode "async" (or "auto") to run it on a GPU node.` },
      ]);
    }
    return { run: "sync" };
  }
  if (request.mode === "auto" && request.placement !== "gpu-node" && fits) return { run: "sync" };
  if (request.placement === "edge" && !fits) {
    throw new UnprocessableError("over_budget", [
      { path: "placement", message: `${why()}. Use placement "gpu-node" or "auto".` },
    ]);
  }
  const placement = request.placement === "edge" || (request.placement === "auto" && fits) ? "edge" : "gpu-node";
  return { run: "async", placement };
}
