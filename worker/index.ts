/**
 * The Cloudflare Worker: the edgetune app with its Worker dependencies. The kernel core is
 * imported as a compiled WebAssembly.Module (Workers refuse to compile bytes at run time).
 */
import { env } from "cloudflare:workers";
import simdKernels from "../build/wasm/simd.wasm";
import { createApp } from "../src/api/app.js";
import { parseApiKeys, warnIfOpen } from "../src/api/auth.js";
import { DEFAULT_EDGE_BUDGET } from "../src/api/budget.js";
import type { EngineRuntime } from "../src/engine/train.js";
import { CloudflareJobStore } from "./store.js";

export { FineTuneJob, JobIndex } from "./store.js";

// wrangler dev prints this at start-up when no key is configured (.dev.vars or --var)
warnIfOpen(parseApiKeys(env.EDGETUNE_API_KEYS));

const runtime: EngineRuntime = { module: simdKernels, variant: "wasm-simd", runtime: "workerd" };
const VERSION = "0.1.0";

const number = (value: string | undefined, fallback: number) => {
  const n = Number(value);
  return value !== undefined && Number.isFinite(n) && n > 0 ? n : fallback;
};

const app = createApp<Env>((c) => ({
  runtime,
  store: new CloudflareJobStore(c.env),
  apiKeys: parseApiKeys(c.env.EDGETUNE_API_KEYS),
  budget: {
    maxFlops: number(c.env.EDGE_MAX_FLOPS, DEFAULT_EDGE_BUDGET.maxFlops),
    maxMemoryBytes: number(c.env.EDGE_MAX_MEMORY_BYTES, DEFAULT_EDGE_BUDGET.maxMemoryBytes),
  },
  maxBodyBytes: number(c.env.MAX_BODY_BYTES, 64 * 1024 * 1024),
  version: VERSION,
}));

export default {
  fetch: app.fetch,
} satisfies ExportedHandler<Env>;
