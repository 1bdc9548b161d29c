/**
 * Normalisation layers:
 *
 *   layer_norm    nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True): weight and
 *                 bias of normalized_shape (ones, zeros); over the trailing dims of the input, so
 *                 a [T, D] sample is normalised per token with normalized_shape D.
 *                 https://pytorch.org/docs/stable/generated/torch.nn.LayerNorm.html
 *   rms_norm      torch.nn.RMSNorm(normalized_shape, eps=None, elementwise_affine=True) (torch >= 2.4):
 *                 y = x * rsqrt(mean(x^2) + eps) * weight; eps null is torch.finfo(float32).eps
 *                 (2^-23), as RMSNorm's None on float32 inputs. https://pytorch.org/docs/stable/generated/torch.nn.RMSNorm.html
 *   batch_norm1d  nn.BatchNorm1d(num_features, eps=1e-5, momentum=0.1, affine=True,
 *   batch_norm2d  track_running_stats=True) / nn.BatchNorm2d: on [C] or [C, L] samples (1d),
 *                 [C, H, W] (2d). weight, bias [C] (ones, zeros); buffers running_mean [C]
 *                 (zeros), running_var [C] (ones), num_batches_tracked (I64, 0).
 *                 https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm1d.html
 */
import { z } from "zod";
import { layerName, nonNegative, size, unit } from "../../schema/fields.js";
import type { TensorRef } from "../graph/types.js";
import { defineLayer, numel, showShape, type LayerBuilder } from "./define.js";

/**
 * torch.finfo(torch.float32).eps: RMSNorm's eps when it is None.
 *
 * @example
 * ```ts
 * const eps = spec.eps ?? FLOAT32_EPS; // 1.1920928955078125e-7
 * ```
 */
export const FLOAT32_EPS = 2 ** -23;

/** An int or a list of ints, as nn.LayerNorm takes it: the trailing dims to normalise over. */
const normalizedShape = z.union([size(), z.array(size()).min(1).max(8)]);

/** normalized_shape as a list. */
function dims(shape: number | readonly number[]): number[] {
  return typeof shape === "number" ? [shape] : [...shape];
}

/**
 * Emits a layer norm (or RMS norm: center false) over the trailing `normalized` dims of x,
 * declaring `weight` (and `bias`) under b's name when affine.
 *
 * @example
 * ```ts
 * const h = layerNormModule(b.module("norm1"), x, [d_model], 1e-5, true, true); // "norm1.weight", "norm1.bias"
 * ```
 */
export function layerNormModule(
  b: LayerBuilder, x: TensorRef, normalized: readonly number[], eps: number, affine: boolean, center: boolean,
): TensorRef {
  const norm = layerNormParameters(b, normalized, affine, center);
  return layerNormApply(b, x, norm, eps);
}

/** A LayerNorm's (or RMSNorm's) parameters: `weight` and `bias` (-1 when absent) over `normalized`. */
export interface LayerNormParameters {
  normalized: readonly number[];
  weight: number;
  bias: number;
  center: boolean;
}

/**
 * Declares a LayerNorm's `weight` (ones) and `bias` (zeros; none for RMSNorm) under `b`'s name:
 * for layers whose forward uses the norm in another order than their constructor builds it.
 *
 * @example
 * ```ts
 * const norm1 = layerNormParameters(b.module("norm1"), [d_model], true, true);
 * const y = layerNormApply(b.module("norm1"), x, norm1, 1e-5);
 * ```
 */
export function layerNormParameters(b: LayerBuilder, normalized: readonly number[], affine: boolean, center: boolean): LayerNormParameters {
  const weight = affine ? b.parameter("weight", normalized) : -1;
  const bias = affine && center ? b.parameter("bias", normalized) : -1;
  if (weight >= 0) b.init(weight, { kind: "fill", value: 1 });
  if (bias >= 0) b.init(bias, { kind: "fill", value: 0 });
  return { normalized, weight, bias, center };
}

/** Emits the norm over the trailing `normalized` dims of x (a 422 at `normalized_shape` when x does not end with them). */
export function layerNormApply(b: LayerBuilder, x: TensorRef, p: LayerNormParameters, eps: number): TensorRef {
  const normalized = p.normalized;
  const k = normalized.length;
  const trailing = x.shape.slice(-k);
  if (x.shape.length < k || trailing.some((d, i) => d !== normalized[i])) {
    b.fail(
      "normalized_shape",
      `is ${showShape(normalized)} but the input ${showShape(x.shape)} does not end with those dimensions: it normalises over the last ${k} dimension(s) of each sample`,
    );
  }
  const sizeOf = numel(normalized);
  const tokens = numel(x.shape) / sizeOf;
  const y = b.value(x.shape);
  b.op({
    kind: "layer_norm", inputs: [x.value], outputs: [y.value], weight: p.weight, bias: p.bias, size: sizeOf, tokens, eps, center: p.center,
    mean: p.center ? b.saved(tokens) : -1, rstd: b.saved(tokens),
  });
  return y;
}

/**
 * nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True)
 *
 * @example
 * ```ts
 * const spec = { type: "layer_norm", name: "norm", normalized_shape: [768], eps: 1e-12 }; // "norm.weight", "norm.bias"
 * ```
 */
export const layerNorm = defineLayer({
  type: "layer_norm",
  schema: z.strictObject({
    type: z.literal("layer_norm"),
    name: layerName.optional(),
    normalized_shape: normalizedShape,
    eps: nonNegative().default(1e-5),
    elementwise_affine: z.boolean().default(true),
  }),
  build: (spec, b, x) => layerNormModule(b, x, dims(spec.normalized_shape), spec.eps, spec.elementwise_affine, true),
});

/**
 * torch.nn.RMSNorm(normalized_shape, eps=None, elementwise_affine=True); eps null = 2^-23 (float32's eps).
 *
 * @example
 * ```ts
 * const spec = { type: "rms_norm", name: "input_layernorm", normalized_shape: 4096, eps: 1e-6 }; // "input_layernorm.weight"
 * ```
 */
export const rmsNorm = defineLayer({
  type: "rms_norm",
  schema: z.strictObject({
    type: z.literal("rms_norm"),
    name: layerName.optional(),
    normalized_shape: normalizedShape,
    eps: nonNegative().nullable().default(null),
    elementwise_affine: z.boolean().default(true),
  }),
  build: (spec, b, x) => layerNormModule(b, x, dims(spec.normalized_shape), spec.eps ?? FLOAT32_EPS, spec.elementwise_affine, false),
});

/** The arguments of nn.BatchNorm1d/2d; momentum null is the cumulative average. */
const batchNormFields = {
  name: layerName.optional(),
  num_features: size(),
  eps: nonNegative().default(1e-5),
  momentum: unit().nullable().default(0.1),
  affine: z.boolean().default(true),
  track_running_stats: z.boolean().default(true),
};

interface BatchNormSpec {
  type: "batch_norm1d" | "batch_norm2d";
  num_features: number;
  eps: number;
  momentum: number | null;
  affine: boolean;
  track_running_stats: boolean;
}

/** Declares BatchNorm's state (state_dict order: weight, bias, running_mean, running_var, num_batches_tracked) and emits its op. */
function batchNorm(spec: BatchNormSpec, b: LayerBuilder, x: TensorRef): TensorRef {
  const C = spec.num_features;
  const weight = spec.affine ? b.parameter("weight", [C]) : -1;
  const bias = spec.affine ? b.parameter("bias", [C]) : -1;
  const track = spec.track_running_stats;
  const runningMean = track ? b.buffer("running_mean", [C]) : -1;
  const runningVar = track ? b.buffer("running_var", [C]) : -1;
  const numBatchesTracked = track ? b.buffer("num_batches_tracked", [], "I64") : -1;
  // reset_running_stats() then reset_parameters(): fills only, no draw from the generator
  if (track) {
    b.init(runningMean, { kind: "fill", value: 0 });
    b.init(runningVar, { kind: "fill", value: 1 });
    b.init(numBatchesTracked, { kind: "fill", value: 0 });
  }
  if (spec.affine) {
    b.init(weight, { kind: "fill", value: 1 });
    b.init(bias, { kind: "fill", value: 0 });
  }
  const positions = numel(x.shape.slice(1));
  if (positions === 1) {
    // PyTorch's check is on the values per channel, batch times positions: with one position a batch of 1 row fails
    b.requireBatchRows(
      2,
      `${spec.type} over ${showShape(x.shape)} samples normalises each channel over the rows of a batch: PyTorch raises "Expected more than 1 value per channel when training" for a batch of 1 row`,
      !track,
    );
  }
  const y = b.value(x.shape);
  b.op({
    kind: "batch_norm", inputs: [x.value], outputs: [y.value], weight, bias, runningMean, runningVar, numBatchesTracked,
    channels: C, positions, eps: spec.eps, momentum: spec.momentum, stats: b.saved(0, 4 * C),
  });
  return y;
}

/** The channel count check both BatchNorms make: num_features is the sample's first dimension. */
function checkChannels(spec: BatchNormSpec, b: LayerBuilder, x: TensorRef): void {
  if (x.shape[0] !== spec.num_features) {
    b.fail("num_features", `is ${spec.num_features} but the input ${showShape(x.shape)} has ${x.shape[0]} channels (its first dimension)`);
  }
}

/**
 * nn.BatchNorm1d(num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True) on [C] or [C, L] samples.
 *
 * @example
 * ```ts
 * const spec = { type: "batch_norm1d", name: "bn", num_features: 64, momentum: null }; // bn.running_mean, ...
 * ```
 */
export const batchNorm1d = defineLayer({
  type: "batch_norm1d",
  schema: z.strictObject({ type: z.literal("batch_norm1d"), ...batchNormFields }),
  build(spec, b, x) {
    if (x.shape.length > 2) {
      b.fail("type", `batch_norm1d takes [C] or [C, L] samples; the input is ${showShape(x.shape)} (batch_norm2d takes [C, H, W])`);
    }
    checkChannels(spec, b, x);
    return batchNorm(spec, b, x);
  },
});

/**
 * nn.BatchNorm2d(num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True) on [C, H, W] samples.
 *
 * @example
 * ```ts
 * const spec = { type: "batch_norm2d", name: "bn1", num_features: 16 }; // after a conv2d with 16 output channels
 * ```
 */
export const batchNorm2d = defineLayer({
  type: "batch_norm2d",
  schema: z.strictObject({ type: z.literal("batch_norm2d"), ...batchNormFields }),
  build(spec, b, x) {
    if (x.shape.length !== 3) {
      b.fail("type", `batch_norm2d takes [C, H, W] samples; the input is ${showShape(x.shape)} (give model.input.shape, or use batch_norm1d)`);
    }
    checkChannels(spec, b, x);
    return batchNorm(spec, b, x);
  },
});

/**
 * Every normalisation layer type (listed in LEAF_LAYERS).
 *
 * @example
 * ```ts
 * export const LEAF_LAYERS = [linear, ...ACTIVATION_LAYERS, dropout, flatten, ...NORM_LAYERS] as const;
 * ```
 */
export const NORM_LAYERS = [layerNorm, rmsNorm, batchNorm1d, batchNorm2d] as const;
