/// <reference types="@webgpu/types" />
/**
 * The ops of a compiled model as WebGPU dispatches: each op kind's forward and backward as
 * DispatchSpecs over the run's buffers (one GPUBuffer per value, gradient slot and saved
 * buffer; the state and its gradients in one buffer each, addressed by element offsets).
 * The same maths, in the same order, as the kernel core's ops (ops/*.ts); the WGSL is in wgsl.ts.
 *
 * An op kind whose entry is null has no WGSL yet: a run that contains it cannot use this
 * backend (kernel "auto" falls back to WASM; kernel "webgpu" is refused with the op's name).
 */
import { attentionGeometry, type AttentionOperand } from "../ops/attention.js";
import { ropeTable } from "../ops/rope.js";
import type { AttentionOp, Op, OpKind, OpOf } from "../ops/types.js";
import type { BackwardStep } from "../graph/types.js";
import { gridGroups, type DispatchSpec } from "./context.js";

/** Where an op's buffers are, for building its dispatches. */
export interface GpuOpContext {
  /** A value's buffer ([maxRows, size]). */
  value(id: number): GPUBuffer;
  /** The state block (parameters and buffers) and the trainable parameters' gradients. */
  readonly state: GPUBuffer;
  readonly grads: GPUBuffer;
  /** Element offset of state tensor `index` in `state` (and of its gradient in `grads`). */
  offset(index: number): number;
  /** Whether state tensor `index` is a trainable parameter (it has a gradient). */
  trainable(index: number): boolean;
  saved(id: number): GPUBuffer;
  /** The per-step scalars (seed, optimizer scalars): binding 17 of kernels that read it. */
  readonly step: GPUBuffer;
  /** A 16-byte placeholder for an unused binding. */
  readonly none: GPUBuffer;
  /**
   * Writes constant data at the start of a buffer, ahead of every dispatch of the run (RoPE's
   * angle table: the op computes it on the CPU while it builds its dispatches).
   */
  upload(buffer: GPUBuffer, data: Float32Array): void;
}

/** An op kind on WebGPU. */
export interface GpuOp<O> {
  forward(c: GpuOpContext, op: O, rows: number, training: boolean): DispatchSpec[];
  /** dy: the outputs' gradient buffers; dx: the inputs' (null: not needed), written. */
  backward(c: GpuOpContext, op: O, rows: number, dy: readonly GPUBuffer[], dx: readonly (GPUBuffer | null)[]): DispatchSpec[];
}

const f = (v: number) => ({ f: v });
const fr = Math.fround;

/** Per-invocation output tile of the GEMM for a dimension: 1, 2 or 4 (tiles of 16, 32, 64). */
const tile = (d: number) => (d <= 16 ? 1 : d <= 32 ? 2 : 4);

/** Below this many multiply-adds a product runs on gemm_small (no workgroup memory, no barriers). */
export const SMALL_GEMM_MACS = 1 << 18;

/**
 * The dispatch of C[M,N] = init + A·B (see wgsl.ts GEMM for the layouts): the tiled kernel, or
 * gemm_small for small products (bit-identical results: the same order of operations).
 *
 * @example
 * ```ts
 * gemmSpec(0, 2, rows, out, inp, [dst, x, params, params], { bOff: w.offset, biasOff: b.offset });
 * ```
 */
export function gemmSpec(
  layout: 0 | 1 | 2, init: 0 | 1 | 2, M: number, N: number, K: number, buffers: GPUBuffer[],
  offsets: { aOff?: number; bOff?: number; biasOff?: number; outOff?: number } = {},
  small = M * N * K < SMALL_GEMM_MACS,
): DispatchSpec {
  const params = [M, N, K, offsets.aOff ?? 0, offsets.bOff ?? 0, offsets.biasOff ?? 0, offsets.outOff ?? 0, 0];
  if (small) {
    return { kernel: "gemm_small", constants: { LAYOUT: layout, INIT: init }, buffers, params, x: Math.min(Math.ceil((M * N) / 64), 4096) };
  }
  return {
    kernel: "gemm",
    constants: { LAYOUT: layout, INIT: init, TM: tile(M), TN: tile(N) },
    buffers,
    params,
    x: Math.ceil(N / (16 * tile(N))),
    y: Math.ceil(M / (16 * tile(M))),
  };
}

/** y = x W^T + b; dW += dy^T x; db += sum dy; dx = dy W (ops/linear.ts). */
const linear: GpuOp<OpOf<"linear">> = {
  forward(c, op, rows) {
    const m = rows * op.tokens;
    const hasBias = op.bias >= 0;
    return [
      gemmSpec(0, hasBias ? 2 : 0, m, op.out, op.in, [c.value(op.outputs[0]!), c.value(op.inputs[0]!), c.state, c.state], {
        bOff: c.offset(op.weight),
        biasOff: hasBias ? c.offset(op.bias) : 0,
      }),
    ];
  },
  backward(c, op, rows, dy, dx) {
    const m = rows * op.tokens;
    const specs: DispatchSpec[] = [];
    if (c.trainable(op.weight)) {
      specs.push(gemmSpec(2, 1, op.out, op.in, m, [c.grads, dy[0]!, c.value(op.inputs[0]!), dy[0]!], { outOff: c.offset(op.weight) }));
    }
    if (op.bias >= 0 && c.trainable(op.bias)) {
      specs.push({ kernel: "bias_grad", buffers: [c.grads, dy[0]!], params: [op.out, m, c.offset(op.bias), 0], x: gridGroups(op.out) });
    }
    if (dx[0]) specs.push(gemmSpec(1, 0, m, op.in, op.out, [dx[0], dy[0]!, c.state, dy[0]!], { bOff: c.offset(op.weight) }));
    return specs;
  },
};

const activation: GpuOp<OpOf<"activation">> = {
  forward(c, op, rows) {
    const n = rows * op.n;
    return [{ kernel: "act_forward", constants: { ACT: op.fn }, buffers: [c.value(op.outputs[0]!), c.value(op.inputs[0]!)], params: [n, f(op.slope), 0, 0], x: gridGroups(n) }];
  },
  backward(c, op, rows, dy, dx) {
    if (!dx[0]) return [];
    const n = rows * op.n;
    return [
      {
        kernel: "act_backward",
        constants: { ACT: op.fn },
        buffers: [dx[0], dy[0]!, c.value(op.inputs[0]!), c.value(op.outputs[0]!)],
        params: [n, f(op.slope), 0, 0],
        x: gridGroups(n),
      },
    ];
  },
};

const dropout: GpuOp<OpOf<"dropout">> = {
  forward(c, op, rows, training) {
    const n = rows * op.n;
    const y = c.value(op.outputs[0]!);
    const x = c.value(op.inputs[0]!);
    if (training && op.mask >= 0) {
      const p = fr(op.p);
      const scale = p < 1 ? fr(1 / (1 - p)) : 0;
      return [
        {
          kernel: "dropout",
          buffers: [y, c.saved(op.mask), x],
          params: [n, Math.ceil(p * 16777216), f(scale), Math.imul(op.salt, 0x9e3779b9) >>> 0],
          step: c.step,
          x: gridGroups(n),
        },
      ];
    }
    return [{ kernel: "copy", buffers: [y, x], params: [n, 0, 0, 0], x: gridGroups(n) }];
  },
  backward(c, op, rows, dy, dx) {
    if (!dx[0]) return [];
    const n = rows * op.n;
    return [
      op.mask >= 0
        ? { kernel: "mul", buffers: [dx[0], dy[0]!, c.saved(op.mask)], params: [n, 0, 0, 0], x: gridGroups(n) }
        : { kernel: "copy", buffers: [dx[0], dy[0]!], params: [n, 0, 0, 0], x: gridGroups(n) },
    ];
  },
};

const add: GpuOp<OpOf<"add">> = {
  forward(c, op, rows) {
    const n = rows * op.n;
    return [{ kernel: "add", buffers: [c.value(op.outputs[0]!), c.value(op.inputs[0]!), c.value(op.inputs[1]!)], params: [n, f(op.scale ?? 1), 0, 0], x: gridGroups(n) }];
  },
  backward(_c, op, rows, dy, dx) {
    const n = rows * op.n;
    const specs: DispatchSpec[] = dx.filter((d): d is GPUBuffer => d !== null).map((d) => ({ kernel: "copy" as const, buffers: [d, dy[0]!], params: [n, 0, 0, 0], x: gridGroups(n) }));
    if (dx[1] && op.scale !== undefined) specs.push({ kernel: "scale", buffers: [dx[1]], params: [n, f(op.scale), 0, 0], x: gridGroups(n) });
    return specs;
  },
};

/** y = a * b; da = dy * b, db = dy * a (ops/elementwise.ts mulOp). */
const mul: GpuOp<OpOf<"mul">> = {
  forward(c, op, rows) {
    const n = rows * op.n;
    return [{ kernel: "mul", buffers: [c.value(op.outputs[0]!), c.value(op.inputs[0]!), c.value(op.inputs[1]!)], params: [n, 0, 0, 0], x: gridGroups(n) }];
  },
  backward(c, op, rows, dy, dx) {
    const n = rows * op.n;
    const specs: DispatchSpec[] = [];
    if (dx[0]) specs.push({ kernel: "mul", buffers: [dx[0], dy[0]!, c.value(op.inputs[1]!)], params: [n, 0, 0, 0], x: gridGroups(n) });
    if (dx[1]) specs.push({ kernel: "mul", buffers: [dx[1], dy[0]!, c.value(op.inputs[0]!)], params: [n, 0, 0, 0], x: gridGroups(n) });
    return specs;
  },
};

/**
 * RoPE (ops/rope.ts): the angle table computed on the CPU as rope_table computes it and
 * uploaded into the saved table; one dispatch forward (sign 1) and one backward (sign -1).
 */
const rope: GpuOp<OpOf<"rope">> = {
  forward(c, op, rows) {
    const half = op.headDim >> 1;
    const table = c.saved(op.table);
    c.upload(table, ropeTable(op.tokens, half, op.theta));
    const n = rows * op.tokens * op.heads * half;
    return [{ kernel: "rope", buffers: [c.value(op.outputs[0]!), c.value(op.inputs[0]!), table], params: [n, op.tokens, op.heads, half, f(1), 0, 0, 0], x: gridGroups(n) }];
  },
  backward(c, op, rows, dy, dx) {
    if (!dx[0]) return [];
    const half = op.headDim >> 1;
    const n = rows * op.tokens * op.heads * half;
    return [{ kernel: "rope", buffers: [dx[0], dy[0]!, c.saved(op.table)], params: [n, op.tokens, op.heads, half, f(-1), 0, 0, 0], x: gridGroups(n) }];
  },
};

/**
 * A strided view of a batched operand of bgemm: X(r, c) at off + s * sample + h * head + r * rs + c * cs
 * for sample s and head h (element offsets into `buffer`); with `group` g > 1 the view of source
 * head hs is head floor(hs / g) (a key/value head shared by g query heads).
 *
 * @example
 * ```ts
 * // K_h^T of a [rows, T, 3D] projection: element (d, j) is K[j, h * dh + d]
 * const kT: StridedView = { buffer: qkv, off: D, rs: 1, cs: 3 * D, sample: T * 3 * D, head: dh };
 * ```
 */
export interface StridedView {
  buffer: GPUBuffer;
  off: number;
  rs: number;
  cs: number;
  sample: number;
  head: number;
  group?: number;
}

/**
 * The dispatch of the batched strided GEMM (wgsl.ts BGEMM): for `count` = samples * heads
 * (z = sample * heads + head h), C(i,j) (+)= sum over the `sum` source heads hs = h * sum + r
 * of sum_k (alpha A(i,k)) B(k,j); C's columns are contiguous.
 *
 * @example
 * ```ts
 * // S = (Q / sqrt(dh)) K^T for every sample and head of a [rows, T, 3D] projection
 * bgemmSpec(T, T, dh, rows * H, H, scale, { buffer: qkv, off: 0, rs: 3 * D, cs: 1, sample: T * 3 * D, head: dh },
 *   { buffer: qkv, off: D, rs: 1, cs: 3 * D, sample: T * 3 * D, head: dh }, { buffer: probs, off: 0, rs: T, cs: 1, sample: H * T * T, head: T * T });
 * ```
 */
export function bgemmSpec(
  M: number, N: number, K: number, count: number, heads: number, alpha: number,
  a: StridedView, b: StridedView, c: StridedView, accumulate = false, sum = 1,
): DispatchSpec {
  return {
    kernel: "bgemm",
    constants: { INIT: accumulate ? 1 : 0 },
    buffers: [c.buffer, a.buffer, b.buffer],
    params: [
      M, N, K, count, heads, f(alpha), sum, 0,
      a.off, a.rs, a.cs, a.sample, a.head,
      b.off, b.rs, b.cs, b.sample, b.head,
      c.off, c.rs, c.sample, c.head, a.group ?? 1, b.group ?? 1,
    ],
    x: Math.max(1, Math.min(Math.ceil((M * N) / 64), 4096)),
    y: Math.max(1, Math.min(count, 65535)),
  };
}

/**
 * Self-attention (ops/attention.ts), every sample and head in one dispatch per step, either
 * layout, grouped-query included (attentionGeometry): forward S = (Q/sqrt(dh)) K^T (bgemm,
 * alpha = 1/sqrt(dh)), P = masked softmax (attn_softmax, in place), dropout of P in training,
 * O = P V (bgemm); backward dV (bgemm over key/value heads, summing their query heads), dS over
 * P (attn_dscores), dQ = dS K, dK = dS^T Q (bgemm, dK summed as dV).
 */
const attention: GpuOp<AttentionOp> = {
  forward(c, op, rows, training) {
    const g = attentionGeometry(op);
    const { T, Tq, D, H, dh, group, block, scale } = g;
    const count = rows * H;
    const probs = c.saved(op.probs);
    // Q has Tq rows per sample, K and V T
    const operand = (o: AttentionOperand, group: number, transposed = false): StridedView => {
      const buffer = c.value(op.inputs[o.input]!);
      const sample = (o === g.q ? Tq : T) * o.ld;
      return transposed
        ? { buffer, off: o.col, rs: 1, cs: o.ld, sample, head: dh, group }
        : { buffer, off: o.col, rs: o.ld, cs: 1, sample, head: dh, group };
    };
    const weightsOf = (buffer: GPUBuffer) => ({ buffer, off: 0, rs: T, cs: 1, sample: H * block, head: block });
    const masked = g.mask >= 0;
    const specs: DispatchSpec[] = [
      bgemmSpec(Tq, T, dh, count, H, scale, operand(g.q, 1), operand(g.k, group, true), weightsOf(probs)),
      {
        kernel: "attn_softmax",
        constants: { HAS_MASK: masked, CAUSAL: op.causal },
        buffers: [probs, masked ? c.value(op.inputs[g.mask]!) : c.none],
        params: [count * Tq, T, H, Tq],
        x: gridGroups(count * Tq),
      },
    ];
    let weights = probs;
    if (training && op.dropMask >= 0) {
      const p = fr(op.p);
      const n = count * block;
      weights = c.saved(op.dropped);
      specs.push({
        kernel: "dropout",
        buffers: [weights, c.saved(op.dropMask), probs],
        params: [n, Math.ceil(p * 16777216), f(p < 1 ? fr(1 / (1 - p)) : 0), Math.imul(op.salt, 0x9e3779b9) >>> 0],
        step: c.step,
        x: gridGroups(n),
      });
    }
    const out = { buffer: c.value(op.outputs[0]!), off: 0, rs: D, cs: 1, sample: Tq * D, head: dh };
    specs.push(bgemmSpec(Tq, dh, T, count, H, 1, weightsOf(weights), operand(g.v, group), out));
    return specs;
  },
  backward(c, op, rows, dy, dx) {
    const g = attentionGeometry(op);
    const dq = dx[g.q.input] ?? null, dk = dx[g.k.input] ?? null, dv = dx[g.v.input] ?? null;
    if (!dq && !dk && !dv) return [];
    const { T, Tq, D, H, G, dh, group, block, scale } = g;
    const probs = c.saved(op.probs);
    const dropping = op.dropMask >= 0; // a backward follows a training forward
    const weights = dropping ? c.saved(op.dropped) : probs;
    const view = (buffer: GPUBuffer, off: number, rs: number, cs: number, sample: number, head: number, grp = 1): StridedView => ({ buffer, off, rs, cs, sample, head, group: grp });
    const transposed = (buffer: GPUBuffer) => view(buffer, 0, 1, T, H * block, block);
    // Q (and dQ) have Tq rows per sample, K and V T
    const rowsOf = (buffer: GPUBuffer, o: AttentionOperand, grp = 1) => view(buffer, o.col, o.ld, 1, (o === g.q ? Tq : T) * o.ld, dh, grp);
    const input = (o: AttentionOperand) => c.value(op.inputs[o.input]!);
    const dO = view(dy[0]!, 0, D, 1, Tq * D, dh);
    const specs: DispatchSpec[] = [];
    // dV_g = sum over its query heads of Pd^T dO_h (before dS overwrites P)
    if (dv) specs.push(bgemmSpec(T, dh, Tq, rows * G, G, 1, transposed(weights), dO, rowsOf(dv, g.v), false, group));
    if (!dq && !dk) return specs;
    specs.push({
      kernel: "attn_dscores",
      constants: { DROPOUT: dropping },
      buffers: [probs, dy[0]!, input(g.v), dropping ? c.saved(op.dropMask) : c.none],
      params: [rows * H * Tq, T, D, H, dh, f(scale), g.v.col, g.v.ld, group, Tq, 0, 0],
      x: gridGroups(rows * H * Tq),
    });
    // dQ_h = dS K_g; dK_g = sum over its query heads of dS^T Q_h
    if (dq) specs.push(bgemmSpec(Tq, dh, T, rows * H, H, 1, view(probs, 0, T, 1, H * block, block), rowsOf(input(g.k), g.k, group), rowsOf(dq, g.q)));
    if (dk) specs.push(bgemmSpec(T, dh, Tq, rows * G, G, 1, transposed(probs), rowsOf(input(g.q), g.q), rowsOf(dk, g.k), false, group));
    return specs;
  },
};

/** LayerNorm / RMSNorm (ops/norm.ts): one invocation per row forward and for dx; per column for dweight, dbias. */
const layerNorm: GpuOp<OpOf<"layer_norm">> = {
  forward(c, op, rows) {
    const m = rows * op.tokens;
    return [
      {
        kernel: "layer_norm_forward",
        buffers: [c.value(op.outputs[0]!), op.mean >= 0 ? c.saved(op.mean) : c.none, c.saved(op.rstd), c.value(op.inputs[0]!), c.state],
        params: [
          m, op.size, f(op.eps), op.center ? 1 : 0,
          op.weight >= 0 ? c.offset(op.weight) : 0, op.bias >= 0 ? c.offset(op.bias) : 0, op.weight >= 0 ? 1 : 0, op.bias >= 0 ? 1 : 0,
        ],
        x: gridGroups(m),
      },
    ];
  },
  backward(c, op, rows, dy, dx) {
    const m = rows * op.tokens;
    const mean = op.mean >= 0 ? c.saved(op.mean) : c.none;
    const specs: DispatchSpec[] = [];
    if (dx[0]) {
      specs.push({
        kernel: "layer_norm_backward",
        buffers: [dx[0], dy[0]!, c.value(op.inputs[0]!), c.state, mean, c.saved(op.rstd)],
        params: [m, op.size, op.center ? 1 : 0, op.weight >= 0 ? c.offset(op.weight) : 0, op.weight >= 0 ? 1 : 0, 0, 0, 0],
        x: gridGroups(m),
      });
    }
    const dw = op.weight >= 0 && c.trainable(op.weight);
    const db = op.bias >= 0 && c.trainable(op.bias);
    if (dw || db) {
      specs.push({
        kernel: "layer_norm_param_grad",
        buffers: [c.grads, dy[0]!, c.value(op.inputs[0]!), mean, c.saved(op.rstd)],
        params: [op.size, m, op.center ? 1 : 0, dw ? c.offset(op.weight) : 0, db ? c.offset(op.bias) : 0, dw ? 1 : 0, db ? 1 : 0, 0],
        x: gridGroups(op.size),
      });
    }
    return specs;
  },
};

/**
 * BatchNorm (ops/norm.ts): statistics one invocation per channel into the saved [4, C] buffer,
 * the running update in one invocation, the normalisation one per element; backward: the
 * per-channel sums (and dweight, dbias), then dx per element.
 */
const batchNorm: GpuOp<OpOf<"batch_norm">> = {
  forward(c, op, rows, training) {
    const C = op.channels;
    const n = rows * C * op.positions;
    const y = c.value(op.outputs[0]!);
    const x = c.value(op.inputs[0]!);
    const flags = (op.weight >= 0 ? 1 : 0) | (op.bias >= 0 ? 2 : 0);
    const wOff = op.weight >= 0 ? c.offset(op.weight) : 0;
    const bOff = op.bias >= 0 ? c.offset(op.bias) : 0;
    const tracked = op.runningMean >= 0;
    const normalize = (stats: GPUBuffer, meanOff: number, varOff: number): DispatchSpec => ({
      kernel: "batch_norm_forward",
      buffers: [y, x, stats, c.state],
      params: [n, C, op.positions, meanOff, varOff, wOff, bOff, flags, f(op.eps), 0, 0, 0],
      x: gridGroups(n),
    });
    if (!training && tracked) return [normalize(c.state, c.offset(op.runningMean), c.offset(op.runningVar))];
    const stats = c.saved(op.stats);
    const specs: DispatchSpec[] = [{ kernel: "batch_norm_stats", buffers: [stats, x], params: [C, rows, op.positions, 0], x: gridGroups(C) }];
    if (training && tracked) {
      const count = rows * op.positions;
      specs.push({
        kernel: "batch_norm_update",
        buffers: [c.state, stats],
        params: [C, c.offset(op.runningMean), c.offset(op.runningVar), c.offset(op.numBatchesTracked), f(op.momentum ?? -1), f(count / (count - 1)), 0, 0],
        x: 1,
      });
    }
    specs.push(normalize(stats, 0, C));
    return specs;
  },
  backward(c, op, rows, dy, dx) {
    const C = op.channels;
    const n = rows * C * op.positions;
    const stats = c.saved(op.stats);
    const dw = op.weight >= 0 && c.trainable(op.weight);
    const db = op.bias >= 0 && c.trainable(op.bias);
    const specs: DispatchSpec[] = [
      {
        kernel: "batch_norm_grad_sums",
        buffers: [stats, c.grads, dy[0]!, c.value(op.inputs[0]!)],
        params: [C, rows, op.positions, dw ? c.offset(op.weight) : 0, db ? c.offset(op.bias) : 0, (dw ? 1 : 0) | (db ? 2 : 0), f(op.eps), 0],
        x: gridGroups(C),
      },
    ];
    if (dx[0]) {
      specs.push({
        kernel: "batch_norm_backward",
        buffers: [dx[0], dy[0]!, c.value(op.inputs[0]!), stats, c.state],
        params: [n, C, op.positions, op.weight >= 0 ? c.offset(op.weight) : 0, op.weight >= 0 ? 1 : 0, f(rows * op.positions), f(op.eps), 0],
        x: gridGroups(n),
      });
    }
    return specs;
  },
};

/** y[m] = W[ids[m]]; dW[ids[m]] += dy[m] in token order, one invocation per column (ops/tokens.ts). */
const embedding: GpuOp<OpOf<"embedding">> = {
  forward(c, op, rows) {
    const n = rows * op.tokens * op.dim;
    return [
      {
        kernel: "embedding_forward",
        buffers: [c.value(op.outputs[0]!), c.state, c.value(op.inputs[0]!)],
        params: [n, op.dim, c.offset(op.weight), 0],
        x: gridGroups(n),
      },
    ];
  },
  backward(c, op, rows, dy) {
    if (!c.trainable(op.weight)) return [];
    return [
      {
        kernel: "embedding_backward",
        buffers: [c.grads, dy[0]!, c.value(op.inputs[0]!)],
        params: [op.dim, rows * op.tokens, c.offset(op.weight), { i: op.paddingIdx }],
        x: gridGroups(op.dim),
      },
    ];
  },
};

/** y = x + W[:T]; dW[:T] += sum_rows dy (bias_grad); dx = dy. */
const addPosition: GpuOp<OpOf<"add_position">> = {
  forward(c, op, rows) {
    const n = rows * op.n;
    return [{ kernel: "add_broadcast", buffers: [c.value(op.outputs[0]!), c.value(op.inputs[0]!), c.state], params: [n, op.n, c.offset(op.weight), 0], x: gridGroups(n) }];
  },
  backward(c, op, rows, dy, dx) {
    const specs: DispatchSpec[] = [];
    if (c.trainable(op.weight)) specs.push({ kernel: "bias_grad", buffers: [c.grads, dy[0]!], params: [op.n, rows, c.offset(op.weight), 0], x: gridGroups(op.n) });
    if (dx[0]) specs.push({ kernel: "copy", buffers: [dx[0], dy[0]!], params: [rows * op.n, 0, 0, 0], x: gridGroups(rows * op.n) });
    return specs;
  },
};

/** The convolution's parameter words (wgsl.ts CONV_PARAMS): n invocations, its geometry, offsets. */
function convParams(op: OpOf<"conv">, n: number, rows: number, wOff: number, bOff: number) {
  return [n, op.C, op.H, op.W, op.KH, op.KW, op.SH, op.SW, op.PH, op.PW, op.DH, op.DW, op.OH, op.OW, op.O, op.groups, wOff, bOff, op.bias >= 0 ? 1 : 0, rows];
}

/**
 * y = conv(x) + bias (one invocation per output); dW and db (one per weight or channel, each a
 * serial chain over the batch as the WASM GEMMs sum it); dx (one per input element).
 */
const conv: GpuOp<OpOf<"conv">> = {
  forward(c, op, rows) {
    const n = rows * op.O * op.OH * op.OW;
    const bOff = op.bias >= 0 ? c.offset(op.bias) : 0;
    return [{ kernel: "conv_forward", buffers: [c.value(op.outputs[0]!), c.value(op.inputs[0]!), c.state], params: convParams(op, n, rows, c.offset(op.weight), bOff), x: gridGroups(n) }];
  },
  backward(c, op, rows, dy, dx) {
    const specs: DispatchSpec[] = [];
    const wOff = c.offset(op.weight);
    const bOff = op.bias >= 0 ? c.offset(op.bias) : 0;
    if (c.trainable(op.weight)) {
      const n = op.O * (op.C / op.groups) * op.KH * op.KW;
      specs.push({ kernel: "conv_backward_weight", buffers: [c.grads, dy[0]!, c.value(op.inputs[0]!)], params: convParams(op, n, rows, wOff, bOff), x: gridGroups(n) });
    }
    if (op.bias >= 0 && c.trainable(op.bias)) {
      specs.push({ kernel: "conv_bias_grad", buffers: [c.grads, dy[0]!], params: convParams(op, op.O, rows, wOff, bOff), x: gridGroups(op.O) });
    }
    if (dx[0]) {
      const n = rows * op.C * op.H * op.W;
      specs.push({ kernel: "conv_backward_input", buffers: [dx[0], dy[0]!, c.state], params: convParams(op, n, rows, wOff, bOff), x: gridGroups(n) });
    }
    return specs;
  },
};

/** Pooling over tokens with the mask (inputs[1]) when the data has one. */
const tokenPool: GpuOp<OpOf<"token_pool">> = {
  forward(c, op, rows) {
    const n = rows * op.dim;
    const masked = op.inputs.length > 1;
    return [
      {
        kernel: "token_pool_forward",
        // an unused mask binding takes x (read-only, never read): c.none is already argmax's (read_write) and may not alias
        buffers: [c.value(op.outputs[0]!), op.argmax >= 0 ? c.saved(op.argmax) : c.none, c.value(op.inputs[0]!), c.value(op.inputs[masked ? 1 : 0]!)],
        params: [n, op.tokens, op.dim, op.mode, masked ? 1 : 0, 0, 0, 0],
        x: gridGroups(n),
      },
    ];
  },
  backward(c, op, rows, dy, dx) {
    if (!dx[0]) return [];
    const n = rows * op.tokens * op.dim;
    const masked = op.inputs.length > 1;
    return [
      {
        kernel: "token_pool_backward",
        buffers: [dx[0], dy[0]!, op.argmax >= 0 ? c.saved(op.argmax) : c.none, masked ? c.value(op.inputs[1]!) : c.none],
        params: [n, op.tokens, op.dim, op.mode, masked ? 1 : 0, 0, 0, 0],
        x: gridGroups(n),
      },
    ];
  },
};

/** The pooling parameter words (wgsl.ts POOL_PARAMS). */
function poolParams(op: OpOf<"max_pool"> | OpOf<"avg_pool">, n: number, planes: number) {
  const avg = op.kind === "avg_pool" ? op : null;
  return [n, planes, op.H, op.W, op.KH, op.KW, op.SH, op.SW, op.PH, op.PW, op.DH, op.DW, op.OH, op.OW, avg?.countIncludePad ? 1 : 0, avg?.divisor ?? 0];
}

/** Max pooling: the max and its argmax per output; dx gathers the gradients of the outputs it won. */
const maxPool: GpuOp<OpOf<"max_pool">> = {
  forward(c, op, rows) {
    const n = rows * op.C * op.OH * op.OW;
    return [{ kernel: "max_pool_forward", buffers: [c.value(op.outputs[0]!), c.saved(op.indices), c.value(op.inputs[0]!)], params: poolParams(op, n, rows * op.C), x: gridGroups(n) }];
  },
  backward(c, op, rows, dy, dx) {
    if (!dx[0]) return [];
    const n = rows * op.C * op.H * op.W;
    return [{ kernel: "max_pool_backward", buffers: [dx[0], dy[0]!, c.saved(op.indices)], params: poolParams(op, n, rows * op.C), x: gridGroups(n) }];
  },
};

/** Average (or adaptive average) pooling; dx gathers dy / divisor of every window that holds it. */
const avgPool: GpuOp<OpOf<"avg_pool">> = {
  forward(c, op, rows) {
    const n = rows * op.C * op.OH * op.OW;
    return [{ kernel: "avg_pool_forward", constants: { ADAPTIVE: op.adaptive }, buffers: [c.value(op.outputs[0]!), c.value(op.inputs[0]!)], params: poolParams(op, n, rows * op.C), x: gridGroups(n) }];
  },
  backward(_c, op, rows, dy, dx) {
    if (!dx[0]) return [];
    const n = rows * op.C * op.H * op.W;
    return [{ kernel: "avg_pool_backward", constants: { ADAPTIVE: op.adaptive }, buffers: [dx[0], dy[0]!], params: poolParams(op, n, rows * op.C), x: gridGroups(n) }];
  },
};

/** Every op kind on WebGPU (null: no WGSL yet). */
export const GPU_OPS: { readonly [K in OpKind]: GpuOp<OpOf<K>> | null } = {
  linear,
  activation,
  dropout,
  add,
  attention,
  layer_norm: layerNorm,
  batch_norm: batchNorm,
  embedding,
  add_position: addPosition,
  token_pool: tokenPool,
  conv,
  max_pool: maxPool,
  avg_pool: avgPool,
  rope,
  mul,
};

/** The op kinds of a model that have no WebGPU implementation yet. */
export function unsupportedOnGpu(kinds: Iterable<OpKind>): OpKind[] {
  return [...new Set(kinds)].filter((k) => GPU_OPS[k] === null);
}

/**
 * The dispatches of one backward step of a compiled model over `rows`: its op's WGSL backward,
 * then the sums of the gradient slots it accumulates into (CompiledModel.backward). Shared by
 * the training backend and the explanation model.
 *
 * @example
 * ```ts
 * const specs = compiled.backward.flatMap((step) => backwardStepSpecs(context, compiled.ops[step.op]!, step, rows, gradSlots));
 * ```
 */
export function backwardStepSpecs(context: GpuOpContext, op: Op, step: BackwardStep, rows: number, gradSlots: readonly GPUBuffer[]): DispatchSpec[] {
  const gpu = GPU_OPS[op.kind] as GpuOp<Op>;
  const specs = gpu.backward(context, op, rows, step.dy.map((slot) => gradSlots[slot]!), step.dx.map((slot) => (slot < 0 ? null : gradSlots[slot]!)));
  for (const a of step.accumulate) {
    const n = rows * a.size;
    specs.push({ kernel: "accumulate", buffers: [gradSlots[a.into]!, gradSlots[a.from]!], params: [n, 0, 0, 0], x: gridGroups(n) });
  }
  return specs;
}
