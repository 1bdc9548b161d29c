/**
 * The op vocabulary: what layers lower into and what every backend executes. An op is plain
 * data (value ids, state tensor indices, sizes); its maths lives once per backend, in
 * ops/<kind>.ts (the WASM kernel core and its TypeScript twins) and webgpu/ops.ts (WGSL).
 *
 * Conventions: `inputs` and `outputs` are value ids ([rows, size] f32 buffers); state tensors
 * are indices into CompiledModel.state (-1: absent); sizes are per sample, and an op over
 * `rows` samples runs on rows * (its per-sample count) elements.
 */
import type { Ptr } from "../kernels.js";

interface OpBase {
  readonly inputs: readonly number[];
  readonly outputs: readonly number[];
}

/**
 * y[m, out] = x[m, in] · W[out, in]^T + b, for m = rows * tokens (nn.Linear on the last dim).
 * https://pytorch.org/docs/stable/generated/torch.nn.Linear.html
 */
export interface LinearOp extends OpBase {
  readonly kind: "linear";
  readonly weight: number;
  readonly bias: number;
  readonly in: number;
  readonly out: number;
  /** Rows of the product per sample (positions of a sequence; 1 for flat features). */
  readonly tokens: number;
}

/** y = f(x) elementwise; `fn` is the activation's code (layers/activations.ts ACTIVATIONS). */
export interface ActivationOp extends OpBase {
  readonly kind: "activation";
  readonly fn: number;
  /** LeakyReLU's negative_slope (0 for the others). */
  readonly slope: number;
  readonly n: number;
}

/** nn.Dropout(p): y = x * mask / (1 - p) in training, y = x in evaluation. */
export interface DropoutOp extends OpBase {
  readonly kind: "dropout";
  readonly p: number;
  readonly n: number;
  /** Saved mask [rows, n] (-1 when p is 0). */
  readonly mask: number;
  /** Mixed into the step's seed, so two dropouts of one model draw different masks. */
  readonly salt: number;
}

/**
 * y = a + s * b (residual connections: s = 1; a LoRA layer's `base(x) + lora_B(lora_A(x)) *
 * scaling`: s = scaling, rounded as torch rounds it, the product first).
 */
export interface AddOp extends OpBase {
  readonly kind: "add";
  readonly n: number;
  /** s, the multiplier of inputs[1]; 1 when absent. */
  readonly scale?: number;
}

/**
 * Multi-head self-attention between the projections: P = softmax(Q K^T / sqrt(dh) + masks) per
 * sample and query head, dropout(P) in training, O = P V, heads side by side in the output
 * [T, D] (D = heads * dh). Grouped-query attention (kvHeads < heads, Llama's
 * num_key_value_heads) shares key/value head g = floor(h / (heads / kvHeads)) between query
 * heads; kvHeads = heads is plain multi-head attention. Two layouts of the inputs:
 *
 *   packed    inputs [qkv, mask?]: one [T, D + 2 Dkv] value, columns q | k | v
 *             (nn.MultiheadAttention's in_proj, GPT-2's c_attn)
 *   separate  inputs [q, k, v, mask?]: q [T, D], k and v [T, Dkv] (BERT's query/key/value,
 *             Llama's q_proj/k_proj/v_proj)
 *
 * with Dkv = kvHeads * dh; the optional last input is the graph's attention mask [T]
 * (0 = padding key).
 * https://pytorch.org/docs/stable/generated/torch.nn.MultiheadAttention.html
 */
export interface AttentionOp extends OpBase {
  readonly kind: "attention";
  readonly layout: "packed" | "separate";
  /** T: tokens per sample (the keys and values). */
  readonly tokens: number;
  /**
   * Tq: the queries are the first Tq tokens (separate layout: q is [Tq, D], and so is the
   * output). Absent: every token, Tq = T. A sequence classifier's last layer needs only its
   * first token's row (huggingface/bert.ts).
   */
  readonly queries?: number;
  /** D: heads * dh, the queries' and the output's width. */
  readonly dim: number;
  readonly heads: number;
  /** Key/value heads (divides heads); heads for plain multi-head attention. */
  readonly kvHeads: number;
  /** Keys after the query are hidden (the upper-triangular mask). */
  readonly causal: boolean;
  /** Saved P [rows, heads * T * T]: the attention weights, read by the backward (which overwrites them with dS). */
  readonly probs: number;
  /** Dropout on the attention weights (training only). */
  readonly p: number;
  /** Saved dropout mask and dropped weights [rows, heads * T * T] each (-1 when p is 0). */
  readonly dropMask: number;
  readonly dropped: number;
  /** Mixed into the step's seed, as DropoutOp's. */
  readonly salt: number;
}

/**
 * Rotary position embedding, Llama's rotate_half form, over x [T, heads * headDim] (the queries
 * or keys of every head): with half = headDim / 2, for token t, head h and i < half,
 *
 *   y[i]        = x[i] cos(t f_i) - x[i + half] sin(t f_i)
 *   y[i + half] = x[i + half] cos(t f_i) + x[i] sin(t f_i),      f_i = 1 / theta^(2i / headDim)
 *
 * (transformers' LlamaRotaryEmbedding and apply_rotary_pos_emb: inv_freq in float32, positions
 * 0..T-1, emb = cat(freqs, freqs)). The backward is the same rotation with sin negated.
 * https://github.com/huggingface/transformers/blob/main/src/transformers/models/llama/modeling_llama.py
 */
export interface RopeOp extends OpBase {
  readonly kind: "rope";
  readonly tokens: number;
  readonly heads: number;
  readonly headDim: number;
  /** rope_theta (10000 by default). */
  readonly theta: number;
  /** Saved table (fixed, 2 * tokens * headDim / 2 elements: cos [T, half] then sin [T, half]), written by the forward. */
  readonly table: number;
}

/** y = a * b elementwise (the SwiGLU MLP's gate: down_proj(silu(gate_proj(x)) * up_proj(x))). */
export interface MulOp extends OpBase {
  readonly kind: "mul";
  readonly n: number;
}

/**
 * LayerNorm or RMSNorm over groups of `size` contiguous elements, `tokens` groups per sample:
 * y = (x - mean) * rstd * weight + bias, rstd = 1 / sqrt(Var + eps) (Var biased); RMSNorm
 * (center false) leaves the mean out: y = x / sqrt(mean(x^2) + eps) * weight.
 * https://pytorch.org/docs/stable/generated/torch.nn.LayerNorm.html
 * https://pytorch.org/docs/stable/generated/torch.nn.RMSNorm.html
 */
export interface LayerNormOp extends OpBase {
  readonly kind: "layer_norm";
  readonly weight: number;
  readonly bias: number;
  /** Elements normalised together: the product of normalized_shape. */
  readonly size: number;
  /** Groups per sample (positions of a sequence; 1 when the whole sample is normalised). */
  readonly tokens: number;
  readonly eps: number;
  /** Subtract the mean (LayerNorm) or not (RMSNorm). */
  readonly center: boolean;
  /** Saved [rows, tokens] means (-1 for RMSNorm) and reciprocal standard deviations. */
  readonly mean: number;
  readonly rstd: number;
}

/**
 * BatchNorm over samples [C, L] (L = 1 for [C] samples, H*W for BatchNorm2d): per channel,
 * y = (x - mean) / sqrt(var + eps) * weight + bias with the batch's statistics in training
 * (running statistics updated) and the running ones in evaluation; without running statistics
 * (track_running_stats false) the batch's in both.
 * https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm1d.html
 */
export interface BatchNormOp extends OpBase {
  readonly kind: "batch_norm";
  readonly weight: number;
  readonly bias: number;
  /** Buffers (-1 without track_running_stats). */
  readonly runningMean: number;
  readonly runningVar: number;
  readonly numBatchesTracked: number;
  readonly channels: number;
  /** Positions per channel and sample (L). */
  readonly positions: number;
  readonly eps: number;
  /** The running statistics' momentum; null: the cumulative average (1 / num_batches_tracked). */
  readonly momentum: number | null;
  /**
   * Saved per-channel statistics [4, C]: the batch's mean and biased variance (forward), and the
   * sums of dy and dy * xhat (written by the backward, read by the WebGPU backward's second pass).
   */
  readonly stats: number;
}

/**
 * y[m, :] = weight[ids[m], :] for m = rows * tokens (nn.Embedding); the gradient scatter-adds
 * into the rows of weight in token order, except padding_idx's row.
 * https://pytorch.org/docs/stable/generated/torch.nn.Embedding.html
 */
export interface EmbeddingOp extends OpBase {
  readonly kind: "embedding";
  readonly weight: number;
  /** Token ids per sample (T). */
  readonly tokens: number;
  /** embedding_dim (D). */
  readonly dim: number;
  /** The row that gets no gradient (padding_idx, made non-negative), or -1. */
  readonly paddingIdx: number;
}

/** y = x + weight[:T] over x [T, D] (learned positions): the first n = T * D elements of weight. */
export interface AddPositionOp extends OpBase {
  readonly kind: "add_position";
  readonly weight: number;
  readonly n: number;
}

/**
 * Pooling over the tokens of x [T, D] into [D], honouring the attention mask when `inputs` has
 * it (inputs[1]): mode 0 mean, 1 max, 2 cls, 3 last (layers/tokens.ts POOL_MODES).
 */
export interface TokenPoolOp extends OpBase {
  readonly kind: "token_pool";
  readonly mode: number;
  readonly tokens: number;
  readonly dim: number;
  /** Saved [rows, D]: the token each max took (-1 for the other modes). */
  readonly argmax: number;
}

/**
 * Where a sliding window reads a sample's image [C, H, W] (1-d ops: H = KH = SH = DH = 1, PH = 0):
 * output (oh, ow) reads rows oh*SH - PH + kh*DH for kh < KH and columns ow*SW - PW + kw*DW for
 * kw < KW. PH and PW are the top and left padding; the bottom and right follow from OH and OW
 * (padding "same" pads one more at the bottom and right when the total is odd, as torch does).
 */
export interface WindowGeometry {
  readonly C: number;
  readonly H: number;
  readonly W: number;
  readonly KH: number;
  readonly KW: number;
  readonly SH: number;
  readonly SW: number;
  readonly PH: number;
  readonly PW: number;
  readonly DH: number;
  readonly DW: number;
  readonly OH: number;
  readonly OW: number;
}

/**
 * nn.Conv1d / nn.Conv2d (padding_mode "zeros"): y[O, OH, OW] from x[C, H, W] with
 * weight [O, C/groups, KH, KW] and bias [O]. https://pytorch.org/docs/stable/generated/torch.nn.Conv2d.html
 */
export interface ConvOp extends OpBase, WindowGeometry {
  readonly kind: "conv";
  readonly weight: number;
  readonly bias: number;
  /** Output channels. */
  readonly O: number;
  readonly groups: number;
  /** Output rows unfolded into the workspace at a time (ops/conv.ts convRowChunk). */
  readonly rowChunk: number;
}

/**
 * nn.MaxPool1d / nn.MaxPool2d over each of C planes; the argmax of every output (i32, ih*W + iw)
 * is saved for the backward pass. https://pytorch.org/docs/stable/generated/torch.nn.MaxPool2d.html
 */
export interface MaxPoolOp extends OpBase, WindowGeometry {
  readonly kind: "max_pool";
  /** Saved argmax indices [rows, C*OH*OW]. */
  readonly indices: number;
}

/**
 * nn.AvgPool1d / nn.AvgPool2d over each of C planes (DH = DW = 1), or, when `adaptive`,
 * nn.AdaptiveAvgPool1d/2d (windows from H, W, OH, OW only; K, S, P unused).
 * https://pytorch.org/docs/stable/generated/torch.nn.AvgPool2d.html
 */
export interface AvgPoolOp extends OpBase, WindowGeometry {
  readonly kind: "avg_pool";
  readonly adaptive: boolean;
  readonly countIncludePad: boolean;
  /** divisor_override, 0 for none. */
  readonly divisor: number;
}

/** Every op. */
export type Op =
  | LinearOp | ActivationOp | DropoutOp | AddOp | AttentionOp | LayerNormOp | BatchNormOp
  | EmbeddingOp | AddPositionOp | TokenPoolOp | ConvOp | MaxPoolOp | AvgPoolOp | RopeOp | MulOp;
export type OpKind = Op["kind"];
export type OpOf<K extends OpKind> = Extract<Op, { kind: K }>;

/** Which gradients an op's backward computes (for OpDef.backwardReads). */
export interface BackwardNeeds {
  /** Whether the parameter (a state index) trains: its gradient is computed. */
  param(index: number): boolean;
  /** Whether inputs[k]'s gradient is computed. */
  input(k: number): boolean;
}

/** What one op asks of the kernel core while it runs (pointers into the arena). */
export interface KernelOpContext {
  readonly k: import("../kernels.js").Kernels;
  /** A value's [rows, size] buffer. */
  value(id: number): Ptr;
  /**
   * A state tensor (parameter or buffer) as f32; 0 for index -1. A 16-bit frozen tensor
   * (`model.base_dtype`) is widened into scratch that lasts until the op returns.
   */
  state(index: number): Ptr;
  /** Where a state tensor is held, as it is held (16-bit values for a 16-bit frozen tensor); 0 for index -1. */
  stored(index: number): Ptr;
  /** How a state tensor is held: 0 float32, 1 float16, 2 bfloat16 (model.ts stateDtype). */
  dtype(index: number): 0 | 1 | 2;
  /** A trainable parameter's gradient (accumulate into it); 0 when frozen or index -1. */
  grad(index: number): Ptr;
  /** A saved buffer; 0 for id -1. */
  saved(id: number): Ptr;
  /** Scratch shared by every op: at least the largest `workspace` any op asked for. */
  readonly workspace: Ptr;
  readonly training: boolean;
  /** The step's seed (dropout masks). */
  readonly seed: number;
}

/**
 * An op kind as the planner and the kernel core see it.
 *
 * @example
 * ```ts
 * const addOp: OpDef<AddOp> = {
 *   flops: (op) => ({ forward: op.n, backward: 0 }),
 *   kernel: {
 *     forward: (c, op, rows) => c.k.add(c.value(op.outputs[0]), c.value(op.inputs[0]), c.value(op.inputs[1]), rows * op.n),
 *     backward: (c, op, rows, dy, dx) => { for (const d of dx) if (d) c.k.copy(d, dy[0], rows * op.n); },
 *   },
 * };
 * ```
 */
export interface OpDef<O extends Op> {
  /** FLOPs per sample of the forward and the backward pass. */
  flops(op: O): { forward: number; backward: number };
  /** Workspace elements for `rows` samples (shared scratch; default none). */
  workspace?(op: O, rows: number): number;
  /** Whether the op mixes the rows of a batch (the batch cannot be split across threads). */
  couplesRows?: boolean;
  /**
   * The values (ids) the kernel-core backward reads, given which gradients it computes: those
   * must outlive the forward pass; every other value's buffer is reused once the forward has
   * read it (graph/compile.ts planValueBuffers). Default: every input and output.
   */
  backwardReads?(op: O, needs: BackwardNeeds): readonly number[];
  /**
   * The kernel core's backward may write dx[0] over dy[0] (an elementwise backward that reads
   * dy[i] before it writes dx[i], in its SIMD body and its scalar tail and in the TS twin): the
   * memory plan may then keep both slots in one buffer (graph/memory.ts). Default false.
   */
  backwardInPlace?: boolean;
  kernel: {
    forward(c: KernelOpContext, op: O, rows: number): void;
    /**
     * dy: the gradients of the outputs; dx: of the inputs, written (0 = not needed).
     * Parameter gradients accumulate (+=) into c.grad(...).
     */
    backward(c: KernelOpContext, op: O, rows: number, dy: readonly Ptr[], dx: readonly Ptr[]): void;
  };
}
