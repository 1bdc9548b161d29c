import { describe, expect, it } from "vitest";
import { loadNodeRuntime, train } from "../../src/node/index.js";
import { decodeBase64 } from "../../src/formats/base64.js";
import { parseSafetensors, readTensorF32 } from "../../src/formats/safetensors.js";
import { classifierRequest, lcg, seedRequest } from "../helpers.js";


describe("train() on the seed example", () => {
  it("trains, the loss falls, and the weights come back as safetensors with state_dict names", async () => {
    const result = await train(seedRequest());
    expect(result.status).toBe("succeeded");
    const h = result.metrics.history;
    expect(h).toHaveLength(20);
    expect(h.at(-1)!.train_loss).toBeLessThan(h[0]!.train_loss * 0.7);
    expect(result.metrics.steps).toBe(20 * 32);
    const file = parseSafetensors(decodeBase64(result.weights));
    expect([...file.tensors.keys()]).toEqual(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
    expect(readTensorF32(file, "fc1.weight").every(Number.isFinite)).toBe(true);
    expect(result.engine).toMatchObject({ kernel: (await loadNodeRuntime()).variant, runtime: "node", threads: 1 });
    expect(result.plan).toMatchObject({ params: 121, trainable_params: 121, steps: 640, placement: "local" });
  });
});

const weightsOf = (result: { weights: string }) => {
  const file = parseSafetensors(decodeBase64(result.weights));
  return Object.fromEntries([...file.tensors.keys()].map((name) => [name, readTensorF32(file, name)]));
};

describe("determinism", () => {
  it("the same request and seed give bit-identical weights (shuffle and dropout on)", async () => {
    const request = seedRequest(200, {
      model: {
        layers: [
          { type: "linear", name: "fc1", in_features: 10, out_features: 16 },
          { type: "relu" },
          { type: "dropout", p: 0.3 },
          { type: "linear", name: "fc2", in_features: 16, out_features: 1 },
        ],
      },
    });
    request.training = { ...request.training, epochs: 3, shuffle: true, seed: 11 };
    const [a, b] = [await train(request), await train(request)];
    expect(a.weights).toBe(b.weights);
    expect(a.metrics.history).toEqual(b.metrics.history);
    const c = await train({ ...request, training: { ...request.training, seed: 12 } });
    expect(c.weights).not.toBe(a.weights);
  });

  it("without weights, initialises as torch.manual_seed(seed) would and reports it", async () => {
    const a = await train(seedRequest(64, { training: { epochs: 1, seed: 3 } }));
    const b = await train(seedRequest(64, { training: { epochs: 1, seed: 4 } }));
    expect(a.status).toBe("succeeded");
    expect(a.weights).not.toBe(b.weights);
  });
});

describe("numeric faults end as diverged with the last finite weights", () => {
  it("an exploding learning rate", async () => {
    const request = seedRequest(256, { training: { epochs: 50, batch_size: 32, optimizer: { type: "sgd", lr: 1e6 }, shuffle: false } });
    const result = await train(request);
    expect(result.status).toBe("diverged");
    expect(result.error?.code).toBe("diverged");
    expect(result.error?.step).toBeGreaterThan(0);
    expect(result.error?.message).toMatch(/step \d+/);
    expect(result.metrics.steps).toBe(result.error!.step! - 1);
    for (const [, values] of Object.entries(weightsOf(result))) expect(values.every(Number.isFinite)).toBe(true);
  });

  it("a NaN loss on the first step keeps the initial weights (every target of the first batch ignored)", async () => {
    // (a dataset whose every target is ignored is a 422 before training: test/unit/formats/dataset.test.ts)
    const request = classifierRequest(32, { epochs: 2, shuffle: false });
    request.data.train!.y = request.data.train!.y!.map((y, i) => (i < 16 ? -100 : y));
    const initial = await train({ ...request, training: { ...request.training, epochs: 1, optimizer: { type: "sgd", lr: 0 } } });
    const result = await train({ ...request, weights: decodeBase64(initial.weights) });
    expect(result.status).toBe("diverged");
    expect(result.error).toMatchObject({ code: "diverged", step: 1, epoch: 1 });
    expect(result.weights).toBe(initial.weights);
  });
});

describe("cancellation", () => {
  it("an already-aborted signal ends the run as cancelled before any step", async () => {
    const result = await train(seedRequest(100), { signal: AbortSignal.abort() });
    expect(result.status).toBe("cancelled");
    expect(result.metrics.steps).toBe(0);
    expect(result.metrics.history).toEqual([]);
  });

  it("aborting during training stops within the epoch and returns the weights so far", async () => {
    const controller = new AbortController();
    const epochs: number[] = [];
    const result = await train(seedRequest(500, { training: { epochs: 200 } }), {
      signal: controller.signal,
      onProgress: (e) => {
        if (e.type === "epoch") {
          epochs.push(e.epoch);
          if (e.epoch === 2) controller.abort();
        }
      },
    });
    expect(result.status).toBe("cancelled");
    expect(result.metrics.history.map((h) => h.epoch)).toEqual([1, 2]);
    expect(epochs).toEqual([1, 2]);
  });
});

describe("progress events", () => {
  it("one epoch event per epoch, and step events when asked", async () => {
    const events: string[] = [];
    const result = await train(seedRequest(64, { training: { epochs: 3, batch_size: 32 } }), {
      stepEvents: true,
      onProgress: (e) => {
        events.push(e.type === "epoch" ? `epoch ${e.epoch}` : `step ${e.step}`);
      },
    });
    expect(result.metrics.steps).toBe(6);
    expect(events).toEqual(["step 1", "step 2", "epoch 1", "step 3", "step 4", "epoch 2", "step 5", "step 6", "epoch 3"]);
  });
});

describe("validation, early stopping and the best epoch", () => {
  it("validation_split holds out a seeded random fraction and reports val_loss and val_accuracy", async () => {
    const request = classifierRequest(100, { epochs: 5 });
    request.data.validation_split = 0.2;
    const result = await train(request);
    expect(result.status).toBe("succeeded");
    expect(result.metrics.steps).toBe(5 * Math.ceil(80 / 16));
    for (const h of result.metrics.history) {
      expect(h.val_loss).toBeGreaterThan(0);
      expect(h.val_accuracy).toBeGreaterThanOrEqual(0);
      expect(h.val_accuracy).toBeLessThanOrEqual(1);
    }
    expect(result.metrics.history.at(-1)!.val_accuracy).toBeGreaterThan(0.6);
  });

  it("metrics.initial are the starting weights' validation metrics (equal to epoch 1's when the lr is 0)", async () => {
    const frozen = classifierRequest(100, { epochs: 2, optimizer: { type: "sgd", lr: 0 } });
    frozen.data.validation_split = 0.2;
    const still = await train(frozen);
    expect(still.metrics.initial).toEqual({ val_loss: still.metrics.history[0]!.val_loss, val_accuracy: still.metrics.history[0]!.val_accuracy });
    const learning = classifierRequest(100, { epochs: 5 });
    learning.data.validation_split = 0.2;
    const result = await train(learning);
    expect(result.metrics.initial!.val_loss).toBeGreaterThan(result.metrics.history.at(-1)!.val_loss!);
    expect((await train(classifierRequest(100, { epochs: 1 }))).metrics.initial).toBeUndefined(); // no validation data
  });

  it("early stopping stops after `patience` epochs without improvement and restores the best weights", async () => {
    const request = classifierRequest(100, {
      epochs: 200,
      optimizer: { type: "sgd", lr: 0.5, momentum: 0.9 },
      early_stopping: { monitor: "val_loss", patience: 2 },
    });
    request.data.validation_split = 0.3;
    const result = await train(request);
    const h = result.metrics.history;
    expect(h.length).toBeLessThan(200);
    const best = result.metrics.best_epoch!;
    expect(h.length).toBe(best + 2);
    const bestLoss = Math.min(...h.map((e) => e.val_loss!));
    expect(h[best - 1]!.val_loss).toBe(bestLoss);
  });
});

describe("output dtypes", () => {
  for (const dtype of ["float16", "bfloat16"] as const) {
    it(`${dtype} output is the float32 result rounded`, async () => {
      const f32 = await train(seedRequest(64, { training: { epochs: 2 } }));
      const half = await train(seedRequest(64, { training: { epochs: 2 }, output: { dtype } }));
      const file = parseSafetensors(decodeBase64(half.weights));
      expect(file.tensors.get("fc1.weight")!.dtype).toBe(dtype === "float16" ? "F16" : "BF16");
      const a = weightsOf(f32)["fc1.weight"]!;
      const b = readTensorF32(file, "fc1.weight");
      const ulp = dtype === "float16" ? 2 ** -10 : 2 ** -7;
      a.forEach((v, i) => expect(Math.abs(b[i]! - v)).toBeLessThanOrEqual(Math.abs(v) * ulp + 1e-7));
    });
  }
});

describe("freezing", () => {
  it("frozen parameters come back unchanged, trainable ones change", async () => {
    const base = await train(seedRequest(64, { training: { epochs: 1, optimizer: { type: "sgd", lr: 0 } } }));
    const result = await train(seedRequest(128, { weights: base.weights, trainable: ["fc2"], training: { epochs: 3 } }));
    const [before, after] = [weightsOf(base), weightsOf(result)];
    expect(after["fc1.weight"]).toEqual(before["fc1.weight"]);
    expect(after["fc1.bias"]).toEqual(before["fc1.bias"]);
    expect(after["fc2.weight"]).not.toEqual(before["fc2.weight"]);
    expect(result.plan.trainable_params).toBe(11);
  });
});

describe("the plan", () => {
  const shapes: [string, () => Parameters<typeof train>[0]][] = [
    ["seed MLP", () => seedRequest(300)],
    ["classifier with validation and early stopping", () => {
      const r = classifierRequest(90, { early_stopping: { patience: 3 }, optimizer: { type: "adam", amsgrad: true } });
      r.data.validation_split = 0.25;
      return r;
    }],
    ["dropout and rmsprop centered", () => seedRequest(100, {
      model: { layers: [{ type: "linear", in_features: 10, out_features: 33 }, { type: "dropout", p: 0.2 }, { type: "gelu" }, { type: "linear", in_features: 33, out_features: 1 }] },
      training: { epochs: 1, optimizer: { type: "rmsprop", centered: true } },
    })],
    ["a CNN: conv2d, max_pool2d, avg and adaptive pools (the workspace, saved argmax indices)", () => {
      const rand = lcg(9);
      const x = Array.from({ length: 40 }, () => Array.from({ length: 2 * 12 * 12 }, rand));
      return {
        model: {
          input: { shape: [2, 12, 12] },
          layers: [
            { type: "conv2d", in_channels: 2, out_channels: 6, kernel_size: 3, padding: 1 }, { type: "relu" },
            { type: "max_pool2d", kernel_size: 2 },
            { type: "conv2d", in_channels: 6, out_channels: 8, kernel_size: 3, groups: 2 }, { type: "tanh" },
            { type: "avg_pool2d", kernel_size: 2, ceil_mode: true }, { type: "adaptive_avg_pool2d", output_size: [2, null] },
            { type: "flatten" }, { type: "linear", in_features: 8 * 2 * 2, out_features: 3 },
          ],
        },
        data: { train: { x, y: x.map((_, i) => i % 3) } },
        training: { epochs: 1, batch_size: 16, loss: { type: "cross_entropy" }, optimizer: { type: "adam" } },
      } as Parameters<typeof train>[0];
    }],
  ];
  for (const [what, make] of shapes) {
    it(`estimates the memory a run allocates (${what})`, async () => {
      const diagnostics: { arenaBytes?: number } = {};
      const result = await train(make(), { diagnostics });
      expect(result.status).toBe("succeeded");
      expect(result.plan.memory_bytes).toBeGreaterThanOrEqual(diagnostics.arenaBytes!);
      expect(result.plan.memory_bytes).toBeLessThan(diagnostics.arenaBytes! * 1.1 + 70_000);
    });
  }

  it("counts steps and FLOPs from the shapes", async () => {
    const result = await train(seedRequest(1000));
    // per row: forward 2*10*10 + 10 + 4*10 (relu) + 2*10*1 + 1 = 271; backward twice each linear's
    // forward (dW and dx) plus the relu's 4*10: 2*210 + 40 + 2*21 = 502; 12 FLOPs per parameter update
    expect(result.plan.flops).toBe(20 * 1000 * (271 + 502) + 640 * 12 * 121);
  });
});

describe("kernel instances are reused, never shared", () => {
  it("concurrent runs that yield to each other give the same weights as sequential runs", async () => {
    const a = seedRequest(300, { training: { epochs: 30, seed: 1 } });
    const b = classifierRequest(200, { epochs: 30, seed: 2 });
    const sequential = [await train(a), await train(b)];
    // awaiting a progress promise after each epoch lets the other run continue: they interleave
    const order: string[] = [];
    const progress = (name: string) => async () => {
      order.push(name);
      await new Promise((r) => setTimeout(r, 0));
    };
    const concurrent = await Promise.all([train(a, { onProgress: progress("a") }), train(b, { onProgress: progress("b") })]);
    expect(order.indexOf("b")).toBeLessThan(order.lastIndexOf("a")); // b ran epochs while a was still running
    expect(concurrent.map((r) => r.weights)).toEqual(sequential.map((r) => r.weights));
  });
});
