/**
 * Pooling ops on the kernel core: each of a sample's C planes pooled on its own, so a batch is
 * rows * C planes for one kernel call.
 *
 *   max_pool  y = max over the window, argmax saved;  dx = 0, dx[argmax] += dy
 *   avg_pool  y = sum / divisor (or adaptive windows); dx = dy / divisor spread over the window
 *
 * https://pytorch.org/docs/stable/generated/torch.nn.MaxPool2d.html,
 * https://pytorch.org/docs/stable/generated/torch.nn.AvgPool2d.html,
 * https://pytorch.org/docs/stable/generated/torch.nn.AdaptiveAvgPool2d.html
 */
import type { AvgPoolOp, MaxPoolOp, OpDef } from "./types.js";

/**
 * Max pooling: one kernel call over rows * C planes each way.
 *
 * @example
 * ```ts
 * maxPoolOp.kernel.forward(context, op, rows); // y and the saved argmax indices
 * ```
 */
export const maxPoolOp: OpDef<MaxPoolOp> = {
  flops: (op) => ({ forward: op.C * op.OH * op.OW * op.KH * op.KW, backward: op.C * op.OH * op.OW }),
  kernel: {
    forward(c, op, rows) {
      c.k.max_pool_forward(
        c.value(op.outputs[0]!), c.saved(op.indices), c.value(op.inputs[0]!), rows * op.C, op.H, op.W,
        op.KH, op.KW, op.SH, op.SW, op.PH, op.PW, op.DH, op.DW, op.OH, op.OW,
      );
    },
    backward(c, op, rows, dy, dx) {
      if (dx[0]) c.k.max_pool_backward(dx[0], dy[0]!, c.saved(op.indices), rows * op.C, op.H, op.W, op.OH, op.OW);
    },
  },
};

/** The mean of a window's taps (adaptive: H/OH-ish windows): about one FLOP per tap each way. */
function avgTaps(op: AvgPoolOp): number {
  const kh = op.adaptive ? Math.ceil(op.H / op.OH) + 1 : op.KH;
  const kw = op.adaptive ? Math.ceil(op.W / op.OW) + 1 : op.KW;
  return op.C * op.OH * op.OW * (kh * kw + 1);
}

/**
 * Average pooling, fixed or adaptive windows (op.adaptive).
 *
 * @example
 * ```ts
 * avgPoolOp.kernel.backward(context, op, rows, [dy], [dx]); // dx written
 * ```
 */
export const avgPoolOp: OpDef<AvgPoolOp> = {
  flops: (op) => ({ forward: avgTaps(op), backward: avgTaps(op) }),
  kernel: {
    forward(c, op, rows) {
      const y = c.value(op.outputs[0]!);
      const x = c.value(op.inputs[0]!);
      if (op.adaptive) c.k.adaptive_avg_pool_forward(y, x, rows * op.C, op.H, op.W, op.OH, op.OW);
      else c.k.avg_pool_forward(y, x, rows * op.C, op.H, op.W, op.KH, op.KW, op.SH, op.SW, op.PH, op.PW, op.OH, op.OW, op.countIncludePad ? 1 : 0, op.divisor);
    },
    backward(c, op, rows, dy, dx) {
      if (!dx[0]) return;
      if (op.adaptive) c.k.adaptive_avg_pool_backward(dx[0], dy[0]!, rows * op.C, op.H, op.W, op.OH, op.OW);
      else c.k.avg_pool_backward(dx[0], dy[0]!, rows * op.C, op.H, op.W, op.KH, op.KW, op.SH, op.SW, op.PH, op.PW, op.OH, op.OW, op.countIncludePad ? 1 : 0, op.divisor);
    },
  },
};
