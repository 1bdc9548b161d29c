/**
 * Data parallelism, as the engine sees it: a runtime that has threads (Node's worker_threads,
 * src/node/threads.ts) injects a Parallelism; the engine then runs each batch's forward and
 * backward through the Network it returns, and everything else (loss, clipping, the update,
 * metrics) exactly as on one thread. Runtime-agnostic: no thread API here.
 */
import type { Arena } from "./arena.js";
import type { KernelInstance, Ptr } from "./kernels.js";
import type { Model, ModelInputs } from "./model.js";
import type { Optimizer } from "./optimizers.js";

/**
 * The part of a model the training loop drives each step. The Model itself is one; a
 * data-parallel network splits the rows of each batch over threads and sums their gradients
 * into `model.grads`.
 */
export interface Network {
  /** Logits of `rows` rows of inputs, contiguous [rows, out] (the model's own logits buffer). */
  forward(inputs: ModelInputs, rows: number, training: boolean, seed: number): Ptr;
  /** Gradients of the last forward from dL/dlogits in model.logitsGrad, summed into model.grads. */
  backward(rows: number): void;
  zeroGrad(): void;
  /**
   * DP-SGD's first backward pass (privacy/ghost.ts): from dL/dlogits in model.logitsGrad, adds
   * each row's squared per-sample gradient norm to `norms[0..rows)`, every thread its own rows.
   * The parameter gradients it leaves are not used. Absent: the caller runs it on one thread.
   */
  backwardSampleNorms?(rows: number, norms: Float64Array): void;
  /**
   * optimizer.step() with its update kernel's elements shared out over the threads, each its own
   * range of the parameters; returns whether every updated parameter is finite. The update
   * kernels are elementwise, so this is one call's result bit for bit. Absent: the caller runs
   * the step and the check on one thread.
   */
  update?(optimizer: Optimizer): boolean;
  /**
   * After backward(): whether the summed gradients are all finite, as the threads found while
   * summing their ranges (each range is then still in its thread's cache). Absent: the caller
   * checks them.
   */
  gradientsFinite?(): boolean;
}

/**
 * Threads for data-parallel training.
 *
 * @example
 * ```ts
 * const result = await engine.train(request, { parallel: await threadPool(2) });
 * result.engine.threads; // 2 when the job was large enough to gain from them
 * ```
 */
export interface Parallelism {
  readonly threads: number;
  /** Whether spreading steps of this many FLOPs over the threads pays for their synchronisation (never for a model whose ops couple the rows of a batch). */
  worthIt(flopsPerStep: number): boolean;
  /** A kernel instance over memory the threads share, or null when busy (the run then uses one thread). */
  acquire(): Promise<KernelInstance | null>;
  release(instance: KernelInstance): void;
  /** Puts the threads to work on `model` for one run; close() ends the run. */
  distribute(model: Model, arena: Arena, instance: KernelInstance): Promise<Network & { close(): void }>;
}
