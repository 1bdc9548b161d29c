/**
 * Async edge jobs started by the request that accepted them, in a real `wrangler dev` with its
 * Queue (issue 16 item 3; docs/api.md, "Async edge jobs start at once"): the job's Queue message
 * arrives while the request's run trains it and is acknowledged without a second run (were it
 * retried instead, it would be dead-lettered and the job failed); and when wrangler dev and its
 * workerd are SIGKILLed mid-run, the restarted server's lease alarm queues the job again and the
 * Queue consumer runs it to the end.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { slowSyncJob } from "../helpers.js";
import { eventually, freePort, killGroup, startWranglerDev, type Proc } from "./processes.js";

const work = mkdtempSync(join(tmpdir(), "edgetune-direct-start-e2e-"));
const persist = join(work, "state");
// a short lease, so that the job of a killed run is queued again within seconds of the restart
const VARS = { LEASE_SECONDS: "3" };

/** slowSyncJob as an async edge job: about 13 ms of estimated CPU an epoch, under the 5 s bound at 250. */
const asyncJob = (epochs: number) => ({ ...slowSyncJob(epochs), mode: "async", placement: "edge" });

describe("async edge jobs started by the accepting request, in wrangler dev", () => {
  let edge: Proc | undefined;
  let port = 0;
  const base = () => `http://127.0.0.1:${port}`;
  const create = async (body: unknown) => {
    const res = await fetch(`${base()}/v1/fine-tunes`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    expect(res.status, await res.clone().text()).toBe(202);
    return ((await res.json()) as { id: string }).id;
  };
  const jobOf = async (id: string) => (await (await fetch(`${base()}/v1/fine-tunes/${id}`)).json()) as Record<string, any>;
  const ended = (id: string, ms: number) =>
    eventually(`job ${id} to end`, ms, async () => {
      const job = await jobOf(id);
      return job.status === "queued" || job.status === "running" ? undefined : job;
    });
  const eventsOf = async (id: string) => {
    const text = await (await fetch(`${base()}/v1/fine-tunes/${id}/events`)).text();
    return [...text.matchAll(/^event: (\w+)\ndata: (.*)$/gm)].map((m) => ({ event: m[1]!, data: JSON.parse(m[2]!) as Record<string, any> }));
  };
  const statusesOf = async (id: string) => (await eventsOf(id)).filter((e) => e.event === "status").map((e) => [e.data.status, e.data.attempt]);

  beforeAll(async () => {
    port = await freePort();
    edge = await startWranglerDev(port, persist, VARS, { group: true });
  });
  afterAll(async () => {
    if (edge) await killGroup(edge);
    rmSync(work, { recursive: true, force: true });
  });

  it("a job runs once: its Queue message, delivered while it trains, is acknowledged and nothing else runs it", async () => {
    const id = await create(asyncJob(100));
    const job = await ended(id, 90_000);
    expect(job.status, edge!.output().slice(-3000)).toBe("succeeded");
    expect(await statusesOf(id)).toEqual([["queued", 0], ["running", 1], ["succeeded", 1]]);
    const epochs = (await eventsOf(id)).filter((e) => e.event === "epoch").map((e) => e.data.epoch);
    expect(epochs).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
  });

  it("SIGKILL mid-run, restart on the same state: the lease lapses, the job is queued again and the consumer runs it to the end", async () => {
    const id = await create(asyncJob(250));
    // it trains: attempt 1 has reported an epoch (the first one is reported at once)
    await eventually("the job to train", 60_000, async () => {
      const job = await jobOf(id);
      expect(job.status, "it ended before it could be killed: make it train longer").not.toBe("succeeded");
      return job.status === "running" && job.metrics?.history.length > 0 ? true : undefined;
    });
    await killGroup(edge!, "SIGKILL");
    edge = await startWranglerDev(port, persist, VARS, { group: true });
    const job = await ended(id, 120_000);
    expect(job.status, edge.output().slice(-3000)).toBe("succeeded");
    expect(job.metrics.epochs).toBe(250);
    expect(await statusesOf(id)).toEqual([["queued", 0], ["running", 1], ["queued", 1], ["running", 2], ["succeeded", 2]]);
    const attempt2 = (await eventsOf(id)).filter((e) => e.event === "epoch" && e.data.attempt === 2).map((e) => e.data.epoch);
    expect(attempt2).toEqual(Array.from({ length: 250 }, (_, i) => i + 1));
  });
});
