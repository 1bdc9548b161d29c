/**
 * PyTorch parity inside workerd on the relaxed-SIMD build (relaxed_madd), the build the Worker
 * runs: every fixture case within SPEC section 4's tolerance.
 */
import { describe, expect, it } from "vitest";
import relaxed from "../../build/wasm/relaxed-simd.wasm";
import { createEngine } from "../../src/engine/train.js";
import { GROUPS, replay, type ParityCase } from "../parity/compare.js";
import optimizers from "../parity/fixtures/optimizers.json";
import losses from "../parity/fixtures/losses.json";
import schedules from "../parity/fixtures/schedules.json";
import training from "../parity/fixtures/training.json";

const fixtures: Record<(typeof GROUPS)[number], { cases: unknown[] }> = { optimizers, losses, schedules, training };
const engine = createEngine({ module: relaxed, variant: "wasm-relaxed-simd", runtime: "workerd" });

describe("PyTorch parity in workerd (wasm-relaxed-simd)", () => {
  for (const group of GROUPS) {
    for (const c of fixtures[group].cases as ParityCase[]) {
      it(`${group}/${c.name}`, async () => {
        const { result, worst } = await replay(c, (request) => engine.train(request));
        expect(result.engine).toMatchObject({ kernel: "wasm-relaxed-simd", runtime: "workerd" });
        expect(result.metrics.steps).toBe(c.expected.steps);
        expect(result.metrics.best_epoch).toBe(c.expected.best_epoch);
        expect(worst).toBeLessThanOrEqual(1);
      });
    }
  }
});
