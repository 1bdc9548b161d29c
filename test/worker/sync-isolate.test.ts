/**
 * A sync job does not hold its isolate (issue 20, finding 8): inside workerd, while one key's
 * sync job trains, /healthz and another key's tiny sync job are answered before it ends (the
 * training loop gives the event loop a turn every SYNC_YIELD_MS, src/api/sync-yield.ts).
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../worker/index.js";
import { lcg } from "../helpers.js";

const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;
// a cost model that calls every job tiny, so that this one, which trains for seconds, runs sync
const e = { ...env, EDGETUNE_API_KEYS: "isolate-long,isolate-tiny", EDGE_FLOPS_PER_MS: "1e15", EDGE_BYTES_PER_MS: "1e15", EDGE_STEP_OVERHEAD_MS: "0", RATE_LIMIT_PER_MINUTE: "0" } as Env;
const call = (path: string, key?: string, body?: unknown, headers: Record<string, string> = {}) =>
  worker.fetch(
    new Request(`http://edgetune.test${path}`, {
      ...(body === undefined ? {} : { method: "POST", body: JSON.stringify(body) }),
      headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
    }),
    e,
    ctx,
  );

/** 64 -> 256 -> 10 on 2,000 rows for 300 epochs: seconds of training. */
function longJob() {
  const rand = lcg(5);
  const x = Array.from({ length: 2000 }, () => Array.from({ length: 64 }, () => Math.round(rand() * 256) / 256));
  const y = x.map((r) => (r[0]! > 0.5 ? 1 : 0) + (r[1]! > 0.5 ? 2 : 0));
  return {
    mode: "sync",
    model: { layers: [{ type: "linear", in_features: 64, out_features: 256 }, { type: "relu" }, { type: "linear", in_features: 256, out_features: 10 }] },
    data: { train: { x, y } },
    training: { epochs: 300, batch_size: 32, loss: { type: "cross_entropy" }, optimizer: { type: "adam", lr: 1e-3 } },
  };
}

const tiny = (epochs = 1) => ({ mode: "sync", model: { layers: [{ type: "linear", in_features: 2, out_features: 1 }] }, data: { train: { x: [[0, 1], [1, 0]], y: [1, 0] } }, training: { epochs, batch_size: 2, loss: { type: "mse" } } });

describe("a sync job and its isolate in workerd", () => {
  it("while a sync job trains, /healthz and another key's tiny sync job are answered before it ends", { timeout: 120_000 }, async () => {
    let ended = false;
    const long = Promise.resolve(call("/v1/fine-tunes", "isolate-long", longJob(), { "idempotency-key": "isolate-long-1" })).then((res) => {
      ended = true;
      return res;
    });
    // the long request is past its checks once its Idempotency-Key is taken: a different request
    // with the key is then refused as a reuse (its reservation comes right before training)
    for (let reserved = false; !reserved; ) {
      await new Promise((r) => setTimeout(r, 20));
      const probe = await call("/v1/fine-tunes", "isolate-long", tiny(2), { "idempotency-key": "isolate-long-1" });
      const code = ((await probe.json()) as { code?: string }).code;
      expect(probe.status, "the probe took the key before the long request did").not.toBe(200);
      reserved = code === "idempotency_key_reused";
    }
    // then, one after another: 50 health checks and 10 tiny jobs of another key, each answered
    // while the long job is still training
    for (let i = 0; i < 50; i++) {
      const health = await call("/healthz");
      expect(health.status).toBe(200);
      expect(ended, `the long job ended before health check ${i + 1} (train it longer)`).toBe(false);
      await new Promise((r) => setTimeout(r, 10));
    }
    for (let i = 0; i < 10; i++) {
      const res = await call("/v1/fine-tunes", "isolate-tiny", tiny());
      expect(res.status).toBe(200);
      expect(((await res.json()) as { status: string }).status).toBe("succeeded");
      expect(ended, `the long job ended before tiny job ${i + 1} (train it longer)`).toBe(false);
    }
    const res = await long;
    expect(res.status).toBe(200);
    const result = (await res.json()) as { status: string; metrics: { history: unknown[] } };
    expect(result.status).toBe("succeeded");
    expect(result.metrics.history).toHaveLength(300);
  });
});
