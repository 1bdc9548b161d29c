/**
 * Server-Sent Events for a job: the stored events replayed from the start or after
 * Last-Event-ID, each with its sequence number as `id`.
 */

import type { JobEvent } from "../jobs/job.js";
import type { JobStore } from "../jobs/store.js";
import { STREAM_RENEW_MS, type StreamLimits } from "../jobs/streams.js";

/**
 * Formats events as an SSE text block.
 *
 * @example
 * ```ts
 * sseText([{ id: 1, event: "status", data: { status: "running" } }]);
 * // "id: 1\nevent: status\ndata: {\"status\":\"running\"}\n\n"
 * ```
 */
export function sseText(events: readonly JobEvent[]): string {
  return events.map((e) => `id: ${e.id}\nevent: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`).join("");
}

/**
 * The sequence number after which to resume: Last-Event-ID header or `last_event_id` query.
 *
 * @example
 * ```ts
 * resumeAfter(c.req.header("last-event-id"), c.req.query("last_event_id")); // 0 when absent
 * ```
 */
export function resumeAfter(header: string | undefined, query: string | undefined): number {
  const raw = header ?? query;
  const n = raw === undefined ? 0 : Number.parseInt(raw, 10);
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/** Headers of an SSE response. */
export const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no",
} as const;

/**
 * An open stream's slot under MAX_STREAMS_PER_KEY (JobStore.openStream): renewed while the
 * stream runs, given back once when it ends. Both are best effort: a renewal or a close that
 * fails (the isolate is going away) leaves the slot to lapse with its lease.
 *
 * @example
 * ```ts
 * const slot = streamSlot(store, owner, crypto.randomUUID(), DEFAULT_STREAM_LIMITS, Date.now());
 * await slot.renewIfDue(Date.now()); // in the stream's read loop
 * slot.close(); // when it ends
 * ```
 */
export function streamSlot(
  store: Pick<JobStore, "renewStream" | "closeStream">,
  owner: string,
  streamId: string,
  limits: StreamLimits,
  openedAt: number,
  waitUntil: (p: Promise<unknown>) => void = () => undefined,
): { renewIfDue(now: number): Promise<void>; close(): void } {
  let renewedAt = openedAt;
  let closed = false;
  return {
    async renewIfDue(now) {
      if (closed || now - renewedAt < Math.min(STREAM_RENEW_MS, limits.leaseMs / 3)) return;
      renewedAt = now;
      await store.renewStream(owner, streamId, limits.leaseMs).catch(() => undefined);
    },
    close() {
      if (closed) return;
      closed = true;
      waitUntil(store.closeStream(owner, streamId).catch(() => undefined));
    },
  };
}
