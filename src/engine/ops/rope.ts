/**
 * The rope op on the kernel core (wasm/assembly/rope.ts): rotary position embedding over
 * x [T, heads * headDim] per sample, Llama's rotate_half form (ops/types.ts RopeOp):
 *
 *   forward   cos, sin [T, half] = the angle table              rope_table (into the saved table)
 *             y = x cos + rotate_half(x) sin                     rope, sign 1, per sample
 *   backward  dx = dy cos - rotate_half^T(dy) sin                rope, sign -1 (the opposite angle)
 *
 * with half = headDim / 2. The table depends on T, half and theta only; the forward writes it
 * into the op's saved buffer (fixed size T * headDim: cos then sin) and the backward reads it.
 * transformers' LlamaRotaryEmbedding and apply_rotary_pos_emb:
 * https://github.com/huggingface/transformers/blob/main/src/transformers/models/llama/modeling_llama.py
 */
import type { OpDef, RopeOp } from "./types.js";

const f = Math.fround;

/**
 * The angle table of rope_table (wasm/assembly/rope.ts), computed in TypeScript: cos [T, half]
 * then sin [T, half], with e = f32(i / half), inv = f32(1 / f32(theta^e)) (theta as f32),
 * a = f32(t * inv), and cos(a), sin(a) evaluated in f64 and rounded to f32, which is
 * transformers' float32 inv_freq, freqs and emb.cos() / emb.sin() (default rope_type). The
 * reference twin of rope_table and the WebGPU op (which uploads it) use it.
 *
 * @example
 * ```ts
 * const table = ropeTable(4, 2, 10000); // [cos(t / 10000^(i/2)) for t < 4, i < 2, then the sines]
 * table[1 * 2 + 0]; // cos(1)
 * ```
 */
export function ropeTable(T: number, half: number, theta: number): Float32Array {
  const table = new Float32Array(2 * T * half);
  for (let i = 0; i < half; i++) {
    const inv = f(1 / f(Math.pow(f(theta), f(i / half))));
    for (let t = 0; t < T; t++) {
      const a = f(t * inv);
      table[t * half + i] = f(Math.cos(a));
      table[(T + t) * half + i] = f(Math.sin(a));
    }
  }
  return table;
}

/**
 * The rope op's definition on the kernel core (registered in ops/index.ts OPS).
 *
 * @example
 * ```ts
 * const op: RopeOp = { kind: "rope", inputs: [q], outputs: [qRot], tokens: 8, heads: 4, headDim: 16, theta: 10000, table: 3 };
 * ropeOp.kernel.forward(c, op, rows); // the table saved, qRot [rows, 8, 64] written
 * ropeOp.kernel.backward(c, op, rows, [dQRot], [dQ]); // dQ written
 * ```
 */
export const ropeOp: OpDef<RopeOp> = {
  // the backward rotates dy back with the saved table
  backwardReads: () => [],
  // per element of x: two products and a sum; the table: two transcendental calls per angle
  flops: (op) => {
    const n = op.tokens * op.heads * op.headDim;
    return { forward: 3 * n + op.tokens * op.headDim, backward: 3 * n };
  },
  kernel: {
    forward(c, op, rows) {
      const { tokens: T, heads, headDim } = op;
      const half = headDim >> 1;
      const cos = c.saved(op.table);
      const sin = cos + 4 * T * half;
      c.k.rope_table(cos, sin, T, half, op.theta);
      const x = c.value(op.inputs[0]!);
      const y = c.value(op.outputs[0]!);
      const n = T * heads * headDim;
      for (let b = 0; b < rows; b++) c.k.rope(y + 4 * b * n, x + 4 * b * n, cos, sin, 1, T, heads, headDim);
    },
    backward(c, op, rows, dy, dx) {
      const d = dx[0];
      if (!d) return;
      const { tokens: T, heads, headDim } = op;
      const cos = c.saved(op.table);
      const sin = cos + 4 * T * (headDim >> 1);
      const n = T * heads * headDim;
      for (let b = 0; b < rows; b++) c.k.rope(d + 4 * b * n, dy[0]! + 4 * b * n, cos, sin, -1, T, heads, headDim);
    },
  },
};
