/**
 * A search end to end, with real processes (issue 15's acceptance): `wrangler dev` (the search
 * job's Durable Object, the Queue, R2) and GPU node processes that claim the trials. A node is
 * SIGKILLed mid-trial; its trial's lease lapses (2 s here) and another node finishes it. The
 * search still ends with four succeeded trials, the best one by val_loss, and its weights.
 */
import { describe, expect, it } from "vitest";
import { eventually, gpuNodeTestbed, slowGpuJob, stop } from "./processes.js";

const VARS = { LEASE_SECONDS: "2", SSE_POLL_MS: "100" };

describe("a search over GPU nodes with real processes", () => {
  const bed = gpuNodeTestbed("edgetune-search-e2e-", VARS);
  const { submit, job, node } = bed;

  it("4 trials, parallel 2, a node SIGKILLed mid-trial: four succeeded child jobs, the best by val_loss, its weights byte for byte", async () => {
    // 60 epochs (about 0.6 s a trial on an idle machine; a job GET holds the last 100): long enough that the SIGKILL below lands
    // mid-trial, not after a trial that finished between the poll and the kill
    const EPOCHS = 60;
    const request = slowGpuJob(EPOCHS, 5);
    const startedAt = Date.now();
    const id = await submit({
      ...request,
      data: { ...request.data, validation_split: 0.2 },
      search: { space: { "training.optimizer.lr": { log_uniform: [1e-4, 3e-2] } }, trials: 4, parallel: 2, seed: 15 },
    });
    // one node first: the trial it claims is the one to kill it in, once it has trained an epoch
    const doomed = node("node-doomed");
    const victim = await eventually("an epoch of a trial on node-doomed", 90_000, async () => {
      const parent = await job(id);
      for (const t of parent.trials as { id: string; status: string }[]) {
        if (t.status === "running" && (await job(t.id)).metrics?.history.length >= 1) return t.id;
      }
      return undefined;
    });
    const killedAt = Date.now();
    await stop(doomed, "SIGKILL");
    node("node-steady");
    node("node-rescue");

    const parent = await eventually("the search to end", 240_000, async () => {
      const p = await job(id);
      return p.status === "running" ? undefined : p;
    });
    const seconds = (Date.now() - startedAt) / 1000;
    expect(parent.status).toBe("succeeded");
    const children = await Promise.all(parent.trials.map((t: { id: string }) => job(t.id)));
    expect(children.map((c) => [c.status, c.parent, c.plan.placement])).toEqual(Array(4).fill(["succeeded", id, "gpu-node"]));
    for (const c of children) expect(c.metrics.history.map((h: { epoch: number }) => h.epoch)).toEqual(Array.from({ length: EPOCHS }, (_, i) => i + 1));
    const losses = children.map((c) => c.metrics.history.at(-1).val_loss as number);
    const best = children[losses.indexOf(Math.min(...losses))]!;
    expect(parent.best_trial).toBe(best.id);
    expect(parent.trials.map((t: { metric: number }) => t.metric)).toEqual(losses);
    const bytes = async (jobId: string) => new Uint8Array(await (await fetch(`${bed.base}/v1/fine-tunes/${jobId}/weights`)).arrayBuffer());
    const mine = await bytes(id);
    expect(mine.byteLength).toBeGreaterThan(64 * 256 * 4);
    expect(Buffer.from(mine).equals(Buffer.from(await bytes(best.id)))).toBe(true);
    // the killed node's trial was claimed again: its stream has a second attempt
    expect(await (await fetch(`${bed.base}/v1/fine-tunes/${victim}/events`)).text()).toMatch(/"status":"running","attempt":2/);
    // the search's stream: trial events, then done
    const events = await (await fetch(`${bed.base}/v1/fine-tunes/${id}/events`)).text();
    expect(events.match(/^event: trial$/gm)?.length).toBeGreaterThanOrEqual(8);
    expect(events.trimEnd().split("\n\n").at(-1)).toMatch(/^id: \d+\nevent: done\n/);
    const listed = ((await (await fetch(`${bed.base}/v1/fine-tunes?limit=20`)).json()) as { data: { id: string; parent?: string }[] }).data;
    expect(listed.filter((j) => j.parent === id)).toHaveLength(4);
    console.log(
      `[e2e] search: 4 trials x ${EPOCHS} epochs, parallel 2 on GPU nodes, one node SIGKILLed: ${seconds.toFixed(1)} s; ended ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill; ` +
        `val_loss by trial ${losses.map((l) => l.toFixed(4)).join(", ")}; lr ${parent.trials.map((t: { params: Record<string, number> }) => t.params["training.optimizer.lr"]!.toExponential(2)).join(", ")}; best ${parent.trials.findIndex((t: { id: string }) => t.id === best.id) + 1}`,
    );
  });
});
