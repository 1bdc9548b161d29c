/** The app wired for Node tests: the real engine and kernels, an in-process job store. */
import { createApp } from "../../src/api/app.js";
import { DEFAULT_EDGE_BUDGET, type EdgeBudget } from "../../src/api/budget.js";
import { MemoryJobStore } from "../../src/jobs/memory-store.js";
import { loadNodeRuntime } from "../../src/node/kernel-module.js";

export async function testApp(options: { apiKeys?: string[]; budget?: EdgeBudget; maxBodyBytes?: number } = {}) {
  const runtime = await loadNodeRuntime();
  const store = new MemoryJobStore();
  const app = createApp(() => ({
    runtime,
    store,
    apiKeys: options.apiKeys ?? [],
    budget: options.budget ?? DEFAULT_EDGE_BUDGET,
    maxBodyBytes: options.maxBodyBytes ?? 8 * 1024 * 1024,
    version: "test",
  }));
  return { app, store };
}
