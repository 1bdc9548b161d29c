/**
 * What a Hugging Face architecture is here: the name in config.architectures[0], its task, the
 * config fields it reads (zod, with the defaults of transformers' config class), how a Hub
 * checkpoint's keys map onto it, and `build`, which declares the state with the Hub's names and
 * emits the ops, as a layer's build does (layers/define.ts).
 *
 *   config.json --(config schema)--> C --(build over the layer builder)--> CompiledModel
 */
import { z } from "zod";
import type { LayerBuilder } from "../layers/define.js";
import type { ActivationName } from "../layers/activations.js";
import type { CheckpointRules, TensorRef } from "../graph/types.js";

/**
 * The tasks, as transformers' pipelines name them.
 *
 * @example
 * ```ts
 * HF_TASKS.includes("causal-lm"); // true
 * ```
 */
export const HF_TASKS = ["sequence-classification", "causal-lm"] as const;
export type HfTask = (typeof HF_TASKS)[number];

/**
 * A Hugging Face architecture.
 *
 * @example
 * ```ts
 * export const gpt2 = defineArchitecture({ name: "GPT2LMHeadModel", task: "causal-lm", config: Gpt2Config, ... });
 * ```
 */
export interface ArchitectureDef<C = unknown> {
  /** config.architectures[0], e.g. "BertForSequenceClassification". */
  readonly name: string;
  readonly task: HfTask;
  /** The fields read from config.json, with transformers' defaults (other keys pass through). */
  readonly config: z.ZodType<C>;
  readonly checkpoint: CheckpointRules;
  /** config.vocab_size: token ids must be below it, and the tokenizer must not exceed it. */
  vocabSize(config: C): number;
  /** The longest sequence the model takes (learned positions), or its nominal context (RoPE). */
  maxPositions(config: C): number;
  /** PEFT's default LoRA target_modules for the model type (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING). */
  readonly loraTargets: readonly string[];
  /** Whether positions beyond maxPositions are an error (learned position tables end there). */
  readonly positionsBound: boolean;
  /** Declares the state (Hub names, _init_weights) and emits the ops over ids [T]; returns the logits. */
  build(config: C, b: LayerBuilder, ids: TensorRef): TensorRef;
}

/**
 * Declares an architecture (an identity, for inference of the config type).
 *
 * @example
 * ```ts
 * export const gpt2 = defineArchitecture<Gpt2Config>({ name: "GPT2LMHeadModel", task: "causal-lm", config: Gpt2Config, ... });
 * ```
 */
export function defineArchitecture<C>(def: ArchitectureDef<C>): ArchitectureDef<C> {
  return def;
}

const count = () => z.number().int().min(1).max(1 << 20);
const probability = () => z.number().min(0).max(1);

/**
 * Fields of a config.json as zod: sizes, probabilities, epsilons.
 *
 * @example
 * ```ts
 * const BertConfig = z.looseObject({ hidden_size: cfg.count().default(768) });
 * ```
 */
export const cfg = { count, probability, eps: () => z.number().positive().max(1), range: () => z.number().positive() };

/**
 * transformers' ACT2FN names -> edgetune's activations (layers/activations.ts):
 * "gelu" is the erf form; "gelu_new", "gelu_pytorch_tanh" and "gelu_fast" are the tanh form.
 * https://github.com/huggingface/transformers/blob/main/src/transformers/activations.py
  *
 * @example
 * ```ts
 * HF_ACTIVATIONS.gelu_new; // "gelu_tanh"
 * ```
 */
export const HF_ACTIVATIONS: Record<string, ActivationName> = {
  gelu: "gelu",
  gelu_new: "gelu_tanh",
  gelu_pytorch_tanh: "gelu_tanh",
  gelu_fast: "gelu_tanh",
  relu: "relu",
  silu: "silu",
  swish: "silu",
  tanh: "tanh",
  sigmoid: "sigmoid",
  mish: "mish",
};

/**
 * A config's activation field (hidden_act, activation_function, activation).
 *
 * @example
 * ```ts
 * hidden_act: hfActivation("gelu"),
 * ```
 */
export function hfActivation(fallback: string) {
  return z
    .string()
    .default(fallback)
    .refine((name) => name in HF_ACTIVATIONS, { message: `is not an activation edgetune has (supported: ${Object.keys(HF_ACTIVATIONS).join(", ")})` });
}

/**
 * num_labels as transformers' PretrainedConfig derives it: len(id2label), else num_labels, else 2.
 *
 * @example
 * ```ts
 * numLabels({ id2label: { "0": "neg", "1": "pos" } }); // 2
 * ```
 */
export function numLabels(config: { id2label?: Record<string, string> | undefined; num_labels?: number | undefined }): number {
  if (config.id2label && Object.keys(config.id2label).length > 0) return Object.keys(config.id2label).length;
  return config.num_labels ?? 2;
}

/**
 * The values PretrainedConfig allows for `problem_type` (it raises a ValueError for others).
 *
 * @example
 * ```ts
 * PROBLEM_TYPES.includes("multi_label_classification"); // true
 * ```
 */
export const PROBLEM_TYPES = ["regression", "single_label_classification", "multi_label_classification"] as const;

/** A sequence classifier's `problem_type`: which loss its forward takes (prepare.ts applyTaskLoss). */
export type ProblemType = (typeof PROBLEM_TYPES)[number];

/**
 * id2label, num_labels and problem_type, as every *ForSequenceClassification config carries them.
 *
 * @example
 * ```ts
 * const Config = z.looseObject({ hidden_size: cfg.count(), ...labelFields });
 * ```
 */
export const labelFields = {
  id2label: z.record(z.string(), z.string()).optional(),
  num_labels: count().optional(),
  problem_type: z.enum(PROBLEM_TYPES).nullable().optional(),
};

/**
 * A token id field (pad_token_id) with its config class's default.
 *
 * @example
 * ```ts
 * pad_token_id: tokenId(0), // BertConfig's default
 * ```
 */
export const tokenId = (fallback: number | null) => z.number().int().min(0).nullable().default(fallback);
