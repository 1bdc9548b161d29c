import { it, expect } from "vitest";
import { loadNodeRuntime } from "../../src/node/index.js";
import { acquireKernels } from "../../src/engine/kernels.js";
import { prepareRun } from "../../src/engine/prepare.js";
import { explainRun } from "../../src/engine/explain/index.js";
import { ExplainSpec } from "../../src/schema/explain.js";
it("smoke", async () => {
  const rt = await loadNodeRuntime();
  const inst = await acquireKernels(rt.module);
  const x = [[1, 2, 3], [0.5, -1, 2], [2, 0, -1], [1, 1, 1]];
  const prepared = prepareRun({ model: { layers: [{ type: "linear", name: "fc", in_features: 3, out_features: 1 }] }, data: { train: { x, y: [0, 1, 0, 1] } } });
  const w = [0.5, -2, 3], b = 0.25;
  const params = [{ name: "fc.weight", shape: [1, 3], data: Float32Array.from(w) }, { name: "fc.bias", shape: [1], data: Float32Array.of(b) }];
  const ig = explainRun(inst, prepared, params, ExplainSpec.parse({ method: "integrated_gradients" }));
  console.log(JSON.stringify(ig));
  const shap = explainRun(inst, prepared, params, ExplainSpec.parse({ method: "kernel_shap" }));
  console.log(JSON.stringify(shap));
  expect(ig.attributions[0]).toEqual([0.5, -4, 9]);
});
