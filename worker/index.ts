/**
 * The Cloudflare Worker: the edgetune app (fetch) and the dispatch queue's consumer (queue).
 * The kernel core is imported as a compiled WebAssembly.Module (Workers refuse to compile
 * bytes at run time).
 */
import { env as startupEnv } from "cloudflare:workers";
// workerd's V8 has relaxed SIMD: the build with fused multiply-add (relaxed_madd), whose parity
// with PyTorch test/worker/parity.test.ts checks inside workerd
import relaxedKernels from "../build/wasm/relaxed-simd.wasm";
import { createApp } from "../src/api/app.js";
import { acceptedNodeTokens, DEV_NODE_TOKEN, parseApiKeys, warnIfOpen } from "../src/api/auth.js";
import { DEFAULT_EDGE_BUDGET, DIRECT_START_MAX_MS } from "../src/api/budget.js";
import { DEFAULT_MAX_ACTIVE_JOBS } from "../src/jobs/store.js";
import { DEFAULT_MAX_STREAMS_PER_KEY, STREAM_LEASE_MS } from "../src/jobs/streams.js";
import type { EngineRuntime } from "../src/engine/train.js";
import type { AppDeps } from "../src/api/deps.js";
import type { Claim } from "../src/jobs/store.js";
import { runClaimedJob } from "../src/jobs/runner.js";
import { deliverWebhook, webhookKey } from "../src/jobs/webhook.js";
import { CloudflareJobStore, DurableRateLimiter, leasePolicy, type DispatchMessage } from "./store.js";

export { FineTuneJob, JobIndex, JobDispatcher, RateLimitBucket } from "./store.js";

/**
 * Local development is marked explicitly (EDGETUNE_DEV=true: `npm run dev`, `npm run dev:edge`,
 * .dev.vars); anything else, a deployed Worker or a bare `wrangler dev`, is treated as production:
 * no public development node token, and no open API unless EDGETUNE_ALLOW_OPEN=true.
 */
const isLocalDev = (env: Env) => env.EDGETUNE_DEV === "true";
const allowsOpen = (env: Env) => isLocalDev(env) || env.EDGETUNE_ALLOW_OPEN === "true";

// wrangler dev (and `wrangler tail`) print these at start-up
if (parseApiKeys(startupEnv.EDGETUNE_API_KEYS).length === 0) {
  if (allowsOpen(startupEnv)) warnIfOpen([]);
  else console.warn("edgetune: EDGETUNE_API_KEYS is not set, so /v1/fine-tunes answers 503 until it is (or EDGETUNE_ALLOW_OPEN=true).");
}
if (parseApiKeys(startupEnv.EDGETUNE_NODE_TOKENS).length === 0) {
  console.warn(
    isLocalDev(startupEnv)
      ? `edgetune: EDGETUNE_NODE_TOKENS is not set; GPU nodes authenticate with the development token "${DEV_NODE_TOKEN}" (EDGETUNE_DEV=true).`
      : "edgetune: EDGETUNE_NODE_TOKENS is not set, so /v1/nodes answers 503 and no GPU node can claim jobs.",
  );
}

const runtime: EngineRuntime = { module: relaxedKernels, variant: "wasm-relaxed-simd", runtime: "workerd" };
const VERSION = "0.1.0";

const number = (value: string | undefined, fallback: number) => {
  const n = Number(value);
  return value !== undefined && Number.isFinite(n) && n > 0 ? n : fallback;
};


const app = createApp<Env>((c) => ({
  runtime,
  store: new CloudflareJobStore(c.env),
  apiKeys: parseApiKeys(c.env.EDGETUNE_API_KEYS),
  allowOpen: allowsOpen(c.env),
  budget: {
    maxCpuMs: number(c.env.EDGE_MAX_CPU_MS, DEFAULT_EDGE_BUDGET.maxCpuMs),
    maxMemoryBytes: number(c.env.EDGE_MAX_MEMORY_BYTES, DEFAULT_EDGE_BUDGET.maxMemoryBytes),
    flopsPerMs: number(c.env.EDGE_FLOPS_PER_MS, DEFAULT_EDGE_BUDGET.flopsPerMs),
    bytesPerMs: number(c.env.EDGE_BYTES_PER_MS, DEFAULT_EDGE_BUDGET.bytesPerMs!),
    stepOverheadMs: number(c.env.EDGE_STEP_OVERHEAD_MS, DEFAULT_EDGE_BUDGET.stepOverheadMs),
    paramOverheadMs: number(c.env.EDGE_PARAM_OVERHEAD_MS, DEFAULT_EDGE_BUDGET.paramOverheadMs!),
    epochOverheadMs: number(c.env.EDGE_EPOCH_OVERHEAD_MS, DEFAULT_EDGE_BUDGET.epochOverheadMs!),
  },
  maxBodyBytes: number(c.env.MAX_BODY_BYTES, 16 * 1024 * 1024),
  maxUploadBytes: number(c.env.MAX_UPLOAD_BYTES, 64 * 1024 * 1024),
  version: VERSION,
  lease: leasePolicy(c.env),
  nodeTokens: acceptedNodeTokens(c.env.EDGETUNE_NODE_TOKENS, isLocalDev(c.env)),
  pollMs: number(c.env.SSE_POLL_MS, 15_000),
  rateLimiter:
    c.env.RATE_LIMIT_PER_MINUTE === "0"
      ? null
      : new DurableRateLimiter(c.env, { burst: number(c.env.RATE_LIMIT_BURST, 60), perMinute: number(c.env.RATE_LIMIT_PER_MINUTE, 600) }),
  streams: { maxPerKey: number(c.env.MAX_STREAMS_PER_KEY, DEFAULT_MAX_STREAMS_PER_KEY), leaseMs: STREAM_LEASE_MS },
  corsOrigins: parseApiKeys(c.env.CORS_ORIGINS),
  // Cloudflare sets CF-Connecting-IP on a deployed Worker; under `wrangler dev` a client can send any
  clientAddressHeader: isLocalDev(c.env) ? null : "cf-connecting-ip",
  webhooks: webhooksOf(c.env),
  quotas: {
    maxActiveJobs: number(c.env.MAX_ACTIVE_JOBS_PER_KEY, DEFAULT_MAX_ACTIVE_JOBS),
    // unset or "0": no storage limit
    maxStoredBytes: number(c.env.MAX_STORED_BYTES_PER_KEY, 0) || null,
  },
  directStart: directStartOf(c.env, (run) => {
    try {
      c.executionCtx.waitUntil(run);
    } catch {
      // called without an execution context (a unit call of fetch): the run goes on unattended
    }
  }),
}));

/**
 * Async edge jobs estimated at most EDGE_DIRECT_START_MAX_MS of CPU (default DIRECT_START_MAX_MS;
 * "0": never) start in the request that accepted them, under waitUntil (docs/api.md, "Async edge
 * jobs start at once").
 */
function directStartOf(env: Env, waitUntil: (run: Promise<void>) => void): AppDeps["directStart"] {
  const limit: string | undefined = env.EDGE_DIRECT_START_MAX_MS;
  const maxCpuMs = limit === undefined ? DIRECT_START_MAX_MS : Number(limit);
  if (!Number.isFinite(maxCpuMs) || maxCpuMs <= 0) return null;
  return { maxCpuMs, start: (claim, input) => waitUntil(runDirect(env, claim, input)) };
}

/**
 * Trains a job its accepting request has claimed, from `input` (its stored run input, still in
 * memory). The claim was the job's Durable Object's one transition from queued, so the queue
 * consumer that its message starts finds the job running (or ended) and does nothing. A run that
 * throws or is cut off leaves its lease to lapse: the job's alarm queues it again.
 */
async function runDirect(env: Env, claim: Claim, input: Uint8Array): Promise<void> {
  try {
    // training holds the isolate's thread until its first report: the 202 goes out first
    await new Promise((resolve) => setTimeout(resolve, 0));
    await runClaimedJob(new CloudflareJobStore(env).channel, claim, runtime, { placement: "edge", input });
  } catch (e) {
    console.warn(`edgetune: job ${claim.job.id}, started at once, stopped: ${String(e)}; its lease will lapse and the job be queued again`);
  }
}

/** Webhook signing from EDGETUNE_WEBHOOK_SECRET (null: not configured); localhost URLs only in local development. */
function webhooksOf(env: Env): { key: Uint8Array; allowLocal: boolean } | null {
  const key = webhookKey((env as { EDGETUNE_WEBHOOK_SECRET?: string }).EDGETUNE_WEBHOOK_SECRET);
  return key ? { key, allowLocal: isLocalDev(env) } : null;
}

/**
 * A failed delivery is retried after WEBHOOK_RETRY_SECONDS (default 30) times 2^(attempt - 1),
 * at most an hour: 30 s, 1 min, 2 min with the queue's max_retries = 3.
 */
function webhookRetryDelay(env: Env, attempts: number): number {
  return Math.min(3600, number(env.WEBHOOK_RETRY_SECONDS, 30) * 2 ** Math.max(0, attempts - 1));
}

/** Delivers an ended job's webhook; false when it should be retried. */
async function sendWebhook(store: CloudflareJobStore, env: Env, id: string): Promise<boolean> {
  const record = await store.get(id);
  const webhooks = webhooksOf(env);
  // expired or deleted meanwhile, or the secret was removed: nothing to send
  if (!record?.job.webhook || !webhooks) return true;
  const { ok, status } = await deliverWebhook(record.job.webhook.url, webhooks.key, record.job);
  if (!ok) console.warn(`edgetune: webhook of ${id} answered ${status ?? "no response"}; retrying`);
  return ok;
}

/**
 * The dispatch queue: a GPU job is handed to the dispatcher for nodes to claim; an edge job
 * is claimed and trained right here. A message that fails max_retries times lands in the
 * dead-letter queue, whose consumer ends the job as failed with the reason.
 */
async function queue(batch: MessageBatch<DispatchMessage>, env: Env, _ctx: ExecutionContext): Promise<void> {
  const store = new CloudflareJobStore(env);
  for (const message of batch.messages) {
    const { id } = message.body;
    if (message.body.webhook) {
      if (batch.queue.endsWith("-dlq")) console.warn(`edgetune: the webhook of ${id} was not delivered after ${message.attempts} attempts; giving up`);
      else if (!(await sendWebhook(store, env, id))) {
        message.retry({ delaySeconds: webhookRetryDelay(env, message.attempts) });
        continue;
      }
      message.ack();
      continue;
    }
    if (batch.queue.endsWith("-dlq")) {
      await store.job(id).fail(`the job could not be dispatched after ${message.attempts} deliveries`);
      message.ack();
      continue;
    }
    const route = await store.route(id);
    if (route === "edge") {
      const claim = await store.job(id).claim("edge-queue-consumer");
      if (claim) await runClaimedJob(store.channel, claim, runtime, { placement: "edge" });
    }
    message.ack();
  }
}

export default {
  fetch: app.fetch,
  queue,
} satisfies ExportedHandler<Env, DispatchMessage>;
