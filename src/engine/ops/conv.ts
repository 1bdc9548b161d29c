/**
 * The convolution op on the kernel core: im2col + the register-blocked GEMM (matmul_strided),
 * one sample and one group at a time, over ranges of output rows that keep the column matrix
 * within CONV_WORKSPACE_LIMIT (the whole sample for small images):
 *
 *   forward  y_g[O/g, L]    = W_g[O/g, K_g] · col_g[K_g, L] (+ bias)   conv_bias_forward, conv_im2col, matmul_strided
 *   backward dW_g[O/g, K_g] += dy_g[O/g, L] · colT[L, K_g]            conv_im2col_t, matmul_strided (accumulate)
 *            db[O]          += sum over samples and L of dy            conv_bias_backward
 *            dx              = col2im(W_g^T · dy_g)                    fill, matmul_strided, conv_col2im
 *
 * with L = OH*OW output positions, K = C*KH*KW taps (K_g = K / groups per group).
 * https://pytorch.org/docs/stable/generated/torch.nn.Conv2d.html
 *
 * Why im2col + GEMM rather than a direct loop: on the bench CNN (`npm run bench -- --only cnn`,
 * which measures both; bench/assembly/conv_direct.ts is a direct 4-channel x 8-column
 * register-blocked f32x4 loop over a zero-padded copy) the direct loop wins only for one input
 * channel (conv 1->8 at 28x28, batch 64: 0.31 ms against 0.43 ms) and loses 2.7x at 8->16
 * 14x14 (3.7 ms against 1.3 ms: its narrow rows leave scalar tails); one path keeps one set of
 * kernels, twins and WGSL.
 */
import type { ConvGeometry } from "../kernels.js";
import type { ConvOp, OpDef, WindowGeometry } from "./types.js";

/** The most elements a convolution's column matrix may take in the workspace (4 MB). */
export const CONV_WORKSPACE_LIMIT = 1 << 20;

/** Taps per output position (rows of the column matrix). */
const taps = (op: WindowGeometry) => op.C * op.KH * op.KW;

/**
 * Output rows to unfold at a time (the op's rowChunk): all of them when the column matrix fits
 * the limit, else as many as fit (at least one).
 *
 * @example
 * ```ts
 * convRowChunk({ C: 512, KH: 3, KW: 3, OH: 56, OW: 56, ... }); // 4: 4608 taps x 224 positions
 * ```
 */
export function convRowChunk(op: WindowGeometry): number {
  const perRow = taps(op) * op.OW;
  return Math.max(1, Math.min(op.OH, Math.floor(CONV_WORKSPACE_LIMIT / Math.max(1, perRow))));
}

/** The kernels' geometry arguments for output rows [oh0, oh1). */
function geometry(op: WindowGeometry, oh0: number, oh1: number): ConvGeometry {
  return [op.C, op.H, op.W, op.KH, op.KW, op.SH, op.SW, op.PH, op.PW, op.DH, op.DW, op.OW, oh0, oh1];
}

/**
 * The conv op's FLOPs, workspace and kernel calls (see the file comment).
 *
 * @example
 * ```ts
 * convOp.kernel.forward(context, op, rows); // y = conv(x) + bias for `rows` samples
 * convOp.workspace!(op, rows);              // C*KH*KW * rowChunk*OW elements, whatever `rows`
 * ```
 */
export const convOp: OpDef<ConvOp> = {
  flops: (op) => {
    const macs = op.O * op.OH * op.OW * (taps(op) / op.groups);
    const bias = op.bias >= 0 ? op.O * op.OH * op.OW : 0;
    return { forward: 2 * macs + bias, backward: 4 * macs + bias };
  },
  workspace: (op) => taps(op) * op.rowChunk * op.OW,
  kernel: {
    forward(c, op, rows) {
      const k = c.k;
      const y = c.value(op.outputs[0]!);
      const x = c.value(op.inputs[0]!);
      const w = c.state(op.weight);
      const L = op.OH * op.OW;
      const K = taps(op);
      const Kg = K / op.groups;
      const Og = op.O / op.groups;
      const chunk = op.rowChunk;
      const hasBias = op.bias >= 0;
      if (hasBias) k.conv_bias_forward(y, c.state(op.bias), rows, op.O, L);
      for (let n = 0; n < rows; n++) {
        const xn = x + n * op.C * op.H * op.W * 4;
        const yn = y + n * op.O * L * 4;
        for (let oh0 = 0; oh0 < op.OH; oh0 += chunk) {
          const oh1 = Math.min(op.OH, oh0 + chunk);
          const Lc = (oh1 - oh0) * op.OW;
          k.conv_im2col(c.workspace, xn, ...geometry(op, oh0, oh1));
          for (let g = 0; g < op.groups; g++) {
            // y_g[Og, oh0*OW ..] (+)= W_g[Og, Kg] · col_g[Kg, Lc]: A rows of Kg, B and out rows of Lc and L
            k.matmul_strided(yn + (g * Og * L + oh0 * op.OW) * 4, w + g * Og * Kg * 4, c.workspace + g * Kg * Lc * 4, Og, Lc, Kg, Kg, 1, Lc, L, hasBias ? 1 : 0);
          }
        }
      }
    },
    backward(c, op, rows, dy, dx) {
      const k = c.k;
      const g0 = dy[0]!;
      const x = c.value(op.inputs[0]!);
      const w = c.state(op.weight);
      const dW = c.grad(op.weight);
      const db = c.grad(op.bias);
      const L = op.OH * op.OW;
      const K = taps(op);
      const Kg = K / op.groups;
      const Og = op.O / op.groups;
      const chunk = op.rowChunk;
      const image = op.C * op.H * op.W;
      if (db) k.conv_bias_backward(db, g0, rows, op.O, L);
      if (dW) {
        for (let n = 0; n < rows; n++) {
          const dyn = g0 + n * op.O * L * 4;
          for (let oh0 = 0; oh0 < op.OH; oh0 += chunk) {
            const oh1 = Math.min(op.OH, oh0 + chunk);
            const Lc = (oh1 - oh0) * op.OW;
            k.conv_im2col_t(c.workspace, x + n * image * 4, ...geometry(op, oh0, oh1));
            for (let g = 0; g < op.groups; g++) {
              // dW_g[Og, Kg] += dy_g[Og, Lc] (rows of L) · colT[Lc, g*Kg ..] (rows of K)
              k.matmul_strided(dW + g * Og * Kg * 4, dyn + (g * Og * L + oh0 * op.OW) * 4, c.workspace + g * Kg * 4, Og, Kg, Lc, L, 1, K, Kg, 1);
            }
          }
        }
      }
      if (dx[0]) {
        k.fill(dx[0], 0, rows * image);
        for (let n = 0; n < rows; n++) {
          const dyn = g0 + n * op.O * L * 4;
          for (let oh0 = 0; oh0 < op.OH; oh0 += chunk) {
            const oh1 = Math.min(op.OH, oh0 + chunk);
            const Lc = (oh1 - oh0) * op.OW;
            for (let g = 0; g < op.groups; g++) {
              // dcol_g[Kg, Lc] = W_g^T (A(k, o) = W_g[o*Kg + k]) · dy_g[Og, Lc] (rows of L)
              k.matmul_strided(c.workspace + g * Kg * Lc * 4, w + g * Og * Kg * 4, dyn + (g * Og * L + oh0 * op.OW) * 4, Kg, Lc, Og, 1, Kg, L, Lc, 0);
            }
            k.conv_col2im(dx[0] + n * image * 4, c.workspace, ...geometry(op, oh0, oh1));
          }
        }
      }
    },
  },
};
