/**
 * A progress report that fails is sent again with the next one (the edge takes epochs only in
 * sequence); a checkpoint upload that is refused leaves the run training without it.
 */
import { describe, expect, it } from "vitest";
import { MemoryJobStore } from "../../src/jobs/memory-store.js";
import { runClaimedJob } from "../../src/jobs/runner.js";
import { createQueued, DEFAULT_LEASE_POLICY } from "../../src/jobs/state.js";
import { encodeRunInput } from "../../src/jobs/run-input.js";
import { prepareRun } from "../../src/engine/prepare.js";
import { loadNodeRuntime } from "../../src/node/kernel-module.js";
import type { WorkerChannel } from "../../src/jobs/store.js";
import type { Job } from "../../src/schema/job.js";
import { classificationData } from "../helpers.js";

describe("runner progress reports", () => {
  it("the epochs of a failed report go with the next one: no gap, no 422, one history entry per epoch", async () => {
    const store = new MemoryJobStore();
    const prepared = prepareRun({
      model: { layers: [{ type: "linear", in_features: 4, out_features: 3 }] },
      data: { train: classificationData(32) },
      training: { epochs: 4, batch_size: 8, loss: { type: "cross_entropy" } },
    } as Parameters<typeof prepareRun>[0]);
    const id = "ft_0123456789abcdef0123456789abcdef";
    const job: Job = {
      id, object: "fine_tune", status: "queued", mode: "async", created_at: new Date().toISOString(), started_at: null, finished_at: null,
      plan: { params: 15, trainable_params: 15, flops: 1, memory_bytes: 1, steps: 16, placement: "gpu-node" }, metrics: null, engine: null, error: null, weights_url: null,
    };
    await store.submit(createQueued(job, "", "gpu-node", `inputs/${id}.safetensors`, Date.now(), DEFAULT_LEASE_POLICY, 4).state, encodeRunInput(prepared));
    const reports: { epochs: number[]; outcome: string }[] = [];
    let failures = 1;
    const channel: WorkerChannel = {
      ...store.channel,
      progress: async (jobId, leaseId, epochs, engine) => {
        if (failures-- > 0) {
          reports.push({ epochs: epochs.map((e) => e.epoch), outcome: "network error" });
          throw new Error("network error");
        }
        const status = await store.channel.progress(jobId, leaseId, epochs, engine);
        reports.push({ epochs: epochs.map((e) => e.epoch), outcome: status.invalid ? "invalid" : "ok" });
        return status;
      },
    };
    const claim = (await store.claimNext("n1"))!;
    expect(await runClaimedJob(channel, claim, await loadNodeRuntime(), { placement: "gpu-node" })).toBe("completed");
    expect(reports[0]).toEqual({ epochs: [1], outcome: "network error" });
    expect(reports[1]!.epochs[0]).toBe(1); // sent again
    expect(reports.every((r) => r.outcome !== "invalid")).toBe(true);
    expect(reports.slice(1).flatMap((r) => r.epochs)).toEqual([1, 2, 3, 4].slice(0, reports.slice(1).flatMap((r) => r.epochs).length));
    const done = (await store.get(id))!.job;
    expect(done.status).toBe("succeeded");
    expect((await store.history(id, 0, 10))!.entries.map((e) => e.epoch)).toEqual([1, 2, 3, 4]);
  });

  it("a checkpoint the edge refuses (413 past MAX_UPLOAD_BYTES) does not end the run: it trains on and succeeds", async () => {
    const store = new MemoryJobStore();
    const prepared = prepareRun({
      model: { layers: [{ type: "linear", in_features: 4, out_features: 3 }] },
      data: { train: classificationData(32) },
      training: { epochs: 3, batch_size: 8, loss: { type: "cross_entropy" }, checkpoints: { every: 1, keep: 2 } },
    } as Parameters<typeof prepareRun>[0]);
    const id = "ft_0123456789abcdef0123456789abcde0";
    const job: Job = {
      id, object: "fine_tune", status: "queued", mode: "async", created_at: new Date().toISOString(), started_at: null, finished_at: null,
      plan: { params: 15, trainable_params: 15, flops: 1, memory_bytes: 1, steps: 12, placement: "gpu-node" }, metrics: null, engine: null, error: null, weights_url: null,
    };
    await store.submit(createQueued(job, "", "gpu-node", `inputs/${id}.safetensors`, Date.now(), DEFAULT_LEASE_POLICY, 3).state, encodeRunInput(prepared));
    let refused = 0;
    const channel: WorkerChannel = {
      ...store.channel,
      saveCheckpoint: async () => {
        refused++;
        throw new Error("PUT /v1/nodes/jobs/.../checkpoint: 413 payload_too_large");
      },
    };
    const claim = (await store.claimNext("n1"))!;
    expect(await runClaimedJob(channel, claim, await loadNodeRuntime(), { placement: "gpu-node" })).toBe("completed");
    expect(refused).toBe(3);
    expect((await store.get(id))!.job.status).toBe("succeeded");
    expect(await store.listCheckpoints(id)).toEqual([]);
  });
});
