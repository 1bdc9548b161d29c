/** The app wired for Node tests: the real engine and kernels, an in-process job store. */
import { createApp } from "../../src/api/app.js";
import { DEFAULT_EDGE_BUDGET, type EdgeBudget } from "../../src/api/budget.js";
import { MemoryJobStore } from "../../src/jobs/memory-store.js";
import { DEFAULT_LEASE_POLICY, type LeasePolicy } from "../../src/jobs/state.js";
import { MemoryRateLimiter, type RateLimitPolicy } from "../../src/api/rate-limit.js";
import type { QuotaLimits } from "../../src/jobs/store.js";
import type { StreamLimits } from "../../src/jobs/streams.js";
import { loadNodeRuntime } from "../../src/node/kernel-module.js";

export const NODE_TOKEN = "test-node-token";

export async function testApp(
  options: { apiKeys?: string[]; budget?: EdgeBudget; maxBodyBytes?: number; lease?: LeasePolicy; rateLimit?: RateLimitPolicy; corsOrigins?: string[]; clientAddressHeader?: string | null; quotas?: QuotaLimits; streams?: StreamLimits; jobTtlMs?: number; webhooks?: { key: Uint8Array; allowLocal: boolean }; /** another app's store, to serve the same jobs */ store?: MemoryJobStore } = {},
) {
  const runtime = await loadNodeRuntime();
  const lease = options.lease ?? DEFAULT_LEASE_POLICY;
  const store = options.store ?? new MemoryJobStore(lease, options.jobTtlMs === undefined ? {} : { jobTtlMs: options.jobTtlMs });
  const rateLimiter = options.rateLimit ? new MemoryRateLimiter(options.rateLimit) : null;
  const app = createApp(() => ({
    runtime,
    store,
    apiKeys: options.apiKeys ?? [],
    budget: options.budget ?? DEFAULT_EDGE_BUDGET,
    maxBodyBytes: options.maxBodyBytes ?? 8 * 1024 * 1024,
    version: "test",
    lease,
    nodeTokens: [NODE_TOKEN],
    pollMs: 10,
    rateLimiter,
    corsOrigins: options.corsOrigins ?? [],
    clientAddressHeader: options.clientAddressHeader ?? null,
    ...(options.quotas ? { quotas: options.quotas } : {}),
    ...(options.streams ? { streams: options.streams } : {}),
    ...(options.webhooks ? { webhooks: options.webhooks } : {}),
  }));
  return { app, store, runtime };
}
