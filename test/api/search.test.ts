/**
 * Searches through the API over the in-process store (src/jobs/search.ts): the search job
 * creates its trials as jobs of their own, at most `parallel` at once, keeps the best one's
 * weights byte for byte, and cancels its trials with it; the refusals name the field.
 */
import { describe, expect, it } from "vitest";
import { runClaimedJob } from "../../src/jobs/runner.js";
import { regressionData, seedRequest } from "../helpers.js";
import { testApp } from "./app.js";

const json = (body: unknown, headers: Record<string, string> = {}) => ({ method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });

const searchRequest = (search: Record<string, unknown>, overrides: Record<string, unknown> = {}) => ({
  ...seedRequest(64, { training: { epochs: 3, batch_size: 16, optimizer: { type: "adam", lr: 1e-3 }, loss: { type: "mse" } } }),
  data: { train: regressionData(64), validation: regressionData(16, 10, 99) },
  mode: "async",
  placement: "edge",
  search,
  ...overrides,
});

const SPACE = { "training.optimizer.lr": { log_uniform: [1e-4, 1e-1] } };

async function setup(quotas?: { maxActiveJobs: number; maxStoredBytes: number | null }) {
  const t = await testApp(quotas ? { quotas } : {});
  const get = async (path: string) => (await (await t.app.request(path)).json()) as Record<string, any>;
  /** Runs the queued edge jobs one at a time (an in-process queue consumer), checking the parallel bound before each. */
  const drain = async (parentId: string, parallel: number) => {
    let runs = 0;
    for (let claim = await t.store.takeEdgeJob("consumer"); claim; claim = await t.store.takeEdgeJob("consumer")) {
      const parent = await get(`/v1/fine-tunes/${parentId}`);
      expect(parent.trials.filter((x: { status: string }) => x.status === "queued" || x.status === "running").length).toBeLessThanOrEqual(parallel);
      await runClaimedJob(t.store.channel, claim, t.runtime, { placement: "edge" });
      runs++;
    }
    return runs;
  };
  return { ...t, get, drain };
}

describe("searches over the in-process store", () => {
  it("4 trials, parallel 2: four succeeded child jobs listed with parent; the best has the lowest val_loss and the search's weights are its bytes", async () => {
    const { app, get, drain } = await setup();
    const res = await app.request("/v1/fine-tunes", json(searchRequest({ space: SPACE, trials: 4, parallel: 2, seed: 1 })));
    expect(res.status).toBe(202);
    const created = (await res.json()) as Record<string, any>;
    expect(res.headers.get("location")).toBe(`/v1/fine-tunes/${created.id}`);
    expect(created.status).toBe("running");
    expect(created.trials.map((t: { status: string }) => t.status)).toEqual(["queued", "queued", "pending", "pending"]);
    expect(created.search).toMatchObject({ trials: 4, parallel: 2, metric: "val_loss", algorithm: "random" });

    expect(await drain(created.id, 2)).toBe(4);
    const parent = await get(`/v1/fine-tunes/${created.id}`);
    expect(parent.status).toBe("succeeded");
    expect(parent.trials).toHaveLength(4);
    const children = await Promise.all(parent.trials.map((t: { id: string }) => get(`/v1/fine-tunes/${t.id}`)));
    for (const [i, child] of children.entries()) {
      expect(child.status).toBe("succeeded");
      expect(child.parent).toBe(created.id);
      expect(child.mode).toBe("async");
      expect(parent.trials[i].status).toBe("succeeded");
      expect(parent.trials[i].epoch).toBe(3);
      expect(parent.trials[i].metric).toBe(child.metrics.history.at(-1).val_loss);
      expect(Object.keys(parent.trials[i].params)).toEqual(["training.optimizer.lr"]);
    }
    const losses = children.map((c) => c.metrics.history.at(-1).val_loss as number);
    const best = children[losses.indexOf(Math.min(...losses))]!;
    expect(new Set(losses).size).toBe(4); // different rates: different runs
    expect(parent.best_trial).toBe(best.id);
    expect(parent.metrics.history.at(-1).val_loss).toBe(Math.min(...losses));
    const bytes = async (id: string) => new Uint8Array(await (await app.request(`/v1/fine-tunes/${id}/weights`)).arrayBuffer());
    expect(await bytes(created.id)).toEqual(await bytes(best.id));
    expect(await bytes(created.id)).not.toEqual(await bytes(children.find((c) => c.id !== best.id)!.id));

    // the search explains the weights it serves: the best trial's model and data
    const explained = await app.request(`/v1/fine-tunes/${created.id}/explain`, json({ method: "integrated_gradients", rows: [[0, 0, 0, 0, 0, 0, 0, 0, 0, 1]], steps: 8 }));
    const direct = await app.request(`/v1/fine-tunes/${best.id}/explain`, json({ method: "integrated_gradients", rows: [[0, 0, 0, 0, 0, 0, 0, 0, 0, 1]], steps: 8 }));
    expect(explained.status).toBe(200);
    expect(await explained.json()).toEqual(await direct.json());

    const list = await get("/v1/fine-tunes?limit=10");
    expect(list.data).toHaveLength(5);
    expect(list.data.filter((j: { parent?: string }) => j.parent === created.id)).toHaveLength(4);

    // the stream: one trial event per trial change, then done
    const text = await (await app.request(`/v1/fine-tunes/${created.id}/events`)).text();
    const events = [...text.matchAll(/^event: (\w+)\ndata: (.*)$/gm)].map((m) => ({ event: m[1]!, data: JSON.parse(m[2]!) }));
    const trialEvents = events.filter((e) => e.event === "trial");
    expect(trialEvents.filter((e) => e.data.status === "succeeded").map((e) => e.data.id).sort()).toEqual(parent.trials.map((t: { id: string }) => t.id).sort());
    expect(trialEvents.some((e) => e.data.status === "running")).toBe(true);
    expect(events.at(-1)!.event).toBe("done");
  });

  it("a grid over a choice runs each value once, in order; train_loss ranks a search without validation data", async () => {
    const { app, get, drain } = await setup();
    const body = { ...searchRequest({ space: { "training.batch_size": { choice: [8, 32] } }, algorithm: "grid", metric: "train_loss", parallel: 2 }), data: { train: regressionData(64) } };
    const res = await app.request("/v1/fine-tunes", json(body));
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    await drain(id, 2);
    const parent = await get(`/v1/fine-tunes/${id}`);
    expect(parent.trials.map((t: { params: Record<string, number> }) => t.params["training.batch_size"])).toEqual([8, 32]);
    const children = await Promise.all(parent.trials.map((t: { id: string }) => get(`/v1/fine-tunes/${t.id}`)));
    expect(children.map((c) => c.plan.batch_size)).toEqual([8, 32]);
    const losses = children.map((c) => c.metrics.history.at(-1).train_loss as number);
    expect(parent.best_trial).toBe(children[losses.indexOf(Math.min(...losses))]!.id);
  });

  it("multipart: the trials share the CSV parts, each trial's input holds the data (every trial trains on all rows)", async () => {
    const { app, get, drain } = await setup();
    const rows = regressionData(40);
    const csv = (x: number[][], y: number[]) => ["a,b,c,d,e,f,g,h,i,j,y", ...x.map((r, i) => [...r, y[i]].join(","))].join("\n");
    const val = regressionData(12, 10, 5);
    const form = new FormData();
    const { data: _data, ...request } = searchRequest({ space: { "training.batch_size": { choice: [4, 40] } }, algorithm: "grid", parallel: 2 });
    form.set("request", JSON.stringify({ ...request, data: {} }));
    form.set("train", new File([csv(rows.x, rows.y)], "train.csv", { type: "text/csv" }));
    form.set("validation", new File([csv(val.x, val.y)], "validation.csv", { type: "text/csv" }));
    const res = await app.request("/v1/fine-tunes", { method: "POST", body: form });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    await drain(id, 2);
    const parent = await get(`/v1/fine-tunes/${id}`);
    expect(parent.status).toBe("succeeded");
    const children = await Promise.all(parent.trials.map((t: { id: string }) => get(`/v1/fine-tunes/${t.id}`)));
    expect(children.map((c) => c.metrics.steps)).toEqual([3 * 10, 3 * 1]); // 40 rows: 10 batches of 4, 1 of 40, for 3 epochs
  });

  it("Idempotency-Key: a retried search create answers the first search job; no second tree of jobs", async () => {
    const { app, get } = await setup();
    const body = searchRequest({ space: SPACE, trials: 2, parallel: 2 });
    const first = await app.request("/v1/fine-tunes", json(body, { "idempotency-key": "search-1" }));
    const again = await app.request("/v1/fine-tunes", json(body, { "idempotency-key": "search-1" }));
    expect([first.status, again.status]).toEqual([202, 202]);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(((await again.json()) as { id: string }).id).toBe(((await first.json()) as { id: string }).id);
    expect((await get("/v1/fine-tunes?limit=10")).data).toHaveLength(3);
    const other = await app.request("/v1/fine-tunes", json({ ...body, search: { ...body.search, seed: 1 } }, { "idempotency-key": "search-1" }));
    expect(other.status).toBe(422);
  });

  it("cancelling the search cancels its queued trials and never starts the pending ones", async () => {
    const { app, get, store } = await setup();
    const res = await app.request("/v1/fine-tunes", json(searchRequest({ space: SPACE, trials: 3, parallel: 2 })));
    const { id, trials } = (await res.json()) as { id: string; trials: { id: string }[] };
    const cancelled = await app.request(`/v1/fine-tunes/${id}/cancel`, { method: "POST" });
    expect(cancelled.status).toBe(200);
    expect(((await cancelled.json()) as { status: string }).status).toBe("cancelled");
    const parent = await get(`/v1/fine-tunes/${id}`);
    expect(parent.trials.map((t: { status: string }) => t.status)).toEqual(["cancelled", "cancelled", "cancelled"]);
    for (const t of trials.slice(0, 2)) expect((await get(`/v1/fine-tunes/${t.id}`)).status).toBe("cancelled");
    expect((await app.request(`/v1/fine-tunes/${trials[2]!.id}`)).status).toBe(404); // never created
    expect(await store.takeEdgeJob("consumer")).toBeNull();
    expect((await app.request(`/v1/fine-tunes/${id}/weights`)).status).toBe(404);
  });

  it("a search itself cannot be paused (409 not_pausable); its trials can, and the search shows the trial paused", async () => {
    const { app, get } = await setup();
    const res = await app.request("/v1/fine-tunes", json(searchRequest({ space: SPACE, trials: 3, parallel: 2 })));
    const { id, trials } = (await res.json()) as { id: string; trials: { id: string }[] };
    const refused = await app.request(`/v1/fine-tunes/${id}/pause`, { method: "POST" });
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as { code: string }).code).toBe("not_pausable");
    const paused = await app.request(`/v1/fine-tunes/${trials[0]!.id}/pause`, { method: "POST" });
    expect(paused.status).toBe(200);
    expect(((await paused.json()) as { status: string }).status).toBe("paused");
    expect((await get(`/v1/fine-tunes/${id}`)).trials[0].status).toBe("paused");
  });

  it("refusals: an unknown path or a value out of range is a 422 at search.space.<path>; sync and a val_ metric without validation data are 422s", async () => {
    const { app } = await setup();
    const problem = async (body: unknown) => {
      const res = await app.request("/v1/fine-tunes", json(body));
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      return { status: res.status, body: (await res.json()) as { code: string; errors: { path: string; message: string }[] } };
    };
    const unknown = await problem(searchRequest({ space: { "training.optimiser.lr": { uniform: [0.1, 0.2] } }, trials: 2 }));
    expect(unknown.status).toBe(422);
    expect(unknown.body.errors[0]!.path).toBe("search.space.training.optimiser.lr");
    const range = await problem(searchRequest({ space: { "training.optimizer.betas[1]": { uniform: [0.9, 1.5] } }, trials: 2 }));
    expect(range.status).toBe(422);
    expect(range.body.errors.map((e) => e.path)).toEqual(["search.space.training.optimizer.betas[1]"]);
    const sampled = await problem(searchRequest({ space: { "training.batch_size": { uniform: [2, 3] } }, trials: 2 }));
    expect(sampled.status).toBe(422); // a uniform draw is no integer: each trial's request is validated
    expect(sampled.body.errors[0]!.path).toBe("search.space.training.batch_size");
    const sync = await problem(searchRequest({ space: SPACE, trials: 2 }, { mode: "sync" }));
    expect(sync.status).toBe(422);
    expect(sync.body.errors[0]!.path).toBe("mode");
    const noValidation = await problem({ ...searchRequest({ space: SPACE, trials: 2 }), data: { train: regressionData(64) } });
    expect(noValidation.status).toBe(422);
    expect(noValidation.body.errors[0]!.path).toBe("search.metric");
    const schema = await problem(searchRequest({ space: SPACE, trials: 0 }));
    expect(schema.status).toBe(400);
    expect(schema.body.errors[0]!.path).toBe("search.trials");
  });

  it("ASHA: a trial worse at a rung than the cutoff of those recorded there before it is stopped (cancelled, never ranked); the rest run all their epochs", async () => {
    const { app, get, drain } = await setup();
    const rates = [1e-2, 1e-6, 3e-3, 1e-7];
    const body = searchRequest({ space: { "training.optimizer.lr": { choice: rates } }, algorithm: "grid", parallel: 1, early_termination: { type: "asha", grace_epochs: 1, reduction_factor: 2 } });
    body.training = { ...body.training, epochs: 4 };
    const res = await app.request("/v1/fine-tunes", json(body));
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    await drain(id, 1);
    const parent = await get(`/v1/fine-tunes/${id}`);
    expect(parent.status).toBe("succeeded");
    const children = await Promise.all(parent.trials.map((t: { id: string }) => get(`/v1/fine-tunes/${t.id}`)));
    // the rule, replayed over the children's histories in the order they ran (parallel 1): rungs 1 and 2 of 4 epochs
    const recorded: Record<number, number[]> = { 1: [], 2: [] };
    const expected = children.map((c) => {
      for (const rung of [1, 2]) {
        const loss = c.metrics.history.find((h: { epoch: number }) => h.epoch === rung)?.val_loss as number;
        const before = [...recorded[rung]!].sort((a, b) => a - b);
        recorded[rung]!.push(-loss);
        if (before.length === 0) continue;
        const pos = 0.5 * (before.length - 1);
        const cutoff = before[Math.floor(pos)]! + (before[Math.ceil(pos)]! - before[Math.floor(pos)]!) * (pos - Math.floor(pos));
        if (-loss < cutoff) return rung;
      }
      return undefined;
    });
    expect(parent.trials.map((t: { stopped_at_rung?: number }) => t.stopped_at_rung)).toEqual(expected);
    expect(expected.filter((r) => r !== undefined).length).toBeGreaterThan(0);
    for (const [i, c] of children.entries()) {
      expect(c.status).toBe(expected[i] === undefined ? "succeeded" : "cancelled");
      if (expected[i] === undefined) expect(c.metrics.history).toHaveLength(4);
      // the first epoch's report is sent at once, and its answer carries the stop: no epoch more
      if (expected[i] === 1) expect(c.metrics.history).toHaveLength(1);
    }
    const finals = children.map((c, i) => (expected[i] === undefined ? (c.metrics.history.at(-1).val_loss as number) : Infinity));
    expect(parent.best_trial).toBe(children[finals.indexOf(Math.min(...finals))]!.id);
  });

  it("quotas: a search holds min(parallel, trials) active jobs; more than MAX_ACTIVE_JOBS_PER_KEY is a 422 at search.parallel, more than is free a 429", async () => {
    const { app, store } = await setup({ maxActiveJobs: 3, maxStoredBytes: null });
    const tooWide = await app.request("/v1/fine-tunes", json(searchRequest({ space: SPACE, trials: 8, parallel: 4 })));
    expect(tooWide.status).toBe(422);
    expect(((await tooWide.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe("search.parallel");
    expect((await app.request("/v1/fine-tunes", json(searchRequest({ space: SPACE, trials: 2, parallel: 8 })))).status).toBe(202); // holds 2
    expect((await store.usage(""))).toMatchObject({ activeJobs: 2 });
    const full = await app.request("/v1/fine-tunes", json(searchRequest({ space: SPACE, trials: 4, parallel: 2 })));
    expect(full.status).toBe(429);
    expect(((await full.json()) as { code: string }).code).toBe("too_many_active_jobs");
  });
});
