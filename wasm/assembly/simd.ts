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
 * The first T (1..3) floats at p in the low lanes, zeros above; nothing past them is read. A
 * matrix's last N % 4 columns as one vector (gemm.ts, bias_grad), each lane its own column.
 */
// @ts-ignore: decorator
@inline
export function loadPart(p: usize, T: i32): v128 {
  if (T == 1) return v128.load32_zero(p);
  if (T == 2) return v128.load64_zero(p);
  return v128.load32_lane(p, v128.load64_zero(p), 2, 8);
}

/** Writes the low T (1..3) lanes of v at p, nothing past them. */
// @ts-ignore: decorator
@inline
export function storePart(p: usize, v: v128, T: i32): void {
  if (T == 1) v128.store32_lane(p, v, 0);
  else {
    v128.store64_lane(p, v, 0);
    if (T == 3) v128.store32_lane(p, v, 2, 8);
  }
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

// e^x, four lanes at a time (Cephes expf): e^x = 2^n e^r with n = nearest(x log2 e) and
// r = x - n ln 2 (ln 2 in two parts, so r is exact), e^r = 1 + r + r^2 P(r) with Cephes' degree-5
// P; within 2 ulps of e^x for x in [-87.3, 88.7]. n is rounded half to even by adding and
// subtracting 1.5 * 2^23, whose sum also holds n in its low mantissa bits: (bits + 127) << 23 is
// 2^n. x < -87.33654 (e^x below the smallest normal) gives 0 (torch gives a subnormal there:
// below 1.2e-38, invisible next to a softmax sum >= 1); a NaN x stays NaN.
// Plain multiplies and adds (no madd), so both builds and the TypeScript twin (reference.ts
// expf) agree bit for bit. Used by attention_softmax and the erf of GELU (activations.ts).
const EXP_LO: f32 = -87.33654;
const EXP_ROUND: f32 = 12582912.0; // 1.5 * 2^23
const LOG2E: f32 = 1.44269504088896341;
const LN2_HI: f32 = 0.693359375;
const LN2_LO: f32 = -2.12194440e-4;
const EXP_P0: f32 = 1.9875691500e-4;
const EXP_P1: f32 = 1.3981999507e-3;
const EXP_P2: f32 = 8.3334519073e-3;
const EXP_P3: f32 = 4.1665795894e-2;
const EXP_P4: f32 = 1.6666665459e-1;
const EXP_P5: f32 = 5.0000001201e-1;

// @ts-ignore: decorator
@inline
export function exp4(x: v128): v128 {
  const shifted = f32x4.add(f32x4.mul(x, f32x4.splat(LOG2E)), f32x4.splat(EXP_ROUND));
  const n = f32x4.sub(shifted, f32x4.splat(EXP_ROUND));
  const r = f32x4.sub(f32x4.sub(x, f32x4.mul(n, f32x4.splat(LN2_HI))), f32x4.mul(n, f32x4.splat(LN2_LO)));
  let y = f32x4.add(f32x4.mul(f32x4.splat(EXP_P0), r), f32x4.splat(EXP_P1));
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(EXP_P2));
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(EXP_P3));
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(EXP_P4));
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(EXP_P5));
  y = f32x4.add(f32x4.add(f32x4.mul(y, f32x4.mul(r, r)), r), f32x4.splat(1));
  const scale = i32x4.shl(i32x4.add(shifted, i32x4.splat(127)), 23);
  // below the normal range (n + 127 < 1 would wrap): 0
  return v128.andnot(f32x4.mul(y, scale), f32x4.lt(x, f32x4.splat(EXP_LO)));
}
