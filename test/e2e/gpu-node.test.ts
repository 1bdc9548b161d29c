/**
 * Offloaded jobs end to end, with real processes: `wrangler dev` (local Queues, Durable
 * Objects, R2) and GPU node processes that pull work over HTTP. Leases are 2 s here
 * (`--var LEASE_SECONDS:2`) so that a dead node is noticed quickly.
 */
import { describe, expect, it } from "vitest";
import { NodeClient } from "../../src/jobs/node-client.js";
import { DEV_NODE_TOKEN } from "../../src/api/auth.js";
import { eventually, freePort, gpuNodeTestbed, slowGpuJob, smallGpuJob, stop } from "./processes.js";

// a large in-Worker budget: the edge job of the dispatch test trains for many seconds
const VARS = { LEASE_SECONDS: "2", SSE_POLL_MS: "100", EDGE_MAX_CPU_MS: "3600000" };

describe("GPU-node offload with real processes", () => {
  const bed = gpuNodeTestbed("edgetune-gpu-e2e-", VARS);
  const { submit, job, node, finished } = bed;

  it("an async job runs on a GPU node: 202, SSE for every epoch, succeeded, weights; the node's /healthz", async () => {
    const healthPort = await freePort();
    node("node-1", { EDGETUNE_HEALTH_PORT: String(healthPort) });
    const health = (jobsRun: number) =>
      eventually(`the node's /healthz to count ${jobsRun} jobs`, 20_000, async () => {
        try {
          const h = (await (await fetch(`http://127.0.0.1:${healthPort}/healthz`)).json()) as { node: string; jobs_run: number; kernels: { wasm: string } };
          return h.jobs_run === jobsRun ? h : undefined;
        } catch {
          return undefined; // not listening yet
        }
      });
    expect(await health(0)).toMatchObject({ node: "node-1", kernels: { wasm: expect.stringMatching(/^wasm-/) } });
    const id = await submit(slowGpuJob(4));
    const res = await fetch(`${bed.base}/v1/fine-tunes/${id}/events`);
    expect(res.headers.get("content-type")).toMatch(/text\/event-stream/);
    const text = await res.text(); // the stream ends after the final event
    const events = [...text.matchAll(/^event: (\w+)\ndata: (.*)$/gm)].map((m) => ({ event: m[1]!, data: JSON.parse(m[2]!) }));
    expect(events.filter((e) => e.event === "epoch").map((e) => e.data.epoch)).toEqual([1, 2, 3, 4]);
    expect(events.at(-1)!.event).toBe("done");
    const done = await job(id);
    expect(done).toMatchObject({ status: "succeeded", plan: { placement: "gpu-node" }, engine: { runtime: "node" } });
    const weights = await fetch(`${bed.base}/v1/fine-tunes/${id}/weights`);
    expect(weights.status).toBe(200);
    expect((await weights.arrayBuffer()).byteLength).toBeGreaterThan(64 * 256 * 4);
    expect((await health(1)).node).toBe("node-1");
  });

  it("SIGKILL the node mid-job, start another: the job succeeds with one history entry per epoch", async () => {
    const first = node("node-doomed");
    const id = await submit(slowGpuJob(12));
    await eventually("two epochs on the first node", 60_000, async () => ((await job(id)).metrics?.history.length >= 2 ? true : undefined));
    const killedAt = Date.now();
    await stop(first, "SIGKILL");
    node("node-rescue");
    const done = await finished(id);
    expect(done.status).toBe("succeeded");
    expect(done.metrics.history.map((h: { epoch: number }) => h.epoch)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    const events = await (await fetch(`${bed.base}/v1/fine-tunes/${id}/events`)).text();
    expect(events).toMatch(/"status":"running","attempt":2/);
    console.log(`[e2e] lease recovery: job finished ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the node was killed (lease 2 s)`);
  });

  it("a second completion from the same node is ignored", async () => {
    const client = new NodeClient({ baseUrl: bed.base, token: DEV_NODE_TOKEN });
    const id = await submit(smallGpuJob());
    const claim = await eventually("a claim", 20_000, async () => (await client.claim("manual-node", 1000)) ?? undefined);
    expect(claim.job.id).toBe(id);
    const outcome = { failure: "first completion" };
    expect((await client.complete(id, claim.leaseId, outcome, null)).accepted).toBe(true);
    expect((await client.complete(id, claim.leaseId, { failure: "second completion" }, null)).accepted).toBe(false);
    const final = await job(id);
    expect(final).toMatchObject({ status: "failed", error: { message: "first completion" } });
  });

  it("cancelling a running job stops it at its next progress report (within an epoch, or REPORT_INTERVAL_MS when epochs are shorter)", async () => {
    node("node-2");
    const id = await submit(slowGpuJob(200));
    await eventually("the job to start", 60_000, async () => ((await job(id)).metrics?.history.length >= 1 ? true : undefined));
    const res = await fetch(`${bed.base}/v1/fine-tunes/${id}/cancel`, { method: "POST" });
    expect(res.status).toBe(200);
    const epochsAtCancel = ((await res.json()) as { metrics: { epochs: number } }).metrics.epochs;
    const done = await finished(id);
    expect(done.status).toBe("cancelled");
    expect(done.metrics.epochs).toBeGreaterThanOrEqual(epochsAtCancel);
    expect(done.metrics.epochs).toBeLessThan(200);
  });

  it("a GPU-node job submitted while a long edge job trains is claimed and finishes before it (issue 20, finding 2)", async () => {
    const edgeId = await submit({ ...slowGpuJob(5000), placement: "edge" });
    await eventually("the edge job to train", 60_000, async () => ((await job(edgeId)).metrics?.epochs >= 1 ? true : undefined));
    node("node-beside-edge");
    const gpuId = await submit(smallGpuJob());
    const gpuDone = await finished(gpuId, 60_000);
    expect(gpuDone).toMatchObject({ status: "succeeded", plan: { placement: "gpu-node" } });
    // the edge job was still training all along: the GPU job did not wait for it
    const edgeJob = await job(edgeId);
    expect(edgeJob.status).toBe("running");
    console.log(`[e2e] dispatch beside an edge job: GPU job done while the edge job was at epoch ${edgeJob.metrics.epochs} of 5000`);
    expect((await fetch(`${bed.base}/v1/fine-tunes/${edgeId}/cancel`, { method: "POST" })).status).toBe(200);
    expect((await finished(edgeId)).status).toBe("cancelled");
  });

  it("jobs queued while wrangler dev restarts still complete", async () => {
    const ids = [await submit(smallGpuJob()), await submit(smallGpuJob())];
    await bed.restartEdge();
    node("node-after-restart");
    for (const id of ids) expect((await finished(id)).status).toBe("succeeded");
  });
});
