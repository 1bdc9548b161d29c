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
  const weight = b.parameter("weight", [outF, inF]);
  const biasIndex = bias ? b.parameter("bias", [outF]) : -1;
  b.init(weight, { kind: "kaiming_uniform", fanIn: inF });
  if (bias) b.init(biasIndex, { kind: "uniform", bound: inF > 0 ? 1 / Math.sqrt(inF) : 0 });
  const y = b.value([...x.shape.slice(0, -1), outF]);
  b.op({ kind: "linear", inputs: [x.value], outputs: [y.value], weight, bias: biasIndex, in: inF, out: outF, tokens: numel(x.shape.slice(0, -1)) });
  return y;
}
