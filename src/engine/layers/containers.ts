/**
 * Nesting: `sequential` (an nn.Sequential inside the model) and `residual` (x + f(x), f an
 * nn.Sequential). Their layers are named `<name>.<index or name>`, as nn.Module names children,
 * so `encoder.0.weight` loads with load_state_dict into the same structure built in PyTorch.
 */
import { z } from "zod";
import { layerName } from "../../schema/fields.js";
import type { TensorRef } from "../graph/types.js";
import { defineLayer, numel, showShape, type LayerBuilder } from "./define.js";
import { Layer, type LayerSpec } from "./index.js";

/** A container's schema: `{type, name?, layers}`, its children the recursive layer union (resolved when first parsed). */
function containerSchema<S>(type: "sequential" | "residual"): z.ZodType<S> {
  return z.strictObject({
    type: z.literal(type),
    name: layerName.optional(),
    get layers() {
      return z.array(z.lazy(() => Layer)).min(1).max(256);
    },
  }) as unknown as z.ZodType<S>;
}

export interface SequentialSpec {
  type: "sequential";
  name?: string | undefined;
  layers: LayerSpec[];
}
export interface ResidualSpec {
  type: "residual";
  name?: string | undefined;
  layers: LayerSpec[];
}

/** nn.Sequential(*layers) */
export const sequential = defineLayer<SequentialSpec>({
  type: "sequential",
  schema: containerSchema<SequentialSpec>("sequential"),
  build: (spec, b, x) => chain(spec.layers, b, x),
});

/** x + f(x), f = nn.Sequential(*layers): f must keep the shape of x. */
export const residual = defineLayer<ResidualSpec>({
  type: "residual",
  schema: containerSchema<ResidualSpec>("residual"),
  build(spec, b, x) {
    const fx = chain(spec.layers, b, x);
    if (fx.shape.length !== x.shape.length || fx.shape.some((d, i) => d !== x.shape[i])) {
      b.fail("layers", `must keep the shape of their input to be added to it: input ${showShape(x.shape)}, output ${showShape(fx.shape)}`);
    }
    return residualSum(b, x, fx);
  },
});

/** The container's layers applied in order (each named by its index or name under the container). */
function chain(layers: readonly LayerSpec[], b: LayerBuilder, x: TensorRef): TensorRef {
  return layers.reduce((y, layer, i) => b.layer(layer, y, i), x);
}

/**
 * x + f(x): the residual sum of two tensors of one shape (an `add` op).
 *
 * @example
 * ```ts
 * const h = residualSum(b, x, attentionOutput);
 * ```
 */
export function residualSum(b: LayerBuilder, x: TensorRef, fx: TensorRef): TensorRef {
  const y = b.value(x.shape);
  b.op({ kind: "add", inputs: [x.value, fx.value], outputs: [y.value], n: numel(x.shape) });
  return y;
}
