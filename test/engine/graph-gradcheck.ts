/**
 * Shared by the engine tests (not a test file): a compiled graph's gradients against central
 * differences, and its forward logits, on the WASM kernel core.
 */
import { expect } from "vitest";
import { Arena } from "../../src/engine/arena.js";
import { instantiateKernels } from "../../src/engine/kernels.js";
import { defaultInit } from "../../src/engine/init.js";
import { createLoss } from "../../src/engine/losses.js";
import { allocateModel, Model } from "../../src/engine/model.js";
import type { PreparedRun } from "../../src/engine/prepare.js";
import type { Table } from "../../src/formats/dataset.js";
import type { loadNodeRuntime } from "../../src/node/index.js";

type Runtime = Awaited<ReturnType<typeof loadNodeRuntime>>;

/**
 * Central differences of the batch loss in float32, h = 3e-3 (relative to the weight): rounding
 * noise is about 1e-7 |L| / h = 3e-5 |L|, truncation about h^2 |f'''|; a wrong sign, factor or
 * index is off by far more. Up to 6 samples per trainable tensor, over the first 8 rows of the
 * training data; returns the samples and the ones that disagree (beyond 2% + 1e-3 of the largest
 * gradient).
 */
export async function graphGradcheck(prepared: PreparedRun, runtime: Runtime): Promise<{ samples: number; bad: string[] }> {
  const { model: compiled, output, train } = prepared;
  const rows = Math.min(8, train.rows);
  const { kernels, arena, model, put, x, mask, tokenTypes } = await modelWithRows(prepared, runtime, train, rows);
  const y = put(train.y.subarray(0, rows * train.targets));
  const loss = createLoss(prepared.request.training.loss, kernels, arena, output.classes);
  const lossRows = rows * output.positions;
  const batchLoss = (grad: number) => loss.compute(grad, model.forward({ x, mask, tokenTypes }, rows, true, 7), y, lossRows);

  batchLoss(model.logitsGrad.ptr);
  model.zeroGrad();
  model.backward(rows);
  const analytic = arena.f32(model.grads).slice();
  const state = () => arena.f32(model.state);
  const largest = analytic.reduce((m, g) => Math.max(m, Math.abs(g)), 0);
  expect(largest).toBeGreaterThan(0);

  const bad: string[] = [];
  let samples = 0;
  for (const t of compiled.state.filter((s) => s.trainable)) {
    for (let k = 0; k < Math.min(6, t.size); k++) {
      const i = t.offset + Math.floor(((k + 0.5) / Math.min(6, t.size)) * t.size);
      const w = state()[i]!;
      const h = Math.fround(3e-3 * Math.max(1, Math.abs(w)));
      state()[i] = Math.fround(w + h);
      const up = batchLoss(0);
      state()[i] = Math.fround(w - h);
      const down = batchLoss(0);
      state()[i] = w;
      const numeric = (up - down) / (Math.fround(w + h) - Math.fround(w - h));
      samples++;
      if (!(Math.abs(analytic[i]! - numeric) <= 0.02 * Math.abs(numeric) + 1e-3 * largest)) {
        bad.push(`${t.name}[${i - t.offset}]: analytic ${analytic[i]!.toExponential(4)}, numeric ${numeric.toExponential(4)}`);
      }
    }
  }
  return { samples, bad };
}

/**
 * The model's logits in evaluation mode for the first `rows` rows of a table, with the prepared
 * run's initial state (its `weights`): [rows, outputs].
 */
export async function forwardLogits(prepared: PreparedRun, runtime: Runtime, table = prepared.validation ?? prepared.train, rows = table.rows): Promise<Float32Array> {
  const { memory, model, x, mask, tokenTypes } = await modelWithRows(prepared, runtime, table, rows);
  const compiled = prepared.model;
  const out = compiled.values[compiled.output.value]!.size;
  const logits = model.forward({ x, mask, tokenTypes }, rows, false);
  return new Float32Array(memory.buffer, logits, rows * out).slice();
}

/** A model in its own memory with the prepared run's state (or its init), and the first `rows` rows of a table's inputs. */
export async function modelWithRows(prepared: PreparedRun, runtime: Runtime, table: Table, rows: number) {
  const compiled = prepared.model;
  const memory = new WebAssembly.Memory({ initial: 1 });
  const kernels = await instantiateKernels(runtime.module, memory);
  const arena = new Arena(memory, kernels.heap_base());
  const model = new Model(compiled, kernels, memory, allocateModel(compiled, arena, rows));
  model.loadState(prepared.initialState ?? defaultInit(compiled, prepared.request.training.seed));
  const put = (data: Float32Array) => {
    const r = arena.alloc(data.length);
    arena.f32(r).set(data);
    return r.ptr;
  };
  const F = table.features;
  const x = put(table.x.subarray(0, rows * F));
  const mask = table.mask ? put(table.mask.subarray(0, rows * F)) : 0;
  const tokenTypes = compiled.tokenTypes !== null ? put(table.tokenTypes ? table.tokenTypes.subarray(0, rows * F) : new Float32Array(rows * F)) : 0;
  return { memory, kernels, arena, model, put, x, mask, tokenTypes };
}
