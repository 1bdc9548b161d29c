import { describe, expect, it } from "vitest";
import { defaultDelta, logErfc, noiseMultiplierFor, privacySpent, RDP_ORDERS, rdpEpsilon, stepRdp } from "../../src/engine/privacy/accountant.js";

// Figures from Opacus's RDP accountant (pytorch/opacus@4d0ebc8, accountants/analysis/rdp.py), δ = 1e-5.
const FIGURES = [
  { q: 0.01, sigma: 1.0, steps: 1000, epsilon: 2.101365, order: 7.8 },
  { q: 256 / 60000, sigma: 1.1, steps: 3515, epsilon: 1.281144, order: 12 },
  { q: 0.1, sigma: 2.0, steps: 100, epsilon: 2.580569, order: 7.6 },
  { q: 1.0, sigma: 5.0, steps: 10, epsilon: 2.813653, order: 7.9 },
];

describe("RDP accountant (Opacus)", () => {
  it("has Opacus's orders: 1.1..10.9 by tenths, then 12..63", () => {
    expect(RDP_ORDERS).toHaveLength(151);
    expect(RDP_ORDERS[0]).toBe(1.1);
    expect(RDP_ORDERS[98]).toBe(10.9);
    expect(RDP_ORDERS[99]).toBe(12);
    expect(RDP_ORDERS[150]).toBe(63);
  });

  for (const f of FIGURES) {
    it(`q=${f.q.toPrecision(4)} σ=${f.sigma} steps=${f.steps} gives ε=${f.epsilon} at order ${f.order}`, () => {
      const spent = privacySpent([{ sampleRate: f.q, noiseMultiplier: f.sigma, steps: f.steps }], 1e-5);
      expect(Math.abs(spent.epsilon - f.epsilon)).toBeLessThan(1e-6);
      expect(spent.order).toBe(f.order);
    });
  }

  it("reproduces scipy's log(erfc) (log(2) + log_ndtr(-x√2)) on both branches and far into the tail", () => {
    const scipy: [number, number][] = [
      [-3e5, Math.LN2], [-30, Math.LN2], [-3, 0.6931361352504468], [-1, 0.6112323176780705], [-0.1, 0.10657640058652262], [0, 0],
      [0.5, -0.7350111298370848], [1, -1.849605509933249], [1.9, -4.93234586278027], [2, -5.36494126461664],
      [2.1, -5.816010968867557], [3, -10.720363041981116], [5, -27.200889545537446], [10, -102.87988902484493],
      [30, -903.9741171106442], [100, -10005.177585122668],
    ];
    for (const [x, want] of scipy) expect(Math.abs(logErfc(x) - want)).toBeLessThanOrEqual(1e-13 * Math.max(1, Math.abs(want)));
  });

  it("has the closed forms at the edges: nothing sampled, no noise, no subsampling", () => {
    expect(stepRdp(0, 1, 2)).toBe(0);
    expect(stepRdp(0.1, 0, 2)).toBe(Infinity);
    expect(stepRdp(1, 5, 2)).toBeCloseTo(0.04, 15);
    expect(privacySpent([], 1e-5).epsilon).toBe(0);
    expect(rdpEpsilon({ sampleRate: 0.1, noiseMultiplier: 0, steps: 10 }, 1e-5)).toBe(Infinity);
  });

  it("sums stretches: two halves spend what the whole does", () => {
    const whole = rdpEpsilon({ sampleRate: 0.01, noiseMultiplier: 1, steps: 1000 }, 1e-5);
    const halves = privacySpent([{ sampleRate: 0.01, noiseMultiplier: 1, steps: 500 }, { sampleRate: 0.01, noiseMultiplier: 1, steps: 500 }], 1e-5).epsilon;
    expect(halves).toBeCloseTo(whole, 12);
  });

  it("finds σ = 0.6158447265625 for ε = 8 at q = 0.01 over 10 epochs (get_noise_multiplier)", () => {
    const sigma = noiseMultiplierFor({ targetEpsilon: 8, delta: 1e-5, sampleRate: 0.01, steps: Math.trunc(10 / 0.01) });
    expect(Math.abs(sigma - 0.6158447265625)).toBeLessThan(1e-6);
    const eps = rdpEpsilon({ sampleRate: 0.01, noiseMultiplier: sigma, steps: 1000 }, 1e-5);
    expect(eps).toBeLessThanOrEqual(8);
    expect(8 - eps).toBeLessThanOrEqual(0.01);
  });

  it("refuses a budget no σ up to 1e6 meets", () => {
    expect(() => noiseMultiplierFor({ targetEpsilon: 1e-9, delta: 1e-5, sampleRate: 1, steps: 1e6 })).toThrow(/too low/);
  });

  it("defaults δ to 1/N rounded down to a power of ten", () => {
    expect(defaultDelta(60000)).toBe(1e-5);
    expect(defaultDelta(1797)).toBe(1e-4);
    expect(defaultDelta(1000)).toBe(1e-3);
    expect(defaultDelta(1001)).toBe(1e-4);
    expect(defaultDelta(10)).toBe(0.1);
  });
});
