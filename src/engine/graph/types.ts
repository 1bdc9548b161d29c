/**
 * The compiled model: what the layer registry lowers a request's `model` into, once, before any
 * memory is touched. Plain data only (it is posted to training threads and read by every
 * backend): tensors of the state_dict, activation values, saved buffers, and the list of ops
 * that the WASM kernel core and the WebGPU backend both execute.
 *
 *   request.model.layers --(layers/*.ts build)--> CompiledModel { state, values, ops, backward }
 *   backends: model.ts (WASM / TS twins) and webgpu/ops.ts run ops[] forward, backward[] in reverse
 */
import type { Op } from "../ops/types.js";
import type { LoraModule } from "../adapters/lora.js";

/**
 * The dtype frozen parameters are held in (request `model.base_dtype`).
 *
 * @example
 * ```ts
 * const dtype: BaseDtype = "bfloat16";
 * ```
 */
export type BaseDtype = "float32" | "float16" | "bfloat16";

/** A per-sample shape: the batch dimension is implicit and leading ([C, H, W], [T, D], [F]). */
export type Shape = readonly number[];

/**
 * A tensor flowing between layers while the graph is built: an activation value and the
 * per-sample shape it is read as (flatten changes the shape, not the value).
 */
export interface TensorRef {
  readonly value: number;
  readonly shape: Shape;
  /** Token ids (integers stored as f32) rather than features: only an embedding takes them. */
  readonly ids?: boolean;
}

/** How a state tensor starts when the request has no weights: PyTorch's init, in construction order. */
export type InitRecipe =
  /** nn.init.kaiming_uniform_(w, a=sqrt(5)): U(-b, b), b = sqrt(3) * gain / sqrt(fan_in), gain = sqrt(2 / (1 + 5)) */
  | { kind: "kaiming_uniform"; fanIn: number }
  /** nn.init.uniform_(w, -bound, bound) (Linear/Conv bias: bound = 1 / sqrt(fan_in)) */
  | { kind: "uniform"; bound: number }
  /** nn.init.xavier_uniform_(w): U(-a, a), a = sqrt(3) * sqrt(2 / (fan_in + fan_out)) */
  | { kind: "xavier_uniform"; fanIn: number; fanOut: number }
  /** nn.init.normal_(w, mean, std) (nn.Embedding: N(0, 1)) */
  | { kind: "normal"; mean: number; std: number }
  /** w.fill_(value): ones, zeros, running statistics */
  | { kind: "fill"; value: number }
  /** w[row].fill_(0) (nn.Embedding's padding_idx); consumes no randomness */
  | { kind: "zero_row"; row: number; width: number };

/** One tensor of the state_dict: a parameter or a buffer (BatchNorm's running statistics). */
export interface StateTensor {
  /** state_dict key, e.g. "fc1.weight", "encoder.0.self_attn.in_proj_weight", "bn.running_mean". */
  readonly name: string;
  readonly shape: readonly number[];
  readonly size: number;
  readonly kind: "parameter" | "buffer";
  /** Parameters selected by `trainable` (all by default); buffers never are. */
  readonly trainable: boolean;
  /** How safetensors stores it: F32 (the output dtype applies), or I64 (num_batches_tracked). */
  readonly dtype: "float" | "I64";
  /** Offset within the state block, in elements (set by the compiler). */
  offset: number;
  /**
   * Stored transposed: `shape` is the state_dict's [in, out] (GPT-2's Conv1D) while the state
   * block holds [out, in] for the linear op; weights are transposed when read and written.
   */
  readonly transposed?: boolean;
}

/** An activation value: [rows, size] f32, one per op output (plus the graph's inputs). */
export interface ValueInfo {
  /** Elements per sample. */
  readonly size: number;
  /** Filled by the data, not by an op (the input x, the attention mask). */
  readonly input: boolean;
  /** Whether a gradient flows back into it (it depends on a trainable parameter). */
  requiresGrad: boolean;
}

/** A buffer an op keeps from forward to backward (a dropout mask, LayerNorm's mean and rstd). */
export interface SavedInfo {
  /** Elements per sample, and elements independent of the batch (BatchNorm's per-channel stats). */
  readonly perRow: number;
  readonly fixed: number;
}

/**
 * The backward pass, as the compiler scheduled it: for each op (reverse order) the gradient
 * slots of its outputs (read) and inputs (written, or -1 when not needed), and the slots to sum
 * afterwards where a value feeds several ops (a residual's input).
 */
export interface BackwardStep {
  readonly op: number;
  readonly dy: readonly number[];
  readonly dx: readonly number[];
  /** After this op: slot `into` += slot `from` (n elements per row). */
  readonly accumulate: readonly { into: number; from: number; size: number }[];
}

/** The model, compiled: state, values, ops, the backward schedule and what the plan needs. */
export interface CompiledModel {
  /** Every state tensor, state_dict order. */
  readonly state: readonly StateTensor[];
  /** Default init steps, in PyTorch's construction order (later steps overwrite earlier ones). */
  readonly init: readonly { tensor: number; recipe: InitRecipe }[];
  readonly values: readonly ValueInfo[];
  readonly saved: readonly SavedInfo[];
  readonly ops: readonly Op[];
  readonly backward: readonly BackwardStep[];
  /** Gradient slots: [rows, size] buffers reused across the backward pass (liveness-planned). */
  readonly gradSlots: readonly number[];
  /** The gradient slot the loss writes dL/d(output) into. */
  readonly outputGradSlot: number;
  /** The graph's inputs: x (features or token ids) and the attention mask (null: none). */
  readonly input: { readonly value: number; readonly shape: Shape; readonly ids: boolean };
  readonly mask: number | null;
  /** A LoRA adapter's modules (adapters/lora.ts), or null without one. */
  readonly lora: { readonly modules: readonly LoraModule[]; readonly modulesToSave: readonly string[]; readonly targets: readonly string[] | string } | null;
  /** The token_type_ids input ([rows, T], 0 where the data has none), or null when no layer reads it (BERT does). */
  readonly tokenTypes: number | null;
  /** The ids token_type_ids must stay below (type_vocab_size); 0 without the input. */
  readonly tokenTypeCount: number;
  /** How a Hub checkpoint's keys map onto the state (Hugging Face architectures); null for layer lists. */
  readonly checkpoint: CheckpointRules | null;
  /**
   * What the token ids index: the smallest num_embeddings of the layers that read them, and
   * where that layer is (for messages); null for feature data. Ids must be below `size`.
   */
  readonly vocabulary: { readonly size: number; readonly path: string } | null;
  /** The model's output (the logits). */
  readonly output: { readonly value: number; readonly shape: Shape };
  /**
   * How the kernel core holds the frozen parameters (request `model.base_dtype`): float32, or
   * 16-bit values (2 bytes each) in the state block's frozen range (model.ts stateByteOffset).
   * `offset` and `stateCount` always count float32 elements (the WebGPU backend's layout).
   */
  readonly baseDtype: BaseDtype;
  /** Elements of the state block; its layout is [trainable parameters | buffers | frozen parameters]. */
  readonly stateCount: number;
  readonly trainableCount: number;
  readonly bufferCount: number;
  readonly paramCount: number;
  /** FLOPs of one forward and one backward pass per sample. */
  readonly forwardFlopsPerRow: number;
  readonly backwardFlopsPerRow: number;
  /** Some op mixes rows of a batch (BatchNorm's statistics): the batch cannot be split over threads. */
  readonly couplesRows: boolean;
  /** Layers that need batches of at least `rows` samples (layers/define.ts requireBatchRows). */
  readonly batchRows: readonly BatchRowsRequirement[];
  /**
   * The kernel core's buffers: value id -> buffer index (-1 for the graph's inputs), and each
   * buffer's elements per sample. Values that are not live together share a buffer
   * (graph/compile.ts planValueBuffers); the WebGPU backend keeps one buffer per value.
   */
  readonly valueBuffers: readonly number[];
  readonly bufferSizes: readonly number[];
  /**
   * Gradient slot -> the buffer (an index into bufferSizes) the kernel core keeps it in: an
   * activation buffer whose values are not live while the slot is, or one the slots alone use
   * (graph/memory.ts placeGradientSlots). The WebGPU backend keeps one buffer per slot.
   */
  readonly gradSlotBuffers: readonly number[];
  /**
   * Gradient checkpointing (training.gradient_checkpointing): the segments (op ranges) whose
   * forward the backward pass runs again before their backward; null without.
   */
  readonly checkpoints: readonly { readonly start: number; readonly end: number }[] | null;
  /**
   * Saved id -> the saved id whose allocation it uses: itself, or under gradient checkpointing
   * the same-sized buffer of an earlier segment (segments never need theirs at the same time).
   */
  readonly savedBuffers: readonly number[];
  /** FLOPs per sample of the forward passes checkpointing repeats (every segment but the last). */
  readonly recomputeFlopsPerRow: number;
  /**
   * A model compiled for input gradients (compileModel's `inputGradient`, explain/): the value
   * differentiated against (x, or the token embedding's output), the op that writes it (-1: x,
   * a graph input), and the gradient slot that holds dL/d(value) after the backward pass (-1:
   * the output does not depend on it).
   */
  readonly inputGrad?: { readonly value: number; readonly producer: number; readonly slot: number };
  /** Parameters, FLOPs and activations per layer group (top-level layers; a Hub model's blocks), in model order. */
  readonly groups: readonly LayerGroup[];
}

/**
 * One layer group of the plan: a top-level layer ("fc1", "0") or a Hub model's block
 * ("bert.embeddings", "transformer.h.0", "lm_head").
 *
 * @example
 * ```ts
 * const g: LayerGroup = { name: "transformer.h.0", params: 7080, trainableParams: 7080, forwardFlopsPerRow: 1.2e5, backwardFlopsPerRow: 2.4e5, activationsPerRow: 900, fixedElements: 0 };
 * ```
 */
export interface LayerGroup {
  readonly name: string;
  readonly params: number;
  readonly trainableParams: number;
  readonly forwardFlopsPerRow: number;
  readonly backwardFlopsPerRow: number;
  /** Elements per sample of the activations its ops write and the buffers they save. */
  readonly activationsPerRow: number;
  /** Elements of its saved buffers independent of the batch. */
  readonly fixedElements: number;
}

/**
 * How a Hub checkpoint is read (transformers' from_pretrained rules, narrowed): the base model's
 * prefix may be absent from the file (a GPT2Model file for GPT2LMHeadModel), some keys are
 * non-persistent buffers of older versions (ignored), some belong to other heads of the same
 * backbone (dropped and reported), and the task head may be missing (initialised, reported).
 *
 * @example
 * ```ts
 * const rules: CheckpointRules = { basePrefix: "bert.", ignore: ["\\.position_ids$"], drop: ["^cls\\."], newHead: ["classifier."] };
 * ```
 */
export interface CheckpointRules {
  /** transformers' base_model_prefix with its dot ("bert.", "transformer.", "model."). */
  readonly basePrefix: string;
  /** Regular expressions of keys skipped silently (buffers that older files carry). */
  readonly ignore: readonly string[];
  /** Regular expressions of keys of other heads: skipped and listed in the result. */
  readonly drop: readonly string[];
  /** State name prefixes of the task head: initialised when the file lacks them, and listed. */
  readonly newHead: readonly string[];
}

/**
 * A layer's least number of samples per batch, checked by the plan against the run's batches.
 *
 * @example
 * ```ts
 * const need: BatchRowsRequirement = { rows: 2, path: "model.layers[1]", why: "BatchNorm over [C] samples", evaluation: false };
 * ```
 */
export interface BatchRowsRequirement {
  readonly rows: number;
  /** The layer's place in the request ("model.layers[1]"). */
  readonly path: string;
  readonly why: string;
  /** Validation chunks need them too (batch statistics in evaluation). */
  readonly evaluation: boolean;
}
