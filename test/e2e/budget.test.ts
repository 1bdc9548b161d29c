/**
 * Budgets on a real `wrangler dev` with wrangler.toml's defaults (issue 21):
 * - the finding's memory-bound job, Linear(2048, 2048) at batch size 1 with SGD, sent with
 *   mode "auto", is offloaded (202) or answers within 1.5x its estimate: the cost model prices
 *   its weight traffic, and a sync run stops itself at the budget (over_budget) rather than overrun;
 * - a JSON body past MAX_BODY_BYTES is refused (413 naming the body, with the binary-dataset
 *   hint), and the server still answers the next request.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_EDGE_BUDGET, estimateCpuMs, stepTrafficBytes } from "../../src/api/budget.js";
import type { OptimizerSpec } from "../../src/schema/request.js";
import { freePort, pastWranglerProxy503, startWranglerDev, stop, type Proc } from "./processes.js";

const work = mkdtempSync(join(tmpdir(), "edgetune-budget-e2e-"));

describe("budgets through wrangler dev (issue 21)", () => {
  let base = "";
  let edge: Proc | undefined;
  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    edge = await startWranglerDev(port, join(work, "state"), { RATE_LIMIT_PER_MINUTE: "0" });
  }, 90_000);
  afterAll(async () => {
    await stop(edge);
    rmSync(work, { recursive: true, force: true });
  });

  it("Linear(2048, 2048), batch size 1, SGD, mode auto: offloaded, or finished within 1.5x its estimate", async () => {
    const rows = 16;
    const x = Array.from({ length: rows }, (_, i) => Array.from({ length: 2048 }, (_, j) => Math.round(Math.sin(i + j) * 100) / 100));
    const body = {
      model: { layers: [{ type: "linear", in_features: 2048, out_features: 2048 }] },
      data: { train: { x, y: x } },
      training: { epochs: 36, batch_size: 1, shuffle: false, optimizer: { type: "sgd", lr: 0.01 }, loss: { type: "mse" } },
    };
    const t0 = performance.now();
    const res = await fetch(`${base}/v1/fine-tunes`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const wallMs = performance.now() - t0;
    const answer = (await res.json()) as { status: string; plan: { params: number; trainable_params: number; flops: number; steps: number; placement: string }; metrics: { duration_ms: number; steps: number }; error?: { code: string } };
    expect([200, 202]).toContain(res.status);
    const sgd = { type: "sgd", lr: 0.01, momentum: 0 } as OptimizerSpec;
    const estimateMs = estimateCpuMs(answer.plan, DEFAULT_EDGE_BUDGET, stepTrafficBytes(answer.plan, sgd, "float32"));
    console.log(`[e2e] Linear(2048, 2048) batch 1: ${res.status} ${answer.status} (${answer.error?.code ?? "-"}), estimate ${(estimateMs / 1000).toFixed(1)} s, ${res.status === 200 ? `trained ${(answer.metrics.duration_ms / 1000).toFixed(1)} s, ${answer.metrics.steps} of ${answer.plan.steps} steps, ` : ""}answered in ${(wallMs / 1000).toFixed(1)} s`);
    if (res.status === 202) {
      expect(answer.plan.placement).toBe("gpu-node");
      return;
    }
    expect(estimateMs).toBeLessThanOrEqual(DEFAULT_EDGE_BUDGET.maxCpuMs); // admitted: the estimate fits
    // it ran to the end, or stopped itself at the budget with the weights so far
    if (answer.status !== "succeeded") expect(answer).toMatchObject({ status: "cancelled", error: { code: "over_budget" } });
    expect(answer.metrics.duration_ms).toBeLessThanOrEqual(1.5 * estimateMs);
    expect(wallMs).toBeLessThanOrEqual(1.5 * estimateMs);
  }, 120_000);

  it("a JSON body past MAX_BODY_BYTES is a 413 naming the body with the binary-dataset hint; the next request is answered", async () => {
    const big = JSON.stringify({ data: { train: { x: Array.from({ length: 20_000 }, () => Array.from({ length: 100 }, (_, j) => j + 0.123456)) } } });
    expect(big.length).toBeGreaterThan(16 * 1024 * 1024);
    const res = await pastWranglerProxy503(() => fetch(`${base}/v1/fine-tunes`, { method: "POST", headers: { "content-type": "application/json" }, body: big }));
    expect(res.status).toBe(413);
    const problem = (await res.json()) as { code: string; detail: string; errors: { path: string }[] };
    expect(problem.code).toBe("payload_too_large");
    expect(problem.errors[0]!.path).toBe("(body)");
    expect(problem.detail).toMatch(/safetensors/);
    const next = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(30_000) });
    expect(next.status).toBe(200);
  }, 120_000);
});
