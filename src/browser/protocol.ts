/**
 * The messages between a page (`trainInWorker` in ./index.ts) and the training Web Worker
 * (./worker.ts, built as edgetune-worker.js). Everything crosses by structured clone.
 */
import type { TrainRequest } from "../engine/prepare.js";
import type { FieldIssue } from "../errors.js";
import type { FineTuneResult, ProgressEvent } from "../schema/result.js";
import type { BrowserRuntimeOptions, BrowserTrainOptions } from "./index.js";

/**
 * Page to worker: start one run (a worker trains one request), or cancel it.
 *
 * @example
 * ```ts
 * worker.postMessage({ type: "train", request, options: { kernel: "auto" }, runtime: { wasmBaseUrl: "https://example.com/lib/" } } satisfies WorkerRequest);
 * worker.postMessage({ type: "cancel" } satisfies WorkerRequest);
 * ```
 */
export type WorkerRequest =
  | {
      type: "train";
      request: TrainRequest;
      options: Omit<BrowserTrainOptions, "gpu" | "diagnostics" | "onProgress" | "signal">;
      /** `wasmBaseUrl` as an absolute URL string (the worker has no document to resolve against). */
      runtime: { wasmBaseUrl?: string; variant?: BrowserRuntimeOptions["variant"] };
    }
  | { type: "cancel" };

/**
 * A thrown error as it crosses: an EdgetuneError keeps status, code and field issues.
 *
 * @example
 * ```ts
 * const e: SerializedError = { name: "RequestValidationError", message: "Invalid request: ...", status: 400, code: "invalid_request", errors: [] };
 * ```
 */
export interface SerializedError {
  name: string;
  message: string;
  status?: number;
  code?: string;
  errors?: FieldIssue[];
}

/**
 * Worker to page: every progress event, then one result or one error.
 *
 * @example
 * ```ts
 * worker.onmessage = (ev: MessageEvent<WorkerReply>) => { if (ev.data.type === "result") show(ev.data.result); };
 * ```
 */
export type WorkerReply =
  | { type: "progress"; event: ProgressEvent }
  | { type: "result"; result: FineTuneResult }
  | { type: "error"; error: SerializedError };
