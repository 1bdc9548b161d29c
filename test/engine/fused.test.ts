/**
 * The fused step (src/engine/program.ts, wasm/assembly/program.ts) against the JS-driven step:
 * the same request trained both ways ends with bit-identical weights, losses and metrics, and
 * faults, cancellation and budgets end runs as they do step by step.
 */
import { describe, expect, it } from "vitest";
import { loadNodeRuntime, train } from "../../src/node/index.js";
import { prepareRun } from "../../src/engine/prepare.js";
import { createWasmBackend } from "../../src/engine/wasm-backend.js";
import { acquireKernels, releaseKernels } from "../../src/engine/kernels.js";
import { defaultInit } from "../../src/engine/init.js";
import type { TrainOptions } from "../../src/engine/run-types.js";
import type { TrainingBackend } from "../../src/engine/backend.js";
import type { PreparedRun } from "../../src/engine/prepare.js";
import { runLoop } from "../../src/engine/loop.js";
import type { ExactTrainRequest as TrainRequest } from "../../src/engine/train.js";
import { classifierRequest, seedRequest } from "../helpers.js";

type Result = Awaited<ReturnType<typeof train>>;

/** Trains a request fused and JS-driven, and the step events of each. */
async function both(request: TrainRequest, options: TrainOptions = {}): Promise<{ fused: Result; stepped: Result; events: [unknown[], unknown[]] }> {
  const events: [unknown[], unknown[]] = [[], []];
  const fused = await train(request, { ...options, stepEvents: true, onProgress: (e) => void events[0].push(e) });
  const stepped = await train(request, { ...options, fused: false, stepEvents: true, onProgress: (e) => void events[1].push(e) });
  return { fused, stepped, events };
}

/** Everything but what measures time. */
function comparable(r: Result) {
  const { duration_ms: _d, samples_per_second: _s, ...metrics } = r.metrics;
  return { status: r.status, error: r.error, weights: r.weights, metrics };
}

const CONFIGS: { name: string; request: () => TrainRequest }[] = [
  { name: "the seed MLP: MSE, Adam, shuffle off (the tiny bench)", request: () => seedRequest(1000, { training: { epochs: 3, batch_size: 32, optimizer: { type: "adam", lr: 1e-3 }, loss: { type: "mse" }, shuffle: false } }) },
  {
    name: "a last batch of 8 rows, shuffled, SGD with Nesterov momentum and weight decay, L2 clipping, a step schedule",
    request: () =>
      seedRequest(200, {
        training: {
          epochs: 4, batch_size: 64, shuffle: true, seed: 5, loss: { type: "huber", delta: 0.5 },
          optimizer: { type: "sgd", lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 1e-3 },
          clip_grad_norm: 0.5, schedule: { type: "step", step_size: 2, gamma: 0.5 },
        },
      }),
  },
  {
    name: "cross-entropy with label smoothing, AdamW, inf-norm clipping, a cosine schedule per step, validation",
    request: () => {
      const r = classifierRequest(150, {
        epochs: 3, batch_size: 16, shuffle: true, seed: 9, loss: { type: "cross_entropy", label_smoothing: 0.1 },
        optimizer: { type: "adamw", lr: 1e-2, weight_decay: 0.05 }, clip_grad_norm: { max_norm: 0.3, norm_type: "inf" },
        schedule: { type: "cosine", interval: "step" },
      } as TrainRequest["training"]);
      const data = r.data.train as { x: number[][]; y: (number | number[])[] };
      return { ...r, data: { train: { x: data.x.slice(0, 120), y: data.y.slice(0, 120) }, validation: { x: data.x.slice(120), y: data.y.slice(120) } } };
    },
  },
  {
    name: "BCE with logits, tanh and GELU, LayerNorm, RMSprop (centered), early stopping",
    request: () =>
      seedRequest(300, {
        model: {
          layers: [
            { type: "linear", name: "fc1", in_features: 10, out_features: 12 },
            { type: "layer_norm", name: "norm", normalized_shape: 12 },
            { type: "gelu" },
            { type: "linear", name: "fc2", in_features: 12, out_features: 8 },
            { type: "tanh" },
            { type: "linear", name: "fc3", in_features: 8, out_features: 2 },
          ],
        },
        data: {
          train: (() => {
            const d = seedRequest(300).data.train;
            return { x: d.x, y: d.y.map((v) => [(v as number) > 0 ? 1 : 0, (v as number) > 0.3 ? 1 : 0]) };
          })(),
        },
        training: {
          epochs: 5, batch_size: 25, shuffle: true, seed: 2, loss: { type: "bce_with_logits" },
          optimizer: { type: "rmsprop", lr: 1e-3, centered: true, momentum: 0.5 },
          early_stopping: { monitor: "train_loss", patience: 2, restore_best_weights: true },
        },
      } as Partial<TrainRequest>),
  },
  {
    name: "Adagrad, L1 loss, a batch larger than the data",
    request: () => seedRequest(20, { training: { epochs: 6, batch_size: 64, optimizer: { type: "adagrad", lr: 0.1 }, loss: { type: "l1" } } }),
  },
];

describe("fused steps against JS-driven steps: bit-identical", () => {
  for (const config of CONFIGS) {
    it(config.name, async () => {
      const { fused, stepped, events } = await both(config.request());
      expect(fused.status).toBe("succeeded");
      expect(comparable(fused)).toEqual(comparable(stepped));
      // losses and learning rates of every step, as Object.is compares them (bitwise for numbers that are not NaN)
      expect(events[0].length).toBeGreaterThan(0);
      expect(events[0]).toEqual(events[1]);
    });
  }

  it("the fused path is the one taken: one kernel-core call per epoch for the seed MLP; none for a model with active dropout or a p-norm clip", async () => {
    const runtime = await loadNodeRuntime();
    const withBackend = async <T>(request: TrainRequest, use: (backend: TrainingBackend, prepared: PreparedRun) => Promise<T>): Promise<T> => {
      const prepared = prepareRun(request);
      const instance = await acquireKernels(runtime.module);
      try {
        const backend = await createWasmBackend(instance, prepared, prepared.initialState ?? defaultInit(prepared.model, prepared.request.training.seed), { variant: runtime.variant });
        return await use(backend, prepared);
      } finally {
        releaseKernels(runtime.module, instance);
      }
    };
    const calls = await withBackend(seedRequest(1000, { training: { epochs: 3, shuffle: false } }), async (backend, prepared) => {
      const fused = backend.fused!;
      expect(fused).toBeTruthy();
      const counts: number[] = [];
      const run = fused.run.bind(fused);
      fused.run = (first, count) => (counts.push(count), run(first, count));
      const { result } = await runLoop(backend, runtime, prepared, {}, performance.now());
      expect(result.status).toBe("succeeded");
      return counts;
    });
    expect(calls).toEqual([32, 32, 32]); // 1,000 rows in batches of 32: 32 steps an epoch, one call each
    const fusedOf = (request: TrainRequest) => withBackend(request, async (backend) => backend.fused ?? null);
    const dropout = seedRequest(100, {
      model: { layers: [{ type: "linear", in_features: 10, out_features: 8 }, { type: "dropout", p: 0.2 }, { type: "linear", in_features: 8, out_features: 1 }] },
    });
    expect(await fusedOf(dropout)).toBeNull();
    // a p-norm clip is not computed in the program (its pow would have to match V8's)
    expect(await fusedOf(seedRequest(100, { training: { clip_grad_norm: { max_norm: 1, norm_type: 3 } } as TrainRequest["training"] }))).toBeNull();
  });
});

describe("fused steps end runs as JS-driven steps do", () => {
  it("a diverging run: the same step, message and last finite weights", async () => {
    const request = seedRequest(256, { training: { epochs: 50, batch_size: 32, optimizer: { type: "sgd", lr: 1e6 }, shuffle: false } });
    const { fused, stepped } = await both(request);
    expect(fused.status).toBe("diverged");
    expect(comparable(fused)).toEqual(comparable(stepped));
  });

  it("a non-finite gradient norm with error_if_nonfinite", async () => {
    const request = seedRequest(256, {
      training: { epochs: 50, batch_size: 32, optimizer: { type: "sgd", lr: 1e6 }, shuffle: false, clip_grad_norm: { max_norm: 1e30, norm_type: 2, error_if_nonfinite: true } },
    } as Partial<TrainRequest>);
    const { fused, stepped } = await both(request);
    expect(fused.status).toBe("diverged");
    expect(comparable(fused)).toEqual(comparable(stepped));
  });

  it("a budget stops before the same step when the estimate decides it", async () => {
    // stepMs far above any real step: the estimate, not the clock, decides (deadline.ts)
    const request = seedRequest(1000, { training: { epochs: 5, batch_size: 32, shuffle: false } });
    const budget = { maxMs: 1000, stepMs: 10 };
    const { fused, stepped } = await both(request, { budget });
    expect(fused.status).toBe("cancelled");
    expect(fused.error?.code).toBe("over_budget");
    expect(fused.metrics.steps).toBe(100); // 100 x 10 ms fit in 1,000 ms; the 101st would not
    expect(comparable(fused)).toEqual(comparable(stepped));
  });

  it("an aborted signal cancels before the first step", async () => {
    const controller = new AbortController();
    controller.abort();
    const { fused, stepped } = await both(seedRequest(100), { signal: controller.signal });
    expect(fused.status).toBe("cancelled");
    expect(comparable(fused)).toEqual(comparable(stepped));
  });

  it("yields every few steps (chunks of yieldEvery.steps): the same result", async () => {
    const request = seedRequest(640, { training: { epochs: 2, batch_size: 32, shuffle: true, seed: 4 } });
    const { fused, stepped } = await both(request, { yieldEvery: { ms: Infinity, steps: 5 } });
    expect(fused.status).toBe("succeeded");
    expect(comparable(fused)).toEqual(comparable(stepped));
  });
});
