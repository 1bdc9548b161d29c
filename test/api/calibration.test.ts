/**
 * The cost model against its calibration (issue 21): every point of the committed grid
 * (bench/calibration.json, written by `npm run bench -- --only calibration`: whole sync runs in
 * workerd under `wrangler dev`) is estimated within 1.5x of its measured time by the defaults
 * the Worker uses. No timing happens here: the measurements are the file's.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { DEFAULT_EDGE_BUDGET, estimateCpuMs, stepTrafficBytes } from "../../src/api/budget.js";
import type { OptimizerSpec } from "../../src/schema/request.js";

interface CalibrationPoint {
  width: number;
  batch_size: number;
  rows: number;
  optimizer: "sgd" | "adam";
  plan: { params: number; trainable_params: number; flops: number; steps: number };
  measured_ms: number;
}
const calibration = JSON.parse(readFileSync(new URL("../../bench/calibration.json", import.meta.url), "utf8")) as {
  machine: { cpu: string };
  points: CalibrationPoint[];
};
const wranglerToml = readFileSync(new URL("../../wrangler.toml", import.meta.url), "utf8");

const estimate = (p: CalibrationPoint) =>
  estimateCpuMs({ ...p.plan, batch_size: p.batch_size, stepsPerEpoch: p.rows / p.batch_size }, DEFAULT_EDGE_BUDGET, stepTrafficBytes(p.plan, { type: p.optimizer, momentum: 0, amsgrad: false } as unknown as OptimizerSpec, "float32"));

describe("the cost model's calibration grid (bench/calibration.json)", () => {
  it("covers batch sizes 1-256 and widths 16-4096 with SGD and Adam", () => {
    const values = (key: "width" | "batch_size" | "optimizer") => [...new Set(calibration.points.map((p) => p[key]))].sort();
    expect(Math.min(...(values("width") as number[]))).toBe(16);
    expect(Math.max(...(values("width") as number[]))).toBe(4096);
    expect(Math.min(...(values("batch_size") as number[]))).toBe(1);
    expect(Math.max(...(values("batch_size") as number[]))).toBe(256);
    expect(values("optimizer")).toEqual(["adam", "sgd"]);
    expect(calibration.points.length).toBeGreaterThanOrEqual(24);
  });

  for (const p of calibration.points) {
    it(`W=${p.width}, batch size ${p.batch_size}, ${p.optimizer}: the estimate is within 1.5x of the measured ${p.measured_ms} ms`, () => {
      const ratio = estimate(p) / p.measured_ms;
      expect(ratio).toBeGreaterThanOrEqual(1 / 1.5);
      expect(ratio).toBeLessThanOrEqual(1.5);
    });
  }

  it("wrangler.toml deploys the calibrated rates (the defaults)", () => {
    const vars: Record<string, number> = {};
    for (const m of wranglerToml.matchAll(/^(EDGE_\w+) = "([^"]+)"/gm)) vars[m[1]!] = Number(m[2]);
    expect(vars.EDGE_FLOPS_PER_MS).toBe(DEFAULT_EDGE_BUDGET.flopsPerMs);
    expect(vars.EDGE_BYTES_PER_MS).toBe(DEFAULT_EDGE_BUDGET.bytesPerMs);
    expect(vars.EDGE_STEP_OVERHEAD_MS).toBe(DEFAULT_EDGE_BUDGET.stepOverheadMs);
    expect(vars.EDGE_PARAM_OVERHEAD_MS).toBe(DEFAULT_EDGE_BUDGET.paramOverheadMs);
    expect(vars.EDGE_EPOCH_OVERHEAD_MS).toBe(DEFAULT_EDGE_BUDGET.epochOverheadMs);
    expect(vars.EDGE_MAX_CPU_MS).toBe(DEFAULT_EDGE_BUDGET.maxCpuMs);
  });
});

describe("the per-epoch cost (bench/calibration.json epoch_points: very many one-step epochs)", () => {
  const points = (calibration as unknown as { epoch_points: (CalibrationPoint & { epochs: number })[] }).epoch_points;
  it("has the 1-row, 100,000-epoch run", () => {
    expect(points.some((p) => p.rows === 1 && p.epochs === 100_000)).toBe(true);
  });
  for (const p of points) {
    it(`${p.rows} rows x ${p.epochs} epochs: the estimate is within 1.5x of the measured ${p.measured_ms} ms`, () => {
      const ratio = estimate(p) / p.measured_ms;
      expect(ratio).toBeGreaterThanOrEqual(1 / 1.5);
      expect(ratio).toBeLessThanOrEqual(1.5);
    });
  }
});
