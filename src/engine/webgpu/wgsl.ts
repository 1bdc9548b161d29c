/**
 * The WebGPU kernel set: WGSL compute shaders (as strings) for everything one training step
 * needs, each the twin of a WASM kernel (wasm/assembly/*.ts) with the same formula in the same
 * order of operations. Differences that WGSL forces, and why they stay inside SPEC's tolerance:
 *
 *  - no f64: the WASM losses accumulate in f64 and evaluate exp/log in f64 for cross-entropy
 *    and BCE; here everything is f32 (sums are tree reductions: error ~log2(n) ulp).
 *  - the GPU may contract a*b+c into one fused multiply-add (as the relaxed-SIMD build does).
 *  - transcendental built-ins (exp, log, sqrt) are a few ulp, not correctly rounded; tanh is
 *    computed here (Cephes tanhf) rather than by the built-in, which some drivers evaluate as
 *    (e^2x - 1) / (e^2x + 1) (NaN for large |x|, cancellation for small |x|).
 *  - NaN/Inf: WGSL lets implementations assume values are finite, so every finiteness test
 *    inspects the bits (bitcast), never x != x or x * 0.
 *
 * Layout rules shared by every kernel: storage buffers at bindings 0..k, the kernel's own
 * parameters (a uniform of 4-byte fields) at binding 16, the per-step scalars at binding 17.
 * Elementwise kernels run 256 invocations per workgroup over a grid-stride loop, so any
 * length works with a capped number of workgroups. Runtime-agnostic: plain strings.
 */

import { ACTIVATIONS } from "../layers/activations.js";

/**
 * The status words every step writes and reads back (one 32-byte readback per step):
 * 0 loss (f32), 1 fault bits (u32), 2 gradient norm (f32), 3 clip coefficient (f32),
 * 4 1/W of cross-entropy (f32), 5 validation loss (f32), 6 correct and 7 counted (u32, accuracy).
 */
export const STATUS = { loss: 0, fault: 1, norm: 2, coef: 3, invW: 4, valLoss: 5, correct: 6, counted: 7 } as const;
export const STATUS_BYTES = 32;
/** Fault bits, in the order the WASM backend checks them. */
export const FAULT = { loss: 1, grad: 2, norm: 4, weight: 8 } as const;

/** The STATUS slots and FAULT bits as WGSL constants (STATUS_LOSS, FAULT_WEIGHT, ...): one source for both sides. */
const STATUS_CONSTANTS = [
  ...Object.entries(STATUS).map(([k, v]) => `const STATUS_${k.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}: u32 = ${v}u;`),
  ...Object.entries(FAULT).map(([k, v]) => `const FAULT_${k.toUpperCase()}: u32 = ${v}u;`),
].join("\n");

/** Helpers every kernel may use. */
const PRELUDE = /* wgsl */ `
${STATUS_CONSTANTS}
fn finite32(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }
fn isnan32(x: f32) -> bool {
  let b = bitcast<u32>(x);
  return (b & 0x7f800000u) == 0x7f800000u && (b & 0x007fffffu) != 0u;
}
// a runtime NaN (a constant NaN is a shader-creation error in WGSL)
var<private> NAN_BITS: u32 = 0x7fc00000u;
fn nan32() -> f32 { return bitcast<f32>(NAN_BITS); }

// erf, Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): wasm/assembly/elementwise.ts erf32
fn erf32(x: f32) -> f32 {
  let ax = abs(x);
  let t = 1.0 / (0.3275911 * ax + 1.0);
  let r = (((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592;
  let y = 1.0 - r * t * exp(-x * x);
  return select(y, -y, x < 0.0);
}

// tanh (Cephes tanhf): a polynomial below 0.625, 1 - 2 / (e^2|x| + 1) above, +-1 from 9 on
fn tanh32(x: f32) -> f32 {
  let ax = abs(x);
  if (ax >= 9.0) { return select(1.0, -1.0, x < 0.0); }
  if (ax < 0.625) {
    let z = x * x;
    return ((((-5.70498872745e-3 * z + 2.06390887954e-2) * z - 5.37397155531e-2) * z + 1.33314422036e-1) * z - 3.33332819422e-1) * z * x + x;
  }
  let t = 1.0 - 2.0 / (exp(2.0 * ax) + 1.0);
  return select(t, -t, x < 0.0);
}

// 1 / (1 + e^-x) without overflowing e^-x
fn sigmoid32(x: f32) -> f32 {
  return 1.0 / (1.0 + exp(min(-x, 88.0)));
}

// MurmurHash3's 32-bit finaliser (dropout masks): wasm/assembly/elementwise.ts mix32
fn mix32(v: u32) -> u32 {
  var h = v;
  h = h ^ (h >> 16u);
  h = h * 0x85ebca6bu;
  h = h ^ (h >> 13u);
  h = h * 0xc2b2ae35u;
  h = h ^ (h >> 16u);
  return h;
}
`;

/** The per-step scalars (binding 17): written with queue.writeBuffer before each st. */
export const STEP_STRUCT = /* wgsl */ `
struct Step {
  seed: u32, clip: u32, u0: u32, u1: u32, u2: u32, u3: u32, pad0: u32, pad1: u32,
  a0: f32, a1: f32, a2: f32, a3: f32, a4: f32, a5: f32, a6: f32, a7: f32, a8: f32, a9: f32, a10: f32, a11: f32,
}
`;
/** Bytes of the Step struct's buffer (80 used, padded). */
export const STEP_BYTES = 256;

const GRID = /* wgsl */ `
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * 256u;
  for (var i = gid.x; i < p.n; i += stride) {
    body(i);
  }
}
`;

/** A workgroup-wide tree reduction of 256 values in `buffer`, combining with `combine(a, b)`. */
const reduction = (name: string, type: "f32" | "u32", buffer: string, combine: (a: string, b: string) => string) => `
fn ${name}(v: ${type}, tid: u32) -> ${type} {
  ${buffer}[tid] = v;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (tid < s) { ${buffer}[tid] = ${combine(`${buffer}[tid]`, `${buffer}[tid + s]`)}; }
    workgroupBarrier();
  }
  let r = ${buffer}[0];
  workgroupBarrier();
  return r;
}`;

/** One workgroup-wide sum / max of 256 values (call in uniform control flow). */
const REDUCE = /* wgsl */ `
var<workgroup> red: array<f32, 256>;
var<workgroup> redu: array<u32, 256>;
// NaN-propagating max (as f32x4.max)
fn max32(a: f32, b: f32) -> f32 {
  if (isnan32(a)) { return a; }
  if (isnan32(b)) { return b; }
  return select(b, a, a > b);
}
${reduction("wgSum", "f32", "red", (a, b) => `${a} + ${b}`)}
${reduction("wgMax", "f32", "red", (a, b) => `max32(${a}, ${b})`)}
${reduction("wgSumU", "u32", "redu", (a, b) => `${a} + ${b}`)}
`;

// ------------------------------------------------------------------ GEMM

/**
 * C[M,N] = init + A·B in the three layouts of a linear layer, tiled through workgroup memory:
 * a 16x16 workgroup computes a (16 TM) x (16 TN) tile of C, each invocation TM x TN outputs
 * (rows lid.y + 16 i, columns lid.x + 16 j), over K in slices of 16 staged in workgroup memory.
 * Every output accumulates k = 0, 1, ..., K-1 in order from its initial value, as the WASM
 * core does (zero padding past K adds exact zeros).
 *   LAYOUT 0 (NT, forward):   A = x[M,K] at aOff,  B(k,j) = W[j,k] (W [N,K] at bOff), INIT 2 adds bias
 *   LAYOUT 1 (NN, dX):        A = dy[M,K],         B = W[K,N]
 *   LAYOUT 2 (TN, dW):        A(i,k) = dy[k,i] (dy [K,M]), B = x[K,N], INIT 1 accumulates into C
 */
const GEMM = /* wgsl */ `
override LAYOUT: u32 = 0u;
override INIT: u32 = 0u;
override TM: u32 = 4u;
override TN: u32 = 4u;
struct P { M: u32, N: u32, K: u32, aOff: u32, bOff: u32, biasOff: u32, outOff: u32, pad: u32 }
@group(0) @binding(0) var<storage, read_write> C: array<f32>;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
const BK = 16u;
// [BK][BM + 1] and [BK][BN + 1]: the padding puts the 16 k-rows of a column in 16 different
// banks (the NT/NN loads write a column per 16 invocations)
var<workgroup> As: array<f32, 16u * (16u * TM + 1u)>;
var<workgroup> Bs: array<f32, 16u * (16u * TN + 1u)>;

fn loadA(m: u32, k: u32) -> f32 {
  if (m >= p.M || k >= p.K) { return 0.0; }
  if (LAYOUT == 2u) { return A[p.aOff + k * p.M + m]; }
  return A[p.aOff + m * p.K + k];
}
fn loadB(k: u32, n: u32) -> f32 {
  if (k >= p.K || n >= p.N) { return 0.0; }
  if (LAYOUT == 0u) { return B[p.bOff + n * p.K + k]; }
  return B[p.bOff + k * p.N + n];
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) tid: u32) {
  let BM = 16u * TM;
  let BN = 16u * TN;
  let SA = BM + 1u;
  let SB = BN + 1u;
  let row0 = wg.y * BM;
  let col0 = wg.x * BN;
  var acc: array<f32, 16>;
  for (var i = 0u; i < TM; i++) {
    for (var j = 0u; j < TN; j++) {
      let r = row0 + lid.y + 16u * i;
      let c = col0 + lid.x + 16u * j;
      var v = 0.0;
      if (r < p.M && c < p.N) {
        if (INIT == 1u) { v = C[p.outOff + r * p.N + c]; }
        if (INIT == 2u) { v = bias[p.biasOff + c]; }
      }
      acc[i * 4u + j] = v;
    }
  }
  let tiles = (p.K + BK - 1u) / BK;
  for (var t = 0u; t < tiles; t++) {
    let k0 = t * BK;
    for (var r = 0u; r < TM; r++) {
      let e = tid + r * 256u;
      if (LAYOUT == 2u) {
        let kk = e / BM; let m = e % BM;
        As[kk * SA + m] = loadA(row0 + m, k0 + kk);
      } else {
        let m = e / BK; let kk = e % BK;
        As[kk * SA + m] = loadA(row0 + m, k0 + kk);
      }
    }
    for (var r = 0u; r < TN; r++) {
      let e = tid + r * 256u;
      if (LAYOUT == 0u) {
        let n = e / BK; let kk = e % BK;
        Bs[kk * SB + n] = loadB(k0 + kk, col0 + n);
      } else {
        let kk = e / BN; let n = e % BN;
        Bs[kk * SB + n] = loadB(k0 + kk, col0 + n);
      }
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var i = 0u; i < TM; i++) { a[i] = As[kk * SA + lid.y + 16u * i]; }
      for (var j = 0u; j < TN; j++) { b[j] = Bs[kk * SB + lid.x + 16u * j]; }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) {
          acc[i * 4u + j] = acc[i * 4u + j] + a[i] * b[j];
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    for (var j = 0u; j < TN; j++) {
      let r = row0 + lid.y + 16u * i;
      let c = col0 + lid.x + 16u * j;
      if (r < p.M && c < p.N) { C[p.outOff + r * p.N + c] = acc[i * 4u + j]; }
    }
  }
}
`;

/**
 * The same product for small matrices: one invocation per output, k in order, no workgroup
 * memory and no barriers (which cost more than they save on a few thousand multiply-adds, and
 * dominate on software adapters). Bit-identical to GEMM: the same order of operations.
 */
const GEMM_SMALL = /* wgsl */ `
override LAYOUT: u32 = 0u;
override INIT: u32 = 0u;
struct P { M: u32, N: u32, K: u32, aOff: u32, bOff: u32, biasOff: u32, outOff: u32, pad: u32 }
@group(0) @binding(0) var<storage, read_write> C: array<f32>;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let total = p.M * p.N;
  for (var o = gid.x; o < total; o += nwg.x * 64u) {
    let r = o / p.N;
    let c = o - r * p.N;
    var acc = 0.0;
    if (INIT == 1u) { acc = C[p.outOff + o]; }
    if (INIT == 2u) { acc = bias[p.biasOff + c]; }
    for (var k = 0u; k < p.K; k++) {
      var a: f32;
      var b: f32;
      if (LAYOUT == 2u) { a = A[p.aOff + k * p.M + r]; } else { a = A[p.aOff + r * p.K + k]; }
      if (LAYOUT == 0u) { b = B[p.bOff + c * p.K + k]; } else { b = B[p.bOff + k * p.N + c]; }
      acc = acc + a * b;
    }
    C[p.outOff + o] = acc;
  }
}
`;

// ------------------------------------------------------------------ attention

/**
 * The batched GEMM over strided views of attention (the twin of matmul_strided, called per
 * sample and head there): for z < count (z = sample * heads + head h),
 *   C(i,j) (+)= sum_{r < sum} sum_k (alpha A_r(i,k)) B_r(k,j),  i < M, j < N, r then k in order,
 * where A_r and B_r belong to the source head hs = h * sum + r (sum = 1: hs = h; grouped-query
 * attention's dK and dV sum the query heads of a key/value head, as the WASM op accumulates them
 * one query head after another), X(r,c) at off + sample * xSample + floor(hs / xGroup) * xHead
 * + r * xrs + c * xcs (xGroup > 1: query heads reading their shared key/value head), and C
 * at cOff + sample * cSample + h * cHead + i * crs + j. alpha scales A's elements before the
 * product (q / sqrt(dh), as the WASM op packs Q^T). One invocation per output (x: grid-stride
 * over M*N; y: grid-stride over z); INIT 1 accumulates.
 */
const BGEMM = /* wgsl */ `
override INIT: u32 = 0u;
struct P {
  M: u32, N: u32, K: u32, count: u32, heads: u32, alpha: f32, sum: u32, pad0: u32,
  aOff: u32, ars: u32, acs: u32, aSample: u32, aHead: u32,
  bOff: u32, brs: u32, bcs: u32, bSample: u32, bHead: u32,
  cOff: u32, crs: u32, cSample: u32, cHead: u32, aGroup: u32, bGroup: u32,
}
@group(0) @binding(0) var<storage, read_write> C: array<f32>;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let total = p.M * p.N;
  for (var z = wg.y; z < p.count; z += nwg.y) {
    let s = z / p.heads;
    let h = z - s * p.heads;
    let c0 = p.cOff + s * p.cSample + h * p.cHead;
    for (var o = gid.x; o < total; o += nwg.x * 64u) {
      let i = o / p.N;
      let j = o - i * p.N;
      var acc = 0.0;
      if (INIT == 1u) { acc = C[c0 + i * p.crs + j]; }
      for (var r = 0u; r < p.sum; r++) {
        let hs = h * p.sum + r;
        let a0 = p.aOff + s * p.aSample + (hs / p.aGroup) * p.aHead;
        let b0 = p.bOff + s * p.bSample + (hs / p.bGroup) * p.bHead;
        for (var k = 0u; k < p.K; k++) {
          acc = acc + (p.alpha * A[a0 + i * p.ars + k * p.acs]) * B[b0 + k * p.brs + j * p.bcs];
        }
      }
      C[c0 + i * p.crs + j] = acc;
    }
  }
}
`;

/**
 * attention_softmax (wasm/assembly/attention.ts) over n = samples * heads * Tq rows of T scores
 * (the queries are the first Tq tokens; Tq = T but for a query subset), in place, one invocation
 * per row: softmax over the keys the query sees (mask[sample, j] != 0
 * when HAS_MASK; j <= i when CAUSAL), 0 for hidden keys, an all-zero row when it sees none.
 * exp is the kernel's Cephes polynomial (not the built-in, a few ulps off on some adapters), and
 * the sum runs in its four lanes then the tail, so only contraction into fma can differ.
 */
const ATTN_SOFTMAX = /* wgsl */ `
override HAS_MASK: bool = false;
override CAUSAL: bool = false;
struct P { n: u32, T: u32, heads: u32, Tq: u32 }
@group(0) @binding(0) var<storage, read_write> probs: array<f32>;
@group(0) @binding(1) var<storage, read> mask: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn visible(s: u32, j: u32) -> bool {
  if (HAS_MASK) { return mask[s * p.T + j] != 0.0; }
  return true;
}
// wasm/assembly/attention.ts exp4: e^x = 2^n e^r, n = round(x log2 e) (half to even),
// r = x - n ln 2 in two parts, e^r = 1 + r + r^2 P(r); 0 below -87.33654
fn expf(x: f32) -> f32 {
  if (x < -87.33654) { return 0.0; }
  let n = round(x * 1.44269504088896341);
  let r = (x - n * 0.693359375) - n * -2.12194440e-4;
  var y = 1.9875691500e-4 * r + 1.3981999507e-3;
  y = y * r + 8.3334519073e-3;
  y = y * r + 4.1665795894e-2;
  y = y * r + 1.6666665459e-1;
  y = y * r + 5.0000001201e-1;
  y = (y * (r * r) + r) + 1.0;
  return y * bitcast<f32>(u32(i32(n) + 127) << 23u);
}
fn body(r: u32) {
  // row r is query i (of the first Tq tokens) of head z; its T weights start at r T
  let T = p.T;
  let z = r / p.Tq;
  let i = r - z * p.Tq;
  let s = z / p.heads;
  let base = r * T;
  var n = T;
  if (CAUSAL) { n = min(i + 1u, T); }
  var m = 0.0;
  var any = false;
  for (var j = 0u; j < n; j++) {
    if (!visible(s, j)) { continue; }
    let v = probs[base + j];
    // NaN propagates, as torch's max
    if (!any || isnan32(v) || (!isnan32(m) && v > m)) { m = v; }
    any = true;
  }
  if (!any) {
    for (var j = 0u; j < T; j++) { probs[base + j] = 0.0; }
    return;
  }
  var lanes = vec4f(0.0);
  let body4 = n - n % 4u;
  for (var j = 0u; j < n; j++) {
    var e = 0.0;
    if (visible(s, j)) { e = expf(probs[base + j] - m); }
    probs[base + j] = e;
    if (j < body4) { lanes[j % 4u] = lanes[j % 4u] + e; }
  }
  var sum = (lanes.x + lanes.y) + (lanes.z + lanes.w);
  for (var j = body4; j < n; j++) { sum = sum + probs[base + j]; }
  let inv = 1.0 / sum;
  for (var j = 0u; j < n; j++) { probs[base + j] = probs[base + j] * inv; }
  for (var j = n; j < T; j++) { probs[base + j] = 0.0; }
}
${GRID}`;

/**
 * The scores' gradient of attention, in place over P, one invocation per row (sample s, head
 * h, query i; n = samples * heads * Tq rows, dO with Tq rows a sample): dP_ij = (dO_i . V_j) (times the dropout mask
 * when DROPOUT), r = sum_j dP_ij P_ij (four lanes then the tail, as the WASM kernel), then
 * P_ij <- scale * P_ij (dP_ij - r). V_j is row j of the key/value head floor(h / group) of the
 * value buffer: element (s, j, d) at vOff + (s T + j) vLd + floor(h / group) dh + d (packed:
 * columns D + Dkv.. of qkv; separate: v). The WASM op computes dP with matmul_strided and this
 * with attention_softmax_backward; here dP is recomputed on the second pass instead of stored.
 */
const ATTN_DSCORES = /* wgsl */ `
override DROPOUT: bool = false;
struct P { n: u32, T: u32, D: u32, heads: u32, dh: u32, scale: f32, vOff: u32, vLd: u32, group: u32, Tq: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read_write> probs: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> vals: array<f32>;
@group(0) @binding(3) var<storage, read> dmask: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn dp(r: u32, s: u32, h: u32, i: u32, j: u32) -> f32 {
  let o = (s * p.Tq + i) * p.D + h * p.dh;
  let v = p.vOff + (s * p.T + j) * p.vLd + (h / p.group) * p.dh;
  var acc = 0.0;
  for (var d = 0u; d < p.dh; d++) { acc = acc + dout[o + d] * vals[v + d]; }
  if (DROPOUT) { acc = acc * dmask[r * p.T + j]; }
  return acc;
}
fn body(r: u32) {
  // row r is query i (of the first Tq tokens) of head h of sample s; dO has Tq rows a sample
  let T = p.T;
  let z = r / p.Tq;
  let i = r - z * p.Tq;
  let s = z / p.heads;
  let h = z - s * p.heads;
  let base = r * T;
  var lanes = vec4f(0.0);
  let body4 = T - T % 4u;
  for (var j = 0u; j < body4; j++) { lanes[j % 4u] = lanes[j % 4u] + dp(r, s, h, i, j) * probs[base + j]; }
  var rs = (lanes.x + lanes.y) + (lanes.z + lanes.w);
  for (var j = body4; j < T; j++) { rs = rs + dp(r, s, h, i, j) * probs[base + j]; }
  for (var j = 0u; j < T; j++) {
    let pj = probs[base + j];
    probs[base + j] = pj * (dp(r, s, h, i, j) - rs) * p.scale;
  }
}
${GRID}`;

/**
 * RoPE (wasm/assembly/rope.ts rope), one invocation per rotated pair: e = ((sample T + t) heads
 * + h) half + i over n = rows * T * heads * half, table = cos [T, half] then sin [T, half] (the
 * op uploads it, computed on the CPU as rope_table does: WGSL's cos and sin are inaccurate for
 * large arguments); sign -1 is the backward. out = x1 c - x2 s, x2 c + x1 s (the GPU may fuse).
 */
const ROPE = /* wgsl */ `
struct P { n: u32, T: u32, heads: u32, half: u32, sign: f32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(e: u32) {
  let row = e / p.half;
  let i = e - row * p.half;
  let t = (row / p.heads) % p.T;
  let x = row * 2u * p.half + i;
  let c = table[t * p.half + i];
  let s = table[(p.T + t) * p.half + i] * p.sign;
  let x1 = inp[x];
  let x2 = inp[x + p.half];
  dst[x] = x1 * c - x2 * s;
  dst[x + p.half] = x2 * c + x1 * s;
}
${GRID}`;

// ------------------------------------------------------------------ elementwise

/** dbias[off + c] += sum_r dout[r, c], rows in order (one invocation per column). */
const BIAS_GRAD = /* wgsl */ `
struct P { n: u32, rows: u32, off: u32, pad: u32 }
@group(0) @binding(0) var<storage, read_write> dbias: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(c: u32) {
  var s = dbias[p.off + c];
  for (var r = 0u; r < p.rows; r++) { s = s + dout[r * p.n + c]; }
  dbias[p.off + c] = s;
}
${GRID}`;

/** Activation constants of wasm/assembly/elementwise.ts. */
const ACT_CONSTANTS = /* wgsl */ `
// log(1 + e^x) (softplus), accurate where 1 + e^x rounds (x below -16) and x itself from 20 on
fn softplus32(x: f32) -> f32 {
  if (x > 20.0) { return x; }
  let e = exp(x);
  let u = 1.0 + e;
  if (u == 1.0) { return e; }
  return log(u) * e / (u - 1.0);
}
const SQRT1_2: f32 = 0.7071067811865476;
const INV_SQRT_2PI: f32 = 0.3989422804014327;
const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const GELU_KAPPA: f32 = 0.044715;
`;

/** Activation kinds: the ACT override of act_forward / act_backward is the code of layers/activations.ts. */
export const ACT = Object.fromEntries(Object.entries(ACTIVATIONS).map(([name, a]) => [name, a.code])) as {
  readonly [K in keyof typeof ACTIVATIONS]: (typeof ACTIVATIONS)[K]["code"];
};

/** WGSL "const ACT_NAME: u32 = code;" for every activation, so the switches below read as the table. */
const ACT_CODES = Object.entries(ACT)
  .map(([name, code]) => `const ACT_${name.toUpperCase()}: u32 = ${code}u;`)
  .join("\n");

/** out = act(inp). */
const ACT_FORWARD = /* wgsl */ `
override ACT: u32 = 0u;
struct P { n: u32, slope: f32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
${ACT_CONSTANTS}
${ACT_CODES}
fn body(i: u32) {
  let x = inp[i];
  var y: f32;
  switch ACT {
    case ACT_RELU: { y = select(0.0, x, x > 0.0 || isnan32(x)); }
    case ACT_LEAKY_RELU: { y = select(x * p.slope, x, x > 0.0); }
    case ACT_GELU: { y = x * 0.5 * (1.0 + erf32(x * SQRT1_2)); }
    case ACT_GELU_TANH: {
      let inner = SQRT_2_OVER_PI * (x + GELU_KAPPA * x * x * x);
      y = 0.5 * x * (1.0 + tanh32(inner));
    }
    case ACT_TANH: { y = tanh32(x); }
    case ACT_SIGMOID: { y = sigmoid32(x); }
    case ACT_SILU: { y = x / (1.0 + exp(min(-x, 88.0))); }
    case ACT_MISH: { y = x * tanh32(softplus32(x)); }
    default: { y = nan32(); }
  }
  dst[i] = y;
}
${GRID}`;

/** dinp = dout * act'(.), from the activation's input or output, whichever act' reads. */
const ACT_BACKWARD = /* wgsl */ `
override ACT: u32 = 0u;
struct P { n: u32, slope: f32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read_write> dinp: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> inp: array<f32>;
@group(0) @binding(3) var<storage, read> out: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
${ACT_CONSTANTS}
${ACT_CODES}
fn body(i: u32) {
  let g = dout[i];
  var d: f32;
  switch ACT {
    case ACT_RELU: { d = select(0.0, g, out[i] > 0.0); }
    case ACT_LEAKY_RELU: { d = select(g * p.slope, g, inp[i] > 0.0); }
    case ACT_GELU: {
      let x = inp[i];
      let cdf = 0.5 * (1.0 + erf32(x * SQRT1_2));
      let pdf = INV_SQRT_2PI * exp(-0.5 * x * x);
      d = g * (cdf + x * pdf);
    }
    case ACT_GELU_TANH: {
      let x = inp[i];
      let xSq = x * x;
      let inner = SQRT_2_OVER_PI * (x + GELU_KAPPA * xSq * x);
      let th = tanh32(inner);
      let left = 0.5 * x;
      let right = 1.0 + th;
      let leftDerivative = 0.5 * right;
      let rightDerivative = left * (1.0 - th * th) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_KAPPA * xSq);
      d = g * (leftDerivative + rightDerivative);
    }
    case ACT_TANH: { let y = out[i]; d = g * (1.0 - y * y); }
    case ACT_SIGMOID: { let y = out[i]; d = g * (1.0 - y) * y; }
    case ACT_SILU: {
      let x = inp[i];
      let s = 1.0 / (1.0 + exp(min(-x, 88.0)));
      d = g * s * (1.0 + x * (1.0 - s));
    }
    case ACT_MISH: {
      let x = inp[i];
      let sg = 1.0 / (1.0 + exp(min(-x, 88.0)));
      let t = tanh32(softplus32(x));
      d = g * (t + x * sg * (1.0 - t * t));
    }
    default: { d = nan32(); }
  }
  dinp[i] = d;
}
${GRID}`;

/**
 * Dropout: mask = 1/(1-p) or 0 from the counter-based hash of (seed, i) of the WASM kernel
 * (the same masks bit for bit); out = inp * mask. The layer's seed is st.seed + salt.
 */
const DROPOUT = /* wgsl */ `
struct P { n: u32, threshold: u32, scale: f32, salt: u32 }
${STEP_STRUCT}
@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@group(0) @binding(1) var<storage, read_write> mask: array<f32>;
@group(0) @binding(2) var<storage, read> inp: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
@group(0) @binding(17) var<uniform> st: Step;
fn body(i: u32) {
  let seed = st.seed + p.salt;
  let u = mix32(mix32(seed ^ 0x9e3779b9u) + i * 0x9e3779b9u) >> 8u;
  let m = select(0.0, p.scale, u >= p.threshold);
  mask[i] = m;
  dst[i] = inp[i] * m;
}
${GRID}`;

/** out = a * b (dropout backward). */
const MUL = /* wgsl */ `
struct P { n: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(i: u32) { dst[i] = a[i] * b[i]; }
${GRID}`;

/** out = a + s b (residual connections: s = 1, exact; a LoRA sum: s = scaling). */
const ADD = /* wgsl */ `
struct P { n: u32, s: f32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(i: u32) { dst[i] = a[i] + b[i] * p.s; }
${GRID}`;

/** dst += x (a value's gradient summed over the ops that read it). */
const ACCUMULATE = /* wgsl */ `
struct P { n: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(i: u32) { dst[i] = dst[i] + x[i]; }
${GRID}`;

/** dst[outOff + i] = inp[inOff + i]. */
const COPY = /* wgsl */ `
struct P { n: u32, outOff: u32, inOff: u32, pad: u32 }
@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(i: u32) { dst[p.outOff + i] = inp[p.inOff + i]; }
${GRID}`;

/** out = value. */
const FILL = /* wgsl */ `
struct P { n: u32, value: f32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(i: u32) { dst[i] = p.value; }
${GRID}`;

/** x *= s. */
const SCALE = /* wgsl */ `
struct P { n: u32, s: f32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(i: u32) { x[i] = x[i] * p.s; }
${GRID}`;

/** dst[r, c] = src[idx[r], c] over n = rows * cols elements. */
const GATHER = /* wgsl */ `
struct P { n: u32, cols: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(i: u32) {
  let r = i / p.cols;
  let c = i - r * p.cols;
  dst[i] = src[idx[r] * p.cols + c];
}
${GRID}`;

// ------------------------------------------------------------------ tokens (wasm/assembly/tokens.ts)

/** out[t, j] = state[off + ids[t] * dim + j] over n = tokens * dim elements (nn.Embedding). */
const EMBEDDING_FORWARD = /* wgsl */ `
struct P { n: u32, dim: u32, off: u32, pad: u32 }
@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@group(0) @binding(1) var<storage, read> state: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(i: u32) {
  let t = i / p.dim;
  let j = i - t * p.dim;
  dst[i] = state[p.off + u32(ids[t]) * p.dim + j];
}
${GRID}`;

// ------------------------------------------------------------------ convolution and pooling

/**
 * The geometry of a convolution (the twin of ops/conv.ts): images x[rows, C, H, W], outputs
 * [rows, O, OH, OW], weight [O, C/G, KH, KW] at wOff and bias at bOff in the state (or their
 * gradients in grads). Signed coordinates: rows oh*SH - PH + kh*DH may fall in the padding.
 */
const CONV_PARAMS = /* wgsl */ `
struct P {
  n: u32, C: u32, H: u32, W: u32, KH: u32, KW: u32, SH: u32, SW: u32,
  PH: u32, PW: u32, DH: u32, DW: u32, OH: u32, OW: u32, O: u32, G: u32,
  wOff: u32, bOff: u32, hasBias: u32, rows: u32,
}
@group(0) @binding(16) var<uniform> p: P;
fn inImage(ih: i32, iw: i32) -> bool { return ih >= 0 && ih < i32(p.H) && iw >= 0 && iw < i32(p.W); }
`;

/**
 * Convolution forward, one invocation per output: bias, then the taps in the column matrix's
 * order (c, kh, kw) with zeros for the padding, as im2col + the GEMM accumulate them.
 */
const CONV_FORWARD = /* wgsl */ `
${CONV_PARAMS}
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> state: array<f32>;
fn body(i: u32) {
  let ow = i % p.OW;
  var t = i / p.OW;
  let oh = t % p.OH;
  t = t / p.OH;
  let o = t % p.O;
  let nn = t / p.O;
  let Cg = p.C / p.G;
  let c0 = (o / (p.O / p.G)) * Cg;
  var acc = 0.0;
  if (p.hasBias != 0u) { acc = state[p.bOff + o]; }
  for (var c = 0u; c < Cg; c++) {
    let img = (nn * p.C + c0 + c) * p.H * p.W;
    for (var kh = 0u; kh < p.KH; kh++) {
      let ih = i32(oh * p.SH + kh * p.DH) - i32(p.PH);
      for (var kw = 0u; kw < p.KW; kw++) {
        let iw = i32(ow * p.SW + kw * p.DW) - i32(p.PW);
        var xv = 0.0;
        if (inImage(ih, iw)) { xv = x[img + u32(ih) * p.W + u32(iw)]; }
        acc = acc + state[p.wOff + ((o * Cg + c) * p.KH + kh) * p.KW + kw] * xv;
      }
    }
  }
  out[i] = acc;
}
${GRID}`;

/**
 * grads[off + ids[t] * dim + j] += dout[t, j] for t in token order, skipping padding_idx (-1:
 * none): one invocation per column j, so each element sums in the WASM kernel's order.
 */
const EMBEDDING_BACKWARD = /* wgsl */ `
struct P { n: u32, tokens: u32, off: u32, padding: i32 }
@group(0) @binding(0) var<storage, read_write> grads: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(j: u32) {
  for (var t = 0u; t < p.tokens; t++) {
    let id = i32(ids[t]);
    if (id == p.padding) { continue; }
    let k = p.off + u32(id) * p.n + j;
    grads[k] = grads[k] + dout[t * p.n + j];
  }
}
${GRID}`;

/** out[r, c] = inp[r, c] + state[off + c] over n = rows * cols elements (x + weight[:T]). */
const ADD_BROADCAST = /* wgsl */ `
struct P { n: u32, cols: u32, off: u32, pad: u32 }
@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> state: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(i: u32) { dst[i] = inp[i] + state[p.off + i % p.cols]; }
${GRID}`;

/** The pooling modes of the token_pool kernels (layers/tokens.ts POOL_MODES). */
const POOL_COMMON = /* wgsl */ `
struct P { n: u32, T: u32, D: u32, mode: u32, masked: u32, pad0: u32, pad1: u32, pad2: u32 }
const POOL_MEAN: u32 = 0u;
const POOL_MAX: u32 = 1u;
const POOL_CLS: u32 = 2u;
fn counts(r: u32, t: u32) -> bool { return p.masked == 0u || mask[r * p.T + t] != 0.0; }
fn count_valid(r: u32) -> u32 {
  var c = 0u;
  for (var t = 0u; t < p.T; t++) { if (counts(r, t)) { c++; } }
  return c;
}
// cls: token 0; last: the last token with mask 1 (T - 1 without a mask; 0 when none has)
fn selected(r: u32) -> u32 {
  if (p.mode == POOL_CLS) { return 0u; }
  for (var t = i32(p.T) - 1; t >= 0; t--) { if (counts(r, u32(t))) { return u32(t); } }
  return 0u;
}
`;

/** out[r, d] = the pooled tokens of x[r] (one invocation per (r, d)); max writes argmax[r, d]. */
const TOKEN_POOL_FORWARD = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@group(0) @binding(1) var<storage, read_write> argmax: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> mask: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
${POOL_COMMON}
// -Infinity, a max over no token (a constant infinity is a shader-creation error in WGSL)
var<private> NEG_INF_BITS: u32 = 0xff800000u;
fn body(i: u32) {
  let r = i / p.D;
  let d = i - r * p.D;
  let base = r * p.T * p.D + d;
  if (p.mode == POOL_MEAN) {
    var s = 0.0;
    for (var t = 0u; t < p.T; t++) { if (counts(r, t)) { s = s + x[base + t * p.D]; } }
    dst[i] = s / f32(count_valid(r));
  } else if (p.mode == POOL_MAX) {
    // ties keep the first maximum; a NaN is taken (torch.max propagates it)
    var best = 0.0;
    var at = -1;
    for (var t = 0u; t < p.T; t++) {
      if (!counts(r, t)) { continue; }
      let v = x[base + t * p.D];
      if (at < 0 || v > best || (isnan32(v) && !isnan32(best))) {
        best = v;
        at = i32(t);
      }
    }
    dst[i] = select(best, bitcast<f32>(NEG_INF_BITS), at < 0);
    argmax[i] = f32(at);
  } else {
    dst[i] = x[base + selected(r) * p.D];
  }
}
${GRID}`;

/** dx[r, t, d] = the pooling's gradient, every element written (one invocation per element). */
const TOKEN_POOL_BACKWARD = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> dx: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> argmax: array<f32>;
@group(0) @binding(3) var<storage, read> mask: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
${POOL_COMMON}
fn body(i: u32) {
  let d = i % p.D;
  let rt = i / p.D;
  let t = rt % p.T;
  let r = rt / p.T;
  let g = dout[r * p.D + d];
  var v = 0.0;
  if (p.mode == POOL_MEAN) {
    if (counts(r, t)) { v = g / f32(count_valid(r)); }
  } else if (p.mode == POOL_MAX) {
    if (i32(argmax[r * p.D + d]) == i32(t)) { v = g; }
  } else if (selected(r) == t) {
    v = g;
  }
  dx[i] = v;
}
${GRID}`;

/**
 * Convolution input gradient, one invocation per input element (n = rows*C*H*W): for each tap
 * (kh, kw) that reads it, the column-matrix entry sum_o W(o, c, kh, kw) dy(o, oh, ow) (o in
 * order from 0, as the dcol GEMM), added in (kh, kw) order as col2im adds them.
 */
const CONV_BACKWARD_INPUT = /* wgsl */ `
${CONV_PARAMS}
@group(0) @binding(0) var<storage, read_write> dx: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> state: array<f32>;
fn body(i: u32) {
  let iw = i % p.W;
  var t = i / p.W;
  let ih = t % p.H;
  t = t / p.H;
  let c = t % p.C;
  let nn = t / p.C;
  let Cg = p.C / p.G;
  let Og = p.O / p.G;
  let o0 = (c / Cg) * Og;
  let cl = c % Cg;
  var acc = 0.0;
  for (var kh = 0u; kh < p.KH; kh++) {
    let th = i32(ih + p.PH) - i32(kh * p.DH);
    if (th < 0 || th % i32(p.SH) != 0) { continue; }
    let oh = u32(th) / p.SH;
    if (oh >= p.OH) { continue; }
    for (var kw = 0u; kw < p.KW; kw++) {
      let tw = i32(iw + p.PW) - i32(kw * p.DW);
      if (tw < 0 || tw % i32(p.SW) != 0) { continue; }
      let ow = u32(tw) / p.SW;
      if (ow >= p.OW) { continue; }
      var d = 0.0;
      for (var og = 0u; og < Og; og++) {
        let o = o0 + og;
        d = d + state[p.wOff + ((o * Cg + cl) * p.KH + kh) * p.KW + kw] * dy[((nn * p.O + o) * p.OH + oh) * p.OW + ow];
      }
      acc = acc + d;
    }
  }
  dx[i] = acc;
}
${GRID}`;

/**
 * Convolution weight gradient, one invocation per weight element (n = O*C/G*KH*KW): dW +=
 * dy(n, o, l) * tap(n, l) over samples, then output positions, in order (the WASM GEMMs'
 * order: one accumulation chain from the old dW).
 */
const CONV_BACKWARD_WEIGHT = /* wgsl */ `
${CONV_PARAMS}
@group(0) @binding(0) var<storage, read_write> grads: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
fn body(i: u32) {
  let kw = i % p.KW;
  var t = i / p.KW;
  let kh = t % p.KH;
  t = t / p.KH;
  let Cg = p.C / p.G;
  let cl = t % Cg;
  let o = t / Cg;
  let c = (o / (p.O / p.G)) * Cg + cl;
  var acc = grads[p.wOff + i];
  for (var nn = 0u; nn < p.rows; nn++) {
    let img = (nn * p.C + c) * p.H * p.W;
    let g = (nn * p.O + o) * p.OH * p.OW;
    for (var oh = 0u; oh < p.OH; oh++) {
      let ih = i32(oh * p.SH + kh * p.DH) - i32(p.PH);
      for (var ow = 0u; ow < p.OW; ow++) {
        let iw = i32(ow * p.SW + kw * p.DW) - i32(p.PW);
        var xv = 0.0;
        if (inImage(ih, iw)) { xv = x[img + u32(ih) * p.W + u32(iw)]; }
        acc = acc + dy[g + oh * p.OW + ow] * xv;
      }
    }
  }
  grads[p.wOff + i] = acc;
}
${GRID}`;

/**
 * Convolution bias gradient, one invocation per channel (n = O): per sample four lane sums over
 * the positions, (l0 + l1) + (l2 + l3), the tail, then into the gradient (conv_bias_backward's order).
 */
const CONV_BIAS_GRAD = /* wgsl */ `
${CONV_PARAMS}
@group(0) @binding(0) var<storage, read_write> grads: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
fn body(o: u32) {
  let L = p.OH * p.OW;
  let L4 = L - L % 4u;
  var s = grads[p.bOff + o];
  for (var nn = 0u; nn < p.rows; nn++) {
    let base = (nn * p.O + o) * L;
    var l0 = 0.0; var l1 = 0.0; var l2 = 0.0; var l3 = 0.0;
    for (var l = 0u; l < L4; l += 4u) {
      l0 = l0 + dy[base + l];
      l1 = l1 + dy[base + l + 1u];
      l2 = l2 + dy[base + l + 2u];
      l3 = l3 + dy[base + l + 3u];
    }
    var r = (l0 + l1) + (l2 + l3);
    for (var l = L4; l < L; l++) { r = r + dy[base + l]; }
    s = s + r;
  }
  grads[p.bOff + o] = s;
}
${GRID}`;

/** Pooling over planes [planes, H, W] (wasm/assembly/pool.ts); divisor 0: none. */
const POOL_PARAMS = /* wgsl */ `
struct P {
  n: u32, planes: u32, H: u32, W: u32, KH: u32, KW: u32, SH: u32, SW: u32,
  PH: u32, PW: u32, DH: u32, DW: u32, OH: u32, OW: u32, countIncludePad: u32, divisor: u32,
}
@group(0) @binding(16) var<uniform> p: P;
// ceil(a / b) for b > 0 (i32 division truncates toward zero)
fn ceilDiv(a: i32, b: i32) -> i32 {
  if (a >= 0) { return (a + b - 1) / b; }
  return -((-a) / b);
}
`;

/**
 * Max pooling forward, one invocation per output: taps from the first inside the image by
 * dilation steps; a tap replaces the max when it is larger or NaN (a NaN max is only replaced
 * by a later NaN: tested on the bits, never by comparing with a NaN).
 */
const MAX_POOL_FORWARD = /* wgsl */ `
${POOL_PARAMS}
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> indices: array<i32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
var<private> NEG_INF_BITS: u32 = 0xff800000u;
fn body(i: u32) {
  let ow = i % p.OW;
  let t = i / p.OW;
  let oh = t % p.OH;
  let img = (t / p.OH) * p.H * p.W;
  var ih0 = i32(oh * p.SH) - i32(p.PH);
  var iw0 = i32(ow * p.SW) - i32(p.PW);
  let ih1 = min(ih0 + i32((p.KH - 1u) * p.DH + 1u), i32(p.H));
  let iw1 = min(iw0 + i32((p.KW - 1u) * p.DW + 1u), i32(p.W));
  while (ih0 < 0) { ih0 += i32(p.DH); }
  while (iw0 < 0) { iw0 += i32(p.DW); }
  var best = bitcast<f32>(NEG_INF_BITS);
  var at = ih0 * i32(p.W) + iw0;
  for (var ih = ih0; ih < ih1; ih += i32(p.DH)) {
    for (var iw = iw0; iw < iw1; iw += i32(p.DW)) {
      let index = ih * i32(p.W) + iw;
      let v = x[img + u32(index)];
      if (isnan32(v) || (!isnan32(best) && v > best)) {
        best = v;
        at = index;
      }
    }
  }
  out[i] = best;
  indices[i] = at;
}
${GRID}`;

/**
 * Max pooling backward, one invocation per input element: the gradients of the outputs whose
 * argmax it is, in output order (the WASM kernel's scatter order), from 0.
 */
const MAX_POOL_BACKWARD = /* wgsl */ `
${POOL_PARAMS}
@group(0) @binding(0) var<storage, read_write> dx: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> indices: array<i32>;
fn body(i: u32) {
  let iw = i % p.W;
  let t = i / p.W;
  let ih = t % p.H;
  let plane = t / p.H;
  let top = i32(ih + p.PH);
  let left = i32(iw + p.PW);
  let oh0 = max(0, ceilDiv(top - i32((p.KH - 1u) * p.DH), i32(p.SH)));
  let oh1 = min(i32(p.OH) - 1, top / i32(p.SH));
  let ow0 = max(0, ceilDiv(left - i32((p.KW - 1u) * p.DW), i32(p.SW)));
  let ow1 = min(i32(p.OW) - 1, left / i32(p.SW));
  let me = i32(ih * p.W + iw);
  var acc = 0.0;
  for (var oh = oh0; oh <= oh1; oh++) {
    for (var ow = ow0; ow <= ow1; ow++) {
      let e = (plane * p.OH + u32(oh)) * p.OW + u32(ow);
      if (indices[e] == me) { acc = acc + dy[e]; }
    }
  }
  dx[i] = acc;
}
${GRID}`;

/**
 * The window of output (oh, ow) of average pooling, cut to the image, and its divisor:
 * ADAPTIVE 0 is nn.AvgPool2d (padded size at H + PH, count_include_pad, divisor_override),
 * ADAPTIVE 1 nn.AdaptiveAvgPool2d ([floor(o I / O), ceil((o + 1) I / O)), divided by kh then kw).
 */
const AVG_WINDOW = /* wgsl */ `
override ADAPTIVE: bool = false;
struct Window { h0: i32, h1: i32, w0: i32, w1: i32, divisor: f32 }
fn avgWindow(oh: u32, ow: u32) -> Window {
  var w: Window;
  if (ADAPTIVE) {
    w.h0 = i32((oh * p.H) / p.OH);
    w.h1 = i32(((oh + 1u) * p.H + p.OH - 1u) / p.OH);
    w.w0 = i32((ow * p.W) / p.OW);
    w.w1 = i32(((ow + 1u) * p.W + p.OW - 1u) / p.OW);
    return w;
  }
  let hs = i32(oh * p.SH) - i32(p.PH);
  let ws = i32(ow * p.SW) - i32(p.PW);
  let he = min(hs + i32(p.KH), i32(p.H + p.PH));
  let we = min(ws + i32(p.KW), i32(p.W + p.PW));
  let poolSize = (he - hs) * (we - ws);
  w.h0 = max(hs, 0);
  w.w0 = max(ws, 0);
  w.h1 = min(he, i32(p.H));
  w.w1 = min(we, i32(p.W));
  if (p.divisor != 0u) { w.divisor = f32(p.divisor); }
  else if (p.countIncludePad != 0u) { w.divisor = f32(poolSize); }
  else { w.divisor = f32((w.h1 - w.h0) * (w.w1 - w.w0)); }
  return w;
}
fn mean(s: f32, w: Window) -> f32 {
  if (ADAPTIVE) { return s / f32(w.h1 - w.h0) / f32(w.w1 - w.w0); }
  return s / w.divisor;
}
`;

/** Average pooling forward, one invocation per output: the taps in row-major order, then the division. */
const AVG_POOL_FORWARD = /* wgsl */ `
${POOL_PARAMS}
${AVG_WINDOW}
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
fn body(i: u32) {
  let ow = i % p.OW;
  let t = i / p.OW;
  let oh = t % p.OH;
  let img = (t / p.OH) * p.H * p.W;
  let w = avgWindow(oh, ow);
  var s = 0.0;
  if (w.h0 < w.h1 && w.w0 < w.w1) {
    for (var ih = w.h0; ih < w.h1; ih++) {
      for (var iw = w.w0; iw < w.w1; iw++) { s = s + x[img + u32(ih) * p.W + u32(iw)]; }
    }
    s = mean(s, w);
  }
  out[i] = s;
}
${GRID}`;

/**
 * Average pooling backward, one invocation per input element: dy / divisor of every output
 * whose window holds it, in output order, from 0.
 */
const AVG_POOL_BACKWARD = /* wgsl */ `
${POOL_PARAMS}
${AVG_WINDOW}
@group(0) @binding(0) var<storage, read_write> dx: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
fn body(i: u32) {
  let iw = i % p.W;
  let t = i / p.W;
  let ih = t % p.H;
  let plane = t / p.H;
  // the outputs whose window can hold (ih, iw)
  var oh0: i32; var oh1: i32; var ow0: i32; var ow1: i32;
  if (ADAPTIVE) {
    oh0 = i32((ih * p.OH) / p.H);
    oh1 = i32(((ih + 1u) * p.OH + p.H - 1u) / p.H) - 1;
    ow0 = i32((iw * p.OW) / p.W);
    ow1 = i32(((iw + 1u) * p.OW + p.W - 1u) / p.W) - 1;
  } else {
    oh0 = ceilDiv(i32(ih + p.PH) - i32(p.KH) + 1, i32(p.SH));
    oh1 = i32(ih + p.PH) / i32(p.SH);
    ow0 = ceilDiv(i32(iw + p.PW) - i32(p.KW) + 1, i32(p.SW));
    ow1 = i32(iw + p.PW) / i32(p.SW);
  }
  oh0 = max(oh0, 0);
  ow0 = max(ow0, 0);
  oh1 = min(oh1, i32(p.OH) - 1);
  ow1 = min(ow1, i32(p.OW) - 1);
  var acc = 0.0;
  for (var oh = oh0; oh <= oh1; oh++) {
    for (var ow = ow0; ow <= ow1; ow++) {
      let w = avgWindow(u32(oh), u32(ow));
      if (i32(ih) >= w.h0 && i32(ih) < w.h1 && i32(iw) >= w.w0 && i32(iw) < w.w1) {
        acc = acc + mean(dy[(plane * p.OH + u32(oh)) * p.OW + u32(ow)], w);
      }
    }
  }
  dx[i] = acc;
}
${GRID}`;

// ------------------------------------------------------------------ checks and norms

/** status[1] |= bit when any x[off + i] is not finite (bits, not arithmetic). */
const ALL_FINITE = /* wgsl */ `
struct P { n: u32, bit: u32, off: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> status: array<atomic<u32>>;
@group(0) @binding(16) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * 256u;
  var bad = false;
  for (var i = gid.x; i < p.n; i += stride) {
    if (!finite32(x[p.off + i])) { bad = true; }
  }
  if (bad) { atomicOr(&status[STATUS_FAULT], p.bit); }
}
`;

/** Norm kinds (the NORM override): sum x^2, max |x|, sum |x|^p, sum |x|. */
export const NORM = { sumSquares: 0, maxAbs: 1, sumAbsPow: 2, sumAbs: 3 } as const;

/** One partial per workgroup: partials[wg] = sum x^2 | max |x| | sum |x|^p | sum |x|. */
const NORM_PARTIAL = /* wgsl */ `
override NORM: u32 = 0u;
struct P { n: u32, pw: f32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
${REDUCE}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3u) {
  let stride = nwg.x * 256u;
  var s = 0.0;
  for (var i = gid.x; i < p.n; i += stride) {
    let v = x[i];
    switch NORM {
      case 0u: { s = s + v * v; }
      case 1u: { s = max32(s, abs(v)); }
      case 2u: { let a = abs(v); if (a > 0.0) { s = s + pow(a, p.pw); } }
      default: { s = s + abs(v); }
    }
  }
  var r: f32;
  if (NORM == 1u) { r = wgMax(s, tid); } else { r = wgSum(s, tid); }
  if (tid == 0u) { partials[wg.x] = r; }
}
`;

/**
 * The global norm from the partials, then clip_grad_norm_'s coefficient, on the GPU so the
 * update needs no round trip: norm = sqrt(sum) | max | sum^(1/p); coef = min(max_norm /
 * (norm + 1e-6), 1) (0 for an infinite norm, as torch); fault bit 4 when the norm is not
 * finite and error_if_nonfinite is set.
 */
const NORM_FINAL = /* wgsl */ `
override NORM: u32 = 0u;
struct P { count: u32, maxNorm: f32, invP: f32, errorIfNonfinite: u32 }
@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> status: array<u32>;
@group(0) @binding(16) var<uniform> p: P;
${REDUCE}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) tid: u32) {
  var s = 0.0;
  for (var i = tid; i < p.count; i += 256u) {
    if (NORM == 1u) { s = max32(s, partials[i]); } else { s = s + partials[i]; }
  }
  var total: f32;
  if (NORM == 1u) { total = wgMax(s, tid); } else { total = wgSum(s, tid); }
  if (tid == 0u) {
    var norm = total;
    if (NORM == 0u) { norm = sqrt(total); }
    if (NORM == 2u && total > 0.0) { norm = pow(total, p.invP); } // pow(0, y) is exp2(y log2 0): not exact everywhere
    var coef = p.maxNorm / (norm + 1e-6);
    if (!finite32(norm) && !isnan32(norm)) { coef = 0.0; }
    if (!isnan32(coef) && !(coef < 1.0)) { coef = 1.0; }
    status[STATUS_NORM] = bitcast<u32>(norm);
    status[STATUS_COEF] = bitcast<u32>(coef);
    if (p.errorIfNonfinite != 0u && !finite32(norm)) { status[STATUS_FAULT] = status[STATUS_FAULT] | FAULT_NORM; }
  }
}
`;

// ------------------------------------------------------------------ losses

/**
 * Per-element losses (mse, l1, huber, smooth_l1, hinge, bce_with_logits): terms[i] = the
 * element's loss, grad[i] = dL/dpred (when WRITE_GRAD). a = 2/n (mse) or 1/n; b = delta / beta.
 */
export const LOSS = { mse: 0, l1: 1, huber: 2, smooth_l1: 3, hinge: 4, bce: 5 } as const;
const LOSS_ELEMENTWISE = /* wgsl */ `
override LOSS: u32 = 0u;
override WRITE_GRAD: bool = true;
struct P { n: u32, a: f32, b: f32, C: u32, hasPosWeight: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read_write> grad: array<f32>;
@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<f32>;
@group(0) @binding(3) var<storage, read> posWeight: array<f32>;
@group(0) @binding(4) var<storage, read_write> terms: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
// log(1 + e) for e in [0, 1], accurate for small e
fn log1p32(e: f32) -> f32 {
  let u = 1.0 + e;
  if (u == 1.0) { return e; }
  return log(u) * e / (u - 1.0);
}
fn body(i: u32) {
  let x = pred[i];
  let y = tgt[i];
  let inv = p.a;
  var term: f32;
  var g: f32;
  switch LOSS {
    case 0u: { let d = x - y; term = d * d; g = p.a * d; }
    case 1u: {
      let d = x - y;
      term = abs(d);
      g = select(select(0.0, -inv, d < 0.0), inv, d > 0.0);
    }
    case 2u: {
      let d = x - y; let ad = abs(d); let delta = p.b;
      term = select(delta * (ad - 0.5 * delta), 0.5 * d * d, ad < delta);
      g = select(select(inv * d, inv * delta, d > delta), -inv * delta, d < -delta);
    }
    case 3u: {
      let d = x - y; let ad = abs(d); let beta = p.b;
      term = select(ad - 0.5 * beta, 0.5 * d * d / beta, ad < beta);
      g = select(select(inv * d / beta, inv, d > beta), -inv, d < -beta);
    }
    case 4u: {
      let t = select(-1.0, 1.0, y == 1.0);
      let z = 1.0 - t * x;
      term = select(0.0, z, z > 0.0 || isnan32(z));
      g = select(0.0, -t * inv, z >= 0.0);
    }
    default: {
      var pw = 1.0;
      if (p.hasPosWeight != 0u) { pw = posWeight[i % p.C]; }
      let lw = (pw - 1.0) * y + 1.0;
      let softplusNeg = log1p32(exp(-abs(x))) + max(-x, 0.0);
      term = (1.0 - y) * x + lw * softplusNeg;
      var s: f32;
      if (x >= 0.0) { s = 1.0 / (1.0 + exp(-x)); } else { let e = exp(x); s = e / (1.0 + e); }
      g = (lw * s - pw * y) * inv;
    }
  }
  terms[i] = term;
  if (WRITE_GRAD) { grad[i] = g; }
}
${GRID}`;

/**
 * Cross-entropy, one invocation per row (n = B rows of C logits): log-softmax, the row's
 * -w_y logp_y (terms[i]), -sum_c w_c logp_c (terms[B + i], label smoothing) and w_y
 * (terms[2B + i]), and the gradient before its division by W (ce_scale does that once W is known).
 */
const CROSS_ENTROPY = /* wgsl */ `
override WRITE_GRAD: bool = true;
struct P { n: u32, C: u32, ignoreIndex: i32, hasWeight: u32, eps: f32, oneMinusEps: f32, epsOverC: f32, sumW: f32 }
@group(0) @binding(0) var<storage, read_write> grad: array<f32>;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> terms: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn w(c: u32) -> f32 {
  if (p.hasWeight != 0u) { return weight[c]; }
  return 1.0;
}
fn body(i: u32) {
  let C = p.C;
  let row = i * C;
  let y = i32(tgt[i]);
  if (y == p.ignoreIndex) {
    terms[i] = 0.0; terms[p.n + i] = 0.0; terms[2u * p.n + i] = 0.0;
    if (WRITE_GRAD) { for (var c = 0u; c < C; c++) { grad[row + c] = 0.0; } }
    return;
  }
  var m = logits[row];
  for (var c = 1u; c < C; c++) {
    let v = logits[row + c];
    if (isnan32(v) || v > m) { m = select(v, m, isnan32(m)); }
  }
  var se = 0.0;
  for (var c = 0u; c < C; c++) { se = se + exp(logits[row + c] - m); }
  let lse = m + log(se);
  let yu = u32(y);
  let wy = w(yu);
  terms[i] = -wy * (logits[row + yu] - lse);
  var sm = 0.0;
  if (p.eps > 0.0) {
    for (var c = 0u; c < C; c++) { sm = sm - w(c) * (logits[row + c] - lse); }
  }
  terms[p.n + i] = sm;
  terms[2u * p.n + i] = wy;
  if (WRITE_GRAD) {
    for (var c = 0u; c < C; c++) {
      let pc = exp(logits[row + c] - lse);
      var g = p.oneMinusEps * wy * (pc - select(0.0, 1.0, c == yu));
      if (p.eps > 0.0) { g = g + p.epsOverC * (p.sumW * pc - w(c)); }
      grad[row + c] = g;
    }
  }
}
${GRID}`;

/** grad *= 1/W (status[4]) after the cross-entropy reduction. */
const CE_SCALE = /* wgsl */ `
struct P { n: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read_write> grad: array<f32>;
@group(0) @binding(1) var<storage, read> status: array<u32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(i: u32) { grad[i] = grad[i] * bitcast<f32>(status[STATUS_INV_W]); }
${GRID}`;

/**
 * MultiMarginLoss, one invocation per row: grad[c] = h for violating classes, grad[y] = -sum h;
 * terms[i] = the row's sum / C.
 */
const MULTI_MARGIN = /* wgsl */ `
override P_EXP: u32 = 1u;
override WRITE_GRAD: bool = true;
struct P { n: u32, C: u32, hasWeight: u32, margin: f32, g: f32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read_write> grad: array<f32>;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> terms: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(i: u32) {
  let C = p.C;
  let row = i * C;
  let y = u32(i32(tgt[i]));
  let xy = logits[row + y];
  var wy = 1.0;
  if (p.hasWeight != 0u) { wy = weight[y]; }
  var rowSum = 0.0;
  var gy = 0.0;
  for (var c = 0u; c < C; c++) {
    if (c == y) { continue; }
    let z = p.margin - xy + logits[row + c];
    var h = 0.0;
    if (z > 0.0) {
      if (P_EXP == 1u) { rowSum = rowSum + z * wy; h = p.g * wy; }
      else { rowSum = rowSum + z * z * wy; h = 2.0 * p.g * z * wy; }
      gy = gy - h;
    }
    if (WRITE_GRAD) { grad[row + c] = h; }
  }
  if (WRITE_GRAD) { grad[row + y] = gy; }
  terms[i] = rowSum / f32(C);
}
${GRID}`;

/**
 * The loss from its terms, in one workgroup: MODE 0: sum / divisor; MODE 1 (cross-entropy):
 * ((1-eps) nll + eps/C smooth) / W and 1/W into status[4]. The loss goes to status[slot]; a
 * non-finite loss sets faultBit (0: none, in validation).
 */
const LOSS_REDUCE = /* wgsl */ `
override MODE: u32 = 0u;
struct P { count: u32, divisor: f32, slot: u32, faultBit: u32, oneMinusEps: f32, epsOverC: f32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read> terms: array<f32>;
@group(0) @binding(1) var<storage, read_write> status: array<u32>;
@group(0) @binding(16) var<uniform> p: P;
${REDUCE}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) tid: u32) {
  var loss: f32;
  if (MODE == 0u) {
    var s = 0.0;
    for (var i = tid; i < p.count; i += 256u) { s = s + terms[i]; }
    loss = wgSum(s, tid) / p.divisor;
  } else {
    var a = 0.0; var b = 0.0; var c = 0.0;
    for (var i = tid; i < p.count; i += 256u) {
      a = a + terms[i]; b = b + terms[p.count + i]; c = c + terms[2u * p.count + i];
    }
    let nll = wgSum(a, tid);
    let sm = wgSum(b, tid);
    let W = wgSum(c, tid);
    loss = (p.oneMinusEps * nll + p.epsOverC * sm) / W;
    if (W == 0.0) { loss = nan32(); }
    if (tid == 0u) { status[STATUS_INV_W] = bitcast<u32>(1.0 / W); }
  }
  if (tid == 0u) {
    status[p.slot] = bitcast<u32>(loss);
    if (!finite32(loss)) { status[STATUS_FAULT] = status[STATUS_FAULT] | p.faultBit; }
  }
}
`;

/**
 * Validation accuracy counts, in one workgroup: KIND 0: argmax == label per row (rows
 * labelled ignoreIndex skipped when hasIgnore); 1: (x > 0) == (y > 0.5) per element (BCE);
 * 2: (x > 0) == (y == 1) per element (hinge). status[6] = correct, status[7] = counted.
 */
const ACCURACY = /* wgsl */ `
override KIND: u32 = 0u;
struct P { rows: u32, C: u32, hasIgnore: u32, ignoreIndex: i32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> status: array<u32>;
@group(0) @binding(16) var<uniform> p: P;
${REDUCE}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) tid: u32) {
  var correct = 0u;
  var counted = 0u;
  if (KIND == 0u) {
    for (var i = tid; i < p.rows; i += 256u) {
      let t = y[i];
      if (p.hasIgnore != 0u && i32(t) == p.ignoreIndex) { continue; }
      var best = 0u;
      for (var c = 1u; c < p.C; c++) { if (x[i * p.C + c] > x[i * p.C + best]) { best = c; } }
      counted = counted + 1u;
      if (f32(best) == t) { correct = correct + 1u; }
    }
  } else {
    let n = p.rows * p.C;
    for (var i = tid; i < n; i += 256u) {
      var positive: bool;
      if (KIND == 1u) { positive = y[i] > 0.5; } else { positive = y[i] == 1.0; }
      counted = counted + 1u;
      if ((x[i] > 0.0) == positive) { correct = correct + 1u; }
    }
  }
  let a = wgSumU(correct, tid);
  let b = wgSumU(counted, tid);
  if (tid == 0u) { status[STATUS_CORRECT] = a; status[STATUS_COUNTED] = b; }
}
`;

// ------------------------------------------------------------------ optimizers

/**
 * Shared by the optimizer kernels: nothing happens when an earlier check faulted (status[1]);
 * the gradient is scaled by clip_grad_norm_'s coefficient (status[3]) when clipping; the
 * parameter before the update is kept in last[] (restored if the update goes non-finite).
 */
const OPT_HEAD = /* wgsl */ `
struct P { n: u32, pad0: u32, pad1: u32, pad2: u32 }
${STEP_STRUCT}
@group(0) @binding(16) var<uniform> p: P;
@group(0) @binding(17) var<uniform> st: Step;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  if (status[STATUS_FAULT] != 0u) { return; }
  let coef = bitcast<f32>(status[STATUS_COEF]);
  let stride = nwg.x * 256u;
  for (var i = gid.x; i < p.n; i += stride) {
    var g = grad[i];
    if (st.clip != 0u) { g = g * coef; }
    let p0 = param[i];
    last[i] = p0;
    update(i, p0, g);
  }
}
`;

/**
 * torch.optim.SGD: a0 lr, a1 momentum, a2 1 - dampening, a3 weight_decay; u0 nesterov,
 * u1 maximize, u2 first (the momentum buffer starts as the gradient).
 */
const SGD = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> buf: array<f32>;
@group(0) @binding(3) var<storage, read_write> last: array<f32>;
@group(0) @binding(4) var<storage, read> status: array<u32>;
${OPT_HEAD}
fn update(i: u32, p0: f32, g0: f32) {
  let lr = st.a0; let momentum = st.a1; let d1m = st.a2; let wd = st.a3;
  var g = g0;
  if (st.u1 != 0u) { g = -g; }
  if (wd != 0.0) { g = g + wd * p0; }
  if (momentum != 0.0) {
    var b: f32;
    if (st.u2 != 0u) { b = g; } else { b = buf[i] * momentum + d1m * g; }
    buf[i] = b;
    if (st.u0 != 0u) { g = g + momentum * b; } else { g = b; }
  }
  param[i] = p0 + -lr * g;
}
`;

/**
 * torch.optim.Adam / AdamW: a0 step_size (lr / bias_correction1), a1 beta1, a2 1 - beta1,
 * a3 beta2, a4 1 - beta2, a5 sqrt(bias_correction2), a6 eps, a7 weight_decay, a8 1 - lr wd;
 * u0 amsgrad, u1 maximize, u2 decoupled (AdamW).
 */
const ADAM = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> vmax: array<f32>;
@group(0) @binding(5) var<storage, read_write> last: array<f32>;
@group(0) @binding(6) var<storage, read> status: array<u32>;
${OPT_HEAD}
fn update(i: u32, p0: f32, g0: f32) {
  var pv = p0;
  var g = g0;
  if (st.u1 != 0u) { g = -g; }
  if (st.u2 != 0u) { pv = pv * st.a8; } else if (st.a7 != 0.0) { g = g + st.a7 * pv; }
  let mi = m[i] * st.a1 + st.a2 * g;
  let vi = v[i] * st.a3 + st.a4 * g * g;
  m[i] = mi;
  v[i] = vi;
  var s = vi;
  if (st.u0 != 0u) {
    let old = vmax[i];
    s = select(select(vi, old, old > vi), old, isnan32(old));
    if (isnan32(vi)) { s = vi; }
    vmax[i] = s;
  }
  let denom = sqrt(s) / st.a5 + st.a6;
  param[i] = pv + (-st.a0 * mi) / denom;
}
`;

/**
 * torch.optim.RMSprop: a0 lr, a1 alpha, a2 1 - alpha, a3 eps, a4 weight_decay, a5 momentum;
 * u0 centered, u1 maximize.
 */
const RMSPROP = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> squareAvg: array<f32>;
@group(0) @binding(3) var<storage, read_write> gradAvg: array<f32>;
@group(0) @binding(4) var<storage, read_write> buf: array<f32>;
@group(0) @binding(5) var<storage, read_write> last: array<f32>;
@group(0) @binding(6) var<storage, read> status: array<u32>;
${OPT_HEAD}
fn update(i: u32, p0: f32, g0: f32) {
  let lr = st.a0; let alpha = st.a1; let alpha1m = st.a2; let eps = st.a3; let wd = st.a4; let momentum = st.a5;
  var g = g0;
  if (st.u1 != 0u) { g = -g; }
  if (wd != 0.0) { g = g + wd * p0; }
  let sq = squareAvg[i] * alpha + alpha1m * g * g;
  squareAvg[i] = sq;
  var avg: f32;
  if (st.u0 != 0u) {
    let ga = gradAvg[i] * alpha + alpha1m * g;
    gradAvg[i] = ga;
    avg = sqrt(sq - ga * ga);
  } else {
    avg = sqrt(sq);
  }
  avg = avg + eps;
  if (momentum > 0.0) {
    let b = buf[i] * momentum + g / avg;
    buf[i] = b;
    param[i] = p0 + -lr * b;
  } else {
    param[i] = p0 + (-lr * g) / avg;
  }
}
`;

/** torch.optim.Adagrad: a0 clr (lr / (1 + (t - 1) lr_decay)), a1 eps, a2 weight_decay; u1 maximize. */
const ADAGRAD = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> sum: array<f32>;
@group(0) @binding(3) var<storage, read_write> last: array<f32>;
@group(0) @binding(4) var<storage, read> status: array<u32>;
${OPT_HEAD}
fn update(i: u32, p0: f32, g0: f32) {
  let clr = st.a0; let eps = st.a1; let wd = st.a2;
  var g = g0;
  if (st.u1 != 0u) { g = -g; }
  if (wd != 0.0) { g = g + wd * p0; }
  let s = sum[i] + g * g;
  sum[i] = s;
  param[i] = p0 + (-clr * g) / (sqrt(s) + eps);
}
`;

/**
 * param[off + i] = last[i] when a fault bit in `faults` is set: the weights when the update made
 * one non-finite (FAULT_WEIGHT), the buffers (running statistics, which a training forward moves) on
 * any fault.
 */
const RESTORE = /* wgsl */ `
struct P { n: u32, faults: u32, off: u32, pad: u32 }
@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> last: array<f32>;
@group(0) @binding(2) var<storage, read> status: array<u32>;
@group(0) @binding(16) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  if ((status[STATUS_FAULT] & p.faults) == 0u) { return; }
  let stride = nwg.x * 256u;
  for (var i = gid.x; i < p.n; i += stride) { param[p.off + i] = last[i]; }
}
`;

// ------------------------------------------------------------------ normalisation
// The twins of wasm/assembly/normalization.ts: every sum in that file's documented order (four
// lanes over the 4-aligned body, (l0 + l1) + (l2 + l3), then the tail; for a BatchNorm channel
// the runs' bodies into the lanes and their tails into t), one invocation per row or channel.

/** WGSL declaring `result`: the sum of term(i) for i in [0, n) in the documented lane order. */
const laneSum = (result: string, n: string, term: (i: string) => string) => `
  var ${result}: f32;
  {
    var l0 = 0.0; var l1 = 0.0; var l2 = 0.0; var l3 = 0.0;
    let aligned = ${n} - ${n} % 4u;
    for (var i = 0u; i < aligned; i += 4u) {
      l0 = l0 + ${term("i")}; l1 = l1 + ${term("i + 1u")}; l2 = l2 + ${term("i + 2u")}; l3 = l3 + ${term("i + 3u")};
    }
    ${result} = (l0 + l1) + (l2 + l3);
    for (var i = aligned; i < ${n}; i++) { ${result} = ${result} + ${term("i")}; }
  }`;

/** WGSL declaring `result`: the sum of term(index) over channel c of [N, C, L] (C = p.n) in the documented order. */
const channelSum = (result: string, term: (i: string) => string) => `
  var ${result}: f32;
  {
    var l0 = 0.0; var l1 = 0.0; var l2 = 0.0; var l3 = 0.0; var t = 0.0;
    let aligned = p.L - p.L % 4u;
    for (var s = 0u; s < p.N; s++) {
      let run = (s * p.n + c) * p.L;
      for (var l = 0u; l < aligned; l += 4u) {
        l0 = l0 + ${term("run + l")}; l1 = l1 + ${term("run + l + 1u")}; l2 = l2 + ${term("run + l + 2u")}; l3 = l3 + ${term("run + l + 3u")};
      }
      for (var l = aligned; l < p.L; l++) { t = t + ${term("run + l")}; }
    }
    if (p.L >= 4u) { ${result} = ((l0 + l1) + (l2 + l3)) + t; } else { ${result} = t; }
  }`;

/**
 * LayerNorm / RMSNorm forward, one invocation per row of D: wasm layer_norm_forward. mean is
 * written when center is 1; weight and bias are read from the state block at wOff / bOff.
 */
const LAYER_NORM_FORWARD = /* wgsl */ `
struct P { n: u32, D: u32, eps: f32, center: u32, wOff: u32, bOff: u32, hasWeight: u32, hasBias: u32 }
@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@group(0) @binding(1) var<storage, read_write> mean: array<f32>;
@group(0) @binding(2) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(3) var<storage, read> inp: array<f32>;
@group(0) @binding(4) var<storage, read> state: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(r: u32) {
  let base = r * p.D;
  var mu = 0.0;
  if (p.center != 0u) {
    ${laneSum("sx", "p.D", (i) => `inp[base + ${i}]`)}
    mu = sx / f32(p.D);
  }
  ${laneSum("sq", "p.D", (i) => `(inp[base + ${i}] - mu) * (inp[base + ${i}] - mu)`)}
  let rs = 1.0 / sqrt(sq / f32(p.D) + p.eps);
  if (p.center != 0u) { mean[r] = mu; }
  rstd[r] = rs;
  for (var j = 0u; j < p.D; j++) {
    var y = (inp[base + j] - mu) * rs;
    if (p.hasWeight != 0u) { y = y * state[p.wOff + j]; }
    if (p.hasBias != 0u) { y = y + state[p.bOff + j]; }
    dst[base + j] = y;
  }
}
${GRID}`;

/**
 * The input gradient of LayerNorm / RMSNorm, one invocation per row: wasm layer_norm_backward's
 * dinp = ((g - a) - xhat b) rstd, g = dout * weight, a = sum(g) / D (0 for RMSNorm), b = sum(g xhat) / D.
 */
const LAYER_NORM_BACKWARD = /* wgsl */ `
struct P { n: u32, D: u32, center: u32, wOff: u32, hasWeight: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read_write> dinp: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> inp: array<f32>;
@group(0) @binding(3) var<storage, read> state: array<f32>;
@group(0) @binding(4) var<storage, read> mean: array<f32>;
@group(0) @binding(5) var<storage, read> rstd: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
var<private> base: u32;
var<private> mu: f32;
var<private> rs: f32;
fn g(j: u32) -> f32 {
  var v = dout[base + j];
  if (p.hasWeight != 0u) { v = v * state[p.wOff + j]; }
  return v;
}
fn xh(j: u32) -> f32 { return (inp[base + j] - mu) * rs; }
fn body(r: u32) {
  base = r * p.D;
  mu = 0.0;
  if (p.center != 0u) { mu = mean[r]; }
  rs = rstd[r];
  ${laneSum("sg", "p.D", (i) => `g(${i})`)}
  ${laneSum("sgx", "p.D", (i) => `g(${i}) * xh(${i})`)}
  var a = 0.0;
  if (p.center != 0u) { a = sg / f32(p.D); }
  let b = sgx / f32(p.D);
  for (var j = 0u; j < p.D; j++) { dinp[base + j] = ((g(j) - a) - xh(j) * b) * rs; }
}
${GRID}`;

/** LayerNorm's dweight += sum_r dout xhat and dbias += sum_r dout, one invocation per column, rows in order (as wasm). */
const LAYER_NORM_PARAM_GRAD = /* wgsl */ `
struct P { n: u32, rows: u32, center: u32, wOff: u32, bOff: u32, hasWeight: u32, hasBias: u32, pad: u32 }
@group(0) @binding(0) var<storage, read_write> grads: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> inp: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(j: u32) {
  // only a flagged gradient is read (an absent or frozen one may lie past the end of grads)
  var sw = 0.0;
  var sb = 0.0;
  if (p.hasWeight != 0u) { sw = grads[p.wOff + j]; }
  if (p.hasBias != 0u) { sb = grads[p.bOff + j]; }
  for (var r = 0u; r < p.rows; r++) {
    let gv = dout[r * p.n + j];
    var mu = 0.0;
    if (p.center != 0u) { mu = mean[r]; }
    sw = sw + gv * ((inp[r * p.n + j] - mu) * rstd[r]);
    sb = sb + gv;
  }
  if (p.hasWeight != 0u) { grads[p.wOff + j] = sw; }
  if (p.hasBias != 0u) { grads[p.bOff + j] = sb; }
}
${GRID}`;

/**
 * BatchNorm's batch statistics, one invocation per channel of [N, C, L] (n = C): wasm
 * batch_norm_stats. stats[c] = mean, stats[C + c] = biased variance.
 */
const BATCH_NORM_STATS = /* wgsl */ `
struct P { n: u32, N: u32, L: u32, pad: u32 }
@group(0) @binding(0) var<storage, read_write> stats: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(c: u32) {
  let count = f32(p.N * p.L);
  ${channelSum("sx", (i) => `inp[${i}]`)}
  let m = sx / count;
  ${channelSum("sq", (i) => `(inp[${i}] - m) * (inp[${i}] - m)`)}
  stats[c] = m;
  stats[p.n + c] = sq / count;
}
${GRID}`;

/**
 * The running statistics after a training batch, in one invocation (num_batches_tracked is read
 * and written once): wasm batch_norm_update, in f32 (WGSL has no f64). momentum < 0: the
 * cumulative average 1 / num_batches_tracked. unbias = count / (count - 1).
 */
const BATCH_NORM_UPDATE = /* wgsl */ `
struct P { C: u32, rmOff: u32, rvOff: u32, nOff: u32, momentum: f32, unbias: f32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read_write> state: array<f32>;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
@compute @workgroup_size(1)
fn main() {
  let tracked = state[p.nOff] + 1.0;
  state[p.nOff] = tracked;
  var m = p.momentum;
  if (m < 0.0) { m = 1.0 / tracked; }
  for (var c = 0u; c < p.C; c++) {
    state[p.rmOff + c] = m * stats[c] + (1.0 - m) * state[p.rmOff + c];
    state[p.rvOff + c] = m * (stats[p.C + c] * p.unbias) + (1.0 - m) * state[p.rvOff + c];
  }
}
`;

/**
 * BatchNorm forward over [N, C, L], one invocation per element: wasm batch_norm_forward with the
 * mean and variance at stats[meanOff + c] / stats[varOff + c] (the batch's, in a saved buffer, or
 * the running ones, in the state block), weight and bias in the state block.
 */
const BATCH_NORM_FORWARD = /* wgsl */ `
struct P { n: u32, C: u32, L: u32, meanOff: u32, varOff: u32, wOff: u32, bOff: u32, flags: u32, eps: f32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read> state: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(i: u32) {
  let c = (i / p.L) % p.C;
  let rs = 1.0 / sqrt(stats[p.varOff + c] + p.eps);
  var y = (inp[i] - stats[p.meanOff + c]) * rs;
  if ((p.flags & 1u) != 0u) { y = y * state[p.wOff + c]; }
  if ((p.flags & 2u) != 0u) { y = y + state[p.bOff + c]; }
  dst[i] = y;
}
${GRID}`;

/**
 * BatchNorm backward, first pass, one invocation per channel (n = C): sdy = sum(dout) and
 * sdyx = sum(dout xhat) in the documented order into stats[2C + c] and stats[3C + c];
 * dweight += sdyx, dbias += sdy (the grads at wOff / bOff, when flagged).
 */
const BATCH_NORM_GRAD_SUMS = /* wgsl */ `
struct P { n: u32, N: u32, L: u32, wOff: u32, bOff: u32, flags: u32, eps: f32, pad: u32 }
@group(0) @binding(0) var<storage, read_write> stats: array<f32>;
@group(0) @binding(1) var<storage, read_write> grads: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read> inp: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(c: u32) {
  let m = stats[c];
  let rs = 1.0 / sqrt(stats[p.n + c] + p.eps);
  ${channelSum("sdy", (i) => `dout[${i}]`)}
  ${channelSum("sdyx", (i) => `dout[${i}] * ((inp[${i}] - m) * rs)`)}
  stats[2u * p.n + c] = sdy;
  stats[3u * p.n + c] = sdyx;
  if ((p.flags & 1u) != 0u) { grads[p.wOff + c] = grads[p.wOff + c] + sdyx; }
  if ((p.flags & 2u) != 0u) { grads[p.bOff + c] = grads[p.bOff + c] + sdy; }
}
${GRID}`;

/**
 * BatchNorm backward, second pass, one invocation per element of [N, C, L]:
 * dinp = ((dout - sdy / count) - xhat (sdyx / count)) (weight rstd), as wasm batch_norm_backward.
 */
const BATCH_NORM_BACKWARD = /* wgsl */ `
struct P { n: u32, C: u32, L: u32, wOff: u32, hasWeight: u32, count: f32, eps: f32, pad: u32 }
@group(0) @binding(0) var<storage, read_write> dinp: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> inp: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read> state: array<f32>;
@group(0) @binding(16) var<uniform> p: P;
fn body(i: u32) {
  let c = (i / p.L) % p.C;
  let rs = 1.0 / sqrt(stats[p.C + c] + p.eps);
  let a = stats[2u * p.C + c] / p.count;
  let b = stats[3u * p.C + c] / p.count;
  var w = 1.0;
  if (p.hasWeight != 0u) { w = state[p.wOff + c]; }
  let xh = (inp[i] - stats[c]) * rs;
  dinp[i] = ((dout[i] - a) - xh * b) * (w * rs);
}
${GRID}`;

/** Every kernel: its WGSL, with the prelude. */
export const KERNELS = {
  gemm: GEMM,
  gemm_small: GEMM_SMALL,
  bgemm: BGEMM,
  attn_softmax: ATTN_SOFTMAX,
  attn_dscores: ATTN_DSCORES,
  rope: ROPE,
  bias_grad: BIAS_GRAD,
  act_forward: ACT_FORWARD,
  act_backward: ACT_BACKWARD,
  dropout: DROPOUT,
  mul: MUL,
  add: ADD,
  accumulate: ACCUMULATE,
  copy: COPY,
  fill: FILL,
  scale: SCALE,
  gather: GATHER,
  embedding_forward: EMBEDDING_FORWARD,
  embedding_backward: EMBEDDING_BACKWARD,
  add_broadcast: ADD_BROADCAST,
  token_pool_forward: TOKEN_POOL_FORWARD,
  token_pool_backward: TOKEN_POOL_BACKWARD,
  conv_forward: CONV_FORWARD,
  conv_backward_input: CONV_BACKWARD_INPUT,
  conv_backward_weight: CONV_BACKWARD_WEIGHT,
  conv_bias_grad: CONV_BIAS_GRAD,
  max_pool_forward: MAX_POOL_FORWARD,
  max_pool_backward: MAX_POOL_BACKWARD,
  avg_pool_forward: AVG_POOL_FORWARD,
  avg_pool_backward: AVG_POOL_BACKWARD,
  all_finite: ALL_FINITE,
  norm_partial: NORM_PARTIAL,
  norm_final: NORM_FINAL,
  loss_elementwise: LOSS_ELEMENTWISE,
  cross_entropy: CROSS_ENTROPY,
  ce_scale: CE_SCALE,
  multi_margin: MULTI_MARGIN,
  loss_reduce: LOSS_REDUCE,
  accuracy: ACCURACY,
  sgd: SGD,
  adam: ADAM,
  rmsprop: RMSPROP,
  adagrad: ADAGRAD,
  restore: RESTORE,
  layer_norm_forward: LAYER_NORM_FORWARD,
  layer_norm_backward: LAYER_NORM_BACKWARD,
  layer_norm_param_grad: LAYER_NORM_PARAM_GRAD,
  batch_norm_stats: BATCH_NORM_STATS,
  batch_norm_update: BATCH_NORM_UPDATE,
  batch_norm_forward: BATCH_NORM_FORWARD,
  batch_norm_grad_sums: BATCH_NORM_GRAD_SUMS,
  batch_norm_backward: BATCH_NORM_BACKWARD,
} as const;

export type KernelName = keyof typeof KERNELS;

/** The full WGSL source of a kernel. */
export function kernelSource(name: KernelName): string {
  return PRELUDE + KERNELS[name];
}
