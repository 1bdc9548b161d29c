/**
 * Finite-difference checks of every backward pass.
 *
 * Method (and why): the analytic gradient comes from the kernel under test (the WASM build, and
 * the reference twin as well); the numeric one is a central difference, h = 1e-5, of the
 * forward formula written out here in float64 from the PyTorch documentation (not from either
 * implementation). In f64 the truncation error (h^2/6 |f'''|, about 1e-11) and the rounding error
 * (1e-16 |f| / h, about 1e-11) are both far below f32 resolution, so the numeric gradient is
 * exact to f32 purposes and the tolerance only has to absorb the kernel's own f32 rounding:
 * |analytic - numeric| <= RTOL |numeric| + ATOL * scale, with RTOL = 1e-5 and ATOL = 1e-6 of the
 * tensor's gradient scale (e.g. tanh'(x) = 1 - y^2 from an f32 y near 1 loses ~5e-5 relative,
 * but only ~6e-8 absolute). A wrong sign, factor, index or a missing term is off by far more.
 * Points within 1e-2 of a kink (relu/leaky at 0, l1 at d = 0, huber/smooth_l1 at |d| = delta,
 * hinge at t x = 1, multi_margin at z = 0) are moved away first.
 *
 * Dropout is the one exception: its mask comes from a hash inside the kernel, so its check
 * differences the WASM forward itself in f32 (h = 1e-2, dividing by the actually representable
 * step), where rounding of x*mask gives ~1e-5 relative error: RTOL 1e-4 there.
 */
import { afterAll, describe, expect, it } from "vitest";
import { instantiateKernels, type Kernels, type Ptr } from "../../src/engine/kernels.js";
import { ACTIVATIONS } from "../../src/engine/layers/activations.js";
import { attentionOp } from "../../src/engine/ops/attention.js";
import { mulOp } from "../../src/engine/ops/elementwise.js";
import { opDef } from "../../src/engine/ops/index.js";
import { ropeOp } from "../../src/engine/ops/rope.js";
import type { AttentionOp, AvgPoolOp, ConvOp, KernelOpContext, MaxPoolOp, MulOp, OpKind, RopeOp } from "../../src/engine/ops/types.js";
import { createReferenceKernels } from "../../src/engine/reference.js";
import { Rng, Stats, loadVariant, moduleOf } from "./harness.js";
import { OP_GRADCHECKS } from "./op-gradchecks.js";

const H = 1e-5;
const RTOL = 1e-5;
const ATOL = 1e-6;
const f = Math.fround;

const stats = new Stats();
afterAll(() => console.log(stats.report("gradcheck: largest |analytic - numeric| / (gradient scale)")));

/** Op kinds whose whole op (forward and backward of its OpDef) a test below checked: see the coverage test at the end. */
const OPS_CHECKED = new Set<OpKind>();

// ------------------------------------------------------------------ the implementations under test

/** One memory and a bump allocator: the kernels under test see byte offsets into it. */
class Lab {
  private top: number;
  constructor(readonly k: Kernels, readonly mem: WebAssembly.Memory, private readonly base: number) {
    this.top = base;
  }
  reset(): void {
    this.top = this.base;
  }
  alloc(n: number): Ptr {
    const ptr = this.top;
    this.top = Math.ceil((ptr + n * 4 + 16) / 16) * 16;
    if (this.top > this.mem.buffer.byteLength) this.mem.grow(Math.ceil((this.top - this.mem.buffer.byteLength) / 65536));
    return ptr;
  }
  put(data: ArrayLike<number>): Ptr {
    const ptr = this.alloc(data.length);
    new Float32Array(this.mem.buffer, ptr, data.length).set(data);
    return ptr;
  }
  get(ptr: Ptr, n: number): Float32Array {
    return new Float32Array(this.mem.buffer, ptr, n).slice();
  }
}

interface Impl {
  name: string;
  skip: string;
  make: () => Promise<Lab>;
}

const simd = loadVariant("simd");
const relaxed = loadVariant("relaxed-simd");
const wasmImpl = (v: typeof simd): Impl => ({
  name: `${v.name}.wasm`,
  skip: v.skipReason,
  make: async () => {
    const mem = new WebAssembly.Memory({ initial: 4 });
    const k = await instantiateKernels(moduleOf(v), mem);
    return new Lab(k, mem, Math.ceil(k.heap_base() / 16) * 16);
  },
});
const IMPLS: Impl[] = [
  wasmImpl(simd),
  wasmImpl(relaxed),
  {
    name: "reference twin",
    skip: "",
    make: async () => {
      const mem = new WebAssembly.Memory({ initial: 4 });
      return new Lab(createReferenceKernels(mem, 1024), mem, 1024);
    },
  },
];

// ------------------------------------------------------------------ comparison

/** Collects |analytic - numeric| <= RTOL |numeric| + ATOL scale violations. */
function compare(family: string, analytic: ArrayLike<number>, numeric: ArrayLike<number>, scale: number, rtol = RTOL, atol = ATOL): string[] {
  const bad: string[] = [];
  let worst = 0;
  for (let i = 0; i < numeric.length; i++) {
    const d = Math.abs(analytic[i]! - numeric[i]!);
    worst = Math.max(worst, d / scale);
    if (!(d <= rtol * Math.abs(numeric[i]!) + atol * scale)) {
      if (bad.length < 4) bad.push(`${family}[${i}]: analytic ${analytic[i]} numeric ${numeric[i]} |diff| ${d.toExponential(2)}`);
    }
  }
  stats.record(family, { ratio: worst });
  return bad;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/** Central difference of a scalar function of a vector, one coordinate at a time, in f64. */
function numericGrad(x: ArrayLike<number>, fn: (x: Float64Array) => number): Float64Array {
  const v = Float64Array.from(x);
  const g = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const x0 = v[i]!;
    v[i] = x0 + H;
    const up = fn(v);
    v[i] = x0 - H;
    const down = fn(v);
    v[i] = x0;
    g[i] = (up - down) / (2 * H);
  }
  return g;
}

// ------------------------------------------------------------------ f64 formulas

/** erf to ~1e-15 for |x| < 3.5 (Maclaurin series; the tests stay within |x| < 3). */
/**
 * Every activation of the registry, with its float64 formula from the registry (written from
 * the PyTorch docs, not from either implementation); LeakyReLU at two slopes.
 */
const ACTIVATION_CASES = Object.entries(ACTIVATIONS).flatMap(([name, a]) =>
  (name === "leaky_relu" ? [0.01, 0.2] : [0]).map((slope) => ({
    label: name === "leaky_relu" ? `${name} slope ${slope}` : name,
    code: a.code,
    slope,
    F: (x: number) => a.f64(x, slope),
  })),
);

/** Runs the kernel's forward then backward; returns [out, dinp]. */
function runActivation(lab: Lab, code: number, slope: number, x: Float32Array, dout: Float32Array): [Float32Array, Float32Array] {
  const n = x.length;
  const k = lab.k;
  const px = lab.put(x), pg = lab.put(dout), out = lab.alloc(n), dinp = lab.alloc(n);
  k.activation_forward(out, px, code, slope, n);
  k.activation_backward(dinp, pg, px, out, code, slope, n);
  return [lab.get(out, n), lab.get(dinp, n)];
}

// losses: each takes the (f64) prediction and returns the mean loss as PyTorch defines it

interface LossCase {
  name: string;
  /** (lab, grad ptr, pred ptr) -> loss value from the kernel */
  run: (lab: Lab, grad: Ptr, pred: Ptr) => number;
  ref: (pred: Float64Array) => number;
  pred: Float32Array;
}

function pointwiseLosses(rng: Rng): LossCase[] {
  const n = 65;
  const out: LossCase[] = [];
  /** target and pred with d = pred - target at least 1e-2 away from every kink in `kinks` (in |d|) */
  const make = (kinks: number[]) => {
    const t = rng.f32(n, -2, 2);
    const p = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let v: number;
      do v = f(t[i]! + rng.uniform(-2.5, 2.5));
      while (kinks.some((k) => Math.abs(Math.abs(v - t[i]!) - k) < 1e-2));
      p[i] = v;
    }
    return [p, t] as const;
  };
  {
    const [p, t] = make([]);
    out.push({
      name: "mse_loss", pred: p,
      run: (lab, g, pp) => lab.k.mse_loss(g, pp, lab.put(t), n),
      ref: (x) => x.reduce((s, v, i) => s + (v - t[i]!) ** 2, 0) / n,
    });
  }
  {
    const [p, t] = make([0]);
    out.push({
      name: "l1_loss", pred: p,
      run: (lab, g, pp) => lab.k.l1_loss(g, pp, lab.put(t), n),
      ref: (x) => x.reduce((s, v, i) => s + Math.abs(v - t[i]!), 0) / n,
    });
  }
  for (const delta of [1, 0.5]) {
    const [p, t] = make([delta]);
    out.push({
      name: `huber_loss delta=${delta}`, pred: p,
      run: (lab, g, pp) => lab.k.huber_loss(g, pp, lab.put(t), delta, n),
      ref: (x) => x.reduce((s, v, i) => {
        const d = Math.abs(v - t[i]!);
        return s + (d < delta ? 0.5 * d * d : delta * (d - 0.5 * delta));
      }, 0) / n,
    });
  }
  for (const beta of [1, 0.5, 0]) {
    const [p, t] = make([beta]);
    out.push({
      name: `smooth_l1_loss beta=${beta}`, pred: p,
      run: (lab, g, pp) => lab.k.smooth_l1_loss(g, pp, lab.put(t), beta, n),
      ref: (x) => x.reduce((s, v, i) => {
        const d = Math.abs(v - t[i]!);
        return s + (d < beta ? (0.5 * d * d) / beta : d - 0.5 * beta);
      }, 0) / n,
    });
  }
  {
    // labels 1 -> +1, else -1; kink at t x = 1
    const t = Float32Array.from({ length: n }, (_, i) => [1, 0, -1][i % 3]!);
    const sign = (i: number) => (t[i] === 1 ? 1 : -1);
    const p = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let v: number;
      do v = f(rng.uniform(-3, 3));
      while (Math.abs(1 - sign(i) * v) < 1e-2);
      p[i] = v;
    }
    out.push({
      name: "hinge_loss", pred: p,
      run: (lab, g, pp) => lab.k.hinge_loss(g, pp, lab.put(t), n),
      ref: (x) => x.reduce((s, v, i) => s + Math.max(0, 1 - sign(i) * v), 0) / n,
    });
  }
  return out;
}

function classLosses(rng: Rng): LossCase[] {
  const out: LossCase[] = [];
  const B = 9;
  for (const C of [1, 3, 5]) {
    for (const weighted of [false, true]) {
      for (const eps of [0, 0.1]) {
        for (const ignore of [-100, 2]) {
          const logits = rng.f32(B * C, -3, 3);
          const target = Float32Array.from({ length: B }, () => rng.int(C));
          target[1] = ignore; // at least one ignored row
          if (B > 4) target[4] = ignore;
          target[0] = 0; // at least one counted row (ignore_index 2 is never 0)
          const w = rng.f32(C, 0.2, 2);
          const wc = (c: number) => (weighted ? w[c]! : 1);
          const epsF = f(eps);
          out.push({
            name: `cross_entropy C=${C} weight=${weighted} label_smoothing=${eps} ignore_index=${ignore}`,
            pred: logits,
            run: (lab, g, pp) => lab.k.cross_entropy_loss(g, pp, lab.put(target), weighted ? lab.put(w) : 0, B, C, ignore, eps),
            ref: (x) => {
              // torch: [(1-eps) sum_i -w_y logp_iy + eps/C sum_i sum_c -w_c logp_ic] / sum_i w_y (rows != ignore_index)
              let nll = 0, smooth = 0, W = 0;
              for (let i = 0; i < B; i++) {
                const y = target[i]!;
                if (y === ignore) continue;
                const row = x.subarray(i * C, i * C + C);
                const m = Math.max(...row);
                const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
                nll -= wc(y) * (row[y]! - lse);
                for (let c = 0; c < C; c++) smooth -= wc(c) * (row[c]! - lse);
                W += wc(y);
              }
              return ((1 - epsF) * nll + (epsF / C) * smooth) / W;
            },
          });
        }
      }
    }
  }
  for (const C of [1, 2, 3]) {
    for (const withPw of [false, true]) {
      const n = B * C;
      const logits = rng.f32(n, -5, 5);
      const target = Float32Array.from({ length: n }, (_, k) => (k % 3 === 2 ? rng.next() : rng.int(2)));
      const pw = rng.f32(C, 0.1, 4);
      out.push({
        name: `bce_with_logits C=${C} pos_weight=${withPw}`,
        pred: logits,
        run: (lab, g, pp) => lab.k.bce_with_logits_loss(g, pp, lab.put(target), withPw ? lab.put(pw) : 0, B, C),
        ref: (x) => {
          // torch: -[pw y log s(x) + (1 - y) log(1 - s(x))], mean
          let s = 0;
          for (let k = 0; k < n; k++) {
            const y = target[k]!, p = withPw ? pw[k % C]! : 1, v = x[k]!;
            const logSig = -Math.log1p(Math.exp(-Math.abs(v))) + Math.min(v, 0);
            const log1mSig = logSig - v;
            s -= p * y * logSig + (1 - y) * log1mSig;
          }
          return s / n;
        },
      });
    }
  }
  for (const C of [2, 3, 5]) {
    for (const p of [1, 2]) {
      for (const weighted of [false, true]) {
        for (const margin of [1, 0.5]) {
          const target = Float32Array.from({ length: B }, () => rng.int(C));
          const logits = new Float32Array(B * C);
          // z = margin - x_y + x_j kept 1e-2 away from 0 for every j != y
          for (let i = 0; i < B; i++) {
            const y = target[i]!;
            logits[i * C + y] = f(rng.uniform(-2, 2));
            for (let j = 0; j < C; j++) {
              if (j === y) continue;
              let v: number;
              do v = f(rng.uniform(-2, 2));
              while (Math.abs(margin - logits[i * C + y]! + v) < 1e-2);
              logits[i * C + j] = v;
            }
          }
          const w = rng.f32(C, 0.2, 2);
          out.push({
            name: `multi_margin C=${C} p=${p} weight=${weighted} margin=${margin}`,
            pred: logits,
            run: (lab, g, pp) => lab.k.multi_margin_loss(g, pp, lab.put(target), weighted ? lab.put(w) : 0, B, C, p, margin),
            ref: (x) => {
              // torch: sum_{j != y} w_y max(0, margin - x_y + x_j)^p / C, mean over rows
              let s = 0;
              for (let i = 0; i < B; i++) {
                const y = target[i]!;
                for (let j = 0; j < C; j++) {
                  if (j !== y) s += (weighted ? w[y]! : 1) * Math.max(0, margin - x[i * C + y]! + x[i * C + j]!) ** p / C;
                }
              }
              return s / B;
            },
          });
        }
      }
    }
  }
  return out;
}


// ------------------------------------------------------------------ attention (the whole op)

interface AttentionCase {
  label: string;
  rows: number;
  T: number;
  D: number;
  heads: number;
  /** Key/value heads (grouped-query attention when below heads); heads by default. */
  kvHeads?: number;
  /** packed by default: one qkv [T, D + 2 Dkv]; separate: q [T, D], k and v [T, Dkv]. */
  layout?: "packed" | "separate";
  causal: boolean;
  /** [rows, T] key-padding mask (1 token, 0 padding), or null */
  mask: number[][] | null;
  p?: number;
}

const ATTENTION_CASES: AttentionCase[] = [
  { label: "2 heads of 3", rows: 2, T: 5, D: 6, heads: 2, causal: false, mask: null },
  { label: "causal, 2 heads of 3", rows: 2, T: 5, D: 6, heads: 2, causal: true, mask: null },
  { label: "1 head of 4, T = 1", rows: 3, T: 1, D: 4, heads: 1, causal: false, mask: null },
  // padding at the end, in the middle, and a sample that is all padding (its queries see nothing)
  { label: "key padding, 3 heads of 2", rows: 3, T: 5, D: 6, heads: 3, causal: false, mask: [[1, 1, 1, 0, 0], [1, 0, 1, 1, 0], [0, 0, 0, 0, 0]] },
  // left padding with causal: the first queries of sample 0 see no key at all
  { label: "key padding and causal", rows: 2, T: 6, D: 4, heads: 2, causal: true, mask: [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 0, 1]] },
  { label: "dropout p = 0.3 on the weights", rows: 2, T: 5, D: 6, heads: 2, causal: true, mask: [[1, 1, 1, 1, 1], [1, 1, 0, 1, 1]], p: 0.3 },
  // grouped-query attention (Llama's num_key_value_heads) and the separate q, k, v layout (BERT, Llama)
  { label: "grouped-query, 4 heads over 2 key/value heads, packed, key padding", rows: 2, T: 5, D: 8, heads: 4, kvHeads: 2, causal: false, mask: [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]] },
  { label: "separate q, k, v, 2 heads of 3, key padding", rows: 2, T: 5, D: 6, heads: 2, layout: "separate", causal: false, mask: [[1, 1, 0, 1, 1], [1, 1, 1, 1, 0]] },
  { label: "separate, grouped-query 6 heads over 2, causal, dropout p = 0.3", rows: 2, T: 4, D: 12, heads: 6, kvHeads: 2, layout: "separate", causal: true, mask: null, p: 0.3 },
  { label: "separate, multi-query (3 heads over 1), causal with left padding", rows: 2, T: 6, D: 6, heads: 3, kvHeads: 1, layout: "separate", causal: true, mask: [[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]] },
];

/** Widths of a case: dh, Dkv = kvHeads * dh, and the packed row D + 2 Dkv. */
function attentionWidths(c: AttentionCase) {
  const dh = c.D / c.heads, G = c.kvHeads ?? c.heads;
  return { dh, G, Dkv: G * dh, W: c.D + 2 * G * dh };
}

/**
 * The float64 formula of nn.MultiheadAttention's core (torch multi_head_attention_forward
 * between in_proj and out_proj), written from the PyTorch docs: per sample and head,
 * S = (q / sqrt(dh)) k^T + masks (-inf for padded keys and, causal, keys after the query),
 * P = softmax(S), dropout (P * keep, keep = 0 or 1/(1-p), given), O = P v, heads concatenated.
 * Grouped-query attention as transformers' repeat_kv: query head h reads key/value head
 * floor(h / (heads / kvHeads)). The input is always given packed, [rows, T, D + 2 Dkv] with
 * columns q | k | v (the separate layout's q, k, v are its column blocks). A query with every
 * key hidden is 0 here (PyTorch: NaN), as documented for the op.
 */
function attentionF64(c: AttentionCase, qkv: ArrayLike<number>, keep: ArrayLike<number> | null): Float64Array {
  const { rows, T, D, heads } = c;
  const { dh, G, Dkv, W } = attentionWidths(c);
  const out = new Float64Array(rows * T * D);
  for (let b = 0; b < rows; b++) {
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / (heads / G));
      const q = (t: number, d: number) => qkv[b * T * W + t * W + h * dh + d]!;
      const k = (t: number, d: number) => qkv[b * T * W + t * W + D + g * dh + d]!;
      const v = (t: number, d: number) => qkv[b * T * W + t * W + D + Dkv + g * dh + d]!;
      for (let i = 0; i < T; i++) {
        const s = new Float64Array(T).fill(-Infinity);
        for (let j = 0; j < T; j++) {
          if ((c.mask && c.mask[b]![j] === 0) || (c.causal && j > i)) continue;
          let dot = 0;
          for (let d = 0; d < dh; d++) dot += (q(i, d) / Math.sqrt(dh)) * k(j, d);
          s[j] = dot;
        }
        const m = Math.max(...s);
        if (m === -Infinity) continue; // every key hidden: 0
        const e = s.map((x) => Math.exp(x - m));
        const z = e.reduce((a, x) => a + x, 0);
        for (let j = 0; j < T; j++) {
          const pij = (e[j]! / z) * (keep ? keep[((b * heads + h) * T + i) * T + j]! : 1);
          for (let d = 0; d < dh; d++) out[b * T * D + i * D + h * dh + d] += pij * v(j, d);
        }
      }
    }
  }
  return out;
}

/** The first n of every sample's T rows of width `width`, from a [rows, T, width] array. */
function firstRowsOf(a: ArrayLike<number>, rows: number, T: number, n: number, width: number): Float32Array {
  const out = new Float32Array(rows * n * width);
  for (let b = 0; b < rows; b++) {
    for (let t = 0; t < n; t++) for (let j = 0; j < width; j++) out[(b * n + t) * width + j] = a[(b * T + t) * width + j]!;
  }
  return out;
}

/** The largest |a - b| over the largest |b| (0 when equal bit for bit, or both empty). */
function worstRelative(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let worst = 0, scale = 0;
  for (let i = 0; i < b.length; i++) {
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return scale === 0 ? worst : worst / scale;
}

/** The column block [from, from + width) of every row of a [rows * T, W] array. */
function columns(a: ArrayLike<number>, W: number, from: number, width: number): Float32Array {
  const n = a.length / W;
  const out = new Float32Array(n * width);
  for (let r = 0; r < n; r++) for (let j = 0; j < width; j++) out[r * width + j] = a[r * W + from + j]!;
  return out;
}

/**
 * Runs the attention op's forward and backward on `lab`'s kernels; returns [out, dqkv, dropout
 * mask] with dqkv packed as the input (the separate layout's dq, dk, dv put back side by side).
 */
function runAttention(lab: Lab, c: AttentionCase, qkv: Float32Array, G: Float32Array, seed: number, queries = c.T) {
  const { rows, T, D, heads } = c;
  const { G: kvHeads, Dkv, W } = attentionWidths(c);
  const layout = c.layout ?? "packed";
  const dropping = (c.p ?? 0) > 0;
  const Tq = queries;
  // q of the first Tq tokens of each sample (all of them unless a query subset is asked for)
  const firstRows = (a: Float32Array, width: number) => (Tq === T ? a : firstRowsOf(a, rows, T, Tq, width));
  const data = layout === "packed" ? [qkv] : [firstRows(columns(qkv, W, 0, D), D), columns(qkv, W, D, Dkv), columns(qkv, W, D + Dkv, Dkv)];
  const outId = data.length + 1;
  const op: AttentionOp = {
    kind: "attention", layout, kvHeads, inputs: [...data.keys(), ...(c.mask ? [data.length] : [])], outputs: [outId], tokens: T, dim: D, heads,
    ...(Tq !== T ? { queries: Tq } : {}),
    causal: c.causal, probs: 0, p: c.p ?? 0, dropMask: dropping ? 1 : -1, dropped: dropping ? 2 : -1, salt: 7,
  };
  const weights = rows * heads * Tq * T;
  const values = [...data.map((d) => lab.put(d)), c.mask ? lab.put(c.mask.flat()) : 0, lab.put(new Float32Array(rows * Tq * D).fill(-777))];
  const saved = [lab.alloc(weights), lab.alloc(weights), lab.alloc(weights)];
  const context: KernelOpContext = {
    k: lab.k,
    value: (id) => values[id]!,
    state: () => 0, stored: () => 0, dtype: () => 0,
    grad: () => 0,
    saved: (id) => (id < 0 ? 0 : saved[id]!),
    workspace: lab.alloc(attentionOp.workspace!(op, rows)),
    training: true,
    seed,
  };
  attentionOp.kernel.forward(context, op, rows);
  OPS_CHECKED.add("attention");
  const out = lab.get(values[outId]!, rows * Tq * D);
  const keep = dropping ? lab.get(saved[1]!, weights) : null;
  const grads = data.map((d) => lab.put(new Float32Array(d.length).fill(-777))); // every element must be written
  attentionOp.kernel.backward(context, op, rows, [lab.put(firstRows(G, D))], [...grads, 0]);
  const got = grads.map((p, i) => lab.get(p, data[i]!.length));
  let dqkv = got[0]!;
  if (layout === "separate") {
    // put back side by side as the packed input (a query subset's dq in its first Tq rows, 0 below)
    dqkv = new Float32Array(qkv.length);
    const widths = [D, Dkv, Dkv];
    for (let r = 0; r < rows * T; r++) {
      let col = 0;
      got.forEach((g, i) => {
        const at = i === 0 ? (r % T < Tq ? Math.floor(r / T) * Tq + (r % T) : -1) : r;
        if (at >= 0) dqkv.set(g.subarray(at * widths[i]!, (at + 1) * widths[i]!), r * W + col);
        col += widths[i]!;
      });
    }
  }
  return { out, dqkv, keep };
}

// ------------------------------------------------------------------ convolution and pooling

/** A convolution to check: geometry as the op sees it (conv1d: H = KH = 1), PH/PW top/left padding. */
interface ConvCheck {
  label: string;
  rows: number; C: number; O: number; groups: number; H: number; W: number;
  KH: number; KW: number; SH: number; SW: number; PH: number; PW: number; DH: number; DW: number;
  OH: number; OW: number;
  /** Output rows per unfold (smaller than OH: the chunked path). */
  rowChunk: number;
}

const CONV_GRADCHECKS: ConvCheck[] = [
  { label: "3x3 padding 1, 2 samples", rows: 2, C: 2, O: 3, groups: 1, H: 5, W: 6, KH: 3, KW: 3, SH: 1, SW: 1, PH: 1, PW: 1, DH: 1, DW: 1, OH: 5, OW: 6, rowChunk: 5 },
  { label: "stride 2x1, dilation 1x2, groups 2, rows in chunks of 2", rows: 2, C: 4, O: 6, groups: 2, H: 7, W: 9, KH: 2, KW: 3, SH: 2, SW: 1, PH: 1, PW: 2, DH: 1, DW: 2, OH: 4, OW: 9, rowChunk: 2 },
  { label: "'same' with kernel 2x4 (one more padding at the bottom and right)", rows: 1, C: 1, O: 2, groups: 1, H: 4, W: 5, KH: 2, KW: 4, SH: 1, SW: 1, PH: 0, PW: 1, DH: 1, DW: 1, OH: 4, OW: 5, rowChunk: 3 },
  { label: "conv1d stride 2 dilation 2 groups 3 (H = 1)", rows: 3, C: 3, O: 3, groups: 3, H: 1, W: 11, KH: 1, KW: 3, SH: 1, SW: 2, PH: 0, PW: 1, DH: 1, DW: 2, OH: 1, OW: 5, rowChunk: 1 },
];

function convOpOf(g: ConvCheck): ConvOp {
  const { C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, O, groups, rowChunk } = g;
  return { kind: "conv", inputs: [0], outputs: [1], weight: 0, bias: 1, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, O, groups, rowChunk };
}

/** The convolution in float64, straight from the formula (zero outside the image). */
function convRef(g: ConvCheck, x: ArrayLike<number>, W: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  const Cg = g.C / g.groups, Og = g.O / g.groups;
  const y = new Float64Array(g.rows * g.O * g.OH * g.OW);
  let e = 0;
  for (let n = 0; n < g.rows; n++) {
    for (let o = 0; o < g.O; o++) {
      const grp = Math.floor(o / Og);
      for (let oh = 0; oh < g.OH; oh++) {
        for (let ow = 0; ow < g.OW; ow++) {
          let s = b[o]!;
          for (let c = 0; c < Cg; c++) {
            for (let kh = 0; kh < g.KH; kh++) {
              for (let kw = 0; kw < g.KW; kw++) {
                const ih = oh * g.SH - g.PH + kh * g.DH, iw = ow * g.SW - g.PW + kw * g.DW;
                if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
                s += W[((o * Cg + c) * g.KH + kh) * g.KW + kw]! * x[((n * g.C + grp * Cg + c) * g.H + ih) * g.W + iw]!;
              }
            }
          }
          y[e++] = s;
        }
      }
    }
  }
  return y;
}

interface PoolCheck {
  label: string;
  kind: "max_pool" | "avg_pool" | "adaptive_avg_pool";
  rows: number; C: number; H: number; W: number;
  KH: number; KW: number; SH: number; SW: number; PH: number; PW: number; DH: number; DW: number;
  OH: number; OW: number;
  countIncludePad: boolean; divisor: number;
}
const pool = (p: Partial<PoolCheck> & Pick<PoolCheck, "label" | "kind" | "H" | "W" | "OH" | "OW">): PoolCheck => ({
  rows: 2, C: 2, KH: 0, KW: 0, SH: 1, SW: 1, PH: 0, PW: 0, DH: 1, DW: 1, countIncludePad: true, divisor: 0, ...p,
});
const POOL_GRADCHECKS: PoolCheck[] = [
  pool({ label: "2x2", kind: "max_pool", H: 6, W: 7, KH: 2, KW: 2, SH: 2, SW: 2, OH: 3, OW: 3 }),
  pool({ label: "3x3 stride 2 padding 1 ceil_mode", kind: "max_pool", H: 6, W: 6, KH: 3, KW: 3, SH: 2, SW: 2, PH: 1, PW: 1, OH: 4, OW: 4 }),
  pool({ label: "2x3 dilation 2x1 overlapping (stride 1)", kind: "max_pool", H: 5, W: 6, KH: 2, KW: 3, DH: 2, OH: 3, OW: 4 }),
  pool({ label: "3x3 stride 2 padding 1 ceil_mode count_include_pad", kind: "avg_pool", H: 6, W: 5, KH: 3, KW: 3, SH: 2, SW: 2, PH: 1, PW: 1, OH: 4, OW: 3 }),
  pool({ label: "3x3 stride 2 padding 1 ceil_mode, count_include_pad false", kind: "avg_pool", H: 6, W: 5, KH: 3, KW: 3, SH: 2, SW: 2, PH: 1, PW: 1, OH: 4, OW: 3, countIncludePad: false }),
  pool({ label: "2x2 divisor_override 3", kind: "avg_pool", H: 4, W: 4, KH: 2, KW: 2, SH: 2, SW: 2, OH: 2, OW: 2, divisor: 3 }),
  pool({ label: "5x7 -> 3x4", kind: "adaptive_avg_pool", H: 5, W: 7, OH: 3, OW: 4 }),
  pool({ label: "3x2 -> 4x5 (windows overlap and repeat)", kind: "adaptive_avg_pool", H: 3, W: 2, OH: 4, OW: 5 }),
];

function poolOpOf(p: PoolCheck): MaxPoolOp | AvgPoolOp {
  const { C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW } = p;
  const geo = { inputs: [0], outputs: [1], C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW };
  if (p.kind === "max_pool") return { kind: "max_pool", ...geo, indices: 0 };
  return { kind: "avg_pool", ...geo, adaptive: p.kind === "adaptive_avg_pool", countIncludePad: p.countIncludePad, divisor: p.divisor };
}

/**
 * Pooling in float64 from the docs: max over the window's taps inside the image; the mean over
 * the taps inside the image divided by the padded window's size (cut at H + PH), the count of
 * taps inside (count_include_pad false) or divisor_override; adaptive windows
 * [floor(o I / O), ceil((o + 1) I / O)).
 */
function poolRef(p: PoolCheck, planes: number, x: ArrayLike<number>): Float64Array {
  const y = new Float64Array(planes * p.OH * p.OW);
  let e = 0;
  for (let q = 0; q < planes; q++) {
    for (let oh = 0; oh < p.OH; oh++) {
      for (let ow = 0; ow < p.OW; ow++) {
        const taps: number[] = [];
        let size = 0;
        if (p.kind === "adaptive_avg_pool") {
          for (let ih = Math.floor((oh * p.H) / p.OH); ih < Math.ceil(((oh + 1) * p.H) / p.OH); ih++) {
            for (let iw = Math.floor((ow * p.W) / p.OW); iw < Math.ceil(((ow + 1) * p.W) / p.OW); iw++) taps.push(x[(q * p.H + ih) * p.W + iw]!);
          }
          size = taps.length;
        } else {
          for (let kh = 0; kh < p.KH; kh++) {
            for (let kw = 0; kw < p.KW; kw++) {
              const ih = oh * p.SH - p.PH + kh * p.DH, iw = ow * p.SW - p.PW + kw * p.DW;
              if (ih < p.H + p.PH && iw < p.W + p.PW) size++;
              if (ih >= 0 && ih < p.H && iw >= 0 && iw < p.W) taps.push(x[(q * p.H + ih) * p.W + iw]!);
            }
          }
        }
        if (p.kind === "max_pool") y[e++] = Math.max(...taps);
        else y[e++] = taps.reduce((s, v) => s + v, 0) / (p.divisor || (p.countIncludePad ? size : taps.length));
      }
    }
  }
  return y;
}

// ------------------------------------------------------------------ rope and mul

interface RopeCase {
  rows: number;
  T: number;
  heads: number;
  headDim: number;
  theta: number;
}

const ROPE_CASES: RopeCase[] = [
  { rows: 2, T: 5, heads: 2, headDim: 6, theta: 10000 }, // half 3: the scalar tail only
  { rows: 1, T: 7, heads: 3, headDim: 10, theta: 500000 }, // half 5: one f32x4 and a tail (Llama 3's theta)
  { rows: 3, T: 4, heads: 1, headDim: 16, theta: 10000 }, // half 8: f32x4 only
];

/**
 * RoPE in float64 from transformers' apply_rotary_pos_emb and LlamaRotaryEmbedding: token t,
 * head h, i < half = headDim / 2, angle a = t / theta^(2i / headDim):
 * y[i] = x[i] cos a - x[i + half] sin a, y[i + half] = x[i + half] cos a + x[i] sin a.
 */
function rope64(c: RopeCase, x: ArrayLike<number>): Float64Array {
  const { rows, T, heads, headDim, theta } = c;
  const half = headDim / 2;
  const y = new Float64Array(rows * T * heads * headDim);
  for (let b = 0; b < rows; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < heads; h++) {
        const base = ((b * T + t) * heads + h) * headDim;
        for (let i = 0; i < half; i++) {
          const a = t / theta ** ((2 * i) / headDim);
          const x1 = x[base + i]!, x2 = x[base + i + half]!;
          y[base + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
          y[base + i + half] = x2 * Math.cos(a) + x1 * Math.sin(a);
        }
      }
    }
  }
  return y;
}

/** A kernel-op context over the lab's memory: values, state, gradients, saved buffers, workspace. */
function opContext(lab: Lab, values: Ptr[], state: Ptr[], grads: Ptr[], saved: Ptr[], workspace: number): KernelOpContext {
  return {
    k: lab.k,
    value: (id) => values[id]!,
    state: (i) => (i < 0 ? 0 : state[i]!),
    stored: (i) => (i < 0 ? 0 : state[i]!),
    dtype: () => 0,
    grad: (i) => (i < 0 ? 0 : grads[i]!),
    saved: (id) => (id < 0 ? 0 : saved[id]!),
    workspace: lab.alloc(Math.max(1, workspace)),
    training: true,
    seed: 0,
  };
}

// ------------------------------------------------------------------ the tests

for (const impl of IMPLS) {
  const suffix = impl.skip ? ` ${impl.skip}` : "";
  describe(`gradcheck: ${impl.name}`, () => {
    describe("activation backward passes", () => {
      for (const act of ACTIVATION_CASES) {
        it.skipIf(!!impl.skip)(`${act.label}${suffix}`, async () => {
          const lab = await impl.make();
          const rng = new Rng(act.label.length * 7919);
          const n = 65; // f32x4 body and a scalar tail
          // |x| in [1e-2, 3]: no point within 1e-2 of the relu / leaky_relu kink at 0
          const x = Float32Array.from({ length: n }, () => rng.uniform(0.01, 3) * (rng.next() < 0.5 ? -1 : 1));
          const dout = rng.f32(n, -2, 2);
          const [out, dinp] = runActivation(lab, act.code, act.slope, x, dout);
          const F = act.F;
          const numeric = Float64Array.from(x, (v, i) => (dout[i]! * (F(v + H) - F(v - H))) / (2 * H));
          const bad = compare(`activation ${act.label}`, dinp, numeric, maxAbs(dout));
          // the forward agrees with the formula too (gelu: A&S erf is within 1.5e-7, times |x|/2)
          const fwd = compare(`activation ${act.label} forward`, out, Float64Array.from(x, F), 3, 1e-6, 2e-7);
          expect([...bad, ...fwd]).toEqual([]);
        });
      }
    });

    describe("loss gradients", () => {
      const cases = [...pointwiseLosses(new Rng(11)), ...classLosses(new Rng(12))];
      for (const c of cases) {
        it.skipIf(!!impl.skip)(`${c.name}${suffix}`, async () => {
          const lab = await impl.make();
          const n = c.pred.length;
          const pp = lab.put(c.pred);
          const grad = lab.put(new Float32Array(n).fill(-777)); // every element must be written
          const value = c.run(lab, grad, pp);
          const analytic = lab.get(grad, n);
          const numeric = numericGrad(c.pred, c.ref);
          const bad = compare(`loss ${c.name.split(" ")[0]}`, analytic, numeric, maxAbs(numeric) || 1);
          const expected = c.ref(Float64Array.from(c.pred));
          const valueErr = Math.abs(value - expected);
          stats.record(`loss ${c.name.split(" ")[0]} value`, { abs: valueErr, ratio: valueErr / (Math.abs(expected) + 1e-12) });
          if (!(valueErr <= 1e-5 * Math.abs(expected) + 1e-7)) bad.push(`loss value ${value}, formula ${expected}`);
          expect(bad).toEqual([]);
        });
      }
    });

    describe("linear layer backward through a scalar objective", () => {
      // y = x W^T + b (matmul_nt), L = 0.5 sum (y - t)^2, dy = y - t;
      // dW = dy^T x (matmul_tn), db = sum_rows dy (bias_grad), dx = dy W (matmul_nn)
      for (const [B, IN, OUT] of [[5, 9, 13], [8, 17, 3], [1, 4, 1]] as const) {
        it.skipIf(!!impl.skip)(`B=${B} in=${IN} out=${OUT}: dW, db, dx${suffix}`, async () => {
          const lab = await impl.make();
          const k = lab.k;
          const rng = new Rng(B * 1000 + IN * 10 + OUT);
          const x = rng.f32(B * IN), W = rng.f32(OUT * IN), b = rng.f32(OUT), t = rng.f32(B * OUT);
          const px = lab.put(x), pW = lab.put(W), pb = lab.put(b);
          const y = lab.alloc(B * OUT), scratch = lab.alloc(IN * OUT);
          k.matmul_nt(y, px, pW, pb, scratch, B, OUT, IN);
          const yv = lab.get(y, B * OUT);
          const dy = lab.put(yv.map((v, i) => v - t[i]!));
          const dW = lab.put(new Float32Array(OUT * IN).fill(-777)); // accumulate 0 overwrites
          const db = lab.put(new Float32Array(OUT)); // bias_grad accumulates into zeros
          const dx = lab.put(new Float32Array(B * IN).fill(-777));
          k.matmul_tn(dW, dy, px, OUT, IN, B, 0);
          k.bias_grad(db, dy, B, OUT);
          k.matmul_nn(dx, dy, pW, B, IN, OUT, 0);

          const loss = (xv: ArrayLike<number>, Wv: ArrayLike<number>, bv: ArrayLike<number>) => {
            let L = 0;
            for (let r = 0; r < B; r++) {
              for (let o = 0; o < OUT; o++) {
                let s = bv[o]!;
                for (let i = 0; i < IN; i++) s += xv[r * IN + i]! * Wv[o * IN + i]!;
                L += 0.5 * (s - t[r * OUT + o]!) ** 2;
              }
            }
            return L;
          };
          const nW = numericGrad(W, (v) => loss(x, v, b));
          const nb = numericGrad(b, (v) => loss(x, W, v));
          const nx = numericGrad(x, (v) => loss(v, W, b));
          // dy carries the f32 rounding of the forward (~1e-7 of |y|): 1e-5 of the scale absorbs it
          const bad = [
            ...compare("linear dW (matmul_tn)", lab.get(dW, OUT * IN), nW, maxAbs(nW), 1e-4, 1e-5),
            ...compare("linear db (bias_grad)", lab.get(db, OUT), nb, maxAbs(nb), 1e-4, 1e-5),
            ...compare("linear dx (matmul_nn)", lab.get(dx, B * IN), nx, maxAbs(nx), 1e-4, 1e-5),
          ];
          // gradient accumulation: a second backward with accumulate 1 (and bias_grad's +=) doubles dW and db
          k.matmul_tn(dW, dy, px, OUT, IN, B, 1);
          k.bias_grad(db, dy, B, OUT);
          bad.push(
            ...compare("linear dW accumulated", lab.get(dW, OUT * IN), nW.map((v) => 2 * v), 2 * maxAbs(nW), 1e-4, 1e-5),
            ...compare("linear db accumulated", lab.get(db, OUT), nb.map((v) => 2 * v), 2 * maxAbs(nb), 1e-4, 1e-5),
          );
          expect(bad).toEqual([]);
        });
      }
    });

    describe("attention op (ops/attention.ts): backward of the whole op against the float64 formula", () => {
      // L = sum G * attention(qkv): dL/dqkv from the op's backward (dy = G) against central
      // differences of attentionF64; the forward agrees with the formula too. The op's f32 path
      // (scaled q, S, softmax, P V) carries ~1e-7 relative rounding into dqkv: 1e-4 / 1e-5.
      for (const c of ATTENTION_CASES) {
        it.skipIf(!!impl.skip)(`${c.label}${suffix}`, async () => {
          const lab = await impl.make();
          const rng = new Rng(c.T * 131 + c.D * 17 + c.heads + (c.causal ? 1000 : 0) + (c.mask ? 5000 : 0));
          const qkv = rng.f32(c.rows * c.T * attentionWidths(c).W, -1.5, 1.5);
          const G = rng.f32(c.rows * c.T * c.D, -1, 1);
          const { out, dqkv, keep } = runAttention(lab, c, qkv, G, 99);
          const expected = attentionF64(c, qkv, keep);
          const bad = compare(`attention forward`, out, expected, maxAbs(expected), 1e-5, 1e-6);
          const L = (v: Float64Array) => attentionF64(c, v, keep).reduce((s, o, i) => s + G[i]! * o, 0);
          const numeric = numericGrad(qkv, L);
          bad.push(...compare(`attention dqkv`, dqkv, numeric, maxAbs(numeric), 1e-4, 1e-5));
          if (c.mask?.some((row) => row.every((m) => m === 0))) {
            // the all-padding sample: output 0, no gradient (PyTorch: NaN)
            const b = c.mask.findIndex((row) => row.every((m) => m === 0));
            const n = c.T * c.D;
            if (out.subarray(b * n, (b + 1) * n).some((v) => v !== 0)) bad.push("an all-padding sample's output is not 0");
            const w = c.T * attentionWidths(c).W;
            if (dqkv.subarray(b * w, (b + 1) * w).some((v) => v !== 0)) bad.push("an all-padding sample has a gradient");
          }
          if (out.some((v) => !Number.isFinite(v)) || dqkv.some((v) => !Number.isFinite(v))) bad.push("a non-finite value");
          if (keep) {
            const scale = f(1 / (1 - f(c.p!)));
            if (!keep.every((v) => v === 0 || v === scale)) bad.push(`dropout mask values ${[...new Set(keep)].slice(0, 5)}`);
            if (!keep.includes(0) || !keep.includes(scale)) bad.push("dropout mask is all 0 or all kept");
          }
          expect(bad).toEqual([]);
        });
      }
    });

    describe("normalisation backward passes through L = sum(G * y)", () => {
      // The float64 formulas, from the PyTorch docs:
      //   nn.LayerNorm: y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias over the last D (Var biased)
      //   nn.RMSNorm:   y = x / sqrt(mean(x^2) + eps) * weight
      //   nn.BatchNorm1d/2d (training): y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias per
      //   channel, E and Var (biased) over the batch and the positions
      // The kernels' f32 rounding (statistics, the cancellation in g - mean(g) - xhat mean(g xhat))
      // stays near 3e-7 of the gradient scale here: the default tolerance holds.
      const EPS = 1e-5;
      const sumG = (G: Float32Array, y: ArrayLike<number>) => {
        let s = 0;
        for (let i = 0; i < y.length; i++) s += G[i]! * y[i]!;
        return s;
      };
      const layerNorm64 = (x: ArrayLike<number>, w: ArrayLike<number> | null, b: ArrayLike<number> | null, rows: number, D: number, center: boolean) => {
        const y = new Float64Array(rows * D);
        for (let r = 0; r < rows; r++) {
          let mu = 0;
          if (center) {
            for (let j = 0; j < D; j++) mu += x[r * D + j]!;
            mu /= D;
          }
          let v = 0;
          for (let j = 0; j < D; j++) v += (x[r * D + j]! - mu) ** 2;
          const rs = 1 / Math.sqrt(v / D + EPS);
          for (let j = 0; j < D; j++) y[r * D + j] = (x[r * D + j]! - mu) * rs * (w ? w[j]! : 1) + (b ? b[j]! : 0);
        }
        return y;
      };
      for (const [rows, D, center, affine] of [[4, 9, true, true], [3, 65, true, true], [2, 7, true, false], [4, 9, false, true], [3, 64, false, true], [2, 5, false, false]] as const) {
        const label = `${center ? "layer_norm" : "rms_norm"} rows=${rows} D=${D} affine=${affine}`;
        it.skipIf(!!impl.skip)(`${label}: dx, dweight, dbias${suffix}`, async () => {
          const lab = await impl.make();
          const k = lab.k;
          const rng = new Rng(rows * 100 + D + (center ? 7 : 0));
          const x = rng.f32(rows * D, -2, 2).map((v, i) => v + (i % 3)); // a mean away from 0
          const w = rng.f32(D, 0.5, 1.5), b = rng.f32(D), G = rng.f32(rows * D);
          const px = lab.put(x), pw = affine ? lab.put(w) : 0, pb = affine && center ? lab.put(b) : 0;
          const out = lab.alloc(rows * D), mean = lab.alloc(rows), rstd = lab.alloc(rows);
          k.layer_norm_forward(out, mean, rstd, px, pw, pb, rows, D, EPS, center ? 1 : 0);
          const dx = lab.put(new Float32Array(rows * D).fill(-777)); // written
          const dw = affine ? lab.put(new Float32Array(D)) : 0; // accumulated
          const db = affine && center ? lab.put(new Float32Array(D)) : 0;
          k.layer_norm_backward(dx, dw, db, lab.put(G), px, pw, mean, rstd, rows, D, center ? 1 : 0);
          const W = affine ? w : null, B = affine && center ? b : null;
          const nx = numericGrad(x, (v) => sumG(G, layerNorm64(v, W, B, rows, D, center)));
          const bad = [
            ...compare(`${center ? "layer_norm" : "rms_norm"} forward`, lab.get(out, rows * D), layerNorm64(x, W, B, rows, D, center), 3, 1e-5, 1e-6),
            ...compare(`${center ? "layer_norm" : "rms_norm"} dx`, lab.get(dx, rows * D), nx, maxAbs(nx)),
          ];
          if (affine) {
            const nw = numericGrad(w, (v) => sumG(G, layerNorm64(x, v, B, rows, D, center)));
            bad.push(...compare(`${center ? "layer_norm" : "rms_norm"} dweight`, lab.get(dw, D), nw, maxAbs(nw)));
          }
          if (affine && center) {
            const nb = numericGrad(b, (v) => sumG(G, layerNorm64(x, W, v, rows, D, center)));
            bad.push(...compare("layer_norm dbias", lab.get(db, D), nb, maxAbs(nb)));
          }
          expect(bad).toEqual([]);
        });
      }

      const batchNorm64 = (x: ArrayLike<number>, w: ArrayLike<number> | null, b: ArrayLike<number> | null, N: number, C: number, L: number) => {
        const y = new Float64Array(N * C * L);
        const at = (n: number, c: number, l: number) => (n * C + c) * L + l;
        for (let c = 0; c < C; c++) {
          let mu = 0;
          for (let n = 0; n < N; n++) for (let l = 0; l < L; l++) mu += x[at(n, c, l)]!;
          mu /= N * L;
          let v = 0;
          for (let n = 0; n < N; n++) for (let l = 0; l < L; l++) v += (x[at(n, c, l)]! - mu) ** 2;
          const rs = 1 / Math.sqrt(v / (N * L) + EPS);
          for (let n = 0; n < N; n++) for (let l = 0; l < L; l++) y[at(n, c, l)] = (x[at(n, c, l)]! - mu) * rs * (w ? w[c]! : 1) + (b ? b[c]! : 0);
        }
        return y;
      };
      for (const [N, C, L, affine] of [[6, 5, 1, true], [9, 4, 1, true], [3, 2, 9, true], [4, 3, 2, true], [5, 3, 1, false], [2, 2, 6, false]] as const) {
        it.skipIf(!!impl.skip)(`batch_norm N=${N} C=${C} L=${L} affine=${affine}: dx, dweight, dbias${suffix}`, async () => {
          const lab = await impl.make();
          const k = lab.k;
          const rng = new Rng(N * 1000 + C * 10 + L);
          const x = rng.f32(N * C * L, -2, 2).map((v, i) => v + (Math.floor(i / L) % C)); // per-channel means
          const w = rng.f32(C, 0.5, 1.5), b = rng.f32(C), G = rng.f32(N * C * L);
          const px = lab.put(x), pw = affine ? lab.put(w) : 0, pb = affine ? lab.put(b) : 0;
          const mean = lab.alloc(C), variance = lab.alloc(C), out = lab.alloc(N * C * L);
          k.batch_norm_stats(mean, variance, px, N, C, L);
          k.batch_norm_forward(out, px, mean, variance, pw, pb, N, C, L, EPS);
          const dx = lab.put(new Float32Array(N * C * L).fill(-777));
          const dw = affine ? lab.put(new Float32Array(C)) : 0;
          const db = affine ? lab.put(new Float32Array(C)) : 0;
          const sums = lab.alloc(2 * C);
          k.batch_norm_backward(dx, dw, db, sums, lab.put(G), px, mean, variance, pw, N, C, L, EPS);
          const W = affine ? w : null, B = affine ? b : null;
          const nx = numericGrad(x, (v) => sumG(G, batchNorm64(v, W, B, N, C, L)));
          const bad = [
            ...compare("batch_norm forward", lab.get(out, N * C * L), batchNorm64(x, W, B, N, C, L), 3, 1e-5, 1e-6),
            ...compare("batch_norm dx", lab.get(dx, N * C * L), nx, maxAbs(nx)),
          ];
          if (affine) {
            const nw = numericGrad(w, (v) => sumG(G, batchNorm64(x, v, B, N, C, L)));
            const nb = numericGrad(b, (v) => sumG(G, batchNorm64(x, W, v, N, C, L)));
            bad.push(...compare("batch_norm dweight", lab.get(dw, C), nw, maxAbs(nw)));
            bad.push(...compare("batch_norm dbias", lab.get(db, C), nb, maxAbs(nb)));
            // the sums handed to the second pass are dbias and dweight of one batch
            bad.push(...compare("batch_norm sums", lab.get(sums, 2 * C), [...nb, ...nw], Math.max(maxAbs(nw), maxAbs(nb))));
          }
          expect(bad).toEqual([]);
        });
      }
    });

    describe("token layers", () => {
      // nn.Embedding: y[t] = W[ids[t]]; "the entries at padding_idx do not contribute to the
      // gradient" (the row acts as a constant). L = sum_t sum_j c[t, j] y[t, j].
      for (const paddingIdx of [-1, 1]) {
        it.skipIf(!!impl.skip)(`embedding dW (padding_idx ${paddingIdx})${suffix}`, async () => {
          const lab = await impl.make();
          const rng = new Rng(500 + paddingIdx);
          const V = 5, D = 6, n = 13;
          const ids = Float32Array.from({ length: n }, (_, t) => (t % 4 === 0 ? 1 : rng.int(V))); // repeats, padding
          const W = rng.f32(V * D), c = rng.f32(n * D);
          const dW = lab.put(new Float32Array(V * D));
          lab.k.embedding_backward(dW, lab.put(c), lab.put(ids), n, D, paddingIdx);
          const L = (w: Float64Array) => {
            let s = 0;
            for (let t = 0; t < n; t++) {
              const id = ids[t]!;
              for (let j = 0; j < D; j++) s += c[t * D + j]! * (id === paddingIdx ? W[id * D + j]! : w[id * D + j]!);
            }
            return s;
          };
          const numeric = numericGrad(W, L);
          const y = lab.alloc(n * D);
          lab.k.embedding_forward(y, lab.put(W), lab.put(ids), n, D);
          const forward = Float64Array.from({ length: n * D }, (_, i) => W[ids[Math.floor(i / D)]! * D + (i % D)]!);
          expect([
            ...compare("embedding dW", lab.get(dW, V * D), numeric, maxAbs(numeric)),
            ...compare("embedding forward", lab.get(y, n * D), forward, 1, 0, 0),
          ]).toEqual([]);
        });
      }

      // position_embedding: y = x + W[:T] for each row; dW[:T] = sum_rows dy (bias_grad), dx = dy
      it.skipIf(!!impl.skip)(`position_embedding dW and dx${suffix}`, async () => {
        const lab = await impl.make();
        const rng = new Rng(510);
        const rows = 3, T = 4, D = 5, num = 6, n = T * D;
        const x = rng.f32(rows * n), W = rng.f32(num * D), c = rng.f32(rows * n);
        const L = (xv: ArrayLike<number>, w: ArrayLike<number>) => {
          let s = 0;
          for (let r = 0; r < rows; r++) for (let i = 0; i < n; i++) s += c[r * n + i]! * (xv[r * n + i]! + w[i]!);
          return s;
        };
        const y = lab.alloc(rows * n);
        lab.k.add_broadcast(y, lab.put(x), lab.put(W), rows, n);
        const pc = lab.put(c);
        const dW = lab.put(new Float32Array(num * D));
        const dx = lab.put(new Float32Array(rows * n).fill(-777));
        lab.k.bias_grad(dW, pc, rows, n);
        lab.k.copy(dx, pc, rows * n);
        const nW = numericGrad(W, (w) => L(x, w));
        const nx = numericGrad(x, (v) => L(v, W));
        const forward = Float64Array.from({ length: rows * n }, (_, i) => x[i]! + W[i % n]!);
        expect([
          ...compare("position_embedding dW", lab.get(dW, num * D), nW, maxAbs(nW)),
          ...compare("position_embedding dx", lab.get(dx, rows * n), nx, maxAbs(nx)),
          ...compare("position_embedding forward", lab.get(y, rows * n), forward, 4, 1e-6, 0),
        ]).toEqual([]);
      });

      // pool: L = sum_r sum_d c[r, d] pool(x)[r, d], pool as edgetune defines it over the tokens with
      // mask 1: mean (sum / count), max, cls (token 0), last (the last token with mask 1)
      const modes = [["mean", 0], ["max", 1], ["cls", 2], ["last", 3]] as const;
      for (const [name, mode] of modes) {
        for (const masked of [false, true]) {
          it.skipIf(!!impl.skip)(`pool ${name} dx (mask ${masked})${suffix}`, async () => {
            const lab = await impl.make();
            const rng = new Rng(520 + mode * 2 + (masked ? 1 : 0));
            const rows = 3, T = 5, D = 6;
            const mask = Float32Array.from({ length: rows * T }, (_, i) => (!masked || i % T === 0 || rng.next() < 0.5 ? 1 : 0));
            // distinct values per (row, feature), at least 0.05 apart: no max within 1e-2 of a tie
            const x = new Float32Array(rows * T * D);
            for (let r = 0; r < rows; r++) {
              for (let d = 0; d < D; d++) {
                const order = Array.from({ length: T }, (_, t) => t).sort(() => rng.next() - 0.5);
                order.forEach((t, k) => (x[(r * T + t) * D + d] = f(-1 + 0.1 * k + rng.uniform(0, 0.05))));
              }
            }
            const c = rng.f32(rows * D);
            const valid = (r: number, t: number) => mask[r * T + t] !== 0;
            const pooled = (v: ArrayLike<number>, r: number, d: number): number => {
              const ts = Array.from({ length: T }, (_, t) => t).filter((t) => valid(r, t));
              const at = (t: number) => v[(r * T + t) * D + d]!;
              if (name === "mean") return ts.reduce((s, t) => s + at(t), 0) / ts.length;
              if (name === "max") return Math.max(...ts.map(at));
              if (name === "cls") return at(0);
              return at(ts.at(-1)!);
            };
            const L = (v: ArrayLike<number>) => {
              let s = 0;
              for (let r = 0; r < rows; r++) for (let d = 0; d < D; d++) s += c[r * D + d]! * pooled(v, r, d);
              return s;
            };
            const px = lab.put(x), pm = masked ? lab.put(mask) : 0;
            const out = lab.alloc(rows * D), argmax = lab.alloc(rows * D);
            lab.k.token_pool_forward(out, argmax, px, pm, mode, rows, T, D);
            const dx = lab.put(new Float32Array(rows * T * D).fill(-777)); // every element written
            lab.k.token_pool_backward(dx, lab.put(c), argmax, pm, mode, rows, T, D);
            const numeric = numericGrad(x, L);
            const forward = Float64Array.from({ length: rows * D }, (_, i) => pooled(x, Math.floor(i / D), i % D));
            expect([
              ...compare(`pool ${name} dx`, lab.get(dx, rows * T * D), numeric, maxAbs(numeric)),
              ...compare(`pool ${name} forward`, lab.get(out, rows * D), forward, 1, 1e-6, 0),
            ]).toEqual([]);
          });
        }
      }
    });

    describe("convolution and pooling ops backward through a scalar objective", () => {
      // the ops of src/engine/ops (conv: im2col + matmul_strided + col2im; pools) run over the
      // lab's memory; L = 0.5 sum (y - t)^2 with y from the float64 formula of the PyTorch docs:
      // conv  y(n,o,oh,ow) = b(o) + sum_{c,kh,kw} W(o,c,kh,kw) x(n, g C/G + c, oh SH - PH + kh DH, ow SW - PW + kw DW)
      // pools y = max / mean of the window (see poolRef)
      for (const g of CONV_GRADCHECKS) {
        it.skipIf(!!impl.skip)(`conv ${g.label}: dW, db, dx${suffix}`, async () => {
          const lab = await impl.make();
          const rng = new Rng(g.label.length * 31 + g.OH);
          const op = convOpOf(g);
          const image = g.C * g.H * g.W, outs = g.O * g.OH * g.OW, wn = g.O * (g.C / g.groups) * g.KH * g.KW;
          const x = rng.f32(g.rows * image), W = rng.f32(wn), b = rng.f32(g.O), t = rng.f32(g.rows * outs);
          const px = lab.put(x), pW = lab.put(W), pb = lab.put(b);
          const y = lab.alloc(g.rows * outs);
          const dW = lab.put(new Float32Array(wn)), db = lab.put(new Float32Array(g.O));
          const dx = lab.put(new Float32Array(g.rows * image).fill(-777)); // written
          const c = opContext(lab, [px, y], [pW, pb], [dW, db], [], opDef(op).workspace!(op, g.rows));
          opDef(op).kernel.forward(c, op, g.rows);
          OPS_CHECKED.add(op.kind);
          const dy = lab.put(lab.get(y, g.rows * outs).map((v, i) => v - t[i]!));
          opDef(op).kernel.backward(c, op, g.rows, [dy], [dx]);
          const loss = (xv: ArrayLike<number>, Wv: ArrayLike<number>, bv: ArrayLike<number>) => {
            const yv = convRef(g, xv, Wv, bv);
            return yv.reduce((s, v, i) => s + 0.5 * (v - t[i]!) ** 2, 0);
          };
          const nW = numericGrad(W, (v) => loss(x, v, b));
          const nb = numericGrad(b, (v) => loss(x, W, v));
          const nx = numericGrad(x, (v) => loss(v, W, b));
          const bad = [
            ...compare("conv forward", lab.get(y, g.rows * outs), convRef(g, x, W, b), maxAbs(t) + 3, 1e-5, 1e-6),
            ...compare("conv dW", lab.get(dW, wn), nW, maxAbs(nW), 1e-4, 1e-5),
            ...compare("conv db", lab.get(db, g.O), nb, maxAbs(nb), 1e-4, 1e-5),
            ...compare("conv dx", lab.get(dx, g.rows * image), nx, maxAbs(nx), 1e-4, 1e-5),
          ];
          // parameter gradients accumulate: a second backward doubles them
          opDef(op).kernel.backward(c, op, g.rows, [dy], [0]);
          bad.push(
            ...compare("conv dW accumulated", lab.get(dW, wn), nW.map((v) => 2 * v), 2 * maxAbs(nW), 1e-4, 1e-5),
            ...compare("conv db accumulated", lab.get(db, g.O), nb.map((v) => 2 * v), 2 * maxAbs(nb), 1e-4, 1e-5),
          );
          expect(bad).toEqual([]);
        });
      }
      for (const p of POOL_GRADCHECKS) {
        it.skipIf(!!impl.skip)(`${p.kind} ${p.label}: dx${suffix}`, async () => {
          const lab = await impl.make();
          const rng = new Rng(p.label.length * 17 + p.W);
          const planes = p.rows * p.C, image = p.C * p.H * p.W, outs = p.C * p.OH * p.OW;
          // distinct values 2e-2 apart (shuffled): no max window is within a step of a tie
          const x = Float32Array.from(rng.f32(p.rows * image).map((_, i) => f((i * 0.02) - 1)));
          for (let i = x.length - 1; i > 0; i--) {
            const j = rng.int(i + 1);
            [x[i], x[j]] = [x[j]!, x[i]!];
          }
          const t = rng.f32(p.rows * outs);
          const op = poolOpOf(p);
          const saved = lab.alloc(p.rows * outs);
          const px = lab.put(x), y = lab.alloc(p.rows * outs);
          const dx = lab.put(new Float32Array(p.rows * image).fill(-777));
          const c = opContext(lab, [px, y], [], [], [saved], 0);
          opDef(op).kernel.forward(c, op, p.rows);
          OPS_CHECKED.add(op.kind);
          const dy = lab.put(lab.get(y, p.rows * outs).map((v, i) => v - t[i]!));
          opDef(op).kernel.backward(c, op, p.rows, [dy], [dx]);
          const nx = numericGrad(x, (v) => poolRef(p, planes, v).reduce((s, yv, i) => s + 0.5 * (yv - t[i]!) ** 2, 0));
          expect([
            ...compare(`${p.kind} forward`, lab.get(y, p.rows * outs), poolRef(p, planes, x), 2, 1e-6, 1e-7),
            ...compare(`${p.kind} dx`, lab.get(dx, p.rows * image), nx, maxAbs(nx), 1e-4, 1e-5),
          ]).toEqual([]);
        });
      }
    });

    describe("attention layouts: separate q, k, v run the packed op's kernel calls", () => {
      // the same kernels over the same numbers, only the strides differ: bit for bit
      // a query subset (a sequence classifier's last layer, huggingface/bert.ts): the first Tq
      // tokens' queries over every key give the full op's first Tq rows, and its gradients
      // those of the full op whose output gradient is 0 below row Tq
      for (const c of ATTENTION_CASES.filter((a) => a.layout === "separate" && !a.p)) {
        for (const Tq of [1, 2]) {
          it.skipIf(!!impl.skip)(`${c.label}: the first ${Tq} queries give the full op's rows${suffix}`, async () => {
            const lab = await impl.make();
            const rng = new Rng(c.T * 11 + c.D + Tq);
            const { W } = attentionWidths(c);
            const qkv = rng.f32(c.rows * c.T * W, -1.5, 1.5);
            const G = rng.f32(c.rows * c.T * c.D, -1, 1);
            for (let b = 0; b < c.rows; b++) G.fill(0, (b * c.T + Tq) * c.D, (b + 1) * c.T * c.D);
            const full = runAttention(lab, c, qkv, G, 5);
            const sub = runAttention(lab, c, qkv, G, 5, Tq);
            const rowsOf = (a: Float32Array, width: number, n: number) => firstRowsOf(a, c.rows, c.T, n, width);
            expect(worstRelative(sub.out, rowsOf(full.out, c.D, Tq))).toBe(0);
            // dq of the first Tq rows, and all of dk and dv (the packed columns after q)
            const { Dkv } = attentionWidths(c);
            const dqFull = rowsOf(columns(full.dqkv, W, 0, c.D), c.D, Tq), dqSub = rowsOf(columns(sub.dqkv, W, 0, c.D), c.D, Tq);
            expect(worstRelative(dqSub, dqFull)).toBe(0);
            expect(worstRelative(columns(sub.dqkv, W, c.D, 2 * Dkv), columns(full.dqkv, W, c.D, 2 * Dkv))).toBe(0);
          });
        }
      }
      for (const c of ATTENTION_CASES.filter((a) => a.layout === "separate")) {
        it.skipIf(!!impl.skip)(`${c.label}: separate and packed agree bit for bit${suffix}`, async () => {
          const lab = await impl.make();
          const rng = new Rng(c.T * 7 + c.D);
          const qkv = rng.f32(c.rows * c.T * attentionWidths(c).W, -1.5, 1.5);
          const G = rng.f32(c.rows * c.T * c.D, -1, 1);
          const separate = runAttention(lab, c, qkv, G, 5);
          const packed = runAttention(lab, { ...c, layout: "packed" }, qkv, G, 5);
          const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
          expect(bits(separate.out)).toEqual(bits(packed.out));
          expect(bits(separate.dqkv)).toEqual(bits(packed.dqkv));
        });
      }
    });

    describe("rope op (ops/rope.ts): the rotation and its backward against the float64 formula", () => {
      // L = sum G * rope(x): dx from the op's backward (the rotation by -angle) against central
      // differences of rope64 (linear in x: the difference is exact), the forward against rope64.
      // The op's angles are transformers' f32 ones (inv_freq and t * inv_freq rounded), about
      // 1e-7 relative from the float64 angle: within 1e-5 of the scale.
      for (const rc of ROPE_CASES) {
        it.skipIf(!!impl.skip)(`rows=${rc.rows} T=${rc.T} heads=${rc.heads} headDim=${rc.headDim} theta=${rc.theta}: forward and dx${suffix}`, async () => {
          const lab = await impl.make();
          const rng = new Rng(rc.T * 100 + rc.headDim);
          const n = rc.T * rc.heads * rc.headDim;
          const x = rng.f32(rc.rows * n, -2, 2), G = rng.f32(rc.rows * n);
          const op: RopeOp = { kind: "rope", inputs: [0], outputs: [1], tokens: rc.T, heads: rc.heads, headDim: rc.headDim, theta: rc.theta, table: 0 };
          const px = lab.put(x), y = lab.put(new Float32Array(rc.rows * n).fill(-777));
          const table = lab.put(new Float32Array(rc.T * rc.headDim).fill(-777)); // written by the forward
          const c = opContext(lab, [px, y], [], [], [table], 0);
          ropeOp.kernel.forward(c, op, rc.rows);
          OPS_CHECKED.add("rope");
          const dx = lab.put(new Float32Array(rc.rows * n).fill(-777)); // every element written
          ropeOp.kernel.backward(c, op, rc.rows, [lab.put(G)], [dx]);
          const numeric = numericGrad(x, (v) => rope64(rc, v).reduce((s, yv, i) => s + G[i]! * yv, 0));
          expect([
            ...compare("rope forward", lab.get(y, rc.rows * n), rope64(rc, x), 2, 1e-5, 1e-6),
            ...compare("rope dx", lab.get(dx, rc.rows * n), numeric, maxAbs(numeric), 1e-5, 1e-6),
          ]).toEqual([]);
        });
      }
    });

    describe("mul op (ops/elementwise.ts): da = dy * b, db = dy * a", () => {
      it.skipIf(!!impl.skip)(`a * b: da, db${suffix}`, async () => {
        const lab = await impl.make();
        const rng = new Rng(77);
        const rows = 2, n = 65; // the f32x4 body and the tail
        const a = rng.f32(rows * n, -2, 2), b = rng.f32(rows * n, -2, 2), G = rng.f32(rows * n);
        const op: MulOp = { kind: "mul", inputs: [0, 1], outputs: [2], n };
        const pa = lab.put(a), pb = lab.put(b), y = lab.alloc(rows * n);
        const c = opContext(lab, [pa, pb, y], [], [], [], 0);
        mulOp.kernel.forward(c, op, rows);
        OPS_CHECKED.add("mul");
        const da = lab.put(new Float32Array(rows * n).fill(-777)), db = lab.put(new Float32Array(rows * n).fill(-777));
        mulOp.kernel.backward(c, op, rows, [lab.put(G)], [da, db]);
        const L = (av: ArrayLike<number>, bv: ArrayLike<number>) => G.reduce((s, g, i) => s + g * av[i]! * bv[i]!, 0);
        const na = numericGrad(a, (v) => L(v, b)), nb = numericGrad(b, (v) => L(a, v));
        expect([
          ...compare("mul forward", lab.get(y, rows * n), Float64Array.from(a, (v, i) => v * b[i]!), 4, 1e-6, 0),
          ...compare("mul da", lab.get(da, rows * n), na, maxAbs(na)),
          ...compare("mul db", lab.get(db, rows * n), nb, maxAbs(nb)),
        ]).toEqual([]);
      });

      it.skipIf(!!impl.skip)(`x * x: the two slots each get dy * x, which sum to 2 x dy${suffix}`, async () => {
        const lab = await impl.make();
        const rng = new Rng(78);
        const n = 13;
        const x = rng.f32(n, -2, 2), G = rng.f32(n);
        const op: MulOp = { kind: "mul", inputs: [0, 0], outputs: [1], n };
        const c = opContext(lab, [lab.put(x), lab.alloc(n)], [], [], [], 0);
        mulOp.kernel.forward(c, op, 1);
        const d0 = lab.put(new Float32Array(n).fill(-777)), d1 = lab.put(new Float32Array(n).fill(-777));
        mulOp.kernel.backward(c, op, 1, [lab.put(G)], [d0, d1]);
        const g0 = lab.get(d0, n), g1 = lab.get(d1, n);
        const numeric = numericGrad(x, (v) => G.reduce((s, g, i) => s + g * v[i]! * v[i]!, 0));
        expect(compare("mul x * x", Float64Array.from(g0, (v, i) => v + g1[i]!), numeric, maxAbs(numeric))).toEqual([]);
      });
    });

    it.skipIf(!!impl.skip)(`dropout backward (mul with the mask) against differences of dropout_forward${suffix}`, async () => {
      const lab = await impl.make();
      const k = lab.k;
      const rng = new Rng(99);
      const n = 65, p = 0.3, seed = 1234;
      const x = rng.f32(n, -2, 2), G = rng.f32(n, -1, 1);
      const mask = lab.alloc(n), out = lab.alloc(n);
      // L(x) = sum G * dropout(x) with the same seed (the mask depends on (seed, i) only)
      const L = (xv: Float32Array) => {
        k.dropout_forward(out, mask, lab.put(xv), p, seed, n);
        return lab.get(out, n).reduce((s, v, i) => s + G[i]! * v, 0);
      };
      L(x);
      const m = lab.get(mask, n);
      const dx = lab.alloc(n);
      k.mul(dx, lab.put(G), mask, n);
      const numeric = new Float64Array(n);
      const h = 1e-2;
      for (let i = 0; i < n; i++) {
        const up = x.slice(), down = x.slice();
        up[i] = x[i]! + h;
        down[i] = x[i]! - h;
        numeric[i] = (L(up) - L(down)) / (up[i]! - down[i]!); // the f32 step actually taken
      }
      const bad = compare("dropout backward", lab.get(dx, n), numeric, maxAbs(numeric) || 1, 1e-4, 1e-6);
      // and the mask is what the forward used: 0 or 1/(1-p), with both present
      const keep = f(1 / (1 - f(p)));
      if (!m.every((v) => v === 0 || v === keep)) bad.push(`mask values ${[...new Set(m)]}`);
      if (!m.includes(0) || !m.includes(keep)) bad.push("mask is all 0 or all kept for n=65, p=0.3");
      expect(bad).toEqual([]);
    });
  });
}

describe("coverage", () => {
  it("every op kind of OP_GRADCHECKS (op-gradchecks.ts) was checked whole above", () => {
    // the reference twin always runs, so each op-level test recorded its kind
    expect([...OPS_CHECKED].sort()).toEqual([...OP_GRADCHECKS].sort());
  });
});
