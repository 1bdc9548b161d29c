/**
 * POST /v1/fine-tunes/{id}/explain past the in-Worker budget, end to end with real processes:
 * `wrangler dev` (Durable Objects, R2, the dispatcher) answers 202, a GPU node process claims the
 * explanation task, computes it and uploads it, and GET .../explanations/{eid} returns it. The
 * same specs are then computed in the Worker (the same state, `wrangler dev` restarted with the
 * default budget) and must agree within 1e-5.
 *
 * The budget is made small through the cost model's rate (EDGE_FLOPS_PER_MS 1000 instead of
 * 2e7): the training run still fits (about 0.1 s), the explanations below (seconds) do not.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, freePort, smallGpuJob, startGpuNode, startWranglerDev, stop, type Proc } from "./processes.js";

const work = mkdtempSync(join(tmpdir(), "edgetune-explain-e2e-"));
const persist = join(work, "state");
const SMALL_BUDGET = { LEASE_SECONDS: "2", EDGE_FLOPS_PER_MS: "1000", EDGE_MAX_CPU_MS: "2000" };

interface Explanations {
  method: string;
  feature_names: string[];
  attributions: number[][];
  feature_importance: number[];
  convergence_delta?: number[];
}

describe("an explanation over the in-Worker budget runs on a GPU node process", () => {
  let port = 0;
  let base = "";
  let edge: Proc | undefined;
  let node: Proc | undefined;

  beforeAll(async () => {
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    edge = await startWranglerDev(port, persist, SMALL_BUDGET);
  });
  afterAll(async () => {
    await stop(node, "SIGKILL");
    await stop(edge);
    rmSync(work, { recursive: true, force: true });
  });

  const post = (path: string, body: unknown) => fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

  it("202, the node computes it, and it equals the in-Worker result of the same spec within 1e-5", async () => {
    const { mode: _mode, placement: _placement, ...request } = smallGpuJob();
    const created = await post("/v1/fine-tunes", { ...request, mode: "sync" });
    expect(created.status).toBe(200);
    const { id } = (await created.json()) as { id: string };

    const specs = [
      { method: "kernel_shap", target: 1 },
      { method: "integrated_gradients", steps: 1024, target: "predicted" },
    ];
    // placement "edge" keeps the old answer: over the budget is a 422 that names the way out
    const refused = await post(`/v1/fine-tunes/${id}/explain`, { ...specs[0], placement: "edge" });
    expect(refused.status).toBe(422);
    expect(((await refused.json()) as { code: string }).code).toBe("over_budget");

    const locations: string[] = [];
    for (const spec of specs) {
      const res = await post(`/v1/fine-tunes/${id}/explain`, spec);
      expect(res.status).toBe(202);
      expect(await res.json()).toMatchObject({ object: "explanation", fine_tune: id, status: "queued", placement: "gpu-node" });
      locations.push(res.headers.get("location")!);
    }
    node = startGpuNode(port, "explain-node", { EDGETUNE_WEBGPU: "0", EDGETUNE_THREADS: "2" });
    const onNode: Explanations[] = [];
    for (const location of locations) {
      const done = await eventually(`${location} to end`, 90_000, async () => {
        const e = (await (await fetch(`${base}${location}`)).json()) as { status: string; result: Explanations | null; engine: { kernel: string; runtime: string } | null };
        return e.status === "queued" || e.status === "running" ? undefined : e;
      });
      expect(done.status, node.output()).toBe("succeeded");
      expect(done.engine).toMatchObject({ kernel: expect.stringMatching(/^wasm-/), runtime: "node" });
      onNode.push(done.result!);
    }
    expect(node.output()).toMatch(/explanation ft_[0-9a-f]{32}:ex_[0-9a-f]{32}: uploaded/);
    expect(onNode[1]!.convergence_delta).toHaveLength(64);
    await stop(node, "SIGKILL");

    // the same state behind a Worker with the default budget: both explanations run in the Worker
    await stop(edge);
    edge = await startWranglerDev(port, persist, { LEASE_SECONDS: "2" });
    for (const [i, spec] of specs.entries()) {
      const res = await post(`/v1/fine-tunes/${id}/explain`, { ...spec, placement: "edge" });
      expect(res.status).toBe(200);
      const inWorker = (await res.json()) as Explanations;
      expect(onNode[i]!.feature_names).toEqual(inWorker.feature_names);
      expect(onNode[i]!.attributions).toHaveLength(inWorker.attributions.length);
      let worst = 0;
      inWorker.attributions.forEach((row, r) => row.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - onNode[i]!.attributions[r]![j]!)))));
      console.log(`${spec.method}: node (Node.js WASM) vs Worker (workerd WASM), largest difference ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(1e-5);
    }
  });
});
