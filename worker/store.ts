/**
 * The JobStore on Cloudflare: a Durable Object per job (its record), a Durable Object per
 * API key (its listing, newest first), and R2 for the weights.
 */
import { DurableObject } from "cloudflare:workers";
import { listingKey, type JobPage, type JobRecord, type JobStore } from "../src/jobs/store.js";

/** One job's record, strongly consistent, in the object's SQLite-backed storage. */
export class FineTuneJob extends DurableObject<Env> {
  async put(record: JobRecord): Promise<void> {
    await this.ctx.storage.put("record", record);
  }

  async get(): Promise<JobRecord | null> {
    return (await this.ctx.storage.get<JobRecord>("record")) ?? null;
  }
}

/** One owner's job ids, keyed so that listing in key order is newest first. */
export class JobIndex extends DurableObject<Env> {
  async add(key: string, id: string): Promise<void> {
    await this.ctx.storage.put(`job:${key}`, id);
  }

  async page(limit: number, after?: string): Promise<{ ids: string[]; nextCursor: string | null }> {
    const entries = await this.ctx.storage.list<string>({
      prefix: "job:",
      ...(after === undefined ? {} : { startAfter: `job:${after}` }),
      limit: limit + 1,
    });
    const keys = [...entries.keys()];
    const page = keys.slice(0, limit);
    return {
      ids: page.map((k) => entries.get(k)!),
      nextCursor: keys.length > limit ? page.at(-1)!.slice("job:".length) : null,
    };
  }
}

/**
 * JobStore over the JOBS and JOB_INDEX namespaces and the BLOBS bucket.
 *
 * @example
 * ```ts
 * const store = new CloudflareJobStore(env);
 * await store.put({ job, owner });
 * ```
 */
export class CloudflareJobStore implements JobStore {
  constructor(private readonly env: Env) {}

  private job(id: string) {
    return this.env.JOBS.get(this.env.JOBS.idFromName(id));
  }

  private index(owner: string) {
    return this.env.JOB_INDEX.get(this.env.JOB_INDEX.idFromName(`owner:${owner}`));
  }

  async put(record: JobRecord): Promise<void> {
    await this.job(record.job.id).put(record);
    await this.index(record.owner).add(listingKey(record.job.created_at, record.job.id), record.job.id);
  }

  async get(id: string): Promise<JobRecord | null> {
    return this.job(id).get();
  }

  async list(owner: string, options: { limit: number; cursor?: string | undefined }): Promise<JobPage> {
    const { ids, nextCursor } = await this.index(owner).page(options.limit, options.cursor);
    const records = await Promise.all(ids.map((id) => this.get(id)));
    return { records: records.filter((r): r is JobRecord => r !== null), nextCursor };
  }

  async putWeights(id: string, bytes: Uint8Array): Promise<void> {
    await this.env.BLOBS.put(`weights/${id}.safetensors`, bytes);
  }

  async getWeights(id: string): Promise<ReadableStream<Uint8Array> | null> {
    const object = await this.env.BLOBS.get(`weights/${id}.safetensors`);
    return object ? (object.body as ReadableStream<Uint8Array>) : null;
  }
}
