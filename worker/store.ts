/**
 * The JobStore on Cloudflare: a Durable Object per job (its record, or the state machine of an
 * asynchronous job with its lease and alarm), a Durable Object per API key (its listing), one
 * dispatcher Durable Object (jobs waiting for a GPU node), R2 for inputs and weights (a sync
 * job's small ones are held by its Durable Object: INLINE_BLOB_BYTES), and the
 * Queue for dispatch.
 */
import { DurableObject } from "cloudflare:workers";
import type { FieldIssue } from "../src/errors.js";
import type { Job } from "../src/schema/job.js";
import type { EpochMetrics } from "../src/schema/result.js";
import { boundedMetrics, isFinal, type JobEvent } from "../src/jobs/job.js";
import { JOB_HISTORY_TAIL } from "../src/schema/job.js";
import { takeToken, type Bucket, type RateDecision, type RateLimiter, type RateLimitPolicy } from "../src/api/rate-limit.js";
import * as machine from "../src/jobs/state.js";
import * as search from "../src/jobs/search.js";
import { checkpointSummary } from "../src/engine/checkpoint.js";
import { admitStream, type StreamAdmission, type StreamLimits } from "../src/jobs/streams.js";
import {
  blobPrefixesOf,
  checkpointKeyOf,
  type CheckpointInfo,
  DEFAULT_JOB_TTL_MS,
  expiresAt,
  LIST_SCAN,
  type Admission,
  type ListOptions,
  type QuotaLimits,
  type Usage,
  weightsKeyOf,
  weightsNotUploaded,
  inputKeyOf,
  EVENTS_PAGE,
  reservationHolds,
  type HistoryPage,
  listingKey,
  type IdempotencyRecord,
  type Claim,
  type JobPage,
  type JobRecord,
  type JobStore,
  type LeaseStatus,
  type RunOutcome,
  type WorkerChannel,
} from "../src/jobs/store.js";

/**
 * The queue message: only the id; everything else is in the job's Durable Object and R2.
 * `webhook`: deliver the ended job's webhook rather than run it.
 */
export interface DispatchMessage {
  id: string;
  webhook?: true;
}

/** Lease policy from the Worker's vars (LEASE_SECONDS, MAX_ATTEMPTS). */
export function leasePolicy(env: Env): machine.LeasePolicy {
  const seconds = Number(env.LEASE_SECONDS);
  const attempts = Number(env.MAX_ATTEMPTS);
  return {
    leaseMs: Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : machine.DEFAULT_LEASE_POLICY.leaseMs,
    maxAttempts: Number.isInteger(attempts) && attempts > 0 ? attempts : machine.DEFAULT_LEASE_POLICY.maxAttempts,
  };
}

/**
 * How long an ended job is kept: JOB_TTL_SECONDS when set (for tests: expiry within a test run),
 * else JOB_TTL_DAYS (default 30).
 */
export function jobTtlMs(env: Env): number {
  const seconds = Number((env as { JOB_TTL_SECONDS?: string }).JOB_TTL_SECONDS);
  if (Number.isFinite(seconds) && seconds > 0) return seconds * 1000;
  const days = Number(env.JOB_TTL_DAYS);
  return Number.isFinite(days) && days > 0 ? days * 24 * 60 * 60 * 1000 : DEFAULT_JOB_TTL_MS;
}

/** Whether a trial's change is one its parent records: its status, or a new epoch. */
function trialMoved(before: Job, after: Job): boolean {
  return before.status !== after.status || before.metrics?.history.at(-1)?.epoch !== after.metrics?.history.at(-1)?.epoch;
}

/**
 * A sync job's weights or run input up to this size is stored in its Durable Object, in the same
 * write as its record, rather than in R2: one storage call before the create answers instead of
 * three (docs/api.md, "When a sync job is stored"). Far below the SQLite backend's 2 MB value limit.
 *
 * @example
 * ```ts
 * const where = weights.byteLength <= INLINE_BLOB_BYTES ? "the job's object" : "R2";
 * ```
 */
export const INLINE_BLOB_BYTES = 1 << 20;

/** Whether `bytes` spans its whole buffer (so that serialising it sends nothing more). */
function isWholeBuffer(bytes: Uint8Array): boolean {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
}
const INLINE_WEIGHTS = "blob:weights";
const INLINE_INPUT = "blob:input";

/**
 * A sync job's blobs that its Durable Object holds itself.
 *
 * @example
 * ```ts
 * await store.job(id).put(record, history, ttlMs, { weights, input } satisfies InlineBlobs);
 * ```
 */
export interface InlineBlobs {
  weights?: Uint8Array;
  input?: Uint8Array;
}

/** History entries per SQLite row: rows stay far below the 2 MB value limit (SQLITE_TOOBIG). */
const HISTORY_ROW = 500;
/** The largest JSON array of events bound to one insert (insertEvents). */
const EVENT_BATCH_BYTES = 256 * 1024;

/**
 * One job: a finished sync record, or an async job's state machine with its alarm. The record
 * or state (bounded: the job keeps its last epochs) is one storage value; the event log and the
 * per-epoch history are SQLite tables appended to, never rewritten, so an epoch costs O(1) bytes
 * of writes however long the run (issue 20, finding 1).
 */
export class FineTuneJob extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
  }

  /** Creates the tables on first use (an id that is only looked up stores nothing). */
  private tables(): void {
    this.sql.exec("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, event TEXT NOT NULL, data TEXT NOT NULL)");
    // `start`: the position of the row's first entry; a row holds `count` consecutive entries
    this.sql.exec("CREATE TABLE IF NOT EXISTS history (start INTEGER PRIMARY KEY, count INTEGER NOT NULL, entries TEXT NOT NULL)");
  }

  private async state(): Promise<machine.JobState | undefined> {
    const stored = await this.ctx.storage.get<machine.JobState | machine.LegacyJobState>("state");
    if (stored === undefined || "unsaved" in stored) return stored;
    // stored before the logs were kept apart: moved to the tables once
    const state = machine.fromStored(stored);
    await this.save(state);
    return machine.drain(state).state;
  }

  /** A sync record; one stored with its whole history inside is split once (bounded record, history rows). */
  private async record(): Promise<JobRecord | undefined> {
    const record = await this.ctx.storage.get<JobRecord>("record");
    if (record === undefined || record.job.metrics === null || record.job.metrics.epochs !== undefined) return record;
    const bounded: JobRecord = { ...record, job: { ...record.job, metrics: boundedMetrics(record.job.metrics) } };
    await this.put(bounded, record.job.metrics.history, await this.ttlMs());
    return bounded;
  }

  /** Stores a state: what its transitions appended goes to the tables, the rest to "state". */
  private async save(unsaved: machine.JobState): Promise<void> {
    const { state, log } = machine.drain(unsaved);
    this.tables();
    this.ctx.storage.transactionSync(() => {
      this.insertEvents(log.events);
      if (log.resetHistory) this.sql.exec("DELETE FROM history");
      this.appendHistory(log.history);
    });
    await this.ctx.storage.put("state", state);
    for (const wake of [...this.waiters]) wake();
  }

  /**
   * Inserts events a batch per statement (json_each over one JSON array) rather than a statement
   * each: a report of 10,000 short epochs is 10,000 events, and a statement each made it the
   * largest cost of a short async job (issue 16, item 3). Batches stay under EVENT_BATCH_BYTES,
   * far below the 2 MB value limit.
   */
  private insertEvents(events: readonly JobEvent[]): void {
    let batch: string[] = [];
    let bytes = 0;
    const flush = () => {
      if (batch.length === 0) return;
      this.sql.exec(
        "INSERT OR REPLACE INTO events (id, event, data) SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(?)",
        `[${batch.join(",")}]`,
      );
      batch = [];
      bytes = 0;
    };
    for (const e of events) {
      const row = JSON.stringify([e.id, e.event, JSON.stringify(e.data)]);
      if (bytes + row.length > EVENT_BATCH_BYTES) flush();
      batch.push(row);
      bytes += row.length + 1;
    }
    flush();
  }

  private historyTotal(): number {
    const last = this.sql.exec<{ end: number }>("SELECT start + count AS end FROM history ORDER BY start DESC LIMIT 1").toArray()[0];
    return last ? last.end : 0;
  }

  private appendHistory(entries: readonly EpochMetrics[]): void {
    let start = this.historyTotal();
    for (let i = 0; i < entries.length; i += HISTORY_ROW) {
      const row = entries.slice(i, i + HISTORY_ROW);
      this.sql.exec("INSERT INTO history (start, count, entries) VALUES (?, ?, ?)", start, row.length, JSON.stringify(row));
      start += row.length;
    }
  }

  /** Applies a transition, stores it, and carries out its effects (queue send, alarm). */
  private async transition<T extends { state: machine.JobState; effects: machine.Effects }>(
    fn: (s: machine.JobState, now: number, policy: machine.LeasePolicy) => T,
  ): Promise<Omit<T, "state" | "effects"> | null> {
    const current = await this.state();
    if (!current) return null;
    const r = fn(current, Date.now(), leasePolicy(this.env));
    if (r.state !== current) await this.save(r.state);
    await this.apply(r.state, r.effects, current);
    const { state: _s, effects: _e, ...rest } = r;
    if (r.state.job.parent !== undefined && trialMoved(current.job, r.state.job)) {
      await this.tellParent(r.state);
      // the parent may have stopped this trial (successive halving): its worker hears it in this answer
      const after = "cancel" in rest && rest.cancel === false ? await this.state() : undefined;
      if (after?.cancelRequested) Object.assign(rest, { cancel: true });
    }
    return rest;
  }

  /**
   * Carries out a transition's effects. A GPU-node job goes straight to the dispatcher (nodes
   * claim from it): it never waits behind the queue consumer, which may be training an edge job
   * (issue 20, finding 2); when no node has polled within a lease period, it says so
   * (waiting_for_node). Edge jobs go through the Queue to a consumer invocation of their own.
   */
  private async apply(state: machine.JobState, effects: machine.Effects, before?: machine.JobState): Promise<void> {
    // the job has just ended: its webhook goes out through the Queue (retried with backoff there)
    if (before && !isFinal(before.job.status) && isFinal(state.job.status) && state.job.webhook) {
      await this.env.JOB_QUEUE.send({ id: state.job.id, webhook: true } satisfies DispatchMessage);
    }
    // an ended job needs no lease timer: its alarm becomes its expiry; so does a paused job's
    if (effects.alarmAt === null && isFinal(state.job.status)) await this.ctx.storage.setAlarm(expiresAt(state.job, await this.ttlMs())!);
    else if (effects.alarmAt === null && state.job.status === "paused") await this.ctx.storage.setAlarm(machine.pausedExpiresAt(state, await this.ttlMs(), Date.now())!);
    else if (effects.alarmAt === null) await this.ctx.storage.deleteAlarm();
    else if (effects.alarmAt !== undefined) await this.ctx.storage.setAlarm(effects.alarmAt);
    // a paused job stops counting toward MAX_ACTIVE_JOBS_PER_KEY; resuming counts it again (JobIndex.reactivate)
    if (before && before.job.status !== "paused" && state.job.status === "paused") {
      await this.env.JOB_INDEX.get(this.env.JOB_INDEX.idFromName(`owner:${state.owner}`)).deactivate(state.job.id);
    }
    if (!effects.enqueue) return;
    if (state.placement !== "gpu-node") {
      await this.env.JOB_QUEUE.send({ id: state.job.id } satisfies DispatchMessage);
      return;
    }
    const dispatcher = this.env.DISPATCHER.get(this.env.DISPATCHER.idFromName(DISPATCHER_NAME));
    await dispatcher.push(state.job.id);
    // a queued job is told so when no node has polled within a lease: waiting_for_node, with a hint
    if (state.job.status === "queued" && state.job.hint === undefined && !(await dispatcher.nodePolledWithin(leasePolicy(this.env).leaseMs))) {
      // from storage: `state` may still carry appends that its transition has already saved
      const current = await this.state();
      const waiting = current ? machine.waitingForNode(current) : null;
      if (waiting?.changed) await this.save(waiting.state);
    }
  }

  /** Up to `limit` history entries from position `offset`, and how many are stored. */
  async history(offset: number, limit: number): Promise<HistoryPage | null> {
    if ((await this.state()) === undefined && (await this.record()) === undefined) return null;
    this.tables();
    const rows = this.sql
      .exec<{ start: number; entries: string }>(
        "SELECT start, entries FROM history WHERE start >= (SELECT COALESCE(MAX(start), 0) FROM history WHERE start <= ?) ORDER BY start LIMIT ?",
        offset,
        limit,
      )
      .toArray();
    const entries: EpochMetrics[] = [];
    for (const row of rows) {
      const all = JSON.parse(row.entries) as EpochMetrics[];
      for (let i = Math.max(0, offset - row.start); i < all.length && entries.length < limit; i++) entries.push(all[i]!);
    }
    return { entries, total: this.historyTotal() };
  }

  // ---- sync records
  /**
   * Stores a finished sync job: its record, its whole history and, when they are small enough
   * (INLINE_BLOB_BYTES), its weights and run input, all in this one call (one durable write
   * before the create answers; larger blobs are in R2 already).
   */
  async put(record: JobRecord, history: readonly EpochMetrics[], ttlMs: number, inline: InlineBlobs = {}): Promise<void> {
    this.tables();
    this.ctx.storage.transactionSync(() => {
      this.sql.exec("DELETE FROM history");
      this.appendHistory(history);
    });
    const first = (await this.ctx.storage.get("record")) === undefined;
    const blobs: Record<string, Uint8Array> = {};
    if (inline.weights) blobs[INLINE_WEIGHTS] = inline.weights;
    if (inline.input) blobs[INLINE_INPUT] = inline.input;
    await this.ctx.storage.put({ record, ttlMs, ...blobs });
    await this.ctx.storage.setAlarm(expiresAt(record.job, ttlMs) ?? Date.now() + ttlMs);
    if (first && record.job.webhook) await this.env.JOB_QUEUE.send({ id: record.job.id, webhook: true } satisfies DispatchMessage);
  }

  /** Does nothing: a call that starts the object (CloudflareJobStore.warm) and stores nothing, so an id never used leaves nothing behind. */
  async warm(): Promise<void> {}

  async get(): Promise<JobRecord | null> {
    const state = await this.state();
    if (state) return { job: state.job, owner: state.owner };
    return (await this.record()) ?? null;
  }

  /**
   * Where the job's weights are: held here (a sync job's, up to INLINE_BLOB_BYTES), or their R2
   * key; null when it has none.
   */
  async weights(): Promise<{ inline: Uint8Array } | { key: string } | null> {
    const state = await this.state();
    if (state) return state.weightsKey === null ? null : { key: state.weightsKey };
    const held = await this.ctx.storage.get<Uint8Array>(INLINE_WEIGHTS);
    if (held) return { inline: held };
    const key = await this.weightsKey();
    return key === null ? null : { key };
  }

  /** A sync job's run input when it is held here (up to INLINE_BLOB_BYTES); null: it is in R2 at inputKeyOf(id), if anywhere. */
  async inlineInput(): Promise<Uint8Array | null> {
    return (await this.ctx.storage.get<Uint8Array>(INLINE_INPUT)) ?? null;
  }

  /** The R2 key of the job's weights, if it has any (an async job's; a sync job's larger than INLINE_BLOB_BYTES). */
  async weightsKey(): Promise<string | null> {
    const state = await this.state();
    if (state) return state.weightsKey;
    const record = await this.ctx.storage.get<JobRecord>("record");
    return record ? `weights/${record.job.id}.safetensors` : null;
  }

  // ---- async jobs
  /**
   * Stores a new job and dispatches it; with `claimAs`, then claims it for that worker (one call
   * instead of two). `input`: its run input when small enough to be held here (INLINE_BLOB_BYTES),
   * stored in the same write as the job; a larger one is in R2 already.
   */
  async create(state: machine.JobState, effects: machine.Effects, ttlMs: number, claimAs?: string, input?: Uint8Array): Promise<Claim | null> {
    if (await this.state()) return null; // a retried submit
    await this.ctx.storage.put(input ? { ttlMs, [INLINE_INPUT]: input } : { ttlMs });
    await this.save(state);
    await this.apply(state, effects);
    return claimAs === undefined ? null : this.claim(claimAs);
  }

  async dispatchInfo(): Promise<{ status: Job["status"]; placement: machine.JobState["placement"] } | null> {
    const state = await this.state();
    return state ? { status: state.job.status, placement: state.placement } : null;
  }

  /** Events after `after`; with none yet, waits up to `waitMs` for the next save (SSE wake-ups). */
  async events(after: number, limit: number, waitMs = 0): Promise<{ events: JobEvent[]; final: boolean } | null> {
    const read = async () => {
      const state = await this.state();
      if (!state) return null;
      this.tables();
      const rows = this.sql.exec<{ id: number; event: JobEvent["event"]; data: string }>("SELECT id, event, data FROM events WHERE id > ? ORDER BY id LIMIT ?", after, limit);
      const events = rows.toArray().map((r) => ({ id: r.id, event: r.event, data: JSON.parse(r.data) as unknown }));
      return { events, final: isFinal(state.job.status) };
    };
    const page = await read();
    if (!page || page.events.length > 0 || page.final || waitMs <= 0) return page;
    // awaiting a timer lets the object serve other calls meanwhile (progress reports among them)
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      this.waiters.add(done);
    });
    return read();
  }

  /** Calls of `events` waiting for the next save. */
  private readonly waiters = new Set<() => void>();

  async cancel(): Promise<Job | null> {
    if ((await this.state())?.search) {
      const r = await this.transition((s, now) => ({ ...search.cancelSearch(s, now), effects: { alarmAt: null } }));
      // the search has ended (saved): each trial it cancels reports back, and is only recorded
      for (const id of r?.cancel ?? []) await this.trial(id).cancel();
    } else {
      await this.transition((s, now) => machine.requestCancel(s, now));
    }
    return (await this.state())?.job ?? null;
  }

  // ---- search jobs (src/jobs/search.ts): the parent creates its trials and hears from them

  private trial(id: string) {
    return this.env.JOBS.get(this.env.JOBS.idFromName(id));
  }

  /** Stores a new search job and creates its first trials (their inputs are in R2 already). */
  async createSearch(state: machine.JobState, start: string[], ttlMs: number): Promise<void> {
    if (await this.state()) return; // a retried submit
    await this.ctx.storage.put("ttlMs", ttlMs);
    await this.save(state);
    // the alarm checks the trials every lease period, in case a trial's report was lost
    await this.ctx.storage.setAlarm(Date.now() + leasePolicy(this.env).leaseMs);
    await this.startTrials(start);
  }

  /** Creates trial jobs the parent has marked queued (a retried create changes nothing). */
  private async startTrials(ids: readonly string[]): Promise<void> {
    const parent = await this.state();
    if (!parent?.search) return;
    const ttlMs = await this.ttlMs();
    for (const id of ids) {
      const slot = parent.search.slots.find((s) => s.id === id);
      if (!slot) continue;
      const job = search.trialJob(parent, slot, new Date().toISOString());
      const { state, effects } = machine.createQueued(job, parent.owner, slot.placement, inputKeyOf(id), Date.now(), leasePolicy(this.env), slot.epochs);
      await this.trial(id).create(state, effects, ttlMs);
      await this.env.JOB_INDEX.get(this.env.JOB_INDEX.idFromName(`owner:${parent.owner}`)).add(listingKey(job.created_at, id), id);
    }
  }

  /** A trial reports its change to its parent; a failed report is repaired by the parent's alarm. */
  private async tellParent(state: machine.JobState): Promise<void> {
    try {
      await this.env.JOBS.get(this.env.JOBS.idFromName(state.job.parent!)).trialChanged(state.job, state.weightsKey);
    } catch (e) {
      console.warn(`edgetune: trial ${state.job.id} could not report to its search ${state.job.parent}: ${String(e)}`);
    }
  }

  /** The parent hears of a trial's change: records it, starts the next trials, ends the search after the last. */
  async trialChanged(trial: Job, weightsKey: string | null): Promise<void> {
    const current = await this.state();
    if (!current?.search) return;
    const r = search.trialChanged(current, trial, weightsKey, Date.now());
    if (!r.changed) return;
    await this.save(r.state);
    // successive halving stopped a trial: cancelled as any job (it stops within an epoch)
    for (const id of r.stop) await this.trial(id).cancel();
    if (r.start.length > 0) await this.startTrials(r.start);
    if (r.finish !== undefined) await this.finishSearch();
  }

  /** Every trial has ended: the best trial's weights are copied to the search's own key, then the search ends. */
  private async finishSearch(): Promise<void> {
    const current = await this.state();
    const finish = current ? search.finishOf(current) : undefined;
    if (!current || finish === undefined) return;
    let best: Job | null = null;
    let weightsKey: string | null = null;
    if (finish) {
      const object = await this.env.BLOBS.get(finish.weightsKey);
      best = ((await this.trial(finish.best).get()) as JobRecord | null)?.job ?? null;
      if (object && best) {
        weightsKey = search.searchWeightsKeyOf(current.job.id);
        await this.env.BLOBS.put(weightsKey, await object.arrayBuffer());
        // and its input, so that POST /v1/fine-tunes/{search}/explain explains the weights it serves
        const input = await this.env.BLOBS.get(inputKeyOf(finish.best));
        if (input) await this.env.BLOBS.put(current.inputKey, await input.arrayBuffer());
      }
    }
    await this.transition((s, now) => ({ ...search.finishSearch(s, best, weightsKey, now), effects: { alarmAt: null } }));
  }

  /** The parent's alarm: asks each trial it has not heard the end of how it stands (creating one whose create was lost). */
  private async reconcileSearch(): Promise<void> {
    const state = await this.state();
    if (!state?.search || isFinal(state.job.status)) return;
    for (const t of state.job.trials ?? []) {
      if (t.status !== "queued" && t.status !== "running") continue;
      const record = (await this.trial(t.id).get()) as JobRecord | null;
      if (record === null) await this.startTrials([t.id]);
      else await this.trialChanged(record.job, await this.trial(t.id).weightsKey());
    }
    await this.finishSearch();
    const after = await this.state();
    if (after && !isFinal(after.job.status)) await this.ctx.storage.setAlarm(Date.now() + leasePolicy(this.env).leaseMs);
  }

  async claim(worker: string): Promise<Claim | null> {
    const leaseId = crypto.randomUUID();
    const r = await this.transition((s, now, policy) => machine.claim(s, worker, now, policy, leaseId));
    if (!r?.lease) return null;
    const state = (await this.state())!;
    return { job: state.job, leaseId, leaseMs: leasePolicy(this.env).leaseMs, attempt: state.attempt, ...(machine.firstRun(state) ? { fresh: true } : {}) };
  }

  /** The input key when `leaseId` holds the job, else null. */
  async inputFor(leaseId: string): Promise<string | null> {
    const state = await this.state();
    return state && machine.holdsLease(state, leaseId) ? state.inputKey : null;
  }

  /** The run input when `leaseId` holds the job: its bytes when held here, else its R2 key; null when the lease is not held. */
  async leasedInput(leaseId: string): Promise<{ bytes: Uint8Array } | { key: string } | null> {
    const state = await this.state();
    if (!state || !machine.holdsLease(state, leaseId)) return null;
    const held = await this.ctx.storage.get<Uint8Array>(INLINE_INPUT);
    return held ? { bytes: held } : { key: state.inputKey };
  }

  async progress(leaseId: string, epochs: EpochMetrics[], engine?: Job["engine"]): Promise<LeaseStatus> {
    return (await this.transition((s, now, policy) => machine.progress(s, leaseId, epochs, now, policy, engine))) ?? { ok: false, cancel: false };
  }

  async heartbeat(leaseId: string): Promise<LeaseStatus> {
    return (await this.transition((s, now, policy) => machine.heartbeat(s, leaseId, now, policy))) ?? { ok: false, cancel: false };
  }

  async complete(leaseId: string, outcome: RunOutcome, weightsKey: string | null): Promise<{ accepted: boolean; invalid?: FieldIssue }> {
    return (await this.transition((s, now) => machine.complete(s, leaseId, outcome, weightsKey, now))) ?? { accepted: false };
  }

  async release(leaseId: string): Promise<{ accepted: boolean }> {
    return (await this.transition((s, now, policy) => machine.release(s, leaseId, now, policy))) ?? { accepted: false };
  }

  async pause(): Promise<Job | null> {
    await this.transition((s, now) => machine.requestPause(s, now));
    return (await this.state())?.job ?? null;
  }

  async resume(): Promise<Job | null> {
    await this.transition((s, now, policy) => machine.resumePaused(s, now, policy));
    return (await this.state())?.job ?? null;
  }

  /** The lease holder continues from the checkpoint of `epoch`, whose history becomes the attempt's first epochs. */
  async resumedFrom(leaseId: string, epoch: number, history: EpochMetrics[]): Promise<LeaseStatus> {
    return (await this.transition((s, now, policy) => machine.resumedFrom(s, leaseId, epoch, history, now, policy))) ?? { ok: false, cancel: false };
  }

  async fail(reason: string): Promise<void> {
    await this.transition((s, now) => machine.fail(s, reason, now));
  }

  /** No GPU node is polling: the job and its events say so (once). */
  async waitingForNode(): Promise<void> {
    await this.transition((s) => machine.waitingForNode(s));
  }

  /** The job's time to live once ended, as set when it was created (the Worker's at the time for older jobs). */
  private async ttlMs(): Promise<number> {
    return (await this.ctx.storage.get<number>("ttlMs")) ?? jobTtlMs(this.env);
  }

  /**
   * Lapsed leases go back to the queue; queued jobs are re-dispatched in case a message was lost;
   * an ended job past its time to live is deleted. A throw here is retried by the runtime, and
   * `remove` can be repeated, so a half-done expiry is finished by the retry.
   */
  override async alarm(): Promise<void> {
    const record = await this.get();
    if (!record) return;
    if (!isFinal(record.job.status) && record.job.trials !== undefined) {
      await this.reconcileSearch();
      return;
    }
    if (record.job.status === "paused") {
      // a paused job expires JOB_TTL_DAYS after it was paused
      const state = (await this.state())!;
      const at = machine.pausedExpiresAt(state, await this.ttlMs(), Date.now())!;
      if (state.pausedAt === undefined) await this.save({ ...state, pausedAt: Date.now() }); // paused before pausedAt was kept
      if (at > Date.now()) await this.ctx.storage.setAlarm(at);
      else await this.remove();
      return;
    }
    if (!isFinal(record.job.status)) {
      await this.transition((s, now, policy) => machine.onAlarm(s, now, policy));
      return;
    }
    const at = expiresAt(record.job, await this.ttlMs())!;
    if (at > Date.now()) await this.ctx.storage.setAlarm(at);
    else await this.remove();
  }

  /**
   * Deletes the ended job: its blobs in R2 (input, weights of every attempt, checkpoints), its
   * listing entry and charged bytes, then all of its own storage (the object then holds nothing).
   * false when there is no such job, or it has not ended and is not paused (a paused job expires).
   */
  async remove(): Promise<boolean> {
    const record = await this.get();
    if (!record || !(isFinal(record.job.status) || record.job.status === "paused")) return false;
    const { job, owner } = record;
    for (const prefix of blobPrefixesOf(job.id)) {
      for (let cursor: string | undefined; ; ) {
        const listed = await this.env.BLOBS.list({ prefix, ...(cursor === undefined ? {} : { cursor }) });
        if (listed.objects.length > 0) await this.env.BLOBS.delete(listed.objects.map((o) => o.key));
        if (!listed.truncated) break;
        cursor = listed.cursor;
      }
    }
    await this.env.JOB_INDEX.get(this.env.JOB_INDEX.idFromName(`owner:${owner}`)).forget(listingKey(job.created_at, job.id), job.id);
    // a GPU job cancelled while it waited is still on the dispatcher's list until a node polls
    if (job.plan.placement === "gpu-node") await this.env.DISPATCHER.get(this.env.DISPATCHER.idFromName(DISPATCHER_NAME)).drop(job.id);
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
    return true;
  }
}

/** How long an admitted job that does not exist yet counts as active (its create is still storing it). */
const ADMISSION_GRACE_MS = 10 * 60 * 1000;

/**
 * One owner's job ids (keyed so that listing in key order is newest first), Idempotency-Keys and
 * quotas. Keys: `job:{listing key}` the id; `idem:{key}` an IdempotencyRecord and
 * `idemjob:{id}` its key (forgotten with the job); `active:{id}` when an async job was admitted;
 * `bytes:{id}` its charged bytes, and `bytes` their sum; `stream:{id}` an open SSE stream's
 * lease end (MAX_STREAMS_PER_KEY).
 */
export class JobIndex extends DurableObject<Env> {
  /**
   * Atomic, so that two racing creates get one winner: blockConcurrencyWhile holds every other
   * call while this one runs, including while it asks a job's object whether a lapsed
   * reservation's job was stored (input gates alone would let calls in during that RPC). A
   * reservation whose request died before storing its job frees the key after `pendingMs`
   * (reservationHolds).
   */
  async reserve(key: string, id: string, fingerprint: string, pendingMs: number): Promise<IdempotencyRecord | null> {
    return this.ctx.blockConcurrencyWhile(async () => {
      const slot = `idem:${key}`;
      const existing = await this.ctx.storage.get<IdempotencyRecord>(slot);
      const now = Date.now();
      const stored = async (jobId: string) => (await this.env.JOBS.get(this.env.JOBS.idFromName(jobId)).get()) !== null;
      if (await reservationHolds(existing, now, stored)) return existing!;
      // idemjob: the job's own key, so that the job's expiry frees it (retention)
      await this.ctx.storage.put({ [slot]: { id, fingerprint, at: now, pendingUntil: now + pendingMs } satisfies IdempotencyRecord, [`idemjob:${id}`]: key });
      return null;
    });
  }

  async release(key: string, id: string): Promise<void> {
    const slot = `idem:${key}`;
    if ((await this.ctx.storage.get<IdempotencyRecord>(slot))?.id === id) await this.ctx.storage.delete([slot, `idemjob:${id}`]);
  }

  /**
   * Drops the `active:` entries of jobs that have ended (asking each job's object), and returns
   * the usage. Other calls may run while a job answers; that only ever drops entries.
   */
  private async refresh(): Promise<Usage> {
    const active = await this.ctx.storage.list<number>({ prefix: "active:" });
    for (const [key, admittedAt] of active) {
      // a search holds `parallel` slots: active:{id}, active:{id}#2, ...
      const id = key.slice("active:".length).split("#")[0]!;
      const info = await this.env.JOBS.get(this.env.JOBS.idFromName(id)).dispatchInfo();
      const ended = info === null ? Date.now() - admittedAt > ADMISSION_GRACE_MS : isFinal(info.status);
      if (ended) await this.ctx.storage.delete(key);
    }
    return this.counted();
  }

  /** Usage as counted, with storage reads only (no other call runs meanwhile). */
  private async counted(): Promise<Usage> {
    const active = await this.ctx.storage.list({ prefix: "active:" });
    return { activeJobs: active.size, storedBytes: (await this.ctx.storage.get<number>("bytes")) ?? 0 };
  }

  async usage(): Promise<Usage> {
    return this.refresh();
  }

  async admit(id: string, job: { active: boolean; bytes: number; slots?: number }, limits: QuotaLimits): Promise<Admission> {
    const slots = job.active ? (job.slots ?? 1) : 0;
    if (job.active && (await this.counted()).activeJobs + slots > limits.maxActiveJobs) await this.refresh();
    // from here only storage calls: the check and the count are one step for racing creates
    const usage = await this.counted();
    if (job.active && usage.activeJobs + slots > limits.maxActiveJobs) return { ok: false, code: "too_many_active_jobs", ...usage };
    if (limits.maxStoredBytes !== null && usage.storedBytes + job.bytes > limits.maxStoredBytes) return { ok: false, code: "storage_quota_exceeded", ...usage };
    const now = Date.now();
    await this.ctx.storage.put({
      ...Object.fromEntries(Array.from({ length: slots }, (_, i) => [i === 0 ? `active:${id}` : `active:${id}#${i + 1}`, now])),
      [`bytes:${id}`]: job.bytes,
      bytes: usage.storedBytes + job.bytes,
    });
    return { ok: true };
  }

  /** Job `id` was paused: it stops counting as active (its bytes still count). */
  async deactivate(id: string): Promise<void> {
    await this.ctx.storage.delete(`active:${id}`);
  }

  /**
   * Counts paused job `id` as active again, before it is resumed, unless that would pass
   * maxActiveJobs (then the refusal, and nothing is counted). Only storage calls between the
   * count and the put, as in `admit`.
   */
  async reactivate(id: string, limits: QuotaLimits): Promise<Admission> {
    const key = `active:${id}`;
    const over = async () => {
      const usage = await this.counted();
      // one paused before paused jobs stopped counting still holds its entry
      const own = (await this.ctx.storage.get(key)) === undefined ? 0 : 1;
      return { usage, over: usage.activeJobs - own + 1 > limits.maxActiveJobs };
    };
    let check = await over();
    if (check.over) {
      await this.refresh();
      check = await over();
    }
    if (check.over) return { ok: false, code: "too_many_active_jobs", ...check.usage };
    await this.ctx.storage.put(key, Date.now());
    return { ok: true };
  }

  /** Uncounts job `id` (its create failed, or it expired). */
  async cancelAdmission(id: string): Promise<void> {
    const bytes = await this.ctx.storage.get<number>(`bytes:${id}`);
    const extraSlots = [...(await this.ctx.storage.list({ prefix: `active:${id}#` })).keys()];
    await this.ctx.storage.delete([`active:${id}`, `bytes:${id}`, ...extraSlots]);
    if (bytes !== undefined) await this.ctx.storage.put("bytes", Math.max(0, ((await this.ctx.storage.get<number>("bytes")) ?? 0) - bytes));
  }

  /** Forgets an expired or deleted job: its listing entry, its quota counts and its Idempotency-Key. */
  async forget(key: string, id: string): Promise<void> {
    await this.cancelAdmission(id);
    const idem = await this.ctx.storage.get<string>(`idemjob:${id}`);
    if (idem !== undefined) await this.release(idem, id);
    await this.ctx.storage.delete([`job:${key}`, `idemjob:${id}`]);
  }

  /**
   * Opens an SSE stream under the key's cap (`stream:{id}` its lease end). Only storage calls
   * between the count and the put: two racing opens cannot both take the last slot. Lapsed
   * slots (streams whose isolate died without closing) are dropped here.
   */
  async openStream(streamId: string, limits: StreamLimits): Promise<StreamAdmission> {
    const listed = await this.ctx.storage.list<number>({ prefix: "stream:" });
    const slots = new Map([...listed].map(([key, until]) => [key.slice("stream:".length), until]));
    const { admission, expired, leaseUntil } = admitStream(slots, streamId, Date.now(), limits);
    if (expired.length > 0) await this.ctx.storage.delete(expired.map((id) => `stream:${id}`));
    if (admission.ok) await this.ctx.storage.put(`stream:${streamId}`, leaseUntil);
    return admission;
  }

  async renewStream(streamId: string, leaseMs: number): Promise<void> {
    await this.ctx.storage.put(`stream:${streamId}`, Date.now() + leaseMs);
  }

  async closeStream(streamId: string): Promise<void> {
    await this.ctx.storage.delete(`stream:${streamId}`);
  }

  async add(key: string, id: string): Promise<void> {
    await this.ctx.storage.put(`job:${key}`, id);
  }

  /** Up to `limit` jobs after listing key `after`, as (listing key, id), and whether more follow. */
  async page(limit: number, after?: string): Promise<{ entries: { key: string; id: string }[]; more: boolean }> {
    const listed = await this.ctx.storage.list<string>({
      prefix: "job:",
      ...(after === undefined ? {} : { startAfter: `job:${after}` }),
      limit: limit + 1,
    });
    const entries = [...listed].map(([key, id]) => ({ key: key.slice("job:".length), id }));
    return { entries: entries.slice(0, limit), more: entries.length > limit };
  }
}

/** The name of the one JobDispatcher object. */
const DISPATCHER_NAME = "gpu-nodes";

/** How long a stopped node's claims are refused: longer than the longest long poll (25 s). */
const STOPPED_NODE_MS = 60_000;

/** Jobs waiting for a GPU node, oldest first; each id at most once. */
export class JobDispatcher extends DurableObject<Env> {
  /**
   * When a node last polled (claimNext). In memory only: polling nodes keep the object awake, and
   * an object evicted for want of calls has had no node polling anyway.
   */
  private lastPollAt: number | null = null;

  /** Whether a GPU node has polled for work within `ms`. */
  async nodePolledWithin(ms: number): Promise<boolean> {
    return this.lastPollAt !== null && Date.now() - this.lastPollAt <= ms;
  }

  /** Nodes shutting down, until when their claims are refused (in memory: their own long polls keep this object awake). */
  private readonly stopped = new Map<string, number>();

  async stop(worker: string): Promise<void> {
    const now = Date.now();
    for (const [node, until] of this.stopped) if (until < now) this.stopped.delete(node);
    this.stopped.set(worker, now + STOPPED_NODE_MS);
  }

  async push(id: string): Promise<void> {
    if (await this.ctx.storage.get(`id:${id}`)) return;
    const seq = ((await this.ctx.storage.get<number>("seq")) ?? 0) + 1;
    await this.ctx.storage.put({ seq, [`id:${id}`]: seq, [`w:${String(seq).padStart(12, "0")}`]: id });
  }

  /** Takes a job off the waiting list (it expired or was deleted before a node took it). */
  async drop(id: string): Promise<void> {
    const seq = await this.ctx.storage.get<number>(`id:${id}`);
    if (seq !== undefined) await this.ctx.storage.delete([`id:${id}`, `w:${String(seq).padStart(12, "0")}`]);
  }

  async pop(worker?: string): Promise<string | null> {
    if (worker !== undefined && (this.stopped.get(worker) ?? 0) > Date.now()) return null;
    this.lastPollAt = Date.now();
    const first = await this.ctx.storage.list<string>({ prefix: "w:", limit: 1 });
    const [key, id] = [...first][0] ?? [];
    if (key === undefined || id === undefined) return null;
    await this.ctx.storage.delete([key, `id:${id}`]);
    return id;
  }
}

/**
 * A completion without the history entries the job's object has already recorded from this
 * lease's reports (up to epoch `recorded`), but for the last JOB_HISTORY_TAIL that the job
 * keeps, with `metrics.epochs` the run's count: the object takes only the epochs after
 * `recorded` (state.ts complete), so a run of 20,000 one-row epochs no longer copies all 20,000
 * to it a second time (issue 16 item 3).
 */
function withoutRecordedEpochs(outcome: RunOutcome, recorded: number | undefined): RunOutcome {
  if ("failure" in outcome || recorded === undefined) return outcome;
  const { history } = outcome.metrics;
  const firstNew = history.findIndex((e) => e.epoch > recorded);
  const keepFrom = Math.min(firstNew < 0 ? history.length : firstNew, Math.max(0, history.length - JOB_HISTORY_TAIL));
  if (keepFrom === 0) return outcome;
  // boundedMetrics (state.ts complete) counts the run's epochs from `epochs` when it is given
  const metrics = { ...outcome.metrics, history: history.slice(keepFrom), epochs: history.length };
  return { ...outcome, metrics };
}

/**
 * JobStore over the Durable Objects, R2 and the Queue.
 *
 * @example
 * ```ts
 * const store = new CloudflareJobStore(env);
 * await store.submit(state, input);
 * ```
 */
export class CloudflareJobStore implements JobStore {
  readonly channel: WorkerChannel;
  /** Weights keys this store's channel has uploaded (and awaited): complete need not look them up. */
  private readonly uploaded = new Set<string>();
  /** Per lease, the last epoch this store's channel has seen the job's object take in a progress report. */
  private readonly recorded = new Map<string, number>();

  constructor(private readonly env: Env) {
    this.channel = {
      readInput: async (id, leaseId) => {
        const input = await this.job(id).leasedInput(leaseId);
        if (input === null) return null;
        if ("bytes" in input) return input.bytes;
        const object = await this.env.BLOBS.get(input.key);
        return object ? new Uint8Array(await object.arrayBuffer()) : null;
      },
      progress: async (id, leaseId, epochs, engine) => {
        const status = await this.job(id).progress(leaseId, epochs, engine);
        if (status.ok && !status.invalid && epochs.length > 0) this.recorded.set(leaseId, epochs.at(-1)!.epoch);
        return status;
      },
      heartbeat: (id, leaseId) => this.job(id).heartbeat(leaseId),
      saveWeights: async (id, leaseId, bytes) => {
        // the lease check and the upload at once: the key is the lease's own, so a lost lease's
        // file is never the job's (deleted here, or swept with the job's blobs at its expiry)
        const key = weightsKeyOf(id, leaseId);
        const [held] = await Promise.all([this.job(id).inputFor(leaseId), this.env.BLOBS.put(key, bytes)]);
        if (held === null) {
          await this.env.BLOBS.delete(key);
          return null;
        }
        this.uploaded.add(key);
        return key;
      },
      complete: async (id, leaseId, outcome, weightsKey) => {
        // weights this channel stored are known to be there; a node's upload is looked up
        if (weightsKey !== null && !this.uploaded.has(weightsKey) && (await this.env.BLOBS.head(weightsKey)) === null) throw weightsNotUploaded();
        return this.job(id).complete(leaseId, withoutRecordedEpochs(outcome, this.recorded.get(leaseId)), weightsKey);
      },
      release: (id, leaseId) => this.job(id).release(leaseId),
      saveCheckpoint: async (id, leaseId, bytes, keep) => {
        if ((await this.job(id).inputFor(leaseId)) === null) return false;
        await this.putCheckpoint(id, bytes, keep);
        return true;
      },
      resumeFrom: async (id, leaseId) => {
        if ((await this.job(id).inputFor(leaseId)) === null) return null;
        const last = (await this.listCheckpoints(id)).at(-1);
        const object = last ? await this.env.BLOBS.get(checkpointKeyOf(id, last.epoch)) : null;
        if (!object) return null;
        const bytes = new Uint8Array(await object.arrayBuffer());
        const { epoch, history } = checkpointSummary(bytes);
        const status = await this.job(id).resumedFrom(leaseId, epoch, history);
        return status.ok && !status.invalid ? bytes : null;
      },
    };
  }

  /** Stores a checkpoint with its listing entry as R2 custom metadata, then deletes all but the newest `keep`. */
  async putCheckpoint(id: string, bytes: Uint8Array, keep: number): Promise<CheckpointInfo> {
    const { epoch, step, metrics } = checkpointSummary(bytes);
    const info: CheckpointInfo = { epoch, step, metrics, created_at: new Date().toISOString() };
    await this.env.BLOBS.put(checkpointKeyOf(id, epoch), bytes, { customMetadata: { checkpoint: JSON.stringify(info) } });
    const all = await this.listCheckpoints(id);
    const old = all.slice(0, Math.max(0, all.length - keep)).map((c) => checkpointKeyOf(id, c.epoch));
    if (old.length > 0) await this.env.BLOBS.delete(old);
    return info;
  }

  async listCheckpoints(id: string): Promise<CheckpointInfo[]> {
    const infos: CheckpointInfo[] = [];
    for (let cursor: string | undefined; ; ) {
      const listed = await this.env.BLOBS.list({ prefix: `checkpoints/${id}/`, include: ["customMetadata"], ...(cursor === undefined ? {} : { cursor }) });
      for (const o of listed.objects) if (o.customMetadata?.checkpoint) infos.push(JSON.parse(o.customMetadata.checkpoint) as CheckpointInfo);
      if (!listed.truncated) break;
      cursor = listed.cursor;
    }
    return infos.sort((a, b) => a.epoch - b.epoch);
  }

  async deleteCheckpoints(id: string): Promise<void> {
    const keys = (await this.listCheckpoints(id)).map((c) => checkpointKeyOf(id, c.epoch));
    if (keys.length > 0) await this.env.BLOBS.delete(keys);
  }

  async getCheckpoint(id: string, epoch: number): Promise<ReadableStream<Uint8Array> | null> {
    const object = await this.env.BLOBS.get(checkpointKeyOf(id, epoch));
    return object ? (object.body as ReadableStream<Uint8Array>) : null;
  }

  async pause(id: string): Promise<Job | null> {
    return this.job(id).pause();
  }

  async resume(id: string): Promise<Job | null> {
    return this.job(id).resume();
  }

  job(id: string) {
    return this.env.JOBS.get(this.env.JOBS.idFromName(id));
  }

  private index(owner: string) {
    return this.env.JOB_INDEX.get(this.env.JOB_INDEX.idFromName(`owner:${owner}`));
  }

  private dispatcher() {
    return this.env.DISPATCHER.get(this.env.DISPATCHER.idFromName(DISPATCHER_NAME));
  }

  async put(record: JobRecord, history: readonly EpochMetrics[], blobs: { weights?: Uint8Array; input?: Uint8Array } = {}): Promise<void> {
    const { id, created_at } = record.job;
    const inline: InlineBlobs = {};
    const inR2: string[] = [];
    const large: Promise<unknown>[] = [];
    for (const [name, bytes] of Object.entries(blobs)) {
      if (!bytes) continue;
      // a view is copied out: RPC serialises a typed array's whole buffer, and a sync job's
      // weights may be a view of the kernel core's memory (tens of MiB; the RPC limit is 32 MiB)
      if (bytes.byteLength <= INLINE_BLOB_BYTES) inline[name as keyof InlineBlobs] = isWholeBuffer(bytes) ? bytes : bytes.slice();
      else {
        const key = name === "weights" ? `weights/${id}.safetensors` : inputKeyOf(id);
        inR2.push(key);
        large.push(this.env.BLOBS.put(key, bytes));
      }
    }
    // blobs too large for the record's write first: a job that exists always has its blobs
    await Promise.all(large);
    // the record and the listing entry at once: two objects, one round trip (a listing entry
    // whose job is not stored lists nothing: list() skips it)
    const listing = listingKey(created_at, id);
    const [stored, listed] = await Promise.allSettled([this.job(id).put(record, history, jobTtlMs(this.env), inline), this.index(record.owner).add(listing, id)]);
    if (stored.status === "rejected") {
      // no listing entry, no files without a job
      if (listed.status === "fulfilled") await this.index(record.owner).forget(listing, id).catch(() => undefined);
      if (inR2.length > 0) await this.env.BLOBS.delete(inR2).catch(() => undefined);
      throw stored.reason;
    }
    if (listed.status === "rejected") {
      try {
        await this.index(record.owner).add(listing, id); // once more: the job is stored
      } catch (e) {
        await this.job(id).remove().catch(() => undefined); // none of it kept, as the expiry would remove it
        throw e;
      }
    }
  }

  async get(id: string): Promise<JobRecord | null> {
    return this.job(id).get();
  }

  async warm(id: string): Promise<void> {
    await this.job(id).warm();
  }

  async list(owner: string, options: ListOptions): Promise<JobPage> {
    const { status, limit } = options;
    const records: JobRecord[] = [];
    let cursor = options.cursor;
    // a filtered page reads on, a batch at a time, until it is full, the listing ends, or
    // LIST_SCAN jobs were looked at; the cursor is the last job looked at
    for (let scanned = 0; scanned < LIST_SCAN; ) {
      const batch = status === undefined ? limit : Math.min(Math.max(limit, 50), LIST_SCAN - scanned);
      const { entries, more } = await this.index(owner).page(batch, cursor);
      const found = await Promise.all(entries.map((e) => this.get(e.id)));
      for (let i = 0; i < entries.length; i++) {
        const record = found[i];
        scanned++;
        cursor = entries[i]!.key;
        if (record && (status === undefined || status.includes(record.job.status))) records.push(record);
        if (records.length === limit) return { records, nextCursor: i < entries.length - 1 || more ? cursor : null };
      }
      if (!more) return { records, nextCursor: null };
    }
    return { records, nextCursor: cursor ?? null };
  }

  async putWeights(id: string, bytes: Uint8Array): Promise<void> {
    await this.env.BLOBS.put(`weights/${id}.safetensors`, bytes);
  }

  async deleteWeights(id: string): Promise<void> {
    await this.env.BLOBS.delete(`weights/${id}.safetensors`);
  }

  async getWeights(id: string): Promise<ReadableStream<Uint8Array> | Uint8Array | null> {
    const where = await this.job(id).weights();
    if (where === null) return null;
    if ("inline" in where) return where.inline;
    const object = await this.env.BLOBS.get(where.key);
    return object ? (object.body as ReadableStream<Uint8Array>) : null;
  }

  async putInput(id: string, bytes: Uint8Array): Promise<void> {
    await this.env.BLOBS.put(inputKeyOf(id), bytes);
  }

  async getInput(id: string): Promise<ReadableStream<Uint8Array> | Uint8Array | null> {
    const held = await this.job(id).inlineInput();
    if (held) return held;
    const object = await this.env.BLOBS.get(inputKeyOf(id));
    return object ? (object.body as ReadableStream<Uint8Array>) : null;
  }

  async submit(state: machine.JobState, input: Uint8Array, options: { listed?: boolean; claimAs?: string } = {}): Promise<Claim | null> {
    // a small input is stored with the job, in its object's one write; a larger one first, to R2:
    // a job that exists always has its input (a view is copied out: RPC sends a view's whole buffer)
    const inline = input.byteLength <= INLINE_BLOB_BYTES;
    if (!inline) await this.env.BLOBS.put(state.inputKey, input);
    const held = inline ? (isWholeBuffer(input) ? input : input.slice()) : undefined;
    const claim = await this.job(state.job.id).create(state, { enqueue: true, alarmAt: Date.now() + leasePolicy(this.env).leaseMs }, jobTtlMs(this.env), options.claimAs, held);
    if (options.listed !== false) await this.index(state.owner).add(listingKey(state.job.created_at, state.job.id), state.job.id);
    return claim;
  }

  async submitSearch(state: machine.JobState, start: string[], inputs: ReadonlyMap<string, Uint8Array>): Promise<void> {
    // inputs first: a trial that exists always has its input
    for (const [id, bytes] of inputs) await this.env.BLOBS.put(inputKeyOf(id), bytes);
    await this.index(state.owner).add(listingKey(state.job.created_at, state.job.id), state.job.id);
    await this.job(state.job.id).createSearch(state, start, jobTtlMs(this.env));
  }

  async events(id: string, after: number, limit = EVENTS_PAGE, waitMs = 0) {
    return this.job(id).events(after, limit, waitMs);
  }

  async history(id: string, offset: number, limit: number): Promise<HistoryPage | null> {
    return this.job(id).history(offset, limit);
  }

  async reserveIdempotencyKey(owner: string, key: string, id: string, fingerprint: string, pendingMs: number): Promise<IdempotencyRecord | null> {
    return this.index(owner).reserve(key, id, fingerprint, pendingMs);
  }

  async releaseIdempotencyKey(owner: string, key: string, id: string): Promise<void> {
    await this.index(owner).release(key, id);
  }

  async cancel(id: string): Promise<Job | null> {
    return this.job(id).cancel();
  }

  async admit(owner: string, id: string, job: { active: boolean; bytes: number; slots?: number }, limits: QuotaLimits): Promise<Admission> {
    return this.index(owner).admit(id, job, limits);
  }

  async cancelAdmission(owner: string, id: string): Promise<void> {
    await this.index(owner).cancelAdmission(id);
  }

  async reactivate(owner: string, id: string, limits: QuotaLimits): Promise<Admission> {
    return this.index(owner).reactivate(id, limits);
  }

  async usage(owner: string): Promise<Usage> {
    return this.index(owner).usage();
  }

  async openStream(owner: string, streamId: string, limits: StreamLimits): Promise<StreamAdmission> {
    return this.index(owner).openStream(streamId, limits);
  }

  async renewStream(owner: string, streamId: string, leaseMs: number): Promise<void> {
    await this.index(owner).renewStream(streamId, leaseMs);
  }

  async closeStream(owner: string, streamId: string): Promise<void> {
    await this.index(owner).closeStream(streamId);
  }

  async delete(id: string): Promise<boolean> {
    return this.job(id).remove();
  }

  async claimNext(worker: string): Promise<Claim | null> {
    for (;;) {
      const id = await this.dispatcher().pop(worker);
      if (id === null) return null;
      const claim = await this.job(id).claim(worker); // null: cancelled or taken meanwhile
      if (claim) return claim;
    }
  }

  async stopClaims(worker: string): Promise<void> {
    await this.dispatcher().stop(worker);
  }

  /** Routes a dispatch message: GPU jobs wait for a node; edge jobs are claimed by the caller. */
  async route(id: string): Promise<"gpu-node" | "edge" | "done"> {
    const info = await this.job(id).dispatchInfo();
    if (!info || info.status !== "queued") return "done";
    if (info.placement === "gpu-node") {
      const dispatcher = this.dispatcher();
      await dispatcher.push(id);
      // a GPU job's message sent before such jobs went straight to the dispatcher (FineTuneJob.apply)
      if (!(await dispatcher.nodePolledWithin(leasePolicy(this.env).leaseMs))) await this.job(id).waitingForNode();
      return "gpu-node";
    }
    return "edge";
  }
}

/** One key's token bucket: exact across isolates, since one object serves each key. */
export class RateLimitBucket extends DurableObject<Env> {
  async take(policy: RateLimitPolicy): Promise<RateDecision> {
    const { bucket, decision } = takeToken(await this.ctx.storage.get<Bucket>("bucket"), Date.now(), policy);
    await this.ctx.storage.put("bucket", bucket);
    return decision;
  }
}

/**
 * Rate limits over one RateLimitBucket object per key.
 *
 * @example
 * ```ts
 * const limiter = new DurableRateLimiter(env, { burst: 60, perMinute: 120 });
 * ```
 */
export class DurableRateLimiter implements RateLimiter {
  constructor(private readonly env: Env, private readonly policy: RateLimitPolicy) {}

  take(owner: string): Promise<RateDecision> {
    return this.env.RATE_LIMITS.get(this.env.RATE_LIMITS.idFromName(owner)).take(this.policy);
  }
}
