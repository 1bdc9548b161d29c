/**
 * Data-parallel training on worker_threads (src/node/threads.ts): PyTorch parity within the
 * tolerance on 2 threads, determinism, and a busy pool falling back to one thread.
 * The helper threads run the compiled dist/ modules, which `npm test` builds first.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prepareRun, type ExactTrainRequest, type TrainRequest } from "../../src/engine/train.js";
import { ThreadPool, loadNodeRuntime, train } from "../../src/node/index.js";
import { UPDATE_KERNELS, callUpdateRange, elementRange } from "../../src/node/threads.js";
import { instantiateKernels } from "../../src/engine/kernels.js";
import { Arena } from "../../src/engine/arena.js";
import { GROUPS, PRIVACY_GROUPS, replay, type ParityCase } from "../parity/compare.js";
import { classifierRequest, seedRequest } from "../helpers.js";
import { decodeBase64, encodeBase64 } from "../../src/formats/base64.js";
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

  it("a diverging run on 2 threads ends as diverged with its last finite weights", async () => {
    const request = seedRequest(256, { training: { epochs: 50, batch_size: 64, optimizer: { type: "sgd", lr: 1e6 }, shuffle: false } });
    const result = await train(request, { parallel: pool });
    expect(result.engine.threads).toBe(2);
    expect(result.status).toBe("diverged");
    const file = parseSafetensors(decodeBase64(result.weights));
    for (const name of Object.keys(file.tensors)) expect(readTensorF32(file, name).every(Number.isFinite)).toBe(true);
  });
  it("a weight that becomes NaN in the helper thread's range of the update ends the run as diverged, as on one thread", async () => {
    // units 7-9 of fc1 dead (bias -1000): their gradients are 0, and Adam with eps 0 makes 0/0.
    // Their parameters (fc1 rows 7-9, biases, fc2 weights: elements 70-119 of 121) all lie in
    // the second thread's range (elementRange: 64-121), so only that thread's check can see it.
    const request = seedRequest(256, { training: { epochs: 2, batch_size: 64, optimizer: { type: "adam", lr: 1e-3, eps: 0 }, shuffle: false } } as Partial<ExactTrainRequest>);
    const given = parseSafetensors(decodeBase64((await train({ ...request, training: { epochs: 1, optimizer: { type: "sgd", lr: 0 } } } as TrainRequest)).weights));
    const weights = encodeBase64(writeSafetensors([...given.tensors].map(([name, info]) => {
      const data = readTensorF32(given, name);
      if (name === "fc1.bias") data.fill(-1000, 7);
      return { name, shape: [...info.shape], data };
    })));
    expect(elementRange(121, 2, 1)).toEqual([64, 121]);
    const [threaded, alone] = [await train({ ...request, weights } as TrainRequest, { parallel: pool }), await train({ ...request, weights } as TrainRequest)];
    expect(threaded.engine.threads).toBe(2);
    expect(alone.status).toBe("diverged");
    expect(threaded.status).toBe("diverged");
    expect(threaded.error?.message).toBe(alone.error?.message);
    expect(threaded.error?.message).toMatch(/a weight became non-finite at step 1/);
    expect(threaded.weights).toBe(alone.weights); // the given weights: no step was kept
  });

  it("a gradient that overflows in the helper thread's range of the sum ends the run as diverged, as on one thread", async () => {
    // fc1 all zero but for units 7-9, whose bias 1e-38 makes h tiny and positive; fc2's weights
    // 3e38: the output is finite (30) but dL/dh = 3e38 per row, so fc1's rows 7-9 of gradient
    // (elements 70-99 of 121, all in the second thread's range) sum to Infinity
    const request = seedRequest(256, { training: { epochs: 2, batch_size: 64, optimizer: { type: "sgd", lr: 1e-3 }, shuffle: false } } as Partial<ExactTrainRequest>);
    const given = parseSafetensors(decodeBase64((await train({ ...request, training: { epochs: 1, optimizer: { type: "sgd", lr: 0 } } } as TrainRequest)).weights));
    const weights = encodeBase64(writeSafetensors([...given.tensors].map(([name, info]) => {
      const data = readTensorF32(given, name);
      if (name === "fc1.weight") data.fill(0);
      if (name === "fc1.bias") data.fill(0).fill(1e-38, 7);
      if (name === "fc2.weight") data.fill(3e38);
      if (name === "fc2.bias") data.fill(0);
      return { name, shape: [...info.shape], data };
    })));
    const [threaded, alone] = [await train({ ...request, weights } as TrainRequest, { parallel: pool }), await train({ ...request, weights } as TrainRequest)];
    expect(threaded.engine.threads).toBe(2);
    expect(alone.error?.message).toMatch(/a gradient became non-finite at step 1/);
    expect(threaded.status).toBe("diverged");
    expect(threaded.error?.message).toBe(alone.error?.message);
    expect(threaded.weights).toBe(alone.weights);
  });
});

describe("the update shared out over threads", () => {
  // each optimizer's kernel, called on the ranges of 2 or 3 threads, against one call: bit for bit
  const calls: Record<(typeof UPDATE_KERNELS)[number], (p: number[], n: number) => number[]> = {
    // params, grads, momentum_buffer, n, lr, momentum, 1 - dampening, weight_decay, nesterov, maximize, first
    sgd_step: ([w, g, b], n) => [w!, g!, b!, n, 0.1, 0.9, 1, 0.01, 1, 0, 0],
    // params, grads, m, v, vmax, n, step size, beta1, 1 - beta1, beta2, 1 - beta2, sqrt(bc2), eps, wd, decay, amsgrad, maximize, decoupled
    adam_step: ([w, g, m, v, vmax], n) => [w!, g!, m!, v!, vmax!, n, 1e-2, 0.9, 0.1, 0.999, 0.001, 0.3, 1e-8, 0.01, 0.999, 1, 0, 1],
    // params, grads, square_avg, grad_avg, momentum_buffer, n, lr, alpha, 1 - alpha, eps, wd, momentum, centered, maximize
    rmsprop_step: ([w, g, s, a, b], n) => [w!, g!, s!, a!, b!, n, 1e-2, 0.99, 0.01, 1e-8, 0.01, 0.9, 1, 0],
    // params, grads, sum, n, clr, eps, wd, maximize
    adagrad_step: ([w, g, s], n) => [w!, g!, s!, n, 1e-2, 1e-10, 0.01, 0],
  };
  for (const kernel of UPDATE_KERNELS) {
    it(`${kernel}: the ranges of 2 and 3 threads give one call's result`, async () => {
      const memory = new WebAssembly.Memory({ initial: 64 });
      const k = await instantiateKernels((await loadNodeRuntime()).module, memory);
      const arena = new Arena(memory, k.heap_base());
      for (const n of [0, 1, 17, 1000, 4099]) {
        for (const T of [2, 3]) {
          const regions = [0, 1, 2, 3, 4].map(() => arena.alloc(Math.max(n, 1)));
          const twins = [0, 1, 2, 3, 4].map(() => arena.alloc(Math.max(n, 1)));
          let seed = n + T;
          const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
          regions.forEach((r, i) => {
            const values = Float32Array.from({ length: r.length }, () => (i >= 2 ? Math.abs(rnd()) : rnd()));
            arena.f32(r).set(values);
            arena.f32(twins[i]!).set(values);
          });
          const whole = calls[kernel](regions.map((r) => r.ptr), n);
          (k[kernel] as (...a: number[]) => void)(...whole);
          const split = calls[kernel](twins.map((r) => r.ptr), n);
          const covered: number[] = [];
          for (let t = 0; t < T; t++) {
            const [start, end] = elementRange(n, T, t);
            if (end > start) callUpdateRange(k, kernel, split, start, end);
            covered.push(end - start);
          }
          expect(covered.reduce((a, b) => a + b, 0)).toBe(n);
          regions.forEach((r, i) => expect(new Uint32Array(arena.f32(twins[i]!).buffer, twins[i]!.ptr, n)).toEqual(new Uint32Array(arena.f32(r).buffer, r.ptr, n)));
        }
      }
    });
  }
  it("ranges are whole 64-byte lines, in order, covering every element once", () => {
    for (const n of [0, 1, 15, 16, 17, 203_530]) {
      for (const T of [1, 2, 3, 4]) {
        let next = 0;
        for (let t = 0; t < T; t++) {
          const [start, end] = elementRange(n, T, t);
          expect(start).toBe(next);
          if (end < n) expect(end % 16).toBe(0);
          next = end;
        }
        expect(next).toBe(n);
      }
    }
  });
});
