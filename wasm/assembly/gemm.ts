// f32 matrix multiply in the three layouts a linear layer needs.
//
//   forward      y[B,out]  = x[B,in] · W[out,in]^T + b     matmul_nt (with bias)
//   backward dx  dx[B,in]  = dy[B,out] · W[out,in]          matmul_nn
//   backward dW  dW[out,in] += dy[B,out]^T · x[B,in]        matmul_tn (accumulate)
//
// All three run one register-blocked core: 4 rows x 8 columns of the output live in eight
// f32x4 accumulators while k runs over the shared dimension. A is read through strides, so
// the same core serves A and A^T; B must be [K,N] row-major, so matmul_nt packs W^T into
// caller-provided scratch, one cache block at a time (kernels never allocate).
//
// A's scalars are broadcast with v128.load32_splat, not f32x4.splat(load<f32>(...)): V8 turns
// the former into one broadcast load (vbroadcastss) and the latter into a load and a shuffle,
// which cost the 4x8 tile 15-20% of its speed (nt 64x256x784: 556 -> 472 us).
//
// Every pointer is a byte offset into linear memory; every size counts f32 elements.
import { F32, loadPart, madd, storePart, storeTransposed4x4 } from "./simd";

/** What the accumulators start from. */
const INIT_ZERO: i32 = 0;
const INIT_OUT: i32 = 1; // accumulate into out
const INIT_BIAS: i32 = 2; // out = bias broadcast over rows, then accumulate

// @ts-ignore: decorator
@inline
function initVec(mode: i32, out: usize, bias: usize, col: usize): v128 {
  if (mode == INIT_OUT) return v128.load(out);
  if (mode == INIT_BIAS) return v128.load(bias + col * F32);
  return f32x4.splat(0);
}

// Cache blocking: the shared dimension runs in chunks of GEMM_KC and the columns in chunks of
// GEMM_NC, so the block of B that every 4-row panel of A streams through (GEMM_KC x GEMM_NC
// floats, 32 KiB) stays in L1 across the panels, instead of the whole of B coming from L2 or
// beyond for each panel (a weight gradient's B is the batch's activations, [tokens, in]: 512 KiB
// for bert-tiny). Each output element still sums its k in order, from the same start: a chunk
// after the first resumes from the value the previous chunk stored (an exact f32 round trip),
// so the result is the unblocked loop's, bit for bit, in both builds.
const GEMM_KC: i32 = 128;
const GEMM_NC: i32 = 64;

/**
 * out[M,N] = init + A·B, where A(i,k) sits at a + (i*ars + k*acs)*4, B(k,j) at b + (k*ldb + j)*4
 * (rows of B contiguous along N) and out(i,j) at out + (i*ldo + j)*4: gemmBlock over
 * GEMM_KC x GEMM_NC blocks of B, the first k chunk from `mode`, the later ones from out.
 */
function gemmCore(
  out: usize, a: usize, ars: usize, acs: usize, b: usize, ldb: usize, ldo: usize, bias: usize,
  M: i32, N: i32, K: i32, mode: i32, scratch: usize = 0,
): void {
  // with scratch (GEMM_KC * GEMM_NC floats), each block of B is first copied into it row after
  // row, so that the panels read it contiguously. Read in place, a block has its rows ldb floats
  // apart, and where ldb is a multiple of 128 (512 bytes: a transformer's 128, 512, 768 widths)
  // its lines fall into a few L1 sets and evict each other (bench/gemm-shapes.mjs: tn 128x512x1024
  // 39-43 -> 51-56 GFLOP/s packed, nn 1024x512x128 49-51 -> 58). Other strides, and few panels
  // (M < 64: a 32x64x64 lost 5-10% to the copy), read B in place. The same values in the same
  // order: the same bits.
  const pack = scratch != 0 && M >= GEMM_PACK_MIN_M && (ldb & 127) == 0;
  let k0: i32 = 0;
  do {
    const kc = min(GEMM_KC, K - k0);
    const chunkMode = k0 == 0 ? mode : INIT_OUT;
    const ak = a + <usize>k0 * acs * F32;
    const bk = b + <usize>k0 * ldb * F32;
    for (let j0: i32 = 0; j0 < N; j0 += GEMM_NC) {
      const cj = <usize>j0 * F32;
      const nc = min(GEMM_NC, N - j0);
      if (pack) {
        packRows(scratch, bk + cj, ldb, kc, nc);
        gemmBlock(out + cj, ak, ars, acs, scratch, <usize>nc, ldo, bias != 0 ? bias + cj : 0, M, nc, kc, chunkMode);
      } else {
        gemmBlock(out + cj, ak, ars, acs, bk + cj, ldb, ldo, bias != 0 ? bias + cj : 0, M, nc, kc, chunkMode);
      }
    }
    k0 += GEMM_KC;
  } while (k0 < K);
}

/** Rows a GEMM needs before packing B's blocks pays for the copy (each block serves M / 4 panels). */
const GEMM_PACK_MIN_M: i32 = 64;

/** dst[kc, nc] = the kc rows of nc floats at src, ld floats apart: a block of B made contiguous. */
function packRows(dst: usize, src: usize, ld: usize, kc: i32, nc: i32): void {
  const n = <usize>nc;
  const n4 = n & ~(<usize>3);
  for (let r: usize = 0; r < <usize>kc; r++) {
    const s = src + r * ld * F32, d = dst + r * n * F32;
    let j: usize = 0;
    for (; j < n4; j += 4) v128.store(d + j * F32, v128.load(s + j * F32));
    for (; j < n; j++) store<f32>(d + j * F32, load<f32>(s + j * F32));
  }
}

/**
 * gemmCore's register-blocked kernel over one block: panels of 4 rows (then one panel of the
 * M % 4 rows left), each 8-wide tiles, then a 4-wide one, then the N % 4 tail columns.
 */
function gemmBlock(
  out: usize, a: usize, ars: usize, acs: usize, b: usize, ldb: usize, ldo: usize, bias: usize,
  M: i32, N: i32, K: i32, mode: i32,
): void {
  const n = ldo; // elements between rows of out
  const bRow = ldb * F32; // bytes between consecutive k rows of B
  const aRow = ars * F32; // bytes between rows of A
  const aCol = acs * F32; // bytes between consecutive k of A
  let i: i32 = 0;
  for (; i + 4 <= M; i += 4) panel(out + <usize>i * n * F32, a + <usize>i * aRow, b, n, bRow, aRow, aCol, bias, N, K, mode, 4);
  // the M % 4 rows left as one panel of 3, 2 or 1 rows, not row by row: a row's k loop is bound
  // by its add latency (2 accumulators per 8 columns), and rows side by side share it
  // (tn 3x64x64: 820 -> 466 ns; tn 10x10x32, two rows left: 222 -> 201 ns)
  const R = M - i;
  const po = out + <usize>i * n * F32, pa = a + <usize>i * aRow;
  if (R == 3) panel(po, pa, b, n, bRow, aRow, aCol, bias, N, K, mode, 3);
  else if (R == 2) panel(po, pa, b, n, bRow, aRow, aCol, bias, N, K, mode, 2);
  else if (R == 1) panel(po, pa, b, n, bRow, aRow, aCol, bias, N, K, mode, 1);
}

/**
 * One panel of R rows (R = 1..4, a constant in each inlined copy) across all N columns: 8-wide
 * tiles, then a 4-wide one, then the N % 4 tail. Every output sums its k in order from its
 * start; tile columns madd (fused in the relaxed build), tail columns a separate multiply and
 * add (the bits the scalar tail loop gave).
 */
// @ts-ignore: decorator
@inline
function panel(
  po: usize, pa: usize, b: usize, n: usize, bRow: usize, aRow: usize, aCol: usize, bias: usize,
  N: i32, K: i32, mode: i32, R: i32,
): void {
  // the last N % 4 columns (the tail) run in the same k loop as a last 4-wide vector tile
  // (folded: 8 accumulators, one pass over k; 20-25% faster than two passes at 32x5x10 and
  // 64x13x64), or in a loop of their own after 8-wide tiles: folded in there, the 12
  // accumulators outgrew the vector registers (32x10x10: 244 ns folded, 230 apart)
  const T = N & 3;
  const NV = N - T;
  const lastW: i32 = T != 0 && (NV & 7) == 4 ? 4 : 0;
  const vEnd = NV - lastW; // vector tiles below this column run on their own
  const o1 = po + n * F32, o2 = o1 + n * F32, o3 = o2 + n * F32;
  const zero = f32x4.splat(0);
  let j: i32 = 0;
  for (; j + 8 <= vEnd; j += 8) {
    const cj = <usize>j;
    const q0 = po + cj * F32, q1 = o1 + cj * F32, q2 = o2 + cj * F32, q3 = o3 + cj * F32;
    let c00 = initVec(mode, q0, bias, cj), c01 = initVec(mode, q0 + 16, bias, cj + 4);
    let c10 = zero, c11 = zero, c20 = zero, c21 = zero, c30 = zero, c31 = zero;
    if (R > 1) { c10 = initVec(mode, q1, bias, cj); c11 = initVec(mode, q1 + 16, bias, cj + 4); }
    if (R > 2) { c20 = initVec(mode, q2, bias, cj); c21 = initVec(mode, q2 + 16, bias, cj + 4); }
    if (R > 3) { c30 = initVec(mode, q3, bias, cj); c31 = initVec(mode, q3 + 16, bias, cj + 4); }
    let pb = b + cj * F32;
    let pk = pa;
    for (let k: i32 = 0; k < K; k++) {
      const b0 = v128.load(pb), b1 = v128.load(pb, 16);
      const a0 = v128.load32_splat(pk);
      const a1 = R > 1 ? v128.load32_splat(pk + aRow) : zero;
      const a2 = R > 2 ? v128.load32_splat(pk + 2 * aRow) : zero;
      const a3 = R > 3 ? v128.load32_splat(pk + 3 * aRow) : zero;
      c00 = madd(a0, b0, c00); c01 = madd(a0, b1, c01);
      if (R > 1) { c10 = madd(a1, b0, c10); c11 = madd(a1, b1, c11); }
      if (R > 2) { c20 = madd(a2, b0, c20); c21 = madd(a2, b1, c21); }
      if (R > 3) { c30 = madd(a3, b0, c30); c31 = madd(a3, b1, c31); }
      pb += bRow;
      pk += aCol;
    }
    v128.store(q0, c00); v128.store(q0, c01, 16);
    if (R > 1) { v128.store(q1, c10); v128.store(q1, c11, 16); }
    if (R > 2) { v128.store(q2, c20); v128.store(q2, c21, 16); }
    if (R > 3) { v128.store(q3, c30); v128.store(q3, c31, 16); }
  }
  for (; j + 4 <= vEnd; j += 4) {
    const cj = <usize>j;
    const q0 = po + cj * F32, q1 = o1 + cj * F32, q2 = o2 + cj * F32, q3 = o3 + cj * F32;
    let c0 = initVec(mode, q0, bias, cj), c1 = zero, c2 = zero, c3 = zero;
    if (R > 1) c1 = initVec(mode, q1, bias, cj);
    if (R > 2) c2 = initVec(mode, q2, bias, cj);
    if (R > 3) c3 = initVec(mode, q3, bias, cj);
    let pb = b + cj * F32;
    let pk = pa;
    for (let k: i32 = 0; k < K; k++) {
      const b0 = v128.load(pb);
      c0 = madd(v128.load32_splat(pk), b0, c0);
      if (R > 1) c1 = madd(v128.load32_splat(pk + aRow), b0, c1);
      if (R > 2) c2 = madd(v128.load32_splat(pk + 2 * aRow), b0, c2);
      if (R > 3) c3 = madd(v128.load32_splat(pk + 3 * aRow), b0, c3);
      pb += bRow;
      pk += aCol;
    }
    v128.store(q0, c0);
    if (R > 1) v128.store(q1, c1);
    if (R > 2) v128.store(q2, c2);
    if (R > 3) v128.store(q3, c3);
  }
  // W, T and R constants in each inlined copy: only the accumulators they use are live across
  // the k loop, and the partial loads and stores have no branch (a runtime T cost 15-20%)
  if (T == 1) {
    if (lastW == 4) panelTail(po, pa, b, n, bRow, aRow, aCol, bias, j, 4, 1, K, mode, R);
    else if (N == 1 && R == 4) panelColumn(po, pa, b, n, bRow, aRow, aCol, bias, K, mode);
    else panelTail(po, pa, b, n, bRow, aRow, aCol, bias, j, 0, 1, K, mode, R);
  } else if (T == 2) {
    if (lastW == 4) panelTail(po, pa, b, n, bRow, aRow, aCol, bias, j, 4, 2, K, mode, R);
    else panelTail(po, pa, b, n, bRow, aRow, aCol, bias, j, 0, 2, K, mode, R);
  } else if (T == 3) {
    if (lastW == 4) panelTail(po, pa, b, n, bRow, aRow, aCol, bias, j, 4, 3, K, mode, R);
    else panelTail(po, pa, b, n, bRow, aRow, aCol, bias, j, 0, 3, K, mode, R);
  }
}

/**
 * An R-row panel's last 4-wide vector tile (W = 4 columns from column j, or W = 0: none) and
 * its N % 4 tail columns (T = 1..3) in one k loop. The tail is one partial vector per row
 * (lanes = columns, loaded and stored T lanes wide: nothing past the matrix is read or
 * written). Each output keeps its own operations: the tile's columns madd (fused in the
 * relaxed build), the tail's a separate multiply and add, each summing its k in order from its
 * start, as the scalar loop the tail replaces did (so both builds give the bits they gave before).
 */
// @ts-ignore: decorator
@inline
function panelTail(
  po: usize, pa: usize, b: usize, n: usize, bRow: usize, aRow: usize, aCol: usize, bias: usize,
  j: i32, W: i32, T: i32, K: i32, mode: i32, R: i32,
): void {
  const cj = <usize>j, ct = cj + <usize>W;
  const o0 = po + cj * F32, o1 = o0 + n * F32, o2 = o1 + n * F32, o3 = o2 + n * F32;
  const zero = f32x4.splat(0);
  let c0 = zero, c1 = zero, c2 = zero, c3 = zero;
  if (W > 0) {
    c0 = initVec(mode, o0, bias, cj);
    if (R > 1) c1 = initVec(mode, o1, bias, cj);
    if (R > 2) c2 = initVec(mode, o2, bias, cj);
    if (R > 3) c3 = initVec(mode, o3, bias, cj);
  }
  const tw = <usize>W * F32;
  let t0 = partInit(mode, o0 + tw, bias, ct, T), t1 = zero, t2 = zero, t3 = zero;
  if (R > 1) t1 = partInit(mode, o1 + tw, bias, ct, T);
  if (R > 2) t2 = partInit(mode, o2 + tw, bias, ct, T);
  if (R > 3) t3 = partInit(mode, o3 + tw, bias, ct, T);
  let pb = b + cj * F32;
  let pk = pa;
  for (let k: i32 = 0; k < K; k++) {
    const a0 = v128.load32_splat(pk);
    const a1 = R > 1 ? v128.load32_splat(pk + aRow) : zero;
    const a2 = R > 2 ? v128.load32_splat(pk + 2 * aRow) : zero;
    const a3 = R > 3 ? v128.load32_splat(pk + 3 * aRow) : zero;
    if (W > 0) {
      const b0 = v128.load(pb);
      c0 = madd(a0, b0, c0);
      if (R > 1) c1 = madd(a1, b0, c1);
      if (R > 2) c2 = madd(a2, b0, c2);
      if (R > 3) c3 = madd(a3, b0, c3);
    }
    const bt = loadPart(pb + tw, T);
    t0 = f32x4.add(t0, f32x4.mul(a0, bt));
    if (R > 1) t1 = f32x4.add(t1, f32x4.mul(a1, bt));
    if (R > 2) t2 = f32x4.add(t2, f32x4.mul(a2, bt));
    if (R > 3) t3 = f32x4.add(t3, f32x4.mul(a3, bt));
    pb += bRow;
    pk += aCol;
  }
  if (W > 0) {
    v128.store(o0, c0);
    if (R > 1) v128.store(o1, c1);
    if (R > 2) v128.store(o2, c2);
    if (R > 3) v128.store(o3, c3);
  }
  storePart(o0 + tw, t0, T);
  if (R > 1) storePart(o1 + tw, t1, T);
  if (R > 2) storePart(o2 + tw, t2, T);
  if (R > 3) storePart(o3 + tw, t3, T);
}

/**
 * A 4-row panel of a one-column output (N = 1: a regression or binary head's forward, a
 * matrix-vector product) as one vector whose lanes are the rows, so no lane is idle: A's four
 * values at each k come from one load when the rows are contiguous (aRow = 4 bytes: matmul_tn),
 * from 4x4 blocks of A transposed in registers when k is (aCol = 4: matmul_nt and matmul_nn),
 * else lane by lane. Each output sums its k in order, a separate multiply and add from its
 * start, as panelTail's tail column does (the same bits, at a third of the time for 32x1x10).
 */
// @ts-ignore: decorator
@inline
function panelColumn(po: usize, pa: usize, b: usize, n: usize, bRow: usize, aRow: usize, aCol: usize, bias: usize, K: i32, mode: i32): void {
  const q1 = po + n * F32, q2 = q1 + n * F32, q3 = q2 + n * F32;
  let t: v128;
  if (mode == INIT_OUT) t = v128.load32_lane(q3, v128.load32_lane(q2, v128.load32_lane(q1, v128.load32_zero(po), 1), 2), 3);
  else if (mode == INIT_BIAS) t = v128.load32_splat(bias);
  else t = f32x4.splat(0);
  let pb = b;
  let pk = pa;
  let k: i32 = 0;
  if (aRow == F32) {
    for (; k < K; k++) {
      t = f32x4.add(t, f32x4.mul(v128.load(pk), v128.load32_splat(pb)));
      pb += bRow;
      pk += aCol;
    }
  } else {
    if (aCol == F32) {
      for (; k + 4 <= K; k += 4) {
        // rows i..i+3 at k..k+3, transposed: c0 holds the four rows' values at k, c1 at k + 1, ...
        const r0 = v128.load(pk), r1 = v128.load(pk + aRow), r2 = v128.load(pk + 2 * aRow), r3 = v128.load(pk + 3 * aRow);
        const u0 = v128.shuffle<f32>(r0, r1, 0, 4, 1, 5), u1 = v128.shuffle<f32>(r2, r3, 0, 4, 1, 5);
        const u2 = v128.shuffle<f32>(r0, r1, 2, 6, 3, 7), u3 = v128.shuffle<f32>(r2, r3, 2, 6, 3, 7);
        t = f32x4.add(t, f32x4.mul(v128.shuffle<f32>(u0, u1, 0, 1, 4, 5), v128.load32_splat(pb)));
        t = f32x4.add(t, f32x4.mul(v128.shuffle<f32>(u0, u1, 2, 3, 6, 7), v128.load32_splat(pb + bRow)));
        t = f32x4.add(t, f32x4.mul(v128.shuffle<f32>(u2, u3, 0, 1, 4, 5), v128.load32_splat(pb + 2 * bRow)));
        t = f32x4.add(t, f32x4.mul(v128.shuffle<f32>(u2, u3, 2, 3, 6, 7), v128.load32_splat(pb + 3 * bRow)));
        pb += 4 * bRow;
        pk += 16;
      }
    }
    for (; k < K; k++) {
      const av = v128.load32_lane(pk + 3 * aRow, v128.load32_lane(pk + 2 * aRow, v128.load32_lane(pk + aRow, v128.load32_zero(pk), 1), 2), 3);
      t = f32x4.add(t, f32x4.mul(av, v128.load32_splat(pb)));
      pb += bRow;
      pk += aCol;
    }
  }
  v128.store32_lane(po, t, 0); v128.store32_lane(q1, t, 1); v128.store32_lane(q2, t, 2); v128.store32_lane(q3, t, 3);
}

/** The start of T tail columns of one row (lanes = columns): zero, the bias, or out's values. */
// @ts-ignore: decorator
@inline
function partInit(mode: i32, q: usize, bias: usize, col: usize, T: i32): v128 {
  if (mode == INIT_OUT) return loadPart(q, T);
  if (mode == INIT_BIAS) return loadPart(bias + col * F32, T);
  return f32x4.splat(0);
}

/**
 * out[rows, cols] = inp[cols, rows]^T: 4x4 blocks transposed in registers (two rounds of
 * shuffles), scalar edges for the last rows % 4 and cols % 4.
 */
export function transpose(out: usize, inp: usize, rows: i32, cols: i32): void {
  // out is [rows, cols]; inp is [cols, rows]
  const R = <usize>rows, C = <usize>cols;
  const R4 = R & ~(<usize>3), C4 = C & ~(<usize>3);
  for (let c: usize = 0; c < C4; c += 4) {
    for (let r: usize = 0; r < R4; r += 4) {
      // four rows of inp: inp[c+i, r..r+4]
      const p = inp + (c * R + r) * F32;
      const a0 = v128.load(p), a1 = v128.load(p + R * F32), a2 = v128.load(p + 2 * R * F32), a3 = v128.load(p + 3 * R * F32);
      storeTransposed4x4(out + (r * C + c) * F32, C * F32, a0, a1, a2, a3);
    }
    for (let r = R4; r < R; r++) {
      for (let i: usize = 0; i < 4; i++) store<f32>(out + (r * C + c + i) * F32, load<f32>(inp + ((c + i) * R + r) * F32));
    }
  }
  for (let c = C4; c < C; c++) {
    for (let r: usize = 0; r < R; r++) store<f32>(out + (r * C + c) * F32, load<f32>(inp + (c * R + r) * F32));
  }
}

/**
 * out[M,N] = a[M,K] · b[N,K]^T + bias[N]   (bias 0 = none)
 * The linear layer's forward (b = weight [out,in]). `scratch` holds K*N floats for b^T.
 */
export function matmul_nt(out: usize, a: usize, b: usize, bias: usize, scratch: usize, M: i32, N: i32, K: i32): void {
  const mode = bias != 0 ? INIT_BIAS : INIT_ZERO;
  // b^T is packed one GEMM_KC x GEMM_NC block at a time, just before the panels use it, so the
  // block is written and read in L1. Packing all of b^T first wrote K*N floats with a stride of
  // K (0.8 MB for a 784 x 256 layer, a quarter of the call at a batch of 64). The blocks, their
  // order and each output's k order are gemmCore's, so the result is the same bit for bit.
  let k0: i32 = 0;
  do {
    const kc = min(GEMM_KC, K - k0);
    const chunkMode = k0 == 0 ? mode : INIT_OUT;
    const ak = a + <usize>k0 * F32;
    for (let j0: i32 = 0; j0 < N; j0 += GEMM_NC) {
      const nc = min(GEMM_NC, N - j0);
      const cj = <usize>j0 * F32;
      packTransposed(scratch, b + (<usize>j0 * <usize>K + <usize>k0) * F32, <usize>K, kc, nc);
      gemmBlock(out + cj, ak, <usize>K, 1, scratch, <usize>nc, <usize>N, bias != 0 ? bias + cj : 0, M, nc, kc, chunkMode);
    }
    k0 += GEMM_KC;
  } while (k0 < K);
}

/**
 * dst[kc, nc] = src[nc, kc]^T, where row j of src starts ld floats after row j-1 (a block of
 * a larger [N, K] matrix): 4x4 blocks transposed in registers, scalar edges.
 */
function packTransposed(dst: usize, src: usize, ld: usize, kc: i32, nc: i32): void {
  const K = <usize>kc, Nn = <usize>nc;
  const K4 = K & ~(<usize>3), N4 = Nn & ~(<usize>3);
  const srow = ld * F32;
  for (let j: usize = 0; j < N4; j += 4) {
    const p = src + j * srow;
    for (let k: usize = 0; k < K4; k += 4) {
      const q = p + k * F32;
      storeTransposed4x4(dst + (k * Nn + j) * F32, Nn * F32, v128.load(q), v128.load(q + srow), v128.load(q + 2 * srow), v128.load(q + 3 * srow));
    }
    for (let k = K4; k < K; k++) {
      for (let i: usize = 0; i < 4; i++) store<f32>(dst + (k * Nn + j + i) * F32, load<f32>(p + i * srow + k * F32));
    }
  }
  for (let j = N4; j < Nn; j++) {
    for (let k: usize = 0; k < K; k++) store<f32>(dst + (k * Nn + j) * F32, load<f32>(src + j * srow + k * F32));
  }
}

/**
 * out[M,N] (+)= a[M,K] · b[K,N]   (accumulate != 0: add into out)
 * The linear layer's input gradient: dx[B,in] = dy[B,out] · W[out,in]. `scratch`: 0, or room
 * for GEMM_KC * GEMM_NC (8,192) floats to pack B's blocks into (gemmCore; the same result).
 */
export function matmul_nn(out: usize, a: usize, b: usize, M: i32, N: i32, K: i32, accumulate: i32, scratch: usize): void {
  gemmCore(out, a, <usize>K, 1, b, <usize>N, <usize>N, 0, M, N, K, accumulate != 0 ? INIT_OUT : INIT_ZERO, scratch);
}

/**
 * out[M,N] (+)= a[K,M]^T · b[K,N]   (accumulate != 0: add into out)
 * The linear layer's weight gradient: dW[out,in] += dy[B,out]^T · x[B,in]. `scratch` as matmul_nn's.
 */
export function matmul_tn(out: usize, a: usize, b: usize, M: i32, N: i32, K: i32, accumulate: i32, scratch: usize): void {
  gemmCore(out, a, 1, <usize>M, b, <usize>N, <usize>N, 0, M, N, K, accumulate != 0 ? INIT_OUT : INIT_ZERO, scratch);
}

/**
 * out[i*ldo + j] (+)= sum_k a[i*ars + k*acs] · b[k*ldb + j], for i < M, j < N, k < K
 * (accumulate != 0: add into out). Views into larger tensors: one head of a [T, 3D] projection
 * (ars = 3D), a transposed operand (ars = 1, acs = rows), one group of a convolution's output.
 * B's rows must be contiguous along N (pack a transposed B first); no bias.
 */
export function matmul_strided(
  out: usize, a: usize, b: usize, M: i32, N: i32, K: i32, ars: i32, acs: i32, ldb: i32, ldo: i32, accumulate: i32,
): void {
  gemmCore(out, a, <usize>ars, <usize>acs, b, <usize>ldb, <usize>ldo, 0, M, N, K, accumulate != 0 ? INIT_OUT : INIT_ZERO);
}
