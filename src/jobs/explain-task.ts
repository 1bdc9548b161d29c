/**
 * Explanation tasks (issue 18 item 2, docs/explain.md "On a GPU node"): an explanation of a
 * stored fine-tune that POST /v1/fine-tunes/{id}/explain hands to a GPU node. A task is an
 * asynchronous job of the job machinery (jobs/state.ts: queued for a GPU node, claimed under a
 * lease, heartbeats, lease recovery), stored under the id `{fine-tune id}:{explanation id}`, kept
 * out of the owner's listing, whose input is this module's file: the explain object, the shape
 * the result must have, the fine-tune's run input and its final weights.
 */
import type { FieldIssue } from "../errors.js";
import { EdgetuneError } from "../errors.js";
import { newId } from "../engine/loop.js";
import type { NamedTensor } from "../engine/backend.js";
import { parseSafetensors, readTensorF32 } from "../formats/safetensors.js";
import type { ExplainSpec, Explanations } from "../schema/explain.js";
import type { Explanation } from "../schema/explanation.js";
import type { Job } from "../schema/job.js";
import { createQueued, type JobState, type LeasePolicy } from "./state.js";

/** A public explanation id: "ex_" and 32 hex digits in creation order (as fine-tune ids). */
export const EXPLANATION_ID = /^ex_[0-9a-f]{32}$/;
const TASK_ID = /^(ft_[0-9a-f]{32}):(ex_[0-9a-f]{32})$/;

/**
 * A new explanation id.
 *
 * @example
 * ```ts
 * EXPLANATION_ID.test(newExplanationId()); // true
 * ```
 */
export function newExplanationId(): string {
  return `ex_${newId().slice("ft_".length)}`;
}

/**
 * The job id an explanation task is stored and claimed under: the fine-tune's id first, so
 * that everything stored under the fine-tune's prefixes (jobs/store.ts blobPrefixesOf) covers
 * its tasks' inputs too, and deleting the fine-tune deletes them.
 *
 * @example
 * ```ts
 * explanationTaskId("ft_…", "ex_…"); // "ft_…:ex_…"
 * ```
 */
export function explanationTaskId(fineTuneId: string, explanationId: string): string {
  return `${fineTuneId}:${explanationId}`;
}

/**
 * The fine-tune and explanation ids of a task's job id, or null when `id` is not a task's
 * (a fine-tune's own job).
 *
 * @example
 * ```ts
 * explanationTaskOf(claim.job.id)?.explanationId; // "ex_…" for an explanation task
 * ```
 */
export function explanationTaskOf(id: string): { fineTuneId: string; explanationId: string } | null {
  const m = TASK_ID.exec(id);
  return m ? { fineTuneId: m[1]!, explanationId: m[2]! } : null;
}

/** What a task carries besides the run input and weights: the explain object and the result's shape. */
export interface ExplanationTaskHeader {
  fine_tune: string;
  spec: ExplainSpec;
  /** The result the edge accepts: one attribution row per explained row, one value per name. */
  expected: { rows: number; feature_names: string[] };
}

const MAGIC = new TextEncoder().encode("edgetune-explain-task/1\n");

/**
 * A task's input file: MAGIC, the header's byte length (u32 LE), the header as JSON, the run
 * input (jobs/run-input.ts), the weights (safetensors); the header gives both lengths.
 *
 * @example
 * ```ts
 * await store.submit(state, encodeExplanationTask(header, runInput, weights), { listed: false });
 * ```
 */
export function encodeExplanationTask(header: ExplanationTaskHeader, runInput: Uint8Array, weights: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify({ ...header, run_input_bytes: runInput.byteLength, weights_bytes: weights.byteLength }));
  const out = new Uint8Array(MAGIC.length + 4 + json.length + runInput.byteLength + weights.byteLength);
  out.set(MAGIC, 0);
  new DataView(out.buffer).setUint32(MAGIC.length, json.length, true);
  out.set(json, MAGIC.length + 4);
  out.set(runInput, MAGIC.length + 4 + json.length);
  out.set(weights, MAGIC.length + 4 + json.length + runInput.byteLength);
  return out;
}

/**
 * Reads a task's input file back; throws EdgetuneError when it is not one.
 *
 * @example
 * ```ts
 * const { header, runInput, weights } = decodeExplanationTask(await channel.readInput(id, leaseId));
 * ```
 */
export function decodeExplanationTask(bytes: Uint8Array): { header: ExplanationTaskHeader; runInput: Uint8Array; weights: Uint8Array } {
  const bad = () => new EdgetuneError(500, "invalid_task", "The stored explanation task could not be read.");
  if (bytes.byteLength < MAGIC.length + 4 || MAGIC.some((b, i) => bytes[i] !== b)) throw bad();
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(MAGIC.length, true);
  const start = MAGIC.length + 4 + length;
  if (start > bytes.byteLength) throw bad();
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(MAGIC.length + 4, start))) as ExplanationTaskHeader & { run_input_bytes: number; weights_bytes: number };
  if (start + header.run_input_bytes + header.weights_bytes !== bytes.byteLength) throw bad();
  const { run_input_bytes: n, weights_bytes: _w, ...rest } = header;
  return { header: rest, runInput: bytes.subarray(start, start + n), weights: bytes.subarray(start + n) };
}

/**
 * Why a node's result cannot be taken for a task, as field issues (empty: it can): the
 * method and target asked, the feature names, `rows` x `features` attributions, one
 * importance per feature, a convergence delta per row for integrated gradients (none for
 * KernelSHAP), and finite numbers throughout.
 *
 * @example
 * ```ts
 * const issues = explanationIssues(header, body.explanations);
 * if (issues.length > 0) throw new UnprocessableError("invalid_explanation", issues);
 * ```
 */
export function explanationIssues(header: ExplanationTaskHeader, e: Explanations, path = "explanations"): FieldIssue[] {
  const issues: FieldIssue[] = [];
  const { rows, feature_names: names } = header.expected;
  const F = names.length;
  if (e.method !== header.spec.method) issues.push({ path: `${path}.method`, message: `is ${e.method}; the task asked for ${header.spec.method}` });
  if (e.target !== header.spec.target) issues.push({ path: `${path}.target`, message: `is ${JSON.stringify(e.target)}; the task asked for ${JSON.stringify(header.spec.target)}` });
  if (e.feature_names.length !== F || e.feature_names.some((n, j) => n !== names[j])) {
    issues.push({ path: `${path}.feature_names`, message: `are not the model's ${F} feature names` });
  }
  const finiteRow = (values: readonly number[], at: string, length: number) => {
    if (values.length !== length) issues.push({ path: at, message: `has ${values.length} values; expected ${length}` });
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) issues.push({ path: `${at}[${bad}]`, message: "is not a finite number" });
  };
  if (e.attributions.length !== rows) issues.push({ path: `${path}.attributions`, message: `has ${e.attributions.length} rows; the task explains ${rows}` });
  e.attributions.forEach((row, i) => finiteRow(row, `${path}.attributions[${i}]`, F));
  finiteRow(e.feature_importance, `${path}.feature_importance`, F);
  if (header.spec.method === "integrated_gradients") {
    if (!e.convergence_delta) issues.push({ path: `${path}.convergence_delta`, message: "is missing; integrated gradients give one per row" });
    else finiteRow(e.convergence_delta, `${path}.convergence_delta`, rows);
  } else if (e.convergence_delta) {
    issues.push({ path: `${path}.convergence_delta`, message: "is given, but KernelSHAP has none" });
  }
  return issues.slice(0, 100);
}

/**
 * The queued job of a new task: placement gpu-node, no weights, the fine-tune's plan.
 *
 * @example
 * ```ts
 * const { state } = newExplanationTask({ fineTune: job, owner, explanationId, createdAt, now: Date.now(), policy });
 * ```
 */
export function newExplanationTask(args: { fineTune: Job; owner: string; explanationId: string; createdAt: string; now: number; policy: LeasePolicy }): { state: JobState } {
  const id = explanationTaskId(args.fineTune.id, args.explanationId);
  const job: Job = {
    id,
    object: "fine_tune",
    status: "queued",
    mode: "async",
    created_at: args.createdAt,
    started_at: null,
    finished_at: null,
    plan: { ...args.fineTune.plan, placement: "gpu-node" },
    metrics: null,
    engine: null,
    error: null,
    weights_url: null,
  };
  return createQueued(job, args.owner, "gpu-node", explanationTaskInputKey(id), args.now, args.policy);
}

/** Where a task's input is stored (under the fine-tune's `inputs/{id}` prefix). */
export function explanationTaskInputKey(taskId: string): string {
  return `inputs/${taskId}.explain`;
}

/**
 * The public resource of a task's job.
 *
 * @example
 * ```ts
 * c.json(explanationResource((await store.get(taskId))!.job), 200);
 * ```
 */
export function explanationResource(job: Job): Explanation {
  const ids = explanationTaskOf(job.id);
  if (!ids) throw new Error(`${job.id} is not an explanation task`);
  return {
    id: ids.explanationId,
    object: "explanation",
    fine_tune: ids.fineTuneId,
    status: job.status === "diverged" ? "failed" : job.status === "paused" ? "queued" : job.status, // tasks have no pause route; a paused one waits as queued
    placement: "gpu-node",
    created_at: job.created_at,
    started_at: job.started_at,
    finished_at: job.finished_at,
    engine: job.engine,
    result: job.status === "succeeded" ? (job.explanations ?? null) : null,
    error: job.error,
    ...(job.hint !== undefined ? { hint: job.hint } : {}),
  };
}

/**
 * A stored weights file's tensors as float32 (any output dtype; an adapter run's file holds its
 * full state): what the explanation model loads.
 *
 * @example
 * ```ts
 * const parameters = readStoredParameters(await storedBytes(await store.getWeights(id)));
 * ```
 */
export function readStoredParameters(bytes: Uint8Array): NamedTensor[] {
  const file = parseSafetensors(bytes, { field: "weights" });
  return [...file.tensors].map(([name, info]) => ({ name, shape: [...info.shape], data: readTensorF32(file, name, "weights", { integers: info.dtype === "I64" }) }));
}
