// The machine's WASM-SIMD peak for `npm run bench` (gemm): a register-only loop of
// independent f32x4 multiply-adds over 12 accumulators (no loads, no stores), the best
// any f32x4 kernel could do on this V8 and CPU. The plain SIMD build issues f32x4.mul then
// f32x4.add (8 FLOP per pair); the relaxed build one f32x4.relaxed_madd (8 FLOP).
// Compiled by bench/edgetune.mjs with the project's assemblyscript.

/** FLOPs of one loop iteration: 12 accumulators x 4 lanes x (mul + add). */
export const FLOPS_PER_ITER: i32 = 12 * 4 * 2;

// @ts-ignore: decorator
@inline
function ma(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return f32x4.relaxed_madd(a, b, c);
  } else {
    return f32x4.add(f32x4.mul(a, b), c);
  }
}

/** Runs `iters` iterations; returns a lane of the sum so nothing is dead code. */
export function peak(iters: i32, seed: f32): f32 {
  const m = f32x4.splat(0.99990004);
  const a = f32x4.splat(seed * 0.0001);
  let c0 = f32x4.splat(seed + 0.01), c1 = f32x4.splat(seed + 0.02), c2 = f32x4.splat(seed + 0.03);
  let c3 = f32x4.splat(seed + 0.04), c4 = f32x4.splat(seed + 0.05), c5 = f32x4.splat(seed + 0.06);
  let c6 = f32x4.splat(seed + 0.07), c7 = f32x4.splat(seed + 0.08), c8 = f32x4.splat(seed + 0.09);
  let c9 = f32x4.splat(seed + 0.10), c10 = f32x4.splat(seed + 0.11), c11 = f32x4.splat(seed + 0.12);
  for (let i = 0; i < iters; i++) {
    c0 = ma(c0, m, a); c1 = ma(c1, m, a); c2 = ma(c2, m, a); c3 = ma(c3, m, a);
    c4 = ma(c4, m, a); c5 = ma(c5, m, a); c6 = ma(c6, m, a); c7 = ma(c7, m, a);
    c8 = ma(c8, m, a); c9 = ma(c9, m, a); c10 = ma(c10, m, a); c11 = ma(c11, m, a);
  }
  const s = f32x4.add(
    f32x4.add(f32x4.add(f32x4.add(c0, c1), f32x4.add(c2, c3)), f32x4.add(f32x4.add(c4, c5), f32x4.add(c6, c7))),
    f32x4.add(f32x4.add(c8, c9), f32x4.add(c10, c11)),
  );
  return f32x4.extract_lane(s, 0);
}

/** FLOPs of one peak_tile iteration: 4 rows x 8 columns x (mul + add). */
export const TILE_FLOPS_PER_ITER: i32 = 4 * 8 * 2;

/**
 * The other form of the peak: the GEMM's own register tile (4 rows x 8 columns in eight f32x4
 * accumulators; per k, two vector loads of B and four broadcast loads of A) over operands that
 * stay in L1 (a 4 KiB window of `buf`, read over and over), with no stores: what the tile can
 * issue when memory never waits. Independent multiplies feed one add chain per accumulator,
 * which a register-only loop cannot express without V8 hoisting its loop-invariant products.
 */
export function peak_tile(iters: i32, buf: usize): f32 {
  if (<usize>memory.size() << 16 < buf + 4096) memory.grow(<i32>((buf + 4096) >> 16) + 1);
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  // k runs 64 steps over the window with plain pointer increments, as the GEMM's k loop does
  for (let i = 0; i < iters; i += 64) {
    let pb = buf, pa = buf + 2048;
    for (let k = 0; k < 64; k++) {
      const b0 = v128.load(pb), b1 = v128.load(pb, 16);
      const a0 = v128.load32_splat(pa), a1 = v128.load32_splat(pa, 4), a2 = v128.load32_splat(pa, 8), a3 = v128.load32_splat(pa, 12);
      c00 = ma(a0, b0, c00); c01 = ma(a0, b1, c01);
      c10 = ma(a1, b0, c10); c11 = ma(a1, b1, c11);
      c20 = ma(a2, b0, c20); c21 = ma(a2, b1, c21);
      c30 = ma(a3, b0, c30); c31 = ma(a3, b1, c31);
      pb += 32;
      pa += 16;
    }
  }
  const s = f32x4.add(
    f32x4.add(f32x4.add(c00, c01), f32x4.add(c10, c11)),
    f32x4.add(f32x4.add(c20, c21), f32x4.add(c30, c31)),
  );
  return f32x4.extract_lane(s, 0);
}
