/**
 * Token models: `embedding` (nn.Embedding over the data's input_ids), `position_embedding`
 * (learned positions added to a [T, D] input) and `pool` (pooling over tokens that honours the
 * attention mask), which take a sequence from ids to one vector per sample.
 *
 *   input_ids [T] -> embedding [T, D] -> position_embedding [T, D] -> ... -> pool [D] -> linear
 *
 * https://pytorch.org/docs/stable/generated/torch.nn.Embedding.html
 */
import { z } from "zod";
import { int, layerName, size } from "../../schema/fields.js";
import { defineLayer, numel, showShape } from "./define.js";

/**
 * An id is stored as f32, exact for integers below 2^24: a vocabulary may not be larger.
 *
 * @example
 * ```ts
 * num_embeddings <= MAX_VOCABULARY; // 16777216
 * ```
 */
export const MAX_VOCABULARY = 1 << 24;

/**
 * The pooling modes, by their code in the token_pool kernels (wasm/assembly/tokens.ts).
 *
 * @example
 * ```ts
 * b.op({ kind: "token_pool", mode: POOL_MODES.max, ... });
 * ```
 */
export const POOL_MODES = { mean: 0, max: 1, cls: 2, last: 3 } as const;
/**
 * A pooling mode's name.
 *
 * @example
 * ```ts
 * const mode: PoolMode = "last";
 * ```
 */
export type PoolMode = keyof typeof POOL_MODES;

/**
 * nn.Embedding(num_embeddings, embedding_dim, padding_idx=None): weight [num_embeddings,
 * embedding_dim], init normal_(0, 1) and then the padding_idx row zeroed; that row gets no
 * gradient. Reads the token ids [T] of the data and returns [T, embedding_dim].
 *
 * @example
 * ```json
 * { "type": "embedding", "name": "tok", "num_embeddings": 30522, "embedding_dim": 128, "padding_idx": 0 }
 * ```
 */
export const embedding = defineLayer({
  type: "embedding",
  schema: z.strictObject({
    type: z.literal("embedding"),
    name: layerName.optional(),
    num_embeddings: int().min(1).max(MAX_VOCABULARY),
    embedding_dim: size(),
    padding_idx: int().nullable().default(null),
  }),
  takesIds: true,
  build(spec, b, x) {
    const num = spec.num_embeddings;
    let paddingIdx = -1;
    if (spec.padding_idx !== null) {
      // torch accepts -num_embeddings <= padding_idx < num_embeddings (negative counts from the end)
      if (spec.padding_idx < -num || spec.padding_idx >= num) {
        b.fail("padding_idx", `is ${spec.padding_idx}; it must be an id of the vocabulary: -${num} <= padding_idx < ${num} (num_embeddings)`);
      }
      paddingIdx = spec.padding_idx < 0 ? spec.padding_idx + num : spec.padding_idx;
    }
    b.readsIds(num);
    const weight = b.parameter("weight", [num, spec.embedding_dim]);
    b.init(weight, { kind: "normal", mean: 0, std: 1 });
    if (paddingIdx >= 0) b.init(weight, { kind: "zero_row", row: paddingIdx, width: spec.embedding_dim });
    const y = b.value([...x.shape, spec.embedding_dim]);
    b.op({ kind: "embedding", inputs: [x.value], outputs: [y.value], weight, tokens: numel(x.shape), dim: spec.embedding_dim, paddingIdx });
    return y;
  },
});

/**
 * Learned positions: y = x + weight[:T] for x [T, D]; weight [num_embeddings, D], initialised
 * as nn.Embedding's (normal_(0, 1)), so a model with up to num_embeddings tokens. GPT-2's
 * `wpe` used as `x + wpe(arange(T))`.
 *
 * @example
 * ```json
 * { "type": "position_embedding", "name": "pos", "num_embeddings": 512, "embedding_dim": 128 }
 * ```
 */
export const positionEmbedding = defineLayer({
  type: "position_embedding",
  schema: z.strictObject({
    type: z.literal("position_embedding"),
    name: layerName.optional(),
    num_embeddings: size(),
    embedding_dim: size(),
  }),
  build(spec, b, x) {
    if (x.shape.length !== 2) {
      b.fail("", `adds positions to a sequence [tokens, embedding_dim], but its input is ${showShape(x.shape)}`);
    }
    const [T, D] = x.shape as [number, number];
    if (D !== spec.embedding_dim) {
      b.fail("embedding_dim", `is ${spec.embedding_dim} but the input ${showShape(x.shape)} has ${D} features per token`);
    }
    if (T > spec.num_embeddings) {
      b.fail("num_embeddings", `is ${spec.num_embeddings} positions but the input ${showShape(x.shape)} has ${T} tokens`);
    }
    const weight = b.parameter("weight", [spec.num_embeddings, D]);
    b.init(weight, { kind: "normal", mean: 0, std: 1 });
    const y = b.value(x.shape);
    b.op({ kind: "add_position", inputs: [x.value], outputs: [y.value], weight, n: T * D });
    return y;
  },
});

/**
 * Pooling over tokens, [T, D] -> [D], counting only tokens with attention_mask 1 (every token
 * without a mask): mean (sum / count), max (gradient to the first maximum), cls (token 0),
 * last (the last token with mask 1).
 *
 * @example
 * ```json
 * { "type": "pool", "mode": "mean" }
 * ```
 */
export const pool = defineLayer({
  type: "pool",
  schema: z.strictObject({
    type: z.literal("pool"),
    name: layerName.optional(),
    mode: z.enum(["mean", "max", "cls", "last"]).default("mean"),
  }),
  build(spec, b, x) {
    if (x.shape.length !== 2) {
      b.fail("", `pools a sequence [tokens, features], but its input is ${showShape(x.shape)}`);
    }
    const [T, D] = x.shape as [number, number];
    if (b.mask !== null && T !== b.maskTokens) {
      b.fail("", `pools ${T} tokens (input ${showShape(x.shape)}) but the attention mask has ${b.maskTokens} per row`);
    }
    const y = b.value([D]);
    const argmax = spec.mode === "max" ? b.saved(D) : -1;
    const inputs = b.mask !== null ? [x.value, b.mask] : [x.value];
    b.op({ kind: "token_pool", inputs, outputs: [y.value], mode: POOL_MODES[spec.mode], tokens: T, dim: D, argmax });
    return y;
  },
});

/**
 * Every token layer type (listed in LEAF_LAYERS).
 *
 * @example
 * ```ts
 * export const LEAF_LAYERS = [linear, ...ACTIVATION_LAYERS, dropout, flatten, ...TOKEN_LAYERS] as const;
 * ```
 */
export const TOKEN_LAYERS = [embedding, positionEmbedding, pool] as const;
