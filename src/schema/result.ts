/**
 * The fine-tune result: what `train()` resolves with and what POST /v1/fine-tunes answers
 * for a sync run. Shared by the engine, the API, the SDK and OpenAPI.
 */
import { z } from "zod";
import { Explanations } from "./explain.js";

/** One epoch of the training history. `lr` is the learning rate of the epoch's last optimizer step. */
export const EpochMetrics = z.object({
  epoch: z.number().int(),
  /** Sample-weighted mean of the epoch's batch losses (each batch loss is the loss's mean reduction). */
  train_loss: z.number(),
  val_loss: z.number().optional(),
  /** Fraction of validation rows classified correctly (classification losses only). */
  val_accuracy: z.number().optional(),
  /** exp(val_loss): the validation perplexity of a causal language model. */
  val_perplexity: z.number().optional(),
  lr: z.number(),
  /** Private runs (request `privacy`): ε spent by the end of this epoch (RDP accountant, at the run's δ); null: unbounded (σ = 0). */
  epsilon: z.number().nullable().optional(),
});

/** What a private run spent (request `privacy`): Opacus's RDP accountant over the steps taken. */
export const PrivacyReport = z.object({
  /** null: no finite bound (noise_multiplier 0 gives ε = ∞). */
  epsilon: z.number().nullable(),
  delta: z.number(),
  noise_multiplier: z.number(),
  /** q = batch_size / N: each row's chance of joining a batch. */
  sample_rate: z.number(),
  steps: z.number().int(),
  accountant: z.literal("rdp"),
});

export const Metrics = z.object({
  /** Validation metrics of the starting weights, before the first step (runs with validation data). */
  initial: z.object({ val_loss: z.number(), val_accuracy: z.number().optional(), val_perplexity: z.number().optional() }).optional(),
  history: z.array(EpochMetrics),
  /** The epoch with the best monitored metric (early_stopping.monitor, else val_loss, else train_loss). */
  best_epoch: z.number().int().nullable(),
  /** Optimizer steps taken. */
  steps: z.number().int(),
  samples_per_second: z.number(),
  duration_ms: z.number(),
  /**
   * lr "auto" (or onecycle max_lr "auto"): the learning-rate range test (docs/strategy.md):
   * each step's rate and smoothed loss, the suggested rate the run trained with, and the rule
   * that chose it ("steep", "minimum", or "start" when no step finished).
   */
  lr_finder: z
    .object({ lr: z.number(), lrs: z.array(z.number()), losses: z.array(z.number()), method: z.enum(["steep", "minimum", "start"]) })
    .optional(),
  /** Private runs (request `privacy`): the privacy spent. */
  privacy: PrivacyReport.optional(),
});

export const Plan = z.object({
  params: z.number().int(),
  trainable_params: z.number().int(),
  /** Floating-point operations of the whole run (forward + backward + validation). */
  flops: z.number(),
  /** Bytes of WebAssembly memory the run needs (parameters, optimizer state, activations, data). */
  memory_bytes: z.number().int(),
  /** Optimizer steps of training (the range test's are lr_finder_steps). */
  steps: z.number().int(),
  /** Rows per batch: the request's, or what "batch_size": "auto" chose (docs/strategy.md). */
  batch_size: z.number().int().optional(),
  /** The loss type: the request's, or what "loss": {"type": "auto"} chose (docs/strategy.md). */
  loss: z.string().optional(),
  /** With lr "auto": the most steps the learning-rate range test takes before training (counted in flops). */
  lr_finder_steps: z.number().int().optional(),
  /** Where it ran: the Worker, a GPU node, or in-process through the library. */
  placement: z.enum(["edge", "gpu-node", "local"]),
  /**
   * The same per layer group: each top-level layer, or a Hugging Face model's blocks
   * ("bert.embeddings", "bert.encoder.layer.0", ..., "classifier"). memory_bytes counts the
   * group's parameters with their gradients and optimizer state, and its activations at the run's
   * batch size; the shared gradient slots, workspace and data are in the total only.
   */
  groups: z
    .array(z.object({ name: z.string(), params: z.number().int(), trainable_params: z.number().int(), flops: z.number(), memory_bytes: z.number().int() }))
    .optional(),
});

export const EngineInfo = z.object({
  kernel: z.enum(["wasm-simd", "wasm-relaxed-simd", "webgpu", "js-reference"]),
  threads: z.number().int(),
  runtime: z.enum(["workerd", "node", "browser", "unknown"]),
});

/** Why a run did not succeed: divergence (with the step), cancellation, or a failure. */
export const RunError = z.object({
  code: z.string(),
  message: z.string(),
  /** Optimizer step (1-based) at which a non-finite loss, gradient or weight appeared. */
  step: z.number().int().optional(),
  epoch: z.number().int().optional(),
});

export const FineTuneStatus = z.enum(["queued", "running", "succeeded", "failed", "cancelled", "diverged", "paused"]);

/** What a Hugging Face model's run reports (FineTuneResult.huggingface, Job.huggingface). */
export const HuggingFaceReport = z
  .object({
    architecture: z.string(),
    task: z.enum(["sequence-classification", "causal-lm"]),
    config: z.record(z.string(), z.unknown()),
    /** Task-head tensors the checkpoint lacked, initialised as transformers' _init_weights does. */
    initialized: z.array(z.string()),
    /** Checkpoint keys of other heads (BERT's pre-training `cls.*`), not used. */
    dropped: z.array(z.string()),
  });

export const FineTuneResult = z.object({
  id: z.string(),
  /** "paused": the run checkpointed and stopped on request (POST .../pause); a resume continues it. */
  status: z.enum(["succeeded", "failed", "cancelled", "diverged", "paused"]),
  metrics: Metrics,
  plan: Plan,
  engine: EngineInfo,
  /** Base64 safetensors with state_dict names, in output.dtype. On `diverged`: the last finite weights. */
  weights: z.string(),
  /**
   * Hugging Face models: config.json as given (so that config.json and the weights make a
   * complete model folder), and what reading the checkpoint did.
   */
  huggingface: HuggingFaceReport.optional(),
  /** Adapter runs: adapter_config.json as PEFT writes it (with `weights` in output.format "peft", the adapter folder). */
  adapter_config: z.record(z.string(), z.unknown()).optional(),
  /** What did not stop the run but matters where the weights go next (a LoRA rank Workers AI will not serve). */
  warnings: z.array(z.string()).optional(),
  /** Attributions of the fine-tuned model (request `explain`; docs/explain.md). */
  explanations: Explanations.optional(),
  error: RunError.optional(),
});

export type EpochMetrics = z.infer<typeof EpochMetrics>;
export type PrivacyReport = z.infer<typeof PrivacyReport>;
export type Metrics = z.infer<typeof Metrics>;
export type Plan = z.infer<typeof Plan>;
export type EngineInfo = z.infer<typeof EngineInfo>;
export type RunError = z.infer<typeof RunError>;
export type FineTuneStatus = z.infer<typeof FineTuneStatus>;
export type FineTuneResult = z.infer<typeof FineTuneResult>;
export type HuggingFaceReport = z.infer<typeof HuggingFaceReport>;

/** Progress events passed to `options.onProgress` (and, for jobs, sent as SSE). */
export type ProgressEvent =
  | ({ type: "epoch" } & EpochMetrics)
  | { type: "step"; step: number; epoch: number; loss: number; lr: number };
