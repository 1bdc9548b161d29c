/**
 * Default initialisation reproduces torch.manual_seed(seed) + nn.Linear, nn.Conv1d/2d and
 * nn.Embedding bit for bit, and nn.MultiheadAttention's (out_proj drawn first, then
 * xavier_uniform_(in_proj_weight), biases 0) (fixtures from test/parity/generate.py, torch 1.13
 * with its AVX2 CPU kernels).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { MT19937, fillNormal } from "../../src/engine/rng.js";
import { defaultInit } from "../../src/engine/train.js";
import { compileModel } from "../../src/engine/graph/compile.js";
import { Layer } from "../../src/schema/request.js";

const fixture = JSON.parse(readFileSync(new URL("../parity/fixtures/init.json", import.meta.url), "utf8")) as {
  mt19937: Record<string, number[]>;
  uniform: { seed: number; low: number; high: number; values: number[] }[];
  normal: { seed: number; n: number; mean: number; std: number; values: number[] }[];
  cases: { seed: number; layers: unknown[]; input?: { shape: number[] }; weights: Record<string, { shape: number[]; data: number[] }> }[];
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
  for (const g of fixture.normal) {
    it(`normal_(${g.mean}, ${g.std}) of ${g.n} elements matches torch bit for bit (seed ${g.seed})`, () => {
      const out = new Float32Array(g.n);
      const rng = new MT19937(g.seed);
      fillNormal(rng, out, g.mean, g.std);
      expect(Array.from(out)).toEqual(g.values);
    });
  }
});

describe("default init = torch.manual_seed(seed); nn.Sequential(...)", () => {
  for (const c of fixture.cases) {
    const types = [...new Set(JSON.stringify(c.layers).match(/"type":"[a-z_]+"/g)!.map((t) => t.slice(8, -1)))];
    it(`seed ${c.seed}, ${c.layers.length} layers (${types.join(", ")})`, () => {
      const layers = c.layers.map((l) => Layer.parse(l));
      const first = layers[0] as { type: string; in_features: number };
      // token models read 2 token ids per row (position_embedding needs num_embeddings >= 2)
      const data = first.type === "embedding" ? { features: 2, tokens: true } : { features: c.input ? c.input.shape.reduce((a, b) => a * b, 1) : first.in_features };
      const values = defaultInit(compileModel({ layers, input: c.input }, null, data), c.seed);
      expect([...values.keys()]).toEqual(Object.keys(c.weights));
      for (const [name, t] of Object.entries(c.weights)) {
        expect(Array.from(values.get(name)!), name).toEqual(t.data);
      }
    });
  }
});
