/**
 * Job state that scales with epochs, inside workerd: records stay bounded (the last epochs), the
 * whole history and the event log are SQLite rows of the job's Durable Object, paged by
 * GET .../metrics and replayed by .../events (issue 20 finding 1, issue 21 findings 2-3).
 */
import { SELF, env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { seedRequest } from "../helpers.js";

const auth = { authorization: "Bearer worker-test-key" };
const post = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json", ...auth }, body: JSON.stringify(body) });
const get = (path: string) => SELF.fetch(`http://edgetune.test${path}`, { headers: auth });

interface Page {
  object: "list";
  data: { epoch: number; train_loss: number }[];
  next_cursor: string | null;
}

/** SSE text as (id, event, data) triples. */
function parseSse(text: string): { id: number; event: string; data: any }[] {
  return text
    .split("\n\n")
    .filter((block) => block.startsWith("id:"))
    .map((block) => {
      const field = (name: string) => block.split("\n").find((l) => l.startsWith(`${name}: `))!.slice(name.length + 2);
      return { id: Number(field("id")), event: field("event"), data: JSON.parse(field("data")) };
    });
}

describe("job state that scales with epochs", () => {
  it("a sync run of 1 row x 100,000 epochs succeeds; its job is bounded; GET .../metrics pages the whole history; /events replays it", async () => {
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post({ ...seedRequest(1, { training: { epochs: 100_000, batch_size: 1 } }), mode: "sync" }));
    expect(res.status).toBe(200);
    const result = (await res.json()) as { id: string; metrics: { history: unknown[] } };
    expect(result.metrics.history).toHaveLength(100_000);

    const jobRes = await get(`/v1/fine-tunes/${result.id}`);
    const jobText = await jobRes.text();
    expect(jobText.length).toBeLessThan(32 * 1024);
    const job = JSON.parse(jobText) as { metrics: { history: { epoch: number }[]; epochs: number; history_truncated: boolean } };
    expect(job.metrics.epochs).toBe(100_000);
    expect(job.metrics.history_truncated).toBe(true);
    expect(job.metrics.history.map((h) => h.epoch)).toEqual(Array.from({ length: 100 }, (_, i) => 99_901 + i));

    const first = (await (await get(`/v1/fine-tunes/${result.id}/metrics?limit=1000`)).json()) as Page;
    expect(first.data.map((h) => h.epoch)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    expect(first.next_cursor).not.toBeNull();
    const second = (await (await get(`/v1/fine-tunes/${result.id}/metrics?limit=700&cursor=${first.next_cursor}`)).json()) as Page;
    expect(second.data.map((h) => h.epoch)).toEqual(Array.from({ length: 700 }, (_, i) => i + 1001));
    // the last page: pages end where the history does
    const last = (await (await get(`/v1/fine-tunes/${result.id}/metrics?limit=1000&cursor=99500`)).json()) as Page;
    expect(last.data.map((h) => h.epoch)).toEqual(Array.from({ length: 500 }, (_, i) => 99_501 + i));
    expect(last.next_cursor).toBeNull();
    const bad = await get(`/v1/fine-tunes/${result.id}/metrics?cursor=nope`);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe("cursor");

    // event ids: 1 running, epoch e has id e + 1, then status and done
    const tail = parseSse(await (await get(`/v1/fine-tunes/${result.id}/events?last_event_id=99995`)).text());
    expect(tail.map((e) => e.id)).toEqual([99_996, 99_997, 99_998, 99_999, 100_000, 100_001, 100_002, 100_003]);
    expect(tail.slice(0, 5).map((e) => e.data.epoch)).toEqual([99_995, 99_996, 99_997, 99_998, 99_999].map((e) => e + 0));
    expect(tail.at(-1)!.event).toBe("done");
    expect(tail.at(-1)!.data.metrics.history).toHaveLength(100);
  });

  it("an edge async job of 3,000 epochs: its stored state stays bounded, its logs hold every epoch once", async () => {
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post({ ...seedRequest(1, { training: { epochs: 3000, batch_size: 1 } }), mode: "async" }));
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    let status = "queued";
    for (let i = 0; i < 300 && status !== "succeeded"; i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = ((await (await get(`/v1/fine-tunes/${id}`)).json()) as { status: string }).status;
    }
    expect(status).toBe("succeeded");

    const stub = env.JOBS.get(env.JOBS.idFromName(id));
    const storedBytes = await runInDurableObject(stub, async (_instance, state) => JSON.stringify(await state.storage.get("state")).length);
    expect(storedBytes).toBeLessThan(32 * 1024); // the whole log in the state was ~0.5 MB

    const events = parseSse(await (await get(`/v1/fine-tunes/${id}/events`)).text());
    const epochs = events.filter((e) => e.event === "epoch").map((e) => e.data.epoch as number);
    expect(epochs).toEqual(Array.from({ length: 3000 }, (_, i) => i + 1));
    expect(events.map((e) => e.id)).toEqual(Array.from({ length: events.length }, (_, i) => i + 1));
    expect(events.at(-1)!.event).toBe("done");

    let cursor: string | null = "0";
    const paged: number[] = [];
    while (cursor !== null) {
      const page = (await (await get(`/v1/fine-tunes/${id}/metrics?limit=1000&cursor=${cursor}`)).json()) as Page;
      paged.push(...page.data.map((h) => h.epoch));
      cursor = page.next_cursor;
    }
    expect(paged).toEqual(epochs);

    const list = (await (await get("/v1/fine-tunes?limit=100")).json()) as { data: { id: string; metrics: { epochs: number } }[] };
    expect(list.data.find((j) => j.id === id)!.metrics.epochs).toBe(3000);
  });

  it("jobs stored before the logs were kept apart are moved to the tables when first read", async () => {
    const epochs = Array.from({ length: 150 }, (_, i) => ({ epoch: i + 1, train_loss: 1 / (i + 1), lr: 0.001 }));
    const id = (n: number) => `ft_${String(n).padStart(32, "0")}`;
    const job = (jobId: string, mode: "sync" | "async") => ({
      id: jobId, object: "fine_tune", status: "succeeded", mode, created_at: "2026-11-30T00:00:00.000Z", started_at: "2026-11-30T00:00:00.000Z",
      finished_at: "2026-11-30T00:00:01.000Z", plan: { params: 1, trainable_params: 1, flops: 1, memory_bytes: 1, steps: 150, placement: "edge" },
      metrics: { history: epochs, best_epoch: 150, steps: 150, samples_per_second: 1, duration_ms: 1 }, engine: null, error: null, weights_url: null,
    });
    // the owner of the worker-test-key: its SHA-256, as auth stores it
    const owner = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode("worker-test-key"))), (b) => b.toString(16).padStart(2, "0")).join("");
    const syncId = id(1);
    await runInDurableObject(env.JOBS.get(env.JOBS.idFromName(syncId)), async (_i, state) => {
      await state.storage.put("record", { job: job(syncId, "sync"), owner });
    });
    const asyncId = id(2);
    const events = [{ id: 1, event: "status", data: { status: "queued", attempt: 0 } }, ...epochs.map((e, i) => ({ id: i + 2, event: "epoch", data: { ...e, attempt: 1 } })), { id: 152, event: "done", data: {} }];
    await runInDurableObject(env.JOBS.get(env.JOBS.idFromName(asyncId)), async (_i, state) => {
      await state.storage.put("state", { job: job(asyncId, "async"), owner, placement: "edge", inputKey: "x", events, attempt: 1, lease: null, cancelRequested: false, weightsKey: null });
    });
    for (const jobId of [syncId, asyncId]) {
      const got = (await (await get(`/v1/fine-tunes/${jobId}`)).json()) as { metrics: { history: unknown[]; epochs: number; history_truncated: boolean } };
      expect(got.metrics).toMatchObject({ epochs: 150, history_truncated: true });
      expect(got.metrics.history).toHaveLength(100);
      const page = (await (await get(`/v1/fine-tunes/${jobId}/metrics?limit=1000`)).json()) as Page;
      expect(page.data.map((h) => h.epoch)).toEqual(epochs.map((e) => e.epoch));
    }
    const replayed = parseSse(await (await get(`/v1/fine-tunes/${asyncId}/events`)).text());
    expect(replayed.map((e) => e.id)).toEqual(events.map((e) => e.id));
  });
});
