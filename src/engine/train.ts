/// <reference types="@webgpu/types" />
/**
 * train(): one request in, one result out. The same function runs in the Worker, on GPU nodes
 * and in-process; the runtime entry injects the compiled kernel module.
 *
 *   prepareRun: validate (zod) -> data -> plan -> weights
 *   runLoop:    epochs of { backend.step: forward, loss, zero_grad, backward, clip, update;
 *                           schedule } -> validation, events, early stopping -> result
 *   backends:   wasm-backend.ts (the kernel core, optionally on threads) and webgpu/ (a
 *               GPUDevice given in options.gpu); the loop does not know where the numbers live.
 */
import { FineTuneRequest, type DatasetSpec, type FineTuneRequestInput, type FineTuneRequest as Request } from "../schema/request.js";
import { zodIssues } from "../schema/issues.js";
import type { EngineInfo, EpochMetrics, FineTuneResult, Plan, ProgressEvent, RunError } from "../schema/result.js";
import { RequestValidationError, UnprocessableError, type FieldIssue } from "../errors.js";
import { decodeBase64, encodeBase64 } from "../formats/base64.js";
import { checkTargets, tableFromInline, type Table } from "../formats/dataset.js";
import { parseSafetensors, readTensorF32, writeSafetensors } from "../formats/safetensors.js";
import { acquireKernels, releaseKernels, type KernelInstance, type KernelVariant } from "./kernels.js";
import { checkLossSpec } from "./losses.js";
import { describeModel, type ModelSpec } from "./model.js";
import type { Parallelism } from "./parallel.js";
import type { TrainingBackend } from "./backend.js";
import { createWasmBackend } from "./wasm-backend.js";
import { planRun, type RunPlan } from "./plan.js";
import { createReferenceKernels } from "./reference.js";
import { MT19937, fillUniform, mixSeed, shuffleInPlace } from "./rng.js";
import { createScheduler } from "./schedules.js";
import { useWebGpu } from "./webgpu/select.js";

/** What the runtime entry injects: the compiled kernel core and where it runs. */
export interface EngineRuntime {
  /** The compiled kernel module (build/wasm/simd.wasm or relaxed-simd.wasm). */
  module: WebAssembly.Module;
  /** Which build `module` is. */
  variant: Exclude<KernelVariant, "js-reference">;
  runtime: EngineInfo["runtime"];
}

export interface TrainOptions {
  /** Worker threads (Node only; the in-Worker engine always uses 1). */
  threads?: number;
  /**
   * "wasm" runs the WASM kernel core; "webgpu" the WebGPU kernels on `gpu` (required);
   * "auto" (default) WebGPU when `gpu` is given and the steps are large enough
   * (`gpuMinFlopsPerStep`), else WASM; "js-reference" runs the TypeScript twins (slow, for tests).
   */
  kernel?: "auto" | "wasm" | "webgpu" | "js-reference";
  /** A WebGPU device for the "webgpu" kernel (Node: requestWebGpuDevice(); browsers: navigator.gpu). */
  gpu?: GPUDevice | null;
  /** With kernel "auto" and a `gpu`: the FLOPs per step from which WebGPU is used (default WEBGPU_MIN_FLOPS_PER_STEP, 1e9). */
  gpuMinFlopsPerStep?: number;
  /** Cancels the run between steps; the result then has status "cancelled". */
  signal?: AbortSignal;
  /**
   * Called after every epoch, and after every step when `stepEvents` is true. When it returns a
   * promise for an epoch event, the next epoch starts once it settles: a job runner reports the
   * epoch and learns of a cancellation before training on (so a cancel stops within one epoch).
   */
  onProgress?: (event: ProgressEvent) => void | Promise<void>;
  stepEvents?: boolean;
  /** The result's id (default: a new "ft_..." id). */
  id?: string;
  /** Reported in result.plan.placement (default "local"). */
  placement?: Plan["placement"];
  /** Data already parsed from CSV/JSONL file parts; used instead of request.data.train / validation. */
  tables?: { train?: Table; validation?: Table };
  /** Data-parallel threads (Node); used when the job is large enough to gain from them. */
  parallel?: Parallelism;
  /** Filled in by the run: bytes of WebAssembly memory used (to check the plan's estimate). */
  diagnostics?: { memoryBytes?: number; arenaBytes?: number };
}

/** A request as `train()` accepts it: the API's JSON, or with weights as raw safetensors bytes. */
export type TrainRequest = Omit<FineTuneRequestInput, "weights"> & { weights?: string | Uint8Array | null };

/**
 * Everything a run needs, validated: the parsed request, the model, initial parameters, data.
 * Building it performs every check that can fail on user input, before any training starts.
 */
export interface PreparedRun {
  request: Request;
  model: ModelSpec;
  /** The given weights, or null: PyTorch's default init from training.seed, done by the run. */
  initialParameters: Map<string, Float32Array> | null;
  train: Table;
  validation: Table | null;
  plan: RunPlan;
}

/**
 * Validates a request and everything it refers to (weights, data, plan) without training.
 * Throws RequestValidationError (400) or UnprocessableError subclasses (422) naming the field.
 *
 * @example
 * ```ts
 * const prepared = prepareRun(request);
 * prepared.plan.flops; // decide where to run it
 * ```
 */
export function prepareRun(input: TrainRequest, tables: TrainOptions["tables"] = {}): PreparedRun {
  if (!isObject(input)) throw new RequestValidationError([{ path: "(body)", message: "must be a JSON object" }]);
  const rawWeights = input.weights;
  // Inline rows are validated once, by tableFromInline (row and column paths, NaN/Inf, ragged
  // rows): running zod over every number as well would double the cost of a small job.
  const data = isObject(input.data) ? input.data : undefined;
  const parsed = FineTuneRequest.safeParse({
    ...input,
    weights: rawWeights instanceof Uint8Array ? null : rawWeights,
    data: data ? { ...data, train: undefined, validation: undefined } : input.data,
  });
  if (!parsed.success) throw new RequestValidationError(zodIssues(parsed.error));
  const request = parsed.data;
  const model = describeModel(request.model.layers, request.trainable);
  checkLossSpec(request.training.loss, model.outFeatures);
  checkModelSize(model);

  let train = tables.train ?? inlineTable(data?.train, "data.train");
  if (!train) throw new RequestValidationError([{ path: "data.train", message: "training data is required" }]);
  let validation = tables.validation ?? inlineTable(data?.validation, "data.validation");
  checkFeatures(train, model, "data.train");
  checkTargets(train, request.training.loss, model.outFeatures, "data.train");
  if (validation) {
    if (request.data.validation_split !== undefined) {
      throw new RequestValidationError([{ path: "data.validation_split", message: "give either data.validation or data.validation_split, not both" }]);
    }
    checkFeatures(validation, model, "data.validation");
    checkTargets(validation, request.training.loss, model.outFeatures, "data.validation");
  } else if (request.data.validation_split !== undefined) {
    [train, validation] = splitTable(train, request.data.validation_split, request.training.seed);
  }
  const plan = planRun(request, model, {
    trainRows: train.rows,
    validationRows: validation?.rows ?? 0,
    features: train.features,
    targets: train.targets,
  });
  if (plan.memory_bytes > MAX_MEMORY_BYTES) {
    throw new UnprocessableError("too_large", [
      {
        path: "model.layers",
        message: `the run needs ${(plan.memory_bytes / 2 ** 30).toFixed(2)} GiB of memory; WebAssembly memory is limited to ${MAX_MEMORY_BYTES / 2 ** 30} GiB`,
      },
    ]);
  }
  // weights are read only once the plan is known to fit; without weights, the run initialises
  // them itself (from training.seed), so nothing of the model's size is allocated here
  const initialParameters =
    rawWeights === undefined || rawWeights === null
      ? null
      : loadWeights(model, typeof rawWeights === "string" ? decodeBase64(rawWeights, "weights") : rawWeights);
  return { request, model, initialParameters, train, validation, plan };
}

/** The most memory a run may plan: WebAssembly's 32-bit memories stop at 4 GiB; keep a margin. */
const MAX_MEMORY_BYTES = 3.5 * 2 ** 30;

/** Refuses models whose parameters alone cannot fit, before anything is allocated for them. */
function checkModelSize(model: ModelSpec): void {
  if (model.paramCount * 4 * 3 > MAX_MEMORY_BYTES) {
    throw new UnprocessableError("too_large", [
      { path: "model.layers", message: `${model.paramCount.toLocaleString("en-US")} parameters do not fit in a WebAssembly memory (at most about ${Math.floor(MAX_MEMORY_BYTES / 12).toLocaleString("en-US")} with their gradients and optimizer state)` },
    ]);
  }
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
  return { ...result, weights: encodeBase64(weights) };
}

/** A finished run with its weights as safetensors bytes (what storage wants). */
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
  if (useWebGpu(prepared, options)) {
    const { createWebGpuBackend } = await import("./webgpu/backend.js");
    const initial = prepared.initialParameters ?? defaultInit(prepared.model, prepared.request.training.seed);
    // "auto" falls back to WASM when the device cannot hold the run; "webgpu" reports why
    const backend = await createWebGpuBackend(options.gpu!, prepared, initial).catch((e: unknown) => {
      if (options.kernel === "webgpu") throw e;
      return null;
    });
    if (backend) return runLoop(backend, runtime, prepared, options, started);
  }
  const useReference = options.kernel === "js-reference";
  const parallel =
    !useReference && options.parallel && options.parallel.threads > 1 && options.parallel.worthIt(prepared.plan.flops / Math.max(1, prepared.plan.steps))
      ? options.parallel
      : null;
  // ---- memory: a kernel instance (reused across runs) and one arena over it, grown once to the plan
  const shared = parallel ? await parallel.acquire() : null;
  const instance: KernelInstance = shared ?? (useReference ? referenceInstance() : await acquireKernels(runtime.module));
  try {
    const backend = await createWasmBackend(instance, prepared, prepared.initialParameters ?? defaultInit(prepared.model, prepared.request.training.seed), {
      variant: useReference ? "js-reference" : runtime.variant,
      parallel: shared ? parallel : null,
      diagnostics: options.diagnostics,
    });
    return await runLoop(backend, runtime, prepared, options, started);
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
        const start = b * t.batch_size;
        const rows = Math.min(t.batch_size, trainTable.rows - start);
        step += 1;
        lastLr = backend.group.lr;
        const pending = backend.step({ order: t.shuffle ? order : null, start, rows }, mixSeed(t.seed, step));
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
      const metrics: EpochMetrics = { epoch, train_loss: lossSum / lossRows, lr: lastLr };
      const evaluation = validationTable ? await backend.evaluate() : null;
      if (evaluation) {
        metrics.val_loss = evaluation.valLoss;
        if (evaluation.valAccuracy !== undefined) metrics.val_accuracy = evaluation.valAccuracy;
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
    const weights = writeSafetensors(await backend.parameters(), {
      dtype: request.output.dtype,
      metadata: { format: "pt", producer: "edgetune" },
    });
    const duration = now() - started;
    const result: RawRunResult["result"] = {
      id: options.id ?? newId(),
      status,
      metrics: {
        history,
        best_epoch: early ? earlyBestEpoch : bestEpoch(history),
        steps: step - (status === "diverged" ? 1 : 0),
        samples_per_second: duration > 0 ? (samples / duration) * 1000 : 0,
        duration_ms: duration,
      },
      plan: {
        params: plan.params,
        trainable_params: plan.trainable_params,
        flops: plan.flops,
        memory_bytes: plan.memory_bytes,
        steps: plan.steps,
        placement: options.placement ?? "local",
      },
      engine: { kernel: backend.kernel, threads: backend.threads, runtime: runtime.runtime },
      ...(error ? { error } : {}),
    };
    return { result, weights };
  } finally {
    backend.close();
  }
}

// ------------------------------------------------------------------ pieces of the loop



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

// ------------------------------------------------------------------ inputs


/** PyTorch's default nn.Linear init after torch.manual_seed(seed): kaiming_uniform_(a=sqrt(5)) weights, U(+-1/sqrt(in)) bias. */
export function defaultInit(model: ModelSpec, seed: number): Map<string, Float32Array> {
  const rng = new MT19937(seed);
  const values = new Map<string, Float32Array>();
  for (const layer of model.layers) {
    if (layer.kind !== "linear") continue;
    const fanIn = layer.inFeatures;
    // torch.nn.init.kaiming_uniform_: gain = calculate_gain('leaky_relu', sqrt(5)), std = gain / sqrt(fan_in), bound = sqrt(3) * std
    const gain = Math.sqrt(2.0 / (1 + Math.sqrt(5) ** 2));
    const bound = Math.sqrt(3.0) * (gain / Math.sqrt(fanIn));
    const weight = new Float32Array(layer.weight.size);
    fillUniform(rng, weight, -bound, bound);
    values.set(layer.weight.name, weight);
    if (layer.bias) {
      const biasBound = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
      const bias = new Float32Array(layer.bias.size);
      fillUniform(rng, bias, -biasBound, biasBound);
      values.set(layer.bias.name, bias);
    }
  }
  return values;
}

/** Reads safetensors weights and checks them against the model as load_state_dict(strict=True) does. */
function loadWeights(model: ModelSpec, bytes: Uint8Array): Map<string, Float32Array> {
  const file = parseSafetensors(bytes, { field: "weights" });
  const issues: FieldIssue[] = [];
  const values = new Map<string, Float32Array>();
  const expected = new Set(model.parameters.map((p) => p.name));
  for (const p of model.parameters) {
    const info = file.tensors.get(p.name);
    if (!info) {
      issues.push({ path: "weights", message: `missing tensor "${p.name}" (shape [${p.shape.join(", ")}])` });
      continue;
    }
    if (info.shape.length !== p.shape.length || info.shape.some((d, i) => d !== p.shape[i])) {
      issues.push({
        path: `weights[${JSON.stringify(p.name)}]`,
        message: `has shape [${info.shape.join(", ")}] but the model expects [${p.shape.join(", ")}]`,
      });
      continue;
    }
    const data = readTensorF32(file, p.name, "weights");
    const bad = data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      issues.push({ path: `weights[${JSON.stringify(p.name)}]`, message: `element ${bad} is ${data[bad]}: weights must be finite` });
      continue;
    }
    values.set(p.name, data);
  }
  for (const name of file.tensors.keys()) {
    if (!expected.has(name)) {
      issues.push({
        path: `weights[${JSON.stringify(name)}]`,
        message: `is not a parameter of the model (its parameters are ${[...expected].join(", ")})`,
      });
    }
  }
  if (issues.length > 0) throw new UnprocessableError("weights_mismatch", issues);
  return values;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** An inline dataset ({x, y}) as a Table, or null when absent. */
function inlineTable(value: unknown, field: string): Table | null {
  if (value === undefined || value === null) return null;
  if (!isObject(value)) throw new RequestValidationError([{ path: field, message: "must be an object {x: rows, y: targets}" }]);
  const unknown = Object.keys(value).filter((k) => k !== "x" && k !== "y");
  if (unknown.length > 0) throw new RequestValidationError(unknown.map((k) => ({ path: `${field}.${k}`, message: "is not a known field" })));
  return tableFromInline(value as DatasetSpec, field);
}

function checkFeatures(table: Table, model: ModelSpec, field: string): void {
  if (table.features !== model.inFeatures) {
    throw new UnprocessableError("shape_mismatch", [
      {
        path: `${field}.x`,
        message: `rows have ${table.features} features but the first linear layer has in_features ${model.inFeatures}`,
      },
    ]);
  }
}

/** validation_split: a seeded random split, the first floor(n * (1 - split)) rows of the permutation train. */
function splitTable(table: Table, split: number, seed: number): [Table, Table] {
  const trainRows = Math.floor(table.rows * (1 - split));
  const valRows = table.rows - trainRows;
  if (trainRows === 0 || valRows === 0) {
    throw new UnprocessableError("invalid_dataset", [
      { path: "data.validation_split", message: `splits ${table.rows} rows into ${trainRows} training and ${valRows} validation rows; both need at least one` },
    ]);
  }
  const order = Int32Array.from({ length: table.rows }, (_, i) => i);
  shuffleInPlace(new MT19937(mixSeed(seed, 0x53504c54)), order); // "SPLT"
  const take = (idx: Int32Array): Table => {
    const x = new Float32Array(idx.length * table.features);
    const y = new Float32Array(idx.length * table.targets);
    idx.forEach((r, i) => {
      x.set(table.x.subarray(r * table.features, (r + 1) * table.features), i * table.features);
      y.set(table.y.subarray(r * table.targets, (r + 1) * table.targets), i * table.targets);
    });
    return { ...table, rows: idx.length, x, y };
  };
  return [take(order.subarray(0, trainRows)), take(order.subarray(trainRows))];
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
