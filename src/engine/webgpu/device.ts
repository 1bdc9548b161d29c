/**
 * A WebGPU device as the engine's public options and results name it: the few members of
 * GPUDevice that a caller's code touches. Any GPUDevice is one (navigator.gpu's, the `webgpu`
 * package's Dawn device). Naming GPUDevice itself in the published declarations would make
 * every consumer's type check load @webgpu/types, whose declarations need the DOM library: a
 * Node project compiled with `lib: ["ES2022"]` and skipLibCheck off would fail on them. The
 * WebGPU backend, which does use the whole API, casts once where a device enters it.
 *
 * @example
 * ```ts
 * const device: WebGpuDevice | null = await requestWebGpuDevice();
 * if (device) await train(request, { kernel: "webgpu", gpu: device });
 * ```
 */
export interface WebGpuDevice {
  readonly label: string;
  readonly limits: { readonly maxStorageBufferBindingSize: number; readonly maxBufferSize: number };
  readonly lost: Promise<unknown>;
  destroy(): void;
}
