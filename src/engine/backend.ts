/**
 * A training backend: where the numbers live and how one optimizer step runs on them. The
 * training loop (train.ts) owns everything a backend need not know (epochs, batch order,
 * schedules, metrics, early stopping, events, cancellation); a backend owns parameters,
 * gradients, optimizer state and data, and runs
 *
 *   forward -> loss -> zero_grad -> backward -> checks -> clip_grad_norm_ -> update
 *
 * for one batch. The WASM kernel core is one backend (wasm-backend.ts); WebGPU is another.
 * A backend may answer synchronously (WASM: no await per step) or with promises (a GPU).
 */
import type { EngineInfo } from "../schema/result.js";
import type { ParamGroup } from "./schedules.js";
import type { WritableTensor } from "../formats/safetensors.js";

/** Rows of one batch: positions [start, start + rows) of the epoch's order (null: rows in order). */
export interface BatchRef {
  order: Int32Array | null;
  start: number;
  rows: number;
}

/** Why a step did not update: the run ends as diverged with the weights before this step. */
export interface StepFault {
  code: "diverged" | "non_finite_norm";
  /** What went non-finite, e.g. "the loss became NaN". */
  what: string;
}

/** A finished step (its mean batch loss), or a fault (nothing was updated). */
export type StepOutcome = { loss: number } | { fault: StepFault };

/** Validation metrics of the current weights. */
export interface Evaluation {
  valLoss: number;
  valAccuracy: number | undefined;
}

/** One tensor of the state_dict (I64: stored as 64-bit integers, e.g. num_batches_tracked). */
export interface NamedTensor {
  name: string;
  shape: number[];
  data: Float32Array;
  dtype?: "I64";
}

type MaybePromise<T> = T | Promise<T>;

/**
 * A backend's fused steps (program.ts): a chunk of an epoch's steps run as one call into the
 * kernel core, with the same floats as that many step() calls. The loop sets the epoch's order,
 * records each step's optimizer scalars as the schedule sets lr (prepare), then runs the chunk.
 *
 * @example
 * ```ts
 * fused.setOrder(null);
 * for (let s = 0; s < 20; s++) fused.prepare(s);
 * const { done, losses, fault } = fused.run(0, 20);
 * ```
 */
export interface FusedSteps {
  /** The most steps one run() takes. */
  readonly maxSteps: number;
  /** The epoch's order of rows (null: in order), at each epoch's start. */
  setOrder(order: Int32Array | null): void;
  /** Counts optimizer step s of the next run (0-based in it) with the param group as it is now. */
  prepare(s: number): void;
  /**
   * Runs batches [first, first + count) of the epoch (count prepared steps): losses[s] of the
   * `done` steps; a fault stops it at step `done`, whose weights are put back as step() does.
   */
  run(first: number, count: number): { done: number; losses: Float64Array; fault: StepFault | null };
}

/**
 * What the training loop drives.
 *
 * @example
 * ```ts
 * const outcome = await backend.step({ order: null, start: 0, rows: 32 }, seed);
 * if ("fault" in outcome) stop(outcome.fault);
 * ```
 */
export interface TrainingBackend {
  /** The optimizer's parameter group: the scheduler writes lr and momentum (beta1) here. */
  readonly group: ParamGroup;
  readonly kernel: EngineInfo["kernel"];
  readonly threads: number;
  /**
   * The fused path (program.ts), when this run's model, loss, optimizer and options are what
   * the program covers; absent or null: the loop calls step() per batch.
   */
  readonly fused?: FusedSteps | null;
  /** One optimizer step on a batch; `seed` seeds its dropout masks. */
  step(batch: BatchRef, seed: number): MaybePromise<StepOutcome>;
  /** Validation loss and accuracy (eval mode), or null without validation data. */
  evaluate(): MaybePromise<Evaluation | null>;
  /** Keeps the current weights as the best so far (early stopping). */
  saveBest(): MaybePromise<void>;
  /** Puts the best weights back. */
  restoreBest(): MaybePromise<void>;
  /** The current weights, state_dict order. */
  parameters(): MaybePromise<NamedTensor[]>;
  /**
   * The current weights as the run's stored file holds them (model.ts storedHalfDtype): a
   * 16-bit frozen tensor as its raw bits, straight from where the run holds it, to be written at
   * once. Absent: the loop converts parameters().
   */
  storedParameters?(outputDtype: "float32" | "float16" | "bfloat16"): MaybePromise<WritableTensor[]>;
  /**
   * After training: a buffer of `bytes` in memory the run no longer needs (the WASM backend's
   * activations, gradients and optimizer state, above its state block), or null when that
   * memory is smaller. The result's weights file is written there (TrainOptions.weightsInKernelMemory).
   */
  spareBuffer?(bytes: number): Uint8Array | null;
  /** Releases what the run holds (threads, device buffers). */
  close(): void;
  /**
   * The optimizer's state and the early-stopping snapshot, for a checkpoint (checkpoint.ts);
   * absent on a backend that cannot checkpoint (the run then refuses `training.checkpoints`).
   */
  saveTrainingState?(): MaybePromise<BackendTrainingState>;
  /** Puts a checkpoint's optimizer state and early-stopping snapshot back (weights come as the initial state). */
  loadTrainingState?(state: BackendTrainingState): MaybePromise<void>;
}

/**
 * What a backend holds beyond the weights: the optimizer's tensors (torch's names: exp_avg,
 * exp_avg_sq, momentum_buffer, ...; flat over the trainable parameters), its step count and
 * flags, and the early-stopping snapshot (the best epoch's state block, raw).
 *
 * @example
 * ```ts
 * const saved = await backend.saveTrainingState!();
 * saved.optimizer.map((t) => t.name); // ["exp_avg", "exp_avg_sq"]
 * ```
 */
export interface BackendTrainingState {
  optimizer: { name: string; data: Float32Array }[];
  position: { t: number; initialised: boolean };
  best: Float32Array | null;
}
