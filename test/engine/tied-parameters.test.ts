/**
 * Tied parameters: one state tensor read by several ops (GPT-2's lm_head is a linear op whose
 * weight is the embedding's, wte) gets the SUM of their gradients, on every backend. The
 * backward passes accumulate (+=) into the parameter gradients, which a step zeroes once
 * (Model.zeroGrad; the WebGPU step clears its gradient buffer), so no op may overwrite one.
 *
 * The graph, built by hand from ops (no layer ties parameters yet), ties as much as it can:
 *
 *   ids -> embedding(W, padding_idx 2) -> add_position(W: its first T rows) -> layer_norm(g, b)
 *       -> layer_norm(g, b) -> linear(W, no bias) = logits [T, V]
 *
 * W [V, D] is read by three ops (the embedding's scatter-add, add_position's bias_grad and the
 * linear's matmul_tn), g and b by two layer norms. L = sum G * logits; every gradient of W, g
 * and b is checked against central differences of the same graph written in float64 (the
 * padding row's lookup held constant, as padding_idx blocks its gradient there), on each WASM
 * build, the reference twins and WebGPU (WGSL: gemm's INIT 1, embedding_backward, bias_grad and
 * layer_norm_param_grad read the gradient they add to), with the gradients starting at zero and
 * at an earlier contribution (which the linear, first in the backward, would lose by overwriting).
 */
import { describe, expect, it } from "vitest";
import { instantiateKernels, type Kernels, type Ptr } from "../../src/engine/kernels.js";
import { OPS } from "../../src/engine/ops/index.js";
import type { KernelOpContext, Op } from "../../src/engine/ops/types.js";
import { createReferenceKernels } from "../../src/engine/reference.js";
import { BufferSet, MAP_READ, Program, USAGE } from "../../src/engine/webgpu/context.js";
import { GPU_OPS, type GpuOp, type GpuOpContext } from "../../src/engine/webgpu/ops.js";
import { STEP_BYTES } from "../../src/engine/webgpu/wgsl.js";
import { Rng, loadVariant, moduleOf } from "../kernels/harness.js";
import { SKIP_REASON, device } from "../webgpu/device.js";

const V = 7, D = 6, T = 5, ROWS = 2, PAD = 2, EPS = 1e-5;

// values: 0 ids [T], 1..4 activations [T, D], 5 logits [T, V]; state: 0 W [V, D], 1 g [D], 2 b [D]
const VALUE_SIZES = [T, T * D, T * D, T * D, T * D, T * V];
const SIZES = [V * D, D, D];
// saved: the two layer norms' mean and rstd [T] per row
const SAVED = 4;
const OPS_OF_GRAPH: Op[] = [
  { kind: "embedding", inputs: [0], outputs: [1], weight: 0, tokens: T, dim: D, paddingIdx: PAD },
  { kind: "add_position", inputs: [1], outputs: [2], weight: 0, n: T * D },
  { kind: "layer_norm", inputs: [2], outputs: [3], weight: 1, bias: 2, size: D, tokens: T, eps: EPS, center: true, mean: 0, rstd: 1 },
  { kind: "layer_norm", inputs: [3], outputs: [4], weight: 1, bias: 2, size: D, tokens: T, eps: EPS, center: true, mean: 2, rstd: 3 },
  { kind: "linear", inputs: [4], outputs: [5], weight: 0, bias: -1, in: D, out: V, tokens: T },
];

const rng = new Rng(2024);
const ids = Float32Array.from({ length: ROWS * T }, (_, i) => (i % 3 === 1 ? PAD : rng.int(V))); // repeats and padding
const W0 = rng.f32(V * D, -1, 1), g0 = rng.f32(D, 0.5, 1.5), b0 = rng.f32(D, -0.5, 0.5);
const G = rng.f32(ROWS * T * V, -1, 1);

/**
 * The graph in float64 from the PyTorch docs (nn.Embedding, x + weight[:T], nn.LayerNorm twice,
 * nn.Linear), with W's three readers given separately: embedding, position, lm_head.
 */
function loss64(We: ArrayLike<number>, Wp: ArrayLike<number>, Wh: ArrayLike<number>, g: ArrayLike<number>, b: ArrayLike<number>): number {
  let L = 0;
  for (let r = 0; r < ROWS; r++) {
    for (let t = 0; t < T; t++) {
      const id = ids[r * T + t]!;
      // padding_idx: the lookup of that row does not depend on W (no gradient flows there)
      let h = Array.from({ length: D }, (_, d) => (id === PAD ? W0 : We)[id * D + d]! + Wp[t * D + d]!);
      for (let k = 0; k < 2; k++) {
        const mu = h.reduce((s, v) => s + v, 0) / D;
        const rs = 1 / Math.sqrt(h.reduce((s, v) => s + (v - mu) ** 2, 0) / D + EPS);
        h = h.map((v, d) => (v - mu) * rs * g[d]! + b[d]!);
      }
      for (let v = 0; v < V; v++) {
        let y = 0;
        for (let d = 0; d < D; d++) y += h[d]! * Wh[v * D + d]!;
        L += G[(r * T + t) * V + v]! * y;
      }
    }
  }
  return L;
}

/** Central differences (h = 1e-5, float64) of fn over each coordinate of x. */
function central(x: ArrayLike<number>, fn: (v: Float64Array) => number): Float64Array {
  const v = Float64Array.from(x);
  const out = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const x0 = v[i]!;
    v[i] = x0 + 1e-5;
    const up = fn(v);
    v[i] = x0 - 1e-5;
    const down = fn(v);
    v[i] = x0;
    out[i] = (up - down) / 2e-5;
  }
  return out;
}

/** dL/dW (W tied: all three readers move together), dL/dg, dL/db. */
function numericGrads(): Float64Array[] {
  return [
    central(W0, (W) => loss64(W, W, W, g0, b0)),
    central(g0, (g) => loss64(W0, W0, W0, g, b0)),
    central(b0, (b) => loss64(W0, W0, W0, g0, b)),
  ];
}
const NUMERIC = numericGrads();
const NAMES = ["W (embedding + add_position + linear)", "g (two layer norms)", "b (two layer norms)"];

/**
 * What the gradients hold before the backward: zeros (a step zeroes them once), or an earlier
 * contribution (as a second backward into the same step would add to): the latter fails any op
 * that overwrites its parameter's gradient, even the first one to write it.
 */
const PRIORS = { zeros: SIZES.map((n) => new Float32Array(n)), earlier: SIZES.map((n) => rng.f32(n, -0.25, 0.25)) };

/** |(analytic - prior) - numeric| <= 1e-4 |numeric| + 1e-5 max |numeric| per tensor (f32 forward and backward). */
function offenders(grads: Float32Array[], prior: Float32Array[]): string[] {
  const bad: string[] = [];
  NUMERIC.forEach((n, t) => {
    const scale = n.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    for (let i = 0; i < n.length; i++) {
      const d = Math.abs(grads[t]![i]! - prior[t]![i]! - n[i]!);
      if (!(d <= 1e-4 * Math.abs(n[i]!) + 1e-5 * scale) && bad.length < 6) bad.push(`${NAMES[t]}[${i}]: analytic ${grads[t]![i]} numeric ${n[i]}`);
    }
  });
  return bad;
}

/** Forward then backward of the graph on a kernel set, the gradients starting at `prior`; returns the gradients of W, g, b. */
function runKernels(k: Kernels, memory: WebAssembly.Memory, base: number, prior: Float32Array[]): Float32Array[] {
  let top = base;
  const alloc = (n: number, data?: ArrayLike<number>): Ptr => {
    const p = top;
    top = Math.ceil((top + 4 * n + 16) / 16) * 16;
    if (top > memory.buffer.byteLength) memory.grow(Math.ceil((top - memory.buffer.byteLength) / 65536));
    if (data) new Float32Array(memory.buffer, p, n).set(data);
    return p;
  };
  const values = VALUE_SIZES.map((n, i) => alloc(ROWS * n, i === 0 ? ids : undefined));
  const state = [alloc(V * D, W0), alloc(D, g0), alloc(D, b0)];
  const grads = SIZES.map((n, i) => alloc(n, prior[i]));
  const saved = Array.from({ length: SAVED }, () => alloc(ROWS * T));
  const workspace = alloc(Math.max(...OPS_OF_GRAPH.map((op) => (OPS[op.kind].workspace as ((o: Op, r: number) => number) | undefined)?.(op, ROWS) ?? 1)));
  const c: KernelOpContext = {
    k,
    value: (id) => values[id]!,
    state: (i) => (i < 0 ? 0 : state[i]!),
    stored: (i) => (i < 0 ? 0 : state[i]!),
    dtype: () => 0,
    grad: (i) => (i < 0 ? 0 : grads[i]!),
    saved: (id) => (id < 0 ? 0 : saved[id]!),
    workspace,
    training: true,
    seed: 0,
  };
  const def = (op: Op) => OPS[op.kind].kernel as unknown as { forward(c: KernelOpContext, op: Op, rows: number): void; backward(c: KernelOpContext, op: Op, rows: number, dy: Ptr[], dx: Ptr[]): void };
  for (const op of OPS_OF_GRAPH) def(op).forward(c, op, ROWS);
  // the ops in reverse, each writing its input's gradient and adding to its parameters'
  const dvalues = VALUE_SIZES.map((n, i) => alloc(ROWS * n, i === 5 ? G : undefined));
  for (const op of [...OPS_OF_GRAPH].reverse()) def(op).backward(c, op, ROWS, [dvalues[op.outputs[0]!]!], op.kind === "embedding" ? [0] : [dvalues[op.inputs[0]!]!]);
  return grads.map((p, i) => new Float32Array(memory.buffer, p, SIZES[i]!).slice());
}

const VARIANTS = [loadVariant("simd"), loadVariant("relaxed-simd")];

describe("tied parameters: one parameter read by several ops gets the sum of their gradients", () => {
  for (const variant of VARIANTS) {
    it.skipIf(!variant.valid)(`${variant.name}.wasm${variant.skipReason ? ` ${variant.skipReason}` : ""}`, async () => {
      for (const prior of Object.values(PRIORS)) {
        const memory = new WebAssembly.Memory({ initial: 4 });
        const k = await instantiateKernels(moduleOf(variant), memory);
        expect(offenders(runKernels(k, memory, Math.ceil(k.heap_base() / 16) * 16, prior), prior)).toEqual([]);
      }
    });
  }

  it("the reference twins", () => {
    for (const prior of Object.values(PRIORS)) {
      const memory = new WebAssembly.Memory({ initial: 4 });
      expect(offenders(runKernels(createReferenceKernels(memory, 1024), memory, 1024, prior), prior)).toEqual([]);
    }
  });

  it("each reader's share of W's gradient is far above the tolerance (a dropped or overwritten share fails the checks)", () => {
    const scale = NUMERIC[0]!.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const shares = [
      central(W0, (W) => loss64(W, W0, W0, g0, b0)),
      central(W0, (W) => loss64(W0, W, W0, g0, b0)),
      central(W0, (W) => loss64(W0, W0, W, g0, b0)),
    ];
    for (const share of shares) expect(share.reduce((m, v) => Math.max(m, Math.abs(v)), 0)).toBeGreaterThan(1e3 * 1e-5 * scale);
    // and they sum to the tied gradient
    const sum = shares[0]!.map((v, i) => v + shares[1]![i]! + shares[2]![i]!);
    for (let i = 0; i < sum.length; i++) expect(Math.abs(sum[i]! - NUMERIC[0]![i]!)).toBeLessThan(1e-8 * scale);
  });

  it.skipIf(!device)(`WebGPU (GPU_OPS) (${SKIP_REASON})`, async () => {
    for (const prior of Object.values(PRIORS)) {
      const d = device!;
      const set = new BufferSet(d);
      // the state and gradient blocks hold W, g, b at offsets that are not 0
      const offsets = [3, 3 + V * D + 1, 3 + V * D + 1 + D + 2];
      const total = offsets[2]! + D + 1;
      const state = new Float32Array(total), start = new Float32Array(total);
      state.set(W0, offsets[0]), state.set(g0, offsets[1]), state.set(b0, offsets[2]);
      offsets.forEach((o, i) => start.set(prior[i]!, o));
      const stateBuf = set.storage("state", total, state);
      const grads = set.storage("grads", total, start);
      const values = VALUE_SIZES.map((n, i) => set.storage(`value ${i}`, ROWS * n, i === 0 ? ids : undefined));
      const dvalues = VALUE_SIZES.map((n, i) => set.storage(`gradient ${i}`, ROWS * n, i === 5 ? G : undefined));
      const saved = Array.from({ length: SAVED }, (_, i) => set.storage(`saved ${i}`, ROWS * T));
      const step = set.raw("step", STEP_BYTES, USAGE.UNIFORM | USAGE.COPY_DST);
      const c: GpuOpContext = {
        value: (id) => values[id]!,
        state: stateBuf,
        grads,
        offset: (i) => offsets[i]!,
        trainable: () => true,
        saved: (id) => saved[id]!,
        step,
        none: set.storage("none", 4),
        upload: (buffer, data) => d.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength),
      };
      const gpuOp = (op: Op) => GPU_OPS[op.kind] as GpuOp<Op>;
      const specs = [
        ...OPS_OF_GRAPH.flatMap((op) => gpuOp(op).forward(c, op, ROWS, true)),
        ...[...OPS_OF_GRAPH].reverse().flatMap((op) => gpuOp(op).backward(c, op, ROWS, [dvalues[op.outputs[0]!]!], op.kind === "embedding" ? [null] : [dvalues[op.inputs[0]!]!])),
      ];
      const program = new Program(d, specs);
      const readback = set.raw("readback", total * 4, USAGE.MAP_READ | USAGE.COPY_DST);
      const enc = d.createCommandEncoder();
      const pass = enc.beginComputePass();
      program.encode(pass);
      pass.end();
      enc.copyBufferToBuffer(grads, 0, readback, 0, total * 4);
      d.queue.submit([enc.finish()]);
      await readback.mapAsync(MAP_READ);
      const all = new Float32Array(readback.getMappedRange().slice(0));
      readback.unmap();
      program.destroy();
      set.destroy();
      expect(offenders(offsets.map((o, i) => all.subarray(o, o + SIZES[i]!)), prior)).toEqual([]);
      // nothing outside the three gradients was written
      const inside = new Set(offsets.flatMap((o, i) => Array.from({ length: SIZES[i]! }, (_, k) => o + k)));
      expect(Array.from(all).filter((v, i) => !inside.has(i) && v !== 0)).toEqual([]);
    }
  });
});
