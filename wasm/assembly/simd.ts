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
