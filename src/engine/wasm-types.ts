/**
 * WebAssembly's types as the engine's declarations name them. TypeScript declares the
 * `WebAssembly` namespace only in its DOM library (Node's @types/node has none), so naming
 * WebAssembly.Memory or WebAssembly.Module in a published .d.ts breaks the type check of a
 * Node project compiled with `lib: ["ES2022"]`. These describe what the engine uses; a real
 * Memory or Module is one. The code that calls the WebAssembly API casts where it does.
 *
 * @example
 * ```ts
 * const memory: WasmMemory = new WebAssembly.Memory({ initial: 1 });
 * const runtime = { module: compiled as WasmModule, variant: "wasm-simd", runtime: "node" };
 * ```
 */

/** A WebAssembly.Memory: its current buffer (replaced, and the old one detached, by grow). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  /** Grows by `delta` 64 KiB pages; returns the previous size in pages. */
  grow(delta: number): number;
}

/** A compiled WebAssembly.Module (build/wasm/simd.wasm or relaxed-simd.wasm): opaque. */
export type WasmModule = object;
