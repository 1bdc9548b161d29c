/**
 * Quotas and retention with real processes: `wrangler dev` with a quota of 2 active jobs and a
 * time to live of 1 s, and a GPU node process. The runtime's own alarms expire the jobs (no test
 * hook runs them); test/worker/quotas.test.ts covers the same inside workerd in detail.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedRequest } from "../helpers.js";
import { eventually, freePort, startGpuNode, startWranglerDev, stop, type Proc } from "./processes.js";

const work = mkdtempSync(join(tmpdir(), "edgetune-retention-"));
const KEY = "retention-key";
const headers = { "content-type": "application/json", authorization: `Bearer ${KEY}` };

describe("quotas and expiry through wrangler dev and a GPU node", () => {
  let port = 0;
  let base = "";
  let edge: Proc | undefined;
  let node: Proc | undefined;

  beforeAll(async () => {
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    edge = await startWranglerDev(port, join(work, "state"), { EDGETUNE_API_KEYS: KEY, MAX_ACTIVE_JOBS_PER_KEY: "2", JOB_TTL_SECONDS: "1", RATE_LIMIT_PER_MINUTE: "0" });
  }, 90_000);
  afterAll(async () => {
    await stop(node);
    await stop(edge);
    rmSync(work, { recursive: true, force: true });
  });

  const create = () => fetch(`${base}/v1/fine-tunes`, { method: "POST", headers, body: JSON.stringify({ ...seedRequest(16, { training: { epochs: 3, batch_size: 8 } }), mode: "async", placement: "gpu-node" }) });
  const statusOf = async (id: string) => {
    const res = await fetch(`${base}/v1/fine-tunes/${id}`, { headers });
    return res.status === 404 ? "expired" : ((await res.json()) as { status: string }).status;
  };

  it("2 queued jobs fill the quota (429 too_many_active_jobs, Retry-After); once a node has run them they expire on their own and the quota is free", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const res = await create();
      expect(res.status).toBe(202);
      ids.push(((await res.json()) as { id: string }).id);
    }
    const refused = await create();
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBe("30");
    expect(((await refused.json()) as { code: string }).code).toBe("too_many_active_jobs");
    const listed = async (status: string) => ((await (await fetch(`${base}/v1/fine-tunes?status=${status}`, { headers })).json()) as { data: { id: string }[] }).data.map((j) => j.id);
    expect((await listed("queued")).sort()).toEqual([...ids].sort());

    node = startGpuNode(port, "retention-node");
    await eventually("the node to run both jobs", 60_000, async () => ((await Promise.all(ids.map(statusOf))).every((s) => s === "succeeded" || s === "expired") ? true : undefined));
    // no test hook: the jobs' own alarms delete them about a second after they ended
    await eventually("both jobs to expire", 30_000, async () => ((await Promise.all(ids.map(statusOf))).every((s) => s === "expired") ? true : undefined));
    expect(await listed("succeeded,queued,running")).toEqual([]);
    for (const id of ids) expect((await fetch(`${base}/v1/fine-tunes/${id}/weights`, { headers })).status).toBe(404);

    const again = await create();
    expect(again.status).toBe(202);
  }, 120_000);
});
