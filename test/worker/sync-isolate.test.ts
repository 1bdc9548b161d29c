/**
 * A sync job does not hold its isolate (issue 20, finding 8): inside workerd, while one key's
 * sync job trains, /healthz and another key's tiny sync jobs are answered before it ends (the
 * training loop gives the event loop a turn every SYNC_YIELD_MS, src/api/sync-yield.ts).
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../worker/index.js";
import { slowSyncJob } from "../helpers.js";
import { ownerIndex } from "./owner-index.js";

const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;
// a cost model that calls every job tiny, so that this one, which trains for seconds, runs sync;
// and a CPU budget of 10 minutes, so that on a loaded machine it does not stop itself at 10 s
// (over_budget) before its 1,000 epochs: this test is about the turns, not the budget
const e = { ...env, EDGETUNE_API_KEYS: "isolate-long,isolate-tiny", EDGE_MAX_CPU_MS: "600000", EDGE_FLOPS_PER_MS: "1e15", EDGE_BYTES_PER_MS: "1e15", EDGE_STEP_OVERHEAD_MS: "0", RATE_LIMIT_PER_MINUTE: "0" } as Env;
const call = (path: string, key?: string, body?: unknown, headers: Record<string, string> = {}) =>
  worker.fetch(
    new Request(`http://edgetune.test${path}`, {
      ...(body === undefined ? {} : { method: "POST", body: JSON.stringify(body) }),
      headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
    }),
    e,
    ctx,
  );

const tiny = (epochs = 1) => ({ mode: "sync", model: { layers: [{ type: "linear", in_features: 2, out_features: 1 }] }, data: { train: { x: [[0, 1], [1, 0]], y: [1, 0] } }, training: { epochs, batch_size: 2, loss: { type: "mse" } } });

describe("a sync job and its isolate in workerd", () => {
  it("while a sync job trains, /healthz and another key's tiny sync job are answered before it ends", { timeout: 120_000 }, async () => {
    let ended = false;
    const long = Promise.resolve(call("/v1/fine-tunes", "isolate-long", slowSyncJob(1000))).then((res) => {
      ended = true;
      return res;
    });
    // the long request is about to train once its owner's index has admitted it (its bytes
    // counted, right before training); asked without touching the request
    const index = await ownerIndex("isolate-long");
    while ((await index.usage()).storedBytes === 0) await new Promise((r) => setTimeout(r, 20));
    expect(ended).toBe(false);
    // then, one after another until it ends: health checks, and tiny jobs of another key
    let health = 0;
    let tinyJobs = 0;
    while (!ended) {
      const res = await call("/healthz");
      expect(res.status).toBe(200);
      if (!ended) health++;
      await new Promise((r) => setTimeout(r, 10));
      if (health % 5 !== 0) continue;
      const tinyRes = await call("/v1/fine-tunes", "isolate-tiny", tiny());
      expect(tinyRes.status).toBe(200);
      expect(((await tinyRes.json()) as { status: string }).status).toBe("succeeded");
      if (!ended) tinyJobs++;
    }
    // while it trained (seconds): without turns, none would be, past the moment training starts
    expect(health, "health checks answered while the job trained").toBeGreaterThanOrEqual(20);
    expect(tinyJobs, "tiny jobs answered while the job trained").toBeGreaterThanOrEqual(4);
    const res = await long;
    expect(res.status).toBe(200);
    const result = (await res.json()) as { status: string; metrics: { history: unknown[] } };
    expect(result.status).toBe("succeeded");
    expect(result.metrics.history).toHaveLength(1000);
  });
});
