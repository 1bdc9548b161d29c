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
import { F32, madd, storeTransposed4x4 } from "./simd";

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

// @ts-ignore: decorator
@inline
function initScalar(mode: i32, out: usize, bias: usize, col: usize): f32 {
  if (mode == INIT_OUT) return load<f32>(out);
  if (mode == INIT_BIAS) return load<f32>(bias + col * F32);
  return 0;
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
  M: i32, N: i32, K: i32, mode: i32,
): void {
  let k0: i32 = 0;
  do {
    const kc = min(GEMM_KC, K - k0);
    const chunkMode = k0 == 0 ? mode : INIT_OUT;
    const ak = a + <usize>k0 * acs * F32;
    const bk = b + <usize>k0 * ldb * F32;
    for (let j0: i32 = 0; j0 < N; j0 += GEMM_NC) {
      const cj = <usize>j0 * F32;
      gemmBlock(out + cj, ak, ars, acs, bk + cj, ldb, ldo, bias != 0 ? bias + cj : 0, M, min(GEMM_NC, N - j0), kc, chunkMode);
    }
    k0 += GEMM_KC;
  } while (k0 < K);
}

/** gemmCore's register-blocked kernel over one block: 4x8 tiles, then 4x4, then scalar edges. */
function gemmBlock(
  out: usize, a: usize, ars: usize, acs: usize, b: usize, ldb: usize, ldo: usize, bias: usize,
  M: i32, N: i32, K: i32, mode: i32,
): void {
  const n = ldo; // elements between rows of out
  const bRow = ldb * F32; // bytes between consecutive k rows of B
  const aRow = ars * F32; // bytes between rows of A
  const aCol = acs * F32; // bytes between consecutive k of A
  let i: i32 = 0;
  // the last N % 4 columns (the tail) run in the same k loop as the last vector tile (folded),
  // so that a narrow output (a tiny model's 10 columns) is one pass over k per panel, not three
  const T = N & 3;
  const NV = N - T;
  const lastW: i32 = T == 0 ? 0 : (NV & 7) == 4 ? 4 : NV >= 8 ? 8 : 0;
  const vEnd = NV - lastW; // vector tiles below this column run on their own
  // ---- 4-row panels
  for (; i + 4 <= M; i += 4) {
    const pa = a + <usize>i * aRow;
    const po = out + <usize>i * n * F32;
    let j: i32 = 0;
    for (; j + 8 <= vEnd; j += 8) {
      const cj = <usize>j;
      const o0 = po + cj * F32, o1 = o0 + n * F32, o2 = o1 + n * F32, o3 = o2 + n * F32;
      let c00 = initVec(mode, o0, bias, cj), c01 = initVec(mode, o0 + 16, bias, cj + 4);
      let c10 = initVec(mode, o1, bias, cj), c11 = initVec(mode, o1 + 16, bias, cj + 4);
      let c20 = initVec(mode, o2, bias, cj), c21 = initVec(mode, o2 + 16, bias, cj + 4);
      let c30 = initVec(mode, o3, bias, cj), c31 = initVec(mode, o3 + 16, bias, cj + 4);
      let pb = b + cj * F32;
      let pk = pa;
      for (let k: i32 = 0; k < K; k++) {
        const b0 = v128.load(pb), b1 = v128.load(pb, 16);
        const a0 = v128.load32_splat(pk);
        const a1 = v128.load32_splat(pk + aRow);
        const a2 = v128.load32_splat(pk + 2 * aRow);
        const a3 = v128.load32_splat(pk + 3 * aRow);
        c00 = madd(a0, b0, c00); c01 = madd(a0, b1, c01);
        c10 = madd(a1, b0, c10); c11 = madd(a1, b1, c11);
        c20 = madd(a2, b0, c20); c21 = madd(a2, b1, c21);
        c30 = madd(a3, b0, c30); c31 = madd(a3, b1, c31);
        pb += bRow;
        pk += aCol;
      }
      v128.store(o0, c00); v128.store(o0, c01, 16);
      v128.store(o1, c10); v128.store(o1, c11, 16);
      v128.store(o2, c20); v128.store(o2, c21, 16);
      v128.store(o3, c30); v128.store(o3, c31, 16);
    }
    for (; j + 4 <= vEnd; j += 4) {
      const cj = <usize>j;
      const o0 = po + cj * F32, o1 = o0 + n * F32, o2 = o1 + n * F32, o3 = o2 + n * F32;
      let c0 = initVec(mode, o0, bias, cj), c1 = initVec(mode, o1, bias, cj);
      let c2 = initVec(mode, o2, bias, cj), c3 = initVec(mode, o3, bias, cj);
      let pb = b + cj * F32;
      let pk = pa;
      for (let k: i32 = 0; k < K; k++) {
        const b0 = v128.load(pb);
        c0 = madd(v128.load32_splat(pk), b0, c0);
        c1 = madd(v128.load32_splat(pk + aRow), b0, c1);
        c2 = madd(v128.load32_splat(pk + 2 * aRow), b0, c2);
        c3 = madd(v128.load32_splat(pk + 3 * aRow), b0, c3);
        pb += bRow;
        pk += aCol;
      }
      v128.store(o0, c0); v128.store(o1, c1); v128.store(o2, c2); v128.store(o3, c3);
    }
    if (T > 0) panelTail(po, pa, b, n, bRow, aRow, aCol, bias, j, lastW, T, K, mode);
  }
  // ---- remaining M % 4 rows, one at a time
  for (; i < M; i++) {
    const pa = a + <usize>i * aRow;
    const po = out + <usize>i * n * F32;
    let j: i32 = 0;
    for (; j + 8 <= vEnd; j += 8) {
      const cj = <usize>j;
      const o0 = po + cj * F32;
      let c0 = initVec(mode, o0, bias, cj), c1 = initVec(mode, o0 + 16, bias, cj + 4);
      let pb = b + cj * F32;
      let pk = pa;
      for (let k: i32 = 0; k < K; k++) {
        const av = v128.load32_splat(pk);
        c0 = madd(av, v128.load(pb), c0);
        c1 = madd(av, v128.load(pb, 16), c1);
        pb += bRow;
        pk += aCol;
      }
      v128.store(o0, c0); v128.store(o0, c1, 16);
    }
    for (; j + 4 <= vEnd; j += 4) {
      const cj = <usize>j;
      const o0 = po + cj * F32;
      let c0 = initVec(mode, o0, bias, cj);
      let pb = b + cj * F32;
      let pk = pa;
      for (let k: i32 = 0; k < K; k++) {
        c0 = madd(v128.load32_splat(pk), v128.load(pb), c0);
        pb += bRow;
        pk += aCol;
      }
      v128.store(o0, c0);
    }
    if (T > 0) rowTail(po, pa, b, bRow, aCol, bias, j, lastW, T, K, mode);
  }
}

/**
 * A 4-row panel's last vector tile (W = 8, 4 or 0 columns from column j) and its N % 4 tail
 * columns (T = 1..3) in one k loop. Each output keeps its own operations: the tile's columns
 * madd (fused in the relaxed build), the tail's a separate multiply and add, each summing its k
 * in order from its start, as the tile and scalar loops did apart; the tail runs on 4-row
 * vectors of one column (lanes = rows).
 */
// @ts-ignore: decorator
@inline
function panelTail(
  po: usize, pa: usize, b: usize, n: usize, bRow: usize, aRow: usize, aCol: usize, bias: usize,
  j: i32, W: i32, T: i32, K: i32, mode: i32,
): void {
  const cj = <usize>j, ct = cj + <usize>W;
  const o0 = po + cj * F32, o1 = o0 + n * F32, o2 = o1 + n * F32, o3 = o2 + n * F32;
  const zero = f32x4.splat(0);
  let c00 = zero, c01 = zero, c10 = zero, c11 = zero, c20 = zero, c21 = zero, c30 = zero, c31 = zero;
  if (W > 0) {
    c00 = initVec(mode, o0, bias, cj); c10 = initVec(mode, o1, bias, cj);
    c20 = initVec(mode, o2, bias, cj); c30 = initVec(mode, o3, bias, cj);
  }
  if (W > 4) {
    c01 = initVec(mode, o0 + 16, bias, cj + 4); c11 = initVec(mode, o1 + 16, bias, cj + 4);
    c21 = initVec(mode, o2 + 16, bias, cj + 4); c31 = initVec(mode, o3 + 16, bias, cj + 4);
  }
  const q0 = o0 + <usize>W * F32, q1 = o1 + <usize>W * F32, q2 = o2 + <usize>W * F32, q3 = o3 + <usize>W * F32;
  let t0 = tailInit(mode, q0, q1, q2, q3, bias, ct);
  let t1 = T > 1 ? tailInit(mode, q0 + 4, q1 + 4, q2 + 4, q3 + 4, bias, ct + 1) : zero;
  let t2 = T > 2 ? tailInit(mode, q0 + 8, q1 + 8, q2 + 8, q3 + 8, bias, ct + 2) : zero;
  let pb = b + cj * F32;
  const tb = <usize>W * F32;
  let pk = pa;
  for (let k: i32 = 0; k < K; k++) {
    const s0 = load<f32>(pk), s1 = load<f32>(pk + aRow), s2 = load<f32>(pk + 2 * aRow), s3 = load<f32>(pk + 3 * aRow);
    if (W > 0) {
      const b0 = v128.load(pb);
      const a0 = f32x4.splat(s0), a1 = f32x4.splat(s1), a2 = f32x4.splat(s2), a3 = f32x4.splat(s3);
      c00 = madd(a0, b0, c00); c10 = madd(a1, b0, c10); c20 = madd(a2, b0, c20); c30 = madd(a3, b0, c30);
      if (W > 4) {
        const b1 = v128.load(pb, 16);
        c01 = madd(a0, b1, c01); c11 = madd(a1, b1, c11); c21 = madd(a2, b1, c21); c31 = madd(a3, b1, c31);
      }
    }
    const av = f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(s0), 1, s1), 2, s2), 3, s3);
    t0 = f32x4.add(t0, f32x4.mul(av, v128.load32_splat(pb + tb)));
    if (T > 1) t1 = f32x4.add(t1, f32x4.mul(av, v128.load32_splat(pb + tb + 4)));
    if (T > 2) t2 = f32x4.add(t2, f32x4.mul(av, v128.load32_splat(pb + tb + 8)));
    pb += bRow;
    pk += aCol;
  }
  if (W > 0) { v128.store(o0, c00); v128.store(o1, c10); v128.store(o2, c20); v128.store(o3, c30); }
  if (W > 4) { v128.store(o0, c01, 16); v128.store(o1, c11, 16); v128.store(o2, c21, 16); v128.store(o3, c31, 16); }
  tailStore(t0, q0, q1, q2, q3);
  if (T > 1) tailStore(t1, q0 + 4, q1 + 4, q2 + 4, q3 + 4);
  if (T > 2) tailStore(t2, q0 + 8, q1 + 8, q2 + 8, q3 + 8);
}

/** One row's last vector tile (W columns from j) and its T tail columns (scalars) in one k loop, each output as before. */
// @ts-ignore: decorator
@inline
function rowTail(po: usize, pa: usize, b: usize, bRow: usize, aCol: usize, bias: usize, j: i32, W: i32, T: i32, K: i32, mode: i32): void {
  const cj = <usize>j, ct = cj + <usize>W;
  const o0 = po + cj * F32, q = po + ct * F32;
  const zero = f32x4.splat(0);
  let c0 = W > 0 ? initVec(mode, o0, bias, cj) : zero;
  let c1 = W > 4 ? initVec(mode, o0 + 16, bias, cj + 4) : zero;
  let s0 = initScalar(mode, q, bias, ct);
  let s1: f32 = T > 1 ? initScalar(mode, q + 4, bias, ct + 1) : 0;
  let s2: f32 = T > 2 ? initScalar(mode, q + 8, bias, ct + 2) : 0;
  let pb = b + cj * F32;
  const tb = <usize>W * F32;
  let pk = pa;
  for (let k: i32 = 0; k < K; k++) {
    const x = load<f32>(pk);
    if (W > 0) {
      const av = f32x4.splat(x);
      c0 = madd(av, v128.load(pb), c0);
      if (W > 4) c1 = madd(av, v128.load(pb, 16), c1);
    }
    s0 += x * load<f32>(pb + tb);
    if (T > 1) s1 += x * load<f32>(pb + tb + 4);
    if (T > 2) s2 += x * load<f32>(pb + tb + 8);
    pb += bRow;
    pk += aCol;
  }
  if (W > 0) v128.store(o0, c0);
  if (W > 4) v128.store(o0, c1, 16);
  store<f32>(q, s0);
  if (T > 1) store<f32>(q + 4, s1);
  if (T > 2) store<f32>(q + 8, s2);
}

/** The start of a tail column for 4 rows (lanes = rows): zero, the bias, or out's four values. */
// @ts-ignore: decorator
@inline
function tailInit(mode: i32, q0: usize, q1: usize, q2: usize, q3: usize, bias: usize, col: usize): v128 {
  if (mode == INIT_OUT) {
    return f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(load<f32>(q0)), 1, load<f32>(q1)), 2, load<f32>(q2)), 3, load<f32>(q3));
  }
  if (mode == INIT_BIAS) return v128.load32_splat(bias + col * F32);
  return f32x4.splat(0);
}

/** Writes a tail column's 4 rows back. */
// @ts-ignore: decorator
@inline
function tailStore(t: v128, q0: usize, q1: usize, q2: usize, q3: usize): void {
  store<f32>(q0, f32x4.extract_lane(t, 0)); store<f32>(q1, f32x4.extract_lane(t, 1));
  store<f32>(q2, f32x4.extract_lane(t, 2)); store<f32>(q3, f32x4.extract_lane(t, 3));
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
 * The linear layer's input gradient: dx[B,in] = dy[B,out] · W[out,in].
 */
export function matmul_nn(out: usize, a: usize, b: usize, M: i32, N: i32, K: i32, accumulate: i32): void {
  gemmCore(out, a, <usize>K, 1, b, <usize>N, <usize>N, 0, M, N, K, accumulate != 0 ? INIT_OUT : INIT_ZERO);
}

/**
 * out[M,N] (+)= a[K,M]^T · b[K,N]   (accumulate != 0: add into out)
 * The linear layer's weight gradient: dW[out,in] += dy[B,out]^T · x[B,in].
 */
export function matmul_tn(out: usize, a: usize, b: usize, M: i32, N: i32, K: i32, accumulate: i32): void {
  gemmCore(out, a, 1, <usize>M, b, <usize>N, <usize>N, 0, M, N, K, accumulate != 0 ? INIT_OUT : INIT_ZERO);
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
