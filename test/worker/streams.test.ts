/**
 * The cap on concurrent SSE streams per key (MAX_STREAMS_PER_KEY, issue 20 finding 6) inside
 * workerd: the real Worker and its per-key index Durable Object count the open streams.
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../worker/index.js";
import { seedRequest } from "../helpers.js";
import { ownerIndex } from "./owner-index.js";

const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;

function client(key: string, maxStreams: string) {
  const e = { ...env, EDGETUNE_API_KEYS: key, MAX_STREAMS_PER_KEY: maxStreams } as Env;
  const call = (path: string, init: RequestInit = {}) =>
    worker.fetch(new Request(`http://edgetune.test${path}`, { ...init, headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...init.headers } }), e, ctx);
  /** A queued GPU-node job: nothing trains it, so its stream stays open. */
  const queued = async () => {
    const res = await call("/v1/fine-tunes", { method: "POST", body: JSON.stringify({ ...seedRequest(8, { training: { epochs: 2, batch_size: 4 } }), mode: "async", placement: "gpu-node" }) });
    expect(res.status).toBe(202);
    return ((await res.json()) as { id: string }).id;
  };
  /** Opens a stream and reads its first bytes (the replayed events), so that it is surely open. */
  const open = async (id: string) => {
    const res = await call(`/v1/fine-tunes/${id}/events`);
    if (res.status !== 200) return { res, reader: null };
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain("event: status");
    return { res, reader };
  };
  return { call, queued, open };
}

async function waitFor(what: string, done: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (await done()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("SSE streams per key in workerd", () => {
  it("MAX_STREAMS_PER_KEY=2: a third open stream is a 429 too_many_streams with Retry-After; another key is not affected; a closed stream frees its slot", async () => {
    const a = client("streams-key-a", "2");
    const id = await a.queued();
    const first = await a.open(id);
    const second = await a.open(id);
    expect(first.res.status).toBe(200);
    expect(second.res.status).toBe(200);

    const refused = await a.call(`/v1/fine-tunes/${id}/events`);
    expect(refused.status).toBe(429);
    expect(refused.headers.get("content-type")).toBe("application/problem+json");
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    const body = (await refused.json()) as { code: string; detail: string };
    expect(body.code).toBe("too_many_streams");
    expect(body.detail).toContain("MAX_STREAMS_PER_KEY=2");

    const b = client("streams-key-b", "2");
    const other = await b.open(await b.queued());
    expect(other.res.status).toBe(200);

    // the client goes away: its stream gives its slot back
    await first.reader!.cancel();
    let reopened: Awaited<ReturnType<typeof a.open>> | null = null;
    await waitFor("the cancelled stream's slot", async () => {
      const attempt = await a.open(id);
      if (attempt.res.status === 200) reopened = attempt;
      else await attempt.res.body?.cancel();
      return reopened !== null;
    });
    for (const s of [second, reopened!, other]) await s.reader!.cancel();
  });

  it("a stream that ended without closing (its isolate died) holds its slot only until its lease lapses", async () => {
    const c = client("streams-key-crash", "1");
    const id = await c.queued();
    // a slot taken as a stream would, never renewed nor closed, with a short lease
    const index = await ownerIndex("streams-key-crash");
    expect(await index.openStream("stream-of-a-dead-isolate", { maxPerKey: 1, leaseMs: 300 })).toEqual({ ok: true });
    const refused = await c.call(`/v1/fine-tunes/${id}/events`);
    expect(refused.status).toBe(429);
    await refused.body?.cancel();
    let admitted: Awaited<ReturnType<typeof c.open>> | null = null;
    await waitFor("the dead stream's lease to lapse", async () => {
      const attempt = await c.open(id);
      if (attempt.res.status === 200) admitted = attempt;
      else await attempt.res.body?.cancel();
      return admitted !== null;
    });
    await admitted!.reader!.cancel();
  });

  it("a finished stream (a sync job's replay read to its end) gives its slot back", async () => {
    const c = client("streams-key-sync", "1");
    const res = await c.call("/v1/fine-tunes", { method: "POST", body: JSON.stringify({ ...seedRequest(8, { training: { epochs: 2, batch_size: 4 } }), mode: "sync" }) });
    expect(res.status).toBe(200);
    const id = ((await res.json()) as { id: string }).id;
    for (let i = 0; i < 3; i++) {
      let text = "";
      await waitFor("a free slot", async () => {
        const events = await c.call(`/v1/fine-tunes/${id}/events`);
        if (events.status !== 200) {
          await events.body?.cancel();
          return false;
        }
        text = await events.text();
        return true;
      });
      expect(text).toContain("event: done");
    }
  });
});
