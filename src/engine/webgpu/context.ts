/// <reference types="@webgpu/types" />
/**
 * The small layer between the backend and the WebGPU API: compiled pipelines cached per
 * device, buffers, and "programs": recorded lists of dispatches whose bind groups and
 * parameter uniforms are created once, so encoding a step is only setPipeline / setBindGroup
 * / dispatchWorkgroups calls. Web-standard WebGPU only (no globals are assumed to exist: the
 * usage flags are spelled out, so the module also loads where WebGPU is absent).
 */
import { kernelSource, type KernelName } from "./wgsl.js";

/** GPUBufferUsage, GPUMapMode (numeric: the globals are not defined in every runtime). */
export const USAGE = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 } as const;
export const MAP_READ = 0x1;

/** Override constants of a pipeline. */
export type Constants = Record<string, number | boolean>;

/** One field of a kernel's parameter uniform: u32 (default), f32 or i32. */
export type Word = number | { f: number } | { i: number };

/** One dispatch as recorded: a kernel, its buffers (bindings 0..), its parameters (binding 16). */
export interface DispatchSpec {
  kernel: KernelName;
  constants?: Constants;
  buffers: GPUBuffer[];
  params: Word[];
  /** The per-step scalars buffer (binding 17), for kernels that read it. */
  step?: GPUBuffer;
  /** Workgroups in x (and y). */
  x: number;
  y?: number;
}

interface Recorded {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  x: number;
  y: number;
}

/** Workgroups for a grid-stride kernel over n elements (256 per workgroup, capped). */
export function gridGroups(n: number): number {
  return Math.max(1, Math.min(Math.ceil(n / 256), 4096));
}

const pipelineCaches = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();
const moduleCaches = new WeakMap<GPUDevice, Map<KernelName, GPUShaderModule>>();

/**
 * A compiled pipeline for a kernel and its override constants (cached per device, so a
 * process that runs many jobs compiles each variant once).
 */
export function pipelineFor(device: GPUDevice, kernel: KernelName, constants: Constants = {}): GPUComputePipeline {
  let cache = pipelineCaches.get(device);
  if (!cache) pipelineCaches.set(device, (cache = new Map()));
  const key = `${kernel}${JSON.stringify(constants)}`;
  let pipeline = cache.get(key);
  if (!pipeline) {
    let modules = moduleCaches.get(device);
    if (!modules) moduleCaches.set(device, (modules = new Map()));
    let module = modules.get(kernel);
    if (!module) modules.set(kernel, (module = device.createShaderModule({ label: kernel, code: kernelSource(kernel) })));
    const numeric: Record<string, number> = {};
    for (const [k, v] of Object.entries(constants)) numeric[k] = typeof v === "boolean" ? (v ? 1 : 0) : v;
    pipeline = device.createComputePipeline({
      label: key,
      layout: "auto",
      compute: { module, entryPoint: "main", constants: numeric },
    });
    cache.set(key, pipeline);
  }
  return pipeline;
}

/**
 * A recorded sequence of dispatches. Its parameter uniforms live in one buffer (one
 * 256-byte-aligned slot per dispatch); its bind groups are made once.
 */
export class Program {
  private readonly recorded: Recorded[];
  private readonly uniforms: GPUBuffer | null;

  constructor(device: GPUDevice, specs: DispatchSpec[]) {
    const align = Math.max(256, device.limits.minUniformBufferOffsetAlignment);
    const live = specs.filter((s) => s.x > 0 && (s.y ?? 1) > 0);
    this.uniforms = live.length
      ? device.createBuffer({ label: "program params", size: live.length * align, usage: USAGE.UNIFORM | USAGE.COPY_DST })
      : null;
    const bytes = new ArrayBuffer(Math.max(4, live.length * align));
    const view = new DataView(bytes);
    this.recorded = live.map((spec, index) => {
      const base = index * align;
      spec.params.forEach((w, k) => {
        if (typeof w === "number") view.setUint32(base + 4 * k, w >>> 0, true);
        else if ("f" in w) view.setFloat32(base + 4 * k, w.f, true);
        else view.setInt32(base + 4 * k, w.i, true);
      });
      const pipeline = pipelineFor(device, spec.kernel, spec.constants);
      const entries: GPUBindGroupEntry[] = spec.buffers.map((buffer, binding) => ({ binding, resource: { buffer } }));
      // at least 16 bytes: a uniform struct is padded to 16
      const size = Math.max(16, Math.ceil((spec.params.length * 4) / 16) * 16);
      entries.push({ binding: 16, resource: { buffer: this.uniforms!, offset: base, size } });
      if (spec.step) entries.push({ binding: 17, resource: { buffer: spec.step } });
      const bindGroup = device.createBindGroup({ label: spec.kernel, layout: pipeline.getBindGroupLayout(0), entries });
      return { pipeline, bindGroup, x: spec.x, y: spec.y ?? 1 };
    });
    if (this.uniforms) device.queue.writeBuffer(this.uniforms, 0, bytes, 0, live.length * align);
  }

  /** Encodes the dispatches into a compute pass. */
  encode(pass: GPUComputePassEncoder): void {
    for (const r of this.recorded) {
      pass.setPipeline(r.pipeline);
      pass.setBindGroup(0, r.bindGroup);
      pass.dispatchWorkgroups(r.x, r.y);
    }
  }

  get length(): number {
    return this.recorded.length;
  }

  destroy(): void {
    this.uniforms?.destroy();
  }
}

/**
 * Buffers of one run, destroyed together.
 */
export class BufferSet {
  private readonly all: GPUBuffer[] = [];
  constructor(private readonly device: GPUDevice) {}

  /** A storage buffer of `elements` 4-byte words (at least 16 bytes), optionally filled. */
  storage(label: string, elements: number, data?: Float32Array | Uint32Array): GPUBuffer {
    const size = Math.max(16, Math.ceil((elements * 4) / 16) * 16);
    const maxBinding = this.device.limits.maxStorageBufferBindingSize;
    if (size > maxBinding || size > this.device.limits.maxBufferSize) {
      throw new WebGpuLimitError(
        `${label} needs ${size.toLocaleString("en-US")} bytes; this GPU binds at most ${Math.min(maxBinding, this.device.limits.maxBufferSize).toLocaleString("en-US")} bytes per buffer`,
      );
    }
    const buffer = this.device.createBuffer({ label, size, usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST });
    this.all.push(buffer);
    if (data && data.length > 0) this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    return buffer;
  }

  /** A buffer of `bytes` bytes with the given usage. */
  raw(label: string, bytes: number, usage: number): GPUBuffer {
    const buffer = this.device.createBuffer({ label, size: Math.max(16, Math.ceil(bytes / 16) * 16), usage });
    this.all.push(buffer);
    return buffer;
  }

  destroy(): void {
    for (const b of this.all) b.destroy();
    this.all.length = 0;
  }
}

/** A run does not fit the device's limits (a buffer too large to bind). */
export class WebGpuLimitError extends Error {
  override name = "WebGpuLimitError";
}

/**
 * Runs `body` inside validation and out-of-memory error scopes (its synchronous part: the
 * encoding and submission of GPU work); throws the first error the device reports for it,
 * else resolves with body's result.
 */
export async function checked<T>(device: GPUDevice, what: string, body: () => T | Promise<T>): Promise<T> {
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  let result: T | Promise<T> | undefined;
  let thrown: unknown;
  let threw = false;
  try {
    result = body();
    if (result instanceof Promise) result.catch(() => undefined); // awaited below
  } catch (e) {
    threw = true;
    thrown = e;
  }
  const validation = await device.popErrorScope();
  const memory = await device.popErrorScope();
  const error = validation ?? memory;
  if (error) throw new Error(`WebGPU ${what}: ${error.message}`);
  if (threw) throw thrown;
  return await (result as T | Promise<T>);
}
