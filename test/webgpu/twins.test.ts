/**
 * Every WGSL kernel against its WASM twin (the plain SIMD build: no fused multiply-add), on
 * identical seeded inputs at the house-rule lengths 0, 1, 3, 4, 5, 63, 64, 65 (and 1027 for the
 * elementwise kernels), with the padding around each GPU output checked untouched.
 *
 * Tolerances (the largest observed differences are printed at the end):
 *  - bit-exact: relu, leaky_relu, dropout (mask and output: the same hash), mul, copy, fill,
 *    scale, gather, bias_grad (the same order of additions), the all-finite flag, the embedding
 *    lookup and scatter-add, add_broadcast, token pooling except the mean.
 *  - the mean of token pooling: 3 ulps (WGSL's division is within 2.5 ulps).
 *  - GEMM (and the batched strided GEMM of attention): |diff| <= 1e-5 (|init| + sum of |terms|)
 *    (a GPU may fuse a*b+c).
 *  - attention's softmax: 4 ulps (the same polynomial exp and order of sums; the GPU may contract
 *    its multiply-adds into fma); its score gradient: 1e-5 of
 *    scale * P (sum |dO V| + sum_k |dP_k| P_k); the whole op (forward and backward, with key
 *    padding, causal, dropout, packed or separate q, k, v, grouped-query): 1e-5 of each
 *    tensor's largest magnitude.
 *  - rope: 1e-6 of |x1 cos| + |x2 sin| (one product minus or plus another; the GPU may fuse);
 *    the rope op's uploaded angle table bit-exact (the CPU computes rope_table's recipe); the mul
 *    op bit-exact.
 *  - convolutions (forward, dW, dx against the WASM op's im2col + GEMM): the same as GEMM, the scale
 *    being the op run on absolute values; the bias gradient bit-exact (the same additions);
 *    max pooling bit-exact (values, argmax indices, gradients); average pooling 2 ulps
 *    (WGSL's division need not be correctly rounded).
 *  - activations with exp/erf/tanh: 8 ulps or 1e-6 absolute (WGSL's exp is a few ulps; tanh is
 *    Cephes' tanhf, not Mathf.tanh); their backward passes likewise.
 *  - losses: the loss 1e-5 relative (f32 tree sums vs f64 sums), gradients 8 ulps or 1e-6 of
 *    the gradient scale (cross-entropy: f32 exp/log vs f64).
 *  - optimizers: 4 ulps (sqrt and division need not be correctly rounded in WGSL).
 *  - norms: 1e-5 relative.
 *  - layer_norm, rms_norm, batch_norm: the same sums in the same order; WGSL's sqrt and division
 *    are a few ulps, so rstd within 8 ulps and what it scales within 16 ulps, or 1e-6 of the
 *    tensor's scale (1e-5 for BatchNorm's dx, which goes through the GPU's own statistics).
 */
import { afterAll, describe, expect, it } from "vitest";
import { instantiateKernels, type Kernels } from "../../src/engine/kernels.js";
import { BufferSet, MAP_READ, Program, USAGE, gridGroups, type DispatchSpec } from "../../src/engine/webgpu/context.js";
import { ACT, KERNELS, LOSS, NORM, STEP_BYTES } from "../../src/engine/webgpu/wgsl.js";
import { gemmSpec } from "../../src/engine/webgpu/backend.js";
import { GPU_OPS, bgemmSpec, type GpuOp, type GpuOpContext } from "../../src/engine/webgpu/ops.js";
import { attentionOp } from "../../src/engine/ops/attention.js";
import { convOp } from "../../src/engine/ops/conv.js";
import { mulOp } from "../../src/engine/ops/elementwise.js";
import { avgPoolOp, maxPoolOp } from "../../src/engine/ops/pool.js";
import { ropeOp } from "../../src/engine/ops/rope.js";
import type { AttentionOp, AvgPoolOp, ConvOp, KernelOpContext, MaxPoolOp, MulOp, RopeOp } from "../../src/engine/ops/types.js";
import { loadNodeRuntime } from "../../src/node/index.js";
import { LENGTHS, Rng, Stats, ulpDistance } from "../kernels/harness.js";
import { SKIP_REASON, adapterDescription, device } from "./device.js";

const EL = [...LENGTHS, 1027];
const STATS = new Stats();
afterAll(() => {
  if (device) console.log(STATS.report(`WGSL kernels on ${adapterDescription} vs simd.wasm: largest observed differences`));
});

// ------------------------------------------------------------------ the WASM side

const wasmModule = (await loadNodeRuntime({ variant: "wasm-simd" })).module;

class Wasm {
  readonly memory = new WebAssembly.Memory({ initial: 256 });
  k!: Kernels;
  private top = 0;
  async init() {
    this.k = await instantiateKernels(wasmModule, this.memory);
    this.top = this.k.heap_base();
    return this;
  }
  put(a: Float32Array | Int32Array): number {
    const ptr = (this.top = Math.ceil(this.top / 16) * 16);
    new Uint8Array(this.memory.buffer, ptr, a.byteLength).set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    this.top += Math.max(16, a.byteLength);
    return ptr;
  }
  get(ptr: number, n: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr, n).slice();
  }
}
const wasm = () => new Wasm().init();

// ------------------------------------------------------------------ the GPU side

const PAD = 4; // guard elements after every GPU buffer
/** Every WGSL kernel some test below ran (the coverage test at the end wants all of KERNELS). */
const DISPATCHED = new Set<string>();
const GUARD = 12345.5;

/**
 * Runs dispatches over named buffers (each followed by PAD guard values) and reads every buffer
 * back (guards checked untouched).
 */
async function gpu(
  arrays: Record<string, Float32Array | Uint32Array>,
  specs: (b: Record<string, GPUBuffer>, step: GPUBuffer) => DispatchSpec[],
  stepWords: { u?: number[]; a?: number[]; seed?: number; clip?: number } = {},
): Promise<Record<string, Float32Array>> {
  const d = device!;
  const set = new BufferSet(d);
  const buffers: Record<string, GPUBuffer> = {};
  for (const [name, a] of Object.entries(arrays)) {
    const padded = new Float32Array(a.length + PAD);
    padded.set(new Float32Array(a.buffer, a.byteOffset, a.length));
    padded.fill(GUARD, a.length);
    buffers[name] = set.storage(name, padded.length, padded);
  }
  const step = set.raw("step", STEP_BYTES, USAGE.UNIFORM | USAGE.COPY_DST);
  const view = new DataView(new ArrayBuffer(STEP_BYTES));
  view.setUint32(0, stepWords.seed ?? 0, true);
  view.setUint32(4, stepWords.clip ?? 0, true);
  (stepWords.u ?? []).forEach((v, k) => view.setUint32(8 + 4 * k, v, true));
  (stepWords.a ?? []).forEach((v, k) => view.setFloat32(32 + 4 * k, v, true));
  d.queue.writeBuffer(step, 0, view.buffer);
  const dispatches = specs(buffers, step);
  for (const spec of dispatches) DISPATCHED.add(spec.kernel);
  const program = new Program(d, dispatches);
  const enc = d.createCommandEncoder();
  const pass = enc.beginComputePass();
  program.encode(pass);
  pass.end();
  const staging: Record<string, GPUBuffer> = {};
  for (const [name, a] of Object.entries(arrays)) {
    staging[name] = set.raw(`${name} readback`, (a.length + PAD) * 4, USAGE.MAP_READ | USAGE.COPY_DST);
    enc.copyBufferToBuffer(buffers[name]!, 0, staging[name]!, 0, (a.length + PAD) * 4);
  }
  d.queue.submit([enc.finish()]);
  const out: Record<string, Float32Array> = {};
  for (const [name, a] of Object.entries(arrays)) {
    const s = staging[name]!;
    await s.mapAsync(MAP_READ);
    const all = new Float32Array(s.getMappedRange().slice(0));
    s.unmap();
    for (let i = a.length; i < a.length + PAD; i++) expect(all[i], `${name}: a write past the end`).toBe(GUARD);
    out[name] = all.subarray(0, a.length);
  }
  program.destroy();
  set.destroy();
  return out;
}

// ------------------------------------------------------------------ comparisons

const same = (x: number, y: number) => (Number.isNaN(x) && Number.isNaN(y)) || Object.is(x === 0 ? 0 : x, y === 0 ? 0 : y);

function exact(family: string, actual: ArrayLike<number>, expected: ArrayLike<number>) {
  expect(actual.length).toBe(expected.length);
  let bad = -1;
  for (let i = 0; i < expected.length; i++) if (!same(actual[i]!, expected[i]!)) { bad = i; break; }
  STATS.record(family, { ulps: bad < 0 ? 0 : ulpDistance(actual[bad]!, expected[bad]!) });
  expect(bad, bad >= 0 ? `${family}[${bad}]: ${actual[bad]} vs ${expected[bad]}` : "").toBe(-1);
}

/** Within `ulps` ulps, or `abs` absolute. */
function close(family: string, actual: ArrayLike<number>, expected: ArrayLike<number>, ulps: number, abs: number) {
  expect(actual.length).toBe(expected.length);
  let worstUlps = 0;
  let worstAbs = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!, b = expected[i]!;
    const u = ulpDistance(a, b);
    const diff = Math.abs(a - b);
    worstUlps = Math.max(worstUlps, Math.min(u, 1e9));
    if (u > ulps) worstAbs = Math.max(worstAbs, diff);
    expect(u <= ulps || diff <= abs, `${family}[${i}]: ${a} vs ${b} (${u} ulps)`).toBe(true);
  }
  STATS.record(family, { ulps: worstUlps, abs: worstAbs });
}

function scaled(family: string, actual: ArrayLike<number>, expected: ArrayLike<number>, scale: ArrayLike<number>, tol: number) {
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const r = Math.abs(actual[i]! - expected[i]!) / scale[i]!;
    worst = Math.max(worst, Number.isNaN(r) ? Infinity : r);
  }
  STATS.record(family, { ratio: worst });
  expect(worst, family).toBeLessThanOrEqual(tol);
}

function relative(family: string, actual: number, expected: number, tol: number) {
  const r = Math.abs(actual - expected) / Math.max(Math.abs(expected), 1e-30);
  STATS.record(family, { ratio: r });
  expect(r, `${family}: ${actual} vs ${expected}`).toBeLessThanOrEqual(tol);
}

/** Random values with specials (zeros of both signs, tiny, large) at fixed positions. */
function values(rng: Rng, n: number, lo = -4, hi = 4): Float32Array {
  const a = rng.f32(n, lo, hi);
  const specials = [0, -0, 1e-7, -1e-7, 3.999, -3.999, 12, -12];
  for (let i = 2, s = 0; i < n; i += 7, s++) a[i] = specials[s % specials.length]!;
  return a;
}

const f = (v: number) => ({ f: v });

// ------------------------------------------------------------------ the tests

describe.skipIf(!device)(`WGSL kernels vs WASM kernels (${SKIP_REASON})`, () => {
  const DIMS: [number, number, number][] = [
    [1, 1, 1], [3, 5, 4], [4, 4, 4], [5, 3, 65], [0, 3, 4], [3, 0, 4], [4, 3, 0],
    [17, 33, 9], [63, 64, 65], [65, 63, 64], [64, 65, 1], [1, 130, 70], [67, 130, 3],
  ];
  for (const [layout, small] of (["nt", "nt+bias", "nn", "tn+acc"] as const).flatMap((l) => [[l, false], [l, true]] as const)) {
    it(`${small ? "gemm_small" : "gemm"} ${layout}`, async () => {
      const rng = new Rng(11);
      for (const [M, N, K] of DIMS) {
        const w = await wasm();
        const [aOff, bOff, biasOff, outOff] = [3, 5, 7, 2];
        // A is [M,K] (tn: [K,M]); B is [N,K] (nt) or [K,N]
        const a = rng.f32(M * K), b = rng.f32(N * K), bias = rng.f32(N), init = rng.f32(M * N);
        const outPtr = w.put(init.slice());
        const [ap, bp, biasp] = [w.put(a), w.put(b), w.put(bias)];
        if (layout === "nt") w.k.matmul_nt(outPtr, ap, bp, 0, w.put(new Float32Array(N * K)), M, N, K);
        if (layout === "nt+bias") w.k.matmul_nt(outPtr, ap, bp, biasp, w.put(new Float32Array(N * K)), M, N, K);
        if (layout === "nn") w.k.matmul_nn(outPtr, ap, bp, M, N, K, 0);
        if (layout === "tn+acc") w.k.matmul_tn(outPtr, ap, bp, M, N, K, 1);
        const expected = w.get(outPtr, M * N);
        const at = (x: Float32Array, off: number) => {
          const y = new Float32Array(x.length + off);
          y.set(x, off);
          return y;
        };
        const LAYOUT = layout.startsWith("nt") ? 0 : layout === "nn" ? 1 : 2;
        const INIT = layout === "nt+bias" ? 2 : layout === "tn+acc" ? 1 : 0;
        const got = await gpu({ c: at(init, outOff), a: at(a, aOff), b: at(b, bOff), bias: at(bias, biasOff) }, (B): DispatchSpec[] => [
          gemmSpec(LAYOUT, INIT, M, N, K, [B.c!, B.a!, B.b!, B.bias!], { aOff, bOff, biasOff, outOff }, small),
        ]);
        const family = `${small ? "gemm_small" : "gemm"} ${layout}`;
        exact(`${family} (prefix untouched)`, got.c!.subarray(0, outOff), new Float32Array(outOff));
        const scale = new Float64Array(M * N);
        for (let i = 0; i < M; i++) {
          for (let j = 0; j < N; j++) {
            let s = INIT === 1 ? Math.abs(init[i * N + j]!) : INIT === 2 ? Math.abs(bias[j]!) : 0;
            for (let k = 0; k < K; k++) {
              const av = LAYOUT === 2 ? a[k * M + i]! : a[i * K + k]!;
              const bv = LAYOUT === 0 ? b[j * K + k]! : b[k * N + j]!;
              s += Math.abs(av * bv);
            }
            scale[i * N + j] = s + 1e-30;
          }
        }
        const actual = got.c!.subarray(outOff);
        // an output the kernel must not touch (M or N is 0) keeps its initial value
        scaled(family, M * N === 0 ? expected : actual, expected, scale, 1e-5);
      }
    });
  }

  it("bgemm: batched strided GEMM over samples x heads (vs matmul_strided per sample and head)", async () => {
    const rng = new Rng(14);
    // [samples, heads, M, N, K, transposed A, alpha, accumulate]
    const CASES: [number, number, number, number, number, boolean, number, boolean][] = [
      [1, 1, 1, 1, 1, false, 1, false], [2, 3, 5, 4, 3, false, 1, false], [3, 2, 4, 5, 4, true, 1, true],
      [2, 2, 64, 65, 5, false, Math.fround(1 / Math.sqrt(3)), false], [1, 4, 65, 3, 64, true, 1, false], [2, 1, 0, 3, 4, false, 1, false],
      [1, 2, 3, 0, 4, false, 1, true], [2, 2, 3, 4, 0, true, 1, true], [3, 1, 17, 33, 9, true, 0.5, true],
    ];
    for (const [S, H, M, N, K, trans, alpha, acc] of CASES) {
      const w = await wasm();
      // per (sample, head): A [M, K] (or [K, M] read transposed) with padded rows, B [K, N] read
      // through strides (bcs = 2: every other column), C [M, N] with padded rows
      const [aLd, bLd, cLd] = [(trans ? M : K) + 2, 2 * N + 1, N + 3];
      const aBlock = (trans ? K : M) * aLd, bBlock = K * bLd, cBlock = M * cLd;
      const [aOff, bOff, cOff] = [3, 1, 2];
      const a = rng.f32(aOff + S * H * aBlock), b = rng.f32(bOff + S * H * bBlock), c0 = rng.f32(cOff + S * H * cBlock);
      const as = a.map((v) => Math.fround(alpha * v));
      const cp = w.put(c0.slice()), ap = w.put(as), bp = w.put(b);
      const [ars, acs] = trans ? [1, aLd] : [aLd, 1];
      // WASM: B must be contiguous along N, so pack its strided columns first
      for (let z = 0; z < S * H; z++) {
        const packed = new Float32Array(K * N);
        for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) packed[k * N + j] = b[bOff + z * bBlock + k * bLd + 2 * j]!;
        w.k.matmul_strided(cp + 4 * (cOff + z * cBlock), ap + 4 * (aOff + z * aBlock), w.put(packed), M, N, K, ars, acs, N, cLd, acc ? 1 : 0);
      }
      const expected = w.get(cp, c0.length);
      const got = await gpu({ c: c0, a, b }, (B): DispatchSpec[] => [
        bgemmSpec(M, N, K, S * H, H, alpha,
          { buffer: B.a!, off: aOff, rs: ars, cs: acs, sample: H * aBlock, head: aBlock },
          { buffer: B.b!, off: bOff, rs: bLd, cs: 2, sample: H * bBlock, head: bBlock },
          { buffer: B.c!, off: cOff, rs: cLd, cs: 1, sample: H * cBlock, head: cBlock }, acc),
      ]);
      const scale = new Float64Array(c0.length).fill(1e-30);
      for (let z = 0; z < S * H; z++) {
        for (let i = 0; i < M; i++) {
          for (let j = 0; j < cLd; j++) {
            const o = cOff + z * cBlock + i * cLd + j;
            let t = acc || j >= N ? Math.abs(c0[o]!) : 0;
            if (j < N) for (let k = 0; k < K; k++) t += Math.abs(as[aOff + z * aBlock + i * ars + k * acs]! * b[bOff + z * bBlock + k * bLd + 2 * j]!);
            scale[o] = t + 1e-30;
          }
        }
      }
      for (let o = 0; o < cOff; o++) scale[o] = Math.abs(c0[o]!) + 1e-30; // untouched prefix
      scaled("bgemm", got.c!, expected, scale, 1e-5);
    }
  });

  it("attn_softmax: masked softmax per (sample, head, query) row (vs attention_softmax)", async () => {
    const rng = new Rng(15);
    for (const causal of [false, true]) {
      for (const masked of [false, true]) {
        for (const T of LENGTHS.filter((t) => t > 0)) {
          const S = 3, H = 2;
          const w = await wasm();
          const scores = rng.f32(S * H * T * T, -6, 6);
          const mask = Float32Array.from({ length: S * T }, (_, i) => (i < T ? 0 : rng.next() < 0.35 ? 0 : 1)); // sample 0: all padding
          const pp = w.put(scores.slice()), mp = w.put(mask);
          for (let z = 0; z < S * H; z++) {
            const sample = Math.floor(z / H);
            w.k.attention_softmax(pp + 4 * z * T * T, pp + 4 * z * T * T, masked ? mp + 4 * sample * T : 0, T, T, causal ? 1 : 0);
          }
          const got = await gpu({ probs: scores, mask }, (B): DispatchSpec[] => [
            { kernel: "attn_softmax", constants: { HAS_MASK: masked, CAUSAL: causal }, buffers: [B.probs!, B.mask!], params: [S * H * T, T, H, T], x: gridGroups(S * H * T) },
          ]);
          close(`attn_softmax${causal ? " causal" : ""}${masked ? " masked" : ""}`, got.probs!, w.get(pp, scores.length), 4, 0);
        }
      }
    }
  });

  it("attn_dscores: the scores' gradient over P (vs matmul_strided + attention_softmax_backward)", async () => {
    const rng = new Rng(16);
    for (const dropout of [false, true]) {
      // group 2: 4 query heads over 2 key/value heads (V_j of head floor(h / 2))
      for (const group of [1, 2]) {
        for (const T of LENGTHS.filter((t) => t > 0)) {
          const S = 2, H = 2 * group, G = H / group, dh = 3, D = H * dh, Dkv = G * dh, W = D + 2 * Dkv, vOff = D + Dkv;
          const scale = Math.fround(1 / Math.sqrt(dh));
          const w = await wasm();
          const probs = rng.f32(S * H * T * T, 0, 1).map((v, i) => (i % 7 === 3 ? 0 : v));
          const dout = rng.f32(S * T * D), qkv = rng.f32(S * T * W);
          const dmask = Float32Array.from({ length: S * H * T * T }, () => (rng.next() < 0.3 ? 0 : Math.fround(1 / 0.7)));
          const pp = w.put(probs.slice()), dp = w.put(new Float32Array(T * T)), vT = w.put(new Float32Array(dh * T));
          const [op, qp, mp] = [w.put(dout), w.put(qkv), w.put(dmask)];
          const magnitude = new Float64Array(probs.length);
          for (let z = 0; z < S * H; z++) {
            const s = Math.floor(z / H), h = z % H, v = vOff + Math.floor(h / group) * dh;
            w.k.transpose_strided(vT, qp + 4 * (s * T * W + v), dh, T, W, 1);
            w.k.matmul_strided(dp, op + 4 * (s * T * D + h * dh), vT, T, T, dh, D, 1, T, T, 0);
            if (dropout) w.k.mul(dp, dp, mp + 4 * z * T * T, T * T);
            w.k.attention_softmax_backward(pp + 4 * z * T * T, dp, pp + 4 * z * T * T, scale, T, T);
            for (let i = 0; i < T; i++) {
              const abs = (j: number) => {
                let t = 0;
                for (let d = 0; d < dh; d++) t += Math.abs(dout[(s * T + i) * D + h * dh + d]! * qkv[(s * T + j) * W + v + d]!);
                return dropout ? t * dmask[(z * T + i) * T + j]! : t;
              };
              let row = 0;
              for (let k = 0; k < T; k++) row += abs(k) * probs[(z * T + i) * T + k]!;
              for (let j = 0; j < T; j++) magnitude[(z * T + i) * T + j] = scale * probs[(z * T + i) * T + j]! * (abs(j) + row) + 1e-30;
            }
          }
          const got = await gpu({ probs, dout, qkv, dmask }, (B): DispatchSpec[] => [
            {
              kernel: "attn_dscores", constants: { DROPOUT: dropout }, buffers: [B.probs!, B.dout!, B.qkv!, B.dmask!],
              params: [S * H * T, T, D, H, dh, f(scale), vOff, W, group, T, 0, 0], x: gridGroups(S * H * T),
            },
          ]);
          scaled(`attn_dscores${dropout ? " dropout" : ""}${group > 1 ? " grouped" : ""}`, got.probs!, w.get(pp, probs.length), magnitude, 1e-5);
        }
      }
    }
  });

  it("the attention op: forward and backward on WebGPU (GPU_OPS.attention) vs the WASM op, both layouts, grouped-query", async () => {
    const rng = new Rng(17);
    // [rows, T, D, heads, kvHeads, layout, causal, masked, p]
    const CASES: [number, number, number, number, number, "packed" | "separate", boolean, boolean, number][] = [
      [3, 5, 6, 2, 2, "packed", false, false, 0], [3, 6, 8, 4, 4, "packed", true, true, 0], [2, 65, 8, 2, 2, "packed", true, false, 0],
      [4, 7, 6, 3, 3, "packed", false, true, 0.25], [2, 4, 4, 1, 1, "packed", true, true, 0.5],
      [3, 5, 8, 4, 2, "packed", true, true, 0], [2, 6, 6, 2, 2, "separate", false, true, 0],
      [3, 7, 12, 6, 2, "separate", true, true, 0.25], [2, 65, 8, 4, 1, "separate", true, false, 0],
    ];
    for (const [rows, T, D, heads, kvHeads, layout, causal, masked, p] of CASES) {
      const dropping = p > 0;
      const Dkv = (kvHeads * D) / heads;
      // the inputs' values: packed qkv [T, D + 2 Dkv], or q [T, D], k and v [T, Dkv]; then the mask, then out
      const widths = layout === "packed" ? [D + 2 * Dkv] : [D, Dkv, Dkv];
      const data = widths.map((width) => rng.f32(rows * T * width, -2, 2));
      const m = data.length, outId = m + 1;
      const op: AttentionOp = {
        kind: "attention", layout, kvHeads, inputs: [...data.keys(), ...(masked ? [m] : [])], outputs: [outId], tokens: T, dim: D, heads, causal,
        probs: 0, p, dropMask: dropping ? 1 : -1, dropped: dropping ? 2 : -1, salt: 5,
      };
      const weights = rows * heads * T * T;
      const dout = rng.f32(rows * T * D);
      const mask = Float32Array.from({ length: rows * T }, (_, i) => (i < T ? (i === 0 ? 0 : 1) : rng.next() < 0.3 ? 0 : 1));
      const seed = 1234;
      // WASM
      const w = await wasm();
      const values = [...data.map((d) => w.put(d)), w.put(mask), w.put(new Float32Array(rows * T * D))];
      const saved = [w.put(new Float32Array(weights)), w.put(new Float32Array(weights)), w.put(new Float32Array(weights))];
      const dW = data.map((d) => w.put(new Float32Array(d.length)));
      const ctx: KernelOpContext = {
        k: w.k, value: (id) => values[id]!, state: () => 0, stored: () => 0, dtype: () => 0, grad: () => 0, saved: (id) => (id < 0 ? 0 : saved[id]!),
        workspace: w.put(new Float32Array(attentionOp.workspace!(op, rows))), training: true, seed,
      };
      attentionOp.kernel.forward(ctx, op, rows);
      const outW = w.get(values[outId]!, rows * T * D);
      attentionOp.kernel.backward(ctx, op, rows, [w.put(dout)], [...dW, 0]);
      const dExpected = dW.map((ptr, i) => w.get(ptr, data[i]!.length));
      // WebGPU
      const gpuOp = GPU_OPS.attention!;
      const arrays: Record<string, Float32Array> = { mask, out: new Float32Array(rows * T * D), probs: new Float32Array(weights), dropMask: new Float32Array(weights), dropped: new Float32Array(weights), dout };
      data.forEach((d, i) => ((arrays[`x${i}`] = d), (arrays[`dx${i}`] = new Float32Array(d.length))));
      const got = await gpu(
        arrays,
        (B, step): DispatchSpec[] => {
          const c: GpuOpContext = {
            value: (id) => (id < m ? B[`x${id}`]! : id === m ? B.mask! : B.out!), state: B.x0!, grads: B.x0!, offset: () => 0, trainable: () => false,
            saved: (id) => [B.probs!, B.dropMask!, B.dropped!][id]!, step, none: B.mask!, upload: () => expect.fail("attention uploads nothing"),
          };
          return [...gpuOp.forward(c, op, rows, true), ...gpuOp.backward(c, op, rows, [B.dout!], [...data.map((_, i) => B[`dx${i}`]!), null])];
        },
        { seed },
      );
      const label = `attention op ${layout} T=${T} D=${D} heads=${heads}${kvHeads < heads ? ` kvHeads=${kvHeads}` : ""}${causal ? " causal" : ""}${masked ? " masked" : ""}${dropping ? ` dropout ${p}` : ""}`;
      const flat = (n: number, v: number) => new Float64Array(n).fill(v + 1e-30);
      const maxAbs = (a: Float32Array) => a.reduce((mx, v) => Math.max(mx, Math.abs(v)), 0);
      if (dropping) exact(`${label}: dropout mask`, got.dropMask!, w.get(saved[1]!, weights));
      scaled(`${label}: out`, got.out!, outW, flat(outW.length, maxAbs(outW)), 1e-5);
      dExpected.forEach((e, i) => scaled(`${label}: d${layout === "packed" ? "qkv" : "qkv"[i]}`, got[`dx${i}`]!, e, flat(e.length, maxAbs(e)), 1e-5));
    }
  });

  it("bgemm over grouped heads (a key/value head read by several query heads) and summed heads (their gradients added)", async () => {
    const rng = new Rng(18);
    // [samples, kvHeads, group, M, N, K]: C of key/value head g = sum over r < group of A_{g group + r} B_{g group + r}
    // (dK, dV); and C of query head h = A_h B_{floor(h / group)} (S = Q K^T, O = P V)
    for (const [S, G, group, M, N, K] of [[2, 2, 2, 5, 3, 4], [1, 1, 3, 4, 4, 65], [2, 3, 2, 1, 6, 3]] as const) {
      const H = G * group;
      const w = await wasm();
      const a = rng.f32(S * H * M * K), b = rng.f32(S * H * K * N), bkv = rng.f32(S * G * K * N);
      const summed = w.put(new Float32Array(S * G * M * N)), grouped = w.put(new Float32Array(S * H * M * N));
      const [ap, bp, bkvp] = [w.put(a), w.put(b), w.put(bkv)];
      for (let s = 0; s < S; s++) {
        for (let h = 0; h < H; h++) {
          const g = Math.floor(h / group);
          w.k.matmul_strided(summed + 4 * (s * G + g) * M * N, ap + 4 * (s * H + h) * M * K, bp + 4 * (s * H + h) * K * N, M, N, K, K, 1, N, N, h % group === 0 ? 0 : 1);
          w.k.matmul_strided(grouped + 4 * (s * H + h) * M * N, ap + 4 * (s * H + h) * M * K, bkvp + 4 * (s * G + g) * K * N, M, N, K, K, 1, N, N, 0);
        }
      }
      const got = await gpu({ summed: new Float32Array(S * G * M * N), grouped: new Float32Array(S * H * M * N), a, b, bkv }, (B): DispatchSpec[] => [
        bgemmSpec(M, N, K, S * G, G, 1, { buffer: B.a!, off: 0, rs: K, cs: 1, sample: H * M * K, head: M * K },
          { buffer: B.b!, off: 0, rs: N, cs: 1, sample: H * K * N, head: K * N }, { buffer: B.summed!, off: 0, rs: N, cs: 1, sample: G * M * N, head: M * N }, false, group),
        bgemmSpec(M, N, K, S * H, H, 1, { buffer: B.a!, off: 0, rs: K, cs: 1, sample: H * M * K, head: M * K },
          { buffer: B.bkv!, off: 0, rs: N, cs: 1, sample: G * K * N, head: K * N, group }, { buffer: B.grouped!, off: 0, rs: N, cs: 1, sample: H * M * N, head: M * N }),
      ]);
      const termScale = (n: number, sumOf: (o: number) => number) => Float64Array.from({ length: n }, (_, o) => sumOf(o) + 1e-30);
      scaled("bgemm summed heads", got.summed!, w.get(summed, S * G * M * N), termScale(S * G * M * N, (o) => {
        const z = Math.floor(o / (M * N)), i = Math.floor((o % (M * N)) / N), j = o % N, s = Math.floor(z / G), g = z % G;
        let t = 0;
        for (let r = 0; r < group; r++) for (let k = 0; k < K; k++) t += Math.abs(a[((s * H + g * group + r) * M + i) * K + k]! * b[((s * H + g * group + r) * K + k) * N + j]!);
        return t;
      }), 1e-5);
      scaled("bgemm grouped heads", got.grouped!, w.get(grouped, S * H * M * N), termScale(S * H * M * N, (o) => {
        const z = Math.floor(o / (M * N)), i = Math.floor((o % (M * N)) / N), j = o % N, s = Math.floor(z / H), h = z % H;
        let t = 0;
        for (let k = 0; k < K; k++) t += Math.abs(a[((s * H + h) * M + i) * K + k]! * bkv[((s * G + Math.floor(h / group)) * K + k) * N + j]!);
        return t;
      }), 1e-5);
    }
  });

  it("rope: the rotation (sign 1) and its backward (sign -1) at the house lengths (vs the WASM kernel)", async () => {
    const rng = new Rng(19);
    for (const sign of [1, -1]) {
      for (const [rows, heads] of [[1, 1], [2, 3]] as const) {
        for (const T of LENGTHS.filter((t) => t > 0)) {
          for (const half of LENGTHS.filter((h) => h > 0)) {
            const D = 2 * half, n = T * heads * D;
            const w = await wasm();
            const x = values(rng, rows * n, -3, 3);
            const angles = rng.f32(T * half, -40, 40);
            const table = Float32Array.from([...angles.map(Math.cos), ...angles.map(Math.sin)]);
            const xp = w.put(x), tp = w.put(table), yp = w.put(new Float32Array(rows * n));
            for (let b = 0; b < rows; b++) w.k.rope(yp + 4 * b * n, xp + 4 * b * n, tp, tp + 4 * T * half, sign, T, heads, D);
            const expected = w.get(yp, rows * n);
            const got = await gpu({ y: new Float32Array(rows * n), x, table }, (B): DispatchSpec[] => [
              { kernel: "rope", buffers: [B.y!, B.x!, B.table!], params: [rows * T * heads * half, T, heads, half, f(sign), 0, 0, 0], x: gridGroups(rows * T * heads * half) },
            ]);
            // each output is one product minus or plus another: 1e-6 of |x1 c| + |x2 s| covers a fused multiply-add
            const scale = Float64Array.from(expected, (_, e) => {
              const i = e % D, row = Math.floor(e / D), t = Math.floor(row / heads) % T, k = i % half;
              const [x1, x2] = i < half ? [x[e]!, x[e + half]!] : [x[e - half]!, x[e]!];
              return Math.abs(x1 * table[t * half + k]!) + Math.abs(x2 * table[(T + t) * half + k]!) + 1e-30;
            });
            scaled("rope", got.y!, expected, scale, 1e-6);
          }
        }
      }
    }
  });

  it("the rope and mul ops: forward and backward on WebGPU (GPU_OPS) vs the WASM ops, the angle table uploaded", async () => {
    const rng = new Rng(20);
    for (const [rows, T, heads, headDim, theta] of [[2, 5, 2, 6, 10000], [3, 65, 1, 16, 500000], [1, 7, 4, 10, 10000]] as const) {
      const op: RopeOp = { kind: "rope", inputs: [0], outputs: [1], tokens: T, heads, headDim, theta, table: 0 };
      const n = rows * T * heads * headDim;
      const x = rng.f32(n, -2, 2), dy = rng.f32(n);
      const w = await wasm();
      const ptr = { x: w.put(x), y: w.put(new Float32Array(n)), table: w.put(new Float32Array(T * headDim)), dy: w.put(dy), dx: w.put(new Float32Array(n)) };
      const c = wasmOp(w, [ptr.x, ptr.y], [], [], [ptr.table], 0);
      ropeOp.kernel.forward(c, op, rows);
      ropeOp.kernel.backward(c, op, rows, [ptr.dy], [ptr.dx]);
      const got = await gpu({ x, y: new Float32Array(n), table: new Float32Array(T * headDim), dy, dx: new Float32Array(n) }, (B, step) => {
        const ctx = { ...gpuOp(B, step, []), saved: () => B.table! };
        return [...GPU_OPS.rope!.forward(ctx, op, rows, true), ...GPU_OPS.rope!.backward(ctx, op, rows, [B.dy!], [B.dx!])];
      });
      const label = `rope op T=${T} heads=${heads} headDim=${headDim} theta=${theta}`;
      // the table is the kernel's, bit for bit (computed on the CPU as rope_table computes it)
      exact(`${label}: table`, got.table!, w.get(ptr.table, T * headDim));
      const flat = (a: Float32Array) => new Float64Array(a.length).fill(a.reduce((mx, v) => Math.max(mx, Math.abs(v)), 0) + 1e-30);
      const yW = w.get(ptr.y, n), dxW = w.get(ptr.dx, n);
      scaled(`${label}: y`, got.y!, yW, flat(yW), 1e-6);
      scaled(`${label}: dx`, got.dx!, dxW, flat(dxW), 1e-6);
    }
    for (const n of EL) {
      const op: MulOp = { kind: "mul", inputs: [0, 1], outputs: [2], n };
      const a = values(rng, 2 * n), b = values(rng, 2 * n), dy = rng.f32(2 * n);
      const w = await wasm();
      const ptr = { a: w.put(a), b: w.put(b), y: w.put(new Float32Array(2 * n)), dy: w.put(dy), da: w.put(new Float32Array(2 * n)), db: w.put(new Float32Array(2 * n)) };
      const c = wasmOp(w, [ptr.a, ptr.b, ptr.y], [], [], [], 0);
      mulOp.kernel.forward(c, op, 2);
      mulOp.kernel.backward(c, op, 2, [ptr.dy], [ptr.da, ptr.db]);
      const got = await gpu({ a, b, y: new Float32Array(2 * n), dy, da: new Float32Array(2 * n), db: new Float32Array(2 * n) }, (B, step) => {
        const ctx = { ...gpuOp(B, step, []), value: (id: number) => [B.a!, B.b!, B.y!][id]! };
        return [...GPU_OPS.mul!.forward(ctx, op, 2, true), ...GPU_OPS.mul!.backward(ctx, op, 2, [B.dy!], [B.da!, B.db!])];
      });
      exact("mul op y", got.y!, w.get(ptr.y, 2 * n));
      exact("mul op da", got.da!, w.get(ptr.da, 2 * n));
      exact("mul op db", got.db!, w.get(ptr.db, 2 * n));
    }
  });

  it("bias_grad (accumulates; the same order of additions)", async () => {
    const rng = new Rng(12);
    for (const cols of LENGTHS) {
      for (const rows of [0, 1, 5, 65]) {
        const w = await wasm();
        const dbias = rng.f32(cols), dout = rng.f32(rows * cols);
        const p = w.put(dbias.slice());
        w.k.bias_grad(p, w.put(dout), rows, cols);
        const off = 3;
        const padded = new Float32Array(cols + off);
        padded.set(dbias, off);
        const got = await gpu({ dbias: padded, dout }, (B): DispatchSpec[] => [
          { kernel: "bias_grad", buffers: [B.dbias!, B.dout!], params: [cols, rows, off, 0], x: gridGroups(cols) },
        ]);
        exact("bias_grad", got.dbias!.subarray(off), w.get(p, cols));
      }
    }
  });

  for (const kind of Object.keys(ACT) as (keyof typeof ACT)[]) {
    it(`${kind} forward and backward`, async () => {
      const rng = new Rng(13 + ACT[kind]);
      const slope = kind === "leaky_relu" ? Math.fround(0.2) : 0;
      for (const n of EL) {
        const w = await wasm();
        const x = values(rng, n), dout = rng.f32(n);
        const xp = w.put(x), outp = w.put(new Float32Array(n)), doutp = w.put(dout), dinp = w.put(new Float32Array(n));
        w.k.activation_forward(outp, xp, ACT[kind], slope, n);
        w.k.activation_backward(dinp, doutp, xp, outp, ACT[kind], slope, n);
        const expectedOut = w.get(outp, n), expectedDinp = w.get(dinp, n);
        // the backward pass is fed the WASM forward output, so each pass is compared on its own
        const got = await gpu({ out: new Float32Array(n), x, dout, y: expectedOut, dinp: new Float32Array(n) }, (B): DispatchSpec[] => [
          { kernel: "act_forward", constants: { ACT: ACT[kind] }, buffers: [B.out!, B.x!], params: [n, f(slope), 0, 0], x: gridGroups(n) },
          { kernel: "act_backward", constants: { ACT: ACT[kind] }, buffers: [B.dinp!, B.dout!, B.x!, B.y!], params: [n, f(slope), 0, 0], x: gridGroups(n) },
        ]);
        if (kind === "relu" || kind === "leaky_relu") {
          exact(`${kind} forward`, got.out!, expectedOut);
          exact(`${kind} backward`, got.dinp!, expectedDinp);
        } else {
          close(`${kind} forward`, got.out!, expectedOut, 8, 1e-6);
          close(`${kind} backward`, got.dinp!, expectedDinp, 8, 1e-6);
        }
      }
    });
  }

  it("dropout: the same masks as the WASM kernel, bit for bit; mul (its backward)", async () => {
    const rng = new Rng(21);
    for (const p of [0, 0.2, 0.5, 1]) {
      for (const n of EL) {
        const w = await wasm();
        const x = rng.f32(n), dout = rng.f32(n);
        const seed = rng.u32();
        const salt = Math.imul(3, 0x9e3779b9) >>> 0; // layer 3
        const outp = w.put(new Float32Array(n)), maskp = w.put(new Float32Array(n)), dinp = w.put(new Float32Array(n));
        w.k.dropout_forward(outp, maskp, w.put(x), p, (seed + salt) >>> 0, n);
        w.k.mul(dinp, w.put(dout), maskp, n);
        const pf = Math.fround(p);
        const got = await gpu(
          { out: new Float32Array(n), mask: new Float32Array(n), x, dout, dinp: new Float32Array(n) },
          (B, step): DispatchSpec[] => [
            { kernel: "dropout", buffers: [B.out!, B.mask!, B.x!], params: [n, Math.ceil(pf * 16777216), f(pf < 1 ? Math.fround(1 / (1 - pf)) : 0), salt], step, x: gridGroups(n) },
            { kernel: "mul", buffers: [B.dinp!, B.dout!, B.mask!], params: [n, 0, 0, 0], x: gridGroups(n) },
          ],
          { seed },
        );
        exact("dropout mask", got.mask!, w.get(maskp, n));
        exact("dropout out", got.out!, w.get(outp, n));
        exact("mul", got.dinp!, w.get(dinp, n));
      }
    }
  });

  it("copy, fill, scale, gather", async () => {
    const rng = new Rng(22);
    for (const n of EL) {
      const w = await wasm();
      const x = rng.f32(n), s = Math.fround(rng.uniform(-2, 2));
      const xs = w.put(x.slice());
      w.k.scale(xs, s, n);
      const cols = 3, rows = n;
      const src = rng.f32(70 * cols);
      const idx = Int32Array.from({ length: rows }, () => rng.int(70));
      const gp = w.put(new Float32Array(rows * cols));
      w.k.gather_rows(gp, w.put(src), w.put(idx), rows, cols);
      const got = await gpu(
        { copy: new Float32Array(n + 2), x, fill: new Float32Array(n), scaled: x.slice(), gathered: new Float32Array(rows * cols), src, idx: new Uint32Array(idx.buffer) },
        (B): DispatchSpec[] => [
          { kernel: "copy", buffers: [B.copy!, B.x!], params: [n, 2, 0, 0], x: gridGroups(n) },
          { kernel: "fill", buffers: [B.fill!], params: [n, f(0.75), 0, 0], x: gridGroups(n) },
          { kernel: "scale", buffers: [B.scaled!], params: [n, f(s), 0, 0], x: gridGroups(n) },
          { kernel: "gather", buffers: [B.gathered!, B.src!, B.idx!], params: [rows * cols, cols, 0, 0], x: gridGroups(rows * cols) },
        ],
      );
      exact("copy", got.copy!, Float32Array.from([0, 0, ...x]));
      exact("fill", got.fill!, new Float32Array(n).fill(0.75));
      exact("scale", got.scaled!, w.get(xs, n));
      exact("gather", got.gathered!, w.get(gp, rows * cols));
    }
  });

  it("add and accumulate (residual sums, LoRA's scaled sums, and a value's gradient from several readers)", async () => {
    const rng = new Rng(23);
    for (const n of EL) {
      const w = await wasm();
      const a = rng.f32(n), b = rng.f32(n), into = rng.f32(n);
      const sum = w.put(new Float32Array(n)), acc = w.put(into.slice());
      w.k.add(sum, w.put(a), w.put(b), n);
      w.k.axpy(acc, w.put(b), 1, n);
      // a LoRA sum, a + s b with the product rounded first (ops/elementwise.ts addOp: copy, scale, add)
      const scaled = w.put(b);
      w.k.scale(scaled, 0.75, n);
      w.k.add(scaled, w.put(a), scaled, n);
      const got = await gpu({ sum: new Float32Array(n), scaled: new Float32Array(n), a, b, acc: into.slice() }, (B): DispatchSpec[] => [
        { kernel: "add", buffers: [B.sum!, B.a!, B.b!], params: [n, { f: 1 }, 0, 0], x: gridGroups(n) },
        { kernel: "add", buffers: [B.scaled!, B.a!, B.b!], params: [n, { f: 0.75 }, 0, 0], x: gridGroups(n) },
        { kernel: "accumulate", buffers: [B.acc!, B.b!], params: [n, 0, 0, 0], x: gridGroups(n) },
      ]);
      exact("add", got.sum!, w.get(sum, n));
      exact("add", got.scaled!, w.get(scaled, n));
      exact("accumulate", got.acc!, w.get(acc, n));
    }
  });

  it("accuracy: argmax with ignore_index (class losses), logit signs against 0/1 or +-1 labels (binary losses)", async () => {
    const rng = new Rng(24);
    const C = 3;
    for (const rows of [0, 1, 5, 300]) {
      const x = rng.f32(rows * C, -2, 2);
      const labels = Float32Array.from({ length: rows }, (_, i) => (i % 7 === 3 ? -100 : rng.int(C)));
      const binary = Float32Array.from({ length: rows * C }, () => rng.int(2));
      const signed = Float32Array.from({ length: rows * C }, () => rng.int(3) - 1);
      // the rule of losses.ts (argmaxAccuracy, signAccuracy), written out
      let correct = 0, counted = 0;
      for (let i = 0; i < rows; i++) {
        if (labels[i] === -100) continue;
        let best = 0;
        for (let c = 1; c < C; c++) if (x[i * C + c]! > x[i * C + best]!) best = c;
        counted++;
        if (best === labels[i]) correct++;
      }
      const signs = (y: Float32Array, positive: (t: number) => boolean) => x.reduce((n, v, i) => n + (v > 0 === positive(y[i]!) ? 1 : 0), 0);
      const statusOf = (got: Float32Array) => new Uint32Array(got.buffer, got.byteOffset, 8);
      for (const [kind, y, params, expected] of [
        [0, labels, [rows, C, 1, { i: -100 }], [correct, counted]],
        [1, binary, [rows, C, 0, { i: 0 }], [signs(binary, (t) => t > 0.5), rows * C]],
        [2, signed, [rows, C, 0, { i: 0 }], [signs(signed, (t) => t === 1), rows * C]],
      ] as const) {
        const got = await gpu({ x, y, status: new Uint32Array(8) }, (B): DispatchSpec[] => [
          { kernel: "accuracy", constants: { KIND: kind }, buffers: [B.x!, B.y!, B.status!], params: [...params], x: 1 },
        ]);
        const status = statusOf(got.status!);
        expect([status[6], status[7]], `accuracy KIND ${kind} rows ${rows}`).toEqual([...expected]);
      }
    }
  });

  it("restore: the last finite parameters come back only when the weight fault bit is set", async () => {
    const rng = new Rng(25);
    for (const n of EL) {
      const params = rng.f32(n), last = rng.f32(n);
      for (const bits of [0, 1 | 2 | 4, 8, 8 | 1]) {
        const status = new Uint32Array(8);
        status[1] = bits;
        const got = await gpu({ params: params.slice(), last, status }, (B): DispatchSpec[] => [
          { kernel: "restore", buffers: [B.params!, B.last!, B.status!], params: [n, 8, 0, 0], x: gridGroups(n) }, // faults: FAULT_WEIGHT
        ]);
        exact(`restore bits=${bits}`, got.params!, bits & 8 ? last : params);
      }
    }
  });

  it("embedding forward and backward (the same order of additions), add_broadcast", async () => {
    const rng = new Rng(23);
    const V = 7, off = 5; // the weight sits at an offset of the state block, as in a model
    for (const dim of LENGTHS) {
      for (const [tokens, paddingIdx] of [[0, -1], [1, -1], [9, 2], [40, -1]] as const) {
        const w = await wasm();
        const weight = rng.f32(V * dim), ids = Float32Array.from({ length: tokens }, () => rng.int(V));
        const dout = rng.f32(tokens * dim), grads = rng.f32(V * dim);
        const outp = w.put(new Float32Array(tokens * dim)), idsp = w.put(ids), gradp = w.put(grads.slice());
        w.k.embedding_forward(outp, w.put(weight), idsp, tokens, dim);
        w.k.embedding_backward(gradp, w.put(dout), idsp, tokens, dim, paddingIdx);
        const rows = 3, inp = rng.f32(rows * dim);
        const sump = w.put(new Float32Array(rows * dim));
        w.k.add_broadcast(sump, w.put(inp), w.put(weight), rows, dim);
        const at = (x: Float32Array) => Float32Array.from([...new Float32Array(off).fill(9), ...x]);
        const got = await gpu(
          { out: new Float32Array(tokens * dim), state: at(weight), ids, grads: at(grads), dout, sum: new Float32Array(rows * dim), inp },
          (B): DispatchSpec[] => [
            { kernel: "embedding_forward", buffers: [B.out!, B.state!, B.ids!], params: [tokens * dim, dim, off, 0], x: gridGroups(tokens * dim) },
            { kernel: "embedding_backward", buffers: [B.grads!, B.dout!, B.ids!], params: [dim, tokens, off, { i: paddingIdx }], x: gridGroups(dim) },
            { kernel: "add_broadcast", buffers: [B.sum!, B.inp!, B.state!], params: [rows * dim, dim, off, 0], x: gridGroups(rows * dim) },
          ],
        );
        exact("embedding_forward", got.out!, w.get(outp, tokens * dim));
        exact("embedding_backward", got.grads!, at(w.get(gradp, V * dim)));
        exact("add_broadcast", got.sum!, w.get(sump, rows * dim));
      }
    }
  });

  it("token_pool forward and backward: every mode, with and without a mask", async () => {
    const rng = new Rng(24);
    for (const mode of [0, 1, 2, 3]) {
      for (const masked of [false, true]) {
        for (const [rows, T] of [[1, 1], [3, 5], [2, 9]] as const) {
          for (const D of LENGTHS) {
            const w = await wasm();
            const x = rng.f32(rows * T * D, -2, 2);
            for (let i = 0; i < x.length; i += 5) x[i] = 1.5; // ties: max keeps the first
            const mask = Float32Array.from({ length: rows * T }, () => (masked && rng.next() < 0.4 ? 0 : 1));
            for (let r = 0; r < rows; r++) mask[r * T + rng.int(T)] = 1;
            const dout = rng.f32(rows * D);
            const xp = w.put(x), mp = masked ? w.put(mask) : 0;
            const outp = w.put(new Float32Array(rows * D)), amp = w.put(new Float32Array(rows * D)), dxp = w.put(new Float32Array(rows * T * D));
            w.k.token_pool_forward(outp, amp, xp, mp, mode, rows, T, D);
            w.k.token_pool_backward(dxp, w.put(dout), amp, mp, mode, rows, T, D);
            const params = (n: number) => [n, T, D, mode, masked ? 1 : 0, 0, 0, 0];
            const got = await gpu(
              { out: new Float32Array(rows * D), argmax: new Float32Array(rows * D), x, mask, dout, dx: new Float32Array(rows * T * D).fill(-7) },
              (B): DispatchSpec[] => [
                { kernel: "token_pool_forward", buffers: [B.out!, B.argmax!, B.x!, B.mask!], params: params(rows * D), x: gridGroups(rows * D) },
                { kernel: "token_pool_backward", buffers: [B.dx!, B.dout!, B.argmax!, B.mask!], params: params(rows * T * D), x: gridGroups(rows * T * D) },
              ],
            );
            const expected = w.get(outp, rows * D), expectedDx = w.get(dxp, rows * T * D);
            if (mode === 0) {
              // the mean divides (WGSL's division is within 2.5 ulps, not correctly rounded)
              close("token_pool_forward mean", got.out!, expected, 3, 0);
              close("token_pool_backward mean", got.dx!, expectedDx, 3, 0);
            } else {
              exact("token_pool_forward", got.out!, expected);
              exact("token_pool_backward", got.dx!, expectedDx);
            }
            if (mode === 1) exact("token_pool_forward argmax", got.argmax!, w.get(amp, rows * D));
          }
        }
      }
    }
  });

  it("all_finite flags NaN and +-Inf only", async () => {
    for (const n of LENGTHS) {
      for (const bad of [null, NaN, Infinity, -Infinity, 3.4e38]) {
        const x = new Rng(n).f32(n);
        if (bad !== null && n > 0) x[n - 1] = bad;
        const w = await wasm();
        const expected = w.k.all_finite(w.put(x), n) === 1 ? 0 : 2;
        const got = await gpu({ x, status: new Uint32Array(8) }, (B): DispatchSpec[] => [
          { kernel: "all_finite", buffers: [B.x!, B.status!], params: [n, 2, 0, 0], x: gridGroups(n) },
        ]);
        exact("all_finite", [new Uint32Array(got.status!.buffer, got.status!.byteOffset, 8)[1]!], [expected]);
      }
    }
  });

  it("global norms (sum of squares, max |g|, sum |g|^p) and the clip coefficient", async () => {
    const rng = new Rng(23);
    for (const n of [...LENGTHS, 70000]) {
      for (const type of [2, "inf", 1, 3] as const) {
        const w = await wasm();
        const g = rng.f32(n, -2, 2);
        const gp = w.put(g);
        const total =
          type === "inf" ? Math.fround(w.k.max_abs(gp, n))
          : type === 2 ? Math.fround(Math.sqrt(w.k.sum_squares(gp, n)))
          : Math.fround(w.k.sum_abs_pow(gp, type, n) ** (1 / type));
        const kind = type === "inf" ? NORM.maxAbs : type === 2 ? NORM.sumSquares : type === 1 ? NORM.sumAbs : NORM.sumAbsPow;
        const groups = Math.max(1, Math.min(Math.ceil(n / 256), 256));
        const pw = typeof type === "number" ? type : 1;
        const got = await gpu({ g, partials: new Float32Array(groups), status: new Uint32Array(8) }, (B): DispatchSpec[] => [
          { kernel: "norm_partial", constants: { NORM: kind }, buffers: [B.g!, B.partials!], params: [n, f(pw), 0, 0], x: groups },
          { kernel: "norm_final", constants: { NORM: kind }, buffers: [B.partials!, B.status!], params: [groups, f(0.5), f(1 / pw), 0], x: 1 },
        ]);
        relative(`norm ${type}`, got.status![2]!, total, 1e-5);
        relative(`clip coef ${type}`, got.status![3]!, Math.min(Math.fround(0.5 / Math.fround(total + 1e-6)), 1), 1e-5);
      }
    }
  });

  // ---------------------------------------------------------------- convolution and pooling
  // The WASM side runs the ops of src/engine/ops (im2col + GEMM, the pool kernels); the GPU side
  // the dispatches GPU_OPS builds for the same op, over a state block with offsets.

  /** A WASM kernel-op context: values and state by pointer, and a workspace. */
  const wasmOp = (w: Wasm, values: number[], state: number[], grads: number[], saved: number[], workspace: number): KernelOpContext => ({
    k: w.k,
    value: (id) => values[id]!,
    state: (i) => (i < 0 ? 0 : state[i]!),
    stored: (i) => (i < 0 ? 0 : state[i]!),
    dtype: () => 0,
    grad: (i) => (i < 0 ? 0 : grads[i]!),
    saved: (id) => saved[id]!,
    workspace: w.put(new Float32Array(Math.max(4, workspace))),
    training: true,
    seed: 0,
  });
  /** A GPU op context over named test buffers: value 0 is x, value 1 is y; state 0 the weight, 1 the bias. */
  const gpuOp = (B: Record<string, GPUBuffer>, step: GPUBuffer, offsets: number[]): GpuOpContext => ({
    value: (id) => (id === 0 ? B.x! : B.y!),
    state: B.state!,
    grads: B.grads!,
    offset: (i) => offsets[i]!,
    trainable: () => true,
    saved: () => B.saved!,
    step,
    none: B.x!,
    upload: (buffer, data) => device!.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength),
  });

  const CONVS: (Omit<ConvOp, "kind" | "inputs" | "outputs" | "weight" | "bias" | "W" | "OW"> & { label: string })[] = [
    { label: "3x3 padding 1", C: 2, O: 3, groups: 1, H: 4, KH: 3, KW: 3, SH: 1, SW: 1, PH: 1, PW: 1, DH: 1, DW: 1, OH: 4, rowChunk: 4 },
    { label: "2x3 stride 2x1 dilation 1x2 groups 2, chunks of 2 rows", C: 4, O: 6, groups: 2, H: 7, KH: 2, KW: 3, SH: 2, SW: 1, PH: 1, PW: 2, DH: 1, DW: 2, OH: 4, rowChunk: 2 },
    { label: "1-d kernel 3 stride 2 groups 3", C: 3, O: 3, groups: 3, H: 1, KH: 1, KW: 3, SH: 1, SW: 2, PH: 0, PW: 1, DH: 1, DW: 1, OH: 1, rowChunk: 1 },
  ];
  for (const geo of CONVS) {
    it(`conv ${geo.label}: forward, dW, db, dx vs the WASM op (im2col + GEMM)`, async () => {
      const rng = new Rng(41 + geo.C);
      for (const W of LENGTHS) {
        for (const rows of [1, 3]) {
          const OW = Math.max(0, Math.floor((W + 2 * geo.PW - geo.DW * (geo.KW - 1) - 1) / geo.SW) + 1);
          const op: ConvOp = { ...geo, kind: "conv", inputs: [0], outputs: [1], weight: 0, bias: 1, W, OW };
          const image = geo.C * geo.H * W, outs = geo.O * geo.OH * OW, wn = geo.O * (geo.C / geo.groups) * geo.KH * geo.KW;
          const x = rng.f32(rows * image), Wt = rng.f32(wn), b = rng.f32(geo.O), dy = rng.f32(rows * outs);
          const dW0 = rng.f32(wn), db0 = rng.f32(geo.O);
          // the WASM op, and again on absolute values: each output's sum of |terms| (the tolerance's scale)
          const run = async (xv: Float32Array, Wv: Float32Array, bv: Float32Array, dyv: Float32Array, dWv: Float32Array, dbv: Float32Array) => {
            const w = await wasm();
            const ptr = { x: w.put(xv), y: w.put(new Float32Array(rows * outs)), W: w.put(Wv), b: w.put(bv), dy: w.put(dyv), dW: w.put(dWv.slice()), db: w.put(dbv.slice()), dx: w.put(new Float32Array(rows * image)) };
            const c = wasmOp(w, [ptr.x, ptr.y], [ptr.W, ptr.b], [ptr.dW, ptr.db], [], convOp.workspace!(op, rows));
            convOp.kernel.forward(c, op, rows);
            convOp.kernel.backward(c, op, rows, [ptr.dy], [ptr.dx]);
            return { y: w.get(ptr.y, rows * outs), dW: w.get(ptr.dW, wn), db: w.get(ptr.db, geo.O), dx: w.get(ptr.dx, rows * image) };
          };
          const expected = await run(x, Wt, b, dy, dW0, db0);
          const abs = (a: Float32Array) => a.map(Math.abs);
          const scale = await run(abs(x), abs(Wt), abs(b), abs(dy), abs(dW0), abs(db0));
          const wOff = 3, bOff = 3 + wn + 2;
          const state = new Float32Array(bOff + geo.O + 1), grads = new Float32Array(bOff + geo.O + 1);
          state.set(Wt, wOff), state.set(b, bOff), grads.set(dW0, wOff), grads.set(db0, bOff);
          const got = await gpu({ x, y: new Float32Array(rows * outs), state, grads, dy, dx: new Float32Array(rows * image) }, (B, step) => {
            const c = gpuOp(B, step, [wOff, bOff]);
            return [...GPU_OPS.conv!.forward(c, op, rows, true), ...GPU_OPS.conv!.backward(c, op, rows, [B.dy!], [B.dx!])];
          });
          const tiny = (a: Float32Array) => Float64Array.from(a, (v) => v + 1e-30);
          scaled(`conv ${geo.label} forward`, got.y!, expected.y, tiny(scale.y), 1e-5);
          scaled(`conv ${geo.label} dx`, got.dx!, expected.dx, tiny(scale.dx), 1e-5);
          scaled(`conv ${geo.label} dW`, got.grads!.subarray(wOff, wOff + wn), expected.dW, tiny(scale.dW), 1e-5);
          exact(`conv ${geo.label} db (the same order of additions)`, got.grads!.subarray(bOff, bOff + geo.O), expected.db);
          exact(`conv ${geo.label} state untouched`, got.state!, state);
        }
      }
    });
  }

  /** Pooling windows: [KH, KW, SH, SW, PH, PW, DH, DW, ceil_mode]. */
  const POOL_WINDOWS = [
    [2, 2, 2, 2, 0, 0, 1, 1, false],
    [3, 3, 2, 2, 1, 1, 1, 1, true],
    [2, 3, 1, 2, 1, 1, 2, 1, false],
  ] as const;
  const poolOut = (n: number, k: number, st: number, pd: number, d: number, ceil: boolean) => {
    if (n === 0) return 0;
    let o = Math.floor((n + 2 * pd - d * (k - 1) - 1 + (ceil ? st - 1 : 0)) / st) + 1;
    if (ceil && (o - 1) * st >= n + pd) o--;
    return Math.max(0, o);
  };
  for (const kind of ["max_pool", "avg_pool", "avg_pool count_include_pad=false divisor", "adaptive_avg_pool"] as const) {
    it(`${kind}: forward and backward vs the WASM kernels`, async () => {
      const rng = new Rng(51 + kind.length);
      for (const win of POOL_WINDOWS) {
        for (const W of LENGTHS) {
          const [C, H, rows] = [2, 5, 2];
          const adaptive = kind === "adaptive_avg_pool";
          const [KH, KW, SH, SW, PH, PW, , , ceil] = win;
          const [DH, DW] = kind === "max_pool" ? [win[6], win[7]] : [1, 1];
          const OH = adaptive ? 3 : poolOut(H, KH, SH, PH, DH, ceil);
          const OW = adaptive ? (W === 0 ? 0 : Math.max(1, W - 2)) : poolOut(W, KW, SW, PW, DW, ceil);
          const geo = { inputs: [0], outputs: [1], C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW };
          const op: MaxPoolOp | AvgPoolOp = kind === "max_pool"
            ? { kind: "max_pool", ...geo, indices: 0 }
            : { kind: "avg_pool", ...geo, adaptive, countIncludePad: kind === "avg_pool", divisor: kind.includes("divisor") ? 3 : 0 };
          const image = C * H * W, outs = C * OH * OW;
          const x = values(rng, rows * image), dy = rng.f32(rows * outs);
          for (let i = 5; i < x.length; i += 13) x[i] = x[i - 2]!; // ties
          if (x.length > 9) (x[3] = NaN), (x[9] = -Infinity);
          const w = await wasm();
          const ptr = { x: w.put(x), y: w.put(new Float32Array(rows * outs)), saved: w.put(new Float32Array(rows * outs)), dy: w.put(dy), dx: w.put(new Float32Array(rows * image)) };
          const c = wasmOp(w, [ptr.x, ptr.y], [], [], [ptr.saved], 0);
          const def = op.kind === "max_pool" ? maxPoolOp : avgPoolOp;
          (def.kernel.forward as (c: KernelOpContext, op: MaxPoolOp | AvgPoolOp, rows: number) => void)(c, op, rows);
          (def.kernel.backward as (c: KernelOpContext, op: MaxPoolOp | AvgPoolOp, rows: number, dy: number[], dx: number[]) => void)(c, op, rows, [ptr.dy], [ptr.dx]);
          const got = await gpu({ x, y: new Float32Array(rows * outs), saved: new Float32Array(rows * outs), dy, dx: new Float32Array(rows * image), state: new Float32Array(4), grads: new Float32Array(4) }, (B, step) => {
            const g = gpuOp(B, step, []);
            const gop = (op.kind === "max_pool" ? GPU_OPS.max_pool : GPU_OPS.avg_pool) as GpuOp<MaxPoolOp | AvgPoolOp>;
            return [...gop.forward(g, op, rows, true), ...gop.backward(g, op, rows, [B.dy!], [B.dx!])];
          });
          if (op.kind === "max_pool") {
            exact("max_pool forward", got.y!, w.get(ptr.y, rows * outs));
            exact("max_pool indices", new Int32Array(got.saved!.buffer, got.saved!.byteOffset, rows * outs), new Int32Array(w.memory.buffer, ptr.saved, rows * outs).slice());
            exact("max_pool backward (the same order of additions)", got.dx!, w.get(ptr.dx, rows * image));
          } else {
            // WGSL's division need not be correctly rounded
            close(`${kind} forward`, got.y!, w.get(ptr.y, rows * outs), 2, 0);
            close(`${kind} backward`, got.dx!, w.get(ptr.dx, rows * image), 2, 0);
          }
        }
      }
    });
  }

  // ---------------------------------------------------------------- losses

  const elementwiseLosses = [
    { name: "mse", kind: LOSS.mse, b: 0 },
    { name: "l1", kind: LOSS.l1, b: 0 },
    { name: "huber", kind: LOSS.huber, b: 0.7 },
    { name: "smooth_l1", kind: LOSS.smooth_l1, b: 0.5 },
    { name: "hinge", kind: LOSS.hinge, b: 0 },
    { name: "bce_with_logits", kind: LOSS.bce, b: 0 },
    { name: "bce_with_logits pos_weight", kind: LOSS.bce, b: 0 },
  ] as const;
  for (const loss of elementwiseLosses) {
    it(`${loss.name}: loss and gradient`, async () => {
      const rng = new Rng(31 + loss.kind);
      const C = 3;
      for (const n of LENGTHS.filter((n) => n > 0).map((n) => n * C)) {
        const w = await wasm();
        const x = values(rng, n, -3, 3);
        const y = loss.kind === LOSS.hinge || loss.kind === LOSS.bce ? Float32Array.from({ length: n }, () => rng.int(2)) : rng.f32(n, -3, 3);
        const pw = loss.name.endsWith("pos_weight") ? Float32Array.from([0.5, 2, 3]) : null;
        const gp = w.put(new Float32Array(n));
        const [xp, yp] = [w.put(x), w.put(y)];
        const k = w.k;
        const value =
          loss.kind === LOSS.mse ? k.mse_loss(gp, xp, yp, n)
          : loss.kind === LOSS.l1 ? k.l1_loss(gp, xp, yp, n)
          : loss.kind === LOSS.huber ? k.huber_loss(gp, xp, yp, loss.b, n)
          : loss.kind === LOSS.smooth_l1 ? k.smooth_l1_loss(gp, xp, yp, loss.b, n)
          : loss.kind === LOSS.hinge ? k.hinge_loss(gp, xp, yp, n)
          : k.bce_with_logits_loss(gp, xp, yp, pw ? w.put(pw) : 0, n / C, C);
        const got = await gpu(
          { grad: new Float32Array(n), x, y, pw: pw ?? new Float32Array(1), terms: new Float32Array(n), status: new Uint32Array(8) },
          (B): DispatchSpec[] => [
            {
              kernel: "loss_elementwise",
              constants: { LOSS: loss.kind, WRITE_GRAD: true },
              buffers: [B.grad!, B.x!, B.y!, B.pw!, B.terms!],
              params: [n, f(loss.kind === LOSS.mse ? 2 / n : 1 / n), f(loss.b), C, pw ? 1 : 0, 0, 0, 0],
              x: gridGroups(n),
            },
            { kernel: "loss_reduce", constants: { MODE: 0 }, buffers: [B.terms!, B.status!], params: [n, f(n), 0, 1, 0, 0, 0, 0], x: 1 },
          ],
        );
        relative(`${loss.name} loss`, got.status![0]!, value, 1e-5);
        close(`${loss.name} grad`, got.grad!, w.get(gp, n), 8, 1e-6 / n);
      }
    });
  }

  it("cross_entropy (weight, ignore_index, label smoothing): loss and gradient", async () => {
    const rng = new Rng(41);
    for (const [B, C] of [[1, 1], [1, 3], [3, 4], [5, 10], [65, 3], [64, 5]] as const) {
      for (const opts of [
        { weight: false, ignore: -100, eps: 0 },
        { weight: true, ignore: 1, eps: 0 },
        { weight: true, ignore: -100, eps: 0.1 },
      ]) {
        const w = await wasm();
        const x = values(rng, B * C, -5, 5);
        const y = Float32Array.from({ length: B }, () => rng.int(C));
        if (B > 2) y[1] = opts.ignore; // one ignored row (or a real class)
        if (y.every((v) => v === opts.ignore)) continue; // W = 0: NaN on both sides
        const weight = opts.weight ? rng.f32(C, 0.2, 2) : null;
        const gp = w.put(new Float32Array(B * C));
        const eps = Math.fround(opts.eps);
        const value = w.k.cross_entropy_loss(gp, w.put(x), w.put(y), weight ? w.put(weight) : 0, B, C, opts.ignore, eps);
        let sumW = 0;
        for (let c = 0; c < C; c++) sumW += weight ? weight[c]! : 1;
        const got = await gpu(
          { grad: new Float32Array(B * C), x, y, weight: weight ?? new Float32Array(1), terms: new Float32Array(3 * B), status: new Uint32Array(8) },
          (b): DispatchSpec[] => [
            {
              kernel: "cross_entropy",
              constants: { WRITE_GRAD: true },
              buffers: [b.grad!, b.x!, b.y!, b.weight!, b.terms!],
              params: [B, C, { i: opts.ignore }, weight ? 1 : 0, f(eps), f(1 - eps), f(eps / C), f(sumW)],
              x: gridGroups(B),
            },
            { kernel: "loss_reduce", constants: { MODE: 1 }, buffers: [b.terms!, b.status!], params: [B, f(0), 0, 1, f(1 - eps), f(eps / C), 0, 0], x: 1 },
            { kernel: "ce_scale", buffers: [b.grad!, b.status!], params: [B * C, 0, 0, 0], x: gridGroups(B * C) },
          ],
        );
        relative("cross_entropy loss", got.status![0]!, value, 1e-5);
        const expected = w.get(gp, B * C);
        const scale = Math.max(...Array.from(expected, Math.abs), 1e-30);
        close("cross_entropy grad", got.grad!, expected, 16, 1e-6 * scale);
      }
    }
  });

  it("multi_margin (p 1 and 2, weight, margin): loss and gradient", async () => {
    const rng = new Rng(42);
    for (const [B, C] of [[1, 2], [3, 4], [5, 10], [65, 3]] as const) {
      for (const opts of [{ p: 1, margin: 1, weight: false }, { p: 2, margin: 0.5, weight: true }]) {
        const w = await wasm();
        const x = values(rng, B * C, -2, 2);
        const y = Float32Array.from({ length: B }, () => rng.int(C));
        const weight = opts.weight ? rng.f32(C, 0.2, 2) : null;
        const gp = w.put(new Float32Array(B * C));
        const value = w.k.multi_margin_loss(gp, w.put(x), w.put(y), weight ? w.put(weight) : 0, B, C, opts.p, opts.margin);
        const got = await gpu(
          { grad: new Float32Array(B * C), x, y, weight: weight ?? new Float32Array(1), terms: new Float32Array(B), status: new Uint32Array(8) },
          (b): DispatchSpec[] => [
            {
              kernel: "multi_margin",
              constants: { P_EXP: opts.p, WRITE_GRAD: true },
              buffers: [b.grad!, b.x!, b.y!, b.weight!, b.terms!],
              params: [B, C, weight ? 1 : 0, f(opts.margin), f(1 / (B * C)), 0, 0, 0],
              x: gridGroups(B),
            },
            { kernel: "loss_reduce", constants: { MODE: 0 }, buffers: [b.terms!, b.status!], params: [B, f(B), 0, 1, 0, 0, 0, 0], x: 1 },
          ],
        );
        relative("multi_margin loss", got.status![0]!, value, 1e-5);
        close("multi_margin grad", got.grad!, w.get(gp, B * C), 4, 0);
      }
    }
  });

  // ---------------------------------------------------------------- normalisation

  // The same sums in the same order as the WASM kernels (one invocation per row or channel);
  // what differs is WGSL's sqrt and division (not correctly rounded: a few ulps of rstd), which
  // then scale everything downstream, and a GPU's freedom to fuse a*b+c.

  it("layer_norm / rms_norm: forward, input gradient, weight and bias gradients", async () => {
    const rng = new Rng(61);
    for (const center of [1, 0]) {
      for (const affine of [false, true]) {
        for (const rows of [0, 1, 3, 17]) {
          for (const D of LENGTHS.filter((d) => d > 0)) {
            const w = await wasm();
            const x = rng.f32(rows * D, -3, 3).map((v, i) => v + (Math.floor(i / D) % 3) * 20); // rows with means 0, 20, 40
            const weight = rng.f32(D, 0.5, 1.5), bias = rng.f32(D), dout = rng.f32(rows * D), dw0 = rng.f32(D), db0 = rng.f32(D);
            const hasBias = affine && center === 1;
            const xp = w.put(x), wp = affine ? w.put(weight) : 0, bp = hasBias ? w.put(bias) : 0;
            const outp = w.put(new Float32Array(rows * D)), meanp = w.put(new Float32Array(rows)), rstdp = w.put(new Float32Array(rows));
            w.k.layer_norm_forward(outp, meanp, rstdp, xp, wp, bp, rows, D, 1e-5, center);
            const dxp = w.put(new Float32Array(rows * D)), dwp = w.put(dw0.slice()), dbp = w.put(db0.slice());
            w.k.layer_norm_backward(dxp, affine ? dwp : 0, hasBias ? dbp : 0, w.put(dout), xp, wp, meanp, rstdp, rows, D, center);
            const mean = w.get(meanp, rows), rstd = w.get(rstdp, rows);
            // the state block holds weight at 3 and bias at 3 + D; the gradients dweight at 1 and dbias at 1 + D
            const state = new Float32Array(3 + 2 * D);
            state.set(weight, 3);
            state.set(bias, 3 + D);
            const grads = new Float32Array(1 + 2 * D);
            grads.set(dw0, 1);
            grads.set(db0, 1 + D);
            const got = await gpu(
              { out: new Float32Array(rows * D), mean: new Float32Array(rows), rstd: new Float32Array(rows), x, state, dout, dx: new Float32Array(rows * D), grads, wasmMean: mean, wasmRstd: rstd },
              (B): DispatchSpec[] => [
                {
                  kernel: "layer_norm_forward",
                  buffers: [B.out!, B.mean!, B.rstd!, B.x!, B.state!],
                  params: [rows, D, f(1e-5), center, 3, 3 + D, affine ? 1 : 0, hasBias ? 1 : 0],
                  x: gridGroups(rows),
                },
                // the backward passes read the WASM forward's statistics: each pass is compared on its own
                { kernel: "layer_norm_backward", buffers: [B.dx!, B.dout!, B.x!, B.state!, B.wasmMean!, B.wasmRstd!], params: [rows, D, center, 3, affine ? 1 : 0, 0, 0, 0], x: gridGroups(rows) },
                {
                  kernel: "layer_norm_param_grad",
                  buffers: [B.grads!, B.dout!, B.x!, B.wasmMean!, B.wasmRstd!],
                  params: [D, rows, center, 1, 1 + D, affine ? 1 : 0, hasBias ? 1 : 0, 0],
                  x: gridGroups(D),
                },
              ],
            );
            const family = center ? "layer_norm" : "rms_norm";
            if (center) close(`${family} mean`, got.mean!, mean, 4, 1e-6 * 40);
            close(`${family} rstd`, got.rstd!, rstd, 8, 0);
            close(`${family} forward`, got.out!, w.get(outp, rows * D), 16, 1e-6);
            const dx = w.get(dxp, rows * D);
            close(`${family} dx`, got.dx!, dx, 16, 1e-6 * Math.max(1e-30, ...Array.from(dx, Math.abs)));
            close(`${family} dweight`, got.grads!.subarray(1, 1 + D), affine ? w.get(dwp, D) : dw0, 16, 1e-6);
            close(`${family} dbias`, got.grads!.subarray(1 + D), hasBias ? w.get(dbp, D) : db0, 16, 1e-6);
          }
        }
      }
    }
  });

  it("batch_norm: statistics, running update, forward (batch and running statistics), backward", async () => {
    const rng = new Rng(62);
    const shapes: [number, number, number][] = [[2, 3, 1], [5, 4, 1], [17, 9, 1], [3, 65, 1], [2, 5, 4], [3, 2, 9], [1, 3, 65], [4, 5, 3], [2, 3, 64], [4, 2, 5]];
    for (const [N, C, L] of shapes) {
      for (const momentum of [0.1, -1]) {
        const w = await wasm();
        const n = N * C * L;
        const x = rng.f32(n, -2, 2).map((v, i) => v + (Math.floor(i / L) % C) * 3 - 4);
        const weight = rng.f32(C, 0.5, 1.5), bias = rng.f32(C), dout = rng.f32(n), dw0 = rng.f32(C), db0 = rng.f32(C);
        const rm0 = rng.f32(C), rv0 = rng.f32(C, 0.5, 2);
        const xp = w.put(x), wp = w.put(weight), bp = w.put(bias);
        const meanp = w.put(new Float32Array(C)), varp = w.put(new Float32Array(C));
        w.k.batch_norm_stats(meanp, varp, xp, N, C, L);
        const rmp = w.put(rm0.slice()), rvp = w.put(rv0.slice()), nbtp = w.put(Float32Array.of(3));
        w.k.batch_norm_update(rmp, rvp, nbtp, meanp, varp, C, momentum, N * L);
        const outp = w.put(new Float32Array(n)), evalp = w.put(new Float32Array(n));
        w.k.batch_norm_forward(outp, xp, meanp, varp, wp, bp, N, C, L, 1e-5);
        w.k.batch_norm_forward(evalp, xp, rmp, rvp, wp, bp, N, C, L, 1e-5);
        const dxp = w.put(new Float32Array(n)), dwp = w.put(dw0.slice()), dbp = w.put(db0.slice()), sumsp = w.put(new Float32Array(2 * C));
        w.k.batch_norm_backward(dxp, dwp, dbp, sumsp, w.put(dout), xp, meanp, varp, wp, N, C, L, 1e-5);
        // state: [pad 2 | weight | bias | running_mean | running_var | num_batches_tracked]; grads: [pad 1 | dweight | dbias]
        const [wOff, bOff, rmOff, rvOff, nOff] = [2, 2 + C, 2 + 2 * C, 2 + 3 * C, 2 + 4 * C];
        const state = new Float32Array(3 + 4 * C);
        state.set(weight, wOff), state.set(bias, bOff), state.set(rm0, rmOff), state.set(rv0, rvOff), (state[nOff] = 3);
        const grads = new Float32Array(1 + 2 * C);
        grads.set(dw0, 1), grads.set(db0, 1 + C);
        const count = N * L;
        const got = await gpu(
          { stats: new Float32Array(4 * C), state, x, out: new Float32Array(n), evalOut: new Float32Array(n), grads, dout, dx: new Float32Array(n) },
          (B): DispatchSpec[] => [
            { kernel: "batch_norm_stats", buffers: [B.stats!, B.x!], params: [C, N, L, 0], x: gridGroups(C) },
            { kernel: "batch_norm_update", buffers: [B.state!, B.stats!], params: [C, rmOff, rvOff, nOff, f(momentum), f(count / (count - 1)), 0, 0], x: 1 },
            { kernel: "batch_norm_forward", buffers: [B.out!, B.x!, B.stats!, B.state!], params: [n, C, L, 0, C, wOff, bOff, 3, f(1e-5), 0, 0, 0], x: gridGroups(n) },
            { kernel: "batch_norm_forward", buffers: [B.evalOut!, B.x!, B.state!, B.state!], params: [n, C, L, rmOff, rvOff, wOff, bOff, 3, f(1e-5), 0, 0, 0], x: gridGroups(n) },
            { kernel: "batch_norm_grad_sums", buffers: [B.stats!, B.grads!, B.dout!, B.x!], params: [C, N, L, 1, 1 + C, 3, f(1e-5), 0], x: gridGroups(C) },
            { kernel: "batch_norm_backward", buffers: [B.dx!, B.dout!, B.x!, B.stats!, B.state!], params: [n, C, L, wOff, 1, f(count), f(1e-5), 0], x: gridGroups(n) },
          ],
        );
        close("batch_norm mean", got.stats!.subarray(0, C), w.get(meanp, C), 4, 1e-6 * 4);
        close("batch_norm var", got.stats!.subarray(C, 2 * C), w.get(varp, C), 4, 0);
        close("batch_norm running_mean", got.state!.subarray(rmOff, rmOff + C), w.get(rmp, C), 4, 1e-6);
        close("batch_norm running_var", got.state!.subarray(rvOff, rvOff + C), w.get(rvp, C), 4, 0);
        exact("batch_norm num_batches_tracked", [got.state![nOff]!], [4]);
        close("batch_norm forward", got.out!, w.get(outp, n), 16, 1e-6);
        close("batch_norm forward (running statistics)", got.evalOut!, w.get(evalp, n), 16, 1e-6);
        const sums = w.get(sumsp, 2 * C);
        const sumScale = 1e-6 * count * 3;
        close("batch_norm sums", got.stats!.subarray(2 * C), sums, 16, sumScale);
        close("batch_norm dweight", got.grads!.subarray(1, 1 + C), w.get(dwp, C), 16, sumScale);
        close("batch_norm dbias", got.grads!.subarray(1 + C), w.get(dbp, C), 16, sumScale);
        const dx = w.get(dxp, n);
        close("batch_norm dx", got.dx!, dx, 16, 1e-5 * Math.max(1e-30, ...Array.from(dx, Math.abs)));
      }
    }
  });

  // ---------------------------------------------------------------- optimizers

  /** One update of n parameters with random state; the GPU kernel's status says "no fault, coef 1". */
  async function optimizerCase(
    name: string, n: number, rng: Rng, state: string[],
    wasmStep: (w: Wasm, p: number, g: number, s: number[]) => void,
    kernel: "sgd" | "adam" | "rmsprop" | "adagrad",
    scalars: { u: number[]; a: number[] },
  ) {
    const w = await wasm();
    const p = rng.f32(n), g = rng.f32(n);
    const s = state.map(() => rng.f32(n, 0.01, 1));
    const pp = w.put(p.slice()), gp = w.put(g);
    const sp = s.map((a) => w.put(a.slice()));
    wasmStep(w, pp, gp, sp);
    const status = new Uint32Array(8);
    status[3] = new Uint32Array(Float32Array.of(1).buffer)[0]!;
    const arrays: Record<string, Float32Array | Uint32Array> = { p: p.slice(), g, last: new Float32Array(n), status };
    s.forEach((a, i) => (arrays[`s${i}`] = a.slice()));
    const got = await gpu(
      arrays,
      (B, step) => {
        const st = state.map((_, i) => B[`s${i}`]!);
        const buffers = kernel === "adam" ? [B.p!, B.g!, st[0]!, st[1]!, st[2]!, B.last!, B.status!]
          : kernel === "rmsprop" ? [B.p!, B.g!, st[0]!, st[1]!, st[2]!, B.last!, B.status!]
          : [B.p!, B.g!, st[0]!, B.last!, B.status!];
        return [{ kernel, buffers, params: [n, 0, 0, 0], step, x: gridGroups(n) }];
      },
      { ...scalars, clip: 1 },
    );
    close(`${name} param`, got.p!, w.get(pp, n), 4, 0);
    sp.forEach((ptr, i) => close(`${name} state ${i}`, got[`s${i}`]!, w.get(ptr, n), 4, 0));
    exact(`${name} last`, got.last!, p);
  }

  it("sgd: momentum, dampening, nesterov, weight decay, maximize, first step", async () => {
    const rng = new Rng(51);
    const cases = [
      { lr: 0.1, mu: 0, d1m: 1, wd: 0, nesterov: 0, maximize: 0, first: 0 },
      { lr: 0.1, mu: 0.9, d1m: 0.7, wd: 0.01, nesterov: 0, maximize: 1, first: 0 },
      { lr: 0.05, mu: 0.9, d1m: 1, wd: 0, nesterov: 1, maximize: 0, first: 1 },
    ];
    for (const c of cases) {
      for (const n of EL) {
        await optimizerCase("sgd", n, rng, ["buf"], (w, p, g, [buf]) => w.k.sgd_step(p, g, buf!, n, c.lr, c.mu, c.d1m, c.wd, c.nesterov, c.maximize, c.first), "sgd", {
          a: [c.lr, c.mu, c.d1m, c.wd],
          u: [c.nesterov, c.maximize, c.first],
        });
      }
    }
  });

  it("adam / adamw / amsgrad / maximize", async () => {
    const rng = new Rng(52);
    for (const c of [
      { amsgrad: 0, maximize: 0, decoupled: 0, wd: 0 },
      { amsgrad: 1, maximize: 1, decoupled: 0, wd: 0.01 },
      { amsgrad: 1, maximize: 0, decoupled: 1, wd: 0.01 },
    ]) {
      const [lr, b1, b2, eps, t] = [1e-3, 0.9, 0.999, 1e-8, 3];
      const bc1 = 1 - b1 ** t, bc2 = 1 - b2 ** t;
      const a = [lr / bc1, b1, 1 - b1, b2, 1 - b2, Math.sqrt(bc2), eps, c.wd, 1 - lr * c.wd];
      for (const n of EL) {
        await optimizerCase("adam", n, rng, ["m", "v", "vmax"], (w, p, g, [m, v, vmax]) =>
          w.k.adam_step(p, g, m!, v!, vmax!, n, a[0]!, a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, a[6]!, a[7]!, a[8]!, c.amsgrad, c.maximize, c.decoupled), "adam", {
          a,
          u: [c.amsgrad, c.maximize, c.decoupled],
        });
      }
    }
  });

  it("rmsprop: centered, momentum, weight decay, maximize", async () => {
    const rng = new Rng(53);
    for (const c of [
      { centered: 0, mu: 0, wd: 0, maximize: 0 },
      { centered: 1, mu: 0.5, wd: 0.01, maximize: 1 },
    ]) {
      const a = [0.01, 0.99, 1 - 0.99, 1e-8, c.wd, c.mu];
      for (const n of EL) {
        await optimizerCase("rmsprop", n, rng, ["sq", "ga", "buf"], (w, p, g, [sq, ga, buf]) =>
          w.k.rmsprop_step(p, g, sq!, ga!, buf!, n, a[0]!, a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, c.centered, c.maximize), "rmsprop", {
          a,
          u: [c.centered, c.maximize],
        });
      }
    }
  });

  it("adagrad: weight decay, maximize", async () => {
    const rng = new Rng(54);
    for (const c of [{ wd: 0, maximize: 0 }, { wd: 0.01, maximize: 1 }]) {
      const a = [0.01 / (1 + 2 * 0.001), 1e-10, c.wd];
      for (const n of EL) {
        await optimizerCase("adagrad", n, rng, ["sum"], (w, p, g, [sum]) => w.k.adagrad_step(p, g, sum!, n, a[0]!, a[1]!, a[2]!, c.maximize), "adagrad", {
          a,
          u: [0, c.maximize],
        });
      }
    }
  });

  it("coverage: every WGSL kernel in KERNELS was compared with its WASM twin above", () => {
    expect([...DISPATCHED].sort()).toEqual(Object.keys(KERNELS).sort());
  });
});
