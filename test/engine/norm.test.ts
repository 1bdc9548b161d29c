/**
 * The normalisation layers beyond the parity fixtures: their 422s (path and both shapes), a
 * batch of 1 row refused where PyTorch raises, state_dict names and default init, the I64
 * num_batches_tracked in and out of safetensors, and a diverging batch-norm run keeping the
 * running statistics of the last finite step.
 */
import { rejection } from "./refusals.js";
import { describe, expect, it } from "vitest";
import { decodeBase64 } from "../../src/formats/base64.js";
import { parseSafetensors, readTensorF32, writeSafetensors } from "../../src/formats/safetensors.js";
import { train } from "../../src/node/index.js";
import type { TrainRequest } from "../../src/engine/train.js";
import { regressionData } from "../helpers.js";

/** linear(4 -> 8, no bias) -> <norm> -> tanh -> linear(8 -> 1) on `rows` rows of 4 features. */
function normRequest(norm: Record<string, unknown>, rows = 64, training: TrainRequest["training"] = {}): TrainRequest {
  return {
    model: {
      layers: [
        { type: "linear", name: "fc1", in_features: 4, out_features: 8, bias: false },
        { name: "norm", ...norm } as never,
        { type: "tanh" },
        { type: "linear", name: "fc2", in_features: 8, out_features: 1 },
      ],
    },
    data: { train: regressionData(rows, 4) },
    training: { epochs: 2, batch_size: 8, shuffle: false, optimizer: { type: "adam", lr: 1e-2 }, loss: { type: "mse" }, ...training },
  };
}

const bn = { type: "batch_norm1d", num_features: 8 };


const fileOf = (result: { weights: string }) => parseSafetensors(decodeBase64(result.weights));
const tensor = (result: { weights: string }, name: string) => readTensorF32(fileOf(result), name, "weights", { integers: true });

describe("bad normalisation layers are 422s naming the field and both shapes", () => {
  const cases: [string, TrainRequest, number, string, RegExp][] = [
    ["layer_norm over a dim the input lacks", normRequest({ type: "layer_norm", normalized_shape: 6 }), 422, "model.layers[1].normalized_shape", /\[6\].*\[8\]/],
    ["layer_norm over more dims than the input has", normRequest({ type: "layer_norm", normalized_shape: [2, 8] }), 422, "model.layers[1].normalized_shape", /\[2, 8\].*\[8\]/],
    ["rms_norm of the wrong width", normRequest({ type: "rms_norm", normalized_shape: [7] }), 422, "model.layers[1].normalized_shape", /\[7\].*\[8\]/],
    ["batch_norm1d with the wrong channel count", normRequest({ ...bn, num_features: 5 }), 422, "model.layers[1].num_features", /5.*\[8\].*8 channels/],
    ["batch_norm2d on [C] samples", normRequest({ type: "batch_norm2d", num_features: 8 }), 422, "model.layers[1].type", /\[C, H, W\].*\[8\]/],
    ["a momentum above 1", normRequest({ ...bn, momentum: 1.5 }), 400, "model.layers[1].momentum", /./],
    ["a negative eps", normRequest({ type: "layer_norm", normalized_shape: 8, eps: -1 }), 400, "model.layers[1].eps", /./],
    ["batch_norm1d with batch_size 1", normRequest(bn, 64, { batch_size: 1 }), 422, "training.batch_size", /model\.layers\[1\].*Expected more than 1 value per channel/],
    ["batch_norm1d with a last batch of 1 row", normRequest(bn, 17, { batch_size: 8 }), 422, "training.batch_size", /17 training rows in batches of 8 leave a last batch of 1/],
    ["batch_norm1d on a single training row", normRequest(bn, 1, { batch_size: 8 }), 422, "training.batch_size", /all 1 training rows make one batch/],
  ];
  for (const [what, request, status, path, message] of cases) {
    it(`${what} -> ${status} at ${path}`, async () => {
      const e = await rejection(request);
      expect(e.status).toBe(status);
      const issue = e.errors.find((i) => i.path === path);
      expect(issue, JSON.stringify(e.errors)).toBeDefined();
      expect(issue!.message).toMatch(message);
    });
  }

  it("untracked batch statistics in evaluation refuse a validation chunk of 1 row", async () => {
    const request = normRequest({ ...bn, track_running_stats: false }, 64);
    request.data.validation = regressionData(9, 4, 99); // chunks of 8: a last chunk of 1
    const e = await rejection(request);
    expect(e.errors).toEqual([{ path: "training.batch_size", message: expect.stringMatching(/validation .* chunk of 1/) }]);
  });

  it("what PyTorch accepts is accepted: a last batch of 1 with drop_last, a batch of 1 row of [C, L] samples", async () => {
    const dropLast = await train(normRequest(bn, 17, { batch_size: 8, drop_last: true }));
    expect(dropLast.status).toBe("succeeded");
    expect(tensor(dropLast, "norm.num_batches_tracked")).toEqual(Float32Array.of(4)); // 2 batches x 2 epochs
    // [4, 2] samples: 2 values per channel even in a batch of 1 row
    const positions = await train({
      model: {
        input: { shape: [4, 2] },
        layers: [{ type: "batch_norm1d", name: "norm", num_features: 4 }, { type: "flatten" }, { type: "linear", in_features: 8, out_features: 1 }],
      },
      data: { train: regressionData(9, 8) },
      training: { epochs: 1, batch_size: 1, shuffle: false, loss: { type: "mse" } },
    });
    expect(positions.status).toBe("succeeded");
    expect(tensor(positions, "norm.num_batches_tracked")).toEqual(Float32Array.of(9));
  });
});

describe("state_dict names, default init and the I64 buffer", () => {
  it("batch_norm1d: weight, bias, running_mean, running_var and num_batches_tracked (I64, also in a float16 file)", async () => {
    for (const dtype of ["float32", "float16"] as const) {
      const result = await train({ ...normRequest(bn, 64), output: { dtype } });
      const file = fileOf(result);
      expect([...file.tensors.keys()]).toEqual([
        "fc1.weight", "norm.weight", "norm.bias", "norm.running_mean", "norm.running_var", "norm.num_batches_tracked", "fc2.weight", "fc2.bias",
      ]);
      const nbt = file.tensors.get("norm.num_batches_tracked")!;
      expect(nbt.dtype).toBe("I64");
      expect(nbt.shape).toEqual([]);
      expect(tensor(result, "norm.num_batches_tracked")).toEqual(Float32Array.of(result.metrics.steps));
      expect(file.tensors.get("norm.running_var")!.dtype).toBe(dtype === "float32" ? "F32" : "F16");
      expect(result.plan.params).toBe(32 + 8 + 8 + 9); // buffers are not parameters
    }
  });

  it("without weights: LayerNorm and BatchNorm weights are ones, biases zeros, running_var ones", async () => {
    const zeroLr = { optimizer: { type: "sgd", lr: 0 } as const, epochs: 1 };
    const ln = await train(normRequest({ type: "layer_norm", normalized_shape: [8] }, 16, zeroLr));
    expect(tensor(ln, "norm.weight")).toEqual(new Float32Array(8).fill(1));
    expect(tensor(ln, "norm.bias")).toEqual(new Float32Array(8));
    const rms = await train(normRequest({ type: "rms_norm", normalized_shape: 8 }, 16, zeroLr));
    expect([...fileOf(rms).tensors.keys()]).toEqual(["fc1.weight", "norm.weight", "fc2.weight", "fc2.bias"]);
    expect(tensor(rms, "norm.weight")).toEqual(new Float32Array(8).fill(1));
    const untracked = await train(normRequest({ ...bn, track_running_stats: false, affine: false }, 16, zeroLr));
    expect([...fileOf(untracked).tensors.keys()]).toEqual(["fc1.weight", "fc2.weight", "fc2.bias"]);
    // the linear layers draw the same numbers with or without a norm between them (no draws for norms)
    expect(tensor(untracked, "fc2.weight")).toEqual(tensor(ln, "fc2.weight"));
  });

  it("an I64 num_batches_tracked loads as given: a second run continues the count and the cumulative average", async () => {
    const request = normRequest({ ...bn, momentum: null }, 64, { epochs: 1 });
    const first = await train(request);
    expect(fileOf(first).tensors.get("norm.num_batches_tracked")!.dtype).toBe("I64");
    const second = await train({ ...request, weights: decodeBase64(first.weights) });
    expect(tensor(second, "norm.num_batches_tracked")).toEqual(Float32Array.of(16));
    // the same 16 batches in one run: the cumulative average is the same running mean
    const both = await train({ ...request, training: { ...request.training, epochs: 2, optimizer: { type: "sgd", lr: 0 } } });
    const again = await train({ ...request, training: { ...request.training, optimizer: { type: "sgd", lr: 0 } } });
    const resumed = await train({ ...request, weights: decodeBase64(again.weights), training: { ...request.training, optimizer: { type: "sgd", lr: 0 } } });
    const [a, b] = [tensor(both, "norm.running_mean"), tensor(resumed, "norm.running_mean")];
    a.forEach((v, i) => expect(Math.abs(b[i]! - v)).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(v))));
  });
});

describe("weights without num_batches_tracked", () => {
  it("load with it at 0, as load_state_dict of a state_dict without a version does; other buffers stay required", async () => {
    const request = normRequest(bn, 64, { epochs: 1 });
    const first = await train(request);
    const file = fileOf(first);
    const without = (skip: string) =>
      writeSafetensors([...file.tensors.keys()].filter((n) => n !== skip).map((name) => ({ name, shape: [...file.tensors.get(name)!.shape], data: tensor(first, name) })));
    const resumed = await train({ ...request, weights: without("norm.num_batches_tracked") });
    expect(resumed.status).toBe("succeeded");
    expect(tensor(resumed, "norm.num_batches_tracked")).toEqual(Float32Array.of(8));
    const e = await rejection({ ...request, weights: without("norm.running_var") });
    expect(e.errors).toEqual([{ path: "weights", message: expect.stringMatching(/missing tensor "norm.running_var"/) }]);
  });
});

describe("a diverging batch-norm run keeps the running statistics of the last finite step", () => {
  // one batch per epoch: the run that diverges at step k ends with the state of a (k - 1)-epoch run
  const exploding = (epochs: number) =>
    normRequest(bn, 32, { epochs, batch_size: 32, optimizer: { type: "sgd", lr: 3e5 } });
  for (const kernel of ["wasm", "js-reference"] as const) {
    it(`${kernel}: the weights and buffers are bit for bit those of the run stopped before the faulty step`, async () => {
      const diverged = await train(exploding(30), { kernel });
      expect(diverged.status).toBe("diverged");
      const k = diverged.error!.step!;
      expect(k).toBeGreaterThan(1);
      // the faulty step's forward ran in training mode (it moved the running statistics) before the fault
      expect(diverged.error!.message).toMatch(/a weight became non-finite|a gradient became non-finite|the loss became/);
      const stopped = await train(exploding(k - 1), { kernel });
      expect(stopped.status).toBe("succeeded");
      expect(tensor(diverged, "norm.num_batches_tracked")).toEqual(Float32Array.of(k - 1));
      expect(diverged.weights).toBe(stopped.weights);
    });
  }
});
