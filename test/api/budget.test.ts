/** Where a job runs: the budget decision, directly. */
import { describe, expect, it } from "vitest";
import { decide, type EdgeBudget } from "../../src/api/budget.js";
import { UnprocessableError } from "../../src/errors.js";
import type { FineTuneRequest } from "../../src/schema/request.js";
import type { RunPlan } from "../../src/engine/plan.js";

const budget: EdgeBudget = { maxFlops: 1000, maxMemoryBytes: 1000 };
const plan = (flops: number, memory = 10) => ({ flops, memory_bytes: memory }) as RunPlan;
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
