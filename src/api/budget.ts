/**
 * Where a job runs. wrangler dev and workerd do not enforce the Workers CPU and memory limits,
 * so the plan does: a job runs in the Worker only if its estimated CPU time and its memory fit
 * the configured in-Worker budget (EDGE_MAX_CPU_MS, EDGE_MAX_MEMORY_BYTES; the cost model's
 * rates EDGE_FLOPS_PER_MS and EDGE_STEP_OVERHEAD_MS).
 */
import { UnprocessableError } from "../errors.js";
import type { FineTuneRequest } from "../schema/request.js";
import type { RunPlan } from "../engine/plan.js";

/** The in-Worker budget and the cost model that checks a plan against it. */
export interface EdgeBudget {
  /** CPU time a job may take in the Worker, in ms. */
  maxCpuMs: number;
  /** Bytes of WebAssembly memory a job may use in the Worker (the isolate has 128 MB in all). */
  maxMemoryBytes: number;
  /** Sustained FLOP/ms of the kernels in the Worker (compute-bound models). */
  flopsPerMs: number;
  /** CPU per optimizer step beyond its FLOPs (kernel calls, the loop), in ms: what bounds tiny models. */
  stepOverheadMs: number;
}

/**
 * Defaults, calibrated with `wrangler dev` on the development machine (AMD EPYC, relaxed-SIMD
 * build): MLPs of 100-512-10 and 784-256-10 trained at 44-46 GFLOP/s end to end, and the tiny
 * 10-10-1 MLP at about 15 us per step. The model assumes half of each (20 GFLOP/s, 30 us), for
 * slower edge CPUs, and allows 10 s of CPU (a third of the 30 s default paid limit). 96 MB of
 * memory leaves a third of the 128 MB isolate to the request, the response and the runtime.
 */
export const DEFAULT_EDGE_BUDGET: EdgeBudget = {
  maxCpuMs: 10_000,
  maxMemoryBytes: 96 * 1024 * 1024,
  flopsPerMs: 2e7,
  stepOverheadMs: 0.03,
};

/**
 * The CPU time a plan is expected to take in the Worker: its FLOPs at the sustained rate plus a
 * fixed cost per step.
 *
 * @example
 * ```ts
 * estimateCpuMs({ flops: 2e9, steps: 640 }, DEFAULT_EDGE_BUDGET); // 100 + 19.2 ms
 * ```
 */
export function estimateCpuMs(plan: Pick<RunPlan, "flops" | "steps" | "lr_finder_steps">, budget: EdgeBudget): number {
  // the learning-rate range test's steps (lr "auto") run in the job too; their FLOPs are in flops
  return plan.flops / budget.flopsPerMs + (plan.steps + (plan.lr_finder_steps ?? 0)) * budget.stepOverheadMs;
}

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
  const cpuMs = estimateCpuMs(plan, budget);
  const fits = cpuMs <= budget.maxCpuMs && plan.memory_bytes <= budget.maxMemoryBytes;
  const why = () =>
    `this job needs about ${(cpuMs / 1000).toFixed(1)} s of CPU (${plan.flops.toExponential(2)} FLOPs, ${plan.steps} steps${plan.lr_finder_steps ? ` and up to ${plan.lr_finder_steps} of the lr "auto" range test` : ""}) and ` +
    `${(plan.memory_bytes / 2 ** 20).toFixed(1)} MiB; the in-Worker budget is ${(budget.maxCpuMs / 1000).toFixed(1)} s and ` +
    `${(budget.maxMemoryBytes / 2 ** 20).toFixed(1)} MiB`;
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
