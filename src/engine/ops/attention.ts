/**
 * The attention op on the kernel core: nn.MultiheadAttention's core between its in-projection
 * (qkv [T, 3D], a linear op) and its out-projection (a linear op), per sample b and head h,
 * with dh = D / heads, c = 1 / sqrt(dh) and Q_h, K_h, V_h the head's strided views of qkv
 * (row stride 3D):
 *
 *   forward   Qs^T = c Q_h^T, K_h^T packed                 transpose_strided (workspace)
 *             S = Qs K_h^T                                 matmul_strided into P's saved block
 *             P = softmax(S + key padding + causal masks)  attention_softmax (in place)
 *             Pd = dropout(P)        (training, p > 0)     dropout_forward over the whole batch
 *             O_h = Pd V_h                                 matmul_strided into the head's columns
 *   backward  dV_h = Pd^T dO_h                             matmul_strided
 *             dP = (dO_h V_h^T) * dropout mask             transpose_strided + matmul_strided (+ mul)
 *             dS = c P (dP - rowsum(dP P))                 attention_softmax_backward (over P: P is spent)
 *             dQ_h = dS K_h,  dK_h = dS^T Q_h              matmul_strided (dS^T Qs = (c dS)^T Q)
 *
 * This is torch 1.13's multi_head_attention_forward: q_scaled = q / sqrt(E) before the product,
 * masks added as -inf, softmax(dim=-1), dropout on the weights, bmm with v (c multiplies here
 * where torch divides: within an ulp). A query whose keys are all hidden (an all-padding sample,
 * or causal with its first key padded) is NaN in PyTorch; here its weights are 0, so its output
 * is 0 (before out_proj's bias) and no gradient flows through it.
 * https://pytorch.org/docs/stable/generated/torch.nn.MultiheadAttention.html
 */
import type { Ptr } from "../kernels.js";
import type { AttentionOp, KernelOpContext, OpDef } from "./types.js";

/** The per-op geometry: head width, qkv row stride, bytes of one head's T x T block. */
function shape(op: AttentionOp) {
  const T = op.tokens, D = op.dim, H = op.heads;
  const dh = D / H;
  return { T, D, H, dh, W: 3 * D, block: T * T, scale: Math.fround(1 / Math.sqrt(dh)) };
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
 * attentionOp.kernel.backward(c, op, rows, [dOut], [dQkv, 0]); // dQkv [rows, T, 3D] written
 * ```
 */
export const attentionOp: OpDef<AttentionOp> = {
  flops: (op) => {
    const { T, D, H } = shape(op);
    // QK^T and PV: 2 T^2 dh each per head; softmax ~5 per weight; backward: four products
    return { forward: 4 * T * T * D + 5 * H * T * T, backward: 8 * T * T * D + 4 * H * T * T };
  },
  // forward: Qs^T and K^T [dh, T]; backward: V^T [dh, T] and dP [T, T]
  workspace: (op) => {
    const { T, dh } = shape(op);
    return Math.max(2 * dh * T, dh * T + T * T);
  },
  kernel: {
    forward(c, op, rows) {
      const k = c.k;
      const { T, D, H, dh, W, block, scale } = shape(op);
      const qkv = c.value(op.inputs[0]!); // [rows, T, 3D]
      const out = c.value(op.outputs[0]!); // [rows, T, D]
      const mask = op.inputs.length > 1 ? c.value(op.inputs[1]!) : 0; // [rows, T]
      const probs = c.saved(op.probs); // [rows, H, T, T]
      const qT = c.workspace; // [dh, T]
      const kT = qT + 4 * dh * T; // [dh, T]
      const drop = dropping(c, op);
      for (let b = 0; b < rows; b++) {
        const maskRow = mask ? mask + 4 * b * T : 0;
        for (let h = 0; h < H; h++) {
          const q = qkv + 4 * (b * T * W + h * dh);
          const P = probs + 4 * (b * H + h) * block;
          k.transpose_strided(qT, q, dh, T, W, scale);
          k.transpose_strided(kT, q + 4 * D, dh, T, W, 1);
          k.matmul_strided(P, qT, kT, T, T, dh, 1, T, T, T, 0);
          k.attention_softmax(P, P, maskRow, T, T, op.causal ? 1 : 0);
          if (!drop) k.matmul_strided(out + 4 * (b * T * D + h * dh), P, q + 8 * D, T, dh, T, T, 1, W, D, 0);
        }
      }
      if (!drop) return;
      const n = rows * H * block;
      const dropped = c.saved(op.dropped);
      k.dropout_forward(dropped, c.saved(op.dropMask), probs, op.p, (c.seed + Math.imul(op.salt, 0x9e3779b9)) >>> 0, n);
      for (let b = 0; b < rows; b++) {
        for (let h = 0; h < H; h++) {
          const v = qkv + 4 * (b * T * W + 2 * D + h * dh);
          k.matmul_strided(out + 4 * (b * T * D + h * dh), dropped + 4 * (b * H + h) * block, v, T, dh, T, T, 1, W, D, 0);
        }
      }
    },
    backward(c, op, rows, dy, dx) {
      const dqkv = dx[0];
      if (!dqkv) return;
      const k = c.k;
      const { T, D, H, dh, W, block, scale } = shape(op);
      const qkv = c.value(op.inputs[0]!);
      const dO: Ptr = dy[0]!; // [rows, T, D]
      const probs = c.saved(op.probs);
      const drop = dropping(c, op);
      const weights = drop ? c.saved(op.dropped) : probs; // what multiplied V
      const dropMask = drop ? c.saved(op.dropMask) : 0;
      const vT = c.workspace; // [dh, T]
      const dP = vT + 4 * dh * T; // [T, T]
      for (let b = 0; b < rows; b++) {
        for (let h = 0; h < H; h++) {
          const q = qkv + 4 * (b * T * W + h * dh);
          const dq = dqkv + 4 * (b * T * W + h * dh);
          const dOh = dO + 4 * (b * T * D + h * dh);
          const at = 4 * (b * H + h) * block;
          const P = probs + at;
          // dV_h = Pd^T dO_h (A = Pd read transposed)
          k.matmul_strided(dq + 8 * D, weights + at, dOh, T, dh, T, 1, T, D, W, 0);
          // dP = dO_h V_h^T (times the dropout mask)
          k.transpose_strided(vT, q + 8 * D, dh, T, W, 1);
          k.matmul_strided(dP, dOh, vT, T, T, dh, D, 1, T, T, 0);
          if (drop) k.mul(dP, dP, dropMask + at, block);
          // dS (scaled by c), written over P
          k.attention_softmax_backward(P, dP, P, scale, T, T);
          // dQ_h = dS K_h; dK_h = dS^T Q_h
          k.matmul_strided(dq, P, q + 4 * D, T, dh, T, T, 1, W, W, 0);
          k.matmul_strided(dq + 4 * D, P, q, T, dh, T, 1, T, W, W, 0);
        }
      }
    },
  },
};
