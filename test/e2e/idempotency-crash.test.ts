/**
 * A crash during a sync request must not lock its Idempotency-Key (issue 20, finding 4): with a
 * real `wrangler dev`, a sync create with an Idempotency-Key is under way when wrangler dev and
 * its workerd are SIGKILLed; restarted on the same persisted state, a retry with the same key
 * runs the request again once the dead request's budget has run out (2 x EDGE_MAX_CPU_MS + 5 s,
 * src/api/budget.ts), instead of answering 409 "still running" for a day.
 *
 * The kill must land while the request is in flight with its key reserved: the test knows it
 * is when a second create with the same key answers 409 request_in_progress (the isolate
 * answers other requests while a sync job trains, issue 20 finding 8), and kills the server then.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { slowSyncJob } from "../helpers.js";
import { eventually, freePort, killGroup, startWranglerDev, stop, type Proc } from "./processes.js";

const work = mkdtempSync(join(tmpdir(), "edgetune-idem-crash-e2e-"));
const persist = join(work, "state");
// the default 10 s CPU budget (a dead request's reservation lapses 25 s after it began), with a
// cost model that calls every job tiny, so that this one, which trains for seconds, runs sync
const VARS = { EDGE_MAX_CPU_MS: "10000", EDGE_FLOPS_PER_MS: "1e15", EDGE_BYTES_PER_MS: "1e15", EDGE_STEP_OVERHEAD_MS: "0" };

/** A request other than slowSyncJob's, to see whether its Idempotency-Key is taken. */
function tinyProbeJob() {
  return { mode: "sync", model: { layers: [{ type: "linear", in_features: 2, out_features: 1 }] }, data: { train: { x: [[0, 1]], y: [1] } }, training: { epochs: 1, batch_size: 1, loss: { type: "mse" } } };
}

describe("Idempotency-Key after a crash (issue 20, finding 4)", () => {
  let edge: Proc | undefined;
  afterAll(async () => {
    if (edge) await killGroup(edge);
    rmSync(work, { recursive: true, force: true });
  });

  it("SIGKILL wrangler dev mid-request, restart on the same state: a retry with the same key runs again once the request's budget has passed", async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    edge = await startWranglerDev(port, persist, VARS, { group: true });
    // 600 epochs: well over the 2 s this test waits to know it trains, and well under the 10 s at
    // which a sync run stops itself (over_budget), even on a busy machine
    const body = JSON.stringify(slowSyncJob(600));
    const create = () => fetch(`${base}/v1/fine-tunes`, { method: "POST", headers: { "content-type": "application/json", "idempotency-key": "crash-1" }, body });

    let answered: Response | null = null;
    const first = create().then(
      (res) => (answered = res),
      (e: unknown) => e, // the connection was cut by the kill
    );
    // the first request has reserved the key once a different request with it is refused as a
    // reuse; it is still in flight while it has not answered. The probe waits 2 s first (the
    // body is read and the key reserved within that; the run trains for far longer), so that it
    // does not take the key itself
    await new Promise((r) => setTimeout(r, 2000));
    await eventually("the first request to be in flight with its key reserved", 30_000, async () => {
      const probe = await fetch(`${base}/v1/fine-tunes`, { method: "POST", headers: { "content-type": "application/json", "idempotency-key": "crash-1" }, body: JSON.stringify(tinyProbeJob()) });
      const code = ((await probe.json()) as { code?: string }).code;
      expect(probe.status, "the probe ran before the first request reserved the key").not.toBe(200);
      expect(answered, "the first request finished before it could be killed: make it train longer").toBeNull();
      return code === "idempotency_key_reused" ? true : undefined;
    });
    await killGroup(edge, "SIGKILL");
    expect(await first).toBeInstanceOf(Error); // no answer ever came
    const killedAt = Date.now();
    edge = await startWranglerDev(port, persist, VARS, { group: true });

    // the dead request reserved the key (persisted) and its budget has not run out yet
    const held = await create();
    expect(held.status).toBe(409);
    expect(((await held.json()) as { code: string }).code).toBe("request_in_progress");

    // until the dead request's budget runs out its key reads as held (409); then the retry runs
    const statuses: number[] = [];
    const retried = await eventually("a retry to run again", 90_000, async () => {
      const res = await create();
      statuses.push(res.status);
      if (res.status === 409) return undefined;
      return res;
    });
    expect(statuses.filter((s) => s !== 409 && s !== 200)).toEqual([]);
    expect(retried.status).toBe(200);
    expect(retried.headers.get("idempotent-replayed")).toBeNull();
    const result = (await retried.json()) as { id: string; status: string; metrics: { history: unknown[] } };
    expect(result.status).toBe("succeeded");
    expect(result.metrics.history).toHaveLength(600);
    console.log(`[e2e] idempotency after SIGKILL: the retry ran ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill (${statuses.length - 1} answers of 409 first)`);

    // from now on the key is the finished request's: a retry replays it
    const replay = await create();
    expect(replay.status).toBe(200);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(((await replay.json()) as { id: string }).id).toBe(result.id);
    await stop(edge);
  });
});
