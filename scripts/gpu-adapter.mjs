// Prints the WebGPU adapter this machine offers to Node (Dawn's node binding, the `webgpu`
// package) and exits 0 only for a hardware adapter: 2 when there is none, 3 for a software one
// (SwiftShader, llvmpipe: correctness only, never speed). Used by scripts/gpu-check.sh before it
// builds anything; the same test as src/node/webgpu.ts isSoftwareAdapter (this file needs no build).
let mod;
try {
  mod = await import("webgpu");
} catch (e) {
  console.error(`gpu-check: the webgpu package is missing (run npm ci): ${e.message}`);
  process.exit(2);
}
const gpu = mod.create(process.platform === "linux" ? ["backend=vulkan"] : []);
const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
if (!adapter) {
  console.error("gpu-check: no WebGPU adapter found.");
  console.error("  On Linux Dawn needs the Vulkan loader (libvulkan.so.1) and a Vulkan driver: for NVIDIA, the");
  console.error("  proprietary driver with its Vulkan ICD (nvidia_icd.json); check with `nvidia-smi` and `vulkaninfo --summary`.");
  process.exit(2);
}
const i = adapter.info;
const text = `${i.vendor} ${i.architecture} ${i.device} ${i.description}`.toLowerCase();
const software = i.isFallbackAdapter === true || /swiftshader|llvmpipe|lavapipe|softpipe|warp|software/.test(text);
const l = adapter.limits;
console.log(`gpu-check: adapter vendor=${i.vendor} architecture=${i.architecture} device=${i.device} description=${JSON.stringify(i.description)}`);
console.log(`gpu-check: limits maxStorageBufferBindingSize=${l.maxStorageBufferBindingSize} maxBufferSize=${l.maxBufferSize} maxComputeWorkgroupStorageSize=${l.maxComputeWorkgroupStorageSize}`);
if (software) {
  console.error(`gpu-check: this is a software adapter (${i.architecture || i.description}), not a GPU: refusing to measure or to call it a GPU run.`);
  process.exit(3);
}
process.exit(0);
