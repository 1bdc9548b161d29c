/**
 * edgetune for Node: `train()` with the kernel core loaded from the package's build/wasm.
 *
 * @example
 * ```ts
 * import { train } from "edgetune";
 * const result = await train({
 *   model: { layers: [{ type: "linear", in_features: 10, out_features: 1 }] },
 *   data: { train: { x: rows, y: targets } },
 *   training: { epochs: 20, optimizer: { type: "adam", lr: 1e-3 } },
 * });
 * console.log(result.metrics.history.at(-1)?.train_loss);
 * ```
 */
import type { WebGpuDevice } from "../engine/webgpu/device.js";
import { train as trainWith, type TrainOptions, type TrainRequest } from "../engine/train.js";
import type { FineTuneResult } from "../schema/result.js";
import { loadNodeRuntime } from "./kernel-module.js";
import { ThreadPool } from "./threads.js";
import { findWebGpuDevice } from "./webgpu.js";

export * from "../index.js";
export { loadNodeRuntime } from "./kernel-module.js";
export { ThreadPool } from "./threads.js";
export { findWebGpuDevice, requestWebGpuDevice, type WebGpuDeviceOptions, type WebGpuDeviceResult } from "./webgpu.js";
export { WEBGPU_MIN_FLOPS_PER_STEP } from "../engine/webgpu/select.js";
export type { WebGpuDevice } from "../engine/webgpu/device.js";

const pools = new Map<number, Promise<ThreadPool>>();

/** The process-wide pool of `threads` threads (started on first use). */
export function threadPool(threads: number): Promise<ThreadPool> {
  let pool = pools.get(threads);
  if (!pool) pools.set(threads, (pool = ThreadPool.create(threads)));
  return pool;
}

let processGpu: Promise<WebGpuDevice> | null = null;

/**
 * The process's WebGPU device for `kernel: "webgpu"` without `gpu`: a hardware adapter, or a
 * software one (SwiftShader) when EDGETUNE_WEBGPU=software, as for GPU nodes. Opened once.
 */
function defaultGpu(): Promise<WebGpuDevice> {
  processGpu ??= findWebGpuDevice({ allowSoftware: process.env.EDGETUNE_WEBGPU === "software" }).then((found) => {
    if (found.device) return found.device;
    processGpu = null; // a later call may find one (a driver installed meanwhile)
    throw new Error(`kernel "webgpu": no WebGPU device (${found.description}); set EDGETUNE_WEBGPU=software to accept a software adapter, or pass options.gpu`);
  });
  return processGpu;
}

/**
 * Fine-tunes a model in this process (WASM SIMD kernels) and resolves with the result.
 * `data.train` / `data.validation` may be inline rows or a safetensors dataset's bytes (a
 * Uint8Array with tensors `x` or `input_ids`, and `y`: docs/api.md, "Binary datasets").
 * `threads: n` trains data-parallel on n threads when the job is large enough to gain from it.
 * `kernel: "webgpu"` trains on `options.gpu`, or on this process's own device when none is
 * given (found on first use). Bad input rejects with an EdgetuneError (status 400/422 and the
 * offending field paths); a diverged or cancelled run resolves with that status and the last
 * finite weights.
 */
export async function train(request: TrainRequest, options: TrainOptions = {}): Promise<FineTuneResult> {
  const threads = options.threads ?? 1;
  const parallel = options.parallel ?? (threads > 1 ? await threadPool(threads) : undefined);
  const gpu = options.kernel === "webgpu" && !options.gpu ? await defaultGpu() : options.gpu;
  return trainWith(await loadNodeRuntime(), request, { ...options, ...(parallel ? { parallel } : {}), ...(gpu ? { gpu } : {}) });
}
