/**
 * Explanations (issue 18): integrated gradients and KernelSHAP of src/engine/explain against the
 * plain-PyTorch references of test/parity/explain.py (fixtures/explain.json), on the WASM kernel
 * core and on the TypeScript twins; the linear-model identities; the 422s; train() with `explain`.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { UnprocessableError } from "../../src/errors.js";
import { acquireKernels, type KernelInstance } from "../../src/engine/kernels.js";
import { createReferenceKernels } from "../../src/engine/reference.js";
import { prepareRun, type TrainRequest } from "../../src/engine/prepare.js";
import { compileForExplanation, exactShapley, ExplainNetwork, explainRun, explainWeights, integrationPoints, legendreGauss, shapCoalitions, solveShap } from "../../src/engine/explain/index.js";
import { MT19937 } from "../../src/engine/rng.js";
import { loadNodeRuntime, train } from "../../src/node/index.js";
import { ExplainSpec } from "../../src/schema/explain.js";
import { FineTuneResult } from "../../src/schema/result.js";
import { worstRatio } from "../parity/compare.js";
import { lcg } from "../helpers.js";

interface ExplainCase {
  name: string;
  description: string;
  request: TrainRequest & { explain: unknown };
  weights: Record<string, { shape: number[]; data: number[] }>;
  expected: { attributions: number[][]; convergence_delta?: number[]; output_change?: number[]; targets: number[] };
}

const cases = (JSON.parse(readFileSync(new URL("../parity/fixtures/explain.json", import.meta.url), "utf8")) as { cases: ExplainCase[] }).cases;
const runtime = await loadNodeRuntime();

function referenceInstance(): KernelInstance {
  const memory = new WebAssembly.Memory({ initial: 1 });
  return { memory, kernels: createReferenceKernels(memory, 1024) };
}

const params = (weights: ExplainCase["weights"]) => Object.entries(weights).map(([name, t]) => ({ name, shape: t.shape, data: Float32Array.from(t.data) }));

for (const kernel of [runtime.variant, "js-reference"] as const) {
  describe(`explanations vs the PyTorch references (${kernel})`, async () => {
    const instance = kernel === "js-reference" ? referenceInstance() : await acquireKernels(runtime.module);
    for (const c of cases) {
      it(`${c.name}: ${c.description}`, async () => {
        const prepared = prepareRun(c.request);
        const e = await explainRun(instance, prepared, params(c.weights), prepared.request.explain!);
        const worst = worstRatio(e.attributions.flat(), c.expected.attributions.flat());
        let report = `attributions worst ${(worst.ratio * 100).toFixed(1)}% of tolerance (|err| ${worst.abs.toExponential(2)})`;
        expect(e.attributions.length).toBe(c.expected.attributions.length);
        expect(worst.ratio).toBeLessThanOrEqual(1);
        if (c.expected.convergence_delta) {
          // the engine's delta is float32 arithmetic over float32 outputs: compared in absolute terms
          const d = e.convergence_delta!.map((v, i) => Math.abs(v - c.expected.convergence_delta![i]!));
          report += `, delta worst |err| ${Math.max(...d).toExponential(2)}`;
          expect(Math.max(...d)).toBeLessThan(1e-4);
        }
        console.log(`[explain ${kernel}] ${c.name}: ${report}`);
      });
    }

    it("convergence: |delta| <= 1% of |f(x) - f(baseline)| at 128 steps (gausslegendre) on the MLP and the encoder", async () => {
      for (const c of cases.filter((c) => (c.request.explain as { steps?: number }).steps === 128)) {
        const prepared = prepareRun(c.request);
        const e = await explainRun(instance, prepared, params(c.weights), prepared.request.explain!);
        e.convergence_delta!.forEach((d, r) => {
          const change = c.expected.output_change![r]!;
          expect(Math.abs(d)).toBeLessThanOrEqual(0.01 * Math.abs(change) + 1e-6);
        });
      }
    });
  });
}

describe("a linear model", async () => {
  const instance = await acquireKernels(runtime.module);
  const F = 4;
  const rand = lcg(99);
  const x = Array.from({ length: 30 }, () => Array.from({ length: F }, () => Math.fround(rand() * 2)));
  const w = [0.5, -2, 3, 0.25];
  const b = 0.75;
  const request: TrainRequest = { model: { layers: [{ type: "linear", name: "fc", in_features: F, out_features: 1 }] }, data: { train: { x, y: x.map(() => 0) } } };
  const weights = [{ name: "fc.weight", shape: [1, F], data: Float32Array.from(w) }, { name: "fc.bias", shape: [1], data: Float32Array.of(b) }];

  it("integrated gradients from a zero baseline are x * w exactly (in float32)", async () => {
    const prepared = prepareRun(request);
    const e = await explainRun(instance, prepared, weights, ExplainSpec.parse({ method: "integrated_gradients", rows: x.slice(0, 5), target: 0 }));
    e.attributions.forEach((a, r) => expect(a).toEqual(w.map((wi, j) => Math.fround(x[r]![j]! * wi))));
    expect(e.feature_names).toEqual(["x0", "x1", "x2", "x3"]);
    expect(e.feature_importance).toHaveLength(F);
  });

  it("KernelSHAP with the train background is w * (x - mean(background)), enumerated and sampled", async () => {
    const prepared = prepareRun(request);
    const mean = w.map((_, j) => x.reduce((s, row) => s + row[j]!, 0) / x.length);
    const e = await explainRun(instance, prepared, weights, ExplainSpec.parse({ method: "kernel_shap" }));
    expect(e.attributions).toHaveLength(30); // no validation rows: the first 100 (all) training rows
    e.attributions.forEach((a, r) => a.forEach((v, j) => expect(v).toBeCloseTo(w[j]! * (x[r]![j]! - mean[j]!), 5)));
  });

  it("sampled KernelSHAP (12 features, 200 of 4094 coalitions) is still exact on an additive model", async () => {
    const F12 = 12;
    const x12 = Array.from({ length: 20 }, () => Array.from({ length: F12 }, () => Math.fround(rand())));
    const w12 = Array.from({ length: F12 }, (_, j) => (j % 3) - 1 + j / 10);
    const prepared = prepareRun({ model: { layers: [{ type: "linear", name: "fc", in_features: F12, out_features: 1 }] }, data: { train: { x: x12, y: x12.map(() => 0) } } });
    const e = await explainRun(instance, prepared, [{ name: "fc.weight", shape: [1, F12], data: Float32Array.from(w12) }, { name: "fc.bias", shape: [1], data: Float32Array.of(0) }],
      ExplainSpec.parse({ method: "kernel_shap", samples: 200, rows: x12.slice(0, 3), seed: 7 }));
    const mean = w12.map((_, j) => x12.reduce((s, row) => s + row[j]!, 0) / x12.length);
    e.attributions.forEach((a, r) => a.forEach((v, j) => expect(v).toBeCloseTo(w12[j]! * (x12[r]![j]! - mean[j]!), 4)));
  });
});

describe("integration points and coalitions", () => {
  it("legendreGauss(3) is +-sqrt(3/5), 0 with weights 5/9, 8/9, 5/9; n points integrate x^(2n-1) + x^(2n-2) exactly", async () => {
    const { nodes, weights } = legendreGauss(3);
    [-Math.sqrt(0.6), 0, Math.sqrt(0.6)].forEach((v, i) => expect(nodes[i]).toBeCloseTo(v, 15));
    [5 / 9, 8 / 9, 5 / 9].forEach((v, i) => expect(weights[i]).toBeCloseTo(v, 14));
    for (const n of [1, 2, 7, 50, 128]) {
      const g = legendreGauss(n);
      const integral = g.nodes.reduce((s, xk, k) => s + g.weights[k]! * (xk ** (2 * n - 1) + xk ** (2 * n - 2)), 0);
      expect(integral).toBeCloseTo(2 / (2 * n - 1), 12);
    }
  });

  it("riemann_trapezoid is Captum's: linspace(0, 1, n), 1/n halved at the ends", async () => {
    const p = integrationPoints("riemann_trapezoid", 5);
    expect([...p.alphas]).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect([...p.weights]).toEqual([0.1, 0.2, 0.2, 0.2, 0.1]);
  });

  it("with every coalition, the constrained least squares give the exact Shapley values of any game", async () => {
    const M = 6;
    const rand = lcg(5);
    const table = Array.from({ length: 2 ** M }, rand);
    const v = (mask: number) => table[mask]!;
    const c = shapCoalitions(M, 2048, new MT19937(0));
    expect(c.count).toBe(62);
    const ey = Float64Array.from({ length: c.count }, (_, i) => {
      let mask = 0;
      for (let j = 0; j < M; j++) if (c.masks[i * M + j]) mask |= 1 << j;
      return v(mask);
    });
    const phi = solveShap(c, ey, v(2 ** M - 1), v(0));
    const exact = exactShapley(M, v);
    phi.forEach((p, j) => expect(p).toBeCloseTo(exact[j]!, 10));
  });

  it("sampling keeps the budget, pairs complements and is seeded", async () => {
    const a = shapCoalitions(12, 300, new MT19937(1));
    const b = shapCoalitions(12, 300, new MT19937(1));
    expect(a.count).toBe(300);
    expect([...a.masks]).toEqual([...b.masks]);
    // the enumerated sizes 1 and 11 come first, each subset followed by its complement
    for (let i = 0; i < 24; i += 2) for (let j = 0; j < 12; j++) expect(a.masks[i * 12 + j]! + a.masks[(i + 1) * 12 + j]!).toBe(1);
  });
});

describe("bad explain input is a 422 naming the field", () => {
  const mlp = cases.find((c) => c.name === "mlp_gausslegendre_zeros")!;
  const encoder = cases.find((c) => c.name === "encoder_gausslegendre_zeros")!;
  const refuse = (request: TrainRequest, path: string) => {
    let error: unknown;
    try {
      prepareRun(request);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UnprocessableError);
    expect((error as UnprocessableError).errors.map((i) => i.path)).toContain(path);
  };
  it("rows of the wrong width", () => refuse({ ...mlp.request, explain: { method: "integrated_gradients", rows: [[1, 2, 3]] } }, "explain.rows[0]"));
  it("a target out of range", () => refuse({ ...mlp.request, explain: { method: "kernel_shap", target: 3 } }, "explain.target"));
  it("a baseline row of the wrong width", () => refuse({ ...mlp.request, explain: { method: "integrated_gradients", baseline: [0, 0] } }, "explain.baseline"));
  it("background rows of the wrong width", () => refuse({ ...mlp.request, explain: { method: "kernel_shap", background: [[0, 0, 0, 0, 0], [1]] } }, "explain.background[1]"));
  it("token ids outside the vocabulary", () => refuse({ ...encoder.request, explain: { method: "integrated_gradients", rows: [[1, 2, 3, 4, 5, 16]] } }, "explain.rows[0][5]"));
  it("an attention mask that does not match the rows", () =>
    refuse({ ...encoder.request, explain: { method: "integrated_gradients", rows: [[1, 2, 3, 4, 5, 6]], attention_mask: [[1, 1]] } }, "explain.attention_mask[0]"));
});

describe("train() with explain", () => {
  it("explains the fine-tuned weights after training, in result.explanations (CSV header names)", async () => {
    const header = "a,b,c,y\n";
    const rand = lcg(3);
    const lines = Array.from({ length: 40 }, () => {
      const r = [rand(), rand(), rand()].map((v) => v.toFixed(3));
      return `${r.join(",")},${(2 * +r[0]! - +r[1]!).toFixed(3)}\n`;
    });
    const { parseCsv } = await import("../../src/formats/dataset.js");
    const table = parseCsv(header + lines.join(""), { target: "y", field: "data.train" });
    const result = await train(
      {
        model: { layers: [{ type: "linear", name: "fc1", in_features: 3, out_features: 8 }, { type: "tanh" }, { type: "linear", name: "fc2", in_features: 8, out_features: 1 }] },
        data: { validation_split: 0.25 },
        training: { epochs: 3, batch_size: 8 },
        explain: { method: "integrated_gradients", steps: 16 },
      },
      { tables: { train: table } },
    );
    expect(result.status).toBe("succeeded");
    const e = result.explanations!;
    expect(FineTuneResult.parse(result).explanations).toEqual(e);
    expect(e.method).toBe("integrated_gradients");
    expect(e.feature_names).toEqual(["a", "b", "c"]);
    expect(e.attributions).toHaveLength(10); // the validation rows
    expect(e.convergence_delta).toHaveLength(10);
    expect(e.feature_importance).toHaveLength(3);
  });
});

describe("an adapter on the token embedding", async () => {
  const instance = await acquireKernels(runtime.module);
  it("attributes to the embedding plus its LoRA update: the same as the merged embedding", async () => {
    const encoder = cases.find((c) => c.name === "encoder_gausslegendre_zeros")!;
    const base = params(encoder.weights);
    const [num, dim] = base.find((t) => t.name === "emb.weight")!.shape as [number, number];
    const r = 2;
    const scaling = 4 / r;
    const rand = lcg(17);
    const A = Float32Array.from({ length: r * num }, () => Math.fround(rand() * 0.5)); // PEFT's lora_embedding_A [r, num]
    const B = Float32Array.from({ length: dim * r }, () => Math.fround(rand() * 0.5)); // lora_embedding_B [dim, r]
    const adapted = { ...encoder.request, adapter: { type: "lora", r, lora_alpha: 4, target_modules: ["emb"] } } as TrainRequest;
    const lora = await explainRun(instance, prepareRun(adapted), [...base, { name: "emb.lora_embedding_A", shape: [r, num], data: A }, { name: "emb.lora_embedding_B", shape: [dim, r], data: B }], prepareRun(adapted).request.explain!);
    // merged: W0 + scaling * (B @ A)^T, [num, dim]
    const merged = base.map((t) => {
      if (t.name !== "emb.weight") return t;
      const data = t.data.slice();
      for (let n = 0; n < num; n++) for (let d = 0; d < dim; d++) {
        let s = 0;
        for (let k = 0; k < r; k++) s += B[d * r + k]! * A[k * num + n]!;
        data[n * dim + d] = Math.fround(data[n * dim + d]! + Math.fround(scaling * s));
      }
      return { ...t, data };
    });
    const plain = await explainRun(instance, prepareRun(encoder.request), merged, prepareRun(encoder.request).request.explain!);
    const worst = worstRatio(lora.attributions.flat(), plain.attributions.flat());
    expect(worst.ratio).toBeLessThanOrEqual(1);
    // and the update matters: without it the attributions are others
    const without = await explainRun(instance, prepareRun(encoder.request), base, prepareRun(encoder.request).request.explain!);
    expect(worstRatio(lora.attributions.flat(), without.attributions.flat()).ratio).toBeGreaterThan(10);
  });
});

describe("Hugging Face models", async () => {
  const instance = await acquireKernels(runtime.module);
  const hf = (JSON.parse(readFileSync(new URL("../parity/fixtures/huggingface.json", import.meta.url), "utf8")) as {
    cases: { name: string; request: TrainRequest; expected: { weights: ExplainCase["weights"] } }[];
  }).cases;
  // DistilBERT's head is pre_classifier -> ReLU -> classifier: the kinks along the path slow the
  // quadrature down (algebraic, not exponential, convergence), so it needs more steps for 1%
  for (const [name, steps] of [["bert_seqcls_pairs", 128], ["distilbert_seqcls", 512]] as const) {
    it(`${name}: integrated gradients on the word embeddings converge (|delta| <= 1% of |f(x) - f(0)| at ${steps} steps)`, async () => {
      const c = hf.find((c) => c.name === name)!;
      const prepared = prepareRun({ ...c.request, explain: { method: "integrated_gradients", steps } } as TrainRequest);
      const e = await explainRun(instance, prepared, params(c.expected.weights), prepared.request.explain!);
      expect(e.feature_names[0]).toBe("token0");
      e.attributions.forEach((a, r) => {
        const change = a.reduce((s, v) => s + v, 0) - e.convergence_delta![r]!;
        expect(Math.abs(e.convergence_delta![r]!)).toBeLessThanOrEqual(0.01 * Math.abs(change) + 1e-6);
      });
    });
  }

  it("a causal LM (one prediction per token) is refused with a 422", () => {
    const c = hf.find((c) => c.name === "gpt2_causal_lm")!;
    expect(() => prepareRun({ ...c.request, explain: { method: "integrated_gradients" } } as TrainRequest)).toThrow(/one prediction per row/);
  });
});

describe("KernelSHAP on token rows", async () => {
  const instance = await acquireKernels(runtime.module);
  it("with every coalition of 6 token positions it is the exact Shapley value of v(S) = mean_b f(ids_S, b_rest) under the row's mask", async () => {
    const c = cases.find((c) => c.name === "encoder_gausslegendre_zeros")!;
    const background = [[3, 5, 7, 9, 11, 13], [2, 2, 2, 2, 2, 2], [15, 14, 1, 0, 0, 0]];
    const row = [7, 11, 15, 1, 6, 0];
    const mask = [1, 1, 1, 1, 1, 0];
    const request = { ...c.request, explain: { method: "kernel_shap", rows: [row], attention_mask: [mask], background, target: 2 } } as TrainRequest;
    const prepared = prepareRun(request);
    const e = await explainRun(instance, prepared, params(c.weights), prepared.request.explain!);
    // the value function, evaluated directly with the same network
    const compiled = compileForExplanation(prepared);
    const net = new ExplainNetwork(instance, compiled, explainWeights(prepared, compiled, params(c.weights)), 64);
    const v = (S: number) => {
      const mixed = new Float32Array(background.length * 6);
      background.forEach((b, i) => b.forEach((id, t) => (mixed[i * 6 + t] = S & (1 << t) ? row[t]! : id)));
      const out = net.outputs(mixed, background.length, { mask: Float32Array.from(background.flatMap(() => mask)), types: null });
      return background.reduce((s, _, i) => s + out[i * 3 + 2]!, 0) / background.length;
    };
    const exact = exactShapley(6, v);
    const worst = worstRatio(e.attributions[0]!, [...exact]);
    console.log(`[explain ${runtime.variant}] kernel_shap on token rows vs exact Shapley: worst ${(worst.ratio * 100).toFixed(1)}% of tolerance`);
    expect(worst.ratio).toBeLessThanOrEqual(1);
    expect(e.feature_names).toEqual(["token0", "token1", "token2", "token3", "token4", "token5"]);
  });
});
