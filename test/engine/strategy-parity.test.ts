/**
 * The range test against test/parity/lr_finder.py (fixtures/lr_finder.json): fastai's lr_find
 * transcribed in plain PyTorch (SchedExp from 1e-7 to 10 over 100 steps, AvgSmoothLoss beta 0.98,
 * stop at 4x the best smoothed loss) on torch.optim's Adam, SGD with momentum and AdamW, with
 * the suggestion rule of docs/strategy.md. The engine's curve must be PyTorch's to float32
 * rounding, stop at the same step, and suggest the same point.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { train } from "../../src/node/index.js";
import { writeSafetensors } from "../../src/formats/safetensors.js";
import { suggestLearningRate } from "../../src/engine/strategy.js";
import type { TrainRequest } from "../../src/engine/prepare.js";

interface Case {
  name: string;
  request: TrainRequest;
  weights: Record<string, { shape: number[]; data: number[] }>;
  expected: { lrs: number[]; losses: number[]; suggestion: { index: number; method: "steep" | "minimum" } };
}

const fixture = JSON.parse(readFileSync(new URL("../parity/fixtures/lr_finder.json", import.meta.url), "utf8")) as { cases: Case[] };

describe("the range test reproduces fastai's lr_find in PyTorch (test/parity/lr_finder.py)", () => {
  it("has the cases", () => expect(fixture.cases.map((c) => c.name)).toEqual(["adam_cross_entropy", "sgd_momentum_mse", "adamw_bce_partial_batches"]));

  for (const c of fixture.cases) {
    it(`${c.name}: the same rates, smoothed losses, stop and suggestion`, async () => {
      const weights = writeSafetensors(Object.entries(c.weights).map(([name, t]) => ({ name, shape: t.shape, data: Float32Array.from(t.data) })));
      const result = await train({ ...c.request, weights });
      const finder = result.metrics.lr_finder!;
      const e = c.expected;
      expect(finder.lrs.length).toBe(e.lrs.length);
      finder.lrs.forEach((lr, i) => expect(Math.abs(lr - e.lrs[i]!) / e.lrs[i]!).toBeLessThan(1e-14));
      const worst = Math.max(...finder.losses.map((l, i) => Math.abs(l - e.losses[i]!) / Math.abs(e.losses[i]!)));
      expect(worst, `worst relative difference ${worst}`).toBeLessThan(1e-4);
      const at = e.suggestion.index;
      expect(finder.method).toBe(e.suggestion.method);
      expect(finder.lr).toBe(e.suggestion.method === "steep" ? finder.lrs[at] : finder.lrs[at]! / 10);
      // the rule on PyTorch's own curve picks the same point (its rates may differ from ours in the last bit of pow)
      const own = suggestLearningRate({ lrs: e.lrs, losses: e.losses });
      expect(own.method).toBe(finder.method);
      expect(Math.abs(own.lr - finder.lr) / finder.lr).toBeLessThan(1e-14);
    });
  }
});
