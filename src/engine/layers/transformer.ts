/**
 * nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=2048, dropout=0.1, activation=relu,
 * layer_norm_eps=1e-5, batch_first=True, norm_first=False) over [T, d_model] per sample, with
 * `causal` adding nn.Transformer.generate_square_subsequent_mask(T) as src_mask and the data's
 * attention mask as src_key_padding_mask. No kernel of its own: it composes self-attention,
 * linear, activation, dropout, residual sums and layer norms, exactly as PyTorch's forward:
 *
 *   post-norm: x = norm1(x + dropout1(self_attn(x)));  x = norm2(x + dropout2(ff(x)))
 *   pre-norm:  x = x + dropout1(self_attn(norm1(x)));  x = x + dropout2(ff(norm2(x)))
 *   ff(x) = linear2(dropout(activation(linear1(x))))
 *
 * https://pytorch.org/docs/stable/generated/torch.nn.TransformerEncoderLayer.html
 */
import { z } from "zod";
import { layerName, positive, size, unit } from "../../schema/fields.js";
import type { TensorRef } from "../graph/types.js";
import { activation } from "./activations.js";
import { selfAttentionApply, selfAttentionParameters, type SelfAttentionOptions } from "./attention.js";
import { residualSum } from "./containers.js";
import { defineLayer, showShape } from "./define.js";
import { dropoutOp } from "./dropout.js";
import { linearApply, linearParameters } from "./linear.js";
import { layerNormApply, layerNormParameters } from "./norm.js";

/**
 * The `transformer_encoder_layer` layer type.
 *
 * @example
 * ```ts
 * // token ids -> embedding [T, 32] -> one encoder layer (4 heads) -> mean pool -> classes
 * const layers = [
 *   { type: "embedding", name: "emb", num_embeddings: 1000, embedding_dim: 32 },
 *   { type: "transformer_encoder_layer", name: "encoder", d_model: 32, nhead: 4, dim_feedforward: 64, dropout: 0 },
 *   { type: "pool", mode: "mean" },
 *   { type: "linear", name: "head", in_features: 32, out_features: 2 },
 * ];
 * ```
 */
export const transformerEncoderLayer = defineLayer({
  type: "transformer_encoder_layer",
  schema: z.strictObject({
    type: z.literal("transformer_encoder_layer"),
    name: layerName.optional(),
    d_model: size(),
    nhead: size(),
    dim_feedforward: size().default(2048),
    /** Dropout after attention, in the feed-forward block and on the attention weights (PyTorch's one `dropout`). */
    dropout: unit().default(0.1),
    activation: z.enum(["relu", "gelu"]).default("relu"),
    layer_norm_eps: positive().default(1e-5),
    norm_first: z.boolean().default(false),
    /** The upper-triangular src_mask: a token attends to itself and the tokens before it. */
    causal: z.boolean().default(false),
  }),
  build(spec, b, x) {
    const D = spec.d_model, H = spec.nhead;
    if (x.shape.length !== 2) {
      b.fail("", `takes a sequence [T, d_model] = [T, ${D}] per sample, but its input is ${showShape(x.shape)} (give model.input.shape [T, ${D}] for feature rows, or start with an embedding)`);
    }
    if (x.shape[1] !== D) b.fail("d_model", `is ${D} but the input ${showShape(x.shape)} has ${x.shape[1]} features per token`);
    if (D % H !== 0) b.fail("nhead", `d_model ${D} is not divisible by nhead ${H}`);

    // ---- state, in the order nn.TransformerEncoderLayer.__init__ builds it (state_dict and init order)
    const attention: SelfAttentionOptions = { embedDim: D, numHeads: H, bias: true, causal: spec.causal, dropout: spec.dropout };
    const selfAttn = b.module("self_attn");
    const attn = selfAttentionParameters(selfAttn, attention);
    const linear1 = linearParameters(b.module("linear1"), D, spec.dim_feedforward, true);
    const linear2 = linearParameters(b.module("linear2"), spec.dim_feedforward, D, true);
    const [norm1Module, norm2Module] = [b.module("norm1"), b.module("norm2")];
    const norm1 = layerNormParameters(norm1Module, [D], true, true);
    const norm2 = layerNormParameters(norm2Module, [D], true, true);
    const eps = spec.layer_norm_eps;

    // ---- forward
    // nn.Dropout(0) is the identity: no op (fine-tuning usually sets dropout 0)
    const drop = (h: TensorRef) => (spec.dropout > 0 ? dropoutOp(b, h, spec.dropout) : h);
    const sa = (h: TensorRef) => drop(selfAttentionApply(selfAttn, h, attn, attention));
    const ff = (h: TensorRef) => drop(linearApply(b, drop(activation(b, linearApply(b, h, linear1), spec.activation)), linear2));
    if (spec.norm_first) {
      const h = residualSum(b, x, sa(layerNormApply(norm1Module, x, norm1, eps)));
      return residualSum(b, h, ff(layerNormApply(norm2Module, h, norm2, eps)));
    }
    const h = layerNormApply(norm1Module, residualSum(b, x, sa(x)), norm1, eps);
    return layerNormApply(norm2Module, residualSum(b, h, ff(h)), norm2, eps);
  },
});
