/**
 * The attention op on the kernel core: multi-head (or grouped-query) self-attention between the
 * projections, per sample b and query head h, with dh = D / heads, c = 1 / sqrt(dh), g = the
 * key/value head of h (floor(h / (heads / kvHeads))) and Q_h, K_g, V_g the heads' strided views
 * of the inputs (packed: columns of qkv [T, D + 2 Dkv], row stride D + 2 Dkv; separate: q [Tq, D],
 * k and v [T, Dkv], Dkv = kvHeads * dh; the queries are the first Tq tokens, Tq = T unless the op
 * says `queries`, and S, P and O have Tq rows):
 *
 *   forward   Qs^T = c Q_h^T, K_g^T packed                 transpose_strided (workspace)
 *             S = Qs K_g^T                                 matmul_strided into P's saved block
 *             P = softmax(S + key padding + causal masks)  attention_softmax (in place)
 *             Pd = dropout(P)        (training, p > 0)     dropout_forward over the whole batch
 *             O_h = Pd V_g                                 matmul_strided into the head's columns
 *   backward  dV_g (+)= Pd^T dO_h                          matmul_strided
 *             dP = (dO_h V_g^T) * dropout mask             transpose_strided + matmul_strided (+ mul)
 *             dS = c P (dP - rowsum(dP P))                 attention_softmax_backward (over P: P is spent)
 *             dQ_h = dS K_g,  dK_g (+)= dS^T Q_h           matmul_strided (dS^T Qs = (c dS)^T Q)
 *
 * A key/value head shared by several query heads (grouped-query attention) gets the sum of their
 * gradients: the first query head of the group writes dK_g and dV_g, the others accumulate, in
 * head order (transformers' repeat_kv, whose backward sums over the repeats).
 *
 * This is torch 1.13's multi_head_attention_forward: q_scaled = q / sqrt(E) before the product,
 * masks added as -inf, softmax(dim=-1), dropout on the weights, bmm with v (c multiplies here
 * where torch divides: within an ulp). A query whose keys are all hidden (an all-padding sample,
 * or causal with its first key padded) is NaN in PyTorch; here its weights are 0, so its output
 * is 0 (before out_proj's bias) and no gradient flows through it.
 * https://pytorch.org/docs/stable/generated/torch.nn.MultiheadAttention.html
 * https://github.com/huggingface/transformers/blob/main/src/transformers/models/llama/modeling_llama.py (repeat_kv)
 */
import type { Ptr } from "../kernels.js";
import type { AttentionOp, KernelOpContext, OpDef } from "./types.js";

/** Where one of Q, K, V lives: the input (and dx) slot, the column of its head 0, the row stride. */
export interface AttentionOperand {
  readonly input: number;
  readonly col: number;
  readonly ld: number;
}

/** The geometry of an attention op, shared by the kernel core and the WebGPU dispatches. */
export interface AttentionGeometry {
  readonly T: number;
  /** Query rows per sample (the first Tq tokens; T unless the op says `queries`). */
  readonly Tq: number;
  readonly D: number;
  readonly H: number;
  /** Key/value heads, and query heads per key/value head (H / G). */
  readonly G: number;
  readonly group: number;
  readonly dh: number;
  readonly Dkv: number;
  /** Elements of one head's Tq x T block of weights. */
  readonly block: number;
  /** 1 / sqrt(dh), as f32. */
  readonly scale: number;
  readonly q: AttentionOperand;
  readonly k: AttentionOperand;
  readonly v: AttentionOperand;
  /** The attention mask's input index, or -1. */
  readonly mask: number;
}

/**
 * The per-op geometry: head widths, grouping, and where Q, K and V are in the inputs (packed:
 * columns 0, D and D + Dkv of qkv, row stride D + 2 Dkv; separate: inputs 0, 1, 2 with row
 * strides D, Dkv, Dkv).
 *
 * @example
 * ```ts
 * const g = attentionGeometry({ kind: "attention", layout: "packed", inputs: [0], outputs: [1], tokens: 5, dim: 8, heads: 4, kvHeads: 2, causal: true, probs: 0, p: 0, dropMask: -1, dropped: -1, salt: 0 });
 * g.k; // { input: 0, col: 8, ld: 16 }: K starts at column D of rows of D + 2 Dkv
 * ```
 */
export function attentionGeometry(op: AttentionOp): AttentionGeometry {
  const T = op.tokens, D = op.dim, H = op.heads, G = op.kvHeads, Tq = op.queries ?? op.tokens;
  const dh = D / H, Dkv = G * dh;
  const common = { T, Tq, D, H, G, group: H / G, dh, Dkv, block: Tq * T, scale: Math.fround(1 / Math.sqrt(dh)) };
  if (op.layout === "packed") {
    if (Tq !== T) throw new Error("attention: a query subset needs the separate layout");
    const W = D + 2 * Dkv;
    return {
      ...common,
      q: { input: 0, col: 0, ld: W },
      k: { input: 0, col: D, ld: W },
      v: { input: 0, col: D + Dkv, ld: W },
      mask: op.inputs.length > 1 ? 1 : -1,
    };
  }
  return {
    ...common,
    q: { input: 0, col: 0, ld: D },
    k: { input: 1, col: 0, ld: Dkv },
    v: { input: 2, col: 0, ld: Dkv },
    mask: op.inputs.length > 3 ? 3 : -1,
  };
}

/** Whether the forward ran dropout on the weights (and the backward must follow it). */
const dropping = (c: KernelOpContext, op: AttentionOp) => c.training && op.dropMask >= 0;

/**
 * The attention op's definition on the kernel core (registered in ops/index.ts OPS).
 *
 * @example
 * ```ts
 * // run one op by hand over a KernelOpContext (the gradient check does this)
 * attentionOp.kernel.forward(c, op, rows); // out [rows, T, D], P saved
 * attentionOp.kernel.backward(c, op, rows, [dOut], [dQkv, 0]); // packed: dQkv [rows, T, D + 2 Dkv] written
 * attentionOp.kernel.backward(c, sep, rows, [dOut], [dQ, dK, dV, 0]); // separate: each written
 * ```
 */
export const attentionOp: OpDef<AttentionOp> = {
  // q, k, v (and the mask) with the saved weights; not the output
  backwardReads: (op) => op.inputs,
  // per query head whatever the layout and grouping: QK^T and PV are 2 T^2 dh each, so 4 T^2 D
  // in all; softmax ~5 per weight; backward: four products of the same size
  flops: (op) => {
    const { T, Tq, D, H } = attentionGeometry(op);
    return { forward: 4 * Tq * T * D + 5 * H * Tq * T, backward: 8 * Tq * T * D + 4 * H * Tq * T };
  },
  // forward: Qs^T [dh, Tq] and K^T [dh, T]; backward: V^T [dh, T] and dP [Tq, T]
  workspace: (op) => {
    const { T, Tq, dh } = attentionGeometry(op);
    return Math.max(dh * Tq + dh * T, dh * T + Tq * T);
  },
  kernel: {
    forward(c, op, rows) {
      const k = c.k;
      const g = attentionGeometry(op);
      const { T, Tq, D, H, dh, group, block, scale } = g;
      const at = (o: AttentionOperand) => c.value(op.inputs[o.input]!) + 4 * o.col;
      const q0 = at(g.q), k0 = at(g.k), v0 = at(g.v);
      const out = c.value(op.outputs[0]!); // [rows, Tq, D]
      const mask = g.mask >= 0 ? c.value(op.inputs[g.mask]!) : 0; // [rows, T]
      const probs = c.saved(op.probs); // [rows, H, Tq, T]
      const qT = c.workspace; // [dh, Tq]
      const kT = qT + 4 * dh * Tq; // [dh, T]
      const drop = dropping(c, op);
      for (let b = 0; b < rows; b++) {
        const maskRow = mask ? mask + 4 * b * T : 0;
        for (let h = 0; h < H; h++) {
          const kv = Math.floor(h / group);
          const q = q0 + 4 * (b * Tq * g.q.ld + h * dh);
          const P = probs + 4 * (b * H + h) * block;
          k.transpose_strided(qT, q, dh, Tq, g.q.ld, scale);
          // K_g^T once per key/value head: its query heads are consecutive
          if (h % group === 0) k.transpose_strided(kT, k0 + 4 * (b * T * g.k.ld + kv * dh), dh, T, g.k.ld, 1);
          k.matmul_strided(P, qT, kT, Tq, T, dh, 1, Tq, T, T, 0);
          k.attention_softmax(P, P, maskRow, Tq, T, op.causal ? 1 : 0);
          if (!drop) k.matmul_strided(out + 4 * (b * Tq * D + h * dh), P, v0 + 4 * (b * T * g.v.ld + kv * dh), Tq, dh, T, T, 1, g.v.ld, D, 0);
        }
      }
      if (!drop) return;
      const n = rows * H * block;
      const dropped = c.saved(op.dropped);
      k.dropout_forward(dropped, c.saved(op.dropMask), probs, op.p, (c.seed + Math.imul(op.salt, 0x9e3779b9)) >>> 0, n);
      for (let b = 0; b < rows; b++) {
        for (let h = 0; h < H; h++) {
          const v = v0 + 4 * (b * T * g.v.ld + Math.floor(h / group) * dh);
          k.matmul_strided(out + 4 * (b * Tq * D + h * dh), dropped + 4 * (b * H + h) * block, v, Tq, dh, T, T, 1, g.v.ld, D, 0);
        }
      }
    },
    backward(c, op, rows, dy, dx) {
      const g = attentionGeometry(op);
      const grad = (o: AttentionOperand): Ptr => (dx[o.input] ? dx[o.input]! + 4 * o.col : 0);
      const dq0 = grad(g.q), dk0 = grad(g.k), dv0 = grad(g.v);
      if (!dq0 && !dk0 && !dv0) return;
      const k = c.k;
      const { T, Tq, D, H, dh, group, block, scale } = g;
      const at = (o: AttentionOperand) => c.value(op.inputs[o.input]!) + 4 * o.col;
      const q0 = at(g.q), k0 = at(g.k), v0 = at(g.v);
      const dO: Ptr = dy[0]!; // [rows, Tq, D]
      const probs = c.saved(op.probs);
      const drop = dropping(c, op);
      const weights = drop ? c.saved(op.dropped) : probs; // what multiplied V
      const dropMask = drop ? c.saved(op.dropMask) : 0;
      const vT = c.workspace; // [dh, T]
      const dP = vT + 4 * dh * T; // [Tq, T]
      for (let b = 0; b < rows; b++) {
        for (let h = 0; h < H; h++) {
          const kv = Math.floor(h / group);
          // the first query head of a group writes dK_g and dV_g, the others add to them
          const first = h % group === 0;
          const acc = first ? 0 : 1;
          const q = q0 + 4 * (b * Tq * g.q.ld + h * dh);
          const kh = k0 + 4 * (b * T * g.k.ld + kv * dh);
          const dOh = dO + 4 * (b * Tq * D + h * dh);
          const off = 4 * (b * H + h) * block;
          const P = probs + off;
          // dV_g (+)= Pd^T dO_h (A = Pd read transposed)
          if (dv0) k.matmul_strided(dv0 + 4 * (b * T * g.v.ld + kv * dh), weights + off, dOh, T, dh, Tq, 1, T, D, g.v.ld, acc);
          if (!dq0 && !dk0) continue;
          // dP = dO_h V_g^T (times the dropout mask); V_g^T once per key/value head
          if (first) k.transpose_strided(vT, v0 + 4 * (b * T * g.v.ld + kv * dh), dh, T, g.v.ld, 1);
          k.matmul_strided(dP, dOh, vT, Tq, T, dh, D, 1, T, T, 0);
          if (drop) k.mul(dP, dP, dropMask + off, block);
          // dS (scaled by c), written over P
          k.attention_softmax_backward(P, dP, P, scale, Tq, T);
          // dQ_h = dS K_g; dK_g (+)= dS^T Q_h
          if (dq0) k.matmul_strided(dq0 + 4 * (b * Tq * g.q.ld + h * dh), P, kh, Tq, dh, T, T, 1, g.k.ld, g.q.ld, 0);
          if (dk0) k.matmul_strided(dk0 + 4 * (b * T * g.k.ld + kv * dh), P, q, T, dh, Tq, 1, T, g.q.ld, g.k.ld, acc);
        }
      }
    },
  },
};
