/**
 * Activations: one table, ACTIVATIONS, gives each its code (the `fn` of the activation kernels
 * in wasm/assembly/activations.ts, their twins in reference.ts and the WGSL in webgpu/wgsl.ts)
 * and the float64 formula the gradient checks differentiate. A new activation is an entry
 * here, a case in each of those three kernels, and nothing else.
 */
import { z } from "zod";
import { layerName } from "../../schema/fields.js";
import type { TensorRef } from "../graph/types.js";
import { defineLayer, numel, type LayerBuilder } from "./define.js";

/**
 * erf in float64, for the reference formulas: its Taylor series below |x| = 2.5, and above
 * 1 - erfc(x) from erfc's continued fraction exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))).
 */
export function erf64(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let term = x;
    let sum = x;
    for (let n = 1; n < 200; n++) {
      term *= (-x * x) / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  let k = ax;
  for (let n = 80; n >= 1; n--) k = ax + n / 2 / k;
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / k;
  return Math.sign(x) * (1 - erfc);
}

/**
 * Every activation: its kernel code, its PyTorch module, the float64 formula (for gradient
 * checks), and its kinks (points where the derivative jumps, kept away from in checks).
 */
export const ACTIVATIONS = {
  /** nn.ReLU: max(0, x) */
  relu: { code: 0, torch: "nn.ReLU", f64: (x: number) => Math.max(x, 0), kinks: [0] },
  /** nn.LeakyReLU(negative_slope=0.01): x if x > 0 else slope * x */
  leaky_relu: { code: 1, torch: "nn.LeakyReLU", f64: (x: number, slope: number) => (x > 0 ? x : slope * x), kinks: [0] },
  /** nn.GELU(): x * Phi(x) (erf form) */
  gelu: { code: 2, torch: "nn.GELU", f64: (x: number) => 0.5 * x * (1 + erf64(x / Math.SQRT2)), kinks: [] },
  /** nn.GELU(approximate='tanh') */
  gelu_tanh: {
    code: 3,
    torch: "nn.GELU(approximate='tanh')",
    f64: (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
    kinks: [],
  },
  /** nn.Tanh */
  tanh: { code: 4, torch: "nn.Tanh", f64: Math.tanh, kinks: [] },
  /** nn.Sigmoid: 1 / (1 + e^-x) */
  sigmoid: { code: 5, torch: "nn.Sigmoid", f64: (x: number) => 1 / (1 + Math.exp(-x)), kinks: [] },
  /** nn.SiLU: x * sigmoid(x) */
  silu: { code: 6, torch: "nn.SiLU", f64: (x: number) => x / (1 + Math.exp(-x)), kinks: [] },
  /** nn.Mish: x * tanh(softplus(x)) */
  mish: { code: 7, torch: "nn.Mish", f64: (x: number) => x * Math.tanh(Math.log1p(Math.exp(x))), kinks: [] },
} as const satisfies Record<string, { code: number; torch: string; f64: (x: number, slope: number) => number; kinks: readonly number[] }>;

export type ActivationName = keyof typeof ACTIVATIONS;

/**
 * Emits an activation op over a tensor of any shape.
 *
 * @example
 * ```ts
 * const h = activation(b, x, "gelu");
 * ```
 */
export function activation(b: LayerBuilder, x: TensorRef, name: ActivationName, slope = 0): TensorRef {
  const y = b.value(x.shape);
  b.op({ kind: "activation", inputs: [x.value], outputs: [y.value], fn: ACTIVATIONS[name].code, slope, n: numel(x.shape) });
  return y;
}

/** A parameterless activation layer `{type, name?}`. */
function plain<T extends "relu" | "tanh" | "sigmoid" | "silu" | "mish">(type: T) {
  return defineLayer({
    type,
    schema: z.strictObject({ type: z.literal(type), name: layerName.optional() }),
    build: (_spec, b, x) => activation(b, x, type),
  });
}

export const relu = plain("relu");
export const tanh = plain("tanh");
export const sigmoid = plain("sigmoid");
export const silu = plain("silu");
export const mish = plain("mish");

/** nn.LeakyReLU(negative_slope=0.01) */
export const leakyRelu = defineLayer({
  type: "leaky_relu",
  schema: z.strictObject({ type: z.literal("leaky_relu"), name: layerName.optional(), negative_slope: z.number().default(0.01) }),
  build: (spec, b, x) => activation(b, x, "leaky_relu", spec.negative_slope),
});

/** nn.GELU(approximate='none'): the exact erf form; 'tanh' is the tanh approximation. */
export const gelu = defineLayer({
  type: "gelu",
  schema: z.strictObject({ type: z.literal("gelu"), name: layerName.optional(), approximate: z.enum(["none", "tanh"]).default("none") }),
  build: (spec, b, x) => activation(b, x, spec.approximate === "tanh" ? "gelu_tanh" : "gelu"),
});

/** Every activation layer type (the registry lists them all). */
export const ACTIVATION_LAYERS = [relu, leakyRelu, gelu, tanh, sigmoid, silu, mish] as const;
