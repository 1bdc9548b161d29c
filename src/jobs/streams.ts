/**
 * The cap on concurrent SSE streams per key (issue 20, finding 6): each open `/events` stream
 * holds a slot in its owner's index for a lease it renews while it runs, and gives back when it
 * ends. A stream whose server died without giving its slot back (a crash, a killed isolate)
 * holds it only until its lease lapses, so a key is never locked out for longer than a lease.
 */

/** Streams a key may have open at once when MAX_STREAMS_PER_KEY is not set: two per active job (MAX_ACTIVE_JOBS_PER_KEY 8). */
export const DEFAULT_MAX_STREAMS_PER_KEY = 16;

/** How long a stream's slot lasts unless renewed: a live stream renews it every STREAM_RENEW_MS. */
export const STREAM_LEASE_MS = 60_000;

/** How often an open stream renews its slot: well inside the lease, so that a slow renewal does not lose it. */
export const STREAM_RENEW_MS = 20_000;

/** The stream limits of an API (AppDeps.streams). */
export interface StreamLimits {
  /** Concurrent streams per key (MAX_STREAMS_PER_KEY). */
  maxPerKey: number;
  /** A slot's lease, renewed while the stream is open. */
  leaseMs: number;
}

/** The default stream limits: 16 a key, 60 s leases. */
export const DEFAULT_STREAM_LIMITS: StreamLimits = { maxPerKey: DEFAULT_MAX_STREAMS_PER_KEY, leaseMs: STREAM_LEASE_MS };

/** Whether a stream may open; refused: how many are open, and when the soonest lease lapses. */
export type StreamAdmission = { ok: true } | { ok: false; open: number; retryAfterMs: number };

/**
 * Decides whether stream `id` may open given the owner's slots (stream id -> lease end, ms),
 * at time `now`: lapsed slots are dropped (`expired`, for the caller to delete), and the stream
 * is admitted while fewer than `limits.maxPerKey` remain; its slot (`leaseUntil`) is then for
 * the caller to store. A refusal's `retryAfterMs` is when the soonest live lease lapses (a slot
 * frees sooner when a stream ends). Pure: the Durable Object and the in-memory store share it.
 *
 * @example
 * ```ts
 * const slots = new Map([["s1", Date.now() + 60_000]]);
 * admitStream(slots, "s2", Date.now(), { maxPerKey: 1, leaseMs: 60_000 }).admission; // { ok: false, open: 1, ... }
 * ```
 */
export function admitStream(
  slots: ReadonlyMap<string, number>,
  id: string,
  now: number,
  limits: StreamLimits,
): { admission: StreamAdmission; expired: string[]; leaseUntil: number } {
  const expired: string[] = [];
  let open = 0;
  let soonest = Infinity;
  for (const [slot, until] of slots) {
    if (until <= now) expired.push(slot);
    else if (slot !== id) {
      open++;
      soonest = Math.min(soonest, until);
    }
  }
  const leaseUntil = now + limits.leaseMs;
  if (open < limits.maxPerKey) return { admission: { ok: true }, expired, leaseUntil };
  return { admission: { ok: false, open, retryAfterMs: Math.max(1000, soonest - now) }, expired, leaseUntil };
}
