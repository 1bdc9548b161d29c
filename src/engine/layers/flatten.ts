/**
 * nn.Flatten(start_dim=1, end_dim=-1): merges dimensions start_dim..end_dim of the input
 * (dimension 0 is the batch). No op: a value is stored contiguously, so only its shape changes.
 * https://pytorch.org/docs/stable/generated/torch.nn.Flatten.html
 */
import { z } from "zod";
import { int, layerName } from "../../schema/fields.js";
import { defineLayer, numel, showShape } from "./define.js";

export const flatten = defineLayer({
  type: "flatten",
  schema: z.strictObject({
    type: z.literal("flatten"),
    name: layerName.optional(),
    start_dim: int().default(1),
    end_dim: int().default(-1),
  }),
  build(spec, b, x) {
    // PyTorch's dims count the batch: the sample's dims are 1..rank
    const rank = x.shape.length + 1;
    const dim = (d: number) => (d < 0 ? d + rank : d);
    const start = dim(spec.start_dim);
    const end = dim(spec.end_dim);
    if (start < 1 || start >= rank) {
      b.fail("start_dim", `is ${spec.start_dim}; for the input ${showShape(x.shape)} (batch first: ${rank} dims) it must name a dimension from 1 to ${rank - 1} (the batch stays)`);
    }
    if (end < start || end >= rank) {
      b.fail("end_dim", `is ${spec.end_dim}; for the input ${showShape(x.shape)} it must name a dimension from start_dim (${start}) to ${rank - 1}`);
    }
    const s = x.shape;
    return { ...x, shape: [...s.slice(0, start - 1), numel(s.slice(start - 1, end)), ...s.slice(end)] };
  },
});
