/**
 * nn.Linear(in_features, out_features, bias=True) on the last dimension of its input:
 * weight [out, in], bias [out]; default init kaiming_uniform_(a=sqrt(5)) and U(+-1/sqrt(in)).
 * https://pytorch.org/docs/stable/generated/torch.nn.Linear.html
 */
import { z } from "zod";
import { layerName, size } from "../../schema/fields.js";
import type { TensorRef } from "../graph/types.js";
import { defineLayer, numel, showShape, type LayerBuilder } from "./define.js";

export const LinearLayer = z.strictObject({
  type: z.literal("linear"),
  name: layerName.optional(),
  in_features: size(),
  out_features: size(),
  bias: z.boolean().default(true),
});

export const linear = defineLayer({
  type: "linear",
  schema: LinearLayer,
  build(spec, b, x) {
    const last = x.shape.at(-1) ?? 0;
    if (last !== spec.in_features) {
      b.fail("in_features", `is ${spec.in_features} but the input ${showShape(x.shape)} has ${last} features in its last dimension`);
    }
    return linearModule(b, x, spec.in_features, spec.out_features, spec.bias);
  },
});

/**
 * An nn.Linear inside any layer (attention projections, feed-forward blocks): declares
 * `weight` and `bias` under `b`'s name with PyTorch's init, and emits the op.
 *
 * @example
 * ```ts
 * const h = linearModule(b.module("linear1"), x, d_model, dim_feedforward, true);
 * ```
 */
export function linearModule(b: LayerBuilder, x: TensorRef, inF: number, outF: number, bias: boolean): TensorRef {
  return linearApply(b, x, linearParameters(b, inF, outF, bias));
}

/**
 * The state tensors of a linear map (indices into the state; bias -1 when absent) and its sizes.
 *
 * @example
 * ```ts
 * const p: LinearParameters = { weight: b.parameter("in_proj_weight", [3 * E, E]), bias: -1, in: E, out: 3 * E };
 * ```
 */
export interface LinearParameters {
  readonly weight: number;
  readonly bias: number;
  readonly in: number;
  readonly out: number;
}

/**
 * Declares an nn.Linear's `weight` [out, in] and `bias` [out] under `b`'s name and appends
 * their default init (kaiming_uniform_, then the bias's uniform_, as nn.Linear's constructor
 * draws them). For layers that re-initialise a Linear afterwards (nn.MultiheadAttention zeroes
 * `out_proj.bias`) or emit its op later.
 *
 * @example
 * ```ts
 * const outProj = linearParameters(b.module("out_proj"), E, E, true);
 * b.init(outProj.bias, { kind: "fill", value: 0 });
 * ```
 */
export function linearParameters(b: LayerBuilder, inF: number, outF: number, bias: boolean): LinearParameters {
  const weight = b.parameter("weight", [outF, inF]);
  const biasIndex = bias ? b.parameter("bias", [outF]) : -1;
  b.init(weight, { kind: "kaiming_uniform", fanIn: inF });
  if (bias) b.init(biasIndex, { kind: "uniform", bound: inF > 0 ? 1 / Math.sqrt(inF) : 0 });
  return { weight, bias: biasIndex, in: inF, out: outF };
}

/**
 * Emits y = x W^T + b over the last dimension of x, for parameters declared by
 * linearParameters or by the layer itself (nn.MultiheadAttention's `in_proj_weight`).
 *
 * @example
 * ```ts
 * const qkv = linearApply(b, x, { weight: inProjWeight, bias: inProjBias, in: E, out: 3 * E });
 * ```
 */
export function linearApply(b: LayerBuilder, x: TensorRef, p: LinearParameters): TensorRef {
  const y = b.value([...x.shape.slice(0, -1), p.out]);
  b.op({ kind: "linear", inputs: [x.value], outputs: [y.value], weight: p.weight, bias: p.bias, in: p.in, out: p.out, tokens: numel(x.shape.slice(0, -1)) });
  return y;
}
