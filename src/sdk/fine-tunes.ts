/**
 * `client.fineTunes`: the /v1/fine-tunes resource.
 */
import type { FineTuneRequestInput } from "../schema/request.js";
import type { FineTuneResult } from "../schema/result.js";
import type { Job, JobList, MetricsPage } from "../schema/job.js";
import type { Trial } from "../schema/search.js";
import type { ExplainRequestInput, Explanations } from "../schema/explain.js";
import type { Explanation } from "../schema/explanation.js";
import { APIClient, sleep, type RequestOptions } from "./core.js";
import { APIConnectionError, APITimeoutError, APIUserAbortError, ExplanationFailedError, InternalServerError } from "./errors.js";
import { EventStream } from "./events.js";
import { FineTuneCheckpoints } from "./checkpoints.js";
import { JobListPromise, MetricsPagePromise } from "./pagination.js";
import { looksLikeSafetensors } from "../formats/safetensors-sniff.js";
import { isFinalStatus, type CreateResponse, type DataFile, type FineTuneCreateParams, type FineTuneEvent, type InlineDataset, type WeightsInput } from "./types.js";

/**
 * Options of `create()`: the per-call options plus the Idempotency-Key.
 *
 * @example
 * ```ts
 * await client.fineTunes.create(params, { idempotencyKey: `user-42-${day}`, timeout: 60_000 });
 * ```
 */
export interface CreateOptions extends RequestOptions {
  /**
   * Sent as `Idempotency-Key`. By default the SDK generates one per `create()` call and reuses it
   * across that call's retries; a create is retried only when it carries one. `null` sends none
   * and disables retries for this call.
   */
  idempotencyKey?: string | null | undefined;
}

/**
 * Parameters of `list()`.
 *
 * @example
 * ```ts
 * const params: ListParams = { limit: 50, cursor: previous.next_cursor ?? undefined };
 * ```
 */
export interface ListParams {
  /** Items per page: jobs 1 to 100 (server default 20); epochs of `metrics()` 1 to 1000 (default 100). */
  limit?: number | undefined;
  /** `next_cursor` of the previous page. */
  cursor?: string | undefined;
}

/**
 * Parameters of `list()`: a page, and the states to list (all when absent).
 *
 * @example
 * ```ts
 * const params: ListJobsParams = { status: ["queued", "running"], limit: 100 };
 * ```
 */
export interface ListJobsParams extends ListParams {
  /** Only jobs in this state, or in one of these states. */
  status?: Job["status"] | readonly Job["status"][] | undefined;
}

/**
 * Options of `events()`.
 *
 * @example
 * ```ts
 * client.fineTunes.events(id, { lastEventId: 6, signal: controller.signal });
 * ```
 */
export interface EventsOptions extends RequestOptions {
  /** Resume after this event id (the stream replays from the start without it). */
  lastEventId?: number | undefined;
}

/**
 * Options of `waitForCompletion()`.
 *
 * @example
 * ```ts
 * await client.fineTunes.waitForCompletion(id, { timeout: 30 * 60_000, onEvent: (e) => console.log(e.event) });
 * ```
 */
export interface WaitOptions {
  /** Milliseconds between polls when the event stream is unavailable. Default 1000. */
  pollInterval?: number | undefined;
  /** Give up (APITimeoutError) after this many ms. Default: wait as long as it takes. */
  timeout?: number | undefined;
  /** Called with every event: from the stream, or synthesised (`id` 0) while polling. */
  onEvent?: ((event: FineTuneEvent) => void | Promise<void>) | undefined;
  signal?: AbortSignal | undefined;
}

/**
 * Options of `explain()`: the per-call options, and how to wait for an explanation that runs
 * on a GPU node.
 *
 * @example
 * ```ts
 * await client.fineTunes.explain(id, spec, { pollInterval: 500, waitTimeout: 10 * 60_000, onQueued: (e) => console.log("on a GPU node:", e.id) });
 * ```
 */
export interface ExplainOptions extends RequestOptions {
  /**
   * Sent as `Idempotency-Key`: a retried POST that queued an explanation on a GPU node answers
   * that explanation instead of queueing another. Generated per call by default; `null` sends none.
   */
  idempotencyKey?: string | null | undefined;
  /** Milliseconds between polls of an explanation on a GPU node. Default 1000. */
  pollInterval?: number | undefined;
  /** Give up waiting for the node (APITimeoutError) after this many ms. Default: as long as it takes. */
  waitTimeout?: number | undefined;
  /** Called once when the explanation was queued for a GPU node (a 202). */
  onQueued?: ((explanation: Explanation) => void | Promise<void>) | undefined;
}

/** Whether POST .../explain answered the queued explanation (202) rather than the explanations. */
function isExplanationTask(answer: Explanations | Explanation): answer is Explanation {
  return (answer as Explanation).object === "explanation";
}

/**
 * The fine-tunes resource: `client.fineTunes`.
 *
 * @example
 * ```ts
 * const client = new Edgetune({ baseURL: "http://localhost:8787" });
 * const result = await client.fineTunes.create({ ...request, mode: "sync" });
 * const job = await client.fineTunes.retrieve(result.id);
 * ```
 */
export class FineTunes {
  /** The job's stored checkpoints: `list(id)`, `weights(id, epoch)`. */
  readonly checkpoints: FineTuneCheckpoints;

  constructor(private readonly client: APIClient) {
    this.checkpoints = new FineTuneCheckpoints(client);
  }

  /**
   * Creates a fine-tune. `mode: "sync"` resolves with the result (the run happened in the
   * request); `"async"` with the queued job; `"auto"` (default) with either: check `isJob()`.
   * Weights given as bytes and data given as CSV/JSONL text, bytes or Blobs go as multipart
   * parts (`request`, `weights`, `train`, `validation`); everything else as one JSON body.
   *
   * @example
   * ```ts
   * const result = await client.fineTunes.create({
   *   model: { layers: [{ type: "linear", name: "fc1", in_features: 10, out_features: 1 }] },
   *   weights: await readFile("weights.safetensors"),
   *   data: { train: await readFile("train.csv", "utf8"), validation_split: 0.1 },
   *   training: { epochs: 20, optimizer: { type: "adam", lr: 1e-3 } },
   *   mode: "sync",
   * });
   * console.log(result.status, result.metrics.history.at(-1)?.train_loss);
   * ```
   */
  create(params: FineTuneCreateParams & { mode: "sync" }, options?: CreateOptions): Promise<FineTuneResult>;
  create(params: FineTuneCreateParams & { mode: "async" }, options?: CreateOptions): Promise<Job>;
  create(params: FineTuneCreateParams, options?: CreateOptions): Promise<CreateResponse>;
  async create(params: FineTuneCreateParams, options: CreateOptions = {}): Promise<CreateResponse> {
    const { idempotencyKey, ...rest } = options;
    const key = idempotencyKey === undefined ? newIdempotencyKey() : idempotencyKey;
    const body = encodeCreateBody(params);
    // The server remembers an Idempotency-Key for 24 h per API key: a retry of a create it had
    // already processed gets the first answer (Idempotent-Replayed: true), not a second job.
    const { data } = await this.client.requestJSON<CreateResponse>(
      {
        method: "POST",
        path: "/v1/fine-tunes",
        ...body,
        retryable: key !== null,
        headers: key === null ? {} : { "idempotency-key": key },
      },
      rest,
    );
    return data;
  }

  /**
   * The job: status, plan, metrics so far, error.
   *
   * @example
   * ```ts
   * const job = await client.fineTunes.retrieve("ft_0123456789abcdef0123456789abcdef");
   * console.log(job.status, job.metrics?.history.length);
   * ```
   */
  async retrieve(id: string, options?: RequestOptions): Promise<Job> {
    const { data } = await this.client.requestJSON<Job>({ method: "GET", path: jobPath(id), retryable: true }, options);
    return data;
  }

  /**
   * A search job's trials (docs/strategy.md, "Searches"), in order, each with `best` marking
   * the one whose weights the search keeps; an empty list for a job that is no search.
   *
   * @example
   * ```ts
   * for (const t of await client.fineTunes.trials(search.id)) console.log(t.id, t.status, t.params, t.metric, t.best);
   * ```
   */
  async trials(id: string, options?: RequestOptions): Promise<(Trial & { best: boolean })[]> {
    const job = await this.retrieve(id, options);
    return (job.trials ?? []).map((t) => ({ ...t, best: t.id === job.best_trial }));
  }

  /**
   * The caller's jobs, newest first. `await` it for one page; `for await` over it for every job
   * (pages are fetched as the loop needs them); `.pages()` iterates pages.
   *
   * @example
   * ```ts
   * const { data, next_cursor } = await client.fineTunes.list({ limit: 10 });
   * for await (const job of client.fineTunes.list({ status: "running" })) console.log(job.id);
   * ```
   */
  list(params: ListJobsParams = {}, options?: RequestOptions): JobListPromise {
    const status = params.status === undefined ? undefined : typeof params.status === "string" ? params.status : params.status.join(",");
    const fetchPage = async (cursor: string | undefined) => {
      const { data } = await this.client.requestJSON<JobList>(
        { method: "GET", path: "/v1/fine-tunes", query: { limit: params.limit, cursor, status }, retryable: true },
        options,
      );
      return data;
    };
    return new JobListPromise(fetchPage, params.cursor);
  }

  /**
   * A job's whole per-epoch history, oldest first (the job keeps only its last 100 epochs in
   * `metrics.history`; `metrics.history_truncated` says when there are more). `await` it for one
   * page; `for await` over it for every epoch; `.pages()` iterates pages.
   *
   * @example
   * ```ts
   * const job = await client.fineTunes.retrieve(id);
   * if (job.metrics?.history_truncated) {
   *   for await (const epoch of client.fineTunes.metrics(id, { limit: 1000 })) console.log(epoch.epoch, epoch.train_loss);
   * }
   * ```
   */
  metrics(id: string, params: ListParams = {}, options?: RequestOptions): MetricsPagePromise {
    const fetchPage = async (cursor: string | undefined) => {
      const { data } = await this.client.requestJSON<MetricsPage>(
        { method: "GET", path: `${jobPath(id)}/metrics`, query: { limit: params.limit, cursor }, retryable: true },
        options,
      );
      return data;
    };
    return new MetricsPagePromise(fetchPage, params.cursor);
  }

  /**
   * Cancels a queued job at once, or a running one within an epoch; resolves with the job as it
   * is now. An ended job answers `ConflictError` (`already_finished`).
   *
   * @example
   * ```ts
   * const job = await client.fineTunes.cancel(id);
   * console.log(job.status); // "cancelled", or still "running" until the worker stops
   * ```
   */
  async cancel(id: string, options?: RequestOptions): Promise<Job> {
    const { data } = await this.client.requestJSON<Job>({ method: "POST", path: `${jobPath(id)}/cancel`, retryable: true }, options);
    return data;
  }

  /**
   * Pauses an async job: a queued one at once, a running one when its current epoch ends (it
   * checkpoints, then its status becomes `paused`). Resolves with the job as it is now. A job
   * that cannot be paused (sync, or ended) answers `ConflictError` (`not_pausable`).
   *
   * @example
   * ```ts
   * await client.fineTunes.pause(id);
   * const paused = await client.fineTunes.waitForCompletion(id); // resolves once it is paused
   * ```
   */
  async pause(id: string, options?: RequestOptions): Promise<Job> {
    const { data } = await this.client.requestJSON<Job>({ method: "POST", path: `${jobPath(id)}/pause`, retryable: true }, options);
    return data;
  }

  /**
   * Resumes a paused job: it is queued again and continues from its last checkpoint (bit-identical
   * to a run that never paused). Another status answers `ConflictError` (`not_paused`).
   *
   * @example
   * ```ts
   * const job = await client.fineTunes.resume(id);
   * console.log(job.status); // "queued"
   * ```
   */
  async resume(id: string, options?: RequestOptions): Promise<Job> {
    const { data } = await this.client.requestJSON<Job>({ method: "POST", path: `${jobPath(id)}/resume`, retryable: false }, options);
    return data;
  }

  /**
   * Deletes an ended job now, with its events, history, input, weights and checkpoints (as its
   * expiry would, JOB_TTL_DAYS after it ended); its bytes stop counting against the key's storage
   * quota. A queued or running job answers `ConflictError` (`job_active`): cancel it first.
   *
   * @example
   * ```ts
   * for await (const job of client.fineTunes.list({ status: ["failed", "cancelled"] })) await client.fineTunes.delete(job.id);
   * ```
   */
  async delete(id: string, options?: RequestOptions): Promise<void> {
    await this.client.requestBytes({ method: "DELETE", path: jobPath(id), retryable: true }, options);
  }

  /**
   * Explains a fine-tune that succeeded: integrated gradients or KernelSHAP attributions of its
   * fine-tuned weights (docs/explain.md). The edge computes it in the Worker when it fits the
   * in-Worker budget, else on a GPU node (`placement` chooses): then this waits for the node's
   * result (polling every `pollInterval` ms, up to `waitTimeout`) and resolves with it all the
   * same; a task that failed rejects with `ExplanationFailedError`. Bad input, or a job that did
   * not succeed, answers `UnprocessableEntityError`. Retried like any other idempotent call: the
   * POST carries an Idempotency-Key, so a retry past the budget answers the first queued task.
   *
   * @example
   * ```ts
   * const e = await client.fineTunes.explain(id, { method: "integrated_gradients", steps: 128, target: "predicted" });
   * e.feature_names.forEach((name, j) => console.log(name, e.feature_importance[j]));
   * ```
   */
  async explain(id: string, body: ExplainRequestInput, options: ExplainOptions = {}): Promise<Explanations> {
    const { pollInterval, waitTimeout, onQueued, ...request } = options;
    const answer = await this.createExplanation(id, body, request);
    if (!isExplanationTask(answer)) return answer;
    await onQueued?.(answer);
    return this.waitForExplanation(id, answer.id, { pollInterval, timeout: waitTimeout, signal: request.signal });
  }

  /**
   * POST /v1/fine-tunes/{id}/explain as the API answers it: the explanations (200, computed in
   * the Worker), or the explanation queued for a GPU node (202, `object: "explanation"`).
   *
   * @example
   * ```ts
   * const answer = await client.fineTunes.createExplanation(id, { method: "kernel_shap", placement: "gpu-node" });
   * if ("object" in answer) console.log("queued as", answer.id);
   * ```
   */
  async createExplanation(id: string, body: ExplainRequestInput, options: RequestOptions & { idempotencyKey?: string | null | undefined } = {}): Promise<Explanations | Explanation> {
    const { idempotencyKey, ...rest } = options;
    const key = idempotencyKey === undefined ? newIdempotencyKey() : idempotencyKey;
    const headers = key === null ? {} : { "idempotency-key": key };
    const { data } = await this.client.requestJSON<Explanations | Explanation>({ method: "POST", path: `${jobPath(id)}/explain`, json: body, retryable: true, headers }, rest);
    return data;
  }

  /**
   * Cancels an explanation queued or running on a GPU node; resolves with it as it is now. An
   * ended one answers `ConflictError` (`already_finished`).
   *
   * @example
   * ```ts
   * const e = await client.fineTunes.cancelExplanation(id, eid);
   * console.log(e.status); // "cancelled"
   * ```
   */
  async cancelExplanation(id: string, explanationId: string, options?: RequestOptions): Promise<Explanation> {
    const path = `${jobPath(id)}/explanations/${encodeURIComponent(explanationId)}/cancel`;
    const { data } = await this.client.requestJSON<Explanation>({ method: "POST", path, retryable: true }, options);
    return data;
  }

  /**
   * An explanation running on a GPU node: its status, and `result` once it has succeeded.
   *
   * @example
   * ```ts
   * const e = await client.fineTunes.retrieveExplanation(id, eid);
   * if (e.status === "succeeded") console.log(e.result!.feature_importance);
   * ```
   */
  async retrieveExplanation(id: string, explanationId: string, options?: RequestOptions): Promise<Explanation> {
    const path = `${jobPath(id)}/explanations/${encodeURIComponent(explanationId)}`;
    const { data } = await this.client.requestJSON<Explanation>({ method: "GET", path, retryable: true }, options);
    return data;
  }

  /**
   * Polls an explanation on a GPU node until it has ended: its explanations, or
   * `ExplanationFailedError` (APITimeoutError past `timeout`).
   *
   * @example
   * ```ts
   * const e = await client.fineTunes.waitForExplanation(id, eid, { pollInterval: 500 });
   * ```
   */
  async waitForExplanation(id: string, explanationId: string, options: { pollInterval?: number | undefined; timeout?: number | undefined; signal?: AbortSignal | undefined } = {}): Promise<Explanations> {
    const { pollInterval = 1000, timeout, signal } = options;
    const deadline = timeout === undefined ? Infinity : Date.now() + timeout;
    for (;;) {
      const e = await this.retrieveExplanation(id, explanationId, { signal });
      if (e.status === "succeeded" && e.result) return e.result;
      if (e.status === "failed" || e.status === "cancelled") throw new ExplanationFailedError(e);
      if (Date.now() + pollInterval > deadline) throw new APITimeoutError(`Explanation ${explanationId} did not finish within ${timeout} ms.`);
      await sleep(pollInterval, signal);
    }
  }

  /**
   * The job's events as an async iterator: `status`, `epoch`, `step`, then `done` or `error`.
   * It replays from the start (or after `lastEventId`), follows live events, resumes with
   * Last-Event-ID when the connection drops, and aborts the request when the loop breaks.
   *
   * @example
   * ```ts
   * for await (const event of client.fineTunes.events(id)) {
   *   if (event.event === "epoch") console.log(event.data.epoch, event.data.train_loss);
   *   else if (event.event === "done") console.log("succeeded", event.data.metrics?.best_epoch);
   * }
   * ```
   */
  events(id: string, options: EventsOptions = {}): EventStream {
    const { lastEventId, signal, ...rest } = options;
    return new EventStream(
      (after, streamSignal) =>
        this.client.openStream(
          {
            method: "GET",
            path: `${jobPath(id)}/events`,
            retryable: true,
            accept: "text/event-stream",
            headers: after === undefined ? {} : { "last-event-id": String(after) },
          },
          { ...rest, signal: streamSignal },
        ),
      { lastEventId, signal, maxRetries: options.maxRetries ?? this.client.maxRetries },
    );
  }

  /**
   * The fine-tuned weights: safetensors bytes with PyTorch `state_dict` names. A job that has
   * not ended answers `ConflictError` (`weights_not_ready`). An adapter run's weights come in
   * `format` (default: its request's `output.format`).
   *
   * @example
   * ```ts
   * await writeFile("tuned.safetensors", await client.fineTunes.weights(id));
   * await writeFile("adapter_model.safetensors", await client.fineTunes.weights(id, { format: "peft" }));
   * ```
   */
  async weights(id: string, options?: RequestOptions & { format?: "full" | "peft" | "merged" }): Promise<Uint8Array> {
    const { format, ...rest } = options ?? {};
    return this.client.requestBytes(
      { method: "GET", path: `${jobPath(id)}/weights`, query: { format }, retryable: true, accept: "application/octet-stream" },
      rest,
    );
  }

  /**
   * An adapter run's adapter_config.json (PEFT's), to save beside its `weights(id, { format: "peft" })`.
   *
   * @example
   * ```ts
   * await writeFile("adapter_config.json", JSON.stringify(await client.fineTunes.adapterConfig(id), null, 2));
   * ```
   */
  async adapterConfig(id: string, options?: RequestOptions): Promise<Record<string, unknown>> {
    return (await this.client.requestJSON<Record<string, unknown>>({ method: "GET", path: `${jobPath(id)}/adapter_config.json`, retryable: true }, options)).data;
  }

  /**
   * Waits for a job to reach a final state (or to pause) and resolves with the job. It follows `events()`,
   * passing each to `onEvent`; if the stream is unavailable (connection errors, 5xx) it polls
   * `retrieve()` every `pollInterval` ms instead, synthesising `status`/`epoch`/final events.
   * It resolves whatever the final status is: check `job.status`.
   *
   * @example
   * ```ts
   * const job = await client.fineTunes.waitForCompletion(created.id, {
   *   onEvent: (e) => { if (e.event === "epoch") console.log(e.data.epoch, e.data.train_loss); },
   * });
   * if (job.status === "succeeded") await writeFile("tuned.safetensors", await client.fineTunes.weights(job.id));
   * ```
   */
  async waitForCompletion(id: string, options: WaitOptions = {}): Promise<Job> {
    const { pollInterval = 1000, timeout, onEvent, signal } = options;
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal?.reason);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener("abort", onAbort, { once: true });
    let timedOut = false;
    const timer =
      timeout === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            controller.abort();
          }, timeout);
    const ended = (err: unknown) => {
      if (timedOut) return new APITimeoutError(`Fine-tune ${id} did not finish within ${timeout} ms.`, err);
      return err;
    };
    let lastStatus: string | undefined;
    let lastEpoch = 0;
    try {
      try {
        for await (const event of this.events(id, { signal: controller.signal })) {
          if (event.event === "status") lastStatus = event.data.status;
          if (event.event === "epoch") lastEpoch = event.data.epoch;
          await onEvent?.(event);
          if (event.event === "done" || event.event === "error") return event.data;
          // a paused job has no final event (it may be resumed): polling below reads the job (and,
          // for a pause that a replay shows but a resume has undone, follows it to its end)
          if (event.event === "status" && event.data.status === "paused") break;
        }
      } catch (err) {
        if (err instanceof APIUserAbortError) throw err;
        if (!(err instanceof APIConnectionError) && !(err instanceof InternalServerError)) throw err;
        // the stream is unavailable (a proxy that buffers, a dependency down): poll instead
      }
      for (;;) {
        const job = await this.retrieve(id, { signal: controller.signal });
        const history = job.metrics?.history ?? [];
        if (job.status !== lastStatus) {
          lastStatus = job.status;
          if (!isFinalStatus(job.status)) await onEvent?.({ id: 0, event: "status", data: { status: job.status } });
        }
        for (const h of history) {
          if (h.epoch > lastEpoch) {
            lastEpoch = h.epoch;
            await onEvent?.({ id: 0, event: "epoch", data: h });
          }
        }
        if (job.status === "paused") return job;
        if (isFinalStatus(job.status)) {
          await onEvent?.({ id: 0, event: "status", data: { status: job.status } });
          await onEvent?.({ id: 0, event: job.status === "succeeded" ? "done" : "error", data: job });
          return job;
        }
        await sleep(pollInterval, controller.signal);
      }
    } catch (err) {
      throw ended(err);
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }
}

function jobPath(id: string): string {
  return `/v1/fine-tunes/${encodeURIComponent(id)}`;
}

/** A random Idempotency-Key (a UUID where crypto.randomUUID exists). */
function newIdempotencyKey(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (typeof c?.randomUUID === "function") return c.randomUUID();
  return `${Date.now().toString(16)}-${Math.random().toString(16).slice(2)}${Math.random().toString(16).slice(2)}`;
}

const isBinary = (w: unknown): w is Uint8Array | ArrayBuffer | Blob =>
  w instanceof Uint8Array || w instanceof ArrayBuffer || (typeof Blob !== "undefined" && w instanceof Blob);

const isDataFile = (d: unknown): d is DataFile =>
  typeof d === "string" || d instanceof Uint8Array || (typeof Blob !== "undefined" && d instanceof Blob);

/**
 * The body of a create: JSON when everything is inline, else multipart with a `request` part
 * (the JSON without what travels as parts) and `weights` / `tokenizer` / `train` / `validation` parts.
 */
function encodeCreateBody(params: FineTuneCreateParams): { json: FineTuneRequestInput } | { form: FormData } {
  const { weights, adapter_weights: adapterWeights, data, tokenizer, ...rest } = params;
  const { train, validation, ...dataRest } = data ?? ({} as FineTuneCreateParams["data"]);
  if (!isBinary(weights) && !isBinary(adapterWeights) && !isDataFile(train) && !isDataFile(validation)) {
    return { json: params as FineTuneRequestInput };
  }
  const request: Record<string, unknown> = { ...rest, data: { ...dataRest } };
  const requestData = request.data as Record<string, unknown>;
  const form = new FormData();
  if (weights !== undefined && !isBinary(weights)) request.weights = weights;
  if (adapterWeights !== undefined && !isBinary(adapterWeights)) request.adapter_weights = adapterWeights;
  for (const [name, value] of [["train", train], ["validation", validation]] as const) {
    if (value !== undefined && !isDataFile(value)) requestData[name] = value;
  }
  form.set("request", JSON.stringify(request));
  // a tokenizer.json (megabytes for a real vocabulary) travels as its own part
  if (tokenizer !== undefined && tokenizer !== null) form.set("tokenizer", new Blob([JSON.stringify(tokenizer)], { type: "application/json" }), "tokenizer.json");
  if (isBinary(weights)) {
    const blob = weights instanceof Blob ? weights : new Blob([weights as Uint8Array<ArrayBuffer>], { type: "application/octet-stream" });
    form.set("weights", blob, "weights.safetensors");
  }
  if (isBinary(adapterWeights)) {
    const blob = adapterWeights instanceof Blob ? adapterWeights : new Blob([adapterWeights as Uint8Array<ArrayBuffer>], { type: "application/octet-stream" });
    form.set("adapter_weights", blob, "adapter_model.safetensors");
  }
  for (const [name, value] of [["train", train], ["validation", validation]] as const) {
    if (isDataFile(value)) form.set(name, ...dataPart(name, value));
  }
  return { form };
}

/** A data file as a form part with a file name that tells its format (.csv, .jsonl, .safetensors). */
function dataPart(name: string, value: DataFile): [Blob, string] {
  if (typeof Blob !== "undefined" && value instanceof Blob) {
    const fileName = (value as { name?: unknown }).name;
    if (typeof fileName === "string" && fileName !== "") return [value, fileName];
    const type = value.type.split(";")[0]!.trim().toLowerCase();
    const ext = type.includes("csv") ? "csv" : type.includes("json") ? "jsonl" : "";
    return [value, ext ? `${name}.${ext}` : name]; // no hint: the server looks at the first character
  }
  if (value instanceof Uint8Array && looksLikeSafetensors(value)) {
    // a safetensors dataset: sent as it is, never decoded as text
    return [new Blob([value as Uint8Array<ArrayBuffer>], { type: "application/octet-stream" }), `${name}.safetensors`];
  }
  const text = typeof value === "string" ? value : new TextDecoder().decode(value as Uint8Array);
  const jsonl = text.trimStart().startsWith("{");
  return [new Blob([text], { type: jsonl ? "application/jsonl" : "text/csv" }), `${name}.${jsonl ? "jsonl" : "csv"}`];
}
