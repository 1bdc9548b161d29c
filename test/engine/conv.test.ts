/**
 * Convolution and pooling layers as the compiler sees them: PyTorch's state_dict names and
 * shapes, output shapes (padding "same", ceil_mode, adaptive None), and every refusal as a 422
 * naming the field and both shapes. Training itself is covered by the parity group `conv`.
 */
import { rejection } from "./refusals.js";
import { describe, expect, it } from "vitest";
import { compileModel } from "../../src/engine/graph/compile.js";
import type { TrainRequest } from "../../src/engine/train.js";
import { Layer } from "../../src/schema/request.js";
import { lcg } from "../helpers.js";

/** Compiles layers over samples of `shape` (null: flat rows of `features`). */
function compile(layers: unknown[], shape: number[] | null, features = shape ? shape.reduce((a, b) => a * b, 1) : 0) {
  const parsed = layers.map((l) => Layer.parse(l));
  return compileModel({ layers: parsed, ...(shape ? { input: { shape } } : {}) }, null, { features });
}

/** A classification request over random images of `shape`. */
function imageRequest(shape: number[], layers: unknown[], rows = 24): TrainRequest {
  const rand = lcg(3);
  const n = shape.reduce((a, b) => a * b, 1);
  return {
    model: { input: { shape }, layers },
    data: { train: { x: Array.from({ length: rows }, () => Array.from({ length: n }, rand)), y: Array.from({ length: rows }, (_, i) => i % 3) } },
    training: { epochs: 1, batch_size: 8, shuffle: false, loss: { type: "cross_entropy" }, optimizer: { type: "adam" } },
  } as TrainRequest;
}


describe("state_dict names and shapes, as torch builds them", () => {
  it("conv2d: weight [out, in/groups, kh, kw] and bias [out]; conv1d without bias: weight [out, in/groups, k]", () => {
    const m = compile([
      { type: "conv2d", name: "c1", in_channels: 4, out_channels: 6, kernel_size: [2, 3], groups: 2 },
      { type: "flatten" },
      { type: "linear", name: "fc", in_features: 6 * 4 * 4, out_features: 2 },
    ], [4, 5, 6]);
    expect(m.state.map((t) => [t.name, t.shape])).toEqual([["c1.weight", [6, 2, 2, 3]], ["c1.bias", [6]], ["fc.weight", [2, 96]], ["fc.bias", [2]]]);
    const m1 = compile([{ type: "conv1d", in_channels: 3, out_channels: 6, kernel_size: 5, groups: 3, bias: false }, { type: "flatten" }, { type: "linear", in_features: 36, out_features: 1 }], [3, 10]);
    expect(m1.state.map((t) => [t.name, t.shape])).toEqual([["0.weight", [6, 1, 5]], ["2.weight", [1, 36]], ["2.bias", [1]]]);
    // kaiming_uniform_(a=sqrt(5)) and U(1/sqrt(fan_in)) with fan_in = in/groups * prod(kernel_size)
    expect(m.init.map((s) => s.recipe)).toEqual([
      { kind: "kaiming_uniform", fanIn: 12 },
      { kind: "uniform", bound: 1 / Math.sqrt(12) },
      { kind: "kaiming_uniform", fanIn: 96 },
      { kind: "uniform", bound: 1 / Math.sqrt(96) },
    ]);
  });

  it("pooling layers have no state; output shapes follow torch (padding 'same', ceil_mode, adaptive None, planes without channels)", () => {
    const shapes = (layers: unknown[], shape: number[]) => compile([...layers], shape).output.shape;
    expect(shapes([{ type: "conv2d", in_channels: 2, out_channels: 3, kernel_size: [2, 4], padding: "same", dilation: [3, 1] }], [2, 5, 7])).toEqual([3, 5, 7]);
    expect(shapes([{ type: "conv1d", in_channels: 2, out_channels: 3, kernel_size: 3, padding: "valid", stride: 2 }], [2, 10])).toEqual([3, 4]);
    expect(shapes([{ type: "conv2d", in_channels: 1, out_channels: 1, kernel_size: 3 }, { type: "max_pool2d", kernel_size: 3, stride: 2, ceil_mode: true }], [1, 10, 10])).toEqual([1, 4, 4]);
    expect(shapes([{ type: "conv2d", in_channels: 1, out_channels: 1, kernel_size: 1 }, { type: "max_pool2d", kernel_size: 2, padding: 1, ceil_mode: true }], [1, 5, 5])).toEqual([1, 3, 3]);
    expect(shapes([{ type: "conv2d", in_channels: 1, out_channels: 2, kernel_size: 1 }, { type: "adaptive_avg_pool2d", output_size: [null, 3] }], [1, 6, 7])).toEqual([2, 6, 3]);
    expect(shapes([{ type: "conv1d", in_channels: 1, out_channels: 2, kernel_size: 1 }, { type: "avg_pool1d", kernel_size: 3, stride: 2, padding: 1, ceil_mode: true }], [1, 8])).toEqual([2, 5]);
    // a pool over samples without a channel dimension pools the one plane
    expect(shapes([{ type: "linear", in_features: 6, out_features: 6 }, { type: "max_pool2d", kernel_size: 2 }], [4, 6])).toEqual([2, 3]);
    const m = compile([{ type: "conv2d", in_channels: 1, out_channels: 1, kernel_size: 1 }, { type: "max_pool2d", kernel_size: 2 }, { type: "avg_pool2d", kernel_size: 2 }, { type: "adaptive_avg_pool2d", output_size: 1 }], [1, 8, 8]);
    expect(m.state.map((t) => t.name)).toEqual(["0.weight", "0.bias"]);
    expect(m.output.shape).toEqual([1, 1, 1]);
  });
});

describe("refusals: 422 at the field, with both shapes", () => {
  const conv2d = (o: object = {}) => ({ type: "conv2d", in_channels: 1, out_channels: 4, kernel_size: 3, ...o });
  const head = (n: number) => [{ type: "flatten" }, { type: "linear", in_features: n, out_features: 3 }];
  const cases: [string, () => TrainRequest, string, RegExp][] = [
    ["in_channels that do not match the input", () => imageRequest([3, 8, 8], [conv2d(), ...head(144)]), "model.layers[0].in_channels", /is 1 but the input \[3, 8, 8\] has 3 channels/],
    ["groups that do not divide the channels", () => imageRequest([4, 8, 8], [conv2d({ in_channels: 4, out_channels: 6, groups: 4 }), ...head(216)]), "model.layers[0].groups", /must divide both in_channels \(4\) and out_channels \(6\)/],
    ["a kernel larger than the padded input", () => imageRequest([1, 4, 4], [conv2d({ kernel_size: [5, 3] }), ...head(8)]), "model.layers[0].kernel_size", /larger than the padded input height 4 \(input \[1, 4, 4\]/],
    ["padding 'same' with a stride", () => imageRequest([1, 8, 8], [conv2d({ padding: "same", stride: 2 }), ...head(256)]), "model.layers[0].padding", /"same" needs stride 1/],
    ["padding_mode 'reflect'", () => imageRequest([1, 8, 8], [conv2d({ padding: 1, padding_mode: "reflect" }), ...head(256)]), "model.layers[0].padding_mode", /only "zeros"/],
    ["a conv1d over images", () => imageRequest([1, 8, 8], [{ type: "conv1d", in_channels: 1, out_channels: 2, kernel_size: 3 }, ...head(12)]), "model.layers[0]", /conv1d takes samples shaped \[C, L\].*\[1, 8, 8\]/],
    ["max_pool2d padding over half the kernel", () => imageRequest([1, 8, 8], [conv2d({ padding: 1 }), { type: "max_pool2d", kernel_size: 3, padding: 2 }, ...head(36)]), "model.layers[1].padding", /at most half the kernel size \[3, 3\]/],
    ["a pool window that does not fit", () => imageRequest([1, 8, 8], [conv2d(), { type: "avg_pool2d", kernel_size: 7 }, ...head(4)]), "model.layers[1].kernel_size", /does not fit the input \[4, 6, 6\]/],
    ["a nested conv with the wrong channels", () => imageRequest([1, 8, 8], [conv2d({ padding: 1 }), { type: "sequential", name: "body", layers: [conv2d({ in_channels: 2 })] }, ...head(144)]), "model.layers[1].layers[0].in_channels", /is 2 but the input \[4, 8, 8\] has 4 channels/],
  ];
  for (const [what, make, path, message] of cases) {
    it(`${what} -> 422 at ${path}`, async () => {
      const e = await rejection(make());
      expect(e.status).toBe(422);
      const issue = e.errors.find((i) => i.path === path);
      expect(issue, JSON.stringify(e.errors)).toBeDefined();
      expect(issue!.message).toMatch(message);
    });
  }

  it("a convolution over flat rows asks for model.input.shape, at the layer and at the data", async () => {
    const request = imageRequest([1, 8, 8], [conv2d(), ...head(144)]);
    delete (request.model as { input?: unknown }).input;
    const e = await rejection(request);
    expect(e.status).toBe(422);
    expect(e.errors[0]!.path).toBe("model.layers[0]");
    expect(e.errors[0]!.message).toMatch(/conv2d takes samples shaped \[C, H, W\].*input is \[64\]: give model.input.shape \(e\.g\. \[1, 8, 8\]\)/);
    expect(e.errors.map((i) => i.path)).toContain("data.train.x");
  });

  it("malformed arguments are 400s from the schema (a kernel of 0, a triple for conv2d, an unknown padding string)", async () => {
    for (const bad of [{ kernel_size: 0 }, { kernel_size: [3, 3, 3] }, { padding: "full" }, { stride: [1] }]) {
      const e = await rejection(imageRequest([1, 8, 8], [conv2d(bad), ...head(144)]));
      expect(e.status, JSON.stringify(bad)).toBe(400);
      expect(e.errors.some((i) => i.path.startsWith("model.layers[0]")), JSON.stringify(e.errors)).toBe(true);
    }
  });
});
