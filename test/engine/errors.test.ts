/**
 * Bad input never crashes train(): it rejects with a typed EdgetuneError whose status (400/422)
 * and field paths the API turns into problem+json.
 */
import { rejection } from "./refusals.js";
import { describe, expect, it } from "vitest";
import { train } from "../../src/node/index.js";
import { EdgetuneError } from "../../src/errors.js";
import { writeSafetensors } from "../../src/formats/safetensors.js";
import { classifierRequest, seedRequest } from "../helpers.js";
import type { TrainRequest } from "../../src/engine/train.js";


const seedWeights = (overrides: Record<string, { shape: number[] }> = {}, extra: string[] = []) =>
  writeSafetensors(
    [
      { name: "fc1.weight", shape: [10, 10] },
      { name: "fc1.bias", shape: [10] },
      { name: "fc2.weight", shape: [1, 10] },
      { name: "fc2.bias", shape: [1] },
      ...extra.map((name) => ({ name, shape: [2] })),
    ].map((t) => {
      const shape = overrides[t.name]?.shape ?? t.shape;
      return { name: t.name, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.1) };
    }),
  );

const cases: [string, () => unknown, number, string, RegExp?][] = [
  ["a beta out of range", () => seedRequest(10, { training: { optimizer: { type: "adam", betas: [0.9, 2] } } }), 400, "training.optimizer.betas[1]"],
  ["an unknown layer type", () => ({ ...seedRequest(10), model: { layers: [{ type: "conv3d" }] } }), 400, "model.layers[0].type"],
  ["a negative epoch count", () => seedRequest(10, { training: { epochs: -1 } }), 400, "training.epochs"],
  ["no training data", () => ({ ...seedRequest(10), data: {} }), 400, "data.train"],
  ["weights that are not base64", () => seedRequest(10, { weights: "not base64!!" }), 400, "weights"],
  ["weights that are not safetensors", () => seedRequest(10, { weights: new Uint8Array([1, 2, 3]) }), 422, "weights", /3 bytes/],
  ["a weight of the wrong shape", () => seedRequest(10, { weights: seedWeights({ "fc1.weight": { shape: [4, 3] } }) }), 422, 'weights["fc1.weight"]', /\[4, 3\].*\[10, 10\]/],
  ["a weight the model lacks", () => seedRequest(10, { weights: seedWeights({}, ["fc3.weight"]) }), 422, 'weights["fc3.weight"]'],
  ["a missing weight", () => seedRequest(10, { weights: writeSafetensors([{ name: "fc1.weight", shape: [10, 10], data: new Float32Array(100) }]) }), 422, "weights", /fc1\.bias/],
  ["layers whose widths do not chain", () => ({ ...seedRequest(10), model: { layers: [{ type: "linear", in_features: 10, out_features: 5 }, { type: "linear", in_features: 6, out_features: 1 }] } }), 422, "model.layers[1].in_features"],
  ["an output that is not [classes] or [tokens, classes]", () => ({ ...seedRequest(10), model: { input: { shape: [2, 5, 1] }, layers: [{ type: "linear", in_features: 1, out_features: 1 }] } }), 422, "model.layers[0]"],
  ["attention heads that do not divide embed_dim", () => ({ ...seedRequest(10), model: { input: { shape: [2, 5] }, layers: [{ type: "multihead_attention", embed_dim: 5, num_heads: 2 }, { type: "flatten" }, { type: "linear", in_features: 10, out_features: 1 }] } }), 422, "model.layers[0].num_heads", /embed_dim 5 .*num_heads 2/],
  ["attention over tokens of another width", () => ({ ...seedRequest(10), model: { input: { shape: [2, 5] }, layers: [{ type: "multihead_attention", embed_dim: 4, num_heads: 2 }] } }), 422, "model.layers[0].embed_dim", /4.*\[2, 5\]/],
  ["attention over flat features", () => ({ ...seedRequest(10), model: { layers: [{ type: "multihead_attention", embed_dim: 10, num_heads: 2 }] } }), 422, "model.layers[0]", /\[T, 10\].*\[10\]/],
  ["a ragged row", () => { const r = seedRequest(10); (r.data.train as { x: number[][] }).x[3] = [1, 2]; return r; }, 422, "data.train.x[3]"],
  ["rows narrower than the model", () => ({ ...seedRequest(10), data: { train: { x: [[1, 2]], y: [1] } } }), 422, "data.train.x"],
  ["a class label out of range", () => { const r = classifierRequest(20); r.data.train!.y![5] = 7; return r; }, 422, "data.train.y[5]", /7/],
  ["class weights of the wrong length", () => classifierRequest(20, { loss: { type: "cross_entropy", weight: [1, 2] } }), 422, "training.loss.weight"],
  ["an unknown trainable name", () => seedRequest(10, { trainable: ["fc9"] }), 422, "trainable[0]"],
  ["drop_last with fewer rows than a batch", () => seedRequest(10, { training: { batch_size: 32, drop_last: true } }), 422, "training.batch_size"],
  ["a OneCycle schedule shorter than the run", () => seedRequest(64, { training: { epochs: 3, schedule: { type: "onecycle", total_steps: 2 } } }), 422, "training.schedule.total_steps"],
  ["OneCycle momentum cycling with Adagrad", () => seedRequest(64, { training: { optimizer: { type: "adagrad" }, schedule: { type: "onecycle" } } }), 422, "training.schedule.cycle_momentum"],
  ["sequential milestones that do not match", () => seedRequest(64, { training: { schedule: { type: "sequential", schedulers: [{ type: "linear" }, { type: "cosine" }], milestones: [] } } }), 422, "training.schedule.milestones"],
  ["early stopping on val_loss without validation data", () => seedRequest(64, { training: { early_stopping: { monitor: "val_loss" } } }), 422, "training.early_stopping.monitor"],
  ["both validation data and validation_split", () => { const r = seedRequest(20); r.data.validation = r.data.train; r.data.validation_split = 0.1; return r; }, 400, "data.validation_split"],
  ["a validation_split that leaves nothing to validate", () => { const r = seedRequest(1); r.data.validation_split = 0.1; return r; }, 422, "data.validation_split"],
];

describe("bad requests get typed errors naming the field", () => {
  for (const [what, make, status, path, message] of cases) {
    it(`${what} -> ${status} at ${path}`, async () => {
      const e = await rejection(make());
      expect(e.status).toBe(status);
      expect(e.errors.map((i) => i.path)).toContain(path);
      if (message) expect(e.errors.map((i) => i.message).join(" ")).toMatch(message);
      expect(e.message).not.toMatch(/at .*\.ts:\d+/); // no stack trace in the message
    });
  }
});

describe("unknown fields are refused, each at its own path", () => {
  it("a misspelt optimizer option", async () => {
    const e = await rejection(seedRequest(10, { training: { optimizer: { type: "adam", learning_rate: 0.1 } as never } }));
    expect(e.status).toBe(400);
    expect(e.errors).toContainEqual({ path: "training.optimizer.learning_rate", message: "is not a known field" });
  });
});
