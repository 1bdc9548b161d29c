/**
 * The engine's run types: what a runtime entry injects (EngineRuntime), what a caller may ask
 * of a run (TrainOptions) and what a run returns before its weights are encoded (RawRunResult).
 * They live apart from the orchestrator (train.ts) so that runtime entries, the API and the
 * loop can name them without importing it.
 */
import type { StepBudget } from "./deadline.js";
import type { WasmModule } from "./wasm-types.js";
import type { WebGpuDevice } from "./webgpu/device.js";
import type { EngineInfo, EpochMetrics, FineTuneResult, Plan, ProgressEvent } from "../schema/result.js";
import type { Table } from "../formats/dataset.js";
import type { KernelInstance, KernelVariant } from "./kernels.js";
import type { Parallelism } from "./parallel.js";

/**
 * What the runtime entry injects: the compiled kernel core and where it runs.
 *
 * @example
 * ```ts
 * const runtime: EngineRuntime = { module: await WebAssembly.compile(bytes), variant: "wasm-simd", runtime: "node" };
 * ```
 */
export interface EngineRuntime {
  /** The compiled kernel module (build/wasm/simd.wasm or relaxed-simd.wasm). */
  module: WasmModule;
  /** Which build `module` is. */
  variant: Exclude<KernelVariant, "js-reference">;
  runtime: EngineInfo["runtime"];
}

/**
 * What a caller may ask of a run beyond its request: threads, kernel and device, cancellation,
 * progress, pre-parsed tables.
 *
 * @example
 * ```ts
 * const options: TrainOptions = { kernel: "wasm", signal: AbortSignal.timeout(60_000), onProgress: (e) => console.log(e) };
 * ```
 */
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
   * Stops the run before a step that would take it past this budget (deadline.ts): the result
   * then has status "cancelled", error.code "over_budget" and the weights from before that step.
   */
  budget?: StepBudget | undefined;
  /**
   * Gives the event loop a turn (a 0 ms timer) between steps once `ms` have passed on the run's
   * clock since the last turn, or after `steps` steps (for runtimes whose clock stands still
   * while code runs, as a deployed Worker's does): an in-Worker sync job then lets its isolate
   * answer other requests while it trains (issue 20, finding 8). Default: every 50 ms with a
   * `signal` (to hear an abort), else never.
   */
  yieldEvery?: { ms: number; steps?: number | undefined } | undefined;
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
  /**
   * A checkpoint (checkpoint.ts, from `onCheckpoint` of an earlier run of the same request) to
   * continue from: the run starts after its epoch and ends bit-identical to a run that never stopped.
   */
  resumeFrom?: Uint8Array | undefined;
  /** Receives each checkpoint: every `training.checkpoints.every` epochs, and on a pause. */
  onCheckpoint?: ((checkpoint: CheckpointEvent) => void | Promise<void>) | undefined;
  /** Asked at each epoch's end: true checkpoints the run and ends it with status "paused". */
  pauseRequested?: (() => boolean) | undefined;
  /**
   * Run an epoch's steps as fused kernel-core calls when the run allows it (default true;
   * docs/engine.md, "The fused step"); false: one step() per batch, driven from JS. Both give the
   * same floats.
   */
  fused?: boolean | undefined;
  /** Filled in by the run: bytes of WebAssembly memory used (to check the plan's estimate). */
  diagnostics?: { memoryBytes?: number; arenaBytes?: number } | undefined;
  /**
   * The kernel instance to run on (WASM core, one thread): the one whose memory holds the
   * staged checkpoint (staging.ts, stageInKernelMemory), so that the run loads its state from
   * there and the checkpoint is never copied into the JavaScript heap. Unused by other backends.
   */
  instance?: KernelInstance | undefined;
  /**
   * Writes the result's weights file into the run's kernel memory after training, when the
   * memory freed by training holds it (the activations, gradients and optimizer state): the
   * result's `weights` is then a view of that memory, which is never given to another run, so
   * it stays valid while held. Store it and let it go: the memory lives as long as the view.
   */
  weightsInKernelMemory?: boolean | undefined;
}

/**
 * A checkpoint as the run hands it out: its position, the epoch's metrics and the file (checkpoint.ts).
 *
 * @example
 * ```ts
 * const options: TrainOptions = { onCheckpoint: ({ epoch, bytes }) => void bucket.put(`checkpoints/${id}/${epoch}.safetensors`, bytes) };
 * ```
 */
export interface CheckpointEvent {
  epoch: number;
  step: number;
  metrics: EpochMetrics;
  bytes: Uint8Array;
}

/**
 * A finished run with its weights as safetensors bytes (what storage wants): for an adapter
 * run, its full state with the layout convertWeights() turns into output.format.
 *
 * @example
 * ```ts
 * const { result, weights }: RawRunResult = await runPreparedRaw(runtime, prepared);
 * ```
 */
export interface RawRunResult {
  result: Omit<FineTuneResult, "weights">;
  weights: Uint8Array;
}
