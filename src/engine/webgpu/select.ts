/**
 * When a run goes to the WebGPU backend: always with `kernel: "webgpu"` (a device is then
 * required), and with `kernel: "auto"` when a device is given, the run fits its buffer limits
 * and its steps are large enough for the GPU to win. Small steps lose on a GPU: each step is
 * one submission and one readback of a few bytes, a fixed cost of tens of microseconds to a
 * millisecond, whatever the step's size. Kept apart from the kernels so that the training
 * loop can decide without loading them.
 */
import type { PreparedRun } from "../prepare.js";
import type { WebGpuDevice } from "./device.js";

/**
 * The default crossover for `kernel: "auto"`: 1 GFLOP per optimizer step (forward, backward
 * and update of one batch; the WASM core spends about 10 to 50 ms on such a step). Chosen
 * conservatively: no real GPU was measured yet (`npm run bench:gpu` measures it on one), and
 * software adapters say nothing about speed. Override with TrainOptions.gpuMinFlopsPerStep
 * (the GPU node: EDGETUNE_WEBGPU_MIN_FLOPS_PER_STEP).
 */
export const WEBGPU_MIN_FLOPS_PER_STEP = 1e9;

/**
 * The largest buffer a run needs, in bytes (checked against the device's binding limits).
 *
 * @example
 * ```ts
 * largestBufferBytes(prepared) <= device.limits.maxStorageBufferBindingSize;
 * ```
 */
export function largestBufferBytes(prepared: PreparedRun): number {
  const { model, output, plan, train, validation } = prepared;
  const rows = Math.max(plan.maxRows, validation?.rows ?? 0);
  const outSize = output.positions * output.classes;
  return 4 * Math.max(
    model.stateCount,
    train.rows * train.features,
    train.rows * train.targets,
    (validation?.rows ?? 0) * Math.max(validation?.features ?? 0, outSize),
    ...model.values.map((v) => plan.maxRows * v.size),
    ...model.saved.map((s) => plan.maxRows * s.perRow + s.fixed),
    rows * output.positions * Math.max(output.classes, 3),
  );
}

/**
 * Whether every buffer of a run fits the device's limits.
 *
 * @example
 * ```ts
 * if (!fitsDevice(device, prepared)) console.log("too large for this GPU: WASM it is");
 * ```
 */
export function fitsDevice(device: WebGpuDevice, prepared: PreparedRun): boolean {
  const bytes = largestBufferBytes(prepared);
  return bytes <= device.limits.maxStorageBufferBindingSize && bytes <= device.limits.maxBufferSize;
}

/**
 * Whether a run should train on the WebGPU backend; throws when `kernel: "webgpu"` is asked
 * for without a device.
 *
 * @example
 * ```ts
 * useWebGpu(prepared, { gpu: device });                    // true for large steps
 * useWebGpu(prepared, { kernel: "webgpu", gpu: device });  // always true
 * ```
 */
export function useWebGpu(
  prepared: PreparedRun,
  options: { kernel?: string; gpu?: WebGpuDevice | null | undefined; gpuMinFlopsPerStep?: number },
): boolean {
  if (options.kernel === "webgpu") {
    if (!options.gpu) {
      throw new Error('kernel "webgpu" needs a GPUDevice in options.gpu (on Node: requestWebGpuDevice() from edgetune)');
    }
    return true;
  }
  if ((options.kernel ?? "auto") !== "auto" || !options.gpu) return false;
  const plan = prepared.plan;
  const flopsPerStep = plan.flops / Math.max(1, plan.steps);
  return flopsPerStep >= (options.gpuMinFlopsPerStep ?? WEBGPU_MIN_FLOPS_PER_STEP) && fitsDevice(options.gpu, prepared);
}
