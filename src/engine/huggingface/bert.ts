/**
 * BertForSequenceClassification (BERT, MiniLM, bert-tiny/mini), as transformers' modeling_bert.py:
 *
 *   h = LayerNorm(word_embeddings(ids) + token_type_embeddings(types) + position_embeddings(0..T-1)); dropout
 *   per layer (post-norm):
 *     a = LayerNorm(h + dropout(attention.output.dense(attentionCore(query(h), key(h), value(h), mask))))
 *     h = LayerNorm(a + dropout(output.dense(act(intermediate.dense(a)))))
 *   logits = classifier(dropout(tanh(pooler.dense(h[0]))))
 *
 * The last layer runs its queries and everything after its attention on the first token's row
 * only: that row is all the pooler reads, so the values are the same and the work less.
 *
 * https://github.com/huggingface/transformers/blob/main/src/transformers/models/bert/modeling_bert.py
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
 * BertConfig's fields and defaults (configuration_bert.py).
 *
 * @example
 * ```ts
 * BertConfig.parse({ hidden_size: 128 }).num_hidden_layers; // 12
 * ```
 */
export const BertConfig = z.looseObject({
  vocab_size: cfg.count().default(30522),
  hidden_size: cfg.count().default(768),
  num_hidden_layers: cfg.count().default(12),
  num_attention_heads: cfg.count().default(12),
  intermediate_size: cfg.count().default(3072),
  hidden_act: hfActivation("gelu"),
  hidden_dropout_prob: cfg.probability().default(0.1),
  attention_probs_dropout_prob: cfg.probability().default(0.1),
  max_position_embeddings: cfg.count().default(512),
  type_vocab_size: cfg.count().default(2),
  initializer_range: cfg.range().default(0.02),
  layer_norm_eps: cfg.eps().default(1e-12),
  pad_token_id: tokenId(0),
  position_embedding_type: z.literal("absolute", { message: 'only "absolute" position embeddings are supported' }).default("absolute"),
  is_decoder: z.literal(false, { message: "a decoder BERT is not supported" }).default(false),
  classifier_dropout: cfg.probability().nullable().default(null),
  ...labelFields,
});
export type BertConfig = z.infer<typeof BertConfig>;

/**
 * BertForSequenceClassification.
 *
 * @example
 * ```ts
 * const model = { huggingface: { config: { architectures: ["BertForSequenceClassification"], hidden_size: 128, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 512 }, task: "sequence-classification" } };
 * ```
 */
export const bertForSequenceClassification = defineArchitecture<BertConfig>({
  name: "BertForSequenceClassification",
  task: "sequence-classification",
  config: BertConfig,
  checkpoint: {
    basePrefix: "bert.",
    ignore: ["^(bert\\.)?embeddings\\.position_ids$", "^(bert\\.)?embeddings\\.token_type_ids$"],
    // a BertForPreTraining / BertForMaskedLM checkpoint (bert-base-uncased): its heads
    drop: ["^cls\\."],
    newHead: ["bert.pooler.", "classifier."],
  },
  vocabSize: (c) => c.vocab_size,
  maxPositions: (c) => c.max_position_embeddings,
  loraTargets: ["query", "value"],
  positionsBound: true,
  build(c, b, ids) {
    const H = c.hidden_size, heads = c.num_attention_heads, std = c.initializer_range;
    if (H % heads !== 0) b.fail("num_attention_heads", `hidden_size ${H} is not a multiple of num_attention_heads ${heads}`);
    const hd = H / heads;
    const pad = c.pad_token_id !== null && c.pad_token_id < c.vocab_size ? c.pad_token_id : null;
    b.readsIds(c.vocab_size);
    const bert = b.module("bert");

    // ---- embeddings
    b.group("bert.embeddings");
    const e = bert.module("embeddings");
    const word = hfEmbeddingParameter(e.module("word_embeddings"), c.vocab_size, H, pad, std);
    const position = hfEmbeddingParameter(e.module("position_embeddings"), c.max_position_embeddings, H, null, std);
    const tokenType = hfEmbeddingParameter(e.module("token_type_embeddings"), c.type_vocab_size, H, null, std);
    const embLn = hfNorm(e.module("LayerNorm"), H, true);
    const types = b.tokenTypes(c.type_vocab_size);
    let h: TensorRef = residualSum(b, embed(b, ids, word, H, pad), embed(b, types, tokenType, H, null));
    h = dropout(b, layerNormApply(b, addPositions(b, h, position), embLn, c.layer_norm_eps), c.hidden_dropout_prob);

    // ---- encoder
    const hiddenAct = HF_ACTIVATIONS[c.hidden_act]!;
    for (let i = 0; i < c.num_hidden_layers; i++) {
      b.group(`bert.encoder.layer.${i}`);
      const layer = bert.module(`encoder.layer.${i}`);
      const self = layer.module("attention.self");
      const query = hfLinear(self.module("query"), H, H, { bias: true, std });
      const key = hfLinear(self.module("key"), H, H, { bias: true, std });
      const value = hfLinear(self.module("value"), H, H, { bias: true, std });
      const attnOut = hfLinear(layer.module("attention.output.dense"), H, H, { bias: true, std });
      const attnLn = hfNorm(layer.module("attention.output.LayerNorm"), H, true);
      const inter = hfLinear(layer.module("intermediate.dense"), H, c.intermediate_size, { bias: true, std });
      const out = hfLinear(layer.module("output.dense"), c.intermediate_size, H, { bias: true, std });
      const outLn = hfNorm(layer.module("output.LayerNorm"), H, true);

      // Only the first token's row of the last layer reaches the pooler (h[0]): there the query
      // projection and the attention run for that one query over every key, and the output
      // projection, both layer norms and the feed-forward on that row alone. The same values as
      // over all T rows (each row's sums are computed alike; the other rows' gradients were
      // exact zeros), for about 40% of the encoder's linear FLOPs at two layers.
      const last = i === c.num_hidden_layers - 1;
      const queries = last ? firstToken(b, h) : h;
      const context = attentionCore(self, [linearApply(b, queries, query), linearApply(b, h, key), linearApply(b, h, value)], {
        heads, kvHeads: heads, headDim: hd, causal: false, dropout: c.attention_probs_dropout_prob,
      });
      if (last) h = queries;
      const a = layerNormApply(b, residualSum(b, h, dropout(b, linearApply(b, context, attnOut), c.hidden_dropout_prob)), attnLn, c.layer_norm_eps);
      const f = dropout(b, linearApply(b, activation(b, linearApply(b, a, inter), hiddenAct), out), c.hidden_dropout_prob);
      h = layerNormApply(b, residualSum(b, a, f), outLn, c.layer_norm_eps);
    }

    // ---- pooler and classifier (h is already the first token's row: the last layer's tail ran on it alone)
    b.group("bert.pooler");
    const pooler = hfLinear(bert.module("pooler.dense"), H, H, { bias: true, std });
    const pooled = activation(b, linearApply(b, h, pooler), "tanh");
    b.group("classifier");
    const classifier = hfLinear(b.module("classifier"), H, numLabels(c), { bias: true, std });
    return linearApply(b, dropout(b, pooled, c.classifier_dropout ?? c.hidden_dropout_prob), classifier);
  },
});
