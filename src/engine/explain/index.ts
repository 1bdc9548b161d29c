/**
 * Explanations of a fine-tuned model (issue 18, docs/explain.md): integrated gradients
 * (Captum's IntegratedGradients / LayerIntegratedGradients on the token embedding) and KernelSHAP
 * (shap's KernelExplainer), over the model's outputs (logits, before any softmax), computed with
 * the engine's own kernels (network.ts). Runtime-agnostic: the caller brings a kernel instance.
 *
 *   checkExplain (prepareRun): every 422 before training (row widths, target, token ids)
 *   explainRun:  compile for input gradients -> ExplainNetwork over the final weights -> explainRows
 */
import { UnprocessableError, type FieldIssue } from "../../errors.js";
import type { Table } from "../../formats/dataset.js";
import type { ExplainSpec, Explanations } from "../../schema/explain.js";
import { compileModel } from "../graph/compile.js";
import type { CompiledModel } from "../graph/types.js";
import type { KernelInstance } from "../kernels.js";
import type { OutputLayout, PreparedRun } from "../prepare.js";
import type { NamedTensor } from "../backend.js";
import { identityOrder, MT19937, mixSeed, shuffleInPlace } from "../rng.js";
import { integrationPoints } from "./quadrature.js";
import { shapCoalitions, solveShap } from "./kernel-shap.js";
import { ExplainNetwork, type RowContext } from "./network.js";

export { integrationPoints, legendreGauss } from "./quadrature.js";
export { shapCoalitions, solveShap, exactShapley } from "./kernel-shap.js";
export { ExplainNetwork, type RowContext } from "./network.js";

/** Rows explained by default: the first of the validation rows (training rows without them). */
export const DEFAULT_EXPLAIN_ROWS = 100;
/** Background rows KernelSHAP samples from the training rows ("train"). */
export const TRAIN_BACKGROUND_ROWS = 100;
/** Rows one forward/backward pass of the explanation model takes. */
export const EXPLAIN_BATCH_ROWS = 64;

/**
 * What explain() needs of a model: its outputs, the differentiated points (x, or the token
 * embedding's output) of data rows, and at given points the outputs and the gradient of one
 * output per row. ExplainNetwork (WASM, network.ts) and the WebGPU backend's network implement it.
 */
export interface ExplainModel {
  readonly columns: number;
  readonly pointSize: number;
  readonly outputsPerRow: number;
  readonly tokens: boolean;
  outputs(x: Float32Array, n: number, context: RowContext): Float32Array | Promise<Float32Array>;
  points(x: Float32Array, n: number, context: RowContext): Float32Array | Promise<Float32Array>;
  at(points: Float32Array, n: number, ids: Float32Array | null, context: RowContext, targets: Int32Array | null):
    { outputs: Float32Array; grads: Float32Array | null } | Promise<{ outputs: Float32Array; grads: Float32Array | null }>;
}

/** Rows under explanation: x (features or token ids) [count, columns] with their context. */
export interface ExplainRows extends RowContext {
  x: Float32Array;
  count: number;
}

/**
 * Checks an `explain` object against the compiled model and the data before anything runs:
 * one prediction per row, the target among the outputs, rows (and baseline, background) as
 * wide as the data's rows, token ids inside the vocabulary. Throws a 422 naming the field
 * (under `field`; "" for paths relative to the explain route's body).
 *
 * @example
 * ```ts
 * checkExplain(request.explain, prepared.model, prepared.output, prepared.train, "explain");
 * ```
 */
export function checkExplain(spec: ExplainSpec, model: CompiledModel, output: OutputLayout, train: Table, field = "explain"): void {
  const issues: FieldIssue[] = [];
  // field "" (the explain route's body): paths relative to the body
  const at = (sub: string) => (field ? `${field}.${sub}` : sub);
  if (output.positions !== 1) {
    throw new UnprocessableError("invalid_explain", [
      { path: field || "(body)", message: `the model makes ${output.positions} predictions per row ([tokens, classes] outputs); explanations need one prediction per row` },
    ]);
  }
  const outputs = output.classes;
  if (typeof spec.target === "number" && spec.target >= outputs) {
    issues.push({ path: at(`target`), message: `is ${spec.target}, but the model has ${outputs} output${outputs === 1 ? "" : "s"} (targets 0..${outputs - 1})` });
  }
  const columns = train.features;
  const kind = train.ids ? "token ids" : "features";
  const checkRow = (row: readonly number[], path: string) => {
    if (row.length !== columns) {
      issues.push({ path, message: `has ${row.length} ${kind}, but the model's rows have ${columns}` });
      return;
    }
    if (train.ids && model.vocabulary) {
      const bad = row.findIndex((v) => !Number.isInteger(v) || v < 0 || v >= model.vocabulary!.size);
      if (bad >= 0) issues.push({ path: `${path}[${bad}]`, message: `is ${row[bad]}; token ids must be integers below ${model.vocabulary.size} (${model.vocabulary.path})` });
    }
  };
  spec.rows?.forEach((row, i) => checkRow(row, at(`rows[${i}]`)));
  if (spec.attention_mask) {
    if (!train.ids) issues.push({ path: at(`attention_mask`), message: "is for token rows; this model reads features" });
    else if (!spec.rows) issues.push({ path: at(`attention_mask`), message: "comes with explain.rows (the default rows bring their own mask)" });
    else if (spec.attention_mask.length !== spec.rows.length) issues.push({ path: at(`attention_mask`), message: `has ${spec.attention_mask.length} rows, explain.rows has ${spec.rows.length}` });
    else spec.attention_mask.forEach((m, i) => m.length !== columns && issues.push({ path: at(`attention_mask[${i}]`), message: `has ${m.length} entries, the rows have ${columns}` }));
  }
  if (spec.method === "integrated_gradients" && Array.isArray(spec.baseline)) checkRow(spec.baseline, at(`baseline`));
  if (spec.method === "kernel_shap" && Array.isArray(spec.background)) spec.background.forEach((row, i) => checkRow(row, at(`background[${i}]`)));
  if (issues.length > 0) throw new UnprocessableError("invalid_explain", issues);
}

/**
 * The rows an `explain` object names: its own `rows`, or the first DEFAULT_EXPLAIN_ROWS rows of
 * `fallback` (the validation rows, else the training rows).
 *
 * @example
 * ```ts
 * const rows = explainRows(spec, prepared.validation ?? prepared.train);
 * ```
 */
export function explainRows(spec: ExplainSpec, fallback: Table): ExplainRows {
  if (spec.rows) {
    return {
      x: Float32Array.from(spec.rows.flat()),
      count: spec.rows.length,
      mask: spec.attention_mask ? Float32Array.from(spec.attention_mask.flat()) : null,
      types: null,
    };
  }
  const count = Math.min(DEFAULT_EXPLAIN_ROWS, fallback.rows);
  const C = fallback.features;
  return {
    x: fallback.x.slice(0, count * C),
    count,
    mask: fallback.mask ? fallback.mask.slice(0, count * C) : null,
    types: fallback.tokenTypes ? fallback.tokenTypes.slice(0, count * C) : null,
  };
}

/**
 * The run's model compiled for input gradients: the same layers, adapter and names, every
 * parameter frozen and held in float32 (the fine-tuned values as they are).
 *
 * @example
 * ```ts
 * const compiled = compileForExplanation(prepared);
 * compiled.inputGrad; // { value, producer, slot }
 * ```
 */
export function compileForExplanation(prepared: PreparedRun): CompiledModel {
  const { request, model, train } = prepared;
  const lora = request.adapter && model.lora ? { spec: request.adapter, targets: model.lora.targets, modulesToSave: model.lora.modulesToSave } : null;
  return compileModel(
    { ...request.model, base_dtype: "float32" },
    null,
    { features: train.features, tokens: train.ids ?? false, mask: !!train.mask },
    lora,
    false,
    { inputGradient: true },
  );
}

/**
 * Explains the rows of `spec` with the run's final weights, on a kernel instance (its memory is
 * taken over from its heap base: call it once training no longer needs the instance).
 *
 * @example
 * ```ts
 * const explanations = explainRun(instance, prepared, await backend.parameters(), request.explain);
 * ```
 */
export async function explainRun(instance: KernelInstance, prepared: PreparedRun, parameters: readonly NamedTensor[], spec: ExplainSpec): Promise<Explanations> {
  const compiled = compileForExplanation(prepared);
  const net = new ExplainNetwork(instance, compiled, explainWeights(prepared, compiled, parameters), EXPLAIN_BATCH_ROWS);
  const rows = explainRows(spec, prepared.validation ?? prepared.train);
  return explain(net, spec, rows, prepared.train);
}

/**
 * The weights of an explanation model by its own names: parameters carry the result's names (a
 * prefixless checkpoint's renamed ones) and transposed tensors in the state_dict's layout.
 *
 * @example
 * ```ts
 * const weights = explainWeights(prepared, compileForExplanation(prepared), await backend.parameters());
 * ```
 */
export function explainWeights(prepared: PreparedRun, compiled: CompiledModel, parameters: readonly NamedTensor[]): Map<string, Float32Array> {
  return new Map(parameters.map((t) => [prepared.originalNames?.get(t.name) ?? t.name, transposeBack(compiled, t)]));
}

/** readState() gives a transposed tensor (GPT-2's Conv1D) back in the state_dict's [in, out]; loadState wants the block's [out, in]. */
function transposeBack(compiled: CompiledModel, t: NamedTensor): Float32Array {
  const info = compiled.state.find((s) => s.name === t.name);
  if (!info?.transposed) return t.data;
  const [rows, cols] = [t.shape[0]!, t.shape[1]!];
  const out = new Float32Array(t.data.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = t.data[i * cols + j]!;
  return out;
}

/**
 * Explains rows with a network: integrated gradients or KernelSHAP, as `spec` says.
 *
 * @example
 * ```ts
 * const e = explain(net, { method: "integrated_gradients", target: 0, baseline: "zeros", steps: 50, integration: "gausslegendre" }, rows, train);
 * e.attributions[0]; // one number per feature of the first row
 * ```
 */
export async function explain(net: ExplainModel, spec: ExplainSpec, rows: ExplainRows, train: Table): Promise<Explanations> {
  const O = net.outputsPerRow;
  const fx = await net.outputs(rows.x, rows.count, rows);
  const targets = Int32Array.from({ length: rows.count }, (_, r) => (spec.target === "predicted" ? argmax(fx.subarray(r * O, (r + 1) * O)) : spec.target));
  const result = spec.method === "integrated_gradients" ? await integratedGradients(net, spec, rows, targets, train) : await kernelShap(net, spec, rows, targets, fx, train);
  const F = net.columns;
  const importance = new Array<number>(F).fill(0);
  for (const a of result.attributions) for (let j = 0; j < F; j++) importance[j]! += Math.abs(a[j]!);
  for (let j = 0; j < F; j++) importance[j] = Math.fround(importance[j]! / result.attributions.length);
  return {
    method: spec.method,
    target: spec.target,
    feature_names: featureNames(train, net.columns),
    attributions: result.attributions,
    feature_importance: importance,
    ...(result.delta ? { convergence_delta: result.delta } : {}),
  };
}

/**
 * The CSV header's feature names; x0.. for inline feature rows; token0.. for token rows.
 *
 * @example
 * ```ts
 * featureNames(prepared.train, prepared.train.features); // ["age", "income", ...] or ["x0", "x1", ...]
 * ```
 */
export function featureNames(train: Table, columns: number): string[] {
  if (!train.ids && train.featureNames && train.featureNames.length === columns) return [...train.featureNames];
  return Array.from({ length: columns }, (_, i) => `${train.ids ? "token" : "x"}${i}`);
}

/**
 * Captum's IntegratedGradients (captum/attr/_core/integrated_gradients.py): for each row, the
 * points baseline + alpha_k (x - baseline) of integrationPoints, the gradients of f_target
 * there, attribution = (x - baseline) * sum_k w_k grad_k; convergence delta (Captum's
 * compute_convergence_delta) = sum(attribution) - (f(x) - f(baseline)). Token rows: x is the
 * embedding output (LayerIntegratedGradients on the embedding) and a token's attribution the sum
 * over its embedding dimension.
 */
async function integratedGradients(
  net: ExplainModel, spec: Extract<ExplainSpec, { method: "integrated_gradients" }>, rows: ExplainRows, targets: Int32Array, train: Table,
): Promise<{ attributions: number[][]; delta: number[] }> {
  const P = net.pointSize;
  const C = net.columns;
  const O = net.outputsPerRow;
  const { alphas, weights } = integrationPoints(spec.integration, spec.steps);
  const n = alphas.length;
  const points = await net.points(rows.x, rows.count, rows);
  const baseline = new Float32Array(P);
  if (spec.baseline === "mean") {
    // the training rows' mean (of their embeddings for token rows)
    const trainPoints = await net.points(train.x, train.rows, { mask: train.mask ?? null, types: train.tokenTypes ?? null });
    const sum = new Float64Array(P);
    for (let r = 0; r < train.rows; r++) for (let j = 0; j < P; j++) sum[j] = sum[j]! + trainPoints[r * P + j]!;
    for (let j = 0; j < P; j++) baseline[j] = sum[j]! / train.rows;
  } else if (Array.isArray(spec.baseline)) {
    baseline.set(await net.points(Float32Array.from(spec.baseline), 1, { mask: null, types: null }));
  }
  const attributions: number[][] = [];
  const delta: number[] = [];
  const path = new Float32Array(n * P);
  const ids = net.tokens ? new Float32Array(n * C) : null;
  const context: RowContext = { mask: rows.mask ? new Float32Array(n * C) : null, types: rows.types ? new Float32Array(n * C) : null };
  const target = new Int32Array(n);
  for (let r = 0; r < rows.count; r++) {
    const x = points.subarray(r * P, (r + 1) * P);
    for (let k = 0; k < n; k++) {
      const a = alphas[k]!;
      for (let j = 0; j < P; j++) path[k * P + j] = baseline[j]! + a * (x[j]! - baseline[j]!);
      if (ids) ids.set(rows.x.subarray(r * C, (r + 1) * C), k * C);
      if (context.mask) context.mask.set(rows.mask!.subarray(r * C, (r + 1) * C), k * C);
      if (context.types) context.types.set(rows.types!.subarray(r * C, (r + 1) * C), k * C);
    }
    target.fill(targets[r]!);
    const { grads } = await net.at(path, n, ids, context, target);
    const total = new Float64Array(P);
    for (let k = 0; k < n; k++) for (let j = 0; j < P; j++) total[j] = total[j]! + weights[k]! * grads![k * P + j]!;
    const attribution = Array.from(total, (g, j) => g * (x[j]! - baseline[j]!));
    // f(x) and f(baseline) at the same points the path starts and ends (embeddings injected for tokens)
    const ends = new Float32Array(2 * P);
    ends.set(x, 0);
    ends.set(baseline, P);
    const endIds = ids ? Float32Array.from([...rows.x.subarray(r * C, (r + 1) * C), ...rows.x.subarray(r * C, (r + 1) * C)]) : null;
    const endContext: RowContext = { mask: context.mask ? context.mask.slice(0, 2 * C) : null, types: context.types ? context.types.slice(0, 2 * C) : null };
    const { outputs } = await net.at(ends, 2, endIds, endContext, null);
    const change = outputs[targets[r]!]! - outputs[O + targets[r]!]!;
    // reported as float32 values, the precision of the model's own numbers
    const perFeature = net.tokens ? sumPerToken(attribution, C, P / C) : attribution;
    attributions.push(perFeature.map(Math.fround));
    delta.push(Math.fround(attribution.reduce((s, v) => s + v, 0) - change));
  }
  return { attributions, delta };
}

function sumPerToken(values: readonly number[], tokens: number, dim: number): number[] {
  return Array.from({ length: tokens }, (_, t) => {
    let s = 0;
    for (let d = 0; d < dim; d++) s += values[t * dim + d]!;
    return s;
  });
}

/**
 * shap's KernelExplainer (kernel-shap.ts) with the value function v(S) = mean over the
 * background rows b of f_target(x_S, b_rest): a feature (a token id for token rows, with the
 * explained row's mask) comes from x when in S, from b otherwise. Features equal to x in every
 * background row get 0 and are left out of the regression, as shap's varying groups.
 */
async function kernelShap(
  net: ExplainModel, spec: Extract<ExplainSpec, { method: "kernel_shap" }>, rows: ExplainRows, targets: Int32Array, fx: Float32Array, train: Table,
): Promise<{ attributions: number[][]; delta: null }> {
  const C = net.columns;
  const O = net.outputsPerRow;
  const background = backgroundRows(spec, train);
  const B = background.length / C;
  const attributions: number[][] = [];
  for (let r = 0; r < rows.count; r++) {
    const x = rows.x.subarray(r * C, (r + 1) * C);
    const t = targets[r]!;
    const rowContext = (n: number): RowContext => ({
      mask: rows.mask ? repeat(rows.mask.subarray(r * C, (r + 1) * C), n) : null,
      types: rows.types ? repeat(rows.types.subarray(r * C, (r + 1) * C), n) : null,
    });
    // E[f(background)] with this row's mask and token types
    const nullOut = await net.outputs(background, B, rowContext(B));
    let fnull = 0;
    for (let b = 0; b < B; b++) fnull += nullOut[b * O + t]! / B;
    const varying: number[] = [];
    for (let j = 0; j < C; j++) {
      let differs = false;
      for (let b = 0; b < B && !differs; b++) differs = !isClose(background[b * C + j]!, x[j]!);
      if (differs) varying.push(j);
    }
    const phi = new Array<number>(C).fill(0);
    const M = varying.length;
    if (M > 0) {
      const coalitions = shapCoalitions(M, spec.samples, new MT19937(mixSeed(spec.seed, 0x53484150 + r))); // "SHAP" + row
      const ey = new Float64Array(coalitions.count);
      // coalitions in blocks, so that the mixed rows stay small
      const block = Math.max(1, Math.floor(8192 / B));
      const context = rowContext(block * B);
      for (let c0 = 0; c0 < coalitions.count; c0 += block) {
        const cn = Math.min(block, coalitions.count - c0);
        const mixed = new Float32Array(cn * B * C);
        for (let c = 0; c < cn; c++) {
          const mask = coalitions.masks.subarray((c0 + c) * M, (c0 + c + 1) * M);
          for (let b = 0; b < B; b++) {
            const at = (c * B + b) * C;
            mixed.set(background.subarray(b * C, (b + 1) * C), at);
            for (let m = 0; m < M; m++) if (mask[m]) mixed[at + varying[m]!] = x[varying[m]!]!;
          }
        }
        const out = await net.outputs(mixed, cn * B, { mask: context.mask?.subarray(0, cn * B * C) ?? null, types: context.types?.subarray(0, cn * B * C) ?? null });
        for (let c = 0; c < cn; c++) {
          let s = 0;
          for (let b = 0; b < B; b++) s += out[(c * B + b) * O + t]!;
          ey[c0 + c] = s / B;
        }
      }
      const solved = solveShap(coalitions, ey, fx[r * O + t]!, fnull);
      varying.forEach((j, m) => (phi[j] = Math.fround(solved[m]!)));
    }
    attributions.push(phi);
  }
  return { attributions, delta: null };
}

/**
 * KernelSHAP's background: the given rows, or a seeded sample of at most TRAIN_BACKGROUND_ROWS training rows.
 *
 * @example
 * ```ts
 * backgroundRows(spec, prepared.train).length / prepared.train.features; // min(100, training rows)
 * ```
 */
export function backgroundRows(spec: Extract<ExplainSpec, { method: "kernel_shap" }>, train: Table): Float32Array {
  if (Array.isArray(spec.background)) return Float32Array.from(spec.background.flat());
  const C = train.features;
  const order = identityOrder(train.rows);
  shuffleInPlace(new MT19937(mixSeed(spec.seed, 0x424b4744)), order); // "BKGD"
  const count = Math.min(TRAIN_BACKGROUND_ROWS, train.rows);
  const out = new Float32Array(count * C);
  for (let i = 0; i < count; i++) out.set(train.x.subarray(order[i]! * C, (order[i]! + 1) * C), i * C);
  return out;
}

/** numpy.isclose's defaults (rtol 1e-5, atol 1e-8), as shap's varying_groups. */
function isClose(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-8 + 1e-5 * Math.abs(b);
}

function repeat(row: Float32Array, n: number): Float32Array {
  const out = new Float32Array(n * row.length);
  for (let i = 0; i < n; i++) out.set(row, i * row.length);
  return out;
}

function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

/**
 * FLOPs an explanation costs: integrated gradients (steps + 2) forward and backward passes per
 * row; KernelSHAP (coalitions + 1) x background forward passes per row.
 *
 * @example
 * ```ts
 * explainFlops(spec, prepared.model, 100, 100); // decide whether it fits the edge budget
 * ```
 */
export function explainFlops(spec: ExplainSpec, model: CompiledModel, rows: number, trainRows: number): number {
  const fwd = model.forwardFlopsPerRow;
  if (spec.method === "integrated_gradients") return rows * (spec.steps + 3) * (fwd + Math.max(fwd, model.backwardFlopsPerRow));
  const B = Array.isArray(spec.background) ? spec.background.length : Math.min(TRAIN_BACKGROUND_ROWS, trainRows);
  const M = model.values[model.input.value]!.size;
  const coalitions = M <= 30 ? Math.min(spec.samples, 2 ** M - 2) : spec.samples;
  return rows * (coalitions + 2) * B * fwd;
}
