/**
 * The WebGPU device the tests share (not a test file): a real adapter when there is one,
 * else SwiftShader (libvulkan1 + chromium's vk_swiftshader_icd.json, which .ci/run installs).
 * null when neither exists: the tests then report themselves skipped, with the reason.
 * EDGETUNE_WEBGPU_REQUIRE_HARDWARE=1 (scripts/gpu-check.sh) accepts only a hardware adapter and
 * fails the test files, rather than skipping them, when there is none.
 */
/// <reference types="@webgpu/types" />
import { findWebGpuDevice } from "../../src/node/webgpu.js";

const requireHardware = process.env.EDGETUNE_WEBGPU_REQUIRE_HARDWARE === "1";
const found = await findWebGpuDevice({ allowSoftware: !requireHardware });
if (requireHardware && (!found.device || found.software)) {
  throw new Error(`EDGETUNE_WEBGPU_REQUIRE_HARDWARE=1 but there is no hardware WebGPU adapter: ${found.description}`);
}
/** The full GPUDevice (the public result types only name what a caller touches: WebGpuDevice). */
export const device = found.device as GPUDevice | null;
export const adapterDescription = found.description;
export const software = found.software;
export const SKIP_REASON = "needs a WebGPU adapter: libvulkan1 + chromium's SwiftShader";
