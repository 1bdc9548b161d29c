/**
 * nn.Conv1d / nn.Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
 * groups=1, bias=True, padding_mode='zeros') over samples [C, L] / [C, H, W]: weight
 * [out, in/groups, k...], bias [out]; default init kaiming_uniform_(a=sqrt(5)) on the weight and
 * U(+-1/sqrt(fan_in)) on the bias, fan_in = in/groups * prod(kernel_size).
 * https://pytorch.org/docs/stable/generated/torch.nn.Conv2d.html
 *
 * padding "same" is torch 1.13's: stride 1 only; a total padding d*(k-1) that is odd puts the
 * extra row/column at the bottom/right (aten's _convolution_mode pads the input on that side),
 * which the op expresses as top/left padding with one more output position's worth at the end.
 * Only padding_mode "zeros"; the others are refused.
 */
import { z } from "zod";
import { int, layerName, size } from "../../schema/fields.js";
import type { Shape } from "../graph/types.js";
import { convRowChunk } from "../ops/conv.js";
import { defineLayer, numel, showShape, type LayerBuilder, type LayerDef } from "./define.js";

/**
 * An int or a list of `dims` ints (PyTorch's `_single` / `_pair` arguments).
 *
 * @example
 * ```ts
 * perDim(2, size()).parse([3, 5]); // [3, 5]; perDim(2, size()).parse(3) is 3 (expanded by perDims)
 * ```
 */
export function perDim<T extends z.ZodType<number>>(dims: 1 | 2, one: T) {
  return z.union([one, dims === 1 ? z.tuple([one]) : z.tuple([one, one])]);
}

/**
 * An int or list argument as one value per dimension.
 *
 * @example
 * ```ts
 * perDims(3, 2); // [3, 3]
 * perDims([1, 2], 2); // [1, 2]
 * ```
 */
export function perDims(v: number | readonly number[], dims: 1 | 2): number[] {
  return typeof v === "number" ? Array<number>(dims).fill(v) : [...v];
}

/**
 * Reads a layer's input as [C, ...spatial] with `dims` spatial dimensions; refuses other ranks
 * with a message that asks for model.input.shape when the input is flat.
 *
 * @example
 * ```ts
 * const { C, H, W } = imageOf(b, x.shape, 2, "conv2d"); // [1, 28, 28] -> C 1, H 28, W 28
 * ```
 */
export function imageOf(b: LayerBuilder, shape: Shape, dims: 1 | 2, type: string, planesOk = false): { C: number; H: number; W: number } {
  const rank = shape.length;
  const names = dims === 1 ? "[C, L]" : "[C, H, W]";
  if (rank === dims + 1) return { C: shape[0]!, H: dims === 1 ? 1 : shape[1]!, W: shape[rank - 1]! };
  if (planesOk && rank === dims) return { C: 1, H: dims === 1 ? 1 : shape[0]!, W: shape[rank - 1]! };
  const n = numel(shape);
  const side = Math.sqrt(n);
  const example = dims === 1 ? `[1, ${n}]` : Number.isInteger(side) ? `[1, ${side}, ${side}]` : "[1, 28, 28]";
  b.fail("", `${type} takes samples shaped ${names} (channels first${planesOk ? ", or without the channel dimension" : ""}) but its input is ${showShape(shape)}` +
    (rank === 1 ? `: give model.input.shape (e.g. ${example}) to read each row of x as ${dims === 1 ? "a sequence" : "an image"}` : ""));
}

/**
 * Output length of a sliding window: floor((in + pads - dilation*(k-1) - 1) / stride) + 1 (torch's formula).
 *
 * @example
 * ```ts
 * windowOutput(28, 1, 1, 3, 1, 1); // 28: a 3x3 convolution with padding 1 keeps the size
 * windowOutput(5, 0, 0, 7, 1, 1);  // -1: the kernel does not fit (refused)
 * ```
 */
export function windowOutput(input: number, padBefore: number, padAfter: number, kernel: number, stride: number, dilation: number): number {
  return Math.floor((input + padBefore + padAfter - dilation * (kernel - 1) - 1) / stride) + 1;
}

const paddingMode = z.enum(["zeros", "reflect", "replicate", "circular"]);

function convSchema<T extends "conv1d" | "conv2d">(type: T, dims: 1 | 2) {
  return z.strictObject({
    type: z.literal(type),
    name: layerName.optional(),
    in_channels: size(),
    out_channels: size(),
    kernel_size: perDim(dims, size()),
    stride: perDim(dims, size()).default(1),
    padding: z.union([z.enum(["valid", "same"]), perDim(dims, int().min(0).max(1 << 20))]).default(0),
    dilation: perDim(dims, size()).default(1),
    groups: size().default(1),
    bias: z.boolean().default(true),
    padding_mode: paddingMode.default("zeros"),
  });
}

/** The conv1d request schema (nn.Conv1d's arguments and defaults). */
export const Conv1dLayer = convSchema("conv1d", 1);
/** The conv2d request schema (nn.Conv2d's arguments and defaults). */
export const Conv2dLayer = convSchema("conv2d", 2);
type ConvSpec = z.output<typeof Conv1dLayer> | z.output<typeof Conv2dLayer>;

function defineConv<S extends ConvSpec>(type: S["type"], schema: z.ZodType<S>, dims: 1 | 2): LayerDef<S> {
  return defineLayer<S>({
    type,
    schema,
    build(spec, b, x) {
      const { C, H, W } = imageOf(b, x.shape, dims, type);
      if (spec.padding_mode !== "zeros") {
        b.fail("padding_mode", `"${spec.padding_mode}" is not supported: only "zeros" (pad the data yourself, or use a zero-padded convolution)`);
      }
      if (C !== spec.in_channels) {
        b.fail("in_channels", `is ${spec.in_channels} but the input ${showShape(x.shape)} has ${C} channel${C === 1 ? "" : "s"} (its first dimension)`);
      }
      const g = spec.groups;
      if (spec.in_channels % g !== 0 || spec.out_channels % g !== 0) {
        b.fail("groups", `is ${g}, which must divide both in_channels (${spec.in_channels}) and out_channels (${spec.out_channels})`);
      }
      // one value per spatial dimension, then as 2-d with a unit height for conv1d
      const k = perDims(spec.kernel_size, dims);
      const s = perDims(spec.stride, dims);
      const d = perDims(spec.dilation, dims);
      const sizes = dims === 1 ? [W] : [H, W];
      let before: number[];
      let after: number[];
      if (spec.padding === "valid") {
        before = after = sizes.map(() => 0);
      } else if (spec.padding === "same") {
        if (s.some((v) => v !== 1)) b.fail("padding", `"same" needs stride 1 (PyTorch: padding='same' is not supported for strided convolutions), but stride is ${showShape(s)}`);
        // torch 1.13 (aten _convolution_mode): total d*(k-1), left = total // 2, the rest on the right
        before = k.map((kk, i) => Math.floor((d[i]! * (kk - 1)) / 2));
        after = k.map((kk, i) => d[i]! * (kk - 1) - before[i]!);
      } else {
        before = after = perDims(spec.padding, dims);
      }
      const out = sizes.map((n, i) => windowOutput(n, before[i]!, after[i]!, k[i]!, s[i]!, d[i]!));
      out.forEach((o, i) => {
        if (o < 1) {
          const axis = dims === 1 ? "length" : i === 0 ? "height" : "width";
          b.fail("kernel_size", `the window (kernel ${k[i]}${d[i] !== 1 ? ` dilated by ${d[i]}` : ""} spans ${d[i]! * (k[i]! - 1) + 1}) is larger than the padded input ${axis} ` +
            `${sizes[i]! + before[i]! + after[i]!} (input ${showShape(x.shape)}, padding ${before[i]}+${after[i]}): the output would be empty`);
        }
      });
      const at = (v: number[], fill: number) => (dims === 1 ? [fill, v[0]!] : v);
      const [KH, KW] = at(k, 1) as [number, number];
      const [SH, SW] = at(s, 1) as [number, number];
      const [PH, PW] = at(before, 0) as [number, number];
      const [DH, DW] = at(d, 1) as [number, number];
      const [OH, OW] = at(out, 1) as [number, number];
      const O = spec.out_channels;
      const fanIn = (C / g) * k.reduce((a, v) => a * v, 1);
      const weight = b.parameter("weight", [O, C / g, ...k]);
      const bias = spec.bias ? b.parameter("bias", [O]) : -1;
      b.init(weight, { kind: "kaiming_uniform", fanIn });
      if (spec.bias) b.init(bias, { kind: "uniform", bound: 1 / Math.sqrt(fanIn) });
      const y = b.value(dims === 1 ? [O, OW] : [O, OH, OW]);
      const geometry = { C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW };
      b.op({ kind: "conv", inputs: [x.value], outputs: [y.value], weight, bias, O, groups: g, ...geometry, rowChunk: convRowChunk(geometry) });
      return y;
    },
  });
}

/**
 * nn.Conv1d over samples [C, L].
 *
 * @example
 * ```ts
 * { type: "conv1d", in_channels: 4, out_channels: 8, kernel_size: 3, dilation: 2, groups: 2 } // weight [8, 2, 3]
 * ```
 */
export const conv1d = defineConv("conv1d", Conv1dLayer, 1);
/**
 * nn.Conv2d over samples [C, H, W].
 *
 * @example
 * ```ts
 * { type: "conv2d", name: "conv1", in_channels: 1, out_channels: 8, kernel_size: 3, padding: 1 } // [1, 28, 28] -> [8, 28, 28]
 * ```
 */
export const conv2d = defineConv("conv2d", Conv2dLayer, 2);
