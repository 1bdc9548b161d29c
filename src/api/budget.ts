/**
 * Where a job runs. wrangler dev and workerd do not enforce the Workers CPU and memory limits,
 * so the plan does: a job runs in the Worker only if its estimated CPU time and its memory fit
 * the configured in-Worker budget (EDGE_MAX_CPU_MS, EDGE_MAX_MEMORY_BYTES; the cost model's
 * rates EDGE_FLOPS_PER_MS, EDGE_BYTES_PER_MS and EDGE_STEP_OVERHEAD_MS).
 */
import { UnprocessableError } from "../errors.js";
import type { FineTuneRequest, OptimizerSpec } from "../schema/request.js";
import type { RunPlan } from "../engine/plan.js";

/** The in-Worker budget and the cost model that checks a plan against it. */
export interface EdgeBudget {
  /** CPU time a job may take in the Worker, in ms. */
  maxCpuMs: number;
  /** Bytes of WebAssembly memory a job may use in the Worker (the isolate has 128 MB in all). */
  maxMemoryBytes: number;
  /** Sustained FLOP/ms of the kernels in the Worker (compute-bound models). */
  flopsPerMs: number;
  /**
   * Sustained bytes/ms the kernels stream the weights, gradients and optimizer state at: what
   * bounds a step with few rows (batch size 1 reads every weight several times for a few FLOPs
   * each). Optional for callers that build a budget by hand; DEFAULT_EDGE_BUDGET's when absent.
   */
  bytesPerMs?: number;
  /** CPU per optimizer step beyond its FLOPs (kernel calls, the loop), in ms: what bounds tiny models. */
  stepOverheadMs: number;
}

/**
 * Defaults, calibrated with `wrangler dev` on the development machine (AMD EPYC, relaxed-SIMD
 * build): MLPs of 100-512-10 and 784-256-10 trained at 44-46 GFLOP/s end to end, and the tiny
 * 10-10-1 MLP at about 15 us per step. The model assumes half of each (20 GFLOP/s, 30 us), for
 * slower edge CPUs, and allows 10 s of CPU (a third of the 30 s default paid limit). 96 MB of
 * memory leaves a third of the 128 MB isolate to the request, the response and the runtime.
 * Memory-bound steps (issue 21): a Linear(2048, 2048) at batch size 1 took 22.5-28.3 ms a step
 * with SGD and 29-47 ms with Adam in Node on the same machine under load (`node bench/memory-bound.mjs`),
 * 4.3-6 GB/s of weight traffic by stepTrafficBytes' count; the model assumes 4 GB/s.
 */
export const DEFAULT_EDGE_BUDGET: EdgeBudget = {
  maxCpuMs: 10_000,
  maxMemoryBytes: 96 * 1024 * 1024,
  flopsPerMs: 2e7,
  bytesPerMs: 4e6,
  stepOverheadMs: 0.03,
};

/**
 * Bytes one optimizer step streams through the weights, their gradients and the optimizer's
 * state, whatever the batch size: each trainable float32 is read by the forward pass and by the
 * backward pass (dX), its gradient is zeroed, accumulated (read and write) and read by the
 * update, which also reads and writes the weight (8 accesses), plus 2 per state tensor of the
 * optimizer (momentum: 1, Adam/AdamW/RMSprop-with-momentum: 2); a frozen weight is read twice,
 * in its stored dtype.
 *
 * @example
 * ```ts
 * stepTrafficBytes({ params: 4_196_352, trainable_params: 4_196_352 }, { type: "sgd", lr: 0.01, momentum: 0, ... }, "float32"); // 134 MB
 * ```
 */
export function stepTrafficBytes(plan: Pick<RunPlan, "params" | "trainable_params">, optimizer: OptimizerSpec, baseDtype: string): number {
  const states = optimizerStates(optimizer);
  const frozenBytes = baseDtype === "float16" || baseDtype === "bfloat16" ? 2 : 4;
  return plan.trainable_params * 4 * (8 + 2 * states) + (plan.params - plan.trainable_params) * frozenBytes * 2;
}

/**
 * The CPU time a plan is expected to take in the Worker: per step, the larger of its FLOPs at
 * the sustained FLOP rate and its weight traffic (stepTrafficBytes) at the sustained byte rate
 * (a roofline: a step is bound by one or the other), plus a fixed cost per step.
 *
 * @example
 * ```ts
 * estimateCpuMs({ flops: 2e9, steps: 640 }, DEFAULT_EDGE_BUDGET); // 100 + 19.2 ms (no traffic given)
 * estimateCpuMs({ flops: 2e9, steps: 640 }, DEFAULT_EDGE_BUDGET, 134e6); // 640 x 26.8 + 19.2 ms: memory-bound
 * ```
 */
export function estimateCpuMs(plan: Pick<RunPlan, "flops" | "steps" | "lr_finder_steps">, budget: EdgeBudget, trafficBytesPerStep = 0): number {
  // the learning-rate range test's steps (lr "auto") run in the job too; their FLOPs are in flops
  const steps = plan.steps + (plan.lr_finder_steps ?? 0);
  const computeMs = plan.flops / budget.flopsPerMs;
  const memoryMs = (Math.max(1, steps) * trafficBytesPerStep) / (budget.bytesPerMs ?? DEFAULT_EDGE_BUDGET.bytesPerMs!);
  return Math.max(computeMs, memoryMs) + steps * budget.stepOverheadMs;
}

/** The optimizer's state tensors per parameter (torch.optim's state_dict: momentum_buffer, exp_avg, ...). */
function optimizerStates(o: OptimizerSpec): number {
  const flag = (key: string) => ((o as Record<string, unknown>)[key] ? 1 : 0);
  const nonzero = (key: string) => (Number((o as Record<string, unknown>)[key] ?? 0) !== 0 ? 1 : 0);
  switch (o.type) {
    case "sgd":
      return nonzero("momentum");
    case "adam":
    case "adamw":
      return 2 + flag("amsgrad");
    case "rmsprop":
      return 1 + nonzero("momentum") + flag("centered");
    default:
      return 1;
  }
}

/**
 * The longest a create request is expected to run, in ms: twice its CPU budget (wall time adds
 * waiting for the CPU and storage) plus 5 s to read the body and store the result. An
 * Idempotency-Key reserved by a request that has run longer, with no job stored, is taken to
 * belong to a request that died, and is free again (issue 20, finding 4).
 *
 * @example
 * ```ts
 * requestBudgetMs(DEFAULT_EDGE_BUDGET); // 25_000
 * ```
 */
export function requestBudgetMs(budget: EdgeBudget): number {
  return 2 * budget.maxCpuMs + 5_000;
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
  const traffic = plan.params === undefined ? 0 : stepTrafficBytes(plan, request.training.optimizer, request.model.base_dtype);
  const cpuMs = estimateCpuMs(plan, budget, traffic);
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
