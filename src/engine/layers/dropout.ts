/**
 * nn.Dropout(p=0.5): active while training (survivors scaled by 1/(1-p)), the identity for
 * validation. Masks come from a counter-based hash of the step's seed, not torch's stream.
 * https://pytorch.org/docs/stable/generated/torch.nn.Dropout.html
 */
import { z } from "zod";
import { layerName, unit } from "../../schema/fields.js";
import type { TensorRef } from "../graph/types.js";
import { defineLayer, numel, type LayerBuilder } from "./define.js";

export const dropout = defineLayer({
  type: "dropout",
  schema: z.strictObject({ type: z.literal("dropout"), name: layerName.optional(), p: unit().default(0.5) }),
  build: (spec, b, x) => dropoutOp(b, x, spec.p),
});

/**
 * Emits a dropout over a tensor of any shape (also inside attention and transformer layers).
 *
 * @example
 * ```ts
 * const h = dropoutOp(b, x, spec.dropout);
 * ```
 */
export function dropoutOp(b: LayerBuilder, x: TensorRef, p: number): TensorRef {
  const n = numel(x.shape);
  const y = b.value(x.shape);
  // the salt only has to differ between the dropouts of one model: a hash of the value id does
  b.op({ kind: "dropout", inputs: [x.value], outputs: [y.value], p, n, mask: p > 0 ? b.saved(n) : -1, salt: y.value });
  return y;
}
