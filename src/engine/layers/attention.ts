/**
 * nn.MultiheadAttention(embed_dim, num_heads, dropout, bias, batch_first=True) as
 * self-attention: y = attn(x, x, x, key_padding_mask = (attention_mask == 0),
 * attn_mask = causal ? generate_square_subsequent_mask(T) : None)[0], over [T, embed_dim] per sample.
 * https://pytorch.org/docs/stable/generated/torch.nn.MultiheadAttention.html
 *
 * Lowering: in_proj (a linear op, [T, D] -> [T, 3D], parameters `in_proj_weight` [3D, D] and
 * `in_proj_bias` [3D]), the attention op (ops/attention.ts, [T, 3D] -> [T, D]), and out_proj
 * (a linear op, `out_proj.weight` [D, D], `out_proj.bias` [D]).
 */
import { z } from "zod";
import { layerName, size, unit } from "../../schema/fields.js";
import type { TensorRef } from "../graph/types.js";
import { defineLayer, showShape, type LayerBuilder } from "./define.js";
import { linearApply, linearParameters, type LinearParameters } from "./linear.js";

/**
 * The `multihead_attention` layer type.
 *
 * @example
 * ```ts
 * // model.input.shape [6, 8]: 6 tokens of 8 features, 2 heads of 4
 * const layers = [{ type: "multihead_attention", name: "attn", embed_dim: 8, num_heads: 2, causal: true }];
 * compileModel({ input: { shape: [6, 8] }, layers: layers.map((l) => Layer.parse(l)) }, null, { features: 48 });
 * ```
 */
export const multiheadAttention = defineLayer({
  type: "multihead_attention",
  schema: z.strictObject({
    type: z.literal("multihead_attention"),
    name: layerName.optional(),
    embed_dim: size(),
    num_heads: size(),
    bias: z.boolean().default(true),
    /** Keys after the query are hidden (nn.Transformer.generate_square_subsequent_mask as attn_mask). */
    causal: z.boolean().default(false),
    /** Dropout on the attention weights, in training. */
    dropout: unit().default(0),
  }),
  build(spec, b, x) {
    const E = spec.embed_dim, H = spec.num_heads;
    if (x.shape.length !== 2) {
      b.fail("", `takes a sequence [T, embed_dim] = [T, ${E}] per sample, but its input is ${showShape(x.shape)} (give model.input.shape [T, ${E}] for feature rows)`);
    }
    const D = x.shape[1]!;
    if (D !== E) b.fail("embed_dim", `is ${E} but the input ${showShape(x.shape)} has ${D} features per token`);
    if (E % H !== 0) b.fail("num_heads", `embed_dim ${E} is not divisible by num_heads ${H}`);
    return selfAttention(b, x, { embedDim: E, numHeads: H, bias: spec.bias, causal: spec.causal, dropout: spec.dropout });
  },
});

/** nn.MultiheadAttention's arguments, for selfAttention. */
export interface SelfAttentionOptions {
  embedDim: number;
  numHeads: number;
  bias: boolean;
  causal: boolean;
  dropout: number;
}

/**
 * nn.MultiheadAttention(batch_first=True) as self-attention under `b`'s name, for layers that
 * contain one (`transformer_encoder_layer`'s `self_attn`): declares in_proj_weight, in_proj_bias,
 * out_proj.* with PyTorch's init order and emits in_proj, the attention op (with the graph's
 * key-padding mask when the data has one) and out_proj. The caller has checked that x is
 * [T, embedDim] and that numHeads divides embedDim (naming its own fields).
 *
 * @example
 * ```ts
 * const a = selfAttention(b.module("self_attn"), x, { embedDim: d_model, numHeads: nhead, bias: true, causal, dropout });
 * ```
 */
export function selfAttention(b: LayerBuilder, x: TensorRef, o: SelfAttentionOptions): TensorRef {
  return selfAttentionApply(b, x, selfAttentionParameters(b, o), o);
}

/** The state of one self-attention: in_proj_weight, in_proj_bias and out_proj's (see selfAttention). */
export interface SelfAttentionParameters {
  inProjWeight: number;
  inProjBias: number;
  outProj: LinearParameters;
}

/**
 * Declares a self-attention's parameters under `b`'s name, in nn.MultiheadAttention's
 * state_dict order, with its init order: for layers whose forward uses it later than their
 * constructor builds it (a pre-norm transformer layer normalises first).
 *
 * @example
 * ```ts
 * const attn = selfAttentionParameters(b.module("self_attn"), options);
 * const y = selfAttentionApply(b.module("self_attn"), normed, attn, options);
 * ```
 */
export function selfAttentionParameters(b: LayerBuilder, o: SelfAttentionOptions): SelfAttentionParameters {
  const E = o.embedDim;
  // state_dict order (nn.MultiheadAttention.__init__): in_proj_weight, in_proj_bias, out_proj.*
  const inProjWeight = b.parameter("in_proj_weight", [3 * E, E]);
  const inProjBias = o.bias ? b.parameter("in_proj_bias", [3 * E]) : -1;
  // out_proj is an nn.Linear built in __init__ (its kaiming_uniform_ and uniform_ draws are
  // consumed), then _reset_parameters: xavier_uniform_(in_proj_weight), both biases to 0
  const outProj = linearParameters(b.module("out_proj"), E, E, o.bias);
  b.init(inProjWeight, { kind: "xavier_uniform", fanIn: E, fanOut: 3 * E });
  if (o.bias) {
    b.init(inProjBias, { kind: "fill", value: 0 });
    b.init(outProj.bias, { kind: "fill", value: 0 });
  }
  return { inProjWeight, inProjBias, outProj };
}

/** Emits in_proj, the attention op and out_proj over x [T, embedDim] (see selfAttention). */
export function selfAttentionApply(b: LayerBuilder, x: TensorRef, p: SelfAttentionParameters, o: SelfAttentionOptions): TensorRef {
  const E = o.embedDim, H = o.numHeads;
  const T = x.shape[0]!;
  if (b.mask !== null && T !== b.maskTokens) {
    b.fail("", `attends over ${T} tokens (input ${showShape(x.shape)}) but the attention mask has ${b.maskTokens} per row: the key-padding mask must cover the same tokens`);
  }
  const qkv = linearApply(b, x, { weight: p.inProjWeight, bias: p.inProjBias, in: E, out: 3 * E });
  const attended = attentionCore(b, [qkv], { heads: H, kvHeads: H, headDim: E / H, causal: o.causal, dropout: o.dropout });
  return linearApply(b, attended, p.outProj);
}

/** The attention core's arguments (attentionCore). */
export interface AttentionCoreOptions {
  heads: number;
  /** Key/value heads (grouped-query attention); `heads` for multi-head attention. */
  kvHeads: number;
  headDim: number;
  causal: boolean;
  /** Dropout on the attention weights, in training. */
  dropout: number;
}

/**
 * Emits the attention op between projections: softmax(Q K^T / sqrt(head_dim) + masks) V over
 * one packed [T, (heads + 2 kvHeads) head_dim] value (nn.MultiheadAttention's in_proj, GPT-2's
 * c_attn) or separate q [T, heads head_dim] and k, v [T, kvHeads head_dim] (BERT, Llama), with
 * the graph's key-padding mask when the data has one; returns [T, heads head_dim]. A separate q
 * may hold only the first Tq tokens' queries ([Tq, heads head_dim], or [heads head_dim] for the
 * first token alone): the output then has q's shape.
 *
 * @example
 * ```ts
 * const o = attentionCore(b, [q, k, v], { heads: 12, kvHeads: 12, headDim: 64, causal: false, dropout: 0.1 });
 * ```
 */
export function attentionCore(b: LayerBuilder, qkv: readonly TensorRef[], o: AttentionCoreOptions): TensorRef {
  // separate q, k, v: the keys' T tokens; q may hold only the first Tq of them, as [Tq, D], or
  // as [D] for the first token alone (the output then has q's shape)
  const keys = qkv.length === 1 ? qkv[0]! : qkv[1]!;
  const T = keys.shape[0]!;
  const q = qkv[0]!;
  const Tq = qkv.length === 1 || q.shape.length > 1 ? q.shape[0]! : 1;
  if (b.mask !== null && T !== b.maskTokens) {
    b.fail("", `attends over ${T} tokens (${showShape(keys.shape)}) but the attention mask has ${b.maskTokens} per row: the key-padding mask must cover the same tokens`);
  }
  if (Tq > T) b.fail("", `has ${Tq} queries for ${T} keys: the queries are the first tokens`);
  const D = o.heads * o.headDim;
  const y = b.value(q.shape.length > 1 || qkv.length === 1 ? [Tq, D] : [D]);
  const weights = o.heads * Tq * T;
  const dropping = o.dropout > 0;
  // the graph's mask value is [rows, T] when the data has one: T tokens in, T tokens here
  const inputs = qkv.map((t) => t.value);
  if (b.mask !== null) inputs.push(b.mask);
  b.op({
    kind: "attention",
    layout: qkv.length === 1 ? "packed" : "separate",
    inputs,
    outputs: [y.value],
    tokens: T,
    ...(Tq !== T ? { queries: Tq } : {}),
    dim: D,
    heads: o.heads,
    kvHeads: o.kvHeads,
    causal: o.causal,
    probs: b.saved(weights),
    p: o.dropout,
    dropMask: dropping ? b.saved(weights) : -1,
    dropped: dropping ? b.saved(weights) : -1,
    salt: y.value,
  });
  return y;
}
