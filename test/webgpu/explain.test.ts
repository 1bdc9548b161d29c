/**
 * Explanations on WebGPU (webgpu/explain.ts): the WGSL op kernels' input gradients give the
 * PyTorch references of test/parity/fixtures/explain.json, as the WASM core does; a run trained
 * with kernel "webgpu" explains on the device.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { compileForExplanation, explain, explainRows, explainWeights } from "../../src/engine/explain/index.js";
import { prepareRun, type TrainRequest } from "../../src/engine/prepare.js";
import { createWebGpuExplainModel } from "../../src/engine/webgpu/explain.js";
import { train } from "../../src/node/index.js";
import { worstRatio } from "../parity/compare.js";
import { SKIP_REASON, device } from "./device.js";

interface ExplainCase {
  name: string;
  request: TrainRequest;
  weights: Record<string, { shape: number[]; data: number[] }>;
  expected: { attributions: number[][]; convergence_delta?: number[] };
}
const cases = (JSON.parse(readFileSync(new URL("../parity/fixtures/explain.json", import.meta.url), "utf8")) as { cases: ExplainCase[] }).cases;

describe.skipIf(!device)(`explanations on WebGPU (${SKIP_REASON})`, () => {
  for (const c of cases) {
    it(`${c.name}: the PyTorch reference`, async () => {
      const prepared = prepareRun(c.request);
      const compiled = compileForExplanation(prepared);
      const params = Object.entries(c.weights).map(([name, t]) => ({ name, shape: t.shape, data: Float32Array.from(t.data) }));
      const net = await createWebGpuExplainModel(device!, compiled, explainWeights(prepared, compiled, params), 64);
      try {
        const spec = prepared.request.explain!;
        const e = await explain(net, spec, explainRows(spec, prepared.validation ?? prepared.train), prepared.train);
        const worst = worstRatio(e.attributions.flat(), c.expected.attributions.flat());
        console.log(`[explain webgpu] ${c.name}: attributions worst ${(worst.ratio * 100).toFixed(1)}% of tolerance (|err| ${worst.abs.toExponential(2)})`);
        expect(worst.ratio).toBeLessThanOrEqual(1);
        if (c.expected.convergence_delta) e.convergence_delta!.forEach((d, r) => expect(Math.abs(d - c.expected.convergence_delta![r]!)).toBeLessThan(1e-4));
      } finally {
        net.close();
      }
    });
  }

  it('a run trained with kernel "webgpu" explains on the device, with the numbers WASM gives', async () => {
    const c = cases.find((c) => c.name === "mlp_gausslegendre_zeros")!;
    const request = { ...c.request, training: { ...c.request.training, epochs: 2, batch_size: 8 } } as TrainRequest;
    const gpu = await train(request, { kernel: "webgpu", gpu: device! });
    expect(gpu.engine.kernel).toBe("webgpu");
    const wasm = await train(request, { kernel: "wasm" });
    const worst = worstRatio(gpu.explanations!.attributions.flat(), wasm.explanations!.attributions.flat());
    expect(worst.ratio).toBeLessThanOrEqual(1);
  });
});
