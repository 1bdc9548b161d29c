/// <reference types="@webgpu/types" />
/**
 * train(): one request in, one result out. The same function runs in the Worker, on GPU nodes
 * and in-process; the runtime entry injects the compiled kernel module.
 *
 *   prepare.ts:   validate (zod) -> data -> compile the model (graph/) -> plan -> weights
 *   train.ts:     this orchestrator: the backend (wasm-backend.ts on the kernel core, optionally on
 *                 threads, or webgpu/ on options.gpu), lr "auto"'s range test (strategy.ts), and
 *                 the explanation's model (explain/)
 *   loop.ts:      epochs of { backend.step: forward, loss, zero_grad, backward, clip, update;
 *                 schedule } -> validation, events, early stopping -> the result
 *   run-types.ts: EngineRuntime, TrainOptions, RawRunResult
 */
import type { FineTuneResult } from "../schema/result.js";
import { encodeBase64 } from "../formats/base64.js";
import { acquireKernels, releaseKernels, type KernelInstance } from "./kernels.js";
import { defaultInit } from "./init.js";
import type { TrainingBackend } from "./backend.js";
import { createWasmBackend } from "./wasm-backend.js";
import { prepareRun, type PreparedRun, type TrainRequest } from "./prepare.js";
import { createReferenceKernels } from "./reference.js";
import { useWebGpu } from "./webgpu/select.js";
import { convertWeights } from "./adapters/output.js";
import type { NamedTensor } from "./backend.js";
import { compileForExplanation, explain, EXPLAIN_BATCH_ROWS, explainRows, explainRun, explainWeights } from "./explain/index.js";
import { lrRangeTest, suggestLearningRate, type LrFinderReport } from "./strategy.js";
import { now, runLoop } from "./loop.js";
import type { EngineRuntime, RawRunResult, TrainOptions } from "./run-types.js";
import { readTrainingCheckpoint, resumeState } from "./checkpoint.js";

export { prepareRun, type ExactTrainRequest, type PreparedRun, type TrainRequest } from "./prepare.js";
export { defaultInit } from "./init.js";
export { newId, runLoop } from "./loop.js";
export type { CheckpointEvent, EngineRuntime, RawRunResult, TrainOptions } from "./run-types.js";
export { checkpointWeights, readTrainingCheckpoint, type TrainingState } from "./checkpoint.js";

/**
 * Creates the engine for a runtime: `train(request, options)` bound to an injected kernel module.
 *
 * @example
 * ```ts
 * const engine = createEngine({ module, variant: "wasm-simd", runtime: "node" });
 * const result = await engine.train({ model, data, training: { epochs: 5 } });
 * ```
 */
export function createEngine(runtime: EngineRuntime) {
  return {
    /** Fine-tunes the model of `request`; resolves with the result (also for diverged or cancelled runs). */
    train(request: TrainRequest, options: TrainOptions = {}): Promise<FineTuneResult> {
      return train(runtime, request, options);
    },
    /** Validates and plans a request without training it. */
    prepare: prepareRun,
    runtime,
  };
}

/** The engine's train(): see createEngine. */
export async function train(runtime: EngineRuntime, request: TrainRequest, options: TrainOptions = {}): Promise<FineTuneResult> {
  const started = now();
  const prepared = prepareRun(request, options.tables);
  return runPrepared(runtime, prepared, options, started);
}

/** Trains a prepared run; the result's weights are base64 safetensors. */
export async function runPrepared(
  runtime: EngineRuntime,
  prepared: PreparedRun,
  options: TrainOptions = {},
  started = now(),
): Promise<FineTuneResult> {
  const { result, weights } = await runPreparedRaw(runtime, prepared, options, started);
  return { ...result, weights: encodeBase64(convertWeights(weights)) };
}


/**
 * Trains a prepared run and returns the weights as raw safetensors bytes.
 *
 * @example
 * ```ts
 * const { result, weights } = await runPreparedRaw(runtime, prepareRun(request));
 * await bucket.put(`weights/${result.id}.safetensors`, weights);
 * ```
 */
export async function runPreparedRaw(
  runtime: EngineRuntime,
  prepared: PreparedRun,
  options: TrainOptions = {},
  started = now(),
): Promise<RawRunResult> {
  if (!prepared.lrFinder) return runWithBackend(runtime, prepared, options, started, null);
  // lr "auto": the range test on a copy of the starting weights, then the run from the originals
  const report = await findLearningRate(runtime, prepared, options);
  const t = prepared.request.training;
  const training = {
    ...t,
    optimizer: prepared.lrFinder.lr ? { ...t.optimizer, lr: report.lr } : t.optimizer,
    schedule: prepared.lrFinder.maxLr && t.schedule.type === "onecycle" ? { ...t.schedule, max_lr: report.lr } : t.schedule,
  };
  return runWithBackend(runtime, { ...prepared, request: { ...prepared.request, training }, lrFinder: null }, options, started, report);
}

/**
 * The learning-rate range test of a run (strategy.ts, docs/strategy.md) on a backend of its own,
 * made from the run's starting weights as the run's is (WebGPU when the run uses it, else the
 * WASM core on one thread, so that the suggestion does not depend on the threads), and released
 * before the run allocates its own.
 */
async function findLearningRate(runtime: EngineRuntime, prepared: PreparedRun, options: TrainOptions): Promise<LrFinderReport> {
  const initial = prepared.initialState ?? defaultInit(prepared.model, prepared.request.training.seed);
  let backend: TrainingBackend | null = null;
  if (useWebGpu(prepared, options)) {
    const { createWebGpuBackend } = await import("./webgpu/backend.js");
    backend = await createWebGpuBackend(options.gpu as unknown as GPUDevice, prepared, initial).catch((e: unknown) => {
      if (options.kernel === "webgpu") throw e;
      return null;
    });
  }
  const useReference = options.kernel === "js-reference";
  let instance: KernelInstance | null = null;
  if (!backend) {
    instance = useReference ? referenceInstance() : await acquireKernels(runtime.module);
    backend = await createWasmBackend(instance, prepared, initial, { variant: useReference ? "js-reference" : runtime.variant, parallel: null, fused: false });
  }
  try {
    const curve = await lrRangeTest(backend, prepared, options.signal);
    return { ...suggestLearningRate(curve), ...curve };
  } finally {
    backend.close();
    if (instance && !useReference) releaseKernels(runtime.module, instance);
  }
}

async function runWithBackend(
  runtime: EngineRuntime,
  original: PreparedRun,
  options: TrainOptions,
  started: number,
  lrFinder: LrFinderReport | null,
): Promise<RawRunResult> {
  // a resumed run starts from the checkpoint's weights (lr "auto"'s range test, above, from the
  // request's, as the uninterrupted run did)
  const resume = options.resumeFrom ? readTrainingCheckpoint(options.resumeFrom) : null;
  const prepared = resume ? { ...original, initialState: resumeState(resume, original.model.state) } : original;
  if (useWebGpu(prepared, options)) {
    const { createWebGpuBackend } = await import("./webgpu/backend.js");
    const initial = prepared.initialState ?? defaultInit(prepared.model, prepared.request.training.seed);
    // "auto" falls back to WASM when the device cannot hold the run; "webgpu" reports why
    const backend = await createWebGpuBackend(options.gpu as unknown as GPUDevice, prepared, initial).catch((e: unknown) => {
      if (options.kernel === "webgpu") throw e;
      return null;
    });
    if (backend) {
      // the explanation runs on the device with the WGSL kernels (webgpu/explain.ts); a model
      // those cannot explain (ops without WGSL, an embedding feeding other ops) on the WASM core
      const explainWith = async (parameters: NamedTensor[]) => {
        const spec = prepared.request.explain!;
        const compiled = compileForExplanation(prepared);
        const { createWebGpuExplainModel } = await import("./webgpu/explain.js");
        const net = await createWebGpuExplainModel(options.gpu as unknown as GPUDevice, compiled, explainWeights(prepared, compiled, parameters), EXPLAIN_BATCH_ROWS).catch(() => null);
        if (net) {
          try {
            return await explain(net, spec, explainRows(spec, prepared.validation ?? prepared.train), prepared.train);
          } finally {
            net.close();
          }
        }
        const instance = await acquireKernels(runtime.module);
        try {
          return await explainRun(instance, prepared, parameters, prepared.request.explain!);
        } finally {
          releaseKernels(runtime.module, instance);
        }
      };
      return runLoop(backend, runtime, prepared, options, started, explainWith, lrFinder, resume);
    }
  }
  const useReference = options.kernel === "js-reference";
  const parallel =
    !useReference && options.parallel && options.parallel.threads > 1 && !prepared.model.couplesRows &&
    options.parallel.worthIt(prepared.plan.flops / Math.max(1, prepared.plan.steps))
      ? options.parallel
      : null;
  // ---- memory: a kernel instance (reused across runs) and one arena over it, grown once to the plan
  const shared = parallel ? await parallel.acquire() : null;
  // options.instance: the one whose memory holds the staged checkpoint (staging.ts)
  const instance: KernelInstance = shared ?? (useReference ? referenceInstance() : (options.instance ?? (await acquireKernels(runtime.module))));
  let weightsInMemory = false;
  try {
    const backend = await createWasmBackend(instance, prepared, prepared.initialState ?? defaultInit(prepared.model, prepared.request.training.seed), {
      variant: useReference ? "js-reference" : runtime.variant,
      parallel: shared ? parallel : null,
      diagnostics: options.diagnostics,
      fused: options.fused !== false,
    });
    // the explanation takes over the instance's memory once training is done (shards: a fresh one)
    const explainWith = async (parameters: NamedTensor[]) => {
      if (!shared) return explainRun(instance, prepared, parameters, prepared.request.explain!);
      const own = await acquireKernels(runtime.module);
      try {
        return await explainRun(own, prepared, parameters, prepared.request.explain!);
      } finally {
        releaseKernels(runtime.module, own);
      }
    };
    const raw = await runLoop(backend, runtime, prepared, options, started, explainWith, lrFinder, resume);
    weightsInMemory = raw.weights.buffer === instance.memory.buffer;
    return raw;
  } finally {
    if (shared) parallel!.release(shared);
    // an instance whose memory holds the result's weights is never given to another run
    else if (!useReference && !weightsInMemory) releaseKernels(runtime.module, instance);
  }
}

function referenceInstance(): KernelInstance {
  const memory = new WebAssembly.Memory({ initial: 1 });
  return { memory, kernels: createReferenceKernels(memory, 1024) };
}
