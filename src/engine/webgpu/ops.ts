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
import type { OpKind, OpOf } from "../ops/types.js";
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
    return [{ kernel: "add", buffers: [c.value(op.outputs[0]!), c.value(op.inputs[0]!), c.value(op.inputs[1]!)], params: [n, 0, 0, 0], x: gridGroups(n) }];
  },
  backward(_c, op, rows, dy, dx) {
    const n = rows * op.n;
    return dx.filter((d): d is GPUBuffer => d !== null).map((d) => ({ kernel: "copy" as const, buffers: [d, dy[0]!], params: [n, 0, 0, 0], x: gridGroups(n) }));
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
  conv,
  max_pool: maxPool,
  avg_pool: avgPool,
};

/** The op kinds of a model that have no WebGPU implementation yet. */
export function unsupportedOnGpu(kinds: Iterable<OpKind>): OpKind[] {
  return [...new Set(kinds)].filter((k) => GPU_OPS[k] === null);
}
