/**
 * The WASM backend: parameters, gradients, optimizer state and data in one arena over the
 * kernel core's memory; each step is a handful of kernel calls, answered synchronously (no
 * await per step), optionally spread over threads (Parallelism).
 */
import type { Table } from "../formats/dataset.js";
import { Arena, type Region } from "./arena.js";
import type { BatchRef, Evaluation, StepOutcome, TrainingBackend } from "./backend.js";
import type { KernelInstance, KernelVariant, Kernels } from "./kernels.js";
import { createLoss, type Loss } from "./losses.js";
import { allocateModel, Model } from "./model.js";
import { createOptimizer } from "./optimizers.js";
import type { Network, Parallelism } from "./parallel.js";
import type { PreparedRun } from "./train.js";

/**
 * Builds the WASM backend of a run on a kernel instance.
 *
 * @example
 * ```ts
 * const backend = await createWasmBackend(instance, prepared, initialParameters, { variant: "wasm-simd" });
 * backend.step({ order: null, start: 0, rows: 32 }, seed);
 * ```
 */
export async function createWasmBackend(
  instance: KernelInstance,
  prepared: PreparedRun,
  initialParameters: Map<string, Float32Array>,
  options: {
    variant: KernelVariant;
    parallel?: Parallelism | null;
    diagnostics?: { memoryBytes?: number; arenaBytes?: number } | undefined;
  },
): Promise<TrainingBackend> {
  const { request, model: spec, plan, train: trainTable, validation: validationTable } = prepared;
  const t = request.training;
  const { memory, kernels } = instance;
  const arena = new Arena(memory, kernels.heap_base());
  arena.reserve(plan.memory_bytes);

  const data = loadTable(arena, trainTable); // x [N, F], y [N, T]
  const valData = validationTable ? loadTable(arena, validationTable) : null;
  const valLogits = validationTable ? arena.alloc(validationTable.rows * spec.outFeatures) : null; // [V, out]
  const batchX = arena.alloc(plan.maxRows * trainTable.features); // [B, F]
  const batchY = arena.alloc(plan.maxRows * trainTable.targets); // [B, T]
  const batchIndex = arena.alloc(plan.maxRows); // [B] i32

  const model = new Model(spec, kernels, memory, allocateModel(spec, arena, plan.maxRows));
  model.loadParameters(initialParameters);
  const trainableN = spec.trainableCount;
  const lastFinite = arena.alloc(trainableN); // [T] params before the latest update
  const best = t.early_stopping ? arena.alloc(trainableN) : null; // [T] best epoch's params
  const optimizer = createOptimizer(t.optimizer, kernels, arena, model.params.ptr, model.grads.ptr, trainableN);
  const loss = createLoss(t.loss, kernels, arena, spec.outFeatures);
  const clip =
    t.clip_grad_norm === null
      ? null
      : typeof t.clip_grad_norm === "number"
        ? { max_norm: t.clip_grad_norm, norm_type: 2 as const, error_if_nonfinite: false }
        : t.clip_grad_norm;
  if (options.diagnostics) {
    options.diagnostics.arenaBytes = arena.used;
    options.diagnostics.memoryBytes = memory.buffer.byteLength;
  }
  // threads get their shards' buffers after the run's own allocations
  const distributed = options.parallel ? await options.parallel.distribute(model, arena, instance) : null;
  const network: Network = distributed ?? model;
  const fault = (code: "diverged" | "non_finite_norm", what: string): StepOutcome => ({ fault: { code, what } });

  return {
    group: optimizer.group,
    kernel: options.variant,
    threads: distributed ? options.parallel!.threads : 1,

    step(batch: BatchRef, seed: number): StepOutcome {
      const { rows, start } = batch;
      // ---- batch: rows in order (a view into the dataset) or gathered by the shuffled order
      let xPtr: number;
      let yPtr: number;
      if (batch.order) {
        arena.i32(batchIndex).set(batch.order.subarray(start, start + rows));
        kernels.gather_rows(batchX.ptr, data.x.ptr, batchIndex.ptr, rows, trainTable.features);
        kernels.gather_rows(batchY.ptr, data.y.ptr, batchIndex.ptr, rows, trainTable.targets);
        xPtr = batchX.ptr;
        yPtr = batchY.ptr;
      } else {
        xPtr = data.x.ptr + start * trainTable.features * 4;
        yPtr = data.y.ptr + start * trainTable.targets * 4;
      }
      // ---- forward, loss (fused with dL/dlogits)
      const logits = network.forward(xPtr, rows, true, seed);
      const batchLoss = loss.compute(model.logitsGrad.ptr, logits, yPtr, rows);
      if (!Number.isFinite(batchLoss)) return fault("diverged", `the loss became ${batchLoss}`);
      // ---- zero_grad, backward
      network.zeroGrad();
      network.backward(rows);
      if (!kernels.all_finite(model.grads.ptr, trainableN)) return fault("diverged", "a gradient became non-finite");
      // ---- clip_grad_norm_
      if (clip) {
        const total = gradNorm(kernels, model.grads, clip.norm_type);
        if (clip.error_if_nonfinite && !Number.isFinite(total)) {
          // torch raises here; a numeric fault ends the run as diverged with the last finite weights
          return fault("non_finite_norm", `the total gradient norm (order ${clip.norm_type}) is ${total} and clip_grad_norm.error_if_nonfinite is set`);
        }
        // clip_coef = max_norm / (total + 1e-6) in float32, clamped at 1 (an infinite norm scales by 0, as in torch)
        const coef = Math.fround(clip.max_norm / Math.fround(total + 1e-6));
        kernels.scale(model.grads.ptr, Math.min(coef, 1), trainableN);
      }
      // ---- update, keeping the last finite parameters
      kernels.copy(lastFinite.ptr, model.params.ptr, trainableN);
      optimizer.step();
      if (!kernels.all_finite(model.params.ptr, trainableN)) {
        kernels.copy(model.params.ptr, lastFinite.ptr, trainableN);
        return fault("diverged", "a weight became non-finite");
      }
      return { loss: batchLoss };
    },

    evaluate(): Evaluation | null {
      if (!valData || !valLogits || !validationTable) return null;
      return evaluate(model, loss, kernels, arena, valData, valLogits, validationTable);
    },

    saveBest() {
      kernels.copy(best!.ptr, model.params.ptr, trainableN);
    },

    restoreBest() {
      kernels.copy(model.params.ptr, best!.ptr, trainableN);
    },

    parameters() {
      return model.readParameters();
    },

    close() {
      distributed?.close();
    },
  };
}

/** The total norm of torch.nn.utils.clip_grad_norm_: ||all grads||_p (p = "inf": max |g|), as float32. */
function gradNorm(k: Kernels, grads: Region, normType: number | "inf"): number {
  if (normType === "inf") return Math.fround(k.max_abs(grads.ptr, grads.length));
  if (normType === 2) return Math.fround(Math.sqrt(k.sum_squares(grads.ptr, grads.length)));
  return Math.fround(k.sum_abs_pow(grads.ptr, normType, grads.length) ** (1 / normType));
}

/** Validation in eval mode (no dropout), in chunks of the batch buffer, one loss over all rows. */
function evaluate(
  model: Model, loss: Loss, k: Kernels, arena: Arena,
  data: { x: Region; y: Region }, logits: Region, table: Table,
): Evaluation {
  const out = model.spec.outFeatures;
  for (let start = 0; start < table.rows; start += model.maxRows) {
    const rows = Math.min(model.maxRows, table.rows - start);
    const chunk = model.forward(data.x.ptr + start * table.features * 4, rows, false);
    k.copy(logits.ptr + start * out * 4, chunk, rows * out);
  }
  const valLoss = loss.compute(0, logits.ptr, data.y.ptr, table.rows);
  const valAccuracy = loss.accuracy(arena.f32(logits), arena.f32(data.y), table.rows);
  return { valLoss, valAccuracy };
}

/** Copies a table into the arena: x [rows, features], y [rows, targets]. */
function loadTable(arena: Arena, table: Table): { x: Region; y: Region } {
  const x = arena.alloc(table.rows * table.features);
  arena.f32(x).set(table.x);
  const y = arena.alloc(table.rows * table.targets);
  arena.f32(y).set(table.y);
  return { x, y };
}
