/**
 * Training checkpoints (SPEC section 8, docs/api.md "Checkpoints, pause and resume"): everything
 * a run needs to continue bit-identically after epoch `epoch`, in one safetensors file.
 *
 *   - the model's state_dict under its own names (float32, state_dict layout: what
 *     GET .../checkpoints/{epoch}/weights returns, and what loads in torch as it is);
 *   - the optimizer's tensors under `__optimizer__.<torch name>` (exp_avg, exp_avg_sq, ...), flat
 *     over the trainable parameters in state_dict order;
 *   - the early-stopping snapshot (the best epoch's state block) under `__best__.state`;
 *   - `__metadata__["edgetune.checkpoint"]`: TrainingState as JSON (epoch, step, optimizer step
 *     count, scheduler steps, RNG positions, early-stopping counters, the history so far).
 *
 * Why positions rather than generator words: every random stream of a run is derived from
 * `training.seed` (rng.ts mixSeed) and advanced a known number of times (one shuffle per epoch,
 * one Poisson draw per step; dropout is seeded per step), so a resumed run re-derives each stream
 * and advances it as far as the checkpoint says. The scheduler is replayed the same way
 * (scheduler.step() per completed step or epoch, with the history's metrics for plateau): the
 * same f64 operations in the same order give the same lr bits. This module is runtime-agnostic.
 */
import type { EpochMetrics } from "../schema/result.js";
import { parseSafetensors, writeSafetensors, type SafetensorsFile, type WritableTensor } from "../formats/safetensors.js";
import { UnprocessableError } from "../errors.js";
import type { BackendTrainingState, NamedTensor } from "./backend.js";

/** The `__metadata__` key of a checkpoint's TrainingState JSON. */
export const CHECKPOINT_METADATA_KEY = "edgetune.checkpoint";
/** Tensor-name prefix of the optimizer's state in a checkpoint file. */
export const OPTIMIZER_PREFIX = "__optimizer__.";
/** Tensor name of the early-stopping snapshot in a checkpoint file. */
export const BEST_TENSOR = "__best__.state";

/**
 * A run's position after a completed epoch: what checkpoint.ts writes as JSON next to the tensors.
 *
 * @example
 * ```ts
 * const state: TrainingState = readTrainingCheckpoint(bytes).state;
 * state.epoch; // 4: the resumed run starts with epoch 5
 * ```
 */
export interface TrainingState {
  version: 1;
  /** The last completed epoch. */
  epoch: number;
  /** Optimizer steps taken so far. */
  step: number;
  /** Training rows seen so far. */
  samples: number;
  /** torch's state['step'] and SGD's momentum-buffer flag. */
  optimizer: { t: number; initialised: boolean };
  /** scheduler.step() calls so far ("step" interval: one per step; "epoch": one per epoch, plateau with the history's metric). */
  scheduler: { interval: "step" | "epoch"; steps: number };
  /** How far each seeded stream has advanced: shuffles (one per epoch), Poisson batches (one per step); dropout masks are seeded by step. */
  rng: { shuffles: number; poisson_batches: number };
  /** Early stopping's best value (null: none yet), its epoch, and the epochs without improvement. */
  early_stopping: { best: number | null; best_epoch: number | null; wait: number; stopped: boolean } | null;
  /** The starting weights' validation metrics (metrics.initial of the run). */
  initial: { val_loss: number; val_accuracy?: number; val_perplexity?: number } | null;
  history: EpochMetrics[];
  /** The model's state tensors, "name:shape" joined: a resumed run must have the same ones. */
  model: string;
}

/**
 * One checkpoint: its state, the model's state_dict (state_dict layout) and what the backend holds.
 *
 * @example
 * ```ts
 * const bytes = writeTrainingCheckpoint({ state, weights: await backend.parameters(), backend: await backend.saveTrainingState!() });
 * ```
 */
export interface TrainingCheckpoint {
  state: TrainingState;
  weights: NamedTensor[];
  backend: BackendTrainingState;
}

/**
 * The model fingerprint a checkpoint records: each state tensor's name and shape.
 *
 * @example
 * ```ts
 * modelFingerprint([{ name: "fc.weight", shape: [1, 2] }]); // "fc.weight:1x2"
 * ```
 */
export function modelFingerprint(state: readonly { name: string; shape: readonly number[] }[]): string {
  return state.map((t) => `${t.name}:${t.shape.join("x")}`).join(",");
}

/**
 * Serialises a checkpoint as safetensors (float32 everywhere; bit-exact).
 *
 * @example
 * ```ts
 * const bytes = writeTrainingCheckpoint(checkpoint);
 * readTrainingCheckpoint(bytes).state.epoch === checkpoint.state.epoch; // true
 * ```
 */
export function writeTrainingCheckpoint(checkpoint: TrainingCheckpoint): Uint8Array {
  const tensors: WritableTensor[] = checkpoint.weights.map((t) => ({ name: t.name, shape: t.shape, data: t.data, ...(t.dtype ? { dtype: t.dtype } : {}) }));
  for (const o of checkpoint.backend.optimizer) tensors.push({ name: OPTIMIZER_PREFIX + o.name, shape: [o.data.length], data: o.data });
  if (checkpoint.backend.best) tensors.push({ name: BEST_TENSOR, shape: [checkpoint.backend.best.length], data: checkpoint.backend.best });
  const state = { ...checkpoint.state, optimizer: checkpoint.backend.position };
  return writeSafetensors(tensors, { dtype: "float32", metadata: { format: "pt", producer: "edgetune", [CHECKPOINT_METADATA_KEY]: JSON.stringify(state) } });
}

/**
 * Reads a checkpoint written by writeTrainingCheckpoint. A file that is not one is a 422 naming `field`.
 *
 * @example
 * ```ts
 * const { state, weights, backend } = readTrainingCheckpoint(bytes);
 * ```
 */
export function readTrainingCheckpoint(bytes: Uint8Array, field = "from_checkpoint"): TrainingCheckpoint {
  const file = parseSafetensors(bytes, { field });
  const json = file.metadata?.[CHECKPOINT_METADATA_KEY];
  if (!json) throw new UnprocessableError("invalid_checkpoint", [{ path: field, message: "is not an edgetune checkpoint (no edgetune.checkpoint metadata)" }]);
  const state = JSON.parse(json) as TrainingState;
  const weights: NamedTensor[] = [];
  const optimizer: { name: string; data: Float32Array }[] = [];
  let best: Float32Array | null = null;
  for (const [name, info] of file.tensors) {
    if (name === BEST_TENSOR) best = rawF32(file, name);
    else if (name.startsWith(OPTIMIZER_PREFIX)) optimizer.push({ name: name.slice(OPTIMIZER_PREFIX.length), data: rawF32(file, name) });
    else weights.push({ name, shape: info.shape, data: info.dtype === "I64" ? readI64(file, name) : rawF32(file, name), ...(info.dtype === "I64" ? { dtype: "I64" as const } : {}) });
  }
  return { state, weights, backend: { optimizer, position: state.optimizer, best } };
}

/**
 * A checkpoint's weights alone: the state_dict tensors under their names, as a plain safetensors
 * file (what GET /v1/fine-tunes/{id}/checkpoints/{epoch}/weights returns).
 *
 * @example
 * ```ts
 * const weights = checkpointWeights(checkpointBytes); // loads with safetensors.torch.load_file
 * ```
 */
export function checkpointWeights(bytes: Uint8Array): Uint8Array {
  const { weights } = readTrainingCheckpoint(bytes, "checkpoint");
  return writeSafetensors(weights, { dtype: "float32", metadata: { format: "pt", producer: "edgetune" } });
}

/**
 * The initial state of a resumed run from a checkpoint's weights: the state block's layout (a
 * transposed tensor, GPT-2's Conv1D, goes back to [out, in]). A checkpoint of another model is
 * a 422 naming `field`.
 *
 * @example
 * ```ts
 * const initial = resumeState(checkpoint, prepared.model.state, prepared.model.state.map(...));
 * ```
 */
export function resumeState(
  checkpoint: TrainingCheckpoint,
  modelState: readonly { name: string; shape: readonly number[]; transposed?: boolean }[],
  field = "from_checkpoint",
): Map<string, Float32Array> {
  const expected = modelFingerprint(modelState);
  if (checkpoint.state.model !== expected) {
    throw new UnprocessableError("checkpoint_mismatch", [
      { path: field, message: `was saved from another model (its tensors are ${checkpoint.state.model.slice(0, 300)}; this model's are ${expected.slice(0, 300)})` },
    ]);
  }
  const byName = new Map(checkpoint.weights.map((t) => [t.name, t]));
  const values = new Map<string, Float32Array>();
  for (const t of modelState) {
    const saved = byName.get(t.name)!;
    values.set(t.name, t.transposed ? transpose(saved.data, t.shape[0]!, t.shape[1]!) : saved.data);
  }
  return values;
}

/** [rows, cols] -> [cols, rows] */
function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

/** A float32 tensor's bytes as they are (no conversion, so every bit pattern survives). */
function rawF32(file: SafetensorsFile, name: string): Float32Array {
  const info = file.tensors.get(name)!;
  if (info.dtype !== "F32") throw new UnprocessableError("invalid_checkpoint", [{ path: "from_checkpoint", message: `tensor ${name} is ${info.dtype}, a checkpoint holds F32` }]);
  const out = new Float32Array((info.end - info.begin) / 4);
  new Uint8Array(out.buffer).set(file.bytes.subarray(file.dataStart + info.begin, file.dataStart + info.end));
  return out;
}

function readI64(file: SafetensorsFile, name: string): Float32Array {
  const info = file.tensors.get(name)!;
  const view = new DataView(file.bytes.buffer, file.bytes.byteOffset + file.dataStart + info.begin, info.end - info.begin);
  const out = new Float32Array((info.end - info.begin) / 8);
  for (let i = 0; i < out.length; i++) out[i] = Number(view.getBigInt64(i * 8, true));
  return out;
}

/**
 * What a checkpoint file says of itself without its tensors being read: its epoch, step, the
 * epoch's metrics and the history so far (what a store lists, and what a resumed job records).
 * A file that is not a checkpoint is a 422 naming `field`.
 *
 * @example
 * ```ts
 * const { epoch, step, metrics } = checkpointSummary(bytes);
 * ```
 */
export function checkpointSummary(bytes: Uint8Array, field = "checkpoint"): { epoch: number; step: number; metrics: EpochMetrics; history: EpochMetrics[] } {
  const json = parseSafetensors(bytes, { field }).metadata?.[CHECKPOINT_METADATA_KEY];
  if (!json) throw new UnprocessableError("invalid_checkpoint", [{ path: field, message: "is not an edgetune checkpoint (no edgetune.checkpoint metadata)" }]);
  const state = JSON.parse(json) as TrainingState;
  return { epoch: state.epoch, step: state.step, metrics: state.history.at(-1)!, history: state.history };
}
