/// <reference types="@webgpu/types" />
/**
 * train(): one request in, one result out. The same function runs in the Worker, on GPU nodes
 * and in-process; the runtime entry injects the compiled kernel module.
 *
 *   prepareRun (prepare.ts): validate (zod) -> data -> compile the model (graph/) -> plan -> weights
 *   runLoop:    epochs of { backend.step: forward, loss, zero_grad, backward, clip, update;
 *                           schedule } -> validation, events, early stopping -> result
 *   backends:   wasm-backend.ts (the kernel core, optionally on threads) and webgpu/ (a
 *               GPUDevice given in options.gpu); the loop does not know where the numbers live.
 */
import type { WasmModule } from "./wasm-types.js";
import type { WebGpuDevice } from "./webgpu/device.js";
import type { EngineInfo, EpochMetrics, FineTuneResult, Plan, ProgressEvent, RunError } from "../schema/result.js";
import { encodeBase64 } from "../formats/base64.js";
import type { Table } from "../formats/dataset.js";
import { writeSafetensors } from "../formats/safetensors.js";
import { acquireKernels, releaseKernels, type KernelInstance, type KernelVariant } from "./kernels.js";
import { defaultInit } from "./init.js";
import type { Parallelism } from "./parallel.js";
import type { TrainingBackend } from "./backend.js";
import { createWasmBackend } from "./wasm-backend.js";
import { prepareRun, type PreparedRun, type TrainRequest } from "./prepare.js";
import { createReferenceKernels } from "./reference.js";
import { MT19937, mixSeed, shuffleInPlace } from "./rng.js";
import { poissonBatch, privacyReport, uniformSource } from "./privacy/index.js";
import { createScheduler } from "./schedules.js";
import { useWebGpu } from "./webgpu/select.js";
import { ADAPTER_METADATA_KEY, adapterConfig, convertWeights, fitOutputRange, loraLayout } from "./adapters/output.js";
import type { NamedTensor } from "./backend.js";
import { compileForExplanation, explain, EXPLAIN_BATCH_ROWS, explainRows, explainRun, explainWeights } from "./explain/index.js";
import type { Explanations } from "../schema/explain.js";
import { lrRangeTest, suggestLearningRate, type LrFinderReport } from "./strategy.js";

export { prepareRun, type ExactTrainRequest, type PreparedRun, type TrainRequest } from "./prepare.js";
export { defaultInit } from "./init.js";

/** What the runtime entry injects: the compiled kernel core and where it runs. */
export interface EngineRuntime {
  /** The compiled kernel module (build/wasm/simd.wasm or relaxed-simd.wasm). */
  module: WasmModule;
  /** Which build `module` is. */
  variant: Exclude<KernelVariant, "js-reference">;
  runtime: EngineInfo["runtime"];
}

export interface TrainOptions {
  /** Worker threads (Node only; the in-Worker engine always uses 1). */
  threads?: number | undefined;
  /**
   * "wasm" runs the WASM kernel core; "webgpu" the WebGPU kernels on `gpu` (required);
   * "auto" (default) WebGPU when `gpu` is given and the steps are large enough
   * (`gpuMinFlopsPerStep`), else WASM; "js-reference" runs the TypeScript twins (slow, for tests).
   */
  kernel?: "auto" | "wasm" | "webgpu" | "js-reference" | undefined;
  /** A WebGPU device for the "webgpu" kernel (Node: requestWebGpuDevice(); browsers: navigator.gpu). */
  gpu?: WebGpuDevice | null | undefined;
  /** With kernel "auto" and a `gpu`: the FLOPs per step from which WebGPU is used (default WEBGPU_MIN_FLOPS_PER_STEP, 1e9). */
  gpuMinFlopsPerStep?: number | undefined;
  /** Cancels the run between steps; the result then has status "cancelled". */
  signal?: AbortSignal | undefined;
  /**
   * Called after every epoch, and after every step when `stepEvents` is true. When it returns a
   * promise for an epoch event, the next epoch starts once it settles: a job runner reports the
   * epoch and learns of a cancellation before training on (so a cancel stops within one epoch).
   */
  onProgress?: ((event: ProgressEvent) => void | Promise<void>) | undefined;
  stepEvents?: boolean | undefined;
  /** The result's id (default: a new "ft_..." id). */
  id?: string | undefined;
  /** Reported in result.plan.placement (default "local"). */
  placement?: Plan["placement"] | undefined;
  /** Data already parsed from CSV/JSONL file parts; used instead of request.data.train / validation. */
  tables?: { train?: Table; validation?: Table } | undefined;
  /** Data-parallel threads (Node); used when the job is large enough to gain from them. */
  parallel?: Parallelism | undefined;
  /** Filled in by the run: bytes of WebAssembly memory used (to check the plan's estimate). */
  diagnostics?: { memoryBytes?: number; arenaBytes?: number } | undefined;
}

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
 * A finished run with its weights as safetensors bytes (what storage wants): for an adapter
 * run, its full state with the layout convertWeights() turns into output.format.
 */
export interface RawRunResult {
  result: Omit<FineTuneResult, "weights">;
  weights: Uint8Array;
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
    backend = await createWasmBackend(instance, prepared, initial, { variant: useReference ? "js-reference" : runtime.variant, parallel: null });
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
  prepared: PreparedRun,
  options: TrainOptions,
  started: number,
  lrFinder: LrFinderReport | null,
): Promise<RawRunResult> {
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
      return runLoop(backend, runtime, prepared, options, started, explainWith, lrFinder);
    }
  }
  const useReference = options.kernel === "js-reference";
  const parallel =
    !useReference && !prepared.privacy && options.parallel && options.parallel.threads > 1 && !prepared.model.couplesRows &&
    options.parallel.worthIt(prepared.plan.flops / Math.max(1, prepared.plan.steps))
      ? options.parallel
      : null;
  // ---- memory: a kernel instance (reused across runs) and one arena over it, grown once to the plan
  const shared = parallel ? await parallel.acquire() : null;
  const instance: KernelInstance = shared ?? (useReference ? referenceInstance() : await acquireKernels(runtime.module));
  try {
    const backend = await createWasmBackend(instance, prepared, prepared.initialState ?? defaultInit(prepared.model, prepared.request.training.seed), {
      variant: useReference ? "js-reference" : runtime.variant,
      parallel: shared ? parallel : null,
      diagnostics: options.diagnostics,
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
    return await runLoop(backend, runtime, prepared, options, started, explainWith, lrFinder);
  } finally {
    if (shared) parallel!.release(shared);
    else if (!useReference) releaseKernels(runtime.module, instance);
  }
}

function referenceInstance(): KernelInstance {
  const memory = new WebAssembly.Memory({ initial: 1 });
  return { memory, kernels: createReferenceKernels(memory, 1024) };
}

/**
 * The training loop over a backend: epochs of batches in order or shuffled, the schedule, the
 * per-epoch metrics and events, early stopping, cancellation, and the result.
 */
export async function runLoop(
  backend: TrainingBackend,
  runtime: Pick<EngineRuntime, "runtime">,
  prepared: PreparedRun,
  options: TrainOptions,
  started: number,
  explainWith?: (parameters: NamedTensor[]) => Explanations | Promise<Explanations>,
  lrFinder: LrFinderReport | null = null,
): Promise<RawRunResult> {
  const { request, plan, train: trainTable, validation: validationTable } = prepared;
  const t = request.training;
  try {
    const scheduler = createScheduler(t.schedule, backend.group, {
      interval: plan.interval,
      totalSchedulerSteps: plan.totalSchedulerSteps,
    });
    const history: EpochMetrics[] = [];
    const order = Int32Array.from({ length: trainTable.rows }, (_, i) => i);
    const shuffleRng = new MT19937(mixSeed(t.seed, 0x5348_5546)); // "SHUF"
    const early = t.early_stopping;
    const earlyMode = early ? (early.mode === "auto" ? (early.monitor === "val_accuracy" ? "max" : "min") : early.mode) : "min";
    let earlyBest = earlyMode === "min" ? Infinity : -Infinity;
    let earlyBestEpoch: number | null = null;
    let wait = 0;
    let step = 0;
    let samples = 0;
    let status = "succeeded" as FineTuneResult["status"];
    let error: RunError | undefined;
    let lastYield = now();
    // a private run with Poisson sampling: each step's rows drawn afresh (privacy/index.ts)
    const privacy = prepared.privacy ?? null;
    const poisson = privacy?.poisson ? { order: new Int32Array(trainTable.rows), source: uniformSource(privacy.secure, mixSeed(t.seed, 0x504f_4953)) } : null; // "POIS"

    // the starting weights' validation metrics: what fine-tuning is compared against
    const before = validationTable ? await backend.evaluate() : null;
    // a causal LM reports perplexity, exp(mean next-token cross-entropy)
    const perplexity = (loss: number) => (prepared.huggingface?.task === "causal-lm" ? { val_perplexity: Math.exp(loss) } : {});
    const initial = before
      ? { val_loss: before.valLoss, ...(before.valAccuracy !== undefined ? { val_accuracy: before.valAccuracy } : {}), ...perplexity(before.valLoss) }
      : undefined;

    epochs: for (let epoch = 1; epoch <= t.epochs; epoch++) {
      if (t.shuffle) shuffleInPlace(shuffleRng, order);
      let lossSum = 0;
      let lossRows = 0;
      let lastLr = backend.group.lr;
      for (let b = 0; b < plan.stepsPerEpoch; b++) {
        if (options.signal?.aborted) {
          status = "cancelled";
          error = { code: "cancelled", message: "cancelled by the caller", step, epoch };
          break epochs;
        }
        let start = b * t.batch_size;
        let rows = Math.min(t.batch_size, trainTable.rows - start);
        let batchOrder = t.shuffle ? order : null;
        if (poisson) {
          start = 0;
          rows = poissonBatch(poisson.source, trainTable.rows, privacy!.sampleRate, poisson.order);
          batchOrder = poisson.order;
        }
        step += 1;
        lastLr = backend.group.lr;
        const pending = backend.step({ order: batchOrder, start, rows }, mixSeed(t.seed, step));
        const outcome = pending instanceof Promise ? await pending : pending;
        if ("fault" in outcome) {
          status = "diverged";
          error = {
            code: outcome.fault.code,
            message: `${outcome.fault.what} at step ${step} (epoch ${epoch}); weights are those before this step`,
            step,
            epoch,
          };
          break epochs;
        }
        if (plan.interval === "step") scheduler?.step();
        lossSum += outcome.loss * rows;
        lossRows += rows;
        samples += rows;
        if (options.stepEvents) options.onProgress?.({ type: "step", step, epoch, loss: outcome.loss, lr: lastLr });
        if (options.signal && now() - lastYield > 50) {
          // let the event loop deliver an abort
          await new Promise((resolve) => setTimeout(resolve, 0));
          lastYield = now();
        }
      }

      // ---- end of epoch: validation, metrics, schedule, early stopping
      const metrics: EpochMetrics = { epoch, train_loss: lossRows > 0 ? lossSum / lossRows : 0, lr: lastLr };
      if (privacy) metrics.epsilon = privacyReport(privacy, step).epsilon;
      const evaluation = validationTable ? await backend.evaluate() : null;
      if (evaluation) {
        metrics.val_loss = evaluation.valLoss;
        if (evaluation.valAccuracy !== undefined) metrics.val_accuracy = evaluation.valAccuracy;
        Object.assign(metrics, perplexity(evaluation.valLoss));
      }
      history.push(metrics);
      const reported = options.onProgress?.({ type: "epoch", ...metrics });
      if (reported instanceof Promise) await reported.catch(() => undefined);

      if (plan.interval === "epoch" && scheduler) {
        if (t.schedule.type === "plateau") scheduler.step(monitorValue(metrics, t.schedule.monitor ?? (evaluation ? "val_loss" : "train_loss")));
        else scheduler.step();
      }

      if (early) {
        const current = monitorValue(metrics, early.monitor);
        const improved = earlyMode === "min" ? current < earlyBest - early.min_delta : current > earlyBest + early.min_delta;
        if (improved) {
          earlyBest = current;
          earlyBestEpoch = epoch;
          wait = 0;
          await backend.saveBest();
        } else {
          wait += 1;
          if (wait >= early.patience) break;
        }
      }
      if (options.signal && now() - lastYield > 50) {
        await new Promise((resolve) => setTimeout(resolve, 0));
        lastYield = now();
      }
    }

    if (early?.restore_best_weights && earlyBestEpoch !== null && status === "succeeded") await backend.restoreBest();

    // ---- result
    // an adapter run's file is its full state, with the layout that converts it to peft or merged
    // on the way out (runPrepared, and the API's downloads: convertWeights)
    const lora = prepared.model.lora
      ? { ...loraLayout(prepared.model, prepared.originalNames, request.output.format), ...(request.output.overflow === "clamp" ? { overflow: "clamp" as const } : {}) }
      : null;
    const parameters = await backend.parameters();
    // half-precision output: a weight beyond the format's range is a 422 naming it, or clamped
    const weights = writeSafetensors(fitOutputRange(parameters, request.output.dtype, request.output.overflow), {
      dtype: request.output.dtype,
      metadata: { format: "pt", producer: "edgetune", ...(lora ? { [ADAPTER_METADATA_KEY]: JSON.stringify(lora) } : {}) },
    });
    const duration = now() - started;
    const result: RawRunResult["result"] = {
      id: options.id ?? newId(),
      status,
      metrics: {
        ...(initial ? { initial } : {}),
        history,
        best_epoch: early ? earlyBestEpoch : bestEpoch(history),
        steps: step - (status === "diverged" ? 1 : 0),
        samples_per_second: duration > 0 ? (samples / duration) * 1000 : 0,
        duration_ms: duration,
        ...(lrFinder ? { lr_finder: { lr: lrFinder.lr, lrs: lrFinder.lrs, losses: lrFinder.losses, method: lrFinder.method } } : {}),
        ...(privacy ? { privacy: privacyReport(privacy, step - (status === "diverged" ? 1 : 0)) } : {}),
      },
      plan: {
        params: plan.params,
        trainable_params: plan.trainable_params,
        flops: plan.flops,
        memory_bytes: plan.memory_bytes,
        groups: plan.groups,
        steps: plan.steps,
        ...(plan.batch_size !== undefined ? { batch_size: plan.batch_size } : {}),
        ...(plan.loss !== undefined ? { loss: plan.loss } : {}),
        ...(plan.lr_finder_steps !== undefined ? { lr_finder_steps: plan.lr_finder_steps } : {}),
        placement: options.placement ?? "local",
      },
      engine: { kernel: backend.kernel, threads: backend.threads, runtime: runtime.runtime },
      ...(prepared.huggingface ? { huggingface: prepared.huggingface } : {}),
      ...(request.adapter && prepared.model.lora
        ? { adapter_config: adapterConfig(request.adapter, prepared.model, prepared.huggingface?.task ?? null, modelType(prepared)) }
        : {}),
      ...(request.adapter && request.adapter.r > WORKERS_AI_MAX_LORA_RANK
        ? { warnings: [`adapter.r is ${request.adapter.r}: Workers AI serves LoRA adapters of rank up to ${WORKERS_AI_MAX_LORA_RANK}, so it will not take this one`] }
        : {}),
      ...(error ? { error } : {}),
    };
    // request.explain: attributions of the final (or restored-best) weights of a run that succeeded
    if (explainWith && request.explain && status === "succeeded") result.explanations = await explainWith(parameters);
    return { result, weights };
  } finally {
    backend.close();
  }
}

// ------------------------------------------------------------------ pieces of the loop



/** The largest LoRA rank Workers AI serves (developers.cloudflare.com/workers-ai/fine-tunes/loras). */
const WORKERS_AI_MAX_LORA_RANK = 32;

/** config.json's model_type (what Workers AI reads from adapter_config.json), for Hub models. */
function modelType(prepared: PreparedRun): string | null {
  const type = prepared.huggingface?.config.model_type;
  return typeof type === "string" ? type : null;
}

function monitorValue(m: EpochMetrics, monitor: "val_loss" | "train_loss" | "val_accuracy"): number {
  return m[monitor] ?? NaN;
}

/** The first epoch with the lowest val_loss (or train_loss without validation). */
function bestEpoch(history: EpochMetrics[]): number | null {
  let best: EpochMetrics | null = null;
  for (const h of history) {
    const v = h.val_loss ?? h.train_loss;
    if (best === null || v < (best.val_loss ?? best.train_loss)) best = h;
  }
  return best?.epoch ?? null;
}

/**
 * A new fine-tune id: "ft_" and 32 hex digits.
 *
 * @example
 * ```ts
 * newId(); // "ft_4f0c9d2e..."
 * ```
 */
export function newId(): string {
  return `ft_${crypto.randomUUID().replaceAll("-", "")}`;
}

function now(): number {
  return performance.now();
}
