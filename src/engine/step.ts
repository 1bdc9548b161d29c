/**
 * The parts of an optimizer step that every backend computes the same way, written once:
 * the clip_grad_norm_ settings and coefficient (the norm itself is reduced where the gradients live).
 * https://pytorch.org/docs/stable/generated/torch.nn.utils.clip_grad_norm_.html
 */
import type { ClipGradNormSpec } from "../schema/request.js";

/** clip_grad_norm_'s arguments, with a bare number read as max_norm (norm_type 2). */
export interface ClipSettings {
  max_norm: number;
  norm_type: number | "inf";
  error_if_nonfinite: boolean;
}

/**
 * The request's `clip_grad_norm`, normalised (null: no clipping).
 *
 * @example
 * ```ts
 * clipSpec(1.0); // { max_norm: 1, norm_type: 2, error_if_nonfinite: false }
 * ```
 */
export function clipSpec(spec: ClipGradNormSpec | null): ClipSettings | null {
  if (spec === null) return null;
  if (typeof spec === "number") return { max_norm: spec, norm_type: 2, error_if_nonfinite: false };
  return spec;
}

/**
 * clip_coef = max_norm / (total_norm + 1e-6) in float32, clamped at 1; an infinite norm gives 0
 * (grads scaled to zero), as in torch.
 *
 * @example
 * ```ts
 * clipCoefficient(1, 4); // 0.24999994
 * ```
 */
export function clipCoefficient(maxNorm: number, totalNorm: number): number {
  return Math.min(Math.fround(maxNorm / Math.fround(totalNorm + 1e-6)), 1);
}
