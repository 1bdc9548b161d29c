/**
 * Checkpoints end to end, with real processes: `wrangler dev` (local R2, Durable Objects,
 * Queues) and GPU node processes. A node SIGKILLed after a checkpoint is replaced by one that
 * continues from it (not from epoch 1), and ends with the weights of a run that was never
 * interrupted; a running job is paused (it checkpoints and stops) and resumed. Leases are 2 s.
 */
import { describe, expect, it } from "vitest";
import { eventually, gpuNodeTestbed, slowGpuJob, stop } from "./processes.js";

const VARS = { LEASE_SECONDS: "2", SSE_POLL_MS: "100" };

/** slowGpuJob with a checkpoint after every epoch (the newest `keep` kept). */
const checkpointed = (epochs: number, keep = 3) => {
  const job = slowGpuJob(epochs, 7);
  return { ...job, training: { ...job.training, shuffle: true, checkpoints: { every: 1, keep } } };
};

describe("checkpoints, retries and pause with real processes", () => {
  const bed = gpuNodeTestbed("edgetune-ckpt-e2e-", VARS, { EDGETUNE_THREADS: "1", EDGETUNE_WEBGPU: "0" });
  const { submit, job, node } = bed;
  const finished = (id: string, ms = 90_000) => bed.finished(id, ms);
  const checkpoints = async (id: string) => ((await (await fetch(`${bed.base}/v1/fine-tunes/${id}/checkpoints`)).json()) as { data: { epoch: number }[] }).data;
  const weights = async (id: string) => new Uint8Array(await (await fetch(`${bed.base}/v1/fine-tunes/${id}/weights`)).arrayBuffer());

  it("SIGKILL a node after a checkpoint: the next node continues after it, one history entry per epoch, the uninterrupted run's weights", async () => {
    const first = node("node-doomed");
    const id = await submit(checkpointed(30));
    const saved = await eventually("two checkpoints on the first node", 60_000, async () => {
      const kept = await checkpoints(id);
      return kept.length >= 2 ? kept : undefined;
    });
    await stop(first, "SIGKILL");
    const atKill = (await job(id)).metrics.history.length as number;
    expect(atKill, "the first node had finished before it was killed: the epochs are too short for this test").toBeLessThan(30);
    node("node-rescue");
    const done = await finished(id);
    expect(done.status).toBe("succeeded");
    expect(done.metrics.history.map((h: { epoch: number }) => h.epoch)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    const events = await (await fetch(`${bed.base}/v1/fine-tunes/${id}/events`)).text();
    const resumed = [...events.matchAll(/"status":"running","attempt":2,"resumed_from_epoch":(\d+)/g)].map((m) => Number(m[1]));
    expect(resumed).toHaveLength(1);
    expect(resumed[0]).toBeGreaterThanOrEqual(saved.at(-1)!.epoch); // not epoch 1: at least the checkpoint seen before the kill
    expect((await checkpoints(id)).map((c) => c.epoch)).toEqual([28, 29, 30]);
    console.log(`[e2e] checkpoint retry: killed with ${atKill} epochs reported, the rescue node continued after epoch ${resumed[0]} of 30`);

    const straight = await submit(checkpointed(30));
    expect((await finished(straight)).status).toBe("succeeded");
    expect(await weights(id)).toEqual(await weights(straight));
  });

  it("pause: the running job checkpoints and stops; resume: it continues from there and succeeds", async () => {
    node("node-pause");
    const id = await submit(checkpointed(40, 1));
    await eventually("the job to train", 60_000, async () => ((await job(id)).metrics?.history.length >= 1 ? true : undefined));
    const asked = await fetch(`${bed.base}/v1/fine-tunes/${id}/pause`, { method: "POST" });
    expect(asked.status).toBe(200);
    const paused = await eventually("the job to pause", 60_000, async () => {
      const j = await job(id);
      return j.status === "paused" ? j : undefined;
    });
    const at = paused.metrics.history.at(-1).epoch as number;
    expect(at).toBeLessThan(40);
    expect((await checkpoints(id)).map((c) => c.epoch)).toEqual([at]);
    await new Promise((r) => setTimeout(r, 1000));
    expect((await job(id)).status).toBe("paused"); // nothing claims a paused job

    const resumed = await fetch(`${bed.base}/v1/fine-tunes/${id}/resume`, { method: "POST" });
    expect(((await resumed.json()) as { status: string }).status).toBe("queued");
    const done = await finished(id);
    expect(done.status).toBe("succeeded");
    expect(done.metrics.history.map((h: { epoch: number }) => h.epoch)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(await (await fetch(`${bed.base}/v1/fine-tunes/${id}/events`)).text()).toContain(`"resumed_from_epoch":${at}`);
  });
});
