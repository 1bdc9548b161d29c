/**
 * The token ops on the kernel core (wasm/assembly/tokens.ts):
 *
 *   embedding     y[m] = W[ids[m]]                 embedding_forward
 *                 dW[ids[m]] += dy[m] (in order)   embedding_backward (ids get no gradient)
 *   add_position  y = x + W[:T]                    add_broadcast
 *                 dW[:T] += sum_rows dy; dx = dy   bias_grad, copy
 *   token_pool    y = pool_t x[t] (mask)           token_pool_forward (max saves its argmax)
 *                 dx = the pooling's gradient      token_pool_backward
 *
 * https://pytorch.org/docs/stable/generated/torch.nn.Embedding.html
 */
import type { AddPositionOp, EmbeddingOp, OpDef, TokenPoolOp } from "./types.js";

/**
 * nn.Embedding: a row copy per token; the backward adds each token's gradient to its row.
 *
 * @example
 * ```ts
 * embeddingOp.kernel.forward(context, { kind: "embedding", inputs: [ids], outputs: [y], weight: 0, tokens: 6, dim: 8, paddingIdx: 0 }, rows);
 * ```
 */
export const embeddingOp: OpDef<EmbeddingOp> = {
  backwardReads: (op, needs) => (needs.param(op.weight) ? [op.inputs[0]!] : []),
  flops: (op) => ({ forward: op.tokens * op.dim, backward: op.tokens * op.dim }),
  kernel: {
    forward(c, op, rows) {
      // a 16-bit frozen table: only the rows the tokens pick are widened
      const dtype = c.dtype(op.weight);
      if (dtype) c.k.embedding_forward_half(c.value(op.outputs[0]!), c.stored(op.weight), c.value(op.inputs[0]!), rows * op.tokens, op.dim, dtype === 2 ? 1 : 0);
      else c.k.embedding_forward(c.value(op.outputs[0]!), c.state(op.weight), c.value(op.inputs[0]!), rows * op.tokens, op.dim);
    },
    backward(c, op, rows, dy) {
      const dW = c.grad(op.weight);
      if (dW) c.k.embedding_backward(dW, dy[0]!, c.value(op.inputs[0]!), rows * op.tokens, op.dim, op.paddingIdx);
    },
  },
};

/**
 * x + weight[:T]: the weight's gradient is the batch sum of dy (as a bias's), x's is dy.
 *
 * @example
 * ```ts
 * addPositionOp.flops({ kind: "add_position", inputs: [x], outputs: [y], weight: 1, n: 6 * 8 }); // { forward: 48, backward: 48 }
 * ```
 */
export const addPositionOp: OpDef<AddPositionOp> = {
  backwardReads: () => [],
  flops: (op) => ({ forward: op.n, backward: op.n }),
  kernel: {
    forward(c, op, rows) {
      c.k.add_broadcast(c.value(op.outputs[0]!), c.value(op.inputs[0]!), c.state(op.weight), rows, op.n);
    },
    backward(c, op, rows, dy, dx) {
      const dW = c.grad(op.weight);
      if (dW) c.k.bias_grad(dW, dy[0]!, rows, op.n);
      if (dx[0]) c.k.copy(dx[0], dy[0]!, rows * op.n);
    },
  },
};

/**
 * Pooling over tokens; the mask (inputs[1], when the data has one) selects the tokens that count.
 *
 * @example
 * ```ts
 * tokenPoolOp.kernel.backward(context, op, rows, [dy], [dx]); // dx written for every token
 * ```
 */
export const tokenPoolOp: OpDef<TokenPoolOp> = {
  // max reads its saved argmax, the others only the mask (a graph input)
  backwardReads: (op) => op.inputs.slice(1),
  flops: (op) => ({ forward: op.tokens * op.dim, backward: op.tokens * op.dim }),
  kernel: {
    forward(c, op, rows) {
      const mask = op.inputs.length > 1 ? c.value(op.inputs[1]!) : 0;
      c.k.token_pool_forward(c.value(op.outputs[0]!), c.saved(op.argmax), c.value(op.inputs[0]!), mask, op.mode, rows, op.tokens, op.dim);
    },
    backward(c, op, rows, dy, dx) {
      if (!dx[0]) return;
      const mask = op.inputs.length > 1 ? c.value(op.inputs[1]!) : 0;
      c.k.token_pool_backward(dx[0], dy[0]!, c.saved(op.argmax), mask, op.mode, rows, op.tokens, op.dim);
    },
  },
};
