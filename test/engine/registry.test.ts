/**
 * The layer registry's coverage guards, derived from the registry itself (adding a layer or an
 * op kind is enough to be held to them):
 *
 *  - every layer type is trained against PyTorch in some parity fixture (test/parity/fixtures);
 *  - every op kind is emitted by some fixture's model, or (until one emits it) is checked whole
 *    against a float64 formula in test/kernels/gradcheck.test.ts (OP_GRADCHECKS), and has
 *    WebGPU dispatches (GPU_OPS);
 *  - every layer type's gradients agree with central differences of the whole model's loss,
 *    on the model of its first fixture: the backward pass of each op, as the graph composes it.
 *
 * Kernel-level twin tests, per-kernel gradient checks and WGSL twin tests have their own
 * coverage tests (test/kernels/twins.test.ts, test/webgpu/twins.test.ts).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { LAYERS, type LayerSpec } from "../../src/engine/layers/index.js";
import { OPS } from "../../src/engine/ops/index.js";
import type { OpKind } from "../../src/engine/ops/types.js";
import { prepareRun, type PreparedRun } from "../../src/engine/prepare.js";
import { GPU_OPS } from "../../src/engine/webgpu/ops.js";
import { writeSafetensors } from "../../src/formats/safetensors.js";
import { loadNodeRuntime } from "../../src/node/index.js";
import { OP_GRADCHECKS } from "../kernels/op-gradchecks.js";
import { GROUPS, type ParityCase } from "../parity/compare.js";
import { graphGradcheck } from "./graph-gradcheck.js";

const cases = GROUPS.flatMap((group) =>
  (JSON.parse(readFileSync(new URL(`../parity/fixtures/${group}.json`, import.meta.url), "utf8")) as { cases: ParityCase[] }).cases.map(
    (c) => ({ group, c }),
  ),
);

/** Every layer type in a layer list, containers' children included. */
function layerTypes(layers: readonly LayerSpec[] | undefined, into = new Set<string>()): Set<string> {
  for (const l of layers ?? []) {
    into.add(l.type);
    if ("layers" in l) layerTypes(l.layers, into);
  }
  return into;
}

/** A fixture's model: a layer list, or a Hugging Face architecture (no layers). */
const modelOf = (c: ParityCase) => (c.request as { model: { layers?: LayerSpec[] } }).model;

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

  it("every op kind is emitted by some fixture's model (or checked whole at op level), and every one has WebGPU dispatches", () => {
    const emitted = new Set<OpKind>();
    for (const { c } of cases) for (const op of prepare(c).model.ops) emitted.add(op.kind);
    const opLevel = new Set<OpKind>(OP_GRADCHECKS);
    const unexercised = (Object.keys(OPS) as OpKind[]).filter((k) => !emitted.has(k) && !opLevel.has(k));
    expect(unexercised, "op kinds no fixture exercises and no op-level gradcheck covers").toEqual([]);
    const onlyOpLevel = (Object.keys(OPS) as OpKind[]).filter((k) => !emitted.has(k));
    if (onlyOpLevel.length) console.log(`[registry] op kinds covered by op-level gradchecks only, no parity fixture yet: ${onlyOpLevel.join(", ")}`);
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
      const { samples, bad } = await graphGradcheck(prepare(found!.c), runtime);
      console.log(`[graph gradcheck] ${type}: ${samples - bad.length}/${samples} samples agree${bad.length ? `; off: ${bad.slice(0, 3).join("; ")}` : ""}`);
      expect(bad.length, bad.join("\n")).toBeLessThanOrEqual(Math.floor(samples * 0.1));
    });
  }
});
