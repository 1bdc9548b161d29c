/**
 * Per-sample gradient norms without per-sample gradients ("ghost clipping": Goodfellow 2015,
 * "Efficient per-example gradient computations"; Li et al. 2022, "Large language models can be
 * strong differentially private learners", §4), computed per op from what the backward pass
 * has anyway: the op's saved input and the gradient of its output, one batch, one pass.
 *
 * For each row i, the op adds ‖∂ℓ/∂θ‖² of its trainable parameters θ, in double:
 *
 *   linear, one position     ‖dW_i‖² = ‖dy_i‖²·‖x_i‖²             ‖db_i‖² = ‖dy_i‖²
 *   linear, T positions      ‖dW_i‖² = Σ_{t,s} (dy_t·dy_s)(x_t·x_s) (the T×T Gram form; or dW_i
 *                            itself, Σ_t dy_t x_tᵀ, when out·in < T²)     ‖db_i‖² = ‖Σ_t dy_t‖²
 *   embedding                ‖dE_i‖² = Σ_{t,s: id_t = id_s ≠ padding} dy_t·dy_s (rows grouped by id)
 *   add_position             ‖dP_i‖² = ‖dy_i‖²
 *   layer/RMS norm           dγ_i = Σ_t dy_t ⊙ x̂_t, dβ_i = Σ_t dy_t (x̂ from the saved mean and rstd)
 *   conv                     dW_i = Σ_p dy_p · unfold(x_i)_p, formed per sample (the unfolded
 *                            column read in place), db_i = Σ_p dy_p
 *
 * Ops without parameters (activations, dropout, attention, pooling, rope, ...) add nothing. A
 * LoRA adapter's A and B are linear ops, so they are covered. The squared norms are of the
 * gradient of the batch loss; the caller scales them to per-sample losses.
 *
 * A tied parameter (one that several ops read: a Hugging Face model's lm_head tied to the token
 * embedding) has one per-sample gradient, the sum of its uses' g_i = Σ_u g_i^u, so its squared
 * norm is not the sum of the uses' squared norms: ‖Σ_u g^u‖² = Σ_u Σ_v ⟨g^u, g^v⟩, cross terms
 * included (Opacus sums a tied parameter's per-sample gradients over its modules before the norm,
 * opacus/grad_sample/grad_sample_module.py, `create_or_accumulate_grad_sample`). SampleNorms
 * keeps each use's factors (its dy and input) until the backward pass is over, then adds the
 * inner products, each in the same factored form:
 *
 *   linear u, linear v       ⟨g^u_i, g^v_i⟩ = Σ_{t,s} (dy^u_t·dy^v_s)(x^u_t·x^v_s)
 *   embedding u, embedding v ⟨g^u_i, g^v_i⟩ = Σ_{t,s: id^u_t = id^v_s, neither padding} dy^u_t·dy^v_s
 *   linear u [V, D], embedding v [V, D]
 *                            ⟨g^u_i, g^v_i⟩ = Σ_{s: id_s not padding} Σ_t dy^u_t[id_s] (x^u_t·dy^v_s)
 */
import type { Ptr } from "../kernels.js";
import type { CompiledModel } from "../graph/types.js";
import type { ConvOp, EmbeddingOp, KernelOpContext, LayerNormOp, LinearOp, Op } from "../ops/types.js";

/** Float32 views of the kernel core's memory (rebuilt when the memory grows). */
export interface MemoryView {
  f32(ptr: Ptr, length: number): Float32Array;
}

/**
 * Adds each row's squared gradient norm over `op`'s trainable parameters to `out[0..rows)`;
 * call it right before the op's backward (its inputs and saved values are still those of the
 * forward, `dy` is complete).
 *
 * @example
 * ```ts
 * model.backward(rows, (op, c, dy) => addSampleNormsSquared(op, c, view, rows, dy, norms));
 * ```
 */
export function addSampleNormsSquared(op: Op, c: KernelOpContext, view: MemoryView, rows: number, dy: readonly Ptr[], out: Float64Array): void {
  if (rows === 0) return;
  switch (op.kind) {
    case "linear":
      return linear(op, c, view, rows, dy[0]!, out);
    case "embedding":
      return embedding(op, c, view, rows, dy[0]!, out);
    case "add_position": {
      if (!c.grad(op.weight)) return;
      const g = view.f32(dy[0]!, rows * op.n);
      for (let i = 0; i < rows; i++) out[i]! += sumSquares(g, i * op.n, op.n);
      return;
    }
    case "layer_norm":
      return layerNorm(op, c, view, rows, dy[0]!, out);
    case "conv":
      return conv(op, c, view, rows, dy[0]!, out);
    default:
      return;
  }
}

function sumSquares(a: Float32Array, from: number, n: number): number {
  let s = 0;
  for (let j = 0; j < n; j++) {
    const v = a[from + j]!;
    s += v * v;
  }
  return s;
}

function dot(a: Float32Array, ai: number, b: Float32Array, bi: number, n: number): number {
  let s = 0;
  for (let j = 0; j < n; j++) s += a[ai + j]! * b[bi + j]!;
  return s;
}

function linear(op: LinearOp, c: KernelOpContext, view: MemoryView, rows: number, dyPtr: Ptr, out: Float64Array, skipWeight = false): void {
  const weight = !skipWeight && c.grad(op.weight) !== 0;
  const bias = op.bias >= 0 && c.grad(op.bias) !== 0;
  if (!weight && !bias) return;
  const T = op.tokens;
  const dy = view.f32(dyPtr, rows * T * op.out);
  const x = weight ? view.f32(c.value(op.inputs[0]!), rows * T * op.in) : null;
  const sum = bias && T > 1 ? new Float64Array(op.out) : null;
  const dW = weight && T > 1 && op.out * op.in < T * T ? new Float64Array(op.out * op.in) : null;
  for (let i = 0; i < rows; i++) {
    const base = i * T;
    if (T === 1) {
      const g = sumSquares(dy, i * op.out, op.out);
      if (weight) out[i]! += g * sumSquares(x!, i * op.in, op.in);
      if (bias) out[i]! += g;
      continue;
    }
    if (weight && dW) {
      dW.fill(0);
      for (let t = 0; t < T; t++) {
        for (let o = 0; o < op.out; o++) {
          const d = dy[(base + t) * op.out + o]!;
          if (d === 0) continue;
          for (let j = 0; j < op.in; j++) dW[o * op.in + j]! += d * x![(base + t) * op.in + j]!;
        }
      }
      let s = 0;
      for (let k = 0; k < dW.length; k++) s += dW[k]! * dW[k]!;
      out[i]! += s;
    } else if (weight) {
      let s = 0;
      for (let t = 0; t < T; t++) {
        for (let u = 0; u <= t; u++) {
          const term = dot(dy, (base + t) * op.out, dy, (base + u) * op.out, op.out) * dot(x!, (base + t) * op.in, x!, (base + u) * op.in, op.in);
          s += u === t ? term : 2 * term;
        }
      }
      out[i]! += s;
    }
    if (sum) {
      sum.fill(0);
      for (let t = 0; t < T; t++) for (let o = 0; o < op.out; o++) sum[o]! += dy[(base + t) * op.out + o]!;
      let s = 0;
      for (let o = 0; o < op.out; o++) s += sum[o]! * sum[o]!;
      out[i]! += s;
    }
  }
}

function embedding(op: EmbeddingOp, c: KernelOpContext, view: MemoryView, rows: number, dyPtr: Ptr, out: Float64Array): void {
  if (!c.grad(op.weight)) return;
  const T = op.tokens;
  const D = op.dim;
  const dy = view.f32(dyPtr, rows * T * D);
  const ids = view.f32(c.value(op.inputs[0]!), rows * T);
  const order = Array.from({ length: T }, (_, t) => t);
  const acc = new Float64Array(D);
  for (let i = 0; i < rows; i++) {
    const id = (t: number) => Math.trunc(ids[i * T + t]!);
    order.sort((a, b) => id(a) - id(b));
    let s = 0;
    for (let k = 0; k < T; ) {
      const current = id(order[k]!);
      acc.fill(0);
      let end = k;
      for (; end < T && id(order[end]!) === current; end++) {
        const from = (i * T + order[end]!) * D;
        for (let j = 0; j < D; j++) acc[j]! += dy[from + j]!;
      }
      if (current !== op.paddingIdx) for (let j = 0; j < D; j++) s += acc[j]! * acc[j]!;
      k = end;
    }
    out[i]! += s;
  }
}

function layerNorm(op: LayerNormOp, c: KernelOpContext, view: MemoryView, rows: number, dyPtr: Ptr, out: Float64Array): void {
  const weight = op.weight >= 0 && c.grad(op.weight) !== 0;
  const bias = op.bias >= 0 && c.grad(op.bias) !== 0;
  if (!weight && !bias) return;
  const T = op.tokens;
  const D = op.size;
  const f = Math.fround;
  const dy = view.f32(dyPtr, rows * T * D);
  const x = view.f32(c.value(op.inputs[0]!), rows * T * D);
  const mean = op.center ? view.f32(c.saved(op.mean), rows * T) : null;
  const rstd = view.f32(c.saved(op.rstd), rows * T);
  const dGamma = new Float64Array(D);
  const dBeta = new Float64Array(D);
  for (let i = 0; i < rows; i++) {
    dGamma.fill(0);
    dBeta.fill(0);
    for (let t = 0; t < T; t++) {
      const g = i * T + t;
      const mu = mean ? mean[g]! : 0;
      const rs = rstd[g]!;
      for (let j = 0; j < D; j++) {
        const d = dy[g * D + j]!;
        // x̂ as the forward computed it (float32)
        if (weight) dGamma[j]! += d * f(f(x[g * D + j]! - mu) * rs);
        if (bias) dBeta[j]! += d;
      }
    }
    let s = 0;
    for (let j = 0; j < D; j++) s += (weight ? dGamma[j]! * dGamma[j]! : 0) + (bias ? dBeta[j]! * dBeta[j]! : 0);
    out[i]! += s;
  }
}

function conv(op: ConvOp, c: KernelOpContext, view: MemoryView, rows: number, dyPtr: Ptr, out: Float64Array): void {
  const weight = c.grad(op.weight) !== 0;
  const bias = op.bias >= 0 && c.grad(op.bias) !== 0;
  if (!weight && !bias) return;
  const L = op.OH * op.OW;
  const image = op.C * op.H * op.W;
  const Cg = op.C / op.groups;
  const Og = op.O / op.groups;
  const taps = Cg * op.KH * op.KW;
  const dy = view.f32(dyPtr, rows * op.O * L);
  const x = weight ? view.f32(c.value(op.inputs[0]!), rows * image) : null;
  const dW = new Float64Array(op.O * taps);
  for (let i = 0; i < rows; i++) {
    let s = 0;
    const dyi = i * op.O * L;
    if (bias) {
      for (let o = 0; o < op.O; o++) {
        let b = 0;
        for (let p = 0; p < L; p++) b += dy[dyi + o * L + p]!;
        s += b * b;
      }
    }
    if (weight) {
      dW.fill(0);
      const xi = i * image;
      for (let o = 0; o < op.O; o++) {
        const g = Math.floor(o / Og);
        for (let oh = 0; oh < op.OH; oh++) {
          for (let ow = 0; ow < op.OW; ow++) {
            const d = dy[dyi + o * L + oh * op.OW + ow]!;
            if (d === 0) continue;
            for (let cc = 0; cc < Cg; cc++) {
              const plane = xi + (g * Cg + cc) * op.H * op.W;
              for (let kh = 0; kh < op.KH; kh++) {
                const ih = oh * op.SH - op.PH + kh * op.DH;
                if (ih < 0 || ih >= op.H) continue;
                for (let kw = 0; kw < op.KW; kw++) {
                  const iw = ow * op.SW - op.PW + kw * op.DW;
                  if (iw < 0 || iw >= op.W) continue;
                  dW[o * taps + (cc * op.KH + kh) * op.KW + kw]! += d * x![plane + ih * op.W + iw]!;
                }
              }
            }
          }
        }
      }
      for (let k = 0; k < dW.length; k++) s += dW[k]! * dW[k]!;
    }
    out[i]! += s;
  }
}

/** One use of a tied parameter in a backward pass: the factors of its per-sample gradients, copied. */
type TiedUse =
  | { kind: "linear"; T: number; out: number; in: number; dy: Float32Array; x: Float32Array }
  | { kind: "embedding"; T: number; D: number; ids: Float32Array; dy: Float32Array; padding: number };

/** The op kinds whose per-sample gradients of a tied parameter SampleNorms combines. */
export const TIED_OP_KINDS: ReadonlySet<Op["kind"]> = new Set<Op["kind"]>(["linear", "embedding"]);

/**
 * The trainable parameters that more than one op reads (tied weights), by state index.
 *
 * @example
 * ```ts
 * tiedParameters(compiled); // Set { 0 } for a GPT-2 whose lm_head is wte
 * ```
 */
export function tiedParameters(model: Pick<CompiledModel, "ops" | "state">): Set<number> {
  const users = new Map<number, number>();
  for (const op of model.ops) {
    if (!TIED_OP_KINDS.has(op.kind)) continue;
    const weight = (op as LinearOp | EmbeddingOp).weight;
    if (weight >= 0 && model.state[weight]?.trainable) users.set(weight, (users.get(weight) ?? 0) + 1);
  }
  return new Set([...users].filter(([, n]) => n > 1).map(([i]) => i));
}

/**
 * Per-sample squared gradient norms over a backward pass, tied parameters included: `add` before
 * each op's backward (as addSampleNormsSquared), `finish` once the pass is over (the tied
 * parameters' terms). Without tied parameters it is addSampleNormsSquared and nothing more.
 *
 * @example
 * ```ts
 * const sampleNorms = new SampleNorms(tiedParameters(compiled));
 * model.backward(rows, (op, c, dy) => sampleNorms.add(op, c, view, rows, dy, norms));
 * sampleNorms.finish(rows, norms);
 * ```
 */
export class SampleNorms {
  private readonly uses = new Map<number, TiedUse[]>();

  constructor(private readonly tied: ReadonlySet<number>) {}

  add(op: Op, c: KernelOpContext, view: MemoryView, rows: number, dy: readonly Ptr[], out: Float64Array): void {
    if (rows > 0 && (op.kind === "linear" || op.kind === "embedding") && this.tied.has(op.weight) && c.grad(op.weight) !== 0) {
      const uses = this.uses.get(op.weight) ?? [];
      this.uses.set(op.weight, uses);
      const T = op.tokens;
      if (op.kind === "linear") {
        uses.push({ kind: "linear", T, out: op.out, in: op.in, dy: view.f32(dy[0]!, rows * T * op.out).slice(), x: view.f32(c.value(op.inputs[0]!), rows * T * op.in).slice() });
        linear(op, c, view, rows, dy[0]!, out, true); // the bias, untied, as usual
      } else {
        uses.push({ kind: "embedding", T, D: op.dim, ids: view.f32(c.value(op.inputs[0]!), rows * T).slice(), dy: view.f32(dy[0]!, rows * T * op.dim).slice(), padding: op.paddingIdx });
      }
      return;
    }
    addSampleNormsSquared(op, c, view, rows, dy, out);
  }

  /** Adds each tied parameter's ‖Σ_u g^u_i‖² to out[i], and forgets the pass's uses. */
  finish(rows: number, out: Float64Array): void {
    for (const uses of this.uses.values()) {
      for (let i = 0; i < rows; i++) {
        let s = 0;
        for (let u = 0; u < uses.length; u++) {
          for (let v = u; v < uses.length; v++) s += (u === v ? 1 : 2) * tiedInner(uses[u]!, uses[v]!, i);
        }
        out[i]! += s;
      }
    }
    this.uses.clear();
  }
}

/** ⟨g^a_i, g^b_i⟩ of two uses of one tied parameter, for row i (the formulas of the header). */
function tiedInner(a: TiedUse, b: TiedUse, i: number): number {
  if (a.kind === "embedding" && b.kind === "linear") return tiedInner(b, a, i);
  let s = 0;
  if (a.kind === "linear" && b.kind === "linear") {
    for (let t = 0; t < a.T; t++) {
      for (let u = 0; u < b.T; u++) {
        s += dot(a.dy, (i * a.T + t) * a.out, b.dy, (i * b.T + u) * b.out, a.out) * dot(a.x, (i * a.T + t) * a.in, b.x, (i * b.T + u) * b.in, a.in);
      }
    }
    return s;
  }
  if (a.kind === "embedding" && b.kind === "embedding") {
    for (let t = 0; t < a.T; t++) {
      const id = Math.trunc(a.ids[i * a.T + t]!);
      if (id === a.padding) continue;
      for (let u = 0; u < b.T; u++) {
        if (Math.trunc(b.ids[i * b.T + u]!) !== id || id === b.padding) continue;
        s += dot(a.dy, (i * a.T + t) * a.D, b.dy, (i * b.T + u) * b.D, a.D);
      }
    }
    return s;
  }
  // a linear [V, D] and an embedding [V, D] of one weight
  const lin = a as Extract<TiedUse, { kind: "linear" }>;
  const emb = b as Extract<TiedUse, { kind: "embedding" }>;
  for (let u = 0; u < emb.T; u++) {
    const id = Math.trunc(emb.ids[i * emb.T + u]!);
    if (id === emb.padding) continue;
    for (let t = 0; t < lin.T; t++) {
      const d = lin.dy[(i * lin.T + t) * lin.out + id]!;
      if (d !== 0) s += d * dot(lin.x, (i * lin.T + t) * lin.in, emb.dy, (i * emb.T + u) * emb.D, lin.in);
    }
  }
  return s;
}
