/**
 * Plain-TypeScript reference twins of every kernel in wasm/assembly: the same signatures over
 * the same memory, written as the formulas read (scalar loops, f32 rounding via Math.fround).
 * Tests run each WASM kernel and its twin on identical inputs and compare; the engine can also
 * run on these twins (kernel "js-reference") to separate engine bugs from kernel bugs.
 */
import type { WasmMemory } from "./wasm-types.js";
import type { ConvGeometry, Kernels, Ptr } from "./kernels.js";
import { ropeTable } from "./ops/rope.js";
import { runProgramReference } from "./program.js";

const f = Math.fround;

/**
 * erf(x), Abramowitz & Stegun 7.1.26, as torch's vectorised CPU erf (and the WASM kernel's erf4,
 * wasm/assembly/activations.ts, whose e^(-x^2) is the Cephes expf below).
 */
function erf32(x: number): number {
  const ax = Math.abs(x);
  const t = f(1 / f(f(0.3275911 * ax) + 1));
  const r = f(f(f(f(f(f(f(f(f(1.061405429 * t) - 1.453152027) * t) + 1.421413741) * t) - 0.284496736) * t) + 0.254829592));
  const y = f(1 - f(f(r * t) * expf(f(-x * x))));
  return x < 0 ? -y : y;
}

const GELU_TANH_K = f(Math.sqrt(2 / Math.PI));

const bitsBox = new Float32Array(1);
const bitsView = new Uint32Array(bitsBox.buffer);

/**
 * e^x as the kernels' exp4 (wasm/assembly/simd.ts, Cephes expf: attention_softmax, GELU), step for step in
 * f32: n = nearest(x log2 e) by adding and subtracting 1.5 * 2^23, r = x - n ln 2 (two parts),
 * e^r = 1 + r + r^2 P(r), times 2^n from the shifted sum's bits; 0 below -87.33654.
 */
function expf(x: number): number {
  const shifted = f(f(x * f(1.44269504088896341)) + 12582912);
  const n = f(shifted - 12582912);
  const r = f(f(x - f(n * 0.693359375)) - f(n * f(-2.1219444e-4)));
  let y = f(f(f(1.98756915e-4) * r) + f(1.3981999507e-3));
  y = f(f(y * r) + f(8.3334519073e-3));
  y = f(f(y * r) + f(4.1665795894e-2));
  y = f(f(y * r) + f(1.6666665459e-1));
  y = f(f(y * r) + f(5.0000001201e-1));
  y = f(f(f(y * f(r * r)) + r) + 1);
  bitsBox[0] = shifted;
  bitsView[0] = Math.imul((bitsView[0]! + 127) >>> 0, 1 << 23) >>> 0;
  const result = f(y * bitsBox[0]!);
  return x < f(-87.33654) ? 0 : result;
}

/** The pooling modes of token_pool_forward / token_pool_backward (layers/tokens.ts POOL_MODES). */
const POOL = { mean: 0, max: 1, cls: 2, last: 3 } as const;

/** The token cls (0) or last (the last with mask 1; T - 1 without a mask; 0 when none has) pools from. */
function pooledToken(m: Float32Array, mode: number, mask: Ptr, r: number, T: number): number {
  if (mode === POOL.cls) return 0;
  if (mask === 0) return T - 1;
  for (let t = T - 1; t >= 0; t--) if (m[(mask >>> 2) + r * T + t] !== 0) return t;
  return 0;
}

/**
 * The twin of each activation in wasm/assembly/activations.ts, by its code (layers/activations.ts):
 * forward(x), and backward(dout, x, y) = dout * f'(.) from the input x or the output y.
 */
const ACTIVATION_TWINS: Record<number, { forward(x: number, slope: number): number; backward(g: number, x: number, y: number, slope: number): number }> = {
  // relu: max(0, x), NaN propagates; dinp = dout where y > 0
  0: { forward: (x) => (x > 0 || Number.isNaN(x) ? x : 0), backward: (g, _x, y) => (y > 0 ? g : 0) },
  // leaky_relu
  1: { forward: (x, slope) => (x > 0 ? x : f(x * slope)), backward: (g, x, _y, slope) => (x > 0 ? g : f(g * slope)) },
  // gelu (erf): x * Phi(x); dinp = dout * (Phi(x) + x phi(x))
  2: {
    forward: (x) => f(f(x * 0.5) * f(1 + erf32(f(x * Math.SQRT1_2)))),
    backward(g, x) {
      const cdf = f(0.5 * f(1 + erf32(f(x * Math.SQRT1_2))));
      const pdf = f(f(1 / Math.sqrt(2 * Math.PI)) * expf(f(f(-0.5 * x) * x)));
      return f(g * f(cdf + f(x * pdf)));
    },
  },
  // gelu (tanh approximation), backward as torch's GeluBackwardKernel
  3: {
    forward: (x) => f(f(0.5 * x) * f(1 + f(Math.tanh(f(GELU_TANH_K * f(x + f(f(f(0.044715 * x) * x) * x))))))),
    backward(g, x) {
      const xSq = f(x * x);
      const th = f(Math.tanh(f(GELU_TANH_K * f(x + f(f(0.044715 * xSq) * x)))));
      const left = f(0.5 * x);
      const leftDerivative = f(0.5 * f(1 + th));
      const rightDerivative = f(f(f(left * f(1 - f(th * th))) * GELU_TANH_K) * f(1 + f(f(3 * 0.044715) * xSq)));
      return f(g * f(leftDerivative + rightDerivative));
    },
  },
  // tanh; dinp = dout (1 - y^2)
  4: { forward: (x) => f(Math.tanh(x)), backward: (g, _x, y) => f(g * f(1 - f(y * y))) },
  // sigmoid; dinp = dout (1 - y) y
  5: { forward: (x) => f(1 / f(1 + f(Math.exp(-x)))), backward: (g, _x, y) => f(f(g * f(1 - y)) * y) },
  // silu: x / (1 + exp(-x)); dinp = dout s (1 + x (1 - s))
  6: {
    forward: (x) => f(x / f(1 + f(Math.exp(-x)))),
    backward(g, x) {
      const s = f(1 / f(1 + f(Math.exp(-x))));
      return f(f(g * s) * f(1 + f(x * f(1 - s))));
    },
  },  // mish: x tanh(log1p(exp(x))); dinp = dout (t + x s (1 - t^2))
  7: {
    forward: (x) => f(x * f(Math.tanh(f(Math.log1p(f(Math.exp(x))))))),
    backward(g, x) {
      const s = f(1 / f(1 + f(Math.exp(-x))));
      const t = f(Math.tanh(f(Math.log1p(f(Math.exp(x))))));
      return f(g * f(t + f(f(x * s) * f(1 - f(t * t)))));
    },
  },

};

/**
 * A sum of term(0..n-1) in the order the normalisation kernels (wasm/assembly/normalization.ts)
 * document: four f32 lanes over the 4-aligned body (lane j takes the terms i = j mod 4), combined
 * as (l0 + l1) + (l2 + l3), then the tail added in order.
 */
function laneSum(n: number, term: (i: number) => number): number {
  const lanes = [0, 0, 0, 0];
  const body = n - (n % 4);
  for (let i = 0; i < body; i++) lanes[i % 4] = f(lanes[i % 4]! + term(i));
  let s = f(f(lanes[0]! + lanes[1]!) + f(lanes[2]! + lanes[3]!));
  for (let i = body; i < n; i++) s = f(s + term(i));
  return s;
}

/**
 * A BatchNorm channel's sum of term(n, l) over N runs of L (the kernels' order): the runs'
 * 4-aligned bodies into four lanes, their tails into t in order; lanes + t when L >= 4, else t.
 */
function channelSum(N: number, L: number, term: (n: number, l: number) => number): number {
  const lanes = [0, 0, 0, 0];
  const body = L - (L % 4);
  let t = 0;
  for (let n = 0; n < N; n++) {
    for (let l = 0; l < body; l++) lanes[l % 4] = f(lanes[l % 4]! + term(n, l));
    for (let l = body; l < L; l++) t = f(t + term(n, l));
  }
  return L >= 4 ? f(f(f(lanes[0]! + lanes[1]!) + f(lanes[2]! + lanes[3]!)) + t) : t;
}

function activationTwin(fn: number) {
  const twin = ACTIVATION_TWINS[fn];
  if (!twin) throw new RangeError(`no activation with code ${fn}`);
  return twin;
}

/**
 * Every tap of a convolution's column matrix, in the kernels' order: visit(k, l, index) for
 * rows k = (c*KH + kh)*KW + kw and columns l = (oh - oh0)*OW + ow, with the element index into
 * the image [C, H, W] of the tap, or -1 when it falls in the padding.
 */
function convTaps(g: ConvGeometry, visit: (k: number, l: number, index: number) => void): void {
  const [C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OW, oh0, oh1] = g;
  let k = 0;
  for (let c = 0; c < C; c++) {
    for (let kh = 0; kh < KH; kh++) {
      for (let kw = 0; kw < KW; kw++, k++) {
        for (let oh = oh0; oh < oh1; oh++) {
          for (let ow = 0; ow < OW; ow++) {
            const ih = oh * SH + kh * DH - PH;
            const iw = ow * SW + kw * DW - PW;
            const inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
            visit(k, (oh - oh0) * OW + ow, inside ? (c * H + ih) * W + iw : -1);
          }
        }
      }
    }
  }
}

/** A pooling window cut to the image [h0, h1) x [w0, w1), and its divisor. */
interface PoolWindow {
  h0: number;
  h1: number;
  w0: number;
  w1: number;
  divisor: number;
}

/** nn.AvgPool2d's windows in output order: visit(plane, output element, window). */
function avgWindows(
  planes: number, H: number, W: number, KH: number, KW: number, SH: number, SW: number, PH: number, PW: number,
  OH: number, OW: number, countIncludePad: number, divisorOverride: number,
  visit: (p: number, e: number, w: PoolWindow) => void,
): void {
  for (let p = 0; p < planes; p++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        // torch: the padded window ends at H + PH; its size is counted there, the sum stops at H
        const hs = oh * SH - PH;
        const ws = ow * SW - PW;
        const he = Math.min(hs + KH, H + PH);
        const we = Math.min(ws + KW, W + PW);
        const w = { h0: Math.max(hs, 0), h1: Math.min(he, H), w0: Math.max(ws, 0), w1: Math.min(we, W), divisor: 0 };
        w.divisor = divisorOverride !== 0 ? divisorOverride : countIncludePad ? (he - hs) * (we - ws) : (w.h1 - w.h0) * (w.w1 - w.w0);
        visit(p, (p * OH + oh) * OW + ow, w);
      }
    }
  }
}

/** nn.AdaptiveAvgPool2d's windows [floor(o*I/O), ceil((o+1)*I/O)) in output order. */
function adaptiveWindows(planes: number, H: number, W: number, OH: number, OW: number, visit: (p: number, e: number, w: PoolWindow) => void): void {
  for (let p = 0; p < planes; p++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        const w = {
          h0: Math.floor((oh * H) / OH),
          h1: Math.ceil(((oh + 1) * H) / OH),
          w0: Math.floor((ow * W) / OW),
          w1: Math.ceil(((ow + 1) * W) / OW),
          divisor: 0,
        };
        visit(p, (p * OH + oh) * OW + ow, w);
      }
    }
  }
}

/**
 * Kernels implemented in TypeScript over `memory` (views re-derived on every call, so growth is safe).
 *
 * @example
 * ```ts
 * const ref = createReferenceKernels(memory, 1024);
 * ref.mse_loss(gradPtr, predPtr, targetPtr, n);
 * ```
 */
export function createReferenceKernels(memory: WasmMemory, heapBase = 1024): Kernels {
  const F = (): Float32Array => new Float32Array(memory.buffer);
  const I = (): Int32Array => new Int32Array(memory.buffer);
  const at = (p: Ptr) => p >>> 2;

  /**
   * out[i] = the value of the 16-bit float at inp + 2i (dtype 1: float16, sign * 2^(e-15) * (1 +
   * m/1024), subnormal m * 2^-24; 2: bfloat16, the upper half of an f32). A NaN keeps its payload
   * (written as bits: a NaN through a Float32Array may lose it).
   */
  function widen(out: Ptr, inp: Ptr, n: number, dtype: 1 | 2): void {
    const h = new Uint16Array(memory.buffer, inp, n);
    const bits = new Uint32Array(memory.buffer, out, n);
    const values = new Float32Array(memory.buffer, out, n);
    for (let i = 0; i < n; i++) {
      const x = h[i]!;
      if (dtype === 2) {
        bits[i] = (x << 16) >>> 0;
        continue;
      }
      const sign = x >> 15, e = (x >> 10) & 31, m = x & 1023;
      if (e === 31) bits[i] = ((sign << 31) | 0x7f800000 | (m << 13)) >>> 0;
      else values[i] = (sign ? -1 : 1) * (e === 0 ? m * 2 ** -24 : 2 ** (e - 15) * (1 + m / 1024));
    }
  }

  /**
   * out[M,N] = init + sum_k A(i,k) B(k,j) with A(i,k) at a + i*ars + k*acs, B(k,j) at b + k*ldb + j
   * and out(i,j) at out + i*ldo + j (elements; ldb = ldo = N by default).
   */
  function gemm(out: Ptr, a: Ptr, ars: number, acs: number, b: Ptr, bias: Ptr, M: number, N: number, K: number, init: 0 | 1 | 2, ldb = N, ldo = N) {
    const m = F();
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = init === 1 ? m[at(out) + i * ldo + j]! : init === 2 ? m[at(bias) + j]! : 0;
        for (let k = 0; k < K; k++) s = f(s + f(m[at(a) + i * ars + k * acs]! * m[at(b) + k * ldb + j]!));
        m[at(out) + i * ldo + j] = s;
      }
    }
  }

  const unary = (out: Ptr, inp: Ptr, n: number, fn: (x: number) => number) => {
    const m = F();
    for (let i = 0; i < n; i++) m[at(out) + i] = fn(m[at(inp) + i]!);
  };
  const binary = (out: Ptr, a: Ptr, b: Ptr, n: number, fn: (x: number, y: number) => number) => {
    const m = F();
    for (let i = 0; i < n; i++) m[at(out) + i] = fn(m[at(a) + i]!, m[at(b) + i]!);
  };

  const mix32 = (h: number): number => {
    h = (h ^ (h >>> 16)) >>> 0;
    h = Math.imul(h, 0x85ebca6b) >>> 0;
    h = (h ^ (h >>> 13)) >>> 0;
    h = Math.imul(h, 0xc2b2ae35) >>> 0;
    return (h ^ (h >>> 16)) >>> 0;
  };

  /** Elementwise loss over n elements: term(d) -> [loss, grad * n]. */
  const pointwiseLoss = (grad: Ptr, pred: Ptr, target: Ptr, n: number, term: (x: number, y: number, inv: number) => [number, number]) => {
    if (n === 0) return 0;
    const m = F();
    const inv = f(1 / n);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const [l, g] = term(m[at(pred) + i]!, m[at(target) + i]!, inv);
      sum += l;
      if (grad !== 0) m[at(grad) + i] = g;
    }
    return sum / n;
  };

  const kernels: Kernels = {
    matmul_nt(out, a, b, bias, _scratch, M, N, K) {
      // b is [N,K]: B(k,j) = b[j*K + k]; express as A·B with an explicit transposed read
      const m = F();
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < N; j++) {
          let s = bias !== 0 ? m[at(bias) + j]! : 0;
          for (let k = 0; k < K; k++) s = f(s + f(m[at(a) + i * K + k]! * m[at(b) + j * K + k]!));
          m[at(out) + i * N + j] = s;
        }
      }
    },
    matmul_nn(out, a, b, M, N, K, accumulate) {
      gemm(out, a, K, 1, b, 0, M, N, K, accumulate ? 1 : 0);
    },
    matmul_tn(out, a, b, M, N, K, accumulate) {
      gemm(out, a, 1, M, b, 0, M, N, K, accumulate ? 1 : 0);
    },
    matmul_strided(out, a, b, M, N, K, ars, acs, ldb, ldo, accumulate) {
      gemm(out, a, ars, acs, b, 0, M, N, K, accumulate ? 1 : 0, ldb, ldo);
    },
    transpose(out, inp, rows, cols) {
      const m = F();
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) m[at(out) + r * cols + c] = m[at(inp) + c * rows + r]!;
    },
    transpose_strided(out, inp, rows, cols, ld, alpha) {
      const m = F();
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) m[at(out) + r * cols + c] = f(f(alpha) * m[at(inp) + c * ld + r]!);
    },
    attention_softmax(probs, scores, mask, rows, cols, causal) {
      // softmax over the visible keys (mask[j] != 0, and j <= i when causal); 0 elsewhere; a row
      // that sees no key is all 0 (PyTorch: NaN). The sum in the kernel's order: four lanes over
      // the f32x4 body, (l0 + l1) + (l2 + l3), then the tail.
      const m = F();
      const visible = (j: number) => mask === 0 || m[at(mask) + j] !== 0;
      for (let i = 0; i < rows; i++) {
        const s = at(scores) + i * cols;
        const p = at(probs) + i * cols;
        const n = causal ? Math.min(i + 1, cols) : cols;
        let mx = -Infinity;
        let any = false;
        for (let j = 0; j < n; j++) {
          if (visible(j)) {
            mx = Math.max(mx, m[s + j]!);
            any = true;
          }
        }
        if (!any) {
          for (let j = 0; j < cols; j++) m[p + j] = 0;
          continue;
        }
        for (let j = 0; j < n; j++) m[p + j] = visible(j) ? expf(f(m[s + j]! - mx)) : 0;
        const lanes = [0, 0, 0, 0];
        const body = n - (n % 4);
        for (let j = 0; j < body; j++) lanes[j % 4] = f(lanes[j % 4]! + m[p + j]!);
        let sum = f(f(lanes[0]! + lanes[1]!) + f(lanes[2]! + lanes[3]!));
        for (let j = body; j < n; j++) sum = f(sum + m[p + j]!);
        const inv = f(1 / sum);
        for (let j = 0; j < n; j++) m[p + j] = f(m[p + j]! * inv);
        for (let j = n; j < cols; j++) m[p + j] = 0;
      }
    },
    attention_softmax_backward(dscores, dprobs, probs, scale, rows, cols) {
      // dS = scale * (P * (dP - r)), r = sum_j dP_j P_j summed as the kernel does: four lanes
      // over the f32x4 body, combined (l0 + l1) + (l2 + l3), then the tail in order
      const m = F();
      const sc = f(scale);
      for (let i = 0; i < rows; i++) {
        const g = at(dprobs) + i * cols, p = at(probs) + i * cols, d = at(dscores) + i * cols;
        const lanes = [0, 0, 0, 0];
        const body = cols - (cols % 4);
        for (let j = 0; j < body; j++) lanes[j % 4] = f(lanes[j % 4]! + f(m[g + j]! * m[p + j]!));
        let r = f(f(lanes[0]! + lanes[1]!) + f(lanes[2]! + lanes[3]!));
        for (let j = body; j < cols; j++) r = f(r + f(m[g + j]! * m[p + j]!));
        for (let j = 0; j < cols; j++) m[d + j] = f(f(m[p + j]! * f(m[g + j]! - r)) * sc);
      }
    },
    rope_table(cos, sin, T, half, theta) {
      // ops/rope.ts ropeTable: e = f32(i / half), inv = f32(1 / f32(theta^e)), a = f32(t * inv),
      // cos and sin of a in f64, rounded to f32
      const table = ropeTable(T, half, theta);
      const m = F();
      m.set(table.subarray(0, T * half), at(cos));
      m.set(table.subarray(T * half), at(sin));
    },
    rope(out, inp, cos, sin, sign, nTokens, heads, headDim) {
      // y1 = x1 c - x2 s, y2 = x2 c + x1 s with s = sign * sin, each product rounded, then the sum
      const m = F();
      const half = headDim >> 1;
      const sg = f(sign);
      for (let t = 0; t < nTokens; t++) {
        for (let h = 0; h < heads; h++) {
          const x = at(inp) + (t * heads + h) * headDim, y = at(out) + (t * heads + h) * headDim;
          for (let i = 0; i < half; i++) {
            const c = m[at(cos) + t * half + i]!, s = f(m[at(sin) + t * half + i]! * sg);
            const x1 = m[x + i]!, x2 = m[x + i + half]!;
            m[y + i] = f(f(x1 * c) - f(x2 * s));
            m[y + i + half] = f(f(x2 * c) + f(x1 * s));
          }
        }
      }
    },
    bias_grad(dbias, dout, rows, cols) {
      const m = F();
      for (let c = 0; c < cols; c++) {
        let s = m[at(dbias) + c]!;
        for (let r = 0; r < rows; r++) s = f(s + m[at(dout) + r * cols + c]!);
        m[at(dbias) + c] = s;
      }
    },
    activation_forward(out, inp, fn, slope, n) {
      const twin = activationTwin(fn);
      unary(out, inp, n, (x) => twin.forward(x, slope));
    },
    activation_backward(dinp, dout, inp, out, fn, slope, n) {
      const twin = activationTwin(fn);
      const m = F();
      for (let i = 0; i < n; i++) m[at(dinp) + i] = twin.backward(m[at(dout) + i]!, m[at(inp) + i]!, m[at(out) + i]!, slope);
    },
    dropout_forward(out, mask, inp, p, seed, n) {
      const m = F();
      const scale = p < 1 ? f(1 / (1 - f(p))) : 0;
      const threshold = Math.ceil(f(p) * 16777216);
      const base = mix32((seed ^ 0x9e3779b9) >>> 0);
      for (let i = 0; i < n; i++) {
        const u = mix32((base + Math.imul(i, 0x9e3779b9)) >>> 0) >>> 8;
        const keep = u >= threshold ? scale : 0;
        m[at(mask) + i] = keep;
        m[at(out) + i] = f(m[at(inp) + i]! * keep);
      }
    },
    mul: (out, a, b, n) => binary(out, a, b, n, (x, y) => f(x * y)),
    add: (out, a, b, n) => binary(out, a, b, n, (x, y) => f(x + y)),
    scale: (x, s, n) => unary(x, x, n, (v) => f(v * f(s))),
    fill(out, value, n) {
      F().fill(f(value), at(out), at(out) + n);
    },
    copy(out, x, n) {
      F().copyWithin(at(out), at(x), at(x) + n);
    },
    axpy(out, x, alpha, n) {
      binary(out, out, x, n, (o, v) => f(o + f(f(alpha) * v)));
    },
    gather_rows(out, src, indices, rows, cols) {
      const m = F();
      const idx = I();
      for (let r = 0; r < rows; r++) {
        const i = idx[at(indices) + r]!;
        m.copyWithin(at(out) + r * cols, at(src) + i * cols, at(src) + (i + 1) * cols);
      }
    },
    all_finite(x, n) {
      const m = F();
      for (let i = 0; i < n; i++) if (!Number.isFinite(m[at(x) + i]!)) return 0;
      return 1;
    },

    mse_loss(grad, pred, target, n) {
      if (n === 0) return 0;
      const norm = f(2 / n);
      return pointwiseLoss(grad, pred, target, n, (x, y) => {
        const d = f(x - y);
        return [f(d * d), f(norm * d)];
      });
    },
    l1_loss: (grad, pred, target, n) =>
      pointwiseLoss(grad, pred, target, n, (x, y, inv) => {
        const d = f(x - y);
        return [Math.abs(d), d > 0 ? inv : d < 0 ? -inv : 0];
      }),
    huber_loss: (grad, pred, target, delta, n) =>
      pointwiseLoss(grad, pred, target, n, (x, y, inv) => {
        const dl = f(delta);
        const d = f(x - y);
        const ad = Math.abs(d);
        const l = ad < dl ? f(f(0.5 * d) * d) : f(dl * f(ad - f(0.5 * dl)));
        const g = d < -dl ? f(-inv * dl) : d > dl ? f(inv * dl) : f(inv * d);
        return [l, g];
      }),
    smooth_l1_loss(grad, pred, target, beta, n) {
      if (beta === 0) return kernels.l1_loss(grad, pred, target, n);
      const b = f(beta);
      return pointwiseLoss(grad, pred, target, n, (x, y, inv) => {
        const d = f(x - y);
        const ad = Math.abs(d);
        const l = ad < b ? f(f(f(0.5 * d) * d) / b) : f(ad - f(0.5 * b));
        const g = d < -b ? -inv : d > b ? inv : f(f(inv * d) / b);
        return [l, g];
      });
    },
    cross_entropy_loss(grad, logits, target, weight, B, C, ignoreIndex, labelSmoothing) {
      const m = F();
      const eps = f(labelSmoothing);
      const w = (c: number) => (weight !== 0 ? m[at(weight) + c]! : 1);
      let sumW = 0;
      for (let c = 0; c < C; c++) sumW += w(c);
      let nll = 0;
      let smooth = 0;
      let W = 0;
      for (let i = 0; i < B; i++) {
        const row = at(logits) + i * C;
        const y = Math.trunc(m[at(target) + i]!);
        if (y === ignoreIndex) {
          if (grad !== 0) for (let c = 0; c < C; c++) m[at(grad) + i * C + c] = 0;
          continue;
        }
        let mx = -Infinity;
        for (let c = 0; c < C; c++) mx = Math.max(mx, m[row + c]!);
        let se = 0;
        for (let c = 0; c < C; c++) se += Math.exp(m[row + c]! - mx);
        const lse = mx + Math.log(se);
        W += w(y);
        nll -= w(y) * (m[row + y]! - lse);
        for (let c = 0; c < C; c++) smooth -= w(c) * (m[row + c]! - lse);
        if (grad !== 0) {
          for (let c = 0; c < C; c++) {
            const p = Math.exp(m[row + c]! - lse);
            m[at(grad) + i * C + c] = (1 - eps) * w(y) * (p - (c === y ? 1 : 0)) + (eps / C) * (sumW * p - w(c));
          }
        }
      }
      if (grad !== 0) {
        const invW = f(1 / W);
        for (let k = 0; k < B * C; k++) m[at(grad) + k] = f(m[at(grad) + k]! * invW);
      }
      return ((1 - eps) * nll + (eps / C) * (eps > 0 ? smooth : 0)) / W;
    },
    bce_with_logits_loss(grad, logits, target, posWeight, B, C) {
      const n = B * C;
      if (n === 0) return 0;
      const m = F();
      const inv = f(1 / n);
      let sum = 0;
      for (let k = 0; k < n; k++) {
        const x = m[at(logits) + k]!;
        const y = m[at(target) + k]!;
        const pw = posWeight !== 0 ? m[at(posWeight) + (k % C)]! : 1;
        const lw = f(f(f(pw - 1) * y) + 1);
        const softplusNeg = f(f(Math.log1p(Math.exp(-Math.abs(x)))) + Math.max(-x, 0));
        sum += f(f(f(1 - y) * x) + f(lw * softplusNeg));
        if (grad !== 0) {
          const s = f(1 / (1 + Math.exp(-x)));
          m[at(grad) + k] = f(f(f(lw * s) - f(pw * y)) * inv);
        }
      }
      return sum / n;
    },
    hinge_loss: (grad, pred, target, n) =>
      pointwiseLoss(grad, pred, target, n, (x, y, inv) => {
        const t = y === 1 ? 1 : -1;
        const z = f(1 - t * x);
        return [Math.max(z, 0), z >= 0 ? -t * inv : 0];
      }),
    multi_margin_loss(grad, logits, target, weight, B, C, p, margin) {
      if (B === 0) return 0;
      const m = F();
      const g = f(1 / (B * C));
      let sum = 0;
      for (let i = 0; i < B; i++) {
        const row = at(logits) + i * C;
        const y = Math.trunc(m[at(target) + i]!);
        const wy = weight !== 0 ? m[at(weight) + y]! : 1;
        let rowSum = 0;
        let gy = 0;
        for (let c = 0; c < C; c++) {
          if (c === y) continue;
          const z = f(f(f(margin) - m[row + y]!) + m[row + c]!);
          let h = 0;
          if (z > 0) {
            rowSum = f(rowSum + f((p === 1 ? z : f(z * z)) * wy));
            h = f((p === 1 ? g : f(f(2 * g) * z)) * wy);
            gy = f(gy - h);
          }
          if (grad !== 0) m[at(grad) + i * C + c] = h;
        }
        if (grad !== 0) m[at(grad) + i * C + y] = gy;
        sum += f(rowSum / C);
      }
      return sum / B;
    },

    sgd_step(param, grad, buf, n, lr, momentum, dampening1m, weightDecay, nesterov, maximize, first) {
      const m = F();
      for (let i = 0; i < n; i++) {
        const p = m[at(param) + i]!;
        let g = m[at(grad) + i]!;
        if (maximize) g = -g;
        if (weightDecay !== 0) g = f(g + f(f(weightDecay) * p));
        if (momentum !== 0) {
          const b = first ? g : f(f(m[at(buf) + i]! * f(momentum)) + f(f(dampening1m) * g));
          m[at(buf) + i] = b;
          g = nesterov ? f(g + f(f(momentum) * b)) : b;
        }
        m[at(param) + i] = f(p + f(f(-lr) * g));
      }
    },
    adam_step(param, grad, mBuf, vBuf, vmaxBuf, n, stepSize, beta1, beta1m, beta2, beta2m, bc2Sqrt, eps, weightDecay, decayFactor, amsgrad, maximize, decoupled) {
      const m = F();
      for (let i = 0; i < n; i++) {
        let p = m[at(param) + i]!;
        let g = m[at(grad) + i]!;
        if (maximize) g = -g;
        if (decoupled) p = f(p * f(decayFactor));
        else if (weightDecay !== 0) g = f(g + f(f(weightDecay) * p));
        const mi = f(f(m[at(mBuf) + i]! * f(beta1)) + f(f(beta1m) * g));
        const vi = f(f(m[at(vBuf) + i]! * f(beta2)) + f(f(f(beta2m) * g) * g));
        m[at(mBuf) + i] = mi;
        m[at(vBuf) + i] = vi;
        let s = vi;
        if (amsgrad) {
          s = Math.max(m[at(vmaxBuf) + i]!, vi);
          m[at(vmaxBuf) + i] = s;
        }
        const denom = f(f(f(Math.sqrt(s)) / f(bc2Sqrt)) + f(eps));
        m[at(param) + i] = f(p + f(f(f(-stepSize) * mi) / denom));
      }
    },
    rmsprop_step(param, grad, squareAvg, gradAvg, buf, n, lr, alpha, alpha1m, eps, weightDecay, momentum, centered, maximize) {
      const m = F();
      for (let i = 0; i < n; i++) {
        const p = m[at(param) + i]!;
        let g = m[at(grad) + i]!;
        if (maximize) g = -g;
        if (weightDecay !== 0) g = f(g + f(f(weightDecay) * p));
        const sq = f(f(m[at(squareAvg) + i]! * f(alpha)) + f(f(f(alpha1m) * g) * g));
        m[at(squareAvg) + i] = sq;
        let avg: number;
        if (centered) {
          const ga = f(f(m[at(gradAvg) + i]! * f(alpha)) + f(f(alpha1m) * g));
          m[at(gradAvg) + i] = ga;
          avg = f(Math.sqrt(f(sq - f(ga * ga))));
        } else {
          avg = f(Math.sqrt(sq));
        }
        avg = f(avg + f(eps));
        if (momentum > 0) {
          const b = f(f(m[at(buf) + i]! * f(momentum)) + f(g / avg));
          m[at(buf) + i] = b;
          m[at(param) + i] = f(p + f(f(-lr) * b));
        } else {
          m[at(param) + i] = f(p + f(f(f(-lr) * g) / avg));
        }
      }
    },
    adagrad_step(param, grad, sum, n, clr, eps, weightDecay, maximize) {
      const m = F();
      for (let i = 0; i < n; i++) {
        const p = m[at(param) + i]!;
        let g = m[at(grad) + i]!;
        if (maximize) g = -g;
        if (weightDecay !== 0) g = f(g + f(f(weightDecay) * p));
        const s = f(m[at(sum) + i]! + f(g * g));
        m[at(sum) + i] = s;
        m[at(param) + i] = f(p + f(f(f(-clr) * g) / f(f(Math.sqrt(s)) + f(eps))));
      }
    },

    embedding_forward(out, weight, ids, n, dim) {
      const m = F();
      for (let t = 0; t < n; t++) {
        const id = Math.trunc(m[at(ids) + t]!);
        m.copyWithin(at(out) + t * dim, at(weight) + id * dim, at(weight) + (id + 1) * dim);
      }
    },
    embedding_forward_half(out, weight, ids, n, dim, bf16) {
      for (let t = 0; t < n; t++) {
        const id = Math.trunc(F()[at(ids) + t]!);
        widen(out + t * dim * 4, weight + id * dim * 2, dim, bf16 ? 2 : 1);
      }
    },
    widen_f16(out, inp, n) {
      widen(out, inp, n, 1);
    },
    widen_bf16(out, inp, n) {
      widen(out, inp, n, 2);
    },
    embedding_backward(dweight, dout, ids, n, dim, paddingIdx) {
      const m = F();
      for (let t = 0; t < n; t++) {
        const id = Math.trunc(m[at(ids) + t]!);
        if (id === paddingIdx) continue;
        for (let j = 0; j < dim; j++) m[at(dweight) + id * dim + j] = f(m[at(dweight) + id * dim + j]! + m[at(dout) + t * dim + j]!);
      }
    },
    add_broadcast(out, inp, b, rows, cols) {
      const m = F();
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) m[at(out) + r * cols + c] = f(m[at(inp) + r * cols + c]! + m[at(b) + c]!);
      }
    },
    token_pool_forward(out, argmax, x, mask, mode, rows, T, D) {
      const m = F();
      for (let r = 0; r < rows; r++) {
        const counts = (t: number) => mask === 0 || m[at(mask) + r * T + t] !== 0;
        const xAt = (t: number, j: number) => m[at(x) + (r * T + t) * D + j]!;
        for (let j = 0; j < D; j++) {
          let value: number;
          if (mode === POOL.mean) {
            let sum = 0;
            let count = 0;
            for (let t = 0; t < T; t++) if (counts(t)) (sum = f(sum + xAt(t, j))), count++;
            value = f(sum / count);
          } else if (mode === POOL.max) {
            let best = -Infinity;
            let taken = -1;
            for (let t = 0; t < T; t++) {
              if (!counts(t)) continue;
              const v = xAt(t, j);
              if (taken < 0 || v > best || (Number.isNaN(v) && !Number.isNaN(best))) (best = v), (taken = t);
            }
            value = best;
            m[at(argmax) + r * D + j] = taken;
          } else {
            value = xAt(pooledToken(m, mode, mask, r, T), j);
          }
          m[at(out) + r * D + j] = value;
        }
      }
    },
    token_pool_backward(dx, dout, argmax, mask, mode, rows, T, D) {
      const m = F();
      m.fill(0, at(dx), at(dx) + rows * T * D);
      for (let r = 0; r < rows; r++) {
        const counts = (t: number) => mask === 0 || m[at(mask) + r * T + t] !== 0;
        const g = (j: number) => m[at(dout) + r * D + j]!;
        const dxAt = (t: number, j: number) => at(dx) + (r * T + t) * D + j;
        if (mode === POOL.mean) {
          let count = 0;
          for (let t = 0; t < T; t++) if (counts(t)) count++;
          for (let t = 0; t < T; t++) if (counts(t)) for (let j = 0; j < D; j++) m[dxAt(t, j)] = f(g(j) / count);
        } else if (mode === POOL.max) {
          for (let j = 0; j < D; j++) {
            const taken = m[at(argmax) + r * D + j]!;
            if (taken >= 0) m[dxAt(taken, j)] = g(j);
          }
        } else {
          const t = pooledToken(m, mode, mask, r, T);
          for (let j = 0; j < D; j++) m[dxAt(t, j)] = g(j);
        }
      }
    },

    sum_squares(x, n) {
      const m = F();
      let s = 0;
      for (let i = 0; i < n; i++) s += m[at(x) + i]! * m[at(x) + i]!;
      return s;
    },
    sum_abs_pow(x, p, n) {
      const m = F();
      let s = 0;
      for (let i = 0; i < n; i++) s += Math.abs(m[at(x) + i]!) ** p;
      return s;
    },
    max_abs(x, n) {
      const m = F();
      let mx = 0;
      for (let i = 0; i < n; i++) {
        const a = Math.abs(m[at(x) + i]!);
        if (Number.isNaN(a)) return NaN;
        mx = Math.max(mx, a);
      }
      return mx;
    },

    layer_norm_forward(out, mean, rstd, inp, weight, bias, rows, D, eps, center) {
      const m = F();
      const epsF = f(eps);
      for (let r = 0; r < rows; r++) {
        const x = at(inp) + r * D;
        const mu = center ? f(laneSum(D, (j) => m[x + j]!) / D) : 0;
        const variance = laneSum(D, (j) => {
          const d = f(m[x + j]! - mu);
          return f(d * d);
        });
        const rs = f(1 / f(Math.sqrt(f(f(variance / D) + epsF))));
        if (center) m[at(mean) + r] = mu;
        m[at(rstd) + r] = rs;
        for (let j = 0; j < D; j++) {
          let v = f(f(m[x + j]! - mu) * rs);
          if (weight !== 0) v = f(v * m[at(weight) + j]!);
          if (bias !== 0) v = f(v + m[at(bias) + j]!);
          m[at(out) + r * D + j] = v;
        }
      }
    },
    layer_norm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, rows, D, center) {
      const m = F();
      for (let r = 0; r < rows; r++) {
        const x = at(inp) + r * D;
        const dy = at(dout) + r * D;
        const mu = center ? m[at(mean) + r]! : 0;
        const rs = m[at(rstd) + r]!;
        const xh = (j: number) => f(f(m[x + j]! - mu) * rs);
        const g = (j: number) => (weight !== 0 ? f(m[dy + j]! * m[at(weight) + j]!) : m[dy + j]!);
        if (dinp !== 0) {
          const a = center ? f(laneSum(D, g) / D) : 0;
          const b = f(laneSum(D, (j) => f(g(j) * xh(j))) / D);
          for (let j = 0; j < D; j++) m[at(dinp) + r * D + j] = f(f(f(g(j) - a) - f(xh(j) * b)) * rs);
        }
        for (let j = 0; j < D; j++) {
          if (dweight !== 0) m[at(dweight) + j] = f(m[at(dweight) + j]! + f(m[dy + j]! * xh(j)));
          if (dbias !== 0) m[at(dbias) + j] = f(m[at(dbias) + j]! + m[dy + j]!);
        }
      }
    },
    batch_norm_stats(mean, variance, inp, N, C, L) {
      const m = F();
      const count = f(N * L);
      const x = (c: number) => (n: number, l: number) => m[at(inp) + (n * C + c) * L + l]!;
      for (let c = 0; c < C; c++) {
        const mu = f(channelSum(N, L, x(c)) / count);
        m[at(mean) + c] = mu;
        m[at(variance) + c] = f(
          channelSum(N, L, (n, l) => {
            const d = f(x(c)(n, l) - mu);
            return f(d * d);
          }) / count,
        );
      }
    },
    batch_norm_update(runningMean, runningVar, numBatchesTracked, mean, variance, C, momentum, count) {
      const m = F();
      const tracked = m[at(numBatchesTracked)]! + 1;
      m[at(numBatchesTracked)] = tracked;
      const k = momentum < 0 ? 1 / tracked : momentum;
      const unbias = count / (count - 1);
      for (let c = 0; c < C; c++) {
        m[at(runningMean) + c] = k * m[at(mean) + c]! + (1 - k) * m[at(runningMean) + c]!;
        m[at(runningVar) + c] = k * (m[at(variance) + c]! * unbias) + (1 - k) * m[at(runningVar) + c]!;
      }
    },
    batch_norm_forward(out, inp, mean, variance, weight, bias, N, C, L, eps) {
      const m = F();
      for (let c = 0; c < C; c++) {
        const mu = m[at(mean) + c]!;
        const rs = f(1 / f(Math.sqrt(f(m[at(variance) + c]! + f(eps)))));
        for (let n = 0; n < N; n++) {
          for (let l = 0; l < L; l++) {
            const i = (n * C + c) * L + l;
            let v = f(f(m[at(inp) + i]! - mu) * rs);
            if (weight !== 0) v = f(v * m[at(weight) + c]!);
            if (bias !== 0) v = f(v + m[at(bias) + c]!);
            m[at(out) + i] = v;
          }
        }
      }
    },
    conv_im2col(col, x, ...g) {
      const L = (g[13] - g[12]) * g[11];
      convTaps(g, (k, l, src) => {
        const m = F();
        m[at(col) + k * L + l] = src < 0 ? 0 : m[at(x) + src]!;
      });
    },
    conv_im2col_t(colT, x, ...g) {
      const K = g[0] * g[3] * g[4];
      convTaps(g, (k, l, src) => {
        const m = F();
        m[at(colT) + l * K + k] = src < 0 ? 0 : m[at(x) + src]!;
      });
    },
    conv_col2im(dx, dcol, ...g) {
      const L = (g[13] - g[12]) * g[11];
      convTaps(g, (k, l, dst) => {
        const m = F();
        if (dst >= 0) m[at(dx) + dst] = f(m[at(dx) + dst]! + m[at(dcol) + k * L + l]!);
      });
    },
    conv_bias_forward(out, bias, rows, channels, L) {
      const m = F();
      for (let n = 0; n < rows; n++) for (let c = 0; c < channels; c++) m.fill(m[at(bias) + c]!, at(out) + (n * channels + c) * L, at(out) + (n * channels + c + 1) * L);
    },
    conv_bias_backward(dbias, dout, rows, channels, L) {
      // the kernel's order: four lane sums over l, (l0 + l1) + (l2 + l3), the tail, then into s
      const m = F();
      for (let c = 0; c < channels; c++) {
        let s = m[at(dbias) + c]!;
        for (let n = 0; n < rows; n++) {
          const p = at(dout) + (n * channels + c) * L;
          const lanes = [0, 0, 0, 0];
          const L4 = L - (L % 4);
          for (let l = 0; l < L4; l++) lanes[l % 4] = f(lanes[l % 4]! + m[p + l]!);
          let r = f(f(lanes[0]! + lanes[1]!) + f(lanes[2]! + lanes[3]!));
          for (let l = L4; l < L; l++) r = f(r + m[p + l]!);
          s = f(s + r);
        }
        m[at(dbias) + c] = s;
      }
    },

    max_pool_forward(out, indices, x, planes, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW) {
      const m = F();
      const idx = I();
      for (let p = 0; p < planes; p++) {
        for (let oh = 0; oh < OH; oh++) {
          for (let ow = 0; ow < OW; ow++) {
            // torch: taps from the first inside the image, every dilation step, up to the image's end
            let ih0 = oh * SH - PH;
            let iw0 = ow * SW - PW;
            const ih1 = Math.min(ih0 + (KH - 1) * DH + 1, H);
            const iw1 = Math.min(iw0 + (KW - 1) * DW + 1, W);
            while (ih0 < 0) ih0 += DH;
            while (iw0 < 0) iw0 += DW;
            let best = -Infinity;
            let arg = ih0 * W + iw0;
            for (let ih = ih0; ih < ih1; ih += DH) {
              for (let iw = iw0; iw < iw1; iw += DW) {
                const v = m[at(x) + p * H * W + ih * W + iw]!;
                if (v > best || Number.isNaN(v)) (best = v), (arg = ih * W + iw);
              }
            }
            const e = (p * OH + oh) * OW + ow;
            m[at(out) + e] = best;
            idx[at(indices) + e] = arg;
          }
        }
      }
    },
    batch_norm_backward(dinp, dweight, dbias, sums, dout, inp, mean, variance, weight, N, C, L, eps) {
      const m = F();
      const count = f(N * L);
      for (let c = 0; c < C; c++) {
        const mu = m[at(mean) + c]!;
        const rs = f(1 / f(Math.sqrt(f(m[at(variance) + c]! + f(eps)))));
        const index = (n: number, l: number) => (n * C + c) * L + l;
        const xh = (i: number) => f(f(m[at(inp) + i]! - mu) * rs);
        const sdy = channelSum(N, L, (n, l) => m[at(dout) + index(n, l)]!);
        const sdyx = channelSum(N, L, (n, l) => f(m[at(dout) + index(n, l)]! * xh(index(n, l))));
        m[at(sums) + c] = sdy;
        m[at(sums) + C + c] = sdyx;
        if (dweight !== 0) m[at(dweight) + c] = f(m[at(dweight) + c]! + sdyx);
        if (dbias !== 0) m[at(dbias) + c] = f(m[at(dbias) + c]! + sdy);
        if (dinp === 0) continue;
        const a = f(sdy / count);
        const b = f(sdyx / count);
        const k = f((weight !== 0 ? m[at(weight) + c]! : 1) * rs);
        for (let n = 0; n < N; n++) {
          for (let l = 0; l < L; l++) {
            const i = index(n, l);
            m[at(dinp) + i] = f(f(f(m[at(dout) + i]! - a) - f(xh(i) * b)) * k);
          }
        }
      }
    },
    max_pool_backward(dx, dy, indices, planes, H, W, OH, OW) {
      const m = F();
      const idx = I();
      m.fill(0, at(dx), at(dx) + planes * H * W);
      for (let e = 0; e < planes * OH * OW; e++) {
        const t = at(dx) + Math.floor(e / (OH * OW)) * H * W + idx[at(indices) + e]!;
        m[t] = f(m[t]! + m[at(dy) + e]!);
      }
    },
    avg_pool_forward(out, x, planes, H, W, KH, KW, SH, SW, PH, PW, OH, OW, countIncludePad, divisorOverride) {
      const m = F();
      avgWindows(planes, H, W, KH, KW, SH, SW, PH, PW, OH, OW, countIncludePad, divisorOverride, (p, e, w) => {
        let s = 0;
        for (let ih = w.h0; ih < w.h1; ih++) for (let iw = w.w0; iw < w.w1; iw++) s = f(s + m[at(x) + p * H * W + ih * W + iw]!);
        m[at(out) + e] = w.h0 < w.h1 && w.w0 < w.w1 ? f(s / w.divisor) : 0;
      });
    },
    avg_pool_backward(dx, dy, planes, H, W, KH, KW, SH, SW, PH, PW, OH, OW, countIncludePad, divisorOverride) {
      const m = F();
      m.fill(0, at(dx), at(dx) + planes * H * W);
      avgWindows(planes, H, W, KH, KW, SH, SW, PH, PW, OH, OW, countIncludePad, divisorOverride, (p, e, w) => {
        const delta = f(m[at(dy) + e]! / w.divisor);
        for (let ih = w.h0; ih < w.h1; ih++) {
          for (let iw = w.w0; iw < w.w1; iw++) {
            const t = at(dx) + p * H * W + ih * W + iw;
            m[t] = f(m[t]! + delta);
          }
        }
      });
    },
    adaptive_avg_pool_forward(out, x, planes, H, W, OH, OW) {
      const m = F();
      adaptiveWindows(planes, H, W, OH, OW, (p, e, w) => {
        let s = 0;
        for (let ih = w.h0; ih < w.h1; ih++) for (let iw = w.w0; iw < w.w1; iw++) s = f(s + m[at(x) + p * H * W + ih * W + iw]!);
        m[at(out) + e] = f(f(s / (w.h1 - w.h0)) / (w.w1 - w.w0));
      });
    },
    adaptive_avg_pool_backward(dx, dy, planes, H, W, OH, OW) {
      const m = F();
      m.fill(0, at(dx), at(dx) + planes * H * W);
      adaptiveWindows(planes, H, W, OH, OW, (p, e, w) => {
        const delta = f(f(m[at(dy) + e]! / (w.h1 - w.h0)) / (w.w1 - w.w0));
        for (let ih = w.h0; ih < w.h1; ih++) {
          for (let iw = w.w0; iw < w.w1; iw++) {
            const t = at(dx) + p * H * W + ih * W + iw;
            m[t] = f(m[t]! + delta);
          }
        }
      });
    },
    run_program(ctl) {
      return runProgramReference(kernels, memory, ctl);
    },
    heap_base: () => heapBase,
  };
  return kernels;
}
