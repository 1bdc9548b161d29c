/// <reference types="@webgpu/types" />
/**
 * Explanations on WebGPU: a model compiled for input gradients (compileModel's `inputGradient`)
 * run by the same WGSL op kernels as WebGPU training (ops.ts GPU_OPS forward and backward), as
 * the ExplainModel that explain/ drives. The backward pass is seeded with a one-hot dL/dlogits and
 * ends with dL/d(input) in the compiled model's input-gradient slot, read back per chunk.
 *
 * Token models: the token embedding's output is what integrated gradients move along the path,
 * so the ops that compute it (the embedding, and its LoRA update) are skipped and its buffer is
 * written instead; that needs every value those ops write to feed only the embedding's output
 * (true of the layer lists and Hub models, whose embedding comes first), else this refuses and
 * the caller explains on WASM.
 */
import type { ExplainModel, RowContext } from "../explain/index.js";
import type { CompiledModel } from "../graph/types.js";
import type { Op } from "../ops/types.js";
import { BufferSet, MAP_READ, Program, USAGE, checked, type DispatchSpec } from "./context.js";
import { backwardStepSpecs, GPU_OPS, unsupportedOnGpu, type GpuOp, type GpuOpContext } from "./ops.js";

/** A WebGPU explanation network with the buffers it holds. */
export interface WebGpuExplainModel extends ExplainModel {
  /** Destroys its buffers and programs. */
  close(): void;
}

/**
 * Builds the WebGPU network of an input-gradient model over the given weights (state_dict names).
 *
 * @example
 * ```ts
 * const net = await createWebGpuExplainModel(device, compileForExplanation(prepared), weights, 64);
 * const explanations = await explain(net, spec, rows, prepared.train);
 * net.close();
 * ```
 */
export async function createWebGpuExplainModel(
  device: GPUDevice, compiled: CompiledModel, weights: ReadonlyMap<string, Float32Array>, maxRows: number,
): Promise<WebGpuExplainModel> {
  const target = compiled.inputGrad;
  if (!target) throw new Error("createWebGpuExplainModel: compile the model with inputGradient");
  const missing = unsupportedOnGpu(compiled.ops.map((op) => op.kind));
  if (missing.length > 0) throw new Error(`no WebGPU kernels yet for ${missing.join(", ")}`);
  const tokens = compiled.input.ids;
  if (tokens) checkSkippable(compiled, target.value, target.producer);
  const buffers = new BufferSet(device);
  const programs = new Map<string, Program>();
  try {
    return await checked(device, "explanation setup", () => {
      const columns = compiled.values[compiled.input.value]!.size;
      const pointSize = compiled.values[target.value]!.size;
      const O = compiled.values[compiled.output.value]!.size;
      const initial = new Float32Array(compiled.stateCount);
      for (const t of compiled.state) initial.set(weights.get(t.name)!, t.offset);
      const state = buffers.storage("state", compiled.stateCount, initial);
      const grads = buffers.storage("grads", Math.max(1, compiled.trainableCount));
      const x = buffers.storage("x", maxRows * columns);
      const mask = compiled.mask !== null ? buffers.storage("attention_mask", maxRows * columns) : null;
      const types = compiled.tokenTypes !== null ? buffers.storage("token_type_ids", maxRows * columns) : null;
      const values = compiled.values.map((v, i) => (v.input ? null : buffers.storage(`value ${i}`, maxRows * v.size)));
      const saved = compiled.saved.map((sv, i) => buffers.storage(`saved ${i}`, maxRows * sv.perRow + sv.fixed));
      const gradSlots = compiled.gradSlots.map((size, i) => buffers.storage(`gradient slot ${i}`, maxRows * size));
      const none = buffers.raw("unused binding", 16, USAGE.STORAGE);
      const step = buffers.raw("step scalars", 256, USAGE.UNIFORM | USAGE.COPY_DST);
      const context: GpuOpContext = {
        value: (id) => values[id] ?? (id === compiled.input.value ? x : id === compiled.tokenTypes ? types! : mask!),
        state,
        grads,
        offset: (i) => compiled.state[i]!.offset,
        trainable: () => false,
        saved: (id) => saved[id]!,
        step,
        none,
        upload: (buffer, data) => device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength),
      };
      const gpuOp = (op: Op) => GPU_OPS[op.kind] as GpuOp<Op>;
      // programs are recorded once per (pass, rows): their dispatch parameters hold the row count
      const program = (key: string, build: () => DispatchSpec[]) => {
        let p = programs.get(key);
        if (!p) programs.set(key, (p = new Program(device, build())));
        return p;
      };
      /** The forward pass over ops [from, to). */
      const forward = (rows: number, from: number, to: number) =>
        program(`forward ${rows} ${from} ${to}`, () => compiled.ops.slice(from, to).flatMap((op) => gpuOp(op).forward(context, op, rows, false)));
      const backward = (rows: number) =>
        program(`backward ${rows}`, () =>
          compiled.backward.flatMap((s) => backwardStepSpecs(context, compiled.ops[s.op]!, s, rows, gradSlots)),
        );
      const write = (buffer: GPUBuffer, data: Float32Array) => device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
      const loadRows = (ids: Float32Array, context: RowContext, start: number, rows: number) => {
        const range = (a: Float32Array) => a.subarray(start * columns, (start + rows) * columns);
        write(x, range(ids));
        if (mask) write(mask, context.mask ? range(context.mask) : new Float32Array(rows * columns).fill(1));
        if (types) write(types, context.types ? range(context.types) : new Float32Array(rows * columns));
      };
      /** Runs passes and copies `reads` ([buffer, elements]) back, in one command buffer. */
      const run = async (passes: Program[], reads: [GPUBuffer, number][]): Promise<Float32Array[]> => {
        const enc = device.createCommandEncoder();
        for (const p of passes) {
          const pass = enc.beginComputePass();
          p.encode(pass);
          pass.end();
        }
        const bytes = reads.reduce((s, [, n]) => s + n * 4, 0);
        const staging = device.createBuffer({ label: "explain readback", size: Math.max(16, Math.ceil(bytes / 16) * 16), usage: USAGE.MAP_READ | USAGE.COPY_DST });
        let offset = 0;
        for (const [buffer, n] of reads) {
          enc.copyBufferToBuffer(buffer, 0, staging, offset, n * 4);
          offset += n * 4;
        }
        device.queue.submit([enc.finish()]);
        await staging.mapAsync(MAP_READ, 0, Math.max(4, bytes));
        const all = new Float32Array(staging.getMappedRange(0, Math.max(4, bytes)).slice(0));
        staging.unmap();
        staging.destroy();
        let at = 0;
        return reads.map(([, n]) => all.subarray(at, (at += n)));
      };
      const chunks = async (n: number, body: (start: number, rows: number) => Promise<void>) => {
        for (let start = 0; start < n; start += maxRows) await body(start, Math.min(maxRows, n - start));
      };
      const ops = compiled.ops.length;
      const outputBuffer = values[compiled.output.value]!;
      const targetBuffer = values[target.value] ?? x;

      const net: WebGpuExplainModel = {
        columns,
        pointSize,
        outputsPerRow: O,
        tokens,
        async outputs(rowsX, n, ctx) {
          const out = new Float32Array(n * O);
          await chunks(n, async (start, rows) => {
            loadRows(rowsX, ctx, start, rows);
            const [o] = await run([forward(rows, 0, ops)], [[outputBuffer, rows * O]]);
            out.set(o!, start * O);
          });
          return out;
        },
        async points(rowsX, n, ctx) {
          if (!tokens) return rowsX.slice(0, n * columns);
          const out = new Float32Array(n * pointSize);
          await chunks(n, async (start, rows) => {
            loadRows(rowsX, ctx, start, rows);
            const [p] = await run([forward(rows, 0, target.producer + 1)], [[targetBuffer, rows * pointSize]]);
            out.set(p!, start * pointSize);
          });
          return out;
        },
        async at(points, n, ids, ctx, targets) {
          const outputs = new Float32Array(n * O);
          const grads = targets ? new Float32Array(n * pointSize) : null;
          await chunks(n, async (start, rows) => {
            if (ids) loadRows(ids, ctx, start, rows);
            else loadRows(points, ctx, start, rows);
            // the point: x itself, or the embedding output written where its ops would write it
            if (tokens) write(targetBuffer, points.subarray(start * pointSize, (start + rows) * pointSize));
            const passes = [forward(rows, tokens ? target.producer + 1 : 0, ops)];
            const reads: [GPUBuffer, number][] = [[outputBuffer, rows * O]];
            if (targets) {
              const seed = new Float32Array(rows * O);
              for (let r = 0; r < rows; r++) seed[r * O + targets[start + r]!] = 1;
              write(gradSlots[compiled.outputGradSlot]!, seed);
              passes.push(backward(rows));
              if (target.slot >= 0) reads.push([gradSlots[target.slot]!, rows * pointSize]);
            }
            const [o, g] = await run(passes, reads);
            outputs.set(o!, start * O);
            if (grads && g) grads.set(g, start * pointSize);
          });
          return { outputs, grads };
        },
        close() {
          for (const p of programs.values()) p.destroy();
          buffers.destroy();
        },
      };
      return net;
    });
  } catch (e) {
    for (const p of programs.values()) p.destroy();
    buffers.destroy();
    throw e;
  }
}

/** The ops up to the embedding output's producer must feed only it (they are skipped when it is written). */
function checkSkippable(compiled: CompiledModel, value: number, producer: number): void {
  const early = new Set<number>();
  for (let i = 0; i <= producer; i++) for (const v of compiled.ops[i]!.outputs) early.add(v);
  for (let i = producer + 1; i < compiled.ops.length; i++) {
    for (const v of compiled.ops[i]!.inputs) {
      if (v !== value && early.has(v)) throw new Error("the token embedding's ops feed other ops: this model is explained on WASM");
    }
  }
}
