/**
 * Server-Sent Events for a job: the stored events replayed from the start or after
 * Last-Event-ID, each with its sequence number as `id`.
 */

import type { JobEvent } from "../jobs/job.js";

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
