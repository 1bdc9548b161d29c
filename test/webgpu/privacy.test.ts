/**
 * DP-SGD on the WebGPU backend (request `privacy`, issue 14): the PyTorch per-sample-loop fixtures
 * (test/parity/privacy.py: σ = 0, Poisson sampling off) within the parity tolerance, and a noisy
 * Poisson run that reports its privacy. On whatever adapter test/webgpu/device.ts finds.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { train } from "../../src/node/index.js";
import { replay, type ParityCase } from "../parity/compare.js";
import { classifierRequest } from "../helpers.js";
import { rdpEpsilon } from "../../src/engine/privacy/index.js";
import { SKIP_REASON, adapterDescription, device } from "./device.js";

const cases = (JSON.parse(readFileSync(new URL("../parity/fixtures/privacy.json", import.meta.url), "utf8")) as { cases: ParityCase[] }).cases;

describe.skipIf(!device)(`DP-SGD on WebGPU (${device ? adapterDescription : ""}) (${SKIP_REASON})`, () => {
  for (const c of cases) {
    it(`${c.name}: ${c.description}`, async () => {
      const { result, worst, report } = await replay(c, (request) => train(request, { kernel: "webgpu", gpu: device! }));
      console.log(`[privacy parity webgpu] ${c.name}: worst ${(worst * 100).toFixed(1)}% of tolerance | ${report.join(", ")}`);
      expect(result.engine.kernel).toBe("webgpu");
      expect(result.status).toBe("succeeded");
      expect(result.metrics.steps).toBe(c.expected.steps);
      expect(worst).toBeLessThanOrEqual(1);
    });
  }

  it("a noisy run with Poisson batches (empty ones included) trains and reports ε", async () => {
    const request = classifierRequest(100, { epochs: 2, batch_size: 4, seed: 5 });
    request.privacy = { type: "dp-sgd", max_grad_norm: 1, noise_multiplier: 1.1 };
    const result = await train(request, { kernel: "webgpu", gpu: device! });
    expect(result.status).toBe("succeeded");
    expect(result.engine.kernel).toBe("webgpu");
    expect(result.metrics.steps).toBe(50);
    expect(result.metrics.privacy!.epsilon).toBe(rdpEpsilon({ sampleRate: 0.04, noiseMultiplier: 1.1, steps: 50 }, 0.01));
    expect(result.metrics.history.every((h) => Number.isFinite(h.train_loss))).toBe(true);
  });
});
