/** Where a job runs: the budget decision, directly. */
import { describe, expect, it } from "vitest";
import { decide, estimateCpuMs, DEFAULT_EDGE_BUDGET, type EdgeBudget } from "../../src/api/budget.js";
import { UnprocessableError } from "../../src/errors.js";
import type { FineTuneRequest } from "../../src/schema/request.js";
import type { RunPlan } from "../../src/engine/plan.js";

// 1 FLOP per ms and no step cost: the CPU estimate in ms equals the FLOPs
const budget: EdgeBudget = { maxCpuMs: 1000, maxMemoryBytes: 1000, flopsPerMs: 1, stepOverheadMs: 0 };
const plan = (flops: number, memory = 10) => ({ flops, memory_bytes: memory, steps: 1 }) as RunPlan;
const req = (mode: string, placement: string) => ({ mode, placement }) as FineTuneRequest;

describe("decide()", () => {
  const cases: [string, string, number, number, unknown][] = [
    ["auto", "auto", 10, 10, { run: "sync" }],
    ["auto", "auto", 5000, 10, { run: "async", placement: "gpu-node" }],
    ["auto", "auto", 10, 5000, { run: "async", placement: "gpu-node" }],
    ["auto", "gpu-node", 10, 10, { run: "async", placement: "gpu-node" }],
    ["auto", "edge", 10, 10, { run: "sync" }],
    ["async", "auto", 10, 10, { run: "async", placement: "edge" }],
    ["async", "auto", 5000, 10, { run: "async", placement: "gpu-node" }],
    ["async", "edge", 10, 10, { run: "async", placement: "edge" }],
    ["async", "gpu-node", 10, 10, { run: "async", placement: "gpu-node" }],
    ["sync", "auto", 10, 10, { run: "sync" }],
    ["sync", "edge", 1000, 1000, { run: "sync" }],
  ];
  for (const [mode, placement, flops, memory, expected] of cases) {
    it(`${mode}/${placement} with ${flops} FLOPs, ${memory} B -> ${JSON.stringify(expected)}`, () => {
      expect(decide(req(mode, placement), plan(flops, memory), budget)).toEqual(expected);
    });
  }
  const refusals: [string, string, number, string][] = [
    ["sync", "auto", 1001, "mode"],
    ["sync", "gpu-node", 10, "placement"],
    ["async", "edge", 5000, "placement"],
    ["auto", "edge", 5000, "placement"],
  ];
  for (const [mode, placement, flops, path] of refusals) {
    it(`${mode}/${placement} with ${flops} FLOPs is refused at ${path}`, () => {
      try {
        decide(req(mode, placement), plan(flops), budget);
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(UnprocessableError);
        expect((e as UnprocessableError).errors[0]!.path).toBe(path);
      }
    });
  }
});

describe("the CPU estimate", () => {
  it("adds FLOPs at the sustained rate and a cost per step", () => {
    expect(estimateCpuMs({ flops: 2e9, steps: 640 }, DEFAULT_EDGE_BUDGET)).toBeCloseTo(100 + 19.2, 6);
  });
  it("a tiny job with very many steps is bounded by its step cost", () => {
    const b = { ...DEFAULT_EDGE_BUDGET, maxCpuMs: 1000 };
    expect(() => decide(req("sync", "auto"), { flops: 1e6, memory_bytes: 1, steps: 100_000 } as RunPlan, b)).toThrow(UnprocessableError);
    expect(decide(req("sync", "auto"), { flops: 1e6, memory_bytes: 1, steps: 1000 } as RunPlan, b)).toEqual({ run: "sync" });
  });
});
