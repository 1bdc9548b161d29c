/**
 * The arena: the one owner of the kernel core's linear memory.
 *
 * Everything a training run touches (dataset, parameters, gradients, optimizer state,
 * activations, scratch) is a range of f32 (or i32) elements handed out here by a bump
 * allocator, aligned to 16 bytes for v128 loads. Kernels only ever see byte offsets.
 *
 * Growing a WebAssembly.Memory detaches every typed array over its old buffer, so the arena
 * never hands out long-lived views: `f32(ptr, n)` derives a fresh view over the current
 * buffer each time it is called. Callers keep pointers, not views.
 */
import type { WasmMemory } from "./wasm-types.js";
import { WASM_PAGE, type Ptr } from "./kernels.js";

/** A range of the arena: its byte offset and its length in elements. */
export interface Region {
  readonly ptr: Ptr;
  readonly length: number;
}

const ALIGN = 16;

/**
 * Bump allocator over a WebAssembly.Memory.
 *
 * @example
 * ```ts
 * const arena = new Arena(memory, kernels.heap_base());
 * const w = arena.alloc(out * inp);            // Region for W[out, in]
 * arena.f32(w).set(initialWeights);             // fresh view, safe after growth
 * ```
 */
export class Arena {
  readonly memory: WasmMemory;
  readonly base: number;
  private top: number;

  constructor(memory: WasmMemory, base: number) {
    this.memory = memory;
    this.base = alignUp(Math.max(base, ALIGN), ALIGN);
    this.top = this.base;
  }

  /** Bytes handed out so far (including the module's static data below `base`). */
  get used(): number {
    return this.top;
  }

  /** Reserves `length` 4-byte elements, zeroed (memory is reused across runs), growing the memory when needed. */
  alloc(length: number): Region {
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`arena: bad length ${length}`);
    const ptr = this.top;
    this.top = alignUp(ptr + length * 4, ALIGN);
    this.reserve(this.top);
    new Uint8Array(this.memory.buffer, ptr, length * 4).fill(0);
    return { ptr, length };
  }

  /**
   * Reserves a region for `values` and copies them in, without zeroing it first (the copy
   * writes every byte: for a 13 MB dataset the zeroing was a second pass over it).
   *
   * @example
   * ```ts
   * const x = arena.allocCopy(table.x); // Region holding the dataset's x
   * ```
   */
  allocCopy(values: Float32Array): Region {
    const ptr = this.top;
    this.top = alignUp(ptr + values.length * 4, ALIGN);
    this.reserve(this.top);
    new Float32Array(this.memory.buffer, ptr, values.length).set(values);
    return { ptr, length: values.length };
  }

  /** Makes sure the memory holds at least `bytes` bytes. */
  reserve(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes > have) this.memory.grow(Math.ceil((bytes - have) / WASM_PAGE));
  }

  /** A Float32Array over a region (or ptr + length), derived from the current buffer. */
  f32(region: Region): Float32Array;
  f32(ptr: Ptr, length: number): Float32Array;
  f32(a: Region | Ptr, length?: number): Float32Array {
    const [ptr, n] = typeof a === "number" ? [a, length!] : [a.ptr, a.length];
    return new Float32Array(this.memory.buffer, ptr, n);
  }

  /** An Int32Array over a region, derived from the current buffer. */
  i32(region: Region): Int32Array {
    return new Int32Array(this.memory.buffer, region.ptr, region.length);
  }

  /** Returns the allocation point; `release(mark)` frees everything allocated after it. */
  mark(): number {
    return this.top;
  }

  release(mark: number): void {
    this.top = mark;
  }
}

function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}
