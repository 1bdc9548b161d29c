// Small SIMD helpers shared by the kernels. `madd` is a*b+c: fused (relaxed_madd) in the
// relaxed-SIMD build, a separate multiply and add in the plain SIMD build, so each build is
// deterministic on its own.

/** Bytes per f32 element. */
export const F32: usize = 4;

/** a * b + c, lane-wise. */
// @ts-ignore: decorator
@inline
export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return f32x4.relaxed_madd(a, b, c);
  } else {
    return f32x4.add(f32x4.mul(a, b), c);
  }
}

/** Sum of the four lanes, in lane order ((l0 + l1) + (l2 + l3)). */
// @ts-ignore: decorator
@inline
export function hsum(v: v128): f32 {
  return (
    f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) +
    (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3))
  );
}

/** Largest of the four lanes (NaN-propagating, like f32x4.max). */
// @ts-ignore: decorator
@inline
export function hmax(v: v128): f32 {
  return max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

/**
 * Stores the transpose of the 4x4 block whose rows are a0..a3 at q, q + stride, q + 2*stride,
 * q + 3*stride (stride in bytes): two rounds of shuffles, no memory in between.
 */
// @ts-ignore: decorator
@inline
export function storeTransposed4x4(q: usize, stride: usize, a0: v128, a1: v128, a2: v128, a3: v128): void {
  const t0 = v128.shuffle<f32>(a0, a1, 0, 4, 1, 5); // a0[0] a1[0] a0[1] a1[1]
  const t1 = v128.shuffle<f32>(a2, a3, 0, 4, 1, 5);
  const t2 = v128.shuffle<f32>(a0, a1, 2, 6, 3, 7);
  const t3 = v128.shuffle<f32>(a2, a3, 2, 6, 3, 7);
  v128.store(q, v128.shuffle<f32>(t0, t1, 0, 1, 4, 5));
  v128.store(q + stride, v128.shuffle<f32>(t0, t1, 2, 3, 6, 7));
  v128.store(q + 2 * stride, v128.shuffle<f32>(t2, t3, 0, 1, 4, 5));
  v128.store(q + 3 * stride, v128.shuffle<f32>(t2, t3, 2, 3, 6, 7));
}
