/**
 * DP-SGD as Opacus runs it (opacus/optimizers/optimizer.py DPOptimizer with loss_reduction
 * "mean" and flat clipping; opacus/data_loader.py DPDataLoader with Poisson sampling), written
 * once for every backend:
 *
 *   sampling  each row joins a batch independently with probability q = batch_size / N (an
 *             empty batch is still a step)
 *   clipping  g_i scaled by min(1, C / (‖g_i‖ + 1e-6)), the norm over all trainable parameters
 *   noise     N(0, (σ·C)²) added to every coordinate of Σ_i clipped g_i
 *   average   divided by the expected batch size int(N·q), then the configured optimizer steps
 *
 * and the request checks: what cannot have per-sample gradients (batch norm, as Opacus's
 * ModuleValidator says) or does not have them here yet is a 422 naming the layer.
 */
import type { FineTuneRequest, LayerSpec } from "../../schema/request.js";
import type { PrivacyReport } from "../../schema/result.js";
import { UnprocessableError, type FieldIssue } from "../../errors.js";
import type { CompiledModel } from "../graph/types.js";
import type { Op } from "../ops/types.js";
import { MT19937 } from "../rng.js";
import { defaultDelta, noiseMultiplierFor, privacySpent, type PrivacyStretch } from "./accountant.js";
import { TIED_OP_KINDS } from "./ghost.js";

export { defaultDelta, noiseMultiplierFor, privacySpent, rdpEpsilon, RDP_ORDERS } from "./accountant.js";

/** A private run's settings, resolved (σ found for a target ε, δ defaulted). */
export interface PrivacySettings {
  /** C */
  maxGradNorm: number;
  /** σ */
  noiseMultiplier: number;
  delta: number;
  /** q = batch_size / N */
  sampleRate: number;
  /** int(N·q): what the noisy sum is divided by (Opacus's expected_batch_size). */
  expectedBatchSize: number;
  poisson: boolean;
  secure: boolean;
}

/**
 * The op kinds a private run may have: those whose per-sample gradient norms privacy/ghost.ts
 * computes, and those without parameters (nothing to compute).
 *
 * @example
 * ```ts
 * PRIVATE_OP_KINDS.has("batch_norm"); // false: refused
 * ```
 */
export const PRIVATE_OP_KINDS: ReadonlySet<Op["kind"]> = new Set<Op["kind"]>([
  "linear", "activation", "dropout", "add", "mul", "layer_norm", "embedding", "add_position", "token_pool", "max_pool", "avg_pool", "conv", "attention", "rope",
]);

/**
 * Refuses what DP-SGD cannot train here, with 422s naming the field: batch norm anywhere (it mixes
 * the samples of a batch, so there is no per-sample gradient; Opacus's ModuleValidator refuses it
 * too), an op without per-sample gradients yet, a parameter that two ops share (their per-sample
 * gradients would have to be summed before the norm), per-step clip_grad_norm (privacy clips per
 * sample), gradient checkpointing, and drop_last with Poisson sampling.
 *
 * @example
 * ```ts
 * checkPrivacy(request, compiled); // throws UnprocessableError("invalid_privacy", [...]) or returns
 * ```
 */
export function checkPrivacy(request: FineTuneRequest, model: CompiledModel): void {
  const p = request.privacy;
  if (!p) return;
  const issues: FieldIssue[] = [];
  if (request.model.layers) findBatchNorm(request.model.layers, "model.layers", issues);
  if (issues.length === 0 && model.ops.some((op) => op.kind === "batch_norm")) {
    issues.push({ path: "model", message: "has a batch norm layer: BatchNorm mixes the samples of a batch, so per-sample gradients do not exist and DP-SGD cannot train it (Opacus's ModuleValidator refuses it too)" });
  }
  // tied parameters: their per-sample gradients are summed over their uses when those are linear
  // and embedding ops (privacy/ghost.ts, SampleNorms); a parameter shared by other ops is refused
  const users = new Map<number, Op["kind"][]>();
  for (const op of model.ops) {
    const params = opParameters(op).filter((i) => model.state[i]!.trainable);
    if (!PRIVATE_OP_KINDS.has(op.kind) && op.kind !== "batch_norm") {
      issues.push({ path: "privacy", message: `the model has a ${op.kind} op${params.length ? ` (${layerOf(model, params[0]!)})` : ""}, which has no per-sample gradients yet` });
    }
    for (const i of params) users.set(i, [...(users.get(i) ?? []), op.kind]);
  }
  for (const [i, kinds] of users) {
    if (kinds.length > 1 && !kinds.every((k) => TIED_OP_KINDS.has(k))) {
      issues.push({ path: "privacy", message: `${model.state[i]!.name} is shared by ${kinds.length} ops (${kinds.join(", ")}): per-sample gradients of a tied parameter are summed over linear and embedding uses only; freeze it with \`trainable\`` });
    }
  }
  const t = request.training;
  if (t.clip_grad_norm !== null) issues.push({ path: "training.clip_grad_norm", message: "does not apply to a private run: privacy.max_grad_norm clips each sample's gradient" });
  if (t.gradient_checkpointing) issues.push({ path: "training.gradient_checkpointing", message: "is not supported with privacy yet" });
  if (p.poisson_sampling && t.drop_last) issues.push({ path: "training.drop_last", message: "does not apply with privacy.poisson_sampling: each row joins each batch at random" });
  if (issues.length > 0) throw new UnprocessableError("invalid_privacy", issues);
}

/** Batch norm layers of a layer list, each a field issue at its path. */
function findBatchNorm(layers: readonly LayerSpec[], path: string, issues: FieldIssue[]): void {
  layers.forEach((layer, i) => {
    const at = `${path}[${i}]`;
    if (layer.type.startsWith("batch_norm")) {
      const name = (layer as { name?: string }).name ?? String(i);
      issues.push({
        path: at,
        message: `is ${layer.type} "${name}": BatchNorm mixes the samples of a batch, so per-sample gradients do not exist and DP-SGD cannot train it (Opacus's ModuleValidator refuses it too); use layer_norm instead`,
      });
    }
    const children = (layer as { layers?: LayerSpec[] }).layers;
    if (children) findBatchNorm(children, `${at}.layers`, issues);
  });
}

/**
 * The state indices an op reads as parameters (weight, bias).
 *
 * @example
 * ```ts
 * opParameters({ kind: "linear", weight: 0, bias: 1, ... }); // [0, 1]
 * ```
 */
export function opParameters(op: Op): number[] {
  const fields = op as { weight?: number; bias?: number };
  return [fields.weight ?? -1, fields.bias ?? -1].filter((i) => i >= 0);
}

/** A parameter's layer, for messages: its name without the last part ("fc1" of "fc1.weight"). */
function layerOf(model: CompiledModel, index: number): string {
  const name = model.state[index]!.name;
  const dot = name.lastIndexOf(".");
  return `layer "${dot > 0 ? name.slice(0, dot) : name}"`;
}

/**
 * The run's privacy settings: q = batch_size / N, δ (default: 1/N rounded down to a power of
 * ten), and σ as given or found for target_epsilon over the run's planned steps
 * (noiseMultiplierFor; Opacus's make_private_with_epsilon passes int(epochs / q), here the steps
 * the loop will take, so the target holds at the end of the run).
 *
 * @example
 * ```ts
 * resolvePrivacy(request.privacy!, request.training.batch_size, 60000, 2350).noiseMultiplier;
 * ```
 */
export function resolvePrivacy(spec: NonNullable<FineTuneRequest["privacy"]>, batchSize: number, rows: number, steps: number): PrivacySettings {
  const sampleRate = Math.min(1, batchSize / rows);
  const delta = spec.delta ?? defaultDelta(rows);
  const noiseMultiplier = spec.noise_multiplier ?? noiseMultiplierFor({ targetEpsilon: spec.target_epsilon!, delta, sampleRate, steps });
  return {
    maxGradNorm: spec.max_grad_norm,
    noiseMultiplier,
    delta,
    sampleRate,
    // Opacus: expected_batch_size = int(len(dataset) * sample_rate); at least 1
    expectedBatchSize: Math.max(1, Math.trunc(rows * sampleRate)),
    poisson: spec.poisson_sampling,
    secure: spec.secure_mode,
  };
}

/**
 * The privacy a run has spent: one RDP stretch per run (σ and q are fixed), ε at its δ.
 *
 * @example
 * ```ts
 * privacyReport(settings, 1000); // { epsilon: 2.10..., delta: 1e-5, noise_multiplier: 1, sample_rate: 0.01, steps: 1000, accountant: "rdp" }
 * ```
 */
export function privacyReport(settings: PrivacySettings, steps: number): PrivacyReport {
  const history: PrivacyStretch[] = steps > 0 ? [{ noiseMultiplier: settings.noiseMultiplier, sampleRate: settings.sampleRate, steps }] : [];
  const epsilon = privacySpent(history, settings.delta).epsilon;
  return {
    // JSON has no ∞: an unbounded ε (σ = 0) is null
    epsilon: Number.isFinite(epsilon) ? epsilon : null,
    delta: settings.delta,
    noise_multiplier: settings.noiseMultiplier,
    sample_rate: settings.sampleRate,
    steps,
    accountant: "rdp",
  };
}

/**
 * One Poisson-sampled batch: each of `rows` rows joins with probability `q`, one uniform draw
 * per row in row order. Writes the chosen rows into `out` and returns how many; 0 is a valid
 * (empty) batch.
 *
 * @example
 * ```ts
 * const n = poissonBatch(uniformSource(false, 1), 1000, 0.01, order); // about 10 rows in order[0..n)
 * ```
 */
export function poissonBatch(source: UniformSource, rows: number, q: number, out: Int32Array): number {
  let n = 0;
  // next() is uniform on (0, 1]: P(u <= q) = q
  for (let i = 0; i < rows; i++) if (source.next() <= q) out[n++] = i;
  return n;
}

/** Uniform doubles in (0, 1]: the seeded stream, or crypto.getRandomValues (secure_mode). */
export interface UniformSource {
  next(): number;
}

/**
 * The noise's uniform source: MT19937 from the step's seed, or (secure_mode) the platform's
 * CSPRNG through crypto.getRandomValues, 53 bits per double.
 *
 * @example
 * ```ts
 * const source = uniformSource(false, mixSeed(seed, step));
 * ```
 */
export function uniformSource(secure: boolean, seed: number): UniformSource {
  if (!secure) {
    const rng = new MT19937(seed);
    return { next: () => 1 - rng.uniformF64() };
  }
  const words = new Uint32Array(1024);
  let at = words.length;
  return {
    next() {
      if (at + 2 > words.length) {
        crypto.getRandomValues(words);
        at = 0;
      }
      const hi = words[at++]! & 0x1fffff;
      const lo = words[at++]!;
      return 1 - (hi * 2 ** 32 + lo) * 2 ** -53;
    },
  };
}

/**
 * Adds N(0, std²) to every element of `out` (Box-Muller in double, both samples of each pair
 * used; the sum rounded to float32 as the tensor holds it).
 *
 * @example
 * ```ts
 * addGaussianNoise(grads, sigma * C, uniformSource(false, seed));
 * ```
 */
export function addGaussianNoise(out: Float32Array, std: number, source: UniformSource): void {
  if (std === 0) return;
  for (let i = 0; i < out.length; i += 2) {
    const r = Math.sqrt(-2 * Math.log(source.next()));
    const theta = 2 * Math.PI * source.next();
    out[i] = out[i]! + std * r * Math.cos(theta);
    if (i + 1 < out.length) out[i + 1] = out[i + 1]! + std * r * Math.sin(theta);
  }
}

/**
 * Opacus's per-sample clip factor, in float32 as torch computes it:
 * min(1, C / (‖g_i‖ + 1e-6)).
 *
 * @example
 * ```ts
 * clipFactor(1, 4); // 0.24999994
 * ```
 */
export function clipFactor(maxGradNorm: number, norm: number): number {
  const f = Math.fround;
  // torch: C / t is t.reciprocal() * C (Tensor.__rtruediv__), the 1e-6 a float32 scalar
  return Math.min(1, f(f(1 / f(f(norm) + f(1e-6))) * f(maxGradNorm)));
}
