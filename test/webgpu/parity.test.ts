/**
 * PyTorch parity on the WebGPU backend: every case of test/parity/fixtures replayed through
 * train(request, { kernel: "webgpu", gpu }) within SPEC section 4's tolerance, on whatever
 * adapter this machine has (SwiftShader in CI; a real GPU under scripts/gpu-check.sh, which
 * sets EDGETUNE_WEBGPU_REQUIRE_HARDWARE=1 so that a software adapter cannot stand in for it).
 * Each case prints its worst error; the worst per group is printed at the end.
 */
import { readFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { train } from "../../src/node/index.js";
import { GROUPS, LORA_GROUPS, replay, replayLora, type LoraParityCase, type ParityCase } from "../parity/compare.js";
import { SKIP_REASON, adapterDescription, device, software } from "./device.js";

function load(group: string): ParityCase[] {
  const url = new URL(`../parity/fixtures/${group}.json`, import.meta.url);
  return (JSON.parse(readFileSync(url, "utf8")) as { cases: ParityCase[] }).cases;
}

const worstPerGroup = new Map<string, { worst: number; name: string }>();
afterAll(() => {
  if (!device) return;
  const lines = [...worstPerGroup].map(([g, w]) => `  ${g}: ${(w.worst * 100).toFixed(1)}% of tolerance (${w.name})`);
  console.log(`[parity webgpu] on ${adapterDescription}: worst per group\n${lines.join("\n")}`);
});

describe.skipIf(!device)(`PyTorch parity (webgpu${device ? `, ${adapterDescription}` : ""}) (${SKIP_REASON})`, () => {
  it("runs on the adapter the run asked for", () => {
    if (process.env.EDGETUNE_WEBGPU_REQUIRE_HARDWARE === "1") expect(software, adapterDescription).toBe(false);
  });
  for (const group of LORA_GROUPS) {
    describe(group, () => {
      for (const c of load(group) as unknown as LoraParityCase[]) {
        for (const format of ["peft", "merged"] as const) {
          it(`${c.name} (${format}): ${c.description}`, async () => {
            const { result, worst, report, missing, extra } = await replayLora(c, (request) => train(request, { kernel: "webgpu", gpu: device }), format);
            console.log(`[parity webgpu] ${group}/${c.name} ${format}: worst ${(worst * 100).toFixed(1)}% of tolerance | ${report.join(", ")}`);
            const seen = worstPerGroup.get(group);
            if (!seen || worst > seen.worst) worstPerGroup.set(group, { worst, name: `${c.name} ${format}` });
            expect(result.engine.kernel).toBe("webgpu");
            expect([missing, extra]).toEqual([[], []]);
            expect(worst).toBeLessThanOrEqual(1);
          });
        }
      }
    });
  }
  for (const group of GROUPS) {
    describe(group, () => {
      for (const c of load(group)) {
        it(`${c.name}: ${c.description}`, async () => {
          const { result, worst, report } = await replay(c, (request) => train(request, { kernel: "webgpu", gpu: device }));
          console.log(`[parity webgpu] ${group}/${c.name}: worst ${(worst * 100).toFixed(1)}% of tolerance | ${report.join(", ")}`);
          const seen = worstPerGroup.get(group);
          if (!seen || worst > seen.worst) worstPerGroup.set(group, { worst, name: c.name });
          expect(result.engine.kernel).toBe("webgpu");
          expect(result.status).toBe("succeeded");
          expect(result.metrics.steps).toBe(c.expected.steps);
          expect(result.metrics.history.length).toBe(c.expected.history.length);
          expect(result.metrics.best_epoch).toBe(c.expected.best_epoch);
          expect(worst).toBeLessThanOrEqual(1);
        });
      }
    });
  }
});
