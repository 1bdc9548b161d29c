/**
 * The building blocks of the Hugging Face architectures, over the layer builder: transformers'
 * modules (nn.Linear, GPT-2's Conv1D, nn.Embedding, LayerNorm, LlamaRMSNorm, the attention
 * cores) with their `state_dict` names and their `_init_weights` (PreTrainedModel):
 *
 *   Linear / Conv1D   weight ~ N(0, initializer_range), bias = 0
 *   Embedding         weight ~ N(0, initializer_range), the padding_idx row = 0
 *   LayerNorm / RMS   weight = 1, bias = 0
 *
 * The draws come from edgetune's generator (training.seed), so a model built without weights is
 * initialised as transformers does in distribution, not bit for bit: fine-tuning starts from a
 * checkpoint, and a missing task head is the only part that is ever initialised here.
 * https://github.com/huggingface/transformers/blob/main/src/transformers/models/bert/modeling_bert.py
 */
import { numel, type LayerBuilder } from "../layers/define.js";
import { dropoutOp } from "../layers/dropout.js";
import type { LinearParameters } from "../layers/linear.js";
import type { LayerNormParameters } from "../layers/norm.js";
import type { TensorRef } from "../graph/types.js";

/**
 * nn.Linear(in, out, bias) under `b`'s name with transformers' init; `conv1d`: GPT-2's Conv1D,
 * whose weight the state_dict holds as [in, out] (y = x W + b).
 *
 * @example
 * ```ts
 * const query = hfLinear(layer.module("attention.self.query"), 768, 768, { bias: true, std: 0.02 });
 * const q = linearApply(b, x, query);
 * ```
 */
export function hfLinear(b: LayerBuilder, inF: number, outF: number, o: { bias: boolean; std: number; conv1d?: boolean }): LinearParameters {
  const weight = o.conv1d ? b.parameter("weight", [inF, outF], { transposed: true }) : b.parameter("weight", [outF, inF]);
  const bias = o.bias ? b.parameter("bias", [outF]) : -1;
  b.init(weight, { kind: "normal", mean: 0, std: o.std });
  if (bias >= 0) b.init(bias, { kind: "fill", value: 0 });
  return { weight, bias, in: inF, out: outF };
}

/**
 * nn.Embedding(num, dim, padding_idx) under `b`'s name with transformers' init.
 *
 * @example
 * ```ts
 * const wte = hfEmbeddingParameter(b.module("wte"), 50257, 768, null, 0.02);
 * ```
 */
export function hfEmbeddingParameter(b: LayerBuilder, num: number, dim: number, paddingIdx: number | null, std: number): number {
  const weight = b.parameter("weight", [num, dim]);
  b.init(weight, { kind: "normal", mean: 0, std });
  if (paddingIdx !== null) b.init(weight, { kind: "zero_row", row: paddingIdx, width: dim });
  return weight;
}

/**
 * Looks token ids up in an embedding: ids [T] -> [T, dim]; the padding_idx row gets no gradient.
 *
 * @example
 * ```ts
 * const h = embed(b, ids, wte, 768, null);
 * ```
 */
export function embed(b: LayerBuilder, ids: TensorRef, weight: number, dim: number, paddingIdx: number | null): TensorRef {
  const y = b.value([...ids.shape, dim]);
  b.op({ kind: "embedding", inputs: [ids.value], outputs: [y.value], weight, tokens: numel(ids.shape), dim, paddingIdx: paddingIdx ?? -1 });
  return y;
}

/**
 * x + weight[:T] (absolute positions 0..T-1, as position_ids = arange(T)).
 *
 * @example
 * ```ts
 * const h = addPositions(b, tokens, wpe);
 * ```
 */
export function addPositions(b: LayerBuilder, x: TensorRef, weight: number): TensorRef {
  const y = b.value(x.shape);
  b.op({ kind: "add_position", inputs: [x.value], outputs: [y.value], weight, n: numel(x.shape) });
  return y;
}

/**
 * a * b elementwise (the SwiGLU gate).
 *
 * @example
 * ```ts
 * const gated = mul(b, activation(b, gate, "silu"), up);
 * ```
 */
export function mul(b: LayerBuilder, x: TensorRef, y: TensorRef): TensorRef {
  const out = b.value(x.shape);
  b.op({ kind: "mul", inputs: [x.value, y.value], outputs: [out.value], n: numel(x.shape) });
  return out;
}

/**
 * nn.Dropout(p): no op at p = 0 (the identity), as fine-tuning configs usually leave it > 0.
 *
 * @example
 * ```ts
 * const h = dropout(b, x, config.hidden_dropout_prob);
 * ```
 */
export function dropout(b: LayerBuilder, x: TensorRef, p: number): TensorRef {
  return p > 0 ? dropoutOp(b, x, p) : x;
}

/**
 * LayerNorm(dim, eps) or LlamaRMSNorm(dim, eps) under `b`'s name: weight ones, bias zeros.
 *
 * @example
 * ```ts
 * const ln = hfNorm(layer.module("ln_1"), 768, true);
 * const h = layerNormApply(b, x, ln, 1e-5);
 * ```
 */
export function hfNorm(b: LayerBuilder, dim: number, center: boolean): LayerNormParameters {
  const weight = b.parameter("weight", [dim]);
  const bias = center ? b.parameter("bias", [dim]) : -1;
  b.init(weight, { kind: "fill", value: 1 });
  if (bias >= 0) b.init(bias, { kind: "fill", value: 0 });
  return { normalized: [dim], weight, bias, center };
}

/**
 * Rotary position embedding (rotate_half form) over x [T, heads * headDim].
 *
 * @example
 * ```ts
 * const qr = rope(b, q, { heads: 4, headDim: 16, theta: 10000 });
 * ```
 */
export function rope(b: LayerBuilder, x: TensorRef, o: { heads: number; headDim: number; theta: number }): TensorRef {
  const T = x.shape[0]!;
  const y = b.value(x.shape);
  b.op({ kind: "rope", inputs: [x.value], outputs: [y.value], tokens: T, heads: o.heads, headDim: o.headDim, theta: o.theta, table: b.saved(0, T * o.headDim) });
  return y;
}

/**
 * Token 0 of each sample, [T, D] -> [D] (BertPooler's and DistilBERT's `hidden_state[:, 0]`).
 *
 * @example
 * ```ts
 * const cls = firstToken(b, hidden);
 * ```
 */
export function firstToken(b: LayerBuilder, x: TensorRef): TensorRef {
  const [T, D] = x.shape as [number, number];
  const y = b.value([D]);
  b.op({ kind: "token_pool", inputs: [x.value], outputs: [y.value], mode: 2, tokens: T, dim: D, argmax: -1 });
  return y;
}
