/**
 * An in-process JobStore: jobs and weights in Maps. For Node processes and tests; nothing
 * survives the process.
 */
import { listingKey, type JobPage, type JobRecord, type JobStore } from "./store.js";

/**
 * @example
 * ```ts
 * const app = createApp(() => ({ ...deps, store: new MemoryJobStore() }));
 * ```
 */
export class MemoryJobStore implements JobStore {
  private readonly records = new Map<string, JobRecord>();
  private readonly weights = new Map<string, Uint8Array>();

  async put(record: JobRecord): Promise<void> {
    this.records.set(record.job.id, structuredClone(record));
  }

  async get(id: string): Promise<JobRecord | null> {
    const r = this.records.get(id);
    return r ? structuredClone(r) : null;
  }

  async list(owner: string, options: { limit: number; cursor?: string | undefined }): Promise<JobPage> {
    const keyed = [...this.records.values()]
      .filter((r) => r.owner === owner)
      .map((r) => ({ key: listingKey(r.job.created_at, r.job.id), r }))
      .sort((a, b) => (a.key < b.key ? -1 : 1))
      .filter((e) => options.cursor === undefined || e.key > options.cursor);
    const page = keyed.slice(0, options.limit);
    const more = keyed.length > options.limit;
    return { records: page.map((e) => structuredClone(e.r)), nextCursor: more ? page.at(-1)!.key : null };
  }

  async putWeights(id: string, bytes: Uint8Array): Promise<void> {
    this.weights.set(id, bytes.slice());
  }

  async getWeights(id: string): Promise<Uint8Array | null> {
    return this.weights.get(id) ?? null;
  }
}
