/**
 * The WebGPU backend beyond the parity fixtures: determinism, dropout masks shared with the
 * WASM backend, numeric faults (diverged with the last finite weights), cancellation, larger
 * shapes (several GEMM tiles, partial tiles, shuffled batches, validation in chunks, clipping),
 * and how `kernel` / `gpu` pick a backend.
 */
import { describe, expect, it } from "vitest";
import { decodeBase64 } from "../../src/formats/base64.js";
import { parseSafetensors, readTensorF32, writeSafetensors } from "../../src/formats/safetensors.js";
import { loadNodeRuntime, train } from "../../src/node/index.js";
import type { TrainRequest } from "../../src/engine/train.js";
import { WEBGPU_MIN_FLOPS_PER_STEP, useWebGpu } from "../../src/engine/webgpu/select.js";
import { prepareRun } from "../../src/engine/train.js";
import { worstRatio } from "../parity/compare.js";
import { classifierRequest, lcg, regressionData, seedRequest } from "../helpers.js";
import { SKIP_REASON, device, software } from "./device.js";
import { train as trainWith } from "../../src/engine/train.js";

const weightsOf = (result: { weights: string }) => {
  const file = parseSafetensors(decodeBase64(result.weights));
  return Object.fromEntries([...file.tensors.keys()].map((name) => [name, readTensorF32(file, name, "weights", { integers: true })]));
};
const gpu = { kernel: "webgpu" as const, gpu: device };

/** Worst |a-b| / (1e-5 + 1e-4 |b|) over every tensor of two results. */
function worstAgainst(actual: { weights: string }, expected: { weights: string }): number {
  const a = weightsOf(actual);
  const b = weightsOf(expected);
  let worst = 0;
  for (const name of Object.keys(b)) worst = Math.max(worst, worstRatio(a[name]!, b[name]!).ratio);
  return worst;
}

/** A wider model: several GEMM tiles in every direction, partial tiles, a partial last batch. */
function wideRequest(overrides: Partial<TrainRequest["training"]> = {}): TrainRequest {
  const rand = lcg(99);
  const x = Array.from({ length: 300 }, () => Array.from({ length: 70 }, rand));
  const y = x.map((r) => (r[0]! + r[1]! > 0 ? (r[2]! > 0 ? 0 : 1) : r[3]! > 0 ? 2 : 3));
  return {
    model: {
      layers: [
        { type: "linear", name: "fc1", in_features: 70, out_features: 130 },
        { type: "gelu" },
        { type: "dropout", p: 0.25 },
        { type: "linear", name: "fc2", in_features: 130, out_features: 33 },
        { type: "tanh" },
        { type: "linear", name: "fc3", in_features: 33, out_features: 4 },
      ],
    },
    data: { train: { x, y }, validation_split: 0.3 },
    training: {
      epochs: 3, batch_size: 67, shuffle: true, seed: 11,
      loss: { type: "cross_entropy", label_smoothing: 0.1 },
      optimizer: { type: "adamw", lr: 3e-3 },
      clip_grad_norm: 0.5,
      ...overrides,
    },
  };
}

describe.skipIf(!device)(`WebGPU backend (${SKIP_REASON})`, () => {
  it("the same request gives bit-identical weights, dropout and shuffling included", async () => {
    const request = wideRequest();
    const [a, b] = [await train(request, gpu), await train(request, gpu)];
    expect(a.engine.kernel).toBe("webgpu");
    expect(a.status).toBe("succeeded");
    expect(a.weights).toBe(b.weights);
    expect(a.metrics.history).toEqual(b.metrics.history);
  });

  it("model.base_dtype: frozen tensors stay float32 on the GPU with the rounded values; the run matches the WASM run", async () => {
    const { readFileSync } = await import("node:fs");
    const cases = (JSON.parse(readFileSync(new URL("../parity/fixtures/huggingface.json", import.meta.url), "utf8")) as { cases: { name: string; request: TrainRequest; initial_weights: Record<string, { shape: number[]; data: number[] }> }[] }).cases;
    const c = cases.find((x) => x.name === "bert_seqcls_padding")!;
    const weights = writeSafetensors(Object.entries(c.initial_weights).map(([name, t]) => ({ name, shape: t.shape, data: Float32Array.from(t.data) })));
    const request = {
      model: { ...c.request.model, base_dtype: "float16" }, data: c.request.data, weights,
      adapter: { type: "lora", r: 2 }, training: { epochs: 2, batch_size: 8, optimizer: { type: "adam", lr: 0.01 }, seed: 2 },
    } as TrainRequest;
    const [onGpu, onWasm] = [await train(request, gpu), await train(request, { kernel: "wasm" })];
    expect(onGpu.engine.kernel).toBe("webgpu");
    expect(worstAgainst(onGpu, onWasm)).toBeLessThanOrEqual(1);
    const frozen = prepareRun(request).model.state.filter((t) => t.kind === "parameter" && !t.trainable).map((t) => t.name);
    const [g, w] = [weightsOf(onGpu), weightsOf(onWasm)];
    for (const name of frozen) expect(g[name], name).toEqual(w[name]); // the rounded base, untouched by training
  });

  it("draws the same dropout masks as the WASM backend (and matches it within the parity tolerance)", async () => {
    const request = wideRequest({ epochs: 2 });
    const [onGpu, onWasm] = [await train(request, gpu), await train(request, { kernel: "wasm" })];
    expect(onGpu.metrics.steps).toBe(onWasm.metrics.steps);
    // with different masks the weights would differ by far more than the tolerance
    expect(worstAgainst(onGpu, onWasm)).toBeLessThanOrEqual(1);
    const [g, w] = [onGpu.metrics.history, onWasm.metrics.history];
    expect(worstRatio(g.map((h) => h.train_loss), w.map((h) => h.train_loss)).ratio).toBeLessThanOrEqual(1);
    expect(worstRatio(g.map((h) => h.val_loss!), w.map((h) => h.val_loss!)).ratio).toBeLessThanOrEqual(1);
    expect(g.map((h) => h.val_accuracy)).toEqual(w.map((h) => h.val_accuracy));
  });

  it("every loss, optimizer and norm type on the wider model agrees with the WASM backend", async () => {
    const variants: Partial<TrainRequest["training"]>[] = [
      { loss: { type: "multi_margin", p: 2, margin: 0.7, weight: [1, 2, 0.5, 1] }, optimizer: { type: "sgd", lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 1e-3 }, clip_grad_norm: { max_norm: 2, norm_type: "inf" } },
      { loss: { type: "cross_entropy", weight: [1, 0.5, 2, 1], ignore_index: 3 }, optimizer: { type: "rmsprop", lr: 1e-3, centered: true, momentum: 0.5 }, clip_grad_norm: { max_norm: 1, norm_type: 1 } },
      { optimizer: { type: "adagrad", lr: 0.05, lr_decay: 0.01, initial_accumulator_value: 0.1 }, clip_grad_norm: { max_norm: 1, norm_type: 3 } },
      { optimizer: { type: "adam", lr: 1e-3, amsgrad: true, weight_decay: 1e-2 }, clip_grad_norm: null, shuffle: false },
    ];
    for (const v of variants) {
      const request = wideRequest({ epochs: 2, ...v });
      const [onGpu, onWasm] = [await train(request, gpu), await train(request, { kernel: "wasm" })];
      expect(onGpu.status).toBe("succeeded");
      expect(worstAgainst(onGpu, onWasm), JSON.stringify(v)).toBeLessThanOrEqual(1);
    }
  });

  it("an exploding learning rate ends as diverged at the same step as WASM, with finite weights", async () => {
    const request = seedRequest(256, { training: { epochs: 50, batch_size: 32, optimizer: { type: "sgd", lr: 1e6 }, shuffle: false } });
    const [onGpu, onWasm] = [await train(request, gpu), await train(request, { kernel: "wasm" })];
    expect(onGpu.status).toBe("diverged");
    expect(onGpu.error?.code).toBe("diverged");
    expect(onGpu.error?.step).toBe(onWasm.error?.step);
    expect(onGpu.metrics.steps).toBe(onGpu.error!.step! - 1);
    for (const values of Object.values(weightsOf(onGpu))) expect(values.every(Number.isFinite)).toBe(true);
  });

  it("a weight that overflows in the update is restored: the weights before the step come back", async () => {
    const request = seedRequest(64, { training: { epochs: 1, batch_size: 64, optimizer: { type: "sgd", lr: 3e38 }, shuffle: false } });
    request.data.train!.y = request.data.train!.y!.map((v) => (v as number) + 100); // gradients >> 1: lr * g overflows
    const initial = await train({ ...request, training: { ...request.training, optimizer: { type: "sgd", lr: 0 } } }, { kernel: "wasm" });
    const withWeights = { ...request, weights: decodeBase64(initial.weights) };
    const [onGpu, onWasm] = [await train(withWeights, gpu), await train(withWeights, { kernel: "wasm" })];
    expect(onWasm.error?.message).toMatch(/a weight became non-finite/);
    expect(onGpu.status).toBe("diverged");
    expect(onGpu.error).toEqual(onWasm.error);
    expect(onGpu.weights).toBe(initial.weights);
  });

  it("a diverging batch-norm run keeps the running statistics of the last finite step, as on WASM", async () => {
    // one batch per epoch: the run that diverges at step k ends with the state of a (k - 1)-epoch run
    const exploding = (epochs: number): TrainRequest => ({
      model: {
        layers: [
          { type: "linear", name: "fc1", in_features: 4, out_features: 8, bias: false },
          { type: "batch_norm1d", name: "bn", num_features: 8 },
          { type: "tanh" },
          { type: "linear", name: "fc2", in_features: 8, out_features: 1 },
        ],
      },
      data: { train: regressionData(32, 4) },
      training: { epochs, batch_size: 32, shuffle: false, optimizer: { type: "sgd", lr: 3e5 }, loss: { type: "mse" } },
    });
    const [onGpu, onWasm] = [await train(exploding(30), gpu), await train(exploding(30), { kernel: "wasm" })];
    expect(onGpu.engine.kernel).toBe("webgpu");
    expect(onGpu.status).toBe("diverged");
    const k = onGpu.error!.step!;
    expect(k).toBe(onWasm.error?.step);
    expect(weightsOf(onGpu)["bn.num_batches_tracked"]).toEqual(Float32Array.of(k - 1)); // the faulty step's forward counted a batch: undone
    const stopped = await train(exploding(k - 1), gpu);
    expect(onGpu.weights).toBe(stopped.weights); // running_mean and running_var too, bit for bit
    expect(worstAgainst(onGpu, onWasm)).toBeLessThanOrEqual(1);
  });

  it("a NaN loss on the first step keeps the initial weights (every target of the first batch ignored)", async () => {
    // (a dataset whose every target is ignored is a 422 before training: test/unit/formats/dataset.test.ts)
    const request = classifierRequest(32, { epochs: 2, shuffle: false });
    request.data.train!.y = request.data.train!.y!.map((y, i) => (i < 16 ? -100 : y));
    const initial = await train({ ...request, training: { ...request.training, epochs: 1, optimizer: { type: "sgd", lr: 0 } } });
    const result = await train({ ...request, weights: decodeBase64(initial.weights) }, gpu);
    expect(result.status).toBe("diverged");
    expect(result.error).toMatchObject({ code: "diverged", step: 1, epoch: 1, message: expect.stringMatching(/the loss became NaN/) });
    expect(result.weights).toBe(initial.weights);
  });

  it("aborting during training stops within the epoch and returns the weights so far", async () => {
    const controller = new AbortController();
    const result = await train(seedRequest(500, { training: { epochs: 200 } }), {
      ...gpu,
      signal: controller.signal,
      onProgress: (e) => {
        if (e.type === "epoch" && e.epoch === 2) controller.abort();
      },
    });
    expect(result.status).toBe("cancelled");
    expect(result.engine.kernel).toBe("webgpu");
    expect(result.metrics.history.map((h) => h.epoch)).toEqual([1, 2]);
    for (const values of Object.values(weightsOf(result))) expect(values.every(Number.isFinite)).toBe(true);
  });

  it("kernel auto: WebGPU only for steps of at least gpuMinFlopsPerStep", async () => {
    const request = seedRequest(64, { training: { epochs: 1 } });
    const small = await train(request, { gpu: device });
    expect(small.engine.kernel).toBe((await loadNodeRuntime()).variant);
    const forced = await train(request, { gpu: device, gpuMinFlopsPerStep: 0 });
    expect(forced.engine.kernel).toBe("webgpu");
    expect(useWebGpu(prepareRun(request), { gpu: device })).toBe(false);
    expect(WEBGPU_MIN_FLOPS_PER_STEP).toBeGreaterThan(0);
  });
});

describe("choosing the WebGPU backend (no adapter needed)", () => {
  it('the engine\'s kernel "webgpu" without a device is a clear error', async () => {
    const runtime = await loadNodeRuntime();
    await expect(trainWith(runtime, seedRequest(32, { training: { epochs: 1 } }), { kernel: "webgpu" })).rejects.toThrow(/needs a GPUDevice in options.gpu/);
  });

  it.skipIf(!software)('Node\'s train() with kernel "webgpu" and no device opens one itself: hardware only, unless EDGETUNE_WEBGPU=software', async () => {
    const request = seedRequest(32, { training: { epochs: 1 } });
    await expect(train(request, { kernel: "webgpu" })).rejects.toThrow(/no WebGPU device \(only a software adapter.*EDGETUNE_WEBGPU=software/);
    process.env.EDGETUNE_WEBGPU = "software";
    try {
      const result = await train(request, { kernel: "webgpu" });
      expect(result.engine.kernel).toBe("webgpu");
      expect(result.status).toBe("succeeded");
    } finally {
      delete process.env.EDGETUNE_WEBGPU;
    }
  });

  it("kernel auto without a device, or kernel wasm with one, runs the WASM core", () => {
    const prepared = prepareRun(seedRequest(32, { training: { epochs: 1 } }));
    const fake = { limits: { maxStorageBufferBindingSize: 2 ** 30, maxBufferSize: 2 ** 30 } } as unknown as GPUDevice;
    expect(useWebGpu(prepared, {})).toBe(false);
    expect(useWebGpu(prepared, { kernel: "wasm", gpu: fake, gpuMinFlopsPerStep: 0 })).toBe(false);
    expect(useWebGpu(prepared, { gpu: fake, gpuMinFlopsPerStep: 0 })).toBe(true);
    const tiny = { limits: { maxStorageBufferBindingSize: 64, maxBufferSize: 64 } } as unknown as GPUDevice;
    expect(useWebGpu(prepared, { gpu: tiny, gpuMinFlopsPerStep: 0 })).toBe(false); // does not fit: WASM
  });
});
