/**
 * float32 <-> float16 / bfloat16 conversions, bit-exact with PyTorch's CPU casts.
 *
 * - `tensor.half()` rounds float32 to nearest, ties to even, with IEEE subnormals, values
 *   >= 65520 becoming Inf, and every NaN becoming the quiet NaN `sign | 0x7e00`
 *   (c10 `fp16_ieee_from_fp32_value`).
 * - `tensor.bfloat16()` rounds float32 to nearest, ties to even, and every NaN becomes
 *   `0x7fc0` (c10 `round_to_nearest_even`).
 * - Widening (f16/bf16 -> f32) is exact; a NaN stays a NaN with its payload and the quiet bit set.
 *
 * The scalar functions take a JS number: it is first rounded to float32 (Math.fround), because
 * PyTorch converts float32 tensors, and rounding a double straight to 16 bits could round
 * differently from rounding it to float32 first.
 *
 * Runtime-agnostic: typed arrays only.
 */

/**
 * Whether this host stores numbers little-endian: typed arrays use the host's byte order, while
 * safetensors is little-endian and base64 pairs are written as Uint16s.
 *
 * @example
 * ```ts
 * LITTLE_ENDIAN_HOST; // true on x86 and ARM hosts
 * ```
 */
export const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// One scratch word viewed as both float32 and uint32, to move between a value and its bits.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/**
 * The IEEE-754 binary32 bits of `x` after rounding it to float32.
 *
 * @example
 * ```ts
 * f32Bits(1); // 0x3f800000
 * ```
 */
export function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0]!;
}

/**
 * The float32 value whose IEEE-754 binary32 bits are `bits` (a NaN keeps its payload in the bits,
 * but is an ordinary NaN once it becomes a JS number).
 *
 * @example
 * ```ts
 * f32FromBits(0x3f800000); // 1
 * ```
 */
export function f32FromBits(bits: number): number {
  scratchU32[0] = bits >>> 0;
  return scratchF32[0]!;
}

/**
 * Rounds float32 bits to float16 bits the way PyTorch's `.half()` does.
 * Works on bits so the bulk encoder can use it on a Uint32Array view without boxing.
 *
 * @example
 * ```ts
 * f32BitsToF16Bits(0x3f800000); // 0x3c00 (1.0)
 * ```
 */
export function f32BitsToF16Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const magnitude = bits & 0x7fffffff;
  if (magnitude >= 0x7f800000) {
    // Inf stays Inf; every NaN becomes the canonical quiet NaN, as c10 does.
    return magnitude === 0x7f800000 ? sign | 0x7c00 : sign | 0x7e00;
  }
  // 65520 (0x477ff000) is the midpoint between 65504 (the largest half) and 65536: it and
  // everything above round to Inf.
  if (magnitude >= 0x477ff000) return sign | 0x7c00;
  if (magnitude >= 0x38800000) {
    // Normal half: rebias the exponent (127 -> 15) and keep the top 10 mantissa bits,
    // rounding on the 13 dropped bits. A carry out of the mantissa correctly bumps the exponent.
    const rebiased = (magnitude - 0x38000000) >>> 13;
    const dropped = magnitude & 0x1fff;
    const roundUp = dropped > 0x1000 || (dropped === 0x1000 && (rebiased & 1) === 1);
    return sign | (rebiased + (roundUp ? 1 : 0));
  }
  // Subnormal half (below 2^-14): the result is round(value / 2^-24).
  const exponent = magnitude >>> 23;
  // Below 2^-25 everything rounds to zero; exactly 2^-25 is a tie that goes to the even 0.
  if (exponent < 102) return sign;
  const significand = (magnitude & 0x7fffff) | 0x800000;
  // value = significand * 2^(exponent - 150); in units of 2^-24 that is significand >> (126 - exponent).
  const shift = 126 - exponent; // 14..24
  const truncated = significand >>> shift;
  const remainder = significand & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  const roundUp = remainder > half || (remainder === half && (truncated & 1) === 1);
  // Rounding the largest subnormal up yields 0x400, the smallest normal: the encoding is continuous.
  return sign | (truncated + (roundUp ? 1 : 0));
}

/**
 * Widens float16 bits to float32 bits exactly (NaN payload kept, quiet bit set).
 *
 * @example
 * ```ts
 * f16BitsToF32Bits(0x3c00); // 0x3f800000 (1.0)
 * ```
 */
export function f16BitsToF32Bits(halfBits: number): number {
  const sign = (halfBits & 0x8000) << 16;
  const exponent = (halfBits >>> 10) & 0x1f;
  const mantissa = halfBits & 0x3ff;
  if (exponent === 0x1f) {
    if (mantissa === 0) return (sign | 0x7f800000) >>> 0;
    return (sign | 0x7fc00000 | (mantissa << 13)) >>> 0;
  }
  if (exponent !== 0) return (sign | ((exponent + 112) << 23) | (mantissa << 13)) >>> 0;
  if (mantissa === 0) return sign >>> 0;
  // Subnormal half: normalise. mantissa * 2^-24 = 1.f * 2^(e) with e found by shifting.
  let shifted = mantissa;
  let unbiased = -14;
  while ((shifted & 0x400) === 0) {
    shifted <<= 1;
    unbiased -= 1;
  }
  return (sign | ((unbiased + 127) << 23) | ((shifted & 0x3ff) << 13)) >>> 0;
}

/**
 * Rounds float32 bits to bfloat16 bits the way PyTorch's `.bfloat16()` does.
 *
 * @example
 * ```ts
 * f32BitsToBf16Bits(0x3f800000); // 0x3f80 (1.0)
 * ```
 */
export function f32BitsToBf16Bits(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  // Adding 0x7fff plus the lowest kept bit rounds to nearest with ties to even; a carry into the
  // exponent gives the next binade or Inf, which is the right answer.
  const roundingBias = 0x7fff + ((bits >>> 16) & 1);
  return ((bits >>> 0) + roundingBias) >>> 16;
}

/**
 * Rounds `x` to float32, then to float16 exactly as PyTorch's `.half()`; returns the 16 bits.
 *
 * @example
 * ```ts
 * f32ToF16Bits(1);      // 0x3c00
 * f32ToF16Bits(65520);  // 0x7c00 (Inf)
 * ```
 */
export function f32ToF16Bits(x: number): number {
  return f32BitsToF16Bits(f32Bits(x));
}

/**
 * The value of float16 bits, as a number (exact).
 *
 * @example
 * ```ts
 * f16BitsToF32(0x3c00); // 1
 * f16BitsToF32(0x0001); // 5.960464477539063e-8
 * ```
 */
export function f16BitsToF32(bits: number): number {
  return f32FromBits(f16BitsToF32Bits(bits));
}

/**
 * Rounds `x` to float32, then to bfloat16 exactly as PyTorch's `.bfloat16()`; returns the 16 bits.
 *
 * @example
 * ```ts
 * f32ToBf16Bits(1); // 0x3f80
 * ```
 */
export function f32ToBf16Bits(x: number): number {
  return f32BitsToBf16Bits(f32Bits(x));
}

/**
 * The value of bfloat16 bits, as a number (exact).
 *
 * @example
 * ```ts
 * bf16BitsToF32(0x3f80); // 1
 * ```
 */
export function bf16BitsToF32(bits: number): number {
  return f32FromBits((bits & 0xffff) << 16);
}

/**
 * Encodes every float32 of `src` to float16 bits in `out` (same length).
 *
 * @example
 * ```ts
 * const out = new Uint16Array(2);
 * encodeF16(new Float32Array([1, -2]), out); // out = [0x3c00, 0xc000]
 * ```
 */
export function encodeF16(src: Float32Array, out: Uint16Array): void {
  checkSameLength(src.length, out.length);
  const srcBits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < srcBits.length; i++) out[i] = f32BitsToF16Bits(srcBits[i]!);
}

/**
 * Widens every float16 of `src` into `out` (same length), exactly.
 *
 * @example
 * ```ts
 * const out = new Float32Array(1);
 * decodeF16(new Uint16Array([0x3c00]), out); // out = [1]
 * ```
 */
export function decodeF16(src: Uint16Array, out: Float32Array): void {
  checkSameLength(src.length, out.length);
  const outBits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) outBits[i] = f16BitsToF32Bits(src[i]!);
}

/**
 * Encodes every float32 of `src` to bfloat16 bits in `out` (same length).
 *
 * @example
 * ```ts
 * const out = new Uint16Array(1);
 * encodeBf16(new Float32Array([1]), out); // out = [0x3f80]
 * ```
 */
export function encodeBf16(src: Float32Array, out: Uint16Array): void {
  checkSameLength(src.length, out.length);
  const srcBits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < srcBits.length; i++) out[i] = f32BitsToBf16Bits(srcBits[i]!);
}

/**
 * Widens every bfloat16 of `src` into `out` (same length), exactly.
 *
 * @example
 * ```ts
 * const out = new Float32Array(1);
 * decodeBf16(new Uint16Array([0x3f80]), out); // out = [1]
 * ```
 */
export function decodeBf16(src: Uint16Array, out: Float32Array): void {
  checkSameLength(src.length, out.length);
  const outBits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) outBits[i] = src[i]! << 16;
}

function checkSameLength(srcLength: number, outLength: number): void {
  if (srcLength !== outLength) {
    throw new RangeError(`output has ${outLength} elements, source has ${srcLength}`);
  }
}

/**
 * The largest finite value of each half-precision format: float16's 65504 and bfloat16's
 * (2 - 2^-7) * 2^127 (bits 0x7f7f). A float32 beyond them rounds to Inf (IEEE 754 round to
 * nearest: float16 from 65520 up, bfloat16 from the midpoint 0x7f7f8000 up).
 *
 * @example
 * ```ts
 * HALF_MAX.float16; // 65504
 * ```
 */
export const HALF_MAX = { float16: 65504, bfloat16: (2 - 2 ** -7) * 2 ** 127 } as const;

/** float32 magnitude bits from which a value rounds to Inf in each format (see f32BitsToF16Bits, f32BitsToBf16Bits). */
const OVERFLOW_BITS = { float16: 0x477ff000, bfloat16: 0x7f7f8000 } as const;

/**
 * The index of the first finite value of `data` that `dtype` cannot hold (it would be stored
 * as +Inf or -Inf), or -1. NaN and Inf are not counted: they are not finite to begin with.
 *
 * @example
 * ```ts
 * firstHalfOverflow(new Float32Array([1, 70000]), "float16"); // 1
 * ```
 */
export function firstHalfOverflow(data: Float32Array, dtype: "float16" | "bfloat16"): number {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const limit = OVERFLOW_BITS[dtype];
  for (let i = 0; i < bits.length; i++) {
    const magnitude = bits[i]! & 0x7fffffff;
    if (magnitude >= limit && magnitude < 0x7f800000) return i;
  }
  return -1;
}

/**
 * Clamps, in place, every finite value of `data` beyond `dtype`'s range to its largest finite
 * value of the same sign (what `output.overflow: "clamp"` asks for); NaN and Inf stay. Returns
 * how many were clamped.
 *
 * @example
 * ```ts
 * const data = new Float32Array([70000, -1e6, 2]);
 * clampToHalfRange(data, "float16"); // 2; data is [65504, -65504, 2]
 * ```
 */
export function clampToHalfRange(data: Float32Array, dtype: "float16" | "bfloat16"): number {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const limit = OVERFLOW_BITS[dtype];
  const max = HALF_MAX[dtype];
  let clamped = 0;
  for (let i = 0; i < bits.length; i++) {
    const magnitude = bits[i]! & 0x7fffffff;
    if (magnitude < limit || magnitude >= 0x7f800000) continue;
    data[i] = bits[i]! >>> 31 ? -max : max;
    clamped++;
  }
  return clamped;
}
