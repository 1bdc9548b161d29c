/**
 * Where jobs live: the interface the API talks to. The Worker implements it with a Durable
 * Object per job, a Durable Object index per API key and R2 for weights (worker/store.ts);
 * Node processes and tests use the in-process MemoryJobStore.
 */
import type { StreamAdmission, StreamLimits } from "./streams.js";
import { UnprocessableError, type FieldIssue } from "../errors.js";
import type { Job } from "../schema/job.js";
import type { EpochMetrics, FineTuneResult } from "../schema/result.js";
import type { JobEvent } from "./job.js";
import type { JobState } from "./state.js";

/** A job as stored: the public resource plus who owns it. */
export interface JobRecord {
  job: Job;
  /** The SHA-256 of the API key that created it (hex), or "" when the API is open. */
  owner: string;
}

/** One page of a listing, newest first. */
export interface JobPage {
  records: JobRecord[];
  nextCursor: string | null;
}

/** A worker's hold on a job: run it, report under `leaseId`, renew within `leaseMs`. */
export interface Claim {
  job: Job;
  leaseId: string;
  leaseMs: number;
  attempt: number;
  /**
   * The job's first run, with no checkpoint to continue from (state.ts firstRun): the runner
   * does not look for one. Absent (GPU nodes: not sent over /v1/nodes): it looks.
   */
  fresh?: boolean;
}

/** The answer to a progress report or heartbeat. */
export interface LeaseStatus {
  /** false: the lease was lost (the job was reassigned or ended); stop without completing. */
  ok: boolean;
  /** true: the owner cancelled; stop and complete with the run's cancelled result. */
  cancel: boolean;
  /** Epochs that were not taken (out of sequence, past the run's epochs), and why: a 422 to the node. */
  invalid?: FieldIssue;
  /** true: the owner asked to pause; checkpoint at the epoch's end and complete with the run's paused result. */
  pause?: boolean;
}

/** How a run ended, as its worker reports it (the weights are stored separately). */
export type RunOutcome = Omit<FineTuneResult, "weights" | "id"> | { failure: string };

/**
 * What a worker (a GPU node over HTTP, or the Worker's queue consumer in-process) needs to
 * run a claimed job. The store implements it directly; GPU nodes reach it through the
 * /v1/nodes API.
 */
export interface WorkerChannel {
  readInput(id: string, leaseId: string): Promise<Uint8Array | null>;
  progress(id: string, leaseId: string, epochs: EpochMetrics[], engine?: Job["engine"]): Promise<LeaseStatus>;
  heartbeat(id: string, leaseId: string): Promise<LeaseStatus>;
  /** Stores the weights under this lease; null when the lease is no longer held. */
  saveWeights(id: string, leaseId: string, bytes: Uint8Array): Promise<string | null>;
  /**
   * Ends the job with the worker's outcome. `invalid`: its history was not taken (a 422); throws
   * UnprocessableError at `weights_key` when no weights were stored under that key.
   */
  complete(id: string, leaseId: string, outcome: RunOutcome, weightsKey: string | null): Promise<{ accepted: boolean; invalid?: FieldIssue }>;
  /** Hands a claimed job back untrained (queued again, the attempt not counted); false when the lease is no longer held. */
  release(id: string, leaseId: string): Promise<{ accepted: boolean }>;
  /**
   * Stores a checkpoint file (engine/checkpoint.ts) under the lease at checkpointKeyOf(id, its
   * epoch), keeping the newest `keep`; false when the lease is no longer held.
   */
  saveCheckpoint(id: string, leaseId: string, bytes: Uint8Array, keep: number): Promise<boolean>;
  /**
   * The job's newest checkpoint, for the lease holder to continue from (a retry after a lost
   * worker, a resumed pause, from_checkpoint), with its history recorded as the attempt's first
   * epochs (state.ts resumedFrom); null when it has none, or the lease is no longer held.
   */
  resumeFrom(id: string, leaseId: string): Promise<Uint8Array | null>;
}

/**
 * One stored checkpoint, as GET /v1/fine-tunes/{id}/checkpoints lists it (schema/checkpoint.ts).
 *
 * @example
 * ```ts
 * const info: CheckpointInfo = { epoch: 4, step: 128, metrics: { epoch: 4, train_loss: 0.12, lr: 0.001 }, created_at: new Date().toISOString() };
 * ```
 */
export interface CheckpointInfo {
  epoch: number;
  step: number;
  metrics: EpochMetrics;
  created_at: string;
}

/**
 * Where a job's checkpoint of `epoch` is stored (under blobPrefixesOf's `checkpoints/{id}/`,
 * which deletion and expiry sweep).
 *
 * @example
 * ```ts
 * checkpointKeyOf("ft_1", 3); // "checkpoints/ft_1/3.safetensors"
 * ```
 */
export function checkpointKeyOf(id: string, epoch: number): string {
  return `checkpoints/${id}/${epoch}.safetensors`;
}

/**
 * Persistence for jobs and their weights.
 *
 * @example
 * ```ts
 * await store.put({ job, owner }, history, { weights, input });
 * const again = await store.get(job.id);
 * ```
 */
export interface JobStore {
  /**
   * Creates or replaces a finished (sync) job's record and adds it to its owner's listing.
   * `history` is the run's whole per-epoch history, stored apart from the record (whose
   * metrics keep only the last JOB_HISTORY_TAIL epochs), so that the record stays bounded.
   * `blobs`: its weights (getWeights) and run input (getInput), stored with it: once this
   * resolves, the job, its history and its blobs can all be read; when it throws, none was kept.
   */
  put(record: JobRecord, history: readonly EpochMetrics[], blobs?: { weights?: Uint8Array; input?: Uint8Array }): Promise<void>;
  get(id: string): Promise<JobRecord | null>;
  /**
   * Optional: starts what storing job `id` will take (on Cloudflare, its Durable Object), writing
   * nothing, so that a later put() finds it started. A sync create calls it after its answer for
   * the id the next one will use (src/api/fine-tunes.ts, warmNextId).
   */
  warm?(id: string): Promise<void>;
  /**
   * Up to `limit` entries of a job's per-epoch history from position `offset` (0-based, oldest
   * first; the current attempt's while it runs), and how many are stored; null: no such job.
   */
  history(id: string, offset: number, limit: number): Promise<HistoryPage | null>;
  /**
   * The owner's jobs, newest first; `cursor` is a previous page's nextCursor. With `status`, only
   * jobs in one of those states; such a page may hold fewer than `limit` jobs (a page looks at
   * most LIST_SCAN jobs) while nextCursor is not null.
   */
  list(owner: string, options: ListOptions): Promise<JobPage>;
  putWeights(id: string, bytes: Uint8Array): Promise<void>;
  /** Removes a sync job's weights whose record could not be stored (no orphan files). */
  deleteWeights(id: string): Promise<void>;
  /** The weights file, or null when the job has none. */
  getWeights(id: string): Promise<ReadableStream<Uint8Array> | Uint8Array | null>;
  /**
   * Stores a sync job's run input (jobs/run-input.ts) at inputKeyOf(id), where an async job's
   * already is: POST /v1/fine-tunes/{id}/explain reads the model and data from it.
   */
  putInput(id: string, bytes: Uint8Array): Promise<void>;
  /** A job's run input (sync or async), or null when none was stored. */
  getInput(id: string): Promise<ReadableStream<Uint8Array> | Uint8Array | null>;

  // ---- checkpoints (engine/checkpoint.ts; docs/api.md "Checkpoints, pause and resume")

  /** Stores a checkpoint of job `id` (its epoch, step and metrics read from the file) and deletes all but the newest `keep`. */
  putCheckpoint(id: string, bytes: Uint8Array, keep: number): Promise<CheckpointInfo>;
  /** The job's stored checkpoints, oldest first. */
  listCheckpoints(id: string): Promise<CheckpointInfo[]>;
  /** Deletes every checkpoint of job `id` (a create that failed after its run stored some). */
  deleteCheckpoints(id: string): Promise<void>;
  /** One checkpoint file, or null when there is none of that epoch. */
  getCheckpoint(id: string, epoch: number): Promise<ReadableStream<Uint8Array> | Uint8Array | null>;
  /** The owner pauses a queued or running async job (state.ts requestPause); the job as it now stands. */
  pause(id: string): Promise<Job | null>;
  /** The owner resumes a paused job (state.ts resumePaused); the job as it now stands. */
  resume(id: string): Promise<Job | null>;

  // ---- asynchronous jobs

  /**
   * Stores the run input, creates the queued job and dispatches it. `listed: false` keeps it out
   * of the owner's listing (an explanation task, jobs/explain-task.ts). `claimAs`: then claims it
   * for that worker in the same step (the Worker's request that starts a short edge job itself,
   * AppDeps.directStart), and returns the claim (null without `claimAs`, or when it was taken).
   */
  submit(state: JobState, input: Uint8Array, options?: { listed?: boolean; claimAs?: string }): Promise<Claim | null>;
  /**
   * Stores each trial's run input (at inputKeyOf(trial id)), creates the search job and the
   * trials it starts now (`start`); the search starts the rest as trials end (src/jobs/search.ts).
   */
  submitSearch(state: JobState, start: string[], inputs: ReadonlyMap<string, Uint8Array>): Promise<void>;
  /**
   * An async job's events after `after` (0 = all), at most `limit` (default EVENTS_PAGE), and
   * whether the job has ended. When there are none yet and the job has not ended, waits up to
   * `waitMs` (default 0) for the job's next write, so that a stream hears of an epoch when it is
   * stored rather than at its next poll. null: no such async job.
   */
  events(id: string, after: number, limit?: number, waitMs?: number): Promise<{ events: JobEvent[]; final: boolean } | null>;
  /** Cancels a queued job, or asks its worker to stop. Returns the job as it now stands. */
  cancel(id: string): Promise<Job | null>;
  /** A GPU node asks for the next job waiting for one; null when none is waiting (or the node has stopped). */
  claimNext(worker: string): Promise<Claim | null>;
  /** The node is shutting down: claimNext makes no claim for it any more (for a while: ids are per process). */
  stopClaims(worker: string): Promise<void>;
  /** The worker side of a claimed job. */
  readonly channel: WorkerChannel;

  /**
   * Reserves the owner's Idempotency-Key for job `id`; returns null when it was free, else what
   * it was reserved for. Reservations last IDEMPOTENCY_TTL_MS, but one whose job was never
   * stored lasts only `pendingMs` (the request's own budget): past that, the request that made
   * it has died (a crashed or killed server), and the key is free again (issue 20, finding 4).
   */
  reserveIdempotencyKey(owner: string, key: string, id: string, fingerprint: string, pendingMs: number): Promise<IdempotencyRecord | null>;
  /** Frees a reservation whose request failed before creating job `id`. */
  releaseIdempotencyKey(owner: string, key: string, id: string): Promise<void>;

  // ---- quotas and retention

  /**
   * Admits job `id` under the owner's quotas, atomically (two racing creates cannot both take
   * the last slot): an async job counts as active until it ends, and every job counts `bytes`
   * (its input plus its weights) until it expires or is deleted. Refused: nothing is counted.
   */
  admit(owner: string, id: string, job: { active: boolean; bytes: number; /** active slots it holds (a search: its `parallel`); default 1 */ slots?: number }, limits: QuotaLimits): Promise<Admission>;
  /** Uncounts job `id`, whose create failed after `admit`. */
  cancelAdmission(owner: string, id: string): Promise<void>;
  /**
   * Counts paused job `id` as active again before it is resumed (a paused job does not count
   * toward maxActiveJobs); refused, counting nothing, when the owner's other active jobs leave
   * no room.
   */
  reactivate(owner: string, id: string, limits: QuotaLimits): Promise<Admission>;
  /** What the owner has: active jobs (queued or running; not paused) and stored bytes. */
  usage(owner: string): Promise<Usage>;
  /**
   * Opens SSE stream `streamId` under the owner's cap (MAX_STREAMS_PER_KEY, issue 20 finding 6),
   * counted in one place per owner so that every isolate sees the same count. Its slot lasts
   * `limits.leaseMs` unless renewed, so a stream that dies without closing frees it anyway.
   */
  openStream(owner: string, streamId: string, limits: StreamLimits): Promise<StreamAdmission>;
  /** Extends an open stream's slot by `leaseMs` from now (a slot that lapsed meanwhile is taken again, uncapped). */
  renewStream(owner: string, streamId: string, leaseMs: number): Promise<void>;
  /** Gives a stream's slot back (it ended). */
  closeStream(owner: string, streamId: string): Promise<void>;
  /**
   * Deletes an ended job now, as its expiry would: the record, its logs, its input, weights and
   * checkpoints, its listing entry and its bytes. false: no such job, or it has not ended.
   */
  delete(id: string): Promise<boolean>;
}

/** Per-key limits (Worker vars MAX_ACTIVE_JOBS_PER_KEY and MAX_STORED_BYTES_PER_KEY). */
export interface QuotaLimits {
  /** Queued plus running async jobs per key. */
  maxActiveJobs: number;
  /** Stored bytes (inputs and weights) per key; null: unlimited. */
  maxStoredBytes: number | null;
}

/** Queued plus running jobs per key when MAX_ACTIVE_JOBS_PER_KEY is not set. */
export const DEFAULT_MAX_ACTIVE_JOBS = 8;

/** How long an ended job is kept when JOB_TTL_DAYS is not set: 30 days. */
export const DEFAULT_JOB_TTL_MS = 30 * 24 * 60 * 60 * 1000;

/** The quotas when none are configured. */
export const DEFAULT_QUOTAS: QuotaLimits = { maxActiveJobs: DEFAULT_MAX_ACTIVE_JOBS, maxStoredBytes: null };

/** One key's usage. */
export interface Usage {
  activeJobs: number;
  storedBytes: number;
}

/** The answer of `admit`: admitted, or which quota refused it and the usage that did. */
export type Admission = { ok: true } | ({ ok: false; code: "too_many_active_jobs" | "storage_quota_exceeded" } & Usage);

/** The options of `list`. */
export interface ListOptions {
  limit: number;
  cursor?: string | undefined;
  /** Only jobs in one of these states (all when absent). */
  status?: readonly Job["status"][] | undefined;
}

/** Jobs a filtered listing page looks at, at most: a page costs bounded reads however rare the status. */
export const LIST_SCAN = 500;

/**
 * A job's expiry: `ttlMs` after it ended (jobs that have not ended never expire; a paused job
 * expires `ttlMs` after it was paused, state.ts pausedExpiresAt).
 *
 * @example
 * ```ts
 * expiresAt({ finished_at: "2026-12-01T00:00:00.000Z" }, 1000); // Date.parse(...) + 1000
 * ```
 */
export function expiresAt(job: Pick<Job, "finished_at">, ttlMs: number): number | null {
  return job.finished_at === null ? null : Date.parse(job.finished_at) + ttlMs;
}

/**
 * The bytes a job is charged for: its stored input plus its weights as float32 (4 bytes a
 * parameter; the safetensors header is not counted).
 *
 * @example
 * ```ts
 * chargedBytes(1000, 10); // 1040
 * ```
 */
export function chargedBytes(inputBytes: number, params: number): number {
  return inputBytes + 4 * params;
}

/**
 * Every R2 prefix a job stores under: its input, its weights (sync: weights/{id}.safetensors;
 * async: weights/{id}/{lease}.safetensors) and its checkpoints. Ids have a fixed length, so a
 * prefix matches no other job's keys.
 *
 * @example
 * ```ts
 * blobPrefixesOf("ft_1"); // ["inputs/ft_1", "weights/ft_1", "checkpoints/ft_1/"]
 * ```
 */
export function blobPrefixesOf(id: string): string[] {
  return [`inputs/${id}`, `weights/${id}`, `checkpoints/${id}/`];
}

/**
 * The refusal of a completion that names weights never stored (their upload was refused, or
 * never made): the job keeps running under its lease.
 *
 * @example
 * ```ts
 * if (weightsKey !== null && !(await exists(weightsKey))) throw weightsNotUploaded();
 * ```
 */
export function weightsNotUploaded(): UnprocessableError {
  return new UnprocessableError("weights_not_uploaded", [{ path: "weights_key", message: "names no stored weights: upload them (PUT .../weights) and complete with the key it answers" }]);
}

/** One page of a job's history: `entries` from the asked offset, of `total` stored so far. */
export interface HistoryPage {
  entries: EpochMetrics[];
  total: number;
}

/** Events per `events()` page: bounded reads whatever the job's length. */
export const EVENTS_PAGE = 1000;

/** What an Idempotency-Key was first used for. */
export interface IdempotencyRecord {
  id: string;
  /** SHA-256 (hex) of the request as trained: a key reused for another request is refused. */
  fingerprint: string;
  at: number;
  /**
   * Until when the request that reserved the key may still be running (ms since epoch): past
   * it, a key whose job was never stored is free again. Absent in records stored before it was
   * kept: those are held for IDEMPOTENCY_TTL_MS.
   */
  pendingUntil?: number;
}

/**
 * Where a job's run input is stored (async jobs since submission, sync jobs since issue 18).
 *
 * @example
 * ```ts
 * inputKeyOf("ft_1"); // "inputs/ft_1.safetensors"
 * ```
 */
export function inputKeyOf(id: string): string {
  return `inputs/${id}.safetensors`;
}

/** How long an Idempotency-Key is remembered: 24 hours. */
export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;

/**
 * Whether a stored reservation still holds its Idempotency-Key at `now`: for IDEMPOTENCY_TTL_MS
 * once its job is stored, but only until `pendingUntil` while it is not. A request that died
 * (SIGKILL, a crashed isolate) never stores its job nor releases the key; without this its
 * retries would answer 409 "still running" for a day (issue 20, finding 4).
 *
 * @example
 * ```ts
 * if (await reservationHolds(existing, Date.now(), async (id) => (await store.get(id)) !== null)) return existing;
 * ```
 */
export async function reservationHolds(existing: IdempotencyRecord | undefined, now: number, jobStored: (id: string) => Promise<boolean>): Promise<boolean> {
  if (existing === undefined || now - existing.at >= IDEMPOTENCY_TTL_MS) return false;
  if (existing.pendingUntil === undefined || now < existing.pendingUntil) return true;
  return jobStored(existing.id);
}

/**
 * A listing key that sorts newest first: the creation time inverted, then the id's hex digits
 * inverted (ids sort in creation order, see newId), so jobs made in the same millisecond list
 * newest first too.
 *
 * @example
 * ```ts
 * listingKey("2026-11-29T12:00:00.000Z", "ft_1") < listingKey("2026-11-29T11:00:00.000Z", "ft_2"); // true
 * ```
 */
export function listingKey(createdAt: string, id: string): string {
  const inverted = 9_999_999_999_999 - Date.parse(createdAt);
  const digits = id.slice(id.indexOf("_") + 1); // "ft_" stays out of the inversion
  const invertedId = digits.replace(/[0-9a-f]/g, (d) => (15 - parseInt(d, 16)).toString(16));
  return `${String(inverted).padStart(13, "0")}:${invertedId}`;
}

/**
 * Where a lease's weights upload is stored: unique per attempt, so a late worker never
 * overwrites the winner's file.
 *
 * @example
 * ```ts
 * weightsKeyOf("ft_1", "lease-2"); // "weights/ft_1/lease-2.safetensors"
 * ```
 */
export function weightsKeyOf(id: string, leaseId: string): string {
  return `weights/${id}/${leaseId}.safetensors`;
}

/**
 * A stored object's bytes: what getWeights / getInput return (R2 gives a stream, the in-memory
 * store the bytes themselves).
 *
 * @example
 * ```ts
 * const bytes = await storedBytes((await store.getWeights(id))!);
 * ```
 */
export async function storedBytes(stored: Uint8Array | ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return stored instanceof Uint8Array ? stored : new Uint8Array(await new Response(stored).arrayBuffer());
}
