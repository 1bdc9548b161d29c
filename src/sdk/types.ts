/**
 * The SDK's types. The resources (request, result, job, list, problem) are the zod schemas'
 * types from src/schema, imported as types only so the SDK carries no runtime dependency.
 */
import type { FineTuneRequestInput } from "../schema/request.js";
import type { AsWritten } from "../schema/as-written.js";
import type { EpochMetrics, FineTuneResult, FineTuneStatus } from "../schema/result.js";
import type { Job, JobList, JobMetrics, JobSummary, MetricsPage, Problem } from "../schema/job.js";
import type { SearchSpecInput, Trial } from "../schema/search.js";

export type { SearchSpecInput, Trial };
export type { AsWritten, FineTuneRequestInput, FineTuneResult, FineTuneStatus, EpochMetrics, Job, JobList, JobMetrics, JobSummary, MetricsPage, Problem };
export type { Plan, Metrics, EngineInfo, RunError } from "../schema/result.js";
export type { ExplainSpecInput, ExplainRequestInput, Explanations } from "../schema/explain.js";
export type { Explanation } from "../schema/explanation.js";

/**
 * An inline dataset: `x` rows of numbers, `y` one target per row.
 *
 * @example
 * ```ts
 * const train: InlineDataset = { x: [[0.1, 0.2], [0.3, 0.4]], y: [1, 0] };
 * ```
 */
export type InlineDataset = NonNullable<FineTuneRequestInput["data"]["train"]>;

/**
 * A data file: CSV (header row; the target column is `data.target`, default `y`), JSONL
 * (`{"x":[...],"y":...}` per line) or a safetensors dataset (tensors `x` or `input_ids`, and `y`:
 * docs/api.md), as text, bytes, or a Blob/File. The format follows a Blob's type or a File's name
 * (`.safetensors`), else the content: bytes that start like safetensors are sent as such, text
 * by its first character (`{` is JSONL).
 *
 * @example
 * ```ts
 * const train: DataFile = "x0,x1,y\n0.1,0.2,1\n0.3,0.4,0\n";
 * ```
 */
export type DataFile = string | Uint8Array | Blob;

/**
 * Weights: safetensors bytes (Uint8Array, ArrayBuffer, Blob) or a base64 string; `null` or
 * absent means PyTorch's default initialisation from `training.seed`.
 *
 * @example
 * ```ts
 * const weights: WeightsInput = await readFile("weights.safetensors"); // a Buffer is a Uint8Array
 * ```
 */
export type WeightsInput = string | Uint8Array | ArrayBuffer | Blob | null;

/**
 * `client.fineTunes.create()`'s body: the API's request (`FineTuneRequestInput`, every default
 * optional) where `weights` may also be bytes and `data.train` / `data.validation` may also be
 * CSV or JSONL files. Bytes and files are sent as multipart parts, the rest as JSON.
 *
 * @example
 * ```ts
 * const params: FineTuneCreateParams = {
 *   model: { layers: [{ type: "linear", in_features: 2, out_features: 1 }] },
 *   weights: safetensorsBytes,
 *   data: { train: "x0,x1,y\n0.1,0.2,1\n", validation_split: 0.1 },
 *   training: { epochs: 5 },
 * };
 * ```
 */
export type FineTuneCreateParams = AsWritten<
  Omit<FineTuneRequestInput, "weights" | "adapter_weights" | "data"> & {
    weights?: WeightsInput | undefined;
    /** An adapter_model.safetensors to continue (PEFT's names): bytes go as a multipart part. */
    adapter_weights?: WeightsInput | undefined;
    data: Omit<FineTuneRequestInput["data"], "train" | "validation"> & {
      train?: InlineDataset | DataFile | undefined;
      validation?: InlineDataset | DataFile | undefined;
    };
  }
>;

/**
 * What `create()` resolves with: the result (200, the run happened in the request) or the
 * queued job (202). Tell them apart with `isJob()`.
 *
 * @example
 * ```ts
 * const created: CreateResponse = await client.fineTunes.create(params);
 * const job = isJob(created) ? await client.fineTunes.waitForCompletion(created.id) : created;
 * ```
 */
export type CreateResponse = FineTuneResult | Job;

/**
 * A `status` event: the job changed state (`attempt` counts runs after lost workers), or a
 * queued GPU job has no node polling for work (`waiting_for_node`, with the job's `hint`).
 *
 * @example
 * ```ts
 * const data: StatusEventData = { status: "running", attempt: 1 };
 * const waiting: StatusEventData = { status: "queued", attempt: 0, waiting_for_node: true, hint: "No GPU node is polling ..." };
 * ```
 */
export interface StatusEventData {
  status: FineTuneStatus;
  attempt?: number | undefined;
  /** true: no GPU node has polled for work for a lease period; start one (docs/gpu-node.md). */
  waiting_for_node?: boolean | undefined;
  hint?: string | undefined;
  /** A retried or resumed attempt that continues from the job's checkpoint of this epoch. */
  resumed_from_epoch?: number | undefined;
}

/**
 * A `step` event (optional, per optimizer step).
 *
 * @example
 * ```ts
 * const data: StepEventData = { step: 10, epoch: 1, loss: 0.42, lr: 0.001 };
 * ```
 */
export interface StepEventData {
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  attempt?: number | undefined;
}

/**
 * One event of `client.fineTunes.events(id)`: `status`, `epoch` (metrics of an epoch), `step`,
 * and the final `done` (succeeded) or `error` (failed, cancelled, diverged), both carrying the
 * finished job. `id` is the SSE sequence number (0 for events `waitForCompletion` synthesised
 * while polling).
 *
 * @example
 * ```ts
 * for await (const e of client.fineTunes.events(id)) {
 *   if (e.event === "epoch") console.log(e.data.epoch, e.data.train_loss);
 *   if (e.event === "done" || e.event === "error") console.log(e.data.status);
 * }
 * ```
 */
export type FineTuneEvent =
  | { id: number; event: "status"; data: StatusEventData }
  | { id: number; event: "epoch"; data: EpochMetrics & { attempt?: number } }
  | { id: number; event: "step"; data: StepEventData }
  | { id: number; event: "done"; data: Job }
  | { id: number; event: "error"; data: Job }
  /** A search job's trial changed: its status, or an epoch with its metric (docs/strategy.md, "Searches"). */
  | { id: number; event: "trial"; data: Trial };

/**
 * Whether `create()` answered a queued job (202) rather than a finished result (200).
 *
 * @example
 * ```ts
 * const created = await client.fineTunes.create(params);
 * if (isJob(created)) console.log("queued", created.id, created.status);
 * ```
 */
export function isJob(value: CreateResponse): value is Job {
  return (value as { object?: unknown }).object === "fine_tune";
}

/**
 * Whether a job status is final (`succeeded`, `failed`, `cancelled`, `diverged`).
 *
 * @example
 * ```ts
 * isFinalStatus("running"); // false
 * ```
 */
export function isFinalStatus(status: FineTuneStatus): boolean {
  return status === "succeeded" || status === "failed" || status === "cancelled" || status === "diverged";
}
