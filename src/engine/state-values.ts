/**
 * A run's starting state by name, where the frozen tensors of a 16-bit `base_dtype` may be held
 * as their half bits (straight from the checkpoint) instead of float32 copies twice their size
 * (docs/adapters.md, Memory). It is a Map<string, Float32Array> to every reader: `get` widens a
 * half tensor on demand (a fresh array each time); `half` hands the bits to the readers that
 * store them as they are (the kernel core's state block, the stored run input).
 */
import { decodeBf16, decodeF16 } from "../formats/dtype.js";

/**
 * A tensor held as half bits: 1 float16, 2 bfloat16 (model.ts stateDtype's codes).
 *
 * @example
 * ```ts
 * const held: HalfTensor = { dtype: 1, bits: new Uint16Array([0x3c00]) }; // float16 1.0
 * ```
 */
export interface HalfTensor {
  dtype: 1 | 2;
  bits: Uint16Array;
}

/**
 * Starting values by state_dict name, some of them as half bits.
 *
 * @example
 * ```ts
 * const state = new StateValues();
 * state.set("classifier.bias", new Float32Array([0, 0]));
 * state.setHalf("bert.embeddings.word_embeddings.weight", 1, bits);
 * state.get("bert.embeddings.word_embeddings.weight"); // Float32Array, widened from bits
 * state.half("bert.embeddings.word_embeddings.weight")?.bits === bits; // true
 * ```
 */
export class StateValues extends Map<string, Float32Array> {
  private readonly halves = new Map<string, HalfTensor>();

  /** Holds a tensor as its half bits (replacing any float32 values of that name). */
  setHalf(name: string, dtype: 1 | 2, bits: Uint16Array): this {
    super.delete(name);
    this.halves.set(name, { dtype, bits });
    return this;
  }

  /** The tensors held as half bits, by name. */
  halfEntries(): IterableIterator<[string, HalfTensor]> {
    return this.halves.entries();
  }

  /** A tensor held as half bits, or undefined (absent, or held as float32). */
  half(name: string): HalfTensor | undefined {
    return this.halves.get(name);
  }

  override get(name: string): Float32Array | undefined {
    const h = this.halves.get(name);
    if (!h) return super.get(name);
    const out = new Float32Array(h.bits.length);
    (h.dtype === 1 ? decodeF16 : decodeBf16)(h.bits, out);
    return out;
  }

  override has(name: string): boolean {
    return this.halves.has(name) || super.has(name);
  }

  override set(name: string, values: Float32Array): this {
    this.halves?.delete(name); // undefined only while Map's constructor runs
    return super.set(name, values);
  }

  override delete(name: string): boolean {
    const half = this.halves.delete(name);
    return super.delete(name) || half;
  }

  override clear(): void {
    this.halves.clear();
    super.clear();
  }

  override get size(): number {
    return super.size + this.halves.size;
  }

  override *entries(): MapIterator<[string, Float32Array]> {
    yield* super.entries();
    for (const name of this.halves.keys()) yield [name, this.get(name)!];
  }

  override *keys(): MapIterator<string> {
    yield* super.keys();
    yield* this.halves.keys();
  }

  override *values(): MapIterator<Float32Array> {
    for (const [, v] of this.entries()) yield v;
  }

  override [Symbol.iterator](): MapIterator<[string, Float32Array]> {
    return this.entries();
  }

  override forEach(fn: (value: Float32Array, key: string, map: Map<string, Float32Array>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) fn.call(thisArg, v, k, this);
  }

  /** The same values under new names (the half tensors keep their bits). */
  renamed(rename: (name: string) => string): StateValues {
    const out = new StateValues();
    for (const [name, v] of super.entries()) out.set(rename(name), v);
    for (const [name, h] of this.halves) out.setHalf(rename(name), h.dtype, h.bits);
    return out;
  }
}
