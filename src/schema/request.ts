/**
 * The fine-tune request: the single zod schema shared by `train()`, the HTTP API, the SDK
 * and the generated OpenAPI document.
 *
 * Names and defaults follow PyTorch (torch.nn, torch.optim, torch.optim.lr_scheduler,
 * DataLoader). Where PyTorch has no default (epochs, loss, optimizer, batch size for a
 * training API), the defaults are the example request of SPEC section 3; docs/semantics.md
 * lists every one of them.
 */
import { z } from "zod";
import { Layer, type LayerSpec } from "../engine/layers/index.js";
import { int, nonNegative, positive, size, unit } from "./fields.js";
import { HuggingFaceModel } from "../engine/huggingface/index.js";
import { Adapter } from "../engine/adapters/lora.js";
import { ExplainSpec } from "./explain.js";
import { SearchSpec } from "./search.js";

export { Layer, type LayerSpec };

// ---------------------------------------------------------------- model

/**
 * The model: an nn.Sequential of layers (every type is declared once, in src/engine/layers),
 * and optionally the per-sample shape that each flat row of `x` is read as (C order); or a
 * Hugging Face architecture from its config.json (src/engine/huggingface).
 */
export const Model = z
  .strictObject({
    /** Per-sample input shape, e.g. [1, 28, 28] (channels first) or [T, D]; default: one row of features. */
    input: z.strictObject({ shape: z.array(size()).min(1).max(4) }).optional(),
    layers: z.array(Layer).min(1).max(256).optional(),
    /** A Hugging Face architecture: config.json as on the Hub (instead of `layers`). */
    huggingface: HuggingFaceModel.optional(),
    /**
     * How the kernel core holds the FROZEN parameters (an adapter run's base, the layers
     * `trainable` leaves out): rounded once, to nearest even as torch's .to(dtype), and kept in
     * 2 bytes each; trainable parameters and buffers stay float32. docs/adapters.md.
     */
    base_dtype: z.enum(["float32", "float16", "bfloat16"]).default("float32"),
  })
  .superRefine((m, ctx) => {
    if (m.layers === undefined && m.huggingface === undefined) {
      ctx.addIssue({ code: "custom", path: ["layers"], message: "give the model as `layers` (an nn.Sequential) or as `huggingface: {config, task}`" });
    }
    if (m.layers !== undefined && m.huggingface !== undefined) {
      ctx.addIssue({ code: "custom", path: ["huggingface"], message: "give either `layers` or `huggingface`, not both" });
    }
    if (m.huggingface !== undefined && m.input !== undefined) {
      ctx.addIssue({ code: "custom", path: ["input"], message: "a Hugging Face model reads token ids: `input` does not apply" });
    }
  });

// ---------------------------------------------------------------- loss

const classWeight = z.array(z.number().min(0)).min(1).nullable().default(null);

export const Loss = z.discriminatedUnion("type", [
  /** torch.nn.MSELoss(reduction='mean') */
  z.strictObject({ type: z.literal("mse") }),
  /** torch.nn.L1Loss */
  z.strictObject({ type: z.literal("l1") }),
  /** torch.nn.HuberLoss(delta=1.0) */
  z.strictObject({ type: z.literal("huber"), delta: positive().default(1.0) }),
  /** torch.nn.SmoothL1Loss(beta=1.0); beta 0 is L1 */
  z.strictObject({ type: z.literal("smooth_l1"), beta: nonNegative().default(1.0) }),
  /** torch.nn.CrossEntropyLoss(weight=None, ignore_index=-100, label_smoothing=0.0); targets are class indices */
  z.strictObject({
    type: z.literal("cross_entropy"),
    weight: classWeight,
    ignore_index: int().default(-100),
    label_smoothing: unit().default(0.0),
  }),
  /** torch.nn.BCEWithLogitsLoss(pos_weight=None); targets in [0, 1] */
  z.strictObject({
    type: z.literal("bce_with_logits"),
    pos_weight: z.union([z.number().min(0), z.array(z.number().min(0)).min(1)]).nullable().default(null),
  }),
  /** Binary SVM hinge, mean(max(0, 1 - t*x)) with t in {-1, +1}; labels 0/1 or -1/+1 */
  z.strictObject({ type: z.literal("hinge") }),
  /**
   * Chosen from the targets and the output width when the run is prepared (docs/strategy.md):
   * integer classes and width > 1: cross_entropy; 0/1 and width 1: bce_with_logits; else mse.
   * The choice is reported as plan.loss.
   */
  z.strictObject({ type: z.literal("auto") }),
  /** torch.nn.MultiMarginLoss(p=1, margin=1.0, weight=None) */
  z.strictObject({
    type: z.literal("multi_margin"),
    p: z.union([z.literal(1), z.literal(2)]).default(1),
    margin: z.number().default(1.0),
    weight: classWeight,
  }),
]);

// ---------------------------------------------------------------- optimizer

/**
 * A learning rate, or "auto": a learning-rate range test on a copy of the weights chooses it
 * before training (docs/strategy.md; metrics.lr_finder reports it).
 */
const lr = (value: number) => z.union([nonNegative(), z.literal("auto")]).default(value);
const betas = z
  .tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)])
  .default([0.9, 0.999]);

export const Optimizer = z.discriminatedUnion("type", [
  /** torch.optim.SGD */
  z.strictObject({
    type: z.literal("sgd"),
    lr: lr(1e-3),
    momentum: nonNegative().default(0),
    dampening: z.number().default(0),
    nesterov: z.boolean().default(false),
    weight_decay: nonNegative().default(0),
    maximize: z.boolean().default(false),
  }),
  /** torch.optim.Adam */
  z.strictObject({
    type: z.literal("adam"),
    lr: lr(1e-3),
    betas,
    eps: nonNegative().default(1e-8),
    weight_decay: nonNegative().default(0),
    amsgrad: z.boolean().default(false),
    maximize: z.boolean().default(false),
  }),
  /** torch.optim.AdamW (decoupled weight decay) */
  z.strictObject({
    type: z.literal("adamw"),
    lr: lr(1e-3),
    betas,
    eps: nonNegative().default(1e-8),
    weight_decay: nonNegative().default(1e-2),
    amsgrad: z.boolean().default(false),
    maximize: z.boolean().default(false),
  }),
  /** torch.optim.RMSprop */
  z.strictObject({
    type: z.literal("rmsprop"),
    lr: lr(1e-2),
    alpha: nonNegative().default(0.99),
    eps: nonNegative().default(1e-8),
    weight_decay: nonNegative().default(0),
    momentum: nonNegative().default(0),
    centered: z.boolean().default(false),
    maximize: z.boolean().default(false),
  }),
  /** torch.optim.Adagrad */
  z.strictObject({
    type: z.literal("adagrad"),
    lr: lr(1e-2),
    lr_decay: nonNegative().default(0),
    weight_decay: nonNegative().default(0),
    initial_accumulator_value: nonNegative().default(0),
    eps: nonNegative().default(1e-10),
    maximize: z.boolean().default(false),
  }),
]);

// ---------------------------------------------------------------- schedule

/** When the scheduler steps: after every epoch (PyTorch's usual loop) or after every optimizer step. */
const interval = z.enum(["epoch", "step"]);

/** No schedule; with `factor`/`total_iters` it is torch ConstantLR (factor applies until total_iters). */
const ConstantSchedule = z.strictObject({
  type: z.literal("constant"),
  factor: z.number().gt(0).max(1).default(1),
  total_iters: int().min(0).default(5),
});
/** torch StepLR(step_size, gamma=0.1) */
const StepSchedule = z.strictObject({ type: z.literal("step"), step_size: int().min(1), gamma: nonNegative().default(0.1) });
/** torch MultiStepLR(milestones, gamma=0.1) */
const MultiStepSchedule = z.strictObject({
  type: z.literal("multistep"),
  milestones: z.array(int().min(0)).min(1).max(10_000),
  gamma: nonNegative().default(0.1),
});
/** torch ExponentialLR(gamma) */
const ExponentialSchedule = z.strictObject({ type: z.literal("exponential"), gamma: nonNegative() });
/** torch CosineAnnealingLR(T_max, eta_min=0); T_max defaults to the number of scheduler steps in the run */
const CosineSchedule = z.strictObject({
  type: z.literal("cosine"),
  T_max: int().min(1).optional(),
  eta_min: nonNegative().default(0),
});
/** torch LinearLR(start_factor=1/3, end_factor=1.0, total_iters=5) */
const LinearSchedule = z.strictObject({
  type: z.literal("linear"),
  start_factor: z.number().gt(0).max(1).default(1 / 3),
  end_factor: z.number().min(0).max(1).default(1),
  total_iters: int().min(0).default(5),
});
/**
 * torch OneCycleLR; max_lr defaults to the optimizer's lr, total_steps to the run's scheduler
 * steps; max_lr "auto" is the learning-rate range test's suggestion (docs/strategy.md)
 */
const OneCycleSchedule = z.strictObject({
  type: z.literal("onecycle"),
  max_lr: z.union([positive(), z.literal("auto")]).optional(),
  total_steps: int().min(1).optional(),
  pct_start: unit().default(0.3),
  anneal_strategy: z.enum(["cos", "linear"]).default("cos"),
  cycle_momentum: z.boolean().default(true),
  base_momentum: unit().default(0.85),
  max_momentum: unit().default(0.95),
  div_factor: positive().default(25),
  final_div_factor: positive().default(1e4),
  three_phase: z.boolean().default(false),
});
/** torch ReduceLROnPlateau, stepped once per epoch on `monitor` (default val_loss, or train_loss without validation) */
const PlateauSchedule = z.strictObject({
  type: z.literal("plateau"),
  monitor: z.enum(["val_loss", "train_loss", "val_accuracy"]).optional(),
  mode: z.enum(["min", "max"]).default("min"),
  factor: z.number().gt(0).lt(1).default(0.1),
  patience: int().min(0).default(10),
  threshold: nonNegative().default(1e-4),
  threshold_mode: z.enum(["rel", "abs"]).default("rel"),
  cooldown: int().min(0).default(0),
  min_lr: nonNegative().default(0),
  eps: nonNegative().default(1e-8),
});

/** Schedules with a closed form: the ones allowed inside `sequential`. */
export const ClosedFormSchedule = z.discriminatedUnion("type", [
  ConstantSchedule,
  StepSchedule,
  MultiStepSchedule,
  ExponentialSchedule,
  CosineSchedule,
  LinearSchedule,
]);

/** torch SequentialLR(schedulers, milestones): e.g. a linear warm-up, then cosine */
const SequentialSchedule = z.strictObject({
  type: z.literal("sequential"),
  schedulers: z.array(ClosedFormSchedule).min(1).max(16),
  milestones: z.array(int().min(1)).max(15),
});

const withInterval = { interval: interval.optional() };

/** A learning-rate schedule; `interval` defaults to "epoch" ("step" for onecycle; plateau is always per epoch). */
export const Schedule = z.discriminatedUnion("type", [
  ConstantSchedule.extend(withInterval),
  StepSchedule.extend(withInterval),
  MultiStepSchedule.extend(withInterval),
  ExponentialSchedule.extend(withInterval),
  CosineSchedule.extend(withInterval),
  LinearSchedule.extend(withInterval),
  OneCycleSchedule.extend(withInterval),
  PlateauSchedule.extend(withInterval),
  SequentialSchedule.extend(withInterval),
]);

// ---------------------------------------------------------------- data

const row = z.array(z.number()).max(1 << 20);
/** A target: a class index, a 0/1 label, a number, or a row of numbers (multi-output regression, multi-label). */
const target = z.union([z.number(), row]);

/** Inline dataset: `x` rows of features, `y` one target per row. */
export const FeatureDataset = z.strictObject({
  x: z.array(row).min(1),
  y: z.array(target).min(1),
});

/**
 * Inline token rows: `input_ids` rows of token ids padded to one length T, an optional
 * `attention_mask` of the same shape (1 = token, 0 = padding; absent: every token counts), an
 * optional `token_type_ids` of the same shape (0 = the first text, 1 = the second; absent: 0),
 * and `y`: a target per row, or a row of T class indices (per-token targets, -100 ignored).
 */
export const TokenDataset = z.strictObject({
  input_ids: z.array(z.array(int().min(0).max(2 ** 24 - 1)).max(1 << 20)).min(1),
  attention_mask: z.array(z.array(int().min(0).max(1)).max(1 << 20)).min(1).optional(),
  /** BERT's segment ids (0 for the text, 1 for the pair), as long as input_ids; zeros when left out. */
  token_type_ids: z.array(z.array(int().min(0).max(2 ** 24 - 1)).max(1 << 20)).min(1).optional(),
  /** Per sample or per token; a causal LM (model.huggingface) takes none: its labels are the ids. */
  y: z.array(target).min(1).optional(),
});

/**
 * The targets of text rows: numbers as for other rows, or one class name per row ("positive"),
 * which a Hugging Face sequence classifier maps to its class index through config.label2id.
 */
const textTargets = z.union([z.array(target).min(1), z.array(z.string().min(1)).min(1)]);

/**
 * Inline text rows, tokenized with the request's `tokenizer` (data.tokenization): `text`, an
 * optional `text_pair` (a second text per row: [CLS] text [SEP] text_pair [SEP] for BERT), and
 * the targets as `y` or `label` (Hugging Face datasets' name): numbers, or class names that a
 * Hugging Face sequence classifier's config.label2id maps to indices; a causal language model
 * needs none.
 */
export const TextDataset = z.strictObject({
  text: z.array(z.string()).min(1),
  text_pair: z.array(z.string()).min(1).optional(),
  y: textTargets.optional(),
  label: textTargets.optional(),
});

/**
 * A binary dataset in JSON: a safetensors file as base64 (docs/api.md, "Binary datasets"), with
 * tensors `x` (F32 [N, ...]) or `input_ids` (I64/I32 [N, T]) with optional `attention_mask` and
 * `token_type_ids`, and `y` (F32, I64 or I32, [N] or [N, K]). The same file can be a multipart part
 * or, for `train()`, a Uint8Array.
 */
export const SafetensorsDataset = z.strictObject({
  safetensors: z.string().min(1),
});

/** A dataset in the request JSON: feature rows, token rows, text rows, or a base64 safetensors file. */
export const Dataset = z.union([FeatureDataset, TokenDataset, TextDataset, SafetensorsDataset]);

/**
 * How text rows become token rows, as transformers' `tokenizer(text, text_pair, max_length=,
 * truncation=, padding=)`: max_length counts the special tokens and defaults to the model's
 * max_position_embeddings; without truncation a longer row is refused (422); padding "longest"
 * pads every row of the run (train and validation) to the longest one, "max_length" to max_length.
 */
export const Tokenization = z.strictObject({
  max_length: int().min(1).max(1 << 20).optional(),
  truncation: z.boolean().default(false),
  padding: z.enum(["longest", "max_length"]).default("longest"),
});

export const Data = z.strictObject({
  train: Dataset.optional(),
  validation: Dataset.optional(),
  validation_split: z.number().gt(0).lt(1).optional(),
  /** CSV: the target column's header name (or names, for several outputs); every other column is a feature. */
  target: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).default("y"),
  /** Text rows only: max_length, truncation and padding of the tokenizer. */
  tokenization: Tokenization.prefault({}),
});

// ---------------------------------------------------------------- training

export const ClipGradNorm = z.union([
  positive(),
  z.strictObject({
    max_norm: positive(),
    norm_type: z.union([positive(), z.literal("inf")]).default(2),
    error_if_nonfinite: z.boolean().default(false),
  }),
]);

export const EarlyStopping = z.strictObject({
  monitor: z.enum(["val_loss", "train_loss", "val_accuracy"]).default("val_loss"),
  patience: int().min(0).default(3),
  min_delta: nonNegative().default(0),
  mode: z.enum(["auto", "min", "max"]).default("auto"),
  restore_best_weights: z.boolean().default(true),
});

export const Training = z.strictObject({
  epochs: int().min(1).max(100_000).default(20),
  /**
   * Rows per optimizer step, or "auto": the largest power of two up to the training rows (at
   * most 256) whose plan fits the placement's memory budget (docs/strategy.md; plan.batch_size).
   */
  batch_size: z.union([int().min(1).max(1 << 20), z.literal("auto")]).default(32),
  shuffle: z.boolean().default(true),
  drop_last: z.boolean().default(false),
  /**
   * Keep only each layer group's input (a Hub block's, a top-level layer's) through the forward
   * pass, and recompute the group's activations in the backward pass (transformers'
   * gradient_checkpointing): less memory, one more forward per step, the same numbers.
   */
  gradient_checkpointing: z.boolean().default(false),
  seed: int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
  loss: Loss.prefault({ type: "mse" }),
  optimizer: Optimizer.prefault({ type: "adam", lr: 1e-3 }),
  schedule: Schedule.prefault({ type: "constant" }),
  clip_grad_norm: ClipGradNorm.nullable().default(null),
  early_stopping: EarlyStopping.nullable().default(null),
  /**
   * Save a checkpoint (weights, optimizer, schedule, RNG and early-stopping state) every `every`
   * epochs, keeping the last `keep` (docs/api.md "Checkpoints, pause and resume").
   */
  checkpoints: z.strictObject({ every: int().min(1).default(1), keep: int().min(1).max(100).default(3) }).nullable().default(null),
});

// ---------------------------------------------------------------- privacy

/**
 * Differentially private training: DP-SGD as Opacus runs it (loss_reduction "mean", flat
 * clipping), with the RDP accountant. docs/privacy.md says what it protects and what it does not.
 */
export const Privacy = z
  .strictObject({
    type: z.literal("dp-sgd"),
    /** C: each sample's gradient (all trainable parameters together) is scaled to an L2 norm of at most C. */
    max_grad_norm: positive(),
    /** σ: the noise's standard deviation is σ·C per coordinate. Give this or `target_epsilon`. */
    noise_multiplier: nonNegative().optional(),
    /** The ε to spend over the run: σ is found by Opacus's get_noise_multiplier search (tolerance 0.01). */
    target_epsilon: positive().optional(),
    /** δ of the (ε, δ) guarantee; default 1/N rounded down to a power of ten (N: training rows). */
    delta: z.number().gt(0).lt(1).optional(),
    /** Each row joins each batch independently with probability batch_size / N (what the accountant assumes). */
    poisson_sampling: z.boolean().default(true),
    accountant: z.literal("rdp").default("rdp"),
    /** The noise comes from crypto.getRandomValues instead of the seeded generator (not reproducible). */
    secure_mode: z.boolean().default(false),
  })
  .superRefine((p, ctx) => {
    if ((p.noise_multiplier === undefined) === (p.target_epsilon === undefined)) {
      ctx.addIssue({ code: "custom", path: ["noise_multiplier"], message: "give either noise_multiplier or target_epsilon (exactly one)" });
    }
  });

// ---------------------------------------------------------------- request

/**
 * POST /v1/fine-tunes body, and the input of `train()`.
 *
 * @example
 * ```ts
 * const request = FineTuneRequest.parse({
 *   model: { layers: [{ type: "linear", name: "fc1", in_features: 10, out_features: 10 }, { type: "relu" },
 *                     { type: "linear", name: "fc2", in_features: 10, out_features: 1 }] },
 *   data: { train: { x: [[...]], y: [0.5] } },
 *   training: { epochs: 20, optimizer: { type: "adam", lr: 1e-3 } },
 * });
 * ```
 */
export const FineTuneRequest = z.strictObject({
  model: Model,
  /** Base64 safetensors with state_dict names; omitted or null: PyTorch default init from `training.seed`. */
  weights: z.string().nullable().optional(),
  /** A Hugging Face tokenizer.json (the object as the Hub ships it): text rows are tokenized with it. */
  tokenizer: z.record(z.string(), z.unknown()).nullable().optional(),
  data: Data,
  training: Training.prefault({}),
  /** Layer names (or parameter names such as "fc2.bias") to train; everything else is frozen. null trains all. */
  trainable: z.array(z.string().min(1)).min(1).nullable().default(null),
  /** A LoRA adapter (PEFT's LoraConfig): the base is frozen, the adapter trains. */
  adapter: Adapter.nullable().optional(),
  /** Base64 adapter_model.safetensors (PEFT's names) to continue from; null: a new adapter. */
  adapter_weights: z.string().nullable().optional(),
  output: z
    .strictObject({
      dtype: z.enum(["float32", "float16", "bfloat16"]).default("float32"),
      /**
       * What `weights` holds for an adapter run: "full" (every tensor: the base's names and the
       * adapter's `<module>.lora_A.weight`, ...), "peft" (adapter_model.safetensors, PEFT's names),
       * or "merged" (the base's names, W0 + scaling * B @ A).
       */
      format: z.enum(["full", "peft", "merged"]).default("full"),
      /**
       * float16/bfloat16 output of a weight beyond the format's range (float16: 65504): "error"
       * refuses the result with a 422 naming the tensor; "clamp" stores the largest finite value
       * of that sign instead of the Inf that rounding gives (issue 20, finding 7).
       */
      overflow: z.enum(["error", "clamp"]).default("error"),
    })
    .prefault({}),
  /** Explanations of the fine-tuned model, computed after training (docs/explain.md). */
  explain: ExplainSpec.nullable().optional(),
  /** Differentially private training (DP-SGD with an RDP accountant; docs/privacy.md). */
  privacy: Privacy.nullable().optional(),
  mode: z.enum(["auto", "sync", "async"]).default("auto"),
  placement: z.enum(["auto", "edge", "gpu-node"]).default("auto"),
  /**
   * Where to POST the job's final event (Standard Webhooks, signed with EDGETUNE_WEBHOOK_SECRET):
   * https to a public host; http://localhost too in local development.
   */
  webhook: z.strictObject({ url: z.string().min(1).max(2048) }).nullable().optional(),
  /** A hyperparameter search: trials of this request as child jobs, the best one kept (docs/strategy.md, "Searches"). */
  search: SearchSpec.nullable().optional(),
  /**
   * Continue from a checkpoint of an earlier job of the same key (same model and request): the
   * run starts after `epoch` and ends bit-identical to the uninterrupted run.
   */
  from_checkpoint: z.strictObject({ job: z.string().min(1).max(100), epoch: int().min(1) }).nullable().optional(),
});

/** The request as a caller writes it (defaults optional). */
export type FineTuneRequestInput = z.input<typeof FineTuneRequest>;
/** The request as the schema parses it: every default filled in, "auto" choices still open. */
export type ParsedFineTuneRequest = z.output<typeof FineTuneRequest>;
/** A loss as parsed, "auto" included. */
export type ParsedLossSpec = z.output<typeof Loss>;
/** A loss the engine computes (prepareRun has chosen for "auto"). */
export type LossSpec = Exclude<ParsedLossSpec, { type: "auto" }>;
/** An optimizer whose lr is a number (prepareRun puts a placeholder for "auto"; the run the range test's suggestion). */
export type OptimizerSpec = z.output<typeof Optimizer> extends infer O ? (O extends { lr: unknown } ? Omit<O, "lr"> & { lr: number } : never) : never;
/** A schedule whose onecycle max_lr, if given, is a number. */
export type ScheduleSpec = z.output<typeof Schedule> extends infer S ? (S extends { type: "onecycle" } ? Omit<S, "max_lr"> & { max_lr?: number | undefined } : S) : never;
/**
 * The request after validation and the automatic choices (docs/strategy.md): what the engine
 * reads. prepareRun resolves batch_size and loss "auto", and keeps lr "auto" for the run's range test.
 */
export type FineTuneRequest = Omit<ParsedFineTuneRequest, "training"> & {
  training: Omit<ParsedFineTuneRequest["training"], "batch_size" | "loss" | "optimizer" | "schedule"> & {
    batch_size: number;
    loss: LossSpec;
    optimizer: OptimizerSpec;
    schedule: ScheduleSpec;
  };
};
export type ClosedFormScheduleSpec = z.output<typeof ClosedFormSchedule>;
export type ClipGradNormSpec = z.output<typeof ClipGradNorm>;
export type EarlyStoppingSpec = z.output<typeof EarlyStopping>;
export type DatasetSpec = z.output<typeof Dataset>;
export type TokenizationSpec = z.output<typeof Tokenization>;
export type PrivacySpec = z.output<typeof Privacy>;
