/**
 * Where jobs live: the interface the API talks to. The Worker implements it with a Durable
 * Object per job, a Durable Object index per API key and R2 for weights (worker/store.ts);
 * Node processes and tests use the in-process MemoryJobStore.
 */
import type { Job } from "../schema/job.js";

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

/**
 * Persistence for jobs and their weights.
 *
 * @example
 * ```ts
 * await store.putWeights(job.id, bytes);
 * await store.put({ job, owner });
 * const again = await store.get(job.id);
 * ```
 */
export interface JobStore {
  /** Creates or replaces a job record (and adds it to its owner's listing). */
  put(record: JobRecord): Promise<void>;
  get(id: string): Promise<JobRecord | null>;
  /** The owner's jobs, newest first; `cursor` is a previous page's nextCursor. */
  list(owner: string, options: { limit: number; cursor?: string | undefined }): Promise<JobPage>;
  putWeights(id: string, bytes: Uint8Array): Promise<void>;
  /** The weights file, or null when the job has none. */
  getWeights(id: string): Promise<ReadableStream<Uint8Array> | Uint8Array | null>;
}

/**
 * A listing key that sorts newest first: the creation time inverted, then the id.
 *
 * @example
 * ```ts
 * listingKey("2026-11-29T12:00:00.000Z", "ft_1") < listingKey("2026-11-29T11:00:00.000Z", "ft_2"); // true
 * ```
 */
export function listingKey(createdAt: string, id: string): string {
  const inverted = 9_999_999_999_999 - Date.parse(createdAt);
  return `${String(inverted).padStart(13, "0")}:${id}`;
}
