/**
 * Explanations (issue 18): the `explain` object of a fine-tune request and of
 * POST /v1/fine-tunes/{id}/explain, and `result.explanations`. One schema for the engine, the
 * API, the SDK and OpenAPI; the algorithms are in src/engine/explain/ and docs/explain.md.
 */
import { z } from "zod";
import { int } from "./fields.js";

/** The most rows one explanation covers (each costs `steps` or `samples` x background forward passes). */
export const MAX_EXPLAIN_ROWS = 1000;
/** The most background rows of KernelSHAP (shap's KernelExplainer warns above 100). */
export const MAX_BACKGROUND_ROWS = 1000;

const row = z.array(z.number()).min(1).max(1 << 20);

/** Which output is explained: an output index (a class, or a regression output), or each row's argmax. */
export const ExplainTarget = z.union([int().min(0), z.literal("predicted")]);

const common = {
  /**
   * Rows to explain: feature rows (as data x) or token-id rows (as data input_ids). Default: up
   * to the first 100 validation rows (training rows when the run has no validation data).
   */
  rows: z.array(row).min(1).max(MAX_EXPLAIN_ROWS).optional(),
  /** The attention mask of token `rows` (default: every token counts). */
  attention_mask: z.array(z.array(int().min(0).max(1))).min(1).max(MAX_EXPLAIN_ROWS).optional(),
  /** The output explained: an index into the model's outputs (logits), or "predicted" (each row's argmax). */
  target: ExplainTarget.default("predicted"),
};

/**
 * Captum's IntegratedGradients: attribution_i = (x_i - baseline_i) * sum_k w_k * df/dx_i(baseline
 * + alpha_k (x - baseline)). Captum's `method` is `integration` here (`method` names the explainer).
 */
export const IntegratedGradientsSpec = z.strictObject({
  method: z.literal("integrated_gradients"),
  ...common,
  /** "zeros", "mean" (of the training rows; of their embeddings for a token model), or one row. */
  baseline: z.union([z.enum(["zeros", "mean"]), row]).default("zeros"),
  /** Points of the path integral (Captum's n_steps). */
  steps: int().min(2).max(1024).default(50),
  /** Captum's `method`: Gauss-Legendre nodes, or Captum's riemann_trapezoid. */
  integration: z.enum(["gausslegendre", "riemann_trapezoid"]).default("gausslegendre"),
});

/** shap's KernelExplainer with the interventional value function v(S) = mean_b f(x_S, b_rest). */
export const KernelShapSpec = z.strictObject({
  method: z.literal("kernel_shap"),
  ...common,
  /** "train" (a seeded sample of at most 100 training rows) or the background rows themselves. */
  background: z.union([z.literal("train"), z.array(row).min(1).max(MAX_BACKGROUND_ROWS)]).default("train"),
  /** Coalitions evaluated per row (shap's nsamples); every coalition when 2^M - 2 fit. */
  samples: int().min(2).max(1 << 20).default(2048),
  /** Seeds the background sample and the coalition sampling. */
  seed: int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
});

/**
 * The `explain` object.
 *
 * @example
 * ```ts
 * const spec = ExplainSpec.parse({ method: "integrated_gradients", steps: 128, target: 0 });
 * ```
 */
export const ExplainSpec = z.discriminatedUnion("method", [IntegratedGradientsSpec, KernelShapSpec]);

/**
 * result.explanations: attributions per row and feature (per token for a token model), the mean
 * |attribution| per feature, and for integrated gradients the convergence delta per row.
 */
export const Explanations = z.object({
  method: z.enum(["integrated_gradients", "kernel_shap"]),
  target: ExplainTarget,
  /** The CSV header's feature columns; x0, x1, ... for inline rows; token0, token1, ... for token rows. */
  feature_names: z.array(z.string()),
  /** [rows][features] (or [rows][tokens]: summed over the embedding dimension). */
  attributions: z.array(z.array(z.number())),
  /** Mean over rows of |attribution| per feature. */
  feature_importance: z.array(z.number()),
  /** Integrated gradients: sum(attributions) - (f(x) - f(baseline)) per row. */
  convergence_delta: z.array(z.number()).optional(),
});

export type ExplainSpecInput = z.input<typeof ExplainSpec>;
export type ExplainSpec = z.output<typeof ExplainSpec>;
export type Explanations = z.infer<typeof Explanations>;

/**
 * Where POST /v1/fine-tunes/{id}/explain computes an explanation: "auto" in the Worker when it
 * fits the in-Worker budget, else on a GPU node (202); "edge" only in the Worker (a 422
 * `over_budget` past the budget); "gpu-node" always on a GPU node (202).
 */
export const ExplainPlacement = z.enum(["auto", "edge", "gpu-node"]);

/**
 * The body of POST /v1/fine-tunes/{id}/explain: the `explain` object plus where it runs.
 *
 * @example
 * ```ts
 * const body = ExplainRequest.parse({ method: "kernel_shap", samples: 4096, placement: "gpu-node" });
 * ```
 */
export const ExplainRequest = z.discriminatedUnion("method", [
  IntegratedGradientsSpec.extend({ placement: ExplainPlacement.default("auto") }),
  KernelShapSpec.extend({ placement: ExplainPlacement.default("auto") }),
]);

export type ExplainRequestInput = z.input<typeof ExplainRequest>;
export type ExplainRequest = z.output<typeof ExplainRequest>;
