/**
 * The layer registry's coverage guards, derived from the registry itself (adding a layer or an
 * op kind is enough to be held to them):
 *
 *  - every layer type is trained against PyTorch in some parity fixture (test/parity/fixtures);
 *  - every op kind is emitted by some fixture's model and has WebGPU dispatches (GPU_OPS);
 *  - every layer type's gradients agree with central differences of the whole model's loss,
 *    on the model of its first fixture: the backward pass of each op, as the graph composes it.
 *
 * Kernel-level twin tests, per-kernel gradient checks and WGSL twin tests have their own
 * coverage tests (test/kernels/twins.test.ts, test/webgpu/twins.test.ts).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Arena } from "../../src/engine/arena.js";
import { instantiateKernels } from "../../src/engine/kernels.js";
import { LAYERS, type LayerSpec } from "../../src/engine/layers/index.js";
import { createLoss } from "../../src/engine/losses.js";
import { allocateModel, Model } from "../../src/engine/model.js";
import { OPS } from "../../src/engine/ops/index.js";
import type { OpKind } from "../../src/engine/ops/types.js";
import { prepareRun, type PreparedRun } from "../../src/engine/prepare.js";
import { GPU_OPS } from "../../src/engine/webgpu/ops.js";
import { writeSafetensors } from "../../src/formats/safetensors.js";
import { loadNodeRuntime } from "../../src/node/index.js";
import { GROUPS, type ParityCase } from "../parity/compare.js";

const cases = GROUPS.flatMap((group) =>
  (JSON.parse(readFileSync(new URL(`../parity/fixtures/${group}.json`, import.meta.url), "utf8")) as { cases: ParityCase[] }).cases.map(
    (c) => ({ group, c }),
  ),
);

/** Every layer type in a layer list, containers' children included. */
function layerTypes(layers: readonly LayerSpec[], into = new Set<string>()): Set<string> {
  for (const l of layers) {
    into.add(l.type);
    if ("layers" in l) layerTypes(l.layers, into);
  }
  return into;
}

/** A case's layer list; a Hugging Face case (model.huggingface) has none. */
const modelOf = (c: ParityCase) => {
  const model = (c.request as { model: { layers?: LayerSpec[] } }).model;
  return { ...model, layers: model.layers ?? [] };
};

function prepare(c: ParityCase): PreparedRun {
  const weights = writeSafetensors(
    Object.entries(c.initial_weights).map(([name, t]) => ({ name, shape: t.shape, data: Float32Array.from(t.data) })),
  );
  return prepareRun({ ...(c.request as object), weights } as Parameters<typeof prepareRun>[0]);
}

describe("the layer registry's coverage", () => {
  it("every layer type is trained against PyTorch in some parity fixture", () => {
    const covered = new Set<string>();
    for (const { c } of cases) layerTypes(modelOf(c).layers, covered);
    const missing = LAYERS.map((d) => d.type).filter((t) => !covered.has(t));
    expect(missing, "layer types without a parity case (add one to test/parity/generate.py)").toEqual([]);
  });

  it("every op kind is emitted by some fixture's model, and every one has WebGPU dispatches", () => {
    const emitted = new Set<OpKind>();
    for (const { c } of cases) for (const op of prepare(c).model.ops) emitted.add(op.kind);
    expect([...emitted].sort(), "op kinds no fixture exercises").toEqual(Object.keys(OPS).sort());
    const withoutWgsl = (Object.keys(GPU_OPS) as OpKind[]).filter((k) => GPU_OPS[k] === null);
    expect(withoutWgsl, "op kinds without WGSL (GPU_OPS entry null)").toEqual([]);
  });
});

/**
 * Central differences of the batch loss in float32, h = 3e-3 (relative to the weight): rounding
 * noise is about 1e-7 |L| / h = 3e-5 |L|, truncation about h^2 |f'''|; a wrong sign, factor or
 * index is off by far more. A sampled weight next to a kink (ReLU, max) can cross it, so 90% of
 * the samples must agree, each within 2% + 1e-3 of the largest gradient.
 */
describe("graph gradients vs central differences, one fixture model per layer type", async () => {
  const runtime = await loadNodeRuntime({ variant: "wasm-simd" });
  for (const type of LAYERS.map((d) => d.type)) {
    const found = cases.find(({ c }) => layerTypes(modelOf(c).layers).has(type));
    it.skipIf(!found)(`${type}${found ? ` (${found.group}/${found.c.name})` : " [SKIPPED: no fixture uses it; the coverage test above fails]"}`, async () => {
      const prepared = prepare(found!.c);
      const { model: compiled, output, train } = prepared;
      const rows = Math.min(8, train.rows);
      const memory = new WebAssembly.Memory({ initial: 1 });
      const kernels = await instantiateKernels(runtime.module, memory);
      const arena = new Arena(memory, kernels.heap_base());
      const model = new Model(compiled, kernels, memory, allocateModel(compiled, arena, rows));
      model.loadState(prepared.initialState!);
      const put = (data: Float32Array) => {
        const r = arena.alloc(data.length);
        arena.f32(r).set(data);
        return r.ptr;
      };
      const x = put(train.x.subarray(0, rows * train.features));
      const y = put(train.y.subarray(0, rows * train.targets));
      const mask = train.mask ? put(train.mask.subarray(0, rows * train.features)) : 0;
      const loss = createLoss(prepared.request.training.loss, kernels, arena, output.classes);
      const lossRows = rows * output.positions;
      const batchLoss = (grad: number) => loss.compute(grad, model.forward({ x, mask }, rows, true, 7), y, lossRows);

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
      console.log(`[graph gradcheck] ${type}: ${samples - bad.length}/${samples} samples agree${bad.length ? `; off: ${bad.slice(0, 3).join("; ")}` : ""}`);
      expect(bad.length, bad.join("\n")).toBeLessThanOrEqual(Math.floor(samples * 0.1));
    });
  }
});
