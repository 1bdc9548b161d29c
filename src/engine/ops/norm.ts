/**
 * The normalisation ops on the kernel core (wasm/assembly/normalization.ts):
 *
 *   layer_norm  forward   layer_norm_forward over rows * tokens groups (saves mean and rstd)
 *               backward  layer_norm_backward: dx written, dweight and dbias accumulated
 *   batch_norm  forward   training: batch_norm_stats (saved), batch_norm_update of the running
 *                         statistics, batch_norm_forward with the batch's statistics;
 *                         evaluation: batch_norm_forward with the running statistics
 *               backward  batch_norm_backward (training only: backward follows a training forward)
 */
import type { BatchNormOp, LayerNormOp, OpDef } from "./types.js";

/**
 * nn.LayerNorm / RMSNorm. https://pytorch.org/docs/stable/generated/torch.nn.LayerNorm.html
 *
 * @example
 * ```ts
 * layerNormOp.kernel.forward(context, op, rows); // y, and the saved mean and rstd of rows * op.tokens groups
 * ```
 */
export const layerNormOp: OpDef<LayerNormOp> = {
  // x with the saved mean and rstd; not y
  backwardReads: (op) => [op.inputs[0]!],
  flops: (op) => ({ forward: 8 * op.tokens * op.size, backward: 14 * op.tokens * op.size }),
  kernel: {
    forward(c, op, rows) {
      c.k.layer_norm_forward(
        c.value(op.outputs[0]!), c.saved(op.mean), c.saved(op.rstd), c.value(op.inputs[0]!), c.state(op.weight), c.state(op.bias),
        rows * op.tokens, op.size, op.eps, op.center ? 1 : 0,
      );
    },
    backward(c, op, rows, dy, dx) {
      c.k.layer_norm_backward(
        dx[0] ?? 0, c.grad(op.weight), c.grad(op.bias), dy[0]!, c.value(op.inputs[0]!), c.state(op.weight), c.saved(op.mean), c.saved(op.rstd),
        rows * op.tokens, op.size, op.center ? 1 : 0,
      );
    },
  },
};

/**
 * nn.BatchNorm1d / BatchNorm2d. Its statistics mix the rows of a batch: a model with it trains
 * on one thread. https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm1d.html
 *
 * @example
 * ```ts
 * batchNormOp.kernel.forward({ ...context, training: true }, op, rows); // batch statistics; running ones updated
 * ```
 */
export const batchNormOp: OpDef<BatchNormOp> = {
  flops: (op) => ({ forward: 8 * op.channels * op.positions, backward: 12 * op.channels * op.positions }),
  couplesRows: true,
  kernel: {
    forward(c, op, rows) {
      const C = op.channels;
      const y = c.value(op.outputs[0]!);
      const x = c.value(op.inputs[0]!);
      const tracked = op.runningMean >= 0;
      if (!c.training && tracked) {
        c.k.batch_norm_forward(y, x, c.state(op.runningMean), c.state(op.runningVar), c.state(op.weight), c.state(op.bias), rows, C, op.positions, op.eps);
        return;
      }
      const mean = c.saved(op.stats);
      const variance = mean + 4 * C;
      c.k.batch_norm_stats(mean, variance, x, rows, C, op.positions);
      if (c.training && tracked) {
        c.k.batch_norm_update(
          c.state(op.runningMean), c.state(op.runningVar), c.state(op.numBatchesTracked), mean, variance, C, op.momentum ?? -1, rows * op.positions,
        );
      }
      c.k.batch_norm_forward(y, x, mean, variance, c.state(op.weight), c.state(op.bias), rows, C, op.positions, op.eps);
    },
    backward(c, op, rows, dy, dx) {
      const C = op.channels;
      const mean = c.saved(op.stats);
      c.k.batch_norm_backward(
        dx[0] ?? 0, c.grad(op.weight), c.grad(op.bias), mean + 8 * C, dy[0]!, c.value(op.inputs[0]!), mean, mean + 4 * C, c.state(op.weight),
        rows, C, op.positions, op.eps,
      );
    },
  },
};
