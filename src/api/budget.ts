/**
 * Where a job runs. wrangler dev and workerd do not enforce the Workers CPU and memory limits,
 * so the plan does: a job runs in the Worker only if its estimated CPU time and its memory fit
 * the configured in-Worker budget (EDGE_MAX_CPU_MS, EDGE_MAX_MEMORY_BYTES; the cost model's
 * rates EDGE_FLOPS_PER_MS, EDGE_BYTES_PER_MS, EDGE_STEP_OVERHEAD_MS, EDGE_EPOCH_OVERHEAD_MS and
 * EDGE_PARAM_OVERHEAD_MS).
 * A sync run also stops itself before the step that would take it past EDGE_MAX_CPU_MS
 * (syncStepBudget, engine/deadline.ts).
 */
import { UnprocessableError } from "../errors.js";
import type { FineTuneRequest, OptimizerSpec } from "../schema/request.js";
import type { RunPlan } from "../engine/plan.js";
import type { StepBudget } from "../engine/deadline.js";

/** The in-Worker budget and the cost model that checks a plan against it. */
export interface EdgeBudget {
  /** CPU time a job may take in the Worker, in ms. */
  maxCpuMs: number;
  /**
   * Bytes of isolate memory a job may use in the Worker: its WebAssembly memory plus its parsed
   * request (parsedRequestBytes). The isolate has 128 MB in all.
   */
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
  /**
   * CPU per parameter once a run (initialisation, snapshots, writing the safetensors output), in
   * ms: what bounds a large model trained for a few steps. Optional for callers that build a
   * budget by hand; DEFAULT_EDGE_BUDGET's when absent.
   */
  paramOverheadMs?: number;
  /**
   * CPU per epoch beyond its steps (the epoch's metrics and history), in ms: what bounds a run of
   * very many one-step epochs (1 row x 100,000 epochs took 180-230 ms in process, about 2 us an epoch with its step).
   * Optional; DEFAULT_EDGE_BUDGET's when absent.
   */
  epochOverheadMs?: number;
  /**
   * Trainable weights up to this many bytes stay in the CPU's caches: they stream at twice
   * bytesPerMs and batched steps do not re-read them. Optional; DEFAULT_EDGE_BUDGET's when absent.
   */
  cacheBytes?: number;
  /**
   * Bytes/ms at which a batched step re-reads weights larger than cacheBytes: the GEMM core
   * (wasm/assembly/gemm.ts) keeps a 4-row x 8-column block of the output in registers and streams
   * the whole weight matrix for every 4 rows, in the forward pass, the input gradient and the
   * weight gradient (3 passes). Optional; DEFAULT_EDGE_BUDGET's when absent.
   */
  restreamBytesPerMs?: number;
}

/**
 * Defaults, fitted to the calibration grid (bench/calibration.json, `npm run bench -- --only
 * calibration`, docs/security.md#budgets): whole sync runs of Linear(W,W)-ReLU-Linear(W,10) MLPs,
 * W 16-4096, batch sizes 1-256, SGD and Adam, on the development machine (AMD EPYC, 2 shared
 * cores, relaxed-SIMD build, one thread as in the Worker). Every grid point's estimate is within
 * 1.5x of its measured time (0.72-1.41x; test/api/calibration.test.ts). 10 s of CPU is a third
 * of the 30 s default paid limit; 96 MB of isolate memory (WebAssembly memory plus the parsed
 * request) leaves a quarter of the 128 MB isolate to the response and the runtime.
 */
export const DEFAULT_EDGE_BUDGET: EdgeBudget = {
  maxCpuMs: 10_000,
  maxMemoryBytes: 96 * 1024 * 1024,
  flopsPerMs: 3.75e7,
  bytesPerMs: 1e7,
  stepOverheadMs: 0.001,
  paramOverheadMs: 6e-5,
  epochOverheadMs: 0.001,
  cacheBytes: 2 * 1024 * 1024,
  restreamBytesPerMs: 1.5e7,
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

/** What estimateCpuMs reads of a plan (RunPlan has them all; batch_size is the rows of a step). */
export type CostedPlan = Pick<RunPlan, "flops" | "steps" | "lr_finder_steps"> & {
  params?: number | undefined;
  trainable_params?: number | undefined;
  batch_size?: number | undefined;
  /** Steps per epoch (RunPlan's stepsPerEpoch): the epochs are steps / stepsPerEpoch. */
  stepsPerEpoch?: number | undefined;
};

/**
 * The CPU time a plan is expected to take in the Worker: per step, the larger of its FLOPs at
 * the sustained FLOP rate and its weight traffic (stepTrafficBytes) at the sustained byte rate
 * (a roofline: a step is bound by one or the other; weights that fit cacheBytes stream twice as
 * fast), plus, for weights larger than the caches, their re-reading by batched GEMMs (3 passes
 * for every 4 rows past the first 4, at restreamBytesPerMs), plus a fixed cost per step and per
 * epoch (when the plan gives stepsPerEpoch), plus a cost per parameter once a run
 * (initialisation, snapshots, the safetensors output).
 *
 * @example
 * ```ts
 * estimateCpuMs({ flops: 2e9, steps: 640 }, DEFAULT_EDGE_BUDGET); // 53.3 + 0.64 ms (no traffic, no params given)
 * estimateCpuMs({ flops: 4.8e10, steps: 640, params: 4_196_352, trainable_params: 4_196_352, batch_size: 1 }, DEFAULT_EDGE_BUDGET, 134e6); // 640 x 13.4 + 0.64 + 252 ms: memory-bound
 * ```
 */
export function estimateCpuMs(plan: CostedPlan, budget: EdgeBudget, trafficBytesPerStep = 0): number {
  const d = DEFAULT_EDGE_BUDGET;
  // the learning-rate range test's steps (lr "auto") run in the job too; their FLOPs are in flops
  const steps = plan.steps + (plan.lr_finder_steps ?? 0);
  const computeMs = plan.flops / budget.flopsPerMs;
  const weightBytes = (plan.trainable_params ?? 0) * 4;
  const cached = weightBytes <= (budget.cacheBytes ?? d.cacheBytes!);
  const bytesPerMs = (budget.bytesPerMs ?? d.bytesPerMs!) * (cached ? 2 : 1);
  const memoryMs = (Math.max(1, steps) * trafficBytesPerStep) / bytesPerMs;
  const blocksPastFirst = Math.ceil((plan.batch_size ?? 1) / 4) - 1;
  const restreamMs = cached ? 0 : (steps * weightBytes * 3 * blocksPastFirst) / (budget.restreamBytesPerMs ?? d.restreamBytesPerMs!);
  const runMs = (plan.params ?? 0) * (budget.paramOverheadMs ?? d.paramOverheadMs!);
  const epochs = plan.stepsPerEpoch ? plan.steps / plan.stepsPerEpoch : 0;
  const epochMs = epochs * (budget.epochOverheadMs ?? d.epochOverheadMs!);
  return Math.max(computeMs, memoryMs) + restreamMs + steps * budget.stepOverheadMs + epochMs + runMs;
}

/**
 * The budget a sync run checks before each step (engine/deadline.ts): the in-Worker CPU budget,
 * and the plan's estimate per step (its estimate less the once-a-run cost, over its steps).
 *
 * @example
 * ```ts
 * const run = await runPreparedRaw(runtime, prepared, { budget: syncStepBudget(prepared.request, prepared.plan, DEFAULT_EDGE_BUDGET) });
 * ```
 */
export function syncStepBudget(request: FineTuneRequest, plan: RunPlan, budget: EdgeBudget): StepBudget {
  const traffic = plan.params === undefined ? 0 : stepTrafficBytes(plan, request.training.optimizer, request.model.base_dtype);
  const steps = Math.max(1, plan.steps + (plan.lr_finder_steps ?? 0));
  const perRun = (plan.params ?? 0) * (budget.paramOverheadMs ?? DEFAULT_EDGE_BUDGET.paramOverheadMs!);
  // the per-epoch cost is spread over the steps
  return { maxMs: budget.maxCpuMs, stepMs: (estimateCpuMs(costed(plan), budget, traffic) - perRun) / steps };
}

/** A plan as estimateCpuMs reads it: a step's rows are the batch, or all rows when there are fewer. */
function costed(plan: RunPlan): CostedPlan {
  return { ...plan, batch_size: plan.maxRows ?? plan.batch_size };
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

/**
 * Bytes of isolate memory a parsed JSON body takes, per byte of body: the text, the parsed JS
 * arrays of numbers and the Float32 tables made from them. `node bench/body-memory.mjs PORT 42.7`
 * against `wrangler dev` measured +144 MiB of workerd RSS for a 42.7 MB body (3.5x).
 */
export const PARSED_BYTES_PER_BODY_BYTE = 3.5;

/**
 * The isolate memory a create request's body takes once parsed, in bytes (what decide() adds to
 * the run's WebAssembly memory): 3.5x a JSON body; 2x a multipart one, whose parts are copied
 * out of the body once (a binary safetensors table is then used as is, CSV becomes Float32
 * tables no larger than its text).
 *
 * @example
 * ```ts
 * parsedRequestBytes(16 << 20, "json"); // 58720256: 56 MiB for a 16 MiB body
 * ```
 */
export function parsedRequestBytes(bodyBytes: number, kind: "json" | "multipart"): number {
  return Math.ceil(bodyBytes * (kind === "json" ? PARSED_BYTES_PER_BODY_BYTE : 2));
}

/**
 * The CPU time a request's run is expected to take in the Worker, in ms (estimateCpuMs of its
 * plan and its weight traffic): what decide() checks against maxCpuMs, and what bounds starting an
 * async edge job in the request that accepted it (DIRECT_START_MAX_MS).
 *
 * @example
 * ```ts
 * jobCpuMs(prepared.request, prepared.plan, DEFAULT_EDGE_BUDGET); // about 40 for the seed MLP's 300 epochs
 * ```
 */
export function jobCpuMs(request: FineTuneRequest, plan: RunPlan, budget: EdgeBudget): number {
  const traffic = plan.params === undefined ? 0 : stepTrafficBytes(plan, request.training.optimizer, request.model.base_dtype);
  return estimateCpuMs(costed(plan), budget, traffic);
}

/**
 * The largest estimated CPU time (jobCpuMs) of an async edge job that the Worker starts in the
 * request that accepted it, under `ctx.waitUntil`, instead of waiting for its Queue message
 * (EDGE_DIRECT_START_MAX_MS; docs/api.md, "Async edge jobs start at once"). Work under
 * waitUntil is cancelled 30 s after the response has been sent (Cloudflare, Workers limits,
 * "Duration"; runtime-apis/context, waitUntil): 5 s is a sixth of that, room for the estimate's
 * error (within 1.5x on the calibration grid) and for an isolate busy with other requests. A
 * run that is cut off anyway stops reporting: its lease lapses and the job's alarm queues it
 * again, as for any lost worker.
 */
export const DIRECT_START_MAX_MS = 5_000;

/** The worker name of a job claimed by the request that accepted it (AppDeps.directStart). */
export const DIRECT_START_WORKER = "edge-direct";

/** How a create request will be served. */
export type Decision = { run: "sync" } | { run: "async"; placement: "edge" | "gpu-node" };

/**
 * Decides sync or async, edge or GPU node, from the request's mode and placement, the plan and
 * the isolate memory its parsed request takes (`requestBytes`, parsedRequestBytes).
 *
 * @example
 * ```ts
 * decide(request, plan, DEFAULT_EDGE_BUDGET); // { run: "sync" } for the tiny MLP
 * decide(request, plan, DEFAULT_EDGE_BUDGET, parsedRequestBytes(40e6)); // { run: "async", placement: "gpu-node" }: 133 MiB parsed
 * ```
 */
export function decide(request: FineTuneRequest, plan: RunPlan, budget: EdgeBudget, requestBytes = 0): Decision {
  const cpuMs = jobCpuMs(request, plan, budget);
  // the isolate holds the parsed request and the run's WebAssembly memory at once
  const memoryBytes = plan.memory_bytes + requestBytes;
  const fits = cpuMs <= budget.maxCpuMs && memoryBytes <= budget.maxMemoryBytes;
  const why = () =>
    `this job needs about ${(cpuMs / 1000).toFixed(1)} s of CPU (${plan.flops.toExponential(2)} FLOPs, ${plan.steps} steps${plan.lr_finder_steps ? ` and up to ${plan.lr_finder_steps} of the lr "auto" range test` : ""}) and ` +
    `${(memoryBytes / 2 ** 20).toFixed(1)} MiB (${(plan.memory_bytes / 2 ** 20).toFixed(1)} MiB of WebAssembly memory${requestBytes > 0 ? `, ${(requestBytes / 2 ** 20).toFixed(1)} MiB for the parsed request` : ""}); the in-Worker budget is ${(budget.maxCpuMs / 1000).toFixed(1)} s and ` +
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
