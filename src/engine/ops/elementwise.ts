/**
 * Elementwise ops on the kernel core: activations, dropout, the residual sum and the product
 * (the SwiGLU gate).
 */
import { ACTIVATIONS } from "../layers/activations.js";
import type { ActivationOp, AddOp, DropoutOp, MulOp, OpDef } from "./types.js";

/** y = f(x); dx = dy * f'(.) (the kernel reads x or y, whichever f' needs). */
/** The activations whose backward reads their output rather than their input. */
const READS_OUTPUT = new Set<number>([ACTIVATIONS.relu.code, ACTIVATIONS.tanh.code, ACTIVATIONS.sigmoid.code]);

export const activationOp: OpDef<ActivationOp> = {
  // relu, tanh and sigmoid differentiate from y, the others from x (activation_backward's switch)
  backwardReads: (op) => [READS_OUTPUT.has(op.fn) ? op.outputs[0]! : op.inputs[0]!],
  // every activation_backward (and its twin) computes dinp[i] from dout[i] alone, loaded first
  backwardInPlace: true,
  flops: (op) => ({ forward: 4 * op.n, backward: 4 * op.n }),
  kernel: {
    forward(c, op, rows) {
      c.k.activation_forward(c.value(op.outputs[0]!), c.value(op.inputs[0]!), op.fn, op.slope, rows * op.n);
    },
    backward(c, op, rows, dy, dx) {
      if (dx[0]) c.k.activation_backward(dx[0], dy[0]!, c.value(op.inputs[0]!), c.value(op.outputs[0]!), op.fn, op.slope, rows * op.n);
    },
  },
};

/** Training: y = x * mask, mask = 1/(1-p) or 0 from a hash of (step seed, salt, i); evaluation: y = x. */
export const dropoutOp: OpDef<DropoutOp> = {
  // the mask is saved: no activation is read
  backwardReads: () => [],
  flops: (op) => ({ forward: op.n, backward: op.n }),
  kernel: {
    forward(c, op, rows) {
      const y = c.value(op.outputs[0]!);
      const x = c.value(op.inputs[0]!);
      if (c.training && op.mask >= 0) c.k.dropout_forward(y, c.saved(op.mask), x, op.p, (c.seed + Math.imul(op.salt, 0x9e3779b9)) >>> 0, rows * op.n);
      else c.k.copy(y, x, rows * op.n);
    },
    backward(c, op, rows, dy, dx) {
      if (!dx[0]) return;
      if (c.training && op.mask >= 0) c.k.mul(dx[0], dy[0]!, c.saved(op.mask), rows * op.n);
      else c.k.copy(dx[0], dy[0]!, rows * op.n);
    },
  },
};

/** y = a + s b; da = dy, db = s dy (s = 1: a plain sum). */
export const addOp: OpDef<AddOp> = {
  backwardReads: () => [],
  flops: (op) => ({ forward: op.scale === undefined ? op.n : 2 * op.n, backward: op.scale === undefined ? 0 : op.n }),
  kernel: {
    forward(c, op, rows) {
      const n = rows * op.n;
      const y = c.value(op.outputs[0]!);
      if (op.scale === undefined) return c.k.add(y, c.value(op.inputs[0]!), c.value(op.inputs[1]!), n);
      // torch: result + lora_out * scaling, the product rounded first
      c.k.copy(y, c.value(op.inputs[1]!), n);
      c.k.scale(y, op.scale, n);
      c.k.add(y, c.value(op.inputs[0]!), y, n);
    },
    backward(c, op, rows, dy, dx) {
      const n = rows * op.n;
      if (dx[0]) c.k.copy(dx[0], dy[0]!, n);
      if (dx[1]) {
        c.k.copy(dx[1], dy[0]!, n);
        if (op.scale !== undefined) c.k.scale(dx[1], op.scale, n);
      }
    },
  },
};

/**
 * y = a * b; da = dy * b, db = dy * a (torch.mul's derivatives). When one value is both inputs
 * (x * x) the two gradients go to separate slots and the compiler sums them: 2 x dy.
 *
 * @example
 * ```ts
 * mulOp.kernel.backward(c, { kind: "mul", inputs: [gate, up], outputs: [h], n: 64 }, rows, [dH], [dGate, dUp]);
 * ```
 */
export const mulOp: OpDef<MulOp> = {
  // da = dy b, db = dy a
  backwardReads: (op, needs) => [...(needs.input(0) ? [op.inputs[1]!] : []), ...(needs.input(1) ? [op.inputs[0]!] : [])],
  flops: (op) => ({ forward: op.n, backward: 2 * op.n }),
  kernel: {
    forward(c, op, rows) {
      c.k.mul(c.value(op.outputs[0]!), c.value(op.inputs[0]!), c.value(op.inputs[1]!), rows * op.n);
    },
    backward(c, op, rows, dy, dx) {
      const n = rows * op.n;
      if (dx[0]) c.k.mul(dx[0], dy[0]!, c.value(op.inputs[1]!), n);
      if (dx[1]) c.k.mul(dx[1], dy[0]!, c.value(op.inputs[0]!), n);
    },
  },
};
