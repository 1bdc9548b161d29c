// 16-bit weights read as f32: a frozen base held in float16 or bfloat16 (model.base_dtype) is
// widened right before the op that reads it. Exact conversions (every f16 and bf16 value is an
// f32), as torch's .float() of a half / bfloat16 tensor. Pointers of the 16-bit side may be
// 2-byte aligned only (v128 loads do not need alignment).
import { F32 } from "./simd";

/** Bytes per 16-bit element. */
const U16: usize = 2;

/**
 * f16 bits (zero-extended in each i32 lane) to f32 bits: the exponent and mantissa shifted into
 * place and multiplied by 2^112 (exact for normal and subnormal halves), Inf and NaN (exponent
 * 31) given the f32 exponent 255 with the mantissa kept, the sign put back.
 */
// @ts-ignore: decorator
@inline
function f16x4(h: v128): v128 {
  const em = v128.and(h, i32x4.splat(0x7fff));
  const shifted = i32x4.shl(em, 13);
  const scaled = f32x4.mul(shifted, f32x4.splat(reinterpret<f32>(0x77800000)));
  const special = i32x4.ge_u(em, i32x4.splat(0x7c00));
  const body = v128.bitselect(v128.or(shifted, i32x4.splat(0x7f800000)), scaled, special);
  return v128.or(body, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/** The scalar f16x4: one f16 value as f32. */
// @ts-ignore: decorator
@inline
function f16(h: u32): f32 {
  const em = h & 0x7fff;
  const shifted = em << 13;
  const body = em >= 0x7c00 ? shifted | 0x7f800000 : reinterpret<u32>(reinterpret<f32>(shifted) * reinterpret<f32>(0x77800000));
  return reinterpret<f32>(body | ((h & 0x8000) << 16));
}

/** out[i] = f32(inp[i]) for n f16 values (u16 bits). */
export function widen_f16(out: usize, inp: usize, n: i32): void {
  const N = <usize>n;
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) v128.store(out + i * F32, f16x4(v128.load16x4_u(inp + i * U16)));
  for (; i < N; i++) store<f32>(out + i * F32, f16(<u32>load<u16>(inp + i * U16)));
}

/** out[i] = f32(inp[i]) for n bfloat16 values (u16 bits): the bits shifted into the upper half. */
export function widen_bf16(out: usize, inp: usize, n: i32): void {
  const N = <usize>n;
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) v128.store(out + i * F32, i32x4.shl(v128.load16x4_u(inp + i * U16), 16));
  for (; i < N; i++) store<u32>(out + i * F32, (<u32>load<u16>(inp + i * U16)) << 16);
}

/**
 * embedding_forward over a 16-bit table: out[t, :] = f32(weight[ids[t], :]) (bf16: 1 for
 * bfloat16, 0 for float16). Only the rows the tokens pick are widened, so a frozen embedding
 * table never needs an f32 copy.
 */
export function embedding_forward_half(out: usize, weight: usize, ids: usize, n: i32, dim: i32, bf16: i32): void {
  const D = <usize>dim;
  for (let t: usize = 0; t < <usize>n; t++) {
    const id = <usize>(<i32>load<f32>(ids + t * F32));
    if (bf16) widen_bf16(out + t * D * F32, weight + id * D * U16, dim);
    else widen_f16(out + t * D * F32, weight + id * D * U16, dim);
  }
}
