/**
 * DP-SGD (request `privacy`, issue 14): parity against a plain-PyTorch per-sample loop
 * (test/parity/privacy.py, σ = 0 and Poisson sampling off, so the update is deterministic) on the
 * WASM kernel core and the TypeScript twins; the noise's variance; Poisson sampling with empty
 * batches; the accounting in the result; the refusals.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { loadNodeRuntime, train } from "../../src/node/index.js";
import { prepareRun, type TrainRequest } from "../../src/engine/train.js";
import { decodeBase64 } from "../../src/formats/base64.js";
import { parseSafetensors, readTensorF32 } from "../../src/formats/safetensors.js";
import { writeSafetensors } from "../../src/formats/safetensors.js";
import { privacyReport, rdpEpsilon } from "../../src/engine/privacy/index.js";
import { tiedParameters } from "../../src/engine/privacy/ghost.js";
import { FineTuneResult } from "../../src/schema/result.js";
import { replay, type ParityCase } from "../parity/compare.js";
import { classifierRequest } from "../helpers.js";

const cases = (JSON.parse(readFileSync(new URL("../parity/fixtures/privacy.json", import.meta.url), "utf8")) as { cases: ParityCase[] }).cases;
const variant = (await loadNodeRuntime()).variant;

for (const kernel of ["wasm", "js-reference"] as const) {
  describe(`DP-SGD parity with a PyTorch per-sample loop (${kernel === "wasm" ? variant : kernel})`, () => {
    for (const c of cases) {
      it(`${c.name}: ${c.description}`, async () => {
        const { result, worst, report } = await replay(c, (request) => train(request, { kernel }));
        console.log(`[privacy parity ${kernel}] ${c.name}: worst ${(worst * 100).toFixed(1)}% of tolerance | ${report.join(", ")}`);
        expect(result.status).toBe("succeeded");
        expect(result.metrics.steps).toBe(c.expected.steps);
        expect(worst).toBeLessThanOrEqual(1);
        // σ = 0: no finite ε, reported as null
        expect(result.metrics.privacy).toMatchObject({ epsilon: null, noise_multiplier: 0, steps: c.expected.steps, accountant: "rdp" });
        expect(result.metrics.history.every((h) => h.epsilon === null)).toBe(true);
      });
    }
  });
}

/**
 * A model whose every per-sample gradient is zero (weights 0, bias 0, targets 0 under MSE), one
 * SGD step at lr 1 over the whole table without Poisson sampling: the new weights are exactly
 * -noise / int(N·q), so w·(-B)/(σC) must be standard normal in each of the 64·64 + 64 = 4160
 * coordinates.
 */
function zeroGradientRequest(secure: boolean): TrainRequest {
  const rows = 20;
  const weights = writeSafetensors([
    { name: "fc.weight", shape: [64, 64], data: new Float32Array(64 * 64) },
    { name: "fc.bias", shape: [64], data: new Float32Array(64) },
  ]);
  return {
    model: { layers: [{ type: "linear", name: "fc", in_features: 64, out_features: 64 }] },
    weights,
    data: { train: { x: Array.from({ length: rows }, (_, i) => Array.from({ length: 64 }, (_, j) => ((i * 7 + j) % 5) - 2)), y: Array.from({ length: rows }, () => new Array(64).fill(0)) } },
    training: { epochs: 1, batch_size: rows, shuffle: false, seed: 11, loss: { type: "mse" }, optimizer: { type: "sgd", lr: 1 } },
    privacy: { type: "dp-sgd", max_grad_norm: 0.75, noise_multiplier: 1.3, poisson_sampling: false, secure_mode: secure },
  };
}

async function standardisedNoise(secure: boolean): Promise<Float64Array> {
  const result = await train(zeroGradientRequest(secure), { kernel: "wasm" });
  expect(result.status).toBe("succeeded");
  const file = parseSafetensors(decodeBase64(result.weights));
  const all = [...readTensorF32(file, "fc.weight", "weights"), ...readTensorF32(file, "fc.bias", "weights")];
  const B = 20; // int(N · batch_size/N)
  return Float64Array.from(all, (w) => (-w * B) / (1.3 * 0.75));
}

function moments(z: Float64Array): { mean: number; variance: number } {
  const mean = z.reduce((a, v) => a + v, 0) / z.length;
  const variance = z.reduce((a, v) => a + (v - mean) ** 2, 0) / (z.length - 1);
  return { mean, variance };
}

describe("DP-SGD noise", () => {
  // n = 4160 standard normal samples: the sample mean has sd 1/√n ≈ 0.0155 and the sample variance
  // sd √(2/(n-1)) ≈ 0.0219; the bounds are 5 of those (a correct sampler fails with p < 1e-6), and
  // a wrong scale (σC instead of σC/B, σ instead of σC, a missing √2 in Box-Muller) misses by far more.
  const n = 64 * 64 + 64;
  const meanBound = 5 / Math.sqrt(n);
  const varianceBound = 5 * Math.sqrt(2 / (n - 1));

  it("has variance (σC)² per coordinate before the division by int(N·q), at a fixed seed", async () => {
    const z = await standardisedNoise(false);
    expect(z.length).toBe(n);
    const { mean, variance } = moments(z);
    console.log(`[privacy noise] seeded: mean ${mean.toFixed(4)} (bound ${meanBound.toFixed(4)}), variance ${variance.toFixed(4)} (bound 1 ± ${varianceBound.toFixed(4)})`);
    expect(Math.abs(mean)).toBeLessThan(meanBound);
    expect(Math.abs(variance - 1)).toBeLessThan(varianceBound);
    // tails: about 4.6% of a standard normal lies beyond ±2 (binomial sd 0.33%, bound 5 sd)
    const beyond = z.filter((v) => Math.abs(v) > 2).length / n;
    expect(Math.abs(beyond - 0.0455)).toBeLessThan(5 * Math.sqrt((0.0455 * 0.9545) / n));
  });

  it("is reproducible from the seed, and secure_mode draws from crypto.getRandomValues with the same variance", async () => {
    const a = await standardisedNoise(false);
    const b = await standardisedNoise(false);
    expect(a).toEqual(b);
    const s = await standardisedNoise(true);
    expect(s).not.toEqual(a);
    const { mean, variance } = moments(s);
    expect(Math.abs(mean)).toBeLessThan(meanBound);
    expect(Math.abs(variance - 1)).toBeLessThan(varianceBound);
  });
});

describe("DP-SGD runs", () => {
  it("samples Poisson batches (empty ones included: still steps) and reports ε per epoch and in metrics.privacy", async () => {
    const request = classifierRequest(100, { epochs: 3, batch_size: 2, seed: 5 });
    request.privacy = { type: "dp-sgd", max_grad_norm: 1, noise_multiplier: 1.1 };
    const stepLosses: number[] = [];
    const result = await train(request, { kernel: "wasm", stepEvents: true, onProgress: (e) => void (e.type === "step" && stepLosses.push(e.loss)) });
    expect(FineTuneResult.safeParse(result).success).toBe(true);
    // an empty batch reports loss 0 (a cross-entropy over rows never does); 150 steps at P(empty) 13%: some
    expect(stepLosses).toHaveLength(150);
    const empty = stepLosses.filter((l) => l === 0).length;
    expect(empty).toBeGreaterThan(5);
    expect(empty).toBeLessThan(45);
    expect(result.status).toBe("succeeded");
    // q = 2/100: 50 steps per epoch whatever the batches drew (P(empty) = 0.98^100 ≈ 13%)
    expect(result.metrics.steps).toBe(150);
    const want = rdpEpsilon({ sampleRate: 0.02, noiseMultiplier: 1.1, steps: 150 }, 0.01);
    expect(result.metrics.privacy).toEqual({ epsilon: want, delta: 0.01, noise_multiplier: 1.1, sample_rate: 0.02, steps: 150, accountant: "rdp" });
    expect(result.metrics.history.map((h) => h.epsilon)).toEqual([50, 100, 150].map((s) => rdpEpsilon({ sampleRate: 0.02, noiseMultiplier: 1.1, steps: s }, 0.01)));
    expect(result.metrics.history.every((h) => Number.isFinite(h.train_loss))).toBe(true);
  });

  it("finds σ for target_epsilon over the run's steps and ends within 0.01 below it", async () => {
    const request = classifierRequest(200, { epochs: 2, batch_size: 20, seed: 3 });
    request.privacy = { type: "dp-sgd", max_grad_norm: 1, target_epsilon: 3, delta: 1e-3 };
    const prepared = prepareRun(request);
    const sigma = prepared.privacy!.noiseMultiplier;
    expect(privacyReport(prepared.privacy!, prepared.plan.steps).epsilon).toBeLessThanOrEqual(3);
    const result = await train(request, { kernel: "wasm" });
    expect(result.metrics.privacy!.noise_multiplier).toBe(sigma);
    expect(result.metrics.privacy!.epsilon!).toBeLessThanOrEqual(3);
    expect(result.metrics.privacy!.epsilon!).toBeGreaterThan(2.99);
  });

  it("defaults δ to 1/N rounded down to a power of ten", () => {
    const request = classifierRequest(120);
    request.privacy = { type: "dp-sgd", max_grad_norm: 1, noise_multiplier: 1 };
    expect(prepareRun(request).privacy!.delta).toBe(1e-3);
  });
});

describe("DP-SGD refusals", () => {
  const base = (): TrainRequest => ({ ...classifierRequest(40), privacy: { type: "dp-sgd", max_grad_norm: 1, noise_multiplier: 1 } });
  const issues = (request: TrainRequest) => {
    try {
      prepareRun(request);
    } catch (e) {
      return { status: (e as { status: number }).status, errors: (e as { errors: { path: string; message: string }[] }).errors };
    }
    throw new Error("accepted");
  };

  it("refuses batch norm with a 422 naming the layer, as Opacus's validator does", () => {
    const request = base();
    request.model = {
      layers: [
        { type: "linear", name: "fc1", in_features: 4, out_features: 8 },
        { type: "sequential", name: "block", layers: [{ type: "batch_norm1d", name: "bn", num_features: 8 }, { type: "relu" }] },
        { type: "linear", name: "fc2", in_features: 8, out_features: 3 },
      ],
    };
    const { status, errors } = issues(request);
    expect(status).toBe(422);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.path).toBe("model.layers[1].layers[0]");
    expect(errors[0]!.message).toMatch(/batch_norm1d "bn".*per-sample gradients do not exist/);
  });

  it("refuses clip_grad_norm, gradient checkpointing and drop_last with Poisson sampling, naming each field", () => {
    const request = base();
    request.training = { ...request.training, clip_grad_norm: 1, gradient_checkpointing: true, drop_last: true };
    const { status, errors } = issues(request);
    expect(status).toBe(422);
    expect(errors.map((e) => e.path).sort()).toEqual(["training.clip_grad_norm", "training.drop_last", "training.gradient_checkpointing"]);
  });

  it('refuses lr "auto": its range test would train on the private data without noise', () => {
    const request = base();
    request.training = { ...request.training, optimizer: { type: "adam", lr: "auto" } };
    const { status, errors } = issues(request);
    expect(status).toBe(422);
    expect(errors).toEqual([{ path: "training.optimizer.lr", message: expect.stringMatching(/range test .*without clipping or noise/) }]);
  });

  it("needs exactly one of noise_multiplier and target_epsilon, and knows no other field (400)", () => {
    const both = base();
    both.privacy = { type: "dp-sgd", max_grad_norm: 1, noise_multiplier: 1, target_epsilon: 2 };
    expect(issues(both)).toMatchObject({ status: 400, errors: [{ path: "privacy.noise_multiplier" }] });
    const neither = base();
    neither.privacy = { type: "dp-sgd", max_grad_norm: 1 };
    expect(issues(neither)).toMatchObject({ status: 400, errors: [{ path: "privacy.noise_multiplier" }] });
    const unknown = base();
    (unknown.privacy as Record<string, unknown>).clipping = "flat";
    expect(issues(unknown)).toMatchObject({ status: 400, errors: [{ path: "privacy.clipping" }] });
  });

  it("refuses a budget no σ meets, at privacy.target_epsilon", () => {
    const request = base();
    request.privacy = { type: "dp-sgd", max_grad_norm: 1, target_epsilon: 1e-9, delta: 1e-5 };
    expect(issues(request)).toMatchObject({ status: 422, errors: [{ path: "privacy.target_epsilon" }] });
  });

  it("takes tied trainable parameters whose uses are linear and embedding ops (a Hub GPT-2's lm_head is wte)", async () => {
    // the layer list cannot tie weights; a Hub GPT-2's lm_head is tied to wte (the gpt2_tied parity case trains one)
    const gpt2 = {
      model: { huggingface: { task: "causal-lm", config: { model_type: "gpt2", architectures: ["GPT2LMHeadModel"], vocab_size: 16, n_positions: 8, n_embd: 8, n_layer: 1, n_head: 2 } } },
      data: { train: { input_ids: [[1, 2, 3, 4], [2, 3, 4, 5]] } },
      training: { epochs: 1, batch_size: 2 },
      privacy: { type: "dp-sgd", max_grad_norm: 1, noise_multiplier: 1 },
    } as unknown as TrainRequest;
    const prepared = prepareRun(gpt2);
    expect(prepared.privacy).not.toBeNull();
    const wte = prepared.model.state.findIndex((t) => t.name === "transformer.wte.weight");
    expect([...tiedParameters(prepared.model)]).toEqual([wte]);
  });

  it("kernel \"auto\" without a device runs a private request on the WASM core", async () => {
    const result = await train(base(), { kernel: "auto" });
    expect(result.status).toBe("succeeded");
    expect(result.engine.kernel).toBe(variant);
  });
});


describe("examples/dp-digits", () => {
  it("compare.mjs reports the held-out accuracy without privacy and with DP-SGD at ε ≈ 3", async () => {
    const { execFileSync } = await import("node:child_process");
    const root = new URL("../../", import.meta.url);
    // runs on dist/ (npm test builds it first)
    const out = execFileSync(process.execPath, [new URL("examples/dp-digits/compare.mjs", root).pathname], { encoding: "utf8", cwd: root.pathname });
    const plain = Number(/^non-private\s+held-out accuracy (\S+)/m.exec(out)![1]);
    const [, accuracy, epsilon] = /^DP-SGD\s+held-out accuracy (\S+)\s+ε = (\S+) at δ = 0\.001/m.exec(out)!;
    const pretrained = Number(/^pretrained\s+held-out accuracy (\S+)/m.exec(out)![1]);
    expect(plain).toBeGreaterThan(0.9);
    expect(Number(epsilon)).toBeLessThanOrEqual(3);
    expect(Number(epsilon)).toBeGreaterThan(2.99);
    // private fine-tuning still helps the new user, and costs accuracy against the non-private run
    expect(Number(accuracy)).toBeGreaterThan(pretrained + 0.3);
    expect(Number(accuracy)).toBeLessThan(plain);
  });
});

describe("DP-SGD plan", () => {
  it("counts the second forward and backward pass of every row in plan.flops, and the clipped sum in memory_bytes", () => {
    const plain = prepareRun(classifierRequest(120));
    const request = classifierRequest(120);
    request.privacy = { type: "dp-sgd", max_grad_norm: 1, noise_multiplier: 1 };
    const dp = prepareRun(request);
    const m = dp.model;
    expect(dp.plan.flops - plain.plan.flops).toBe(10 * 120 * (m.forwardFlopsPerRow + m.backwardFlopsPerRow));
    expect(dp.plan.memory_bytes - plain.plan.memory_bytes).toBe(4 * m.trainableCount);
  });
});
