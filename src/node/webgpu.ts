/// <reference types="@webgpu/types" />
/**
 * A WebGPU device on Node, through Dawn's node binding (the `webgpu` npm package, whose
 * prebuilt binaries ship inside the package). Loaded with a dynamic import, so everything else
 * works without it. On Linux Dawn uses Vulkan: the NVIDIA driver on a GPU machine; for tests,
 * Chromium's SwiftShader (a CPU implementation) via VK_ICD_FILENAMES or VK_ADD_DRIVER_FILES.
 * Software adapters are refused unless asked for: they are for correctness, never for speed.
 */
import type { WebGpuDevice } from "../engine/webgpu/device.js";
import { existsSync } from "node:fs";

/** Where Debian's chromium package puts SwiftShader's Vulkan ICD. */
export const SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json";

export interface WebGpuDeviceOptions {
  /** Accept a software adapter (SwiftShader, llvmpipe...): for tests only. Default false. */
  allowSoftware?: boolean | undefined;
  /** Dawn toggles for `create()` (default on Linux: ["backend=vulkan"]). */
  dawnOptions?: string[] | undefined;
}

/** What was found: the device, or null and why not. */
export interface WebGpuDeviceResult {
  device: WebGpuDevice | null;
  /** The adapter, e.g. "nvidia / hopper (NVIDIA H100 ...)", or what went wrong. */
  description: string;
  software: boolean;
}

/** What isSoftwareAdapter reads of a GPUAdapter's info. */
interface AdapterInfo {
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
}

let gpuInstance: GPU | null = null;

/** Whether an adapter is a software (CPU) implementation. */
export function isSoftwareAdapter(adapter: { readonly info: AdapterInfo }): boolean {
  const info = adapter.info;
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.toLowerCase();
  return (
    (info as AdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter === true ||
    /swiftshader|llvmpipe|lavapipe|softpipe|warp|software/.test(text)
  );
}

function describe(adapter: GPUAdapter): string {
  const i = adapter.info;
  return [i.vendor, i.architecture].filter(Boolean).join(" / ") + (i.description ? ` (${i.description})` : "");
}

/**
 * Looks for a WebGPU adapter and opens a device on it, with the adapter's largest buffer and
 * binding limits (large models need more than WebGPU's 128 MiB default).
 *
 * @example
 * ```ts
 * const { device, description } = await findWebGpuDevice();
 * if (device) await train(request, { kernel: "webgpu", gpu: device });
 * ```
 */
export async function findWebGpuDevice(options: WebGpuDeviceOptions = {}): Promise<WebGpuDeviceResult> {
  let mod: { create(options: string[]): GPU; globals: Record<string, unknown> };
  try {
    mod = (await import("webgpu")) as unknown as typeof mod;
  } catch (e) {
    return { device: null, software: false, description: `the webgpu package is not installed (npm install webgpu): ${e instanceof Error ? e.message : String(e)}` };
  }
  if (options.allowSoftware && !process.env.VK_ICD_FILENAMES && !process.env.VK_ADD_DRIVER_FILES && existsSync(SWIFTSHADER_ICD)) {
    // add SwiftShader beside any real driver (the Vulkan loader reads this when Dawn starts it)
    process.env.VK_ADD_DRIVER_FILES = SWIFTSHADER_ICD;
  }
  try {
    gpuInstance ??= mod.create(options.dawnOptions ?? (process.platform === "linux" ? ["backend=vulkan"] : []));
    const adapter = await gpuInstance.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) return { device: null, software: false, description: "no WebGPU adapter (no GPU driver found: on Linux, the Vulkan loader libvulkan1 and a Vulkan driver)" };
    const software = isSoftwareAdapter(adapter);
    const description = describe(adapter);
    if (software && !options.allowSoftware) {
      return { device: null, software, description: `only a software adapter: ${description}` };
    }
    const device = await adapter.requestDevice({
      requiredLimits: {
        maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
        maxBufferSize: adapter.limits.maxBufferSize,
        maxStorageBuffersPerShaderStage: Math.min(adapter.limits.maxStorageBuffersPerShaderStage, 10),
      },
    });
    return { device, software, description };
  } catch (e) {
    return { device: null, software: false, description: `WebGPU failed: ${e instanceof Error ? e.message : String(e)}` };
  }
}

/**
 * A WebGPU device, or null when there is no (acceptable) adapter.
 *
 * @example
 * ```ts
 * const device = await requestWebGpuDevice();              // a real GPU or null
 * const test = await requestWebGpuDevice({ allowSoftware: true }); // SwiftShader will do
 * ```
 */
export async function requestWebGpuDevice(options: WebGpuDeviceOptions = {}): Promise<WebGpuDevice | null> {
  return (await findWebGpuDevice(options)).device;
}
