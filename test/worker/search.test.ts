/**
 * Searches inside workerd: the search job's Durable Object creates its trials as jobs of their
 * own, the Queue's consumer trains them, each trial reports to its parent, and the parent keeps
 * the best trial's weights (an R2 copy, byte for byte). Cancelling the parent cancels its trials.
 */
import { SELF, env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../worker/index.js";
import { regressionData, seedRequest } from "../helpers.js";

const auth = { authorization: "Bearer worker-test-key" };
const post = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json", ...auth }, body: JSON.stringify(body) });
const get = async (path: string) => (await (await SELF.fetch(`http://edgetune.test${path}`, { headers: auth })).json()) as Record<string, any>;

const searchRequest = (placement: "edge" | "gpu-node", search: Record<string, unknown>) => ({
  ...seedRequest(48, { training: { epochs: 2, batch_size: 16, optimizer: { type: "adam", lr: 1e-3 }, loss: { type: "mse" } } }),
  data: { train: regressionData(48), validation: regressionData(16, 10, 99) },
  mode: "async",
  placement,
  search,
});

async function waitFor<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("searches in workerd", () => {
  it("4 edge trials with parallel 2 run through the Queue: four succeeded child jobs, the best by val_loss, its weights byte for byte", async () => {
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post(searchRequest("edge", { space: { "training.optimizer.lr": { log_uniform: [1e-4, 1e-1] } }, trials: 4, parallel: 2, seed: 7 })));
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    let most = 0;
    const parent = await waitFor(
      "the search to end",
      async () => {
        const job = await get(`/v1/fine-tunes/${id}`);
        most = Math.max(most, job.trials.filter((t: { status: string }) => t.status === "queued" || t.status === "running").length);
        return job;
      },
      (job) => job.status !== "running",
    );
    expect(parent.status).toBe("succeeded");
    expect(most).toBeLessThanOrEqual(2);
    const children = await Promise.all(parent.trials.map((t: { id: string }) => get(`/v1/fine-tunes/${t.id}`)));
    expect(children.map((c) => [c.status, c.parent])).toEqual(Array(4).fill(["succeeded", id]));
    const losses = children.map((c) => c.metrics.history.at(-1).val_loss as number);
    const best = children[losses.indexOf(Math.min(...losses))]!;
    expect(parent.best_trial).toBe(best.id);
    expect(parent.trials.map((t: { metric: number }) => t.metric)).toEqual(losses);
    const bytes = async (jobId: string) => new Uint8Array(await (await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${jobId}/weights`, { headers: auth })).arrayBuffer());
    const mine = await bytes(id);
    expect(mine.byteLength).toBeGreaterThan(100);
    expect(mine).toEqual(await bytes(best.id));
    expect(await env.BLOBS.head(`weights/${id}/best.safetensors`)).not.toBeNull();
    // and the best trial's input, for explain on the search
    const input = async (jobId: string) => new Uint8Array(await (await env.BLOBS.get(`inputs/${jobId}.safetensors`))!.arrayBuffer());
    expect(await input(id)).toEqual(await input(best.id));
    const listed = (await get("/v1/fine-tunes?limit=100")).data as { id: string; parent?: string }[];
    expect(listed.filter((j) => j.parent === id).map((j) => j.id).sort()).toEqual(children.map((c) => c.id).sort());
  });

  it("ASHA in the Durable Objects: the parent stops a trial at a rung (it ends cancelled, unranked) and the search still ends with the best of the rest", async () => {
    const body = searchRequest("edge", {
      space: { "training.optimizer.lr": { choice: [1e-2, 1e-7, 3e-3] } },
      algorithm: "grid",
      parallel: 1,
      early_termination: { type: "asha", grace_epochs: 1, reduction_factor: 2 },
    });
    body.training = { ...body.training, epochs: 4 };
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post(body));
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const parent = await waitFor("the search to end", () => get(`/v1/fine-tunes/${id}`), (job) => job.status !== "running");
    expect(parent.status).toBe("succeeded");
    // 1e-7 barely moves: worse than 1e-2 after its first epoch, so stopped at rung 1
    expect(parent.trials[1].stopped_at_rung).toBe(1);
    const stopped = await get(`/v1/fine-tunes/${parent.trials[1].id}`);
    expect(stopped.status).toBe("cancelled");
    expect(stopped.metrics.epochs).toBe(1); // the answer to its first report stopped it
    expect(parent.trials[0].status).toBe("succeeded");
    expect([parent.trials[0].id, parent.trials[2].id]).toContain(parent.best_trial);
  });

  it("cancelling a search of GPU-node trials cancels the waiting trials and starts none of the pending ones", async () => {
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post(searchRequest("gpu-node", { space: { "training.batch_size": { choice: [8, 16, 32] } }, algorithm: "grid", parallel: 2 })));
    expect(res.status).toBe(202);
    const created = (await res.json()) as { id: string; trials: { id: string; status: string }[] };
    expect(created.trials.map((t) => t.status)).toEqual(["queued", "queued", "pending"]);
    expect((await get(`/v1/fine-tunes/${created.trials[0]!.id}`)).status).toBe("queued");
    const cancel = await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${created.id}/cancel`, { method: "POST", headers: auth });
    expect(((await cancel.json()) as { status: string }).status).toBe("cancelled");
    for (const t of created.trials.slice(0, 2)) expect((await get(`/v1/fine-tunes/${t.id}`)).status).toBe("cancelled");
    const parent = await get(`/v1/fine-tunes/${created.id}`);
    expect(parent.trials.map((t: { status: string }) => t.status)).toEqual(["cancelled", "cancelled", "cancelled"]);
    expect((await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${created.trials[2]!.id}`, { headers: auth })).status).toBe(404);
  });

  it("quotas: a search holds min(parallel, trials) of MAX_ACTIVE_JOBS_PER_KEY until it ends; its cancel frees them all", async () => {
    const key = "search-quota-key";
    const vars = { ...env, EDGETUNE_API_KEYS: key, MAX_ACTIVE_JOBS_PER_KEY: "3" } as Env;
    const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;
    const call = (path: string, body?: unknown) =>
      worker.fetch(new Request(`http://edgetune.test${path}`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) }), vars, ctx);
    const one = { ...seedRequest(16, { training: { epochs: 1, batch_size: 8 } }), mode: "async", placement: "gpu-node" };
    const wide = await call("/v1/fine-tunes", searchRequest("gpu-node", { space: { "training.batch_size": { choice: [8, 16] } }, algorithm: "grid", parallel: 4 }));
    expect(wide.status).toBe(202); // 2 trials: it holds 2 slots, not 4
    const { id } = (await wide.json()) as { id: string };
    expect((await call("/v1/fine-tunes", one)).status).toBe(202);
    const refused = await call("/v1/fine-tunes", one);
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { code: string }).code).toBe("too_many_active_jobs");
    const tooWide = await call("/v1/fine-tunes", searchRequest("gpu-node", { space: { "training.batch_size": { choice: [8, 16, 32, 64] } }, algorithm: "grid", parallel: 4 }));
    expect(tooWide.status).toBe(422);
    expect((await call(`/v1/fine-tunes/${id}/cancel`)).status).toBe(200);
    expect((await call("/v1/fine-tunes", one)).status).toBe(202);
    expect((await call("/v1/fine-tunes", one)).status).toBe(202);
  });

  it("the parent's alarm repairs a lost report: a trial that ended unheard is recorded, and the next trial starts", async () => {
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post(searchRequest("gpu-node", { space: { "training.batch_size": { choice: [8, 16] } }, algorithm: "grid", parallel: 1 })));
    const created = (await res.json()) as { id: string; trials: { id: string }[] };
    const [first, second] = created.trials.map((t) => t.id) as [string, string];
    // the first trial ends without its report reaching the parent (a lost RPC): written in its own storage only
    await runInDurableObject(env.JOBS.get(env.JOBS.idFromName(first)), async (_instance, state) => {
      const stored = (await state.storage.get<{ job: { status: string; finished_at: string | null } }>("state"))!;
      await state.storage.put("state", { ...stored, job: { ...stored.job, status: "failed", finished_at: new Date().toISOString() } });
    });
    expect((await get(`/v1/fine-tunes/${created.id}`)).trials.map((t: { status: string }) => t.status)).toEqual(["queued", "pending"]);
    expect(await runDurableObjectAlarm(env.JOBS.get(env.JOBS.idFromName(created.id)))).toBe(true);
    const parent = await get(`/v1/fine-tunes/${created.id}`);
    expect(parent.trials.map((t: { status: string }) => t.status)).toEqual(["failed", "queued"]);
    expect((await get(`/v1/fine-tunes/${second}`)).status).toBe("queued");
    expect(await (await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${created.id}/cancel`, { method: "POST", headers: auth })).json()).toMatchObject({ status: "cancelled" });
  });
});
