/**
 * Default initialisation reproduces torch.manual_seed(seed) + nn.Linear / nn.Conv1d / nn.Conv2d bit for bit
 * (fixtures from test/parity/generate.py, torch 1.13).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { MT19937 } from "../../src/engine/rng.js";
import { defaultInit } from "../../src/engine/train.js";
import { compileModel } from "../../src/engine/graph/compile.js";
import { Layer } from "../../src/schema/request.js";

const fixture = JSON.parse(readFileSync(new URL("../parity/fixtures/init.json", import.meta.url), "utf8")) as {
  mt19937: Record<string, number[]>;
  uniform: { seed: number; low: number; high: number; values: number[] }[];
  cases: { seed: number; input?: number[]; layers: unknown[]; weights: Record<string, { shape: number[]; data: number[] }> }[];
};

describe("PyTorch's CPU generator", () => {
  for (const [seed, expected] of Object.entries(fixture.mt19937)) {
    it(`mt19937 raw outputs match torch for seed ${seed}`, () => {
      const rng = new MT19937(Number(seed));
      expect(expected.map(() => rng.nextU32())).toEqual(expected);
    });
  }
  for (const u of fixture.uniform) {
    it(`uniform_(${u.low}, ${u.high}) matches torch bit for bit (seed ${u.seed})`, () => {
      const rng = new MT19937(u.seed);
      expect(u.values.map(() => rng.uniformF32(u.low, u.high))).toEqual(u.values);
    });
  }
});

describe("default init = torch.manual_seed(seed); nn.Sequential(...)", () => {
  for (const c of fixture.cases) {
    const types = [...new Set(c.layers.map((l) => (l as { type: string }).type))].join(", ");
    it(`seed ${c.seed}, ${c.layers.length} layers (${types})${c.input ? `, input [${c.input.join(", ")}]` : ""}`, () => {
      const layers = c.layers.map((l) => Layer.parse(l));
      // a shaped input (convolutions) or the first linear layer's width
      const features = c.input ? c.input.reduce((a, b) => a * b, 1) : (layers[0] as { in_features: number }).in_features;
      const model = c.input ? { layers, input: { shape: c.input } } : { layers };
      const values = defaultInit(compileModel(model, null, { features }), c.seed);
      expect([...values.keys()]).toEqual(Object.keys(c.weights));
      for (const [name, t] of Object.entries(c.weights)) {
        expect(Array.from(values.get(name)!), name).toEqual(t.data);
      }
    });
  }
});
