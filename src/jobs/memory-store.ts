/**
 * An in-process JobStore: the same state machine as the Durable Objects (src/jobs/state.ts)
 * over Maps, a FIFO of jobs waiting for a GPU node, and timers driven by `tick()`. For Node
 * processes and tests; nothing survives the process.
 */
import type { Job } from "../schema/job.js";
import type { EpochMetrics } from "../schema/result.js";
import type { JobEvent } from "./job.js";
import { checkpointSummary } from "../engine/checkpoint.js";
import {
  blobPrefixesOf,
  checkpointKeyOf,
  type CheckpointInfo,
  DEFAULT_JOB_TTL_MS,
  EVENTS_PAGE,
  expiresAt,
  IDEMPOTENCY_TTL_MS,
  inputKeyOf,
  listingKey,
  reservationHolds,
  weightsKeyOf,
  weightsNotUploaded,
  type Admission,
  type Claim,
  type IdempotencyRecord,
  type JobPage,
  type JobRecord,
  type JobStore,
  type ListOptions,
  type QuotaLimits,
  type Usage,
  type WorkerChannel,
} from "./store.js";
import * as machine from "./state.js";
import * as search from "./search.js";
import { isFinal } from "./job.js";
import { admitStream, type StreamAdmission, type StreamLimits } from "./streams.js";

/**
 * @example
 * ```ts
 * const store = new MemoryJobStore({ leaseMs: 1000, maxAttempts: 3 }, { jobTtlMs: 60_000 });
 * const app = createApp(() => ({ ...deps, store }));
 * ```
 */
export class MemoryJobStore implements JobStore {
  private readonly records = new Map<string, JobRecord>();
  private readonly states = new Map<string, machine.JobState>();
  /** Append-only logs, apart from the (bounded) records and states, as in the Durable Objects. */
  private readonly eventLogs = new Map<string, JobEvent[]>();
  private readonly histories = new Map<string, EpochMetrics[]>();
  private readonly alarms = new Map<string, number>();
  private readonly blobs = new Map<string, Uint8Array>();
  /** Ids waiting for a GPU node, oldest first. */
  private readonly waiting: string[] = [];
  /** Nodes that are shutting down (stopClaims). */
  private readonly stopped = new Set<string>();
  /** When a GPU node last asked for work (claimNext), for `waiting_for_node`. */
  private lastPollAt: number | null = null;
  /** Ids of queued edge jobs for an in-process consumer (`takeEdgeJob`). */
  private readonly edgeQueue: string[] = [];
  readonly channel: WorkerChannel;

  /** How long an ended job is kept (JOB_TTL_DAYS): `tick()` expires it after that. */
  private readonly jobTtlMs: number;

  constructor(
    private readonly policy: machine.LeasePolicy = machine.DEFAULT_LEASE_POLICY,
    options: { jobTtlMs?: number } = {},
  ) {
    this.jobTtlMs = options.jobTtlMs ?? DEFAULT_JOB_TTL_MS;
    this.channel = {
      readInput: async (id, leaseId) => (this.holds(id, leaseId) ? (this.blobs.get(this.states.get(id)!.inputKey) ?? null) : null),
      progress: async (id, leaseId, epochs, engine) => this.apply(id, (s, now) => machine.progress(s, leaseId, epochs, now, this.policy, engine)),
      heartbeat: async (id, leaseId) => this.apply(id, (s, now) => machine.heartbeat(s, leaseId, now, this.policy)),
      saveWeights: async (id, leaseId, bytes) => {
        if (!this.holds(id, leaseId)) return null;
        const key = weightsKeyOf(id, leaseId);
        this.blobs.set(key, bytes.slice());
        return key;
      },
      complete: async (id, leaseId, outcome, weightsKey) => {
        if (weightsKey !== null && !this.blobs.has(weightsKey)) throw weightsNotUploaded();
        return this.apply(id, (s, now) => machine.complete(s, leaseId, outcome, weightsKey, now));
      },
      release: async (id, leaseId) => this.apply(id, (s, now) => machine.release(s, leaseId, now, this.policy)),
      saveCheckpoint: async (id, leaseId, bytes, keep) => {
        if (!this.holds(id, leaseId)) return false;
        await this.putCheckpoint(id, bytes, keep);
        return true;
      },
      resumeFrom: async (id, leaseId) => {
        if (!this.holds(id, leaseId)) return null;
        const last = (await this.listCheckpoints(id)).at(-1);
        if (!last) return null;
        const bytes = this.blobs.get(checkpointKeyOf(id, last.epoch))!;
        const { epoch, history } = checkpointSummary(bytes);
        const r = await this.apply(id, (s, now) => machine.resumedFrom(s, leaseId, epoch, history, now, this.policy));
        return r.ok && !r.invalid ? bytes.slice() : null;
      },
    };
  }

  // ---------------------------------------------------------------- checkpoints

  /** Each stored checkpoint's listing entry, by blob key (the blob itself is in `blobs`). */
  private readonly checkpointInfos = new Map<string, CheckpointInfo>();

  async putCheckpoint(id: string, bytes: Uint8Array, keep: number): Promise<CheckpointInfo> {
    const { epoch, step, metrics } = checkpointSummary(bytes);
    const info: CheckpointInfo = { epoch, step, metrics, created_at: new Date().toISOString() };
    const key = checkpointKeyOf(id, epoch);
    this.blobs.set(key, bytes.slice());
    this.checkpointInfos.set(key, info);
    const all = await this.listCheckpoints(id);
    for (const old of all.slice(0, Math.max(0, all.length - keep))) {
      this.blobs.delete(checkpointKeyOf(id, old.epoch));
      this.checkpointInfos.delete(checkpointKeyOf(id, old.epoch));
    }
    return structuredClone(info);
  }

  async listCheckpoints(id: string): Promise<CheckpointInfo[]> {
    const prefix = `checkpoints/${id}/`;
    return [...this.checkpointInfos]
      .filter(([key]) => key.startsWith(prefix) && this.blobs.has(key))
      .map(([, info]) => structuredClone(info))
      .sort((a, b) => a.epoch - b.epoch);
  }

  async deleteCheckpoints(id: string): Promise<void> {
    for (const c of await this.listCheckpoints(id)) {
      this.blobs.delete(checkpointKeyOf(id, c.epoch));
      this.checkpointInfos.delete(checkpointKeyOf(id, c.epoch));
    }
  }

  async getCheckpoint(id: string, epoch: number): Promise<Uint8Array | null> {
    return this.blobs.get(checkpointKeyOf(id, epoch)) ?? null;
  }

  async pause(id: string): Promise<Job | null> {
    if (!this.states.has(id)) return null;
    await this.apply(id, (s, now) => machine.requestPause(s, now));
    return structuredClone(this.states.get(id)!.job);
  }

  async resume(id: string): Promise<Job | null> {
    if (!this.states.has(id)) return null;
    await this.apply(id, (s, now) => machine.resumePaused(s, now, this.policy));
    return structuredClone(this.states.get(id)!.job);
  }

  // ---------------------------------------------------------------- sync jobs

  async put(record: JobRecord, history: readonly EpochMetrics[], blobs: { weights?: Uint8Array; input?: Uint8Array } = {}): Promise<void> {
    if (blobs.weights) this.blobs.set(`weights/${record.job.id}.safetensors`, blobs.weights.slice());
    if (blobs.input) this.blobs.set(inputKeyOf(record.job.id), blobs.input.slice());
    this.records.set(record.job.id, structuredClone(record));
    this.histories.set(record.job.id, structuredClone([...history]));
  }

  async history(id: string, offset: number, limit: number) {
    if (!this.states.has(id) && !this.records.has(id)) return null;
    const all = this.histories.get(id) ?? [];
    return { entries: structuredClone(all.slice(offset, offset + limit)), total: all.length };
  }

  async get(id: string): Promise<JobRecord | null> {
    const state = this.states.get(id);
    if (state) return structuredClone({ job: state.job, owner: state.owner });
    const r = this.records.get(id);
    return r ? structuredClone(r) : null;
  }

  async list(owner: string, options: ListOptions): Promise<JobPage> {
    const all = [...this.records.keys(), ...this.states.keys()].filter((id) => !this.unlisted.has(id));
    const keyed = (await Promise.all(all.map((id) => this.get(id))))
      .filter((r): r is JobRecord => r !== null && r.owner === owner && (options.status === undefined || options.status.includes(r.job.status)))
      .map((r) => ({ key: listingKey(r.job.created_at, r.job.id), r }))
      .sort((a, b) => (a.key < b.key ? -1 : 1))
      .filter((e) => options.cursor === undefined || e.key > options.cursor);
    const page = keyed.slice(0, options.limit);
    return { records: page.map((e) => e.r), nextCursor: keyed.length > options.limit ? page.at(-1)!.key : null };
  }

  async putWeights(id: string, bytes: Uint8Array): Promise<void> {
    this.blobs.set(`weights/${id}.safetensors`, bytes.slice());
  }

  async deleteWeights(id: string): Promise<void> {
    this.blobs.delete(`weights/${id}.safetensors`);
  }

  async getWeights(id: string): Promise<Uint8Array | null> {
    const state = this.states.get(id);
    const key = state ? state.weightsKey : `weights/${id}.safetensors`;
    return key ? (this.blobs.get(key) ?? null) : null;
  }

  async putInput(id: string, bytes: Uint8Array): Promise<void> {
    this.blobs.set(inputKeyOf(id), bytes.slice());
  }

  async getInput(id: string): Promise<Uint8Array | null> {
    return this.blobs.get(this.states.get(id)?.inputKey ?? inputKeyOf(id)) ?? null;
  }

  // ---------------------------------------------------------------- async jobs

  /** Jobs submitted with `listed: false` (explanation tasks): never in a listing. */
  private readonly unlisted = new Set<string>();

  async submit(state: machine.JobState, input: Uint8Array, options: { listed?: boolean; claimAs?: string } = {}): Promise<Claim | null> {
    if (options.listed === false) this.unlisted.add(state.job.id);
    this.blobs.set(state.inputKey, input.slice());
    this.save(state);
    this.alarms.set(state.job.id, Date.now() + this.policy.leaseMs);
    this.dispatch(state.job.id);
    return options.claimAs === undefined ? null : this.claim(state.job.id, options.claimAs);
  }

  async events(id: string, after: number, limit = EVENTS_PAGE, waitMs = 0) {
    const read = () => {
      const state = this.states.get(id);
      if (!state) return null;
      // ids are dense and 1-based: event n is at index n - 1
      const log = this.eventLogs.get(id) ?? [];
      return { events: structuredClone(log.slice(Math.max(0, after), Math.max(0, after) + limit)), final: isFinal(state.job.status) };
    };
    const page = read();
    if (!page || page.events.length > 0 || page.final || waitMs <= 0) return page;
    await this.nextWrite(id, waitMs);
    return read();
  }

  private readonly writeWaiters = new Map<string, Set<() => void>>();

  /** Resolves at the job's next write, or after `ms`. */
  private nextWrite(id: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const waiters = this.writeWaiters.get(id) ?? new Set<() => void>();
      this.writeWaiters.set(id, waiters);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      waiters.add(done);
    });
  }

  async cancel(id: string): Promise<Job | null> {
    if (!this.states.has(id)) return null;
    if (this.states.get(id)!.search) {
      const r = this.transition(id, (s, now) => ({ ...search.cancelSearch(s, now), effects: { alarmAt: null } }));
      for (const trial of r?.cancel ?? []) await this.cancel(trial);
    } else {
      await this.apply(id, (s, now) => machine.requestCancel(s, now));
    }
    return this.states.get(id)!.job;
  }

  // ---------------------------------------------------------------- search jobs (src/jobs/search.ts)

  async submitSearch(state: machine.JobState, start: string[], inputs: ReadonlyMap<string, Uint8Array>): Promise<void> {
    for (const [id, bytes] of inputs) this.blobs.set(inputKeyOf(id), bytes.slice());
    this.save(state);
    this.startTrials(state.job.id, start);
  }

  /** Creates trial jobs the parent has marked queued. */
  private startTrials(parentId: string, ids: readonly string[]): void {
    const parent = this.states.get(parentId)!;
    for (const id of ids) {
      const slot = parent.search!.slots.find((s) => s.id === id)!;
      const job = search.trialJob(parent, slot, new Date().toISOString());
      const { state } = machine.createQueued(job, parent.owner, slot.placement, inputKeyOf(id), Date.now(), this.policy, slot.epochs);
      this.save(state);
      this.alarms.set(id, Date.now() + this.policy.leaseMs);
      this.dispatch(id);
    }
  }

  /** A trial changed: its parent records it, starts the next trials, and ends after the last. */
  private trialChanged(trial: machine.JobState): void {
    const parentId = trial.job.parent!;
    const parent = this.states.get(parentId);
    if (!parent?.search) return;
    const r = search.trialChanged(parent, trial.job, trial.weightsKey, Date.now());
    if (!r.changed) return;
    this.save(r.state);
    // successive halving stopped a trial: cancelled as any job (the transition runs now, synchronously)
    for (const id of r.stop) void this.apply(id, (s, now) => machine.requestCancel(s, now));
    this.startTrials(parentId, r.start);
    if (r.finish === undefined) return;
    const best = r.finish ? (this.states.get(r.finish.best)?.job ?? null) : null;
    const bytes = r.finish ? this.blobs.get(r.finish.weightsKey) : undefined;
    const key = best && bytes ? search.searchWeightsKeyOf(parentId) : null;
    if (key) {
      this.blobs.set(key, bytes!.slice());
      // and its input, so that explain on the search explains the weights it serves
      const input = this.blobs.get(inputKeyOf(r.finish!.best));
      if (input) this.blobs.set(parent.inputKey, input.slice());
    }
    this.transition(parentId, (s, now) => ({ ...search.finishSearch(s, best, key, now), effects: { alarmAt: null } }));
  }

  async stopClaims(worker: string): Promise<void> {
    this.stopped.add(worker);
  }

  async claimNext(worker: string): Promise<Claim | null> {
    if (this.stopped.has(worker)) return null;
    this.lastPollAt = Date.now();
    while (this.waiting.length > 0) {
      const id = this.waiting.shift()!;
      const claim = this.claim(id, worker);
      if (claim) return claim;
    }
    return null;
  }

  /** An in-process consumer takes the next queued edge job (the Worker uses its Queue instead). */
  async takeEdgeJob(worker: string): Promise<Claim | null> {
    while (this.edgeQueue.length > 0) {
      const claim = this.claim(this.edgeQueue.shift()!, worker);
      if (claim) return claim;
    }
    return null;
  }

  private readonly idempotency = new Map<string, IdempotencyRecord>();

  async reserveIdempotencyKey(owner: string, key: string, id: string, fingerprint: string, pendingMs: number): Promise<IdempotencyRecord | null> {
    const slot = `${owner}:${key}`;
    const existing = this.idempotency.get(slot);
    const now = Date.now();
    if (await reservationHolds(existing, now, async (jobId) => this.records.has(jobId) || this.states.has(jobId))) return existing!;
    this.idempotency.set(slot, { id, fingerprint, at: now, pendingUntil: now + pendingMs });
    return null;
  }

  async releaseIdempotencyKey(owner: string, key: string, id: string): Promise<void> {
    if (this.idempotency.get(`${owner}:${key}`)?.id === id) this.idempotency.delete(`${owner}:${key}`);
  }

  /** Fires due timers (lapsed leases, lost dispatches, expiries), as Durable Object alarms do. */
  async tick(now = Date.now()): Promise<void> {
    for (const [id, at] of [...this.alarms]) {
      if (at <= now) {
        this.alarms.delete(id);
        this.transition(id, (s) => machine.onAlarm(s, now, this.policy));
      }
    }
    for (const id of [...this.records.keys(), ...this.states.keys()]) {
      const job = this.states.get(id)?.job ?? this.records.get(id)?.job;
      const state = this.states.get(id);
      const at = job && isFinal(job.status) ? expiresAt(job, this.jobTtlMs) : state ? machine.pausedExpiresAt(state, this.jobTtlMs, now) : null;
      if (at !== null && at <= now) this.remove(id);
    }
  }

  // ---------------------------------------------------------------- quotas and retention

  /** Per owner: the jobs admitted (async ones active until they end) and their charged bytes. */
  private readonly admitted = new Map<string, Map<string, { active: boolean; bytes: number; slots?: number }>>();

  async admit(owner: string, id: string, job: { active: boolean; bytes: number; slots?: number }, limits: QuotaLimits): Promise<Admission> {
    const usage = await this.usage(owner);
    if (job.active && usage.activeJobs + (job.slots ?? 1) > limits.maxActiveJobs) return { ok: false, code: "too_many_active_jobs", ...usage };
    if (limits.maxStoredBytes !== null && usage.storedBytes + job.bytes > limits.maxStoredBytes) return { ok: false, code: "storage_quota_exceeded", ...usage };
    const mine = this.admitted.get(owner) ?? new Map<string, { active: boolean; bytes: number; slots?: number }>();
    mine.set(id, { ...job });
    this.admitted.set(owner, mine);
    return { ok: true };
  }

  async cancelAdmission(owner: string, id: string): Promise<void> {
    this.admitted.get(owner)?.delete(id);
  }

  async reactivate(owner: string, id: string, limits: QuotaLimits): Promise<Admission> {
    const usage = await this.usage(owner); // the paused job is not among them
    return usage.activeJobs + 1 > limits.maxActiveJobs ? { ok: false, code: "too_many_active_jobs", ...usage } : { ok: true };
  }

  async usage(owner: string): Promise<Usage> {
    let activeJobs = 0;
    let storedBytes = 0;
    for (const [id, { active, bytes, slots }] of this.admitted.get(owner) ?? []) {
      storedBytes += bytes;
      const status = this.states.get(id)?.job.status;
      // a paused job's bytes count, but it is not active until it is resumed
      if (active && (status === undefined || (!isFinal(status) && status !== "paused"))) activeJobs += slots ?? 1;
    }
    return { activeJobs, storedBytes };
  }

  /** Open SSE streams per owner: stream id -> lease end (ms). */
  private readonly streams = new Map<string, Map<string, number>>();

  async openStream(owner: string, streamId: string, limits: StreamLimits): Promise<StreamAdmission> {
    const slots = this.streams.get(owner) ?? new Map<string, number>();
    const { admission, expired, leaseUntil } = admitStream(slots, streamId, Date.now(), limits);
    for (const id of expired) slots.delete(id);
    if (admission.ok) slots.set(streamId, leaseUntil);
    if (slots.size > 0) this.streams.set(owner, slots);
    else this.streams.delete(owner);
    return admission;
  }

  async renewStream(owner: string, streamId: string, leaseMs: number): Promise<void> {
    const slots = this.streams.get(owner) ?? new Map<string, number>();
    slots.set(streamId, Date.now() + leaseMs);
    this.streams.set(owner, slots);
  }

  async closeStream(owner: string, streamId: string): Promise<void> {
    const slots = this.streams.get(owner);
    slots?.delete(streamId);
    if (slots?.size === 0) this.streams.delete(owner);
  }

  async delete(id: string): Promise<boolean> {
    const job = this.states.get(id)?.job ?? this.records.get(id)?.job;
    if (!job || !isFinal(job.status)) return false;
    this.remove(id);
    return true;
  }

  /** What is stored, for tests that storage stays flat: records, logs, blobs, admissions, idempotency keys. */
  storedCounts(): { jobs: number; blobs: number; blobBytes: number; logs: number; admitted: number; idempotencyKeys: number } {
    let blobBytes = 0;
    for (const b of this.blobs.values()) blobBytes += b.byteLength;
    let admitted = 0;
    for (const m of this.admitted.values()) admitted += m.size;
    return {
      jobs: this.records.size + this.states.size,
      blobs: this.blobs.size,
      blobBytes,
      logs: this.eventLogs.size + this.histories.size,
      admitted,
      idempotencyKeys: this.idempotency.size,
    };
  }

  /** Removes everything of a job: record or state, logs, timers, blobs, admission, idempotency keys. */
  private remove(id: string): void {
    const owner = this.states.get(id)?.owner ?? this.records.get(id)?.owner;
    this.records.delete(id);
    this.states.delete(id);
    this.unlisted.delete(id);
    this.eventLogs.delete(id);
    this.histories.delete(id);
    this.alarms.delete(id);
    const prefixes = blobPrefixesOf(id);
    for (const key of [...this.blobs.keys()]) if (prefixes.some((p) => key.startsWith(p))) this.blobs.delete(key);
    for (const key of [...this.checkpointInfos.keys()]) if (prefixes.some((p) => key.startsWith(p))) this.checkpointInfos.delete(key);
    if (owner !== undefined) {
      this.admitted.get(owner)?.delete(id);
      if (this.admitted.get(owner)?.size === 0) this.admitted.delete(owner);
    }
    for (const [slot, record] of [...this.idempotency]) if (record.id === id) this.idempotency.delete(slot);
  }

  /** The lease of a running job (for tests that play a worker that dies). */
  leaseOf(id: string): string | null {
    return this.states.get(id)?.lease?.id ?? null;
  }

  private claim(id: string, worker: string): Claim | null {
    const r = this.transition(id, (s, now) => machine.claim(s, worker, now, this.policy, crypto.randomUUID()));
    if (!r || !r.lease) return null;
    const state = this.states.get(id)!;
    return { job: structuredClone(state.job), leaseId: r.lease.id, leaseMs: this.policy.leaseMs, attempt: state.attempt, ...(machine.firstRun(state) ? { fresh: true } : {}) };
  }

  /** Stores a state: its appended events and history go to the logs, the rest (bounded) is kept. */
  private save(unsaved: machine.JobState): void {
    const { state, log } = machine.drain(unsaved);
    const id = state.job.id;
    const events = this.eventLogs.get(id) ?? [];
    for (const e of structuredClone(log.events)) events.push(e);
    this.eventLogs.set(id, events);
    const history = log.resetHistory ? [] : (this.histories.get(id) ?? []);
    for (const h of structuredClone(log.history)) history.push(h);
    this.histories.set(id, history);
    this.states.set(id, state);
    for (const wake of [...(this.writeWaiters.get(id) ?? [])]) wake();
  }

  private holds(id: string, leaseId: string): boolean {
    const s = this.states.get(id);
    return s !== undefined && machine.holdsLease(s, leaseId);
  }

  private dispatch(id: string): void {
    const state = this.states.get(id)!;
    const queue = state.placement === "gpu-node" ? this.waiting : this.edgeQueue;
    if (!queue.includes(id)) queue.push(id);
    if (state.placement === "gpu-node" && (this.lastPollAt === null || Date.now() - this.lastPollAt > this.policy.leaseMs)) {
      this.transition(id, (s) => machine.waitingForNode(s));
    }
  }

  private transition<T extends { state: machine.JobState; effects: machine.Effects }>(
    id: string,
    fn: (s: machine.JobState, now: number) => T,
  ): T | null {
    const state = this.states.get(id);
    if (!state) return null;
    const r = fn(state, Date.now());
    if (r.state !== state) this.save(r.state);
    if (r.effects.alarmAt === null) this.alarms.delete(id);
    else if (r.effects.alarmAt !== undefined) this.alarms.set(id, r.effects.alarmAt);
    if (r.effects.enqueue) this.dispatch(id);
    const moved = r.state.job.status !== state.job.status || r.state.job.metrics?.history.at(-1)?.epoch !== state.job.metrics?.history.at(-1)?.epoch;
    if (r.state.job.parent !== undefined && moved) this.trialChanged(this.states.get(id)!);
    return r;
  }

  private async apply<T extends { state: machine.JobState; effects: machine.Effects }>(
    id: string,
    fn: (s: machine.JobState, now: number) => T,
  ): Promise<Omit<T, "state" | "effects">> {
    const r = this.transition(id, fn);
    if (!r) return { ok: false, cancel: false, accepted: false, changed: false } as unknown as Omit<T, "state" | "effects">;
    const { state: _s, effects: _e, ...rest } = r;
    // a trial's parent may have stopped it meanwhile (successive halving): its worker hears it in this answer
    if ("cancel" in rest && rest.cancel === false && r.state.job.parent !== undefined && this.states.get(id)?.cancelRequested) Object.assign(rest, { cancel: true });
    return rest;
  }
}
