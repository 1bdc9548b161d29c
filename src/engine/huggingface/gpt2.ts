/**
 * GPT2LMHeadModel, as transformers' modeling_gpt2.py:
 *
 *   h = dropout(wte(ids) + wpe(0..T-1))                                    (embd_pdrop)
 *   per block (pre-norm):
 *     h = h + dropout(attn.c_proj(attend_causal(attn.c_attn(ln_1(h)))))    (resid_pdrop; attn_pdrop)
 *     h = h + dropout(mlp.c_proj(act(mlp.c_fc(ln_2(h)))))
 *   logits = ln_f(h) wte^T                                                  (lm_head tied to wte)
 *
 * Conv1D holds its weight as [in, out] (y = x W + b): the state_dict keeps that shape, the state
 * block the transpose a linear op reads. c_attn's output is one [T, 3E] value, q | k | v.
 * https://github.com/huggingface/transformers/blob/main/src/transformers/models/gpt2/modeling_gpt2.py
 */
import { z } from "zod";
import type { TensorRef } from "../graph/types.js";
import { addPositions, dropout, embed, hfEmbeddingParameter, hfLinear, hfNorm } from "./parts.js";
import { activation } from "../layers/activations.js";
import { attentionCore } from "../layers/attention.js";
import { residualSum } from "../layers/containers.js";
import { linearApply } from "../layers/linear.js";
import { layerNormApply } from "../layers/norm.js";
import { cfg, defineArchitecture, HF_ACTIVATIONS, hfActivation } from "./define.js";

/**
 * GPT2Config's fields and defaults (configuration_gpt2.py).
 *
 * @example
 * ```ts
 * Gpt2Config.parse({}).activation_function; // "gelu_new"
 * ```
 */
export const Gpt2Config = z.looseObject({
  vocab_size: cfg.count().default(50257),
  n_positions: cfg.count().default(1024),
  n_embd: cfg.count().default(768),
  n_layer: cfg.count().default(12),
  n_head: cfg.count().default(12),
  n_inner: cfg.count().nullable().default(null),
  activation_function: hfActivation("gelu_new"),
  resid_pdrop: cfg.probability().default(0.1),
  embd_pdrop: cfg.probability().default(0.1),
  attn_pdrop: cfg.probability().default(0.1),
  layer_norm_epsilon: cfg.eps().default(1e-5),
  initializer_range: cfg.range().default(0.02),
  scale_attn_weights: z.literal(true, { message: "only scaled attention (scale_attn_weights true) is supported" }).default(true),
  scale_attn_by_inverse_layer_idx: z.literal(false, { message: "scale_attn_by_inverse_layer_idx is not supported" }).default(false),
  reorder_and_upcast_attn: z.boolean().default(false),
  tie_word_embeddings: z.boolean().default(true),
});
export type Gpt2Config = z.infer<typeof Gpt2Config>;

/**
 * GPT2LMHeadModel.
 *
 * @example
 * ```ts
 * const model = { huggingface: { config: { architectures: ["GPT2LMHeadModel"], n_embd: 64, n_layer: 2, n_head: 2, vocab_size: 300, n_positions: 128 }, task: "causal-lm" } };
 * ```
 */
export const gpt2LMHeadModel = defineArchitecture<Gpt2Config>({
  name: "GPT2LMHeadModel",
  task: "causal-lm",
  config: Gpt2Config,
  checkpoint: {
    basePrefix: "transformer.",
    // the causal-mask buffers of older files
    ignore: ["^(transformer\\.)?h\\.\\d+\\.attn\\.(bias|masked_bias)$"],
    drop: [],
    newHead: [],
  },
  vocabSize: (c) => c.vocab_size,
  maxPositions: (c) => c.n_positions,
  loraTargets: ["c_attn"],
  positionsBound: true,
  build(c, b, ids) {
    const E = c.n_embd, heads = c.n_head, std = c.initializer_range;
    if (E % heads !== 0) b.fail("n_head", `n_embd ${E} is not a multiple of n_head ${heads}`);
    const inner = c.n_inner ?? 4 * E;
    // GPT2PreTrainedModel._init_weights: c_proj weights ~ N(0, initializer_range / sqrt(2 n_layer))
    const projStd = std / Math.sqrt(2 * c.n_layer);
    b.readsIds(c.vocab_size);
    b.group("transformer.embeddings");
    const t = b.module("transformer");
    const wte = hfEmbeddingParameter(t.module("wte"), c.vocab_size, E, null, std);
    const wpe = hfEmbeddingParameter(t.module("wpe"), c.n_positions, E, null, std);
    let h: TensorRef = dropout(b, addPositions(b, embed(b, ids, wte, E, null), wpe), c.embd_pdrop);

    const hiddenAct = HF_ACTIVATIONS[c.activation_function]!;
    for (let i = 0; i < c.n_layer; i++) {
      b.group(`transformer.h.${i}`);
      const block = t.module(`h.${i}`);
      const ln1 = hfNorm(block.module("ln_1"), E, true);
      const cAttn = hfLinear(block.module("attn.c_attn"), E, 3 * E, { bias: true, std, conv1d: true });
      const attnProj = hfLinear(block.module("attn.c_proj"), E, E, { bias: true, std: projStd, conv1d: true });
      const ln2 = hfNorm(block.module("ln_2"), E, true);
      const cFc = hfLinear(block.module("mlp.c_fc"), E, inner, { bias: true, std, conv1d: true });
      const mlpProj = hfLinear(block.module("mlp.c_proj"), inner, E, { bias: true, std: projStd, conv1d: true });

      const qkv = linearApply(b, layerNormApply(b, h, ln1, c.layer_norm_epsilon), cAttn);
      const context = attentionCore(block.module("attn"), [qkv], { heads, kvHeads: heads, headDim: E / heads, causal: true, dropout: c.attn_pdrop });
      h = residualSum(b, h, dropout(b, linearApply(b, context, attnProj), c.resid_pdrop));
      const f = linearApply(b, activation(b, linearApply(b, layerNormApply(b, h, ln2, c.layer_norm_epsilon), cFc), hiddenAct), mlpProj);
      h = residualSum(b, h, dropout(b, f, c.resid_pdrop));
    }
    b.group("transformer.ln_f");
    const lnF = hfNorm(t.module("ln_f"), E, true);
    const normed = layerNormApply(b, h, lnF, c.layer_norm_epsilon);
    b.group("lm_head");
    const head = c.tie_word_embeddings ? wte : hfLinear(b.module("lm_head"), E, c.vocab_size, { bias: false, std }).weight;
    return linearApply(b, normed, { weight: head, bias: -1, in: E, out: c.vocab_size });
  },
});
