/**
 * Data-parallel training on worker_threads (src/node/threads.ts): PyTorch parity within the
 * tolerance on 2 threads, determinism, and a busy pool falling back to one thread.
 * The helper threads run the compiled dist/ modules, which `npm test` builds first.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prepareRun, type ExactTrainRequest, type TrainRequest } from "../../src/engine/train.js";
import { ThreadPool, train } from "../../src/node/index.js";
import { GROUPS, PRIVACY_GROUPS, replay, type ParityCase } from "../parity/compare.js";
import { classifierRequest, seedRequest } from "../helpers.js";
import { decodeBase64 } from "../../src/formats/base64.js";
import { decodeF16, encodeF16 } from "../../src/formats/dtype.js";
import { parseSafetensors, readTensorF32, writeSafetensors } from "../../src/formats/safetensors.js";

let pool: ThreadPool;
beforeAll(async () => {
  pool = await ThreadPool.create(2, { minFlopsPerStep: 0 }); // every run uses the threads
});
afterAll(async () => {
  await pool.close();
});

describe("PyTorch parity on 2 threads", () => {
  for (const group of GROUPS) {
    const cases = (JSON.parse(readFileSync(new URL(`../parity/fixtures/${group}.json`, import.meta.url), "utf8")) as { cases: ParityCase[] }).cases;
    for (const c of cases) {
      it(`${group}/${c.name}`, async () => {
        const { result, worst } = await replay(c, (request) => train(request, { parallel: pool }));
        // BatchNorm mixes the rows of a batch: such a model trains on one thread
        expect(result.engine.threads).toBe(prepareRun(c.request as TrainRequest).model.couplesRows ? 1 : 2);
        expect(result.metrics.steps).toBe(c.expected.steps);
        expect(result.metrics.best_epoch).toBe(c.expected.best_epoch);
        expect(worst).toBeLessThanOrEqual(1);
      });
    }
  }
});

describe("DP-SGD on 2 threads: each thread the per-sample norms of its shard (PyTorch per-sample-loop parity)", () => {
  for (const group of PRIVACY_GROUPS) {
    const cases = (JSON.parse(readFileSync(new URL(`../parity/fixtures/${group}.json`, import.meta.url), "utf8")) as { cases: ParityCase[] }).cases;
    for (const c of cases) {
      it(`${group}/${c.name}`, async () => {
        const { result, worst } = await replay(c, (request) => train(request, { parallel: pool }));
        expect(result.engine.threads).toBe(2);
        expect(result.metrics.steps).toBe(c.expected.steps);
        console.log(`[privacy parity, 2 threads] ${c.name}: worst ${(worst * 100).toFixed(1)}% of tolerance`);
        expect(worst).toBeLessThanOrEqual(1);
      });
    }
  }

  it("a noisy Poisson run on 2 threads: the noise and the batches of one thread, so the same weights up to rounding", async () => {
    const request = { ...classifierRequest(96, { epochs: 3, batch_size: 16, seed: 11 }), privacy: { type: "dp-sgd", max_grad_norm: 0.5, noise_multiplier: 1.1 } } as TrainRequest;
    const [one, two] = [await train(request), await train(request, { parallel: pool })];
    expect(two.engine.threads).toBe(2);
    expect(two.metrics.privacy).toEqual(one.metrics.privacy);
    const a = parseSafetensors(decodeBase64(one.weights));
    const b = parseSafetensors(decodeBase64(two.weights));
    let worst = 0;
    for (const name of a.tensors.keys()) {
      const [x, y] = [readTensorF32(a, name), readTensorF32(b, name)];
      for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
    }
    expect(worst).toBeLessThan(1e-4);
  });
});

describe("threads", () => {
  it("the same request gives bit-identical weights on the same number of threads, dropout included", async () => {
    const request = seedRequest(300, {
      model: {
        layers: [
          { type: "linear", in_features: 10, out_features: 32 },
          { type: "dropout", p: 0.2 },
          { type: "gelu" },
          { type: "linear", in_features: 32, out_features: 1 },
        ],
      },
      training: { epochs: 3, batch_size: 33, shuffle: true, seed: 5 },
    });
    const [a, b] = [await train(request, { parallel: pool }), await train(request, { parallel: pool })];
    expect(a.engine.threads).toBe(2);
    expect(a.weights).toBe(b.weights);
  });

  it("a float16 base on 2 threads: each thread widens into its own scratch, as the float32 run of the rounded base", async () => {
    const request = seedRequest(300, { trainable: ["fc2"], training: { epochs: 2, batch_size: 64, seed: 3 } } as Partial<ExactTrainRequest>);
    const given = parseSafetensors(decodeBase64((await train({ ...request, training: { epochs: 1, seed: 3, optimizer: { type: "sgd", lr: 0 } } } as TrainRequest)).weights));
    const weights = writeSafetensors([...given.tensors].map(([name, info]) => {
      const data = readTensorF32(given, name);
      if (!name.startsWith("fc1.")) return { name, shape: [...info.shape], data };
      const bits = new Uint16Array(data.length);
      encodeF16(data, bits);
      decodeF16(bits, data);
      return { name, shape: [...info.shape], data };
    }));
    const half = await train({ ...request, model: { ...request.model, base_dtype: "float16" } } as TrainRequest, { parallel: pool });
    const reference = await train({ ...request, weights } as TrainRequest, { parallel: pool });
    expect(half.engine.threads).toBe(2);
    expect(half.metrics.history).toEqual(reference.metrics.history);
    expect(half.weights).toBe(reference.weights);
  });

  it("a batch-norm model trains on one thread with a pool (its statistics mix the rows), as without one", async () => {
    const request = seedRequest(300, {
      model: {
        layers: [
          { type: "linear", in_features: 10, out_features: 32, bias: false },
          { type: "batch_norm1d", num_features: 32 },
          { type: "gelu" },
          { type: "linear", in_features: 32, out_features: 1 },
        ],
      },
      training: { epochs: 3, batch_size: 33, shuffle: true, seed: 5 },
    });
    expect(prepareRun(request).model.couplesRows).toBe(true);
    const [pooled, alone] = [await train(request, { parallel: pool }), await train(request)];
    expect(pooled.engine.threads).toBe(1);
    expect(pooled.weights).toBe(alone.weights);
    // a layer norm keeps rows apart: the same model with it uses both threads
    const layerNorm = structuredClone(request);
    layerNorm.model.layers![1] = { type: "layer_norm", normalized_shape: 32 };
    expect((await train(layerNorm, { parallel: pool })).engine.threads).toBe(2);
  });

  it("a run that finds the pool busy trains on one thread, with the same result as without threads", async () => {
    const request = classifierRequest(200, { epochs: 5, shuffle: false });
    const alone = await train(request);
    const [first, second] = await Promise.all([
      train(request, { parallel: pool, onProgress: () => new Promise((r) => setTimeout(r, 1)) }),
      train(request, { parallel: pool }),
    ]);
    expect([first.engine.threads, second.engine.threads].sort()).toEqual([1, 2]);
    const single = first.engine.threads === 1 ? first : second;
    expect(single.weights).toBe(alone.weights);
  });
});
