/**
 * The linear op on the kernel core (forward, and backward for dW, db, dx):
 *
 *   forward  y[m, out]  = x[m, in] · W[out, in]^T + b      matmul_nt (packs W^T into the workspace)
 *   backward dW[out, in] += dy[m, out]^T · x[m, in]        matmul_tn (accumulate)
 *            db[out]     += sum_m dy[m, out]                bias_grad
 *            dx[m, in]   = dy[m, out] · W[out, in]          matmul_nn
 *
 * with m = rows * tokens. https://pytorch.org/docs/stable/generated/torch.nn.Linear.html
 */
import type { LinearOp, OpDef } from "./types.js";
import { GEMM_PACK_FLOATS } from "../kernels.js";

export const linearOp: OpDef<LinearOp> = {
  flops: (op) => {
    const forward = op.tokens * (2 * op.in * op.out + (op.bias >= 0 ? op.out : 0));
    return { forward, backward: 2 * forward };
  },
  workspace: (op) => op.in * op.out,
  // dx = dy W and db = sum dy need no activation; dW = dy^T x needs the input
  backwardReads: (op, needs) => (needs.param(op.weight) ? [op.inputs[0]!] : []),
  kernel: {
    forward(c, op, rows) {
      c.k.matmul_nt(c.value(op.outputs[0]!), c.value(op.inputs[0]!), c.state(op.weight), c.state(op.bias), c.workspace, rows * op.tokens, op.out, op.in);
    },
    backward(c, op, rows, dy, dx) {
      const m = rows * op.tokens;
      const dW = c.grad(op.weight);
      const db = c.grad(op.bias);
      // the workspace (in * out floats) packs B's blocks where it holds one (GEMM_PACK_FLOATS)
      const scratch = op.in * op.out >= GEMM_PACK_FLOATS ? c.workspace : 0;
      if (dW) c.k.matmul_tn(dW, dy[0]!, c.value(op.inputs[0]!), op.out, op.in, m, 1, scratch);
      if (db) c.k.bias_grad(db, dy[0]!, m, op.out);
      if (dx[0]) c.k.matmul_nn(dx[0], dy[0]!, c.state(op.weight), m, op.in, op.out, 0, scratch);
    },
  },
};
