/**
 * LlamaForCausalLM (Llama, SmolLM, TinyLlama), as transformers' modeling_llama.py:
 *
 *   h = embed_tokens(ids)
 *   per layer (pre-norm, RMSNorm):
 *     n = input_layernorm(h)
 *     h = h + o_proj(attend_causal(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))   (grouped-query: num_key_value_heads)
 *     n = post_attention_layernorm(h)
 *     h = h + down_proj(silu(gate_proj(n)) * up_proj(n))
 *   logits = lm_head(norm(h))                                   (lm_head tied to embed_tokens when tie_word_embeddings)
 *
 * https://github.com/huggingface/transformers/blob/main/src/transformers/models/llama/modeling_llama.py
 */
import { z } from "zod";
import type { TensorRef } from "../graph/types.js";
import { embed, hfEmbeddingParameter, hfLinear, hfNorm, mul, rope } from "./parts.js";
import { activation } from "../layers/activations.js";
import { attentionCore } from "../layers/attention.js";
import { residualSum } from "../layers/containers.js";
import { linearApply } from "../layers/linear.js";
import { layerNormApply } from "../layers/norm.js";
import { cfg, defineArchitecture, HF_ACTIVATIONS, hfActivation, tokenId } from "./define.js";

/**
 * LlamaConfig's fields and defaults (configuration_llama.py).
 *
 * @example
 * ```ts
 * LlamaConfig.parse({ num_attention_heads: 4 }).num_key_value_heads; // null: as many as the attention heads
 * ```
 */
export const LlamaConfig = z.looseObject({
  vocab_size: cfg.count().default(32000),
  hidden_size: cfg.count().default(4096),
  intermediate_size: cfg.count().default(11008),
  num_hidden_layers: cfg.count().default(32),
  num_attention_heads: cfg.count().default(32),
  num_key_value_heads: cfg.count().nullable().default(null),
  head_dim: cfg.count().nullable().default(null),
  hidden_act: hfActivation("silu"),
  max_position_embeddings: cfg.count().default(2048),
  initializer_range: cfg.range().default(0.02),
  rms_norm_eps: cfg.eps().default(1e-6),
  pad_token_id: tokenId(null),
  tie_word_embeddings: z.boolean().default(false),
  rope_theta: z.number().positive().default(10000),
  rope_scaling: z.null({ message: "rope_scaling is not supported (only the default RoPE)" }).default(null),
  attention_bias: z.boolean().default(false),
  attention_dropout: cfg.probability().default(0),
  mlp_bias: z.boolean().default(false),
  pretraining_tp: z.literal(1, { message: "pretraining_tp other than 1 is not supported" }).default(1),
});
export type LlamaConfig = z.infer<typeof LlamaConfig>;

/**
 * LlamaForCausalLM.
 *
 * @example
 * ```ts
 * const model = { huggingface: { config: { architectures: ["LlamaForCausalLM"], hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 300, tie_word_embeddings: true }, task: "causal-lm" } };
 * ```
 */
export const llamaForCausalLM = defineArchitecture<LlamaConfig>({
  name: "LlamaForCausalLM",
  task: "causal-lm",
  config: LlamaConfig,
  checkpoint: {
    basePrefix: "model.",
    ignore: ["^(model\\.)?layers\\.\\d+\\.self_attn\\.rotary_emb\\.inv_freq$"],
    drop: [],
    newHead: [],
  },
  vocabSize: (c) => c.vocab_size,
  maxPositions: (c) => c.max_position_embeddings,
  loraTargets: ["q_proj", "v_proj"],
  positionsBound: false,
  build(c, b, ids) {
    const H = c.hidden_size, heads = c.num_attention_heads, std = c.initializer_range;
    const kvHeads = c.num_key_value_heads ?? heads;
    if (heads % kvHeads !== 0) b.fail("num_key_value_heads", `num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
    if (c.head_dim === null && H % heads !== 0) b.fail("num_attention_heads", `hidden_size ${H} is not a multiple of num_attention_heads ${heads}`);
    const hd = c.head_dim ?? H / heads;
    if (hd % 2 !== 0) b.fail("head_dim", `is ${hd}: rotary embeddings rotate pairs of dimensions, so it must be even`);
    const pad = c.pad_token_id !== null && c.pad_token_id < c.vocab_size ? c.pad_token_id : null;
    const rmsEps = c.rms_norm_eps;
    b.readsIds(c.vocab_size);
    b.group("model.embed_tokens");
    const m = b.module("model");
    const embedTokens = hfEmbeddingParameter(m.module("embed_tokens"), c.vocab_size, H, pad, std);
    let h: TensorRef = embed(b, ids, embedTokens, H, pad);

    const hiddenAct = HF_ACTIVATIONS[c.hidden_act]!;
    for (let i = 0; i < c.num_hidden_layers; i++) {
      b.group(`model.layers.${i}`);
      const layer = m.module(`layers.${i}`);
      const attn = layer.module("self_attn");
      const bias = c.attention_bias, mlpBias = c.mlp_bias;
      const qProj = hfLinear(attn.module("q_proj"), H, heads * hd, { bias, std });
      const kProj = hfLinear(attn.module("k_proj"), H, kvHeads * hd, { bias, std });
      const vProj = hfLinear(attn.module("v_proj"), H, kvHeads * hd, { bias, std });
      const oProj = hfLinear(attn.module("o_proj"), heads * hd, H, { bias, std });
      const gate = hfLinear(layer.module("mlp.gate_proj"), H, c.intermediate_size, { bias: mlpBias, std });
      const up = hfLinear(layer.module("mlp.up_proj"), H, c.intermediate_size, { bias: mlpBias, std });
      const down = hfLinear(layer.module("mlp.down_proj"), c.intermediate_size, H, { bias: mlpBias, std });
      const inLn = hfNorm(layer.module("input_layernorm"), H, false);
      const postLn = hfNorm(layer.module("post_attention_layernorm"), H, false);

      const n = layerNormApply(b, h, inLn, rmsEps);
      const q = rope(b, linearApply(b, n, qProj), { heads, headDim: hd, theta: c.rope_theta });
      const k = rope(b, linearApply(b, n, kProj), { heads: kvHeads, headDim: hd, theta: c.rope_theta });
      const context = attentionCore(attn, [q, k, linearApply(b, n, vProj)], { heads, kvHeads, headDim: hd, causal: true, dropout: c.attention_dropout });
      h = residualSum(b, h, linearApply(b, context, oProj));
      const n2 = layerNormApply(b, h, postLn, rmsEps);
      h = residualSum(b, h, linearApply(b, mul(b, activation(b, linearApply(b, n2, gate), hiddenAct), linearApply(b, n2, up)), down));
    }
    b.group("model.norm");
    const finalNorm = hfNorm(m.module("norm"), H, false);
    const normed = layerNormApply(b, h, finalNorm, rmsEps);
    b.group("lm_head");
    const head = c.tie_word_embeddings ? embedTokens : hfLinear(b.module("lm_head"), H, c.vocab_size, { bias: false, std }).weight;
    return linearApply(b, normed, { weight: head, bias: -1, in: H, out: c.vocab_size });
  },
});
