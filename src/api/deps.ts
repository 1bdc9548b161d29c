/**
 * What the API needs from its runtime, injected per request by the entry (worker/index.ts,
 * or a Node process): the kernel module, storage, keys, budgets.
 */
import type { EngineRuntime } from "../engine/run-types.js";
import type { Claim, JobStore, QuotaLimits } from "../jobs/store.js";
import type { LeasePolicy } from "../jobs/state.js";
import type { StreamLimits } from "../jobs/streams.js";
import type { EdgeBudget } from "./budget.js";
import type { RateLimiter } from "./rate-limit.js";

export interface AppDeps {
  runtime: EngineRuntime;
  store: JobStore;
  /** Configured API keys (EDGETUNE_API_KEYS); empty = open API where allowOpen, else 503. */
  apiKeys: string[];
  /**
   * Whether an API without keys serves everyone (default true: the Node server and tests). The
   * Worker allows it only in local development or with EDGETUNE_ALLOW_OPEN=true.
   */
  allowOpen?: boolean;
  budget: EdgeBudget;
  /**
   * Largest request body accepted, in bytes: the create and explain bodies, parsed in the isolate
   * (MAX_BODY_BYTES, 16 MiB in the Worker: 3.5x that parsed fits the 128 MB isolate).
   */
  maxBodyBytes: number;
  /** Largest weights upload of a GPU node, in bytes (kept as bytes, never parsed): MAX_UPLOAD_BYTES; maxBodyBytes when absent. */
  maxUploadBytes?: number;
  /** The build, reported by /healthz. */
  version: string;
  /** Lease length and retries of asynchronous jobs. */
  lease: LeasePolicy;
  /** Tokens GPU nodes authenticate with (EDGETUNE_NODE_TOKENS). */
  nodeTokens: string[];
  /**
   * The longest one read of an SSE stream waits for its job's next write, in ms (the store wakes
   * it at a write): how often an idle stream calls the store, and its keep-alive pace.
   */
  pollMs: number;
  /** Per-key request limits for /v1/fine-tunes (null: unlimited). */
  rateLimiter: RateLimiter | null;
  /**
   * The header that carries the client's address, for the rate limits of an open API:
   * "cf-connecting-ip" where Cloudflare sets it (a deployed Worker, where a client's own value is
   * replaced); absent where any client could send it (wrangler dev, Node): anonymous callers
   * then share one bucket.
   */
  clientAddressHeader?: string | null;
  /** Per-key quotas (MAX_ACTIVE_JOBS_PER_KEY, MAX_STORED_BYTES_PER_KEY); default DEFAULT_QUOTAS (8 active jobs, bytes unlimited). */
  quotas?: QuotaLimits;
  /**
   * Webhook signing: the key of EDGETUNE_WEBHOOK_SECRET, and whether http://localhost URLs are
   * allowed (local development). null or absent: a request with a webhook is refused (503).
   */
  webhooks?: { key: Uint8Array; allowLocal: boolean } | null;
  /**
   * Concurrent SSE streams per key (MAX_STREAMS_PER_KEY) and the lease of a stream's slot;
   * default DEFAULT_STREAM_LIMITS (16 streams, 60 s leases). Beyond it: 429 too_many_streams.
   */
  streams?: StreamLimits;
  /**
   * Starts an accepted async edge job in the request that accepted it, with its run input
   * already in memory, instead of waiting for its Queue message (issue 16 item 3; docs/api.md,
   * "Async edge jobs start at once"): only jobs whose estimated CPU time (budget.ts jobCpuMs) is
   * at most `maxCpuMs`. The job is stored, dispatched and claimed for DIRECT_START_WORKER as
   * any async job is stored and dispatched (JobStore.submit with `claimAs`); `start` gets the
   * claim, returns at once, and the Worker trains it under `ctx.waitUntil`. A start that fails
   * or is cut off costs a lease period, never the job; the Queue message finds the job claimed
   * and is acknowledged. Absent or null (the Node server): every job waits for its dispatch.
   */
  directStart?: { maxCpuMs: number; start(claim: Claim, input: Uint8Array): void } | null;
  /** Origins allowed to call the API from a browser (CORS); ["*"] for any, [] for none. */
  corsOrigins: string[];
}

/** Hono environment of the edgetune app: deps and the authenticated owner. */
export type AppEnv = { Variables: { deps: AppDeps; owner: string } };
