/**
 * DistilBertForSequenceClassification, as transformers' modeling_distilbert.py:
 *
 *   h = LayerNorm(word_embeddings(ids) + position_embeddings(0..T-1)); dropout      (eps 1e-12)
 *   per layer (post-norm):
 *     a = sa_layer_norm(h + out_lin(attentionCore(q_lin(h), k_lin(h), v_lin(h), mask)))
 *     h = output_layer_norm(a + dropout(ffn.lin2(act(ffn.lin1(a)))))
 *   logits = classifier(dropout(relu(pre_classifier(h[0]))))      (seq_classif_dropout)
 *
 * The last layer's queries and tail run on the first token's row only, as in bert.ts.
 *
 * https://github.com/huggingface/transformers/blob/main/src/transformers/models/distilbert/modeling_distilbert.py
 */
import { z } from "zod";
import type { TensorRef } from "../graph/types.js";
import { addPositions, dropout, embed, firstToken, hfEmbeddingParameter, hfLinear, hfNorm } from "./parts.js";
import { activation } from "../layers/activations.js";
import { attentionCore } from "../layers/attention.js";
import { residualSum } from "../layers/containers.js";
import { linearApply } from "../layers/linear.js";
import { layerNormApply } from "../layers/norm.js";
import { cfg, defineArchitecture, HF_ACTIVATIONS, hfActivation, labelFields, numLabels, tokenId } from "./define.js";

/**
 * DistilBertConfig's fields and defaults (configuration_distilbert.py).
 *
 * @example
 * ```ts
 * DistilBertConfig.parse({}).dim; // 768
 * ```
 */
export const DistilBertConfig = z.looseObject({
  vocab_size: cfg.count().default(30522),
  max_position_embeddings: cfg.count().default(512),
  sinusoidal_pos_embds: z.literal(false, { message: "sinusoidal position embeddings are not supported" }).default(false),
  n_layers: cfg.count().default(6),
  n_heads: cfg.count().default(12),
  dim: cfg.count().default(768),
  hidden_dim: cfg.count().default(3072),
  dropout: cfg.probability().default(0.1),
  attention_dropout: cfg.probability().default(0.1),
  activation: hfActivation("gelu"),
  initializer_range: cfg.range().default(0.02),
  seq_classif_dropout: cfg.probability().default(0.2),
  pad_token_id: tokenId(0),
  ...labelFields,
});
export type DistilBertConfig = z.infer<typeof DistilBertConfig>;

/** DistilBERT's LayerNorms are built with eps=1e-12 (not a config field). */
const EPS = 1e-12;

/**
 * DistilBertForSequenceClassification.
 *
 * @example
 * ```ts
 * const model = { huggingface: { config: { architectures: ["DistilBertForSequenceClassification"], dim: 64, n_layers: 2, n_heads: 2, hidden_dim: 128 }, task: "sequence-classification" } };
 * ```
 */
export const distilBertForSequenceClassification = defineArchitecture<DistilBertConfig>({
  name: "DistilBertForSequenceClassification",
  task: "sequence-classification",
  config: DistilBertConfig,
  checkpoint: {
    basePrefix: "distilbert.",
    ignore: ["^(distilbert\\.)?embeddings\\.position_ids$"],
    // a DistilBertForMaskedLM checkpoint (distilbert-base-uncased): its head
    drop: ["^vocab_transform\\.", "^vocab_layer_norm\\.", "^vocab_projector\\."],
    newHead: ["pre_classifier.", "classifier."],
  },
  vocabSize: (c) => c.vocab_size,
  maxPositions: (c) => c.max_position_embeddings,
  loraTargets: [], // PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING has no distilbert entry
  positionsBound: true,
  build(c, b, ids) {
    const D = c.dim, heads = c.n_heads, std = c.initializer_range;
    if (D % heads !== 0) b.fail("n_heads", `dim ${D} is not a multiple of n_heads ${heads}`);
    const pad = c.pad_token_id !== null && c.pad_token_id < c.vocab_size ? c.pad_token_id : null;
    b.readsIds(c.vocab_size);
    const root = b.module("distilbert");

    b.group("distilbert.embeddings");
    const e = root.module("embeddings");
    const word = hfEmbeddingParameter(e.module("word_embeddings"), c.vocab_size, D, pad, std);
    const position = hfEmbeddingParameter(e.module("position_embeddings"), c.max_position_embeddings, D, null, std);
    const embLn = hfNorm(e.module("LayerNorm"), D, true);
    let h: TensorRef = dropout(b, layerNormApply(b, addPositions(b, embed(b, ids, word, D, pad), position), embLn, EPS), c.dropout);

    const hiddenAct = HF_ACTIVATIONS[c.activation]!;
    for (let i = 0; i < c.n_layers; i++) {
      b.group(`distilbert.transformer.layer.${i}`);
      const layer = root.module(`transformer.layer.${i}`);
      const attention = layer.module("attention");
      const q = hfLinear(attention.module("q_lin"), D, D, { bias: true, std });
      const k = hfLinear(attention.module("k_lin"), D, D, { bias: true, std });
      const v = hfLinear(attention.module("v_lin"), D, D, { bias: true, std });
      const out = hfLinear(attention.module("out_lin"), D, D, { bias: true, std });
      const saLn = hfNorm(layer.module("sa_layer_norm"), D, true);
      const lin1 = hfLinear(layer.module("ffn.lin1"), D, c.hidden_dim, { bias: true, std });
      const lin2 = hfLinear(layer.module("ffn.lin2"), c.hidden_dim, D, { bias: true, std });
      const outLn = hfNorm(layer.module("output_layer_norm"), D, true);

      // the classifier reads h[0] only: the last layer's query and everything after its
      // attention run on the first token's row alone (the same values; bert.ts says more)
      const last = i === c.n_layers - 1;
      const queries = last ? firstToken(b, h) : h;
      const context = attentionCore(attention, [linearApply(b, queries, q), linearApply(b, h, k), linearApply(b, h, v)], {
        heads, kvHeads: heads, headDim: D / heads, causal: false, dropout: c.attention_dropout,
      });
      if (last) h = queries;
      const a = layerNormApply(b, residualSum(b, linearApply(b, context, out), h), saLn, EPS);
      const f = dropout(b, linearApply(b, activation(b, linearApply(b, a, lin1), hiddenAct), lin2), c.dropout);
      h = layerNormApply(b, residualSum(b, f, a), outLn, EPS);
    }

    b.group("pre_classifier");
    const pre = hfLinear(b.module("pre_classifier"), D, D, { bias: true, std });
    const pooled = activation(b, linearApply(b, h, pre), "relu"); // h is the first token's row already
    b.group("classifier");
    const classifier = hfLinear(b.module("classifier"), D, numLabels(c), { bias: true, std });
    return linearApply(b, dropout(b, pooled, c.seq_classif_dropout), classifier);
  },
});
