/**
 * Pooling layers over samples [C, L] / [C, H, W] (or a single plane [L] / [H, W]), each plane on
 * its own, with PyTorch's arguments, defaults and checks (torch 1.13):
 *
 *   max_pool1d/2d          nn.MaxPool1d/2d(kernel_size, stride=None (= kernel_size), padding=0, dilation=1, ceil_mode=False)
 *   avg_pool1d/2d          nn.AvgPool1d/2d(kernel_size, stride=None, padding=0, ceil_mode=False,
 *                          count_include_pad=True[, divisor_override=None: 2-d only in torch 1.13])
 *   adaptive_avg_pool1d/2d nn.AdaptiveAvgPool1d/2d(output_size); a null entry keeps that input size
 *
 * Output sizes follow aten's pooling_output_shape: floor (or ceil with ceil_mode) of
 * (in + 2 pad - dilation (k - 1) - 1) / stride, plus one; with ceil_mode the last window must
 * start inside the input or the left padding. padding may be at most half the kernel size.
 * https://pytorch.org/docs/stable/generated/torch.nn.MaxPool2d.html
 */
import { z } from "zod";
import { int, layerName, size } from "../../schema/fields.js";
import type { TensorRef } from "../graph/types.js";
import { imageOf, perDim, perDims } from "./conv.js";
import { defineLayer, showShape, type LayerBuilder } from "./define.js";

/** aten's pooling_output_shape for one dimension. */
function poolOutput(input: number, kernel: number, pad: number, stride: number, dilation: number, ceil: boolean): number {
  const span = input + 2 * pad - dilation * (kernel - 1) - 1 + (ceil ? stride - 1 : 0);
  let out = Math.floor(span / stride) + 1;
  // ensure that the last pooling starts inside the image (or its left padding)
  if (ceil && (out - 1) * stride >= input + pad) out--;
  return out;
}

/** The pooled output's per-sample shape: the input's with its spatial dimensions replaced. */
function pooledShape(x: TensorRef, dims: 1 | 2, OH: number, OW: number): number[] {
  return [...x.shape.slice(0, x.shape.length - dims), ...(dims === 1 ? [OW] : [OH, OW])];
}

interface WindowArgs {
  kernel_size: number | number[];
  stride: number | number[] | null;
  padding: number | number[];
  dilation?: number | number[];
  ceil_mode: boolean;
}

/** Checks a pooling window against its input and returns the op geometry (as 2-d). */
function poolGeometry(b: LayerBuilder, x: TensorRef, dims: 1 | 2, type: string, spec: WindowArgs) {
  const { C, H, W } = imageOf(b, x.shape, dims, type, true);
  const k = perDims(spec.kernel_size, dims);
  const s = spec.stride === null ? k : perDims(spec.stride, dims);
  const p = perDims(spec.padding, dims);
  const d = perDims(spec.dilation ?? 1, dims);
  const sizes = dims === 1 ? [W] : [H, W];
  p.forEach((pad, i) => {
    if (pad > Math.floor(k[i]! / 2)) {
      b.fail("padding", `is ${showShape(p)} but must be at most half the kernel size ${showShape(k)} (PyTorch: pad should be at most half of kernel size)`);
    }
  });
  const out = sizes.map((n, i) => poolOutput(n, k[i]!, p[i]!, s[i]!, d[i]!, spec.ceil_mode));
  if (out.some((o) => o < 1)) {
    b.fail("kernel_size", `${showShape(k)}${d.some((v) => v !== 1) ? ` dilated by ${showShape(d)}` : ""} with padding ${showShape(p)} does not fit the input ${showShape(x.shape)}: the output would be ${showShape(out)}`);
  }
  const at = (v: number[], fill: number) => (dims === 1 ? [fill, v[0]!] : v) as [number, number];
  const [KH, KW] = at(k, 1);
  const [SH, SW] = at(s, 1);
  const [PH, PW] = at(p, 0);
  const [DH, DW] = at(d, 1);
  const [OH, OW] = at(out, 1);
  return { C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW };
}

const padding = (dims: 1 | 2) => perDim(dims, int().min(0).max(1 << 20)).default(0);

function maxPool<T extends "max_pool1d" | "max_pool2d">(type: T, dims: 1 | 2) {
  return defineLayer({
    type,
    schema: z.strictObject({
      type: z.literal(type),
      name: layerName.optional(),
      kernel_size: perDim(dims, size()),
      stride: perDim(dims, size()).nullable().default(null),
      padding: padding(dims),
      dilation: perDim(dims, size()).default(1),
      ceil_mode: z.boolean().default(false),
    }),
    build(spec, b, x) {
      const g = poolGeometry(b, x, dims, type, spec);
      const y = b.value(pooledShape(x, dims, g.OH, g.OW));
      b.op({ kind: "max_pool", inputs: [x.value], outputs: [y.value], ...g, indices: b.saved(g.C * g.OH * g.OW) });
      return y;
    },
  });
}

function avgPool<T extends "avg_pool1d" | "avg_pool2d">(type: T, dims: 1 | 2) {
  const base = {
    type: z.literal(type),
    name: layerName.optional(),
    kernel_size: perDim(dims, size()),
    stride: perDim(dims, size()).nullable().default(null),
    padding: padding(dims),
    ceil_mode: z.boolean().default(false),
    count_include_pad: z.boolean().default(true),
  };
  // torch 1.13's nn.AvgPool1d has no divisor_override
  const schema = dims === 1 ? z.strictObject(base) : z.strictObject({ ...base, divisor_override: size().nullable().default(null) });
  return defineLayer({
    type,
    schema: schema as z.ZodType<z.output<typeof schema> & { divisor_override?: number | null }>,
    build(spec, b, x) {
      const g = poolGeometry(b, x, dims, type, spec);
      const y = b.value(pooledShape(x, dims, g.OH, g.OW));
      b.op({
        kind: "avg_pool", inputs: [x.value], outputs: [y.value], ...g,
        adaptive: false, countIncludePad: spec.count_include_pad, divisor: spec.divisor_override ?? 0,
      });
      return y;
    },
  });
}

function adaptiveAvgPool<T extends "adaptive_avg_pool1d" | "adaptive_avg_pool2d">(type: T, dims: 1 | 2) {
  const entry = size().nullable();
  return defineLayer({
    type,
    schema: z.strictObject({
      type: z.literal(type),
      name: layerName.optional(),
      output_size: dims === 1 ? z.union([size(), z.tuple([size()])]) : z.union([entry, z.tuple([entry, entry])]),
    }),
    build(spec, b, x) {
      const { C, H, W } = imageOf(b, x.shape, dims, type, true);
      const o = spec.output_size;
      const wanted: (number | null)[] = o === null || typeof o === "number" ? Array<number | null>(dims).fill(o) : [...o];
      const sizes = dims === 1 ? [W] : [H, W];
      const out = wanted.map((v, i) => v ?? sizes[i]!);
      const [OH, OW] = (dims === 1 ? [1, out[0]!] : out) as [number, number];
      const y = b.value(pooledShape(x, dims, OH, OW));
      b.op({
        kind: "avg_pool", inputs: [x.value], outputs: [y.value], C, H, W, OH, OW,
        KH: 0, KW: 0, SH: 0, SW: 0, PH: 0, PW: 0, DH: 1, DW: 1, adaptive: true, countIncludePad: false, divisor: 0,
      });
      return y;
    },
  });
}

/**
 * nn.MaxPool1d.
 *
 * @example
 * ```ts
 * { type: "max_pool1d", kernel_size: 3, stride: 2, padding: 1 } // [4, 10] -> [4, 5]
 * ```
 */
export const maxPool1d = maxPool("max_pool1d", 1);
/**
 * nn.MaxPool2d.
 *
 * @example
 * ```ts
 * { type: "max_pool2d", kernel_size: 2 } // [8, 28, 28] -> [8, 14, 14]
 * ```
 */
export const maxPool2d = maxPool("max_pool2d", 2);
/**
 * nn.AvgPool1d (no divisor_override in torch 1.13).
 *
 * @example
 * ```ts
 * { type: "avg_pool1d", kernel_size: 2, ceil_mode: true } // [4, 5] -> [4, 3]
 * ```
 */
export const avgPool1d = avgPool("avg_pool1d", 1);
/**
 * nn.AvgPool2d.
 *
 * @example
 * ```ts
 * { type: "avg_pool2d", kernel_size: 3, stride: 2, padding: 1, count_include_pad: false } // [3, 7, 7] -> [3, 4, 4]
 * ```
 */
export const avgPool2d = avgPool("avg_pool2d", 2);
/**
 * nn.AdaptiveAvgPool1d.
 *
 * @example
 * ```ts
 * { type: "adaptive_avg_pool1d", output_size: 2 } // [4, 7] -> [4, 2]
 * ```
 */
export const adaptiveAvgPool1d = adaptiveAvgPool("adaptive_avg_pool1d", 1);
/**
 * nn.AdaptiveAvgPool2d; a null entry keeps that dimension.
 *
 * @example
 * ```ts
 * { type: "adaptive_avg_pool2d", output_size: [null, 4] } // [3, 6, 6] -> [3, 6, 4]
 * ```
 */
export const adaptiveAvgPool2d = adaptiveAvgPool("adaptive_avg_pool2d", 2);

/** Every pooling layer type. */
export const POOL_LAYERS = [maxPool1d, maxPool2d, avgPool1d, avgPool2d, adaptiveAvgPool1d, adaptiveAvgPool2d] as const;
