/**
 * GPU nodes starting, idling and stopping, with real processes: `wrangler dev` and node processes
 * (dist/src/node/gpu-node-cli.js, so `npm run build:ts` first). Jobs waiting with no node polling
 * say so (waiting_for_node); SIGTERM stops claiming at once and finishes the job in hand; claim
 * polls are logged at debug level only; an SSE client going away leaves no error in the Worker's log.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { edgeApi, eventually, freePort, slowGpuJob, smallGpuJob, startGpuNode, startWranglerDev, stop, type Proc } from "./processes.js";

const work = mkdtempSync(join(tmpdir(), "edgetune-node-lifecycle-"));
const VARS = { LEASE_SECONDS: "2", SSE_POLL_MS: "100" };

/** Resolves with the exit code once the process has exited by itself (null if a signal killed it). */
const exited = (proc: Proc) =>
  proc.child.exitCode !== null || proc.child.signalCode !== null
    ? Promise.resolve(proc.child.exitCode)
    : new Promise<number | null>((resolve) => proc.child.once("exit", (code) => resolve(code)));

describe("GPU node lifecycle with real processes", () => {
  let base = "";
  let port = 0;
  let edge: Proc | undefined;
  const nodes: Proc[] = [];

  const { submit, job } = edgeApi(() => base);
  const events = async (id: string) => {
    const ac = new AbortController();
    const res = await fetch(`${base}/v1/fine-tunes/${id}/events`, { signal: ac.signal });
    const reader = res.body!.getReader();
    // the replay: read until a whole event block has come
    let text = "";
    while (!text.endsWith("\n\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    ac.abort();
    return [...text.matchAll(/^event: (\w+)\ndata: (.*)$/gm)].map((m) => ({ event: m[1]!, data: JSON.parse(m[2]!) }));
  };
  const node = (name: string, env: Record<string, string> = {}) => {
    const proc = startGpuNode(port, name, env);
    nodes.push(proc);
    return proc;
  };

  beforeAll(async () => {
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    edge = await startWranglerDev(port, join(work, "state"), VARS);
  });
  // SIGTERM, not SIGKILL: a killed node's long poll goes on at the edge (wrangler dev does not pass
  // the disconnect on) and could claim the next test's job; a stopped node tells the edge it stops
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((n) => stop(n)));
  });
  afterAll(async () => {
    await stop(edge);
    if (process.env.DUMP_EDGE_LOG) (await import("node:fs")).writeFileSync(process.env.DUMP_EDGE_LOG, edge!.output());
    rmSync(work, { recursive: true, force: true });
  });

  it("a GPU job queued with no node polling says waiting_for_node (event and hint); a node then runs it and the hint goes", async () => {
    const id = await submit(smallGpuJob());
    const waiting = await eventually("the waiting_for_node event", 20_000, async () => {
      const e = (await events(id)).find((e) => e.event === "status" && e.data.waiting_for_node === true);
      return e ?? undefined;
    });
    expect(waiting.data).toMatchObject({ status: "queued", hint: expect.stringMatching(/No GPU node is polling.*npm run gpu-node/) });
    expect(await job(id)).toMatchObject({ status: "queued", hint: waiting.data.hint });

    node("node-late");
    const done = await eventually(`${id} to succeed`, 60_000, async () => ((await job(id)).status === "succeeded" ? job(id) : undefined));
    expect(done.hint).toBeUndefined();
  });

  it("claim polls are logged at debug level only", async () => {
    const quiet = node("node-info", { EDGETUNE_CLAIM_WAIT_MS: "200" });
    const chatty = node("node-debug", { EDGETUNE_CLAIM_WAIT_MS: "200", EDGETUNE_LOG_LEVEL: "debug" });
    await eventually("three claim polls of the debug node", 30_000, async () => ((chatty.output().match(/debug: claiming/g) ?? []).length >= 3 ? true : undefined));
    await eventually("the info node to start pulling", 30_000, async () => (/pulling jobs from/.test(quiet.output()) ? true : undefined));
    expect(chatty.output()).toMatch(/debug: no job waiting/);
    expect(quiet.output()).not.toMatch(/claiming|no job waiting/);
  });

  it("SIGTERM during a claim's long poll: the node exits at once and claims nothing more; the job then waits for a node", async () => {
    // the longest poll the edge allows: without aborting it, the node would sit in it and claim the job submitted below
    const proc = node("node-term-idle", { EDGETUNE_CLAIM_WAIT_MS: "25000", EDGETUNE_LOG_LEVEL: "debug" });
    await eventually("the node's first long poll", 30_000, async () => (/debug: claiming/.test(proc.output()) ? true : undefined));
    proc.child.kill("SIGTERM");
    expect(await exited(proc), proc.output()).toBe(0);
    expect(proc.output()).toMatch(/stopped/);
    // the poll was aborted, not waited out: its 204 never came back
    expect(proc.output()).not.toMatch(/no job waiting/);
    // The job comes after the node has gone. wrangler dev's proxy may not pass the aborted poll on
    // to the Worker, which then polls on for 25 s; the node's POST /v1/nodes/stop, sent before it
    // exits, is what keeps that orphaned poll from claiming the job. (Submitted before the exit, the
    // job could be claimed in the moment between the SIGTERM and that stop: a race of the test's
    // own making, which only a lease can settle.)
    const id = await submit(smallGpuJob());
    expect(proc.output()).not.toMatch(/claimed|handed|cannot reach the edge/);
    // nobody polls now: within a lease or two the job says so
    const waiting = await eventually("the job to wait for a node", 20_000, async () => ((await job(id)).hint ? job(id) : undefined));
    expect(waiting, JSON.stringify(await events(id)) + proc.output()).toMatchObject({ status: "queued", started_at: null });
    node("node-term-idle-rescue");
    await eventually(`${id} to succeed`, 60_000, async () => ((await job(id)).status === "succeeded" ? true : undefined));
  });

  it("SIGTERM mid-job: the node finishes the job in hand, claims no other, and exits", async () => {
    const proc = node("node-term-busy");
    // 60 epochs: on a quiet machine 6 were done, and the second job claimed and run, before the
    // SIGTERM below arrived
    const first = await submit(slowGpuJob(60, 7));
    await eventually("the first epoch on the node", 60_000, async () => ((await job(first)).metrics?.history.length >= 1 ? true : undefined));
    const second = await submit(smallGpuJob());
    const claimsBefore = proc.output().match(/claimed ft_/g)?.length ?? 0;
    proc.child.kill("SIGTERM");
    expect(await exited(proc), proc.output()).toBe(0);
    const finished = await job(first);
    expect(finished.status).toBe("succeeded");
    expect(finished.metrics.history).toHaveLength(60);
    expect(finished.engine.runtime).toBe("node");
    expect((await job(second)).status).toBe("queued");
    expect(proc.output().match(/claimed ft_/g)?.length).toBe(claimsBefore);
    expect(proc.output()).toContain(`claimed ${first}`);
  });

  it("SSE clients that go away leave no error in the Worker's log", async () => {
    const id = await submit(smallGpuJob()); // no node: it stays queued, so its stream stays open
    const before = edge!.output().length;
    for (let i = 0; i < 3; i++) expect((await events(id)).length).toBeGreaterThan(0);
    // more streams, cut at different moments while the Worker polls storage for new events
    await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const ac = new AbortController();
        const res = await fetch(`${base}/v1/fine-tunes/${id}/events`, { signal: ac.signal });
        await res.body!.getReader().read();
        await new Promise((r) => setTimeout(r, 37 * i));
        ac.abort();
      }),
    );
    // a later request goes through the same log, so everything logged for the streams is in
    await new Promise((r) => setTimeout(r, 1000));
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const log = edge!.output().slice(before);
    expect(log).toMatch(/GET \/v1\/fine-tunes\/ft_\w+\/events/);
    expect(log).not.toMatch(/Network connection lost|Uncaught|✘ \[ERROR\]/);
  });
});
