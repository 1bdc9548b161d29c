/**
 * The lifecycle of an asynchronous job as a pure state machine:
 *
 *   queued --claim--> running --complete--> succeeded | diverged | cancelled | failed
 *     ^                 |  \--lease lapses (node died)--> queued (attempt + 1) or failed
 *     |                 \--cancel requested--> cancelled (the worker stops within an epoch)
 *     \--cancel--> cancelled
 *   running --pause requested--> (the worker checkpoints at its epoch's end) --> paused
 *   queued --pause--> paused --resume--> queued (the next claim continues from the last checkpoint)
 *
 * Every transition is a function from (state, input, now) to a new state plus what the caller
 * must do, so the Durable Object (worker/job-object.ts) and the in-process store run the same
 * rules, and the rules are tested without a runtime. Completing twice, claiming a job that is
 * not queued, or a node with a stale lease are all answered, never applied twice.
 *
 * The state stays bounded however long the run: the event log and the per-epoch history are
 * not in it. A transition puts what it appends in `unsaved` (new events, new history entries),
 * and the store writes those out append-only (`drain`), so that one epoch costs O(1) bytes of
 * storage instead of rewriting everything so far (issue 20, finding 1). The job keeps the last
 * HISTORY_TAIL epochs in `metrics.history` for GET; GET /v1/fine-tunes/{id}/metrics pages the rest.
 */
import type { FieldIssue } from "../errors.js";
import type { Job } from "../schema/job.js";
import type { EpochMetrics, FineTuneResult } from "../schema/result.js";
import { boundedMetrics, finalEvent, isFinal, type JobEvent } from "./job.js";
import type { SearchRun } from "./search.js";

/** Lease timing and retry policy. */
export interface LeasePolicy {
  /** How long a claim holds the job without a heartbeat. */
  leaseMs: number;
  /** Attempts (claims) before a job whose workers keep dying fails. */
  maxAttempts: number;
}

export const DEFAULT_LEASE_POLICY: LeasePolicy = { leaseMs: 30_000, maxAttempts: 3 };

/** Everything stored for one job. */
export interface JobState {
  job: Job;
  owner: string;
  placement: "edge" | "gpu-node";
  /** Storage key of the run input (request, initial weights, data). */
  inputKey: string;
  /** Events issued so far: ids are 1-based and dense, so the next one is eventCount + 1. */
  eventCount: number;
  /** What transitions appended since the store last drained the state (see `drain`). */
  unsaved: JobLog;
  /** Claims so far (1 while the first worker runs). */
  attempt: number;
  lease: { id: string; worker: string; expiresAt: number } | null;
  cancelRequested: boolean;
  /** Storage key of the final weights, once completed with weights. */
  weightsKey: string | null;
  /** The owner asked to pause: the worker checkpoints at its epoch's end and completes as paused. */
  pauseRequested?: boolean;
  /**
   * When the job was last paused (ms since epoch), while it is paused: a paused job is deleted
   * JOB_TTL_DAYS after it (pausedExpiresAt), as an ended job is after it ended.
   */
  pausedAt?: number;
  /** The attempt count when the job was last resumed: maxAttempts counts the attempts since. */
  attemptsBeforeResume?: number;
  /**
   * The run's training.epochs: no worker may report an epoch past it. Absent in states stored
   * before it was kept (then nothing bounds them but the sequence).
   */
  epochs?: number;
  /** A search job: what it needs to start and rank its trials (src/jobs/search.ts). */
  search?: SearchRun;
  /**
   * Created without a checkpoint to start from (not `from_checkpoint`): until a worker has run
   * it, no checkpoint of it exists, so its first claim need not look for one (firstRun).
   * Absent in states stored before it was kept, and on jobs created from a checkpoint.
   */
  startsFresh?: boolean;
}

/**
 * Whether the lease holder's run is the job's first, with nothing to continue from: claimed
 * once, never paused and resumed, and created without a checkpoint (startsFresh). Its worker
 * then skips looking for a checkpoint (one listing of R2 saved per job, issue 16 item 3); any
 * other claim looks, as a retry or a resumed job must.
 *
 * @example
 * ```ts
 * firstRun({ ...state, attempt: 1, startsFresh: true }); // true
 * ```
 */
export function firstRun(state: Pick<JobState, "attempt" | "startsFresh" | "attemptsBeforeResume">): boolean {
  return state.attempt === 1 && state.startsFresh === true && state.attemptsBeforeResume === undefined;
}

/**
 * Appends to a job's logs: events (the SSE stream) and history entries of the current attempt.
 * `resetHistory`: a new attempt began, so the stored history is dropped before `history` is
 * appended.
 */
export interface JobLog {
  events: JobEvent[];
  history: EpochMetrics[];
  resetHistory: boolean;
}

const emptyLog = (): JobLog => ({ events: [], history: [], resetHistory: false });

/**
 * Splits what a transition appended from the state to keep: the store stores `state` (bounded)
 * and appends `log` to the job's event and history logs.
 *
 * @example
 * ```ts
 * const { state, log } = drain(progress(s, leaseId, epochs, Date.now(), policy).state);
 * await appendToLogs(log);
 * await save(state);
 * ```
 */
export function drain(state: JobState): { state: JobState; log: JobLog } {
  return { state: { ...state, unsaved: emptyLog() }, log: state.unsaved };
}

/** A state as stored before the logs were kept apart: the whole event log and history inside. */
export type LegacyJobState = Omit<JobState, "eventCount" | "unsaved"> & { events: JobEvent[] };

/**
 * A stored state in today's shape: one stored before the logs were kept apart comes back with
 * its events and history as unsaved appends (the store saves it once, and it is bounded after).
 *
 * @example
 * ```ts
 * const state = fromStored(await storage.get("state"));
 * ```
 */
export function fromStored(stored: JobState | LegacyJobState): JobState {
  if ("unsaved" in stored) return stored;
  const { events, ...rest } = stored;
  const metrics = rest.job.metrics;
  return {
    ...rest,
    job: { ...rest.job, metrics: metrics ? boundedMetrics(metrics) : null },
    eventCount: events.length,
    unsaved: { events, history: metrics?.history ?? [], resetHistory: true },
  };
}

/** What a transition asks the caller to do besides storing the new state. */
export interface Effects {
  /** Put the job (back) on the dispatch queue. */
  enqueue?: boolean;
  /** When to run the next timer check (ms since epoch), or null for none. */
  alarmAt?: number | null;
}

type Outcome<T = object> = { state: JobState; effects: Effects } & T;

/** Appends one event to the job's stream (ids dense from 1). */
export function emit(state: JobState, event: JobEvent["event"], data: unknown): JobState {
  const id = state.eventCount + 1;
  return { ...state, eventCount: id, unsaved: { ...state.unsaved, events: [...state.unsaved.events, { id, event, data }] } };
}

/** Appends history entries (already filtered to the new ones) and one `epoch` event each. */
function record(state: JobState, entries: readonly EpochMetrics[]): JobState {
  if (entries.length === 0) return state;
  const events = entries.map((e, i): JobEvent => ({ id: state.eventCount + 1 + i, event: "epoch", data: { ...e, attempt: state.attempt } }));
  const unsaved = { ...state.unsaved, events: [...state.unsaved.events, ...events], history: [...state.unsaved.history, ...entries] };
  return { ...state, eventCount: state.eventCount + entries.length, unsaved };
}

/** The entries of `epochs` after the last recorded epoch (a retried report repeats some). */
function newEntries(state: JobState, epochs: readonly EpochMetrics[]): EpochMetrics[] {
  let last = state.job.metrics?.history.at(-1)?.epoch ?? 0;
  const fresh: EpochMetrics[] = [];
  for (const e of epochs) {
    if (e.epoch <= last) continue;
    fresh.push(e);
    last = e.epoch;
  }
  return fresh;
}

/** Moves the job to `status` (its `status` event, and at a final state the final event), with `extra` fields. */
export function setStatus(state: JobState, status: Job["status"], at: string, extra: Partial<Job> = {}): JobState {
  const job: Job = { ...state.job, ...extra, status };
  if (status === "running" && job.started_at === null) job.started_at = at;
  if (isFinal(status)) job.finished_at = at;
  const withEvent = emit({ ...state, job }, "status", { status, attempt: state.attempt });
  return isFinal(status) ? emit(withEvent, finalEvent(job).event, job) : withEvent;
}

/**
 * A new queued job.
 *
 * @example
 * ```ts
 * const { state, effects } = createQueued(job, owner, "gpu-node", `inputs/${job.id}`, Date.now(), policy, 20);
 * // effects.enqueue === true
 * ```
 */
export function createQueued(
  job: Job,
  owner: string,
  placement: JobState["placement"],
  inputKey: string,
  now: number,
  policy: LeasePolicy,
  epochs?: number,
): Outcome {
  const state: JobState = {
    job: { ...job, status: "queued" },
    owner,
    placement,
    inputKey,
    eventCount: 0,
    unsaved: emptyLog(),
    attempt: 0,
    lease: null,
    cancelRequested: false,
    weightsKey: null,
    ...(epochs === undefined ? {} : { epochs }),
  };
  return { state: emit(state, "status", { status: "queued", attempt: 0 }), effects: { enqueue: true, alarmAt: now + policy.leaseMs } };
}

/**
 * A worker (GPU node or the Worker's queue consumer) claims a queued job for one lease.
 *
 * @example
 * ```ts
 * const r = claim(state, "node-1", Date.now(), policy, crypto.randomUUID());
 * if (r.lease) startTraining(r.lease.id);
 * ```
 */
export function claim(state: JobState, worker: string, now: number, policy: LeasePolicy, leaseId: string): Outcome<{ lease: JobState["lease"] }> {
  if (state.job.status !== "queued") return { state, effects: {}, lease: null };
  const lease = { id: leaseId, worker, expiresAt: now + policy.leaseMs };
  let next: JobState = { ...state, attempt: state.attempt + 1, lease };
  // a new attempt starts its history afresh: exactly one history entry per epoch; a node has come
  const { hint: _waiting, ...job } = next.job;
  next = { ...next, job: { ...job, metrics: null, engine: null }, unsaved: { ...next.unsaved, history: [], resetHistory: true } };
  next = setStatus(next, "running", new Date(now).toISOString());
  return { state: next, effects: { alarmAt: lease.expiresAt }, lease };
}

/** Whether `leaseId` is the job's current lease. */
export function holdsLease(state: JobState, leaseId: string): boolean {
  return state.job.status === "running" && state.lease !== null && state.lease.id === leaseId;
}

/**
 * The lease holder renews its lease; the answer says whether to stop (cancel requested).
 *
 * @example
 * ```ts
 * const r = heartbeat(state, leaseId, Date.now(), policy);
 * if (!r.ok) abandon(); else if (r.cancel) abort();
 * ```
 */
export function heartbeat(state: JobState, leaseId: string, now: number, policy: LeasePolicy): Outcome<{ ok: boolean; cancel: boolean; pause?: boolean }> {
  if (!holdsLease(state, leaseId)) return { state, effects: {}, ok: false, cancel: false };
  const lease = { ...state.lease!, expiresAt: now + policy.leaseMs };
  return { state: { ...state, lease }, effects: { alarmAt: lease.expiresAt }, ok: true, cancel: state.cancelRequested, ...(state.pauseRequested ? { pause: true } : {}) };
}

/**
 * Why a worker's epochs cannot be taken, or null: each history entry is one epoch, so the first
 * epoch not yet recorded must follow the last recorded one, and none may pass the run's epochs.
 * `epochs` is in sequence already (the node schema checks it); `path` names the list.
 */
function sequenceIssue(state: JobState, epochs: readonly EpochMetrics[], path: string): FieldIssue | null {
  const last = state.job.metrics?.history.at(-1)?.epoch ?? 0;
  const first = epochs.findIndex((e) => e.epoch > last);
  if (first < 0) return null;
  if (epochs[first]!.epoch !== last + 1) {
    return { path: `${path}[${first}].epoch`, message: `is ${epochs[first]!.epoch}, but the last epoch reported is ${last}: epochs must be in sequence` };
  }
  const past = state.epochs === undefined ? -1 : epochs.findIndex((e) => e.epoch > state.epochs!);
  if (past >= 0) return { path: `${path}[${past}].epoch`, message: `is ${epochs[past]!.epoch}, past the run's ${state.epochs} epochs` };
  return null;
}

/**
 * The lease holder reports progress: epoch metrics (each epoch once per attempt) and the
 * engine it runs on. Also renews the lease. Epochs out of sequence or past the run's are not
 * taken (`invalid` says why; the lease is renewed all the same).
 *
 * @example
 * ```ts
 * progress(state, leaseId, [{ epoch: 1, train_loss: 0.3, lr: 0.001 }], Date.now(), policy);
 * ```
 */
export function progress(
  state: JobState,
  leaseId: string,
  epochs: EpochMetrics[],
  now: number,
  policy: LeasePolicy,
  engine?: Job["engine"],
): Outcome<{ ok: boolean; cancel: boolean; pause?: boolean; invalid?: FieldIssue }> {
  const beat = heartbeat(state, leaseId, now, policy);
  if (!beat.ok) return beat;
  const invalid = sequenceIssue(beat.state, epochs, "epochs");
  if (invalid) return { ...beat, invalid };
  const fresh = newEntries(beat.state, epochs);
  let next = record(beat.state, fresh);
  const before = next.job.metrics ?? { history: [], epochs: 0, best_epoch: null, steps: 0, samples_per_second: 0, duration_ms: 0 };
  const metrics = boundedMetrics({ ...before, history: [...before.history, ...fresh] }, (before.epochs ?? before.history.length) + fresh.length);
  next = { ...next, job: { ...next.job, metrics, ...(engine ? { engine } : {}) } };
  return { ...beat, state: next };
}

/**
 * The lease holder finishes: the run's result (weights already stored at `weightsKey`), or a
 * failure. A second completion, or one from a stale lease, changes nothing. A job whose owner
 * asked to cancel ends `cancelled` whatever the worker says it did (issue 20, finding 3); a
 * history out of sequence or past the run's epochs is not taken (`invalid`).
 *
 * @example
 * ```ts
 * const r = complete(state, leaseId, result, `weights/${id}/${leaseId}.safetensors`, Date.now());
 * r.accepted; // false when the job had already ended or the lease was lost
 * ```
 */
export function complete(
  state: JobState,
  leaseId: string,
  result: Omit<FineTuneResult, "weights" | "id"> | { failure: string },
  weightsKey: string | null,
  now: number,
): Outcome<{ accepted: boolean; invalid?: FieldIssue }> {
  if (!holdsLease(state, leaseId)) return { state, effects: {}, accepted: false };
  const at = new Date(now).toISOString();
  let next: JobState = { ...state, lease: null };
  if ("failure" in result) {
    next = setStatus(next, "failed", at, { error: { code: "failed", message: result.failure } });
    return { state: next, effects: { alarmAt: null }, accepted: true };
  }
  const invalid = sequenceIssue(state, result.metrics.history, "outcome.metrics.history");
  if (invalid) return { state, effects: {}, accepted: false, invalid };
  const cancelled = state.cancelRequested && result.status !== "cancelled" && result.status !== "failed";
  const status = cancelled ? "cancelled" : result.status;
  if (status === "paused") {
    // checkpointed and stopped on request: no weights of its own, nothing final; resume queues it again
    next = record({ ...next, pauseRequested: false, pausedAt: now }, newEntries(next, result.metrics.history));
    next = setStatus(next, "paused", at, { metrics: boundedMetrics(result.metrics), engine: result.engine, error: null });
    return { state: next, effects: { alarmAt: null }, accepted: true };
  }
  const error = cancelled ? { code: "cancelled", message: `cancelled by the caller; the worker finished the run (${result.status}) before it stopped` } : (result.error ?? null);
  // epochs the worker ran but had not reported yet (reports are coalesced): logged now
  next = record({ ...next, weightsKey }, newEntries(next, result.metrics.history));
  next = setStatus(next, status, at, {
    metrics: boundedMetrics(result.metrics),
    engine: result.engine,
    plan: { ...state.job.plan, placement: result.plan.placement },
    error,
    ...(result.adapter_config ? { adapter_config: result.adapter_config } : {}),
    ...(result.warnings ? { warnings: result.warnings } : {}),
    ...(result.explanations ? { explanations: result.explanations } : {}),
    weights_url: weightsKey ? `/v1/fine-tunes/${state.job.id}/weights` : null,
  });
  return { state: next, effects: { alarmAt: null }, accepted: true };
}

/**
 * The lease holder hands the job back untrained (a node told to stop that got a claim anyway):
 * it is queued again as if that claim had not happened (the attempt is not counted), or ends
 * cancelled if that was asked. A stale lease changes nothing.
 *
 * @example
 * ```ts
 * const r = release(state, leaseId, Date.now(), policy);
 * r.accepted; // true: queued again (r.effects.enqueue)
 * ```
 */
export function release(state: JobState, leaseId: string, now: number, policy: LeasePolicy): Outcome<{ accepted: boolean }> {
  if (!holdsLease(state, leaseId)) return { state, effects: {}, accepted: false };
  const at = new Date(now).toISOString();
  const attempt = state.attempt - 1;
  const back: JobState = { ...state, lease: null, attempt, job: { ...state.job, ...(attempt === 0 ? { started_at: null } : {}) } };
  if (state.cancelRequested) return { state: setStatus(back, "cancelled", at), effects: { alarmAt: null }, accepted: true };
  return { state: setStatus(back, "queued", at), effects: { enqueue: true, alarmAt: now + policy.leaseMs }, accepted: true };
}

/**
 * The owner asks to cancel: a queued job ends at once; a running one is flagged, and its
 * worker stops at its next report (within an epoch).
 *
 * @example
 * ```ts
 * const r = requestCancel(state, Date.now());
 * r.state.job.status; // "cancelled" if it was queued, still "running" otherwise
 * ```
 */
export function requestCancel(state: JobState, now: number): Outcome<{ changed: boolean }> {
  if (isFinal(state.job.status)) return { state, effects: {}, changed: false };
  if (state.job.status === "queued" || state.job.status === "paused") {
    return { state: setStatus(state, "cancelled", new Date(now).toISOString()), effects: { alarmAt: null }, changed: true };
  }
  return { state: { ...state, cancelRequested: true }, effects: {}, changed: !state.cancelRequested };
}

/**
 * The timer: a running job whose lease lapsed goes back to the queue (or fails after
 * maxAttempts, or ends cancelled if that was asked). A queued edge job is re-sent every lease
 * period, since a Queue message may have been lost (a restarted dev server, a dead consumer). A
 * queued GPU-node job is dispatched once more (the dispatcher keeps each id once, so this only
 * repairs a push that never happened) and then has no timer: it waits in the dispatcher's
 * durable list, costing nothing until a node asks for work (issue 20, finding 5).
 *
 * @example
 * ```ts
 * const r = onAlarm(state, Date.now(), policy);
 * if (r.effects.enqueue) await queue.send({ id });
 * ```
 */
export function onAlarm(state: JobState, now: number, policy: LeasePolicy): Outcome {
  const at = new Date(now).toISOString();
  if (state.job.status === "queued") return { state, effects: { enqueue: true, alarmAt: state.placement === "gpu-node" ? null : now + policy.leaseMs } };
  if (state.job.status !== "running" || state.lease === null) return { state, effects: { alarmAt: null } };
  if (state.lease.expiresAt > now) return { state, effects: { alarmAt: state.lease.expiresAt } };
  const lost = { ...state, lease: null };
  if (state.cancelRequested) return { state: setStatus(lost, "cancelled", at), effects: { alarmAt: null } };
  if (state.attempt - (state.attemptsBeforeResume ?? 0) >= policy.maxAttempts) {
    const error = { code: "worker_lost", message: `the worker running this job stopped reporting ${state.attempt} times; giving up` };
    return { state: setStatus(lost, "failed", at, { error }), effects: { alarmAt: null } };
  }
  const requeued = setStatus(lost, "queued", at);
  return { state: requeued, effects: { enqueue: true, alarmAt: now + policy.leaseMs } };
}

/** The job's hint while it waits with no GPU node polling for work. */
export const WAITING_FOR_NODE_HINT =
  "No GPU node is polling for jobs, so this job waits in the queue. Start one with `npm run gpu-node` (EDGETUNE_URL, EDGETUNE_NODE_TOKEN; see docs/gpu-node.md).";

/**
 * The dispatcher saw no GPU node poll within a lease period while this job waits for one: the
 * job gets a hint and its stream a `status` event `{status: "queued", waiting_for_node: true}`,
 * once; the hint goes when a node claims it.
 *
 * @example
 * ```ts
 * const r = waitingForNode(state);
 * r.state.job.hint; // WAITING_FOR_NODE_HINT, when it was queued for a GPU node
 * ```
 */
export function waitingForNode(state: JobState): Outcome<{ changed: boolean }> {
  if (state.job.status !== "queued" || state.placement !== "gpu-node" || state.job.hint !== undefined) return { state, effects: {}, changed: false };
  const next = { ...state, job: { ...state.job, hint: WAITING_FOR_NODE_HINT } };
  return {
    state: emit(next, "status", { status: "queued", attempt: state.attempt, waiting_for_node: true, hint: WAITING_FOR_NODE_HINT }),
    effects: {},
    changed: true,
  };
}

/**
 * A message that keeps failing (dead-lettered, or input that cannot be read) ends the job.
 *
 * @example
 * ```ts
 * fail(state, "the input could not be decoded", Date.now());
 * ```
 */
export function fail(state: JobState, reason: string, now: number): Outcome<{ changed: boolean }> {
  if (isFinal(state.job.status)) return { state, effects: {}, changed: false };
  const next = setStatus({ ...state, lease: null }, "failed", new Date(now).toISOString(), { error: { code: "failed", message: reason } });
  return { state: next, effects: { alarmAt: null }, changed: true };
}

/**
 * The owner asks to pause: a queued job is paused at once; a running one is flagged, and its
 * worker checkpoints at its epoch's end and completes as paused (docs/api.md, "Checkpoints,
 * pause and resume"). Anything else changes nothing.
 *
 * @example
 * ```ts
 * const r = requestPause(state, Date.now());
 * r.state.job.status; // "paused" if it was queued, still "running" (pauseRequested) otherwise
 * ```
 */
export function requestPause(state: JobState, now: number): Outcome<{ changed: boolean }> {
  if (state.job.status === "queued") return { state: setStatus({ ...state, pausedAt: now }, "paused", new Date(now).toISOString()), effects: { alarmAt: null }, changed: true };
  if (state.job.status !== "running" || state.cancelRequested || state.pauseRequested) return { state, effects: {}, changed: false };
  return { state: { ...state, pauseRequested: true }, effects: {}, changed: true };
}

/**
 * When a paused job is deleted: `ttlMs` (JOB_TTL_DAYS) after it was paused; null for a job that
 * is not paused. A paused job holds a checkpoint and its input in storage, and nothing ends it on
 * its own, so without this it would be kept forever (docs/api.md, "Quotas and retention").
 * A state paused before pausedAt was kept counts from `now`.
 *
 * @example
 * ```ts
 * pausedExpiresAt({ ...state, job: { ...state.job, status: "paused" }, pausedAt: 1000 }, 500, 2000); // 1500
 * ```
 */
export function pausedExpiresAt(state: Pick<JobState, "job" | "pausedAt">, ttlMs: number, now: number): number | null {
  if (state.job.status !== "paused") return null;
  return (state.pausedAt ?? now) + ttlMs;
}

/**
 * The owner resumes a paused job: it is queued again, and the worker that claims it continues
 * from the job's last checkpoint. Its retries count afresh from here.
 *
 * @example
 * ```ts
 * const r = resumePaused(state, Date.now(), policy);
 * r.effects.enqueue; // true when it was paused
 * ```
 */
export function resumePaused(state: JobState, now: number, policy: LeasePolicy): Outcome<{ changed: boolean }> {
  if (state.job.status !== "paused") return { state, effects: {}, changed: false };
  const { pausedAt: _pausedAt, ...unpaused } = state;
  const next = setStatus({ ...unpaused, pauseRequested: false, attemptsBeforeResume: state.attempt }, "queued", new Date(now).toISOString());
  return { state: next, effects: { enqueue: true, alarmAt: now + policy.leaseMs }, changed: true };
}

/**
 * The lease holder continues from the checkpoint of `epoch`: the checkpoint's history (epochs 1
 * to `epoch`) becomes the attempt's first entries, so the history stays one entry per epoch, and
 * the stream gets a `status` event `{status: "running", resumed_from_epoch}`.
 *
 * @example
 * ```ts
 * resumedFrom(state, leaseId, 4, checkpointHistory, Date.now(), policy);
 * ```
 */
export function resumedFrom(
  state: JobState,
  leaseId: string,
  epoch: number,
  history: EpochMetrics[],
  now: number,
  policy: LeasePolicy,
): Outcome<{ ok: boolean; cancel: boolean; pause?: boolean; invalid?: FieldIssue }> {
  const r = progress(state, leaseId, history, now, policy);
  if (!r.ok || r.invalid) return r;
  return { ...r, state: emit(r.state, "status", { status: "running", attempt: state.attempt, resumed_from_epoch: epoch }) };
}
