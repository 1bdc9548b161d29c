/**
 * The automatic choices through the API (docs/strategy.md): lr "auto" in a sync run and in a
 * GPU-node job (the stored input keeps "auto": the node runs the range test), batch_size "auto"
 * against the in-Worker memory budget, the range test in the sync/async decision, and the
 * refusals: "auto" where the schema has no such choice (400), a chosen loss the data cannot
 * take (422).
 */
import { describe, expect, it } from "vitest";
import { NodeClient } from "../../src/jobs/node-client.js";
import { runClaimedJob } from "../../src/jobs/runner.js";
import { DEFAULT_EDGE_BUDGET, estimateCpuMs, parsedRequestBytes } from "../../src/api/budget.js";
import { prepareRun } from "../../src/engine/prepare.js";
import { train } from "../../src/node/index.js";
import { classificationData, classifierRequest } from "../helpers.js";
import { NODE_TOKEN, testApp } from "./app.js";

const json = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
const autoRequest = (training: Record<string, unknown> = {}) =>
  classifierRequest(120, { epochs: 3, batch_size: 16, optimizer: { type: "adam", lr: "auto" }, loss: { type: "auto" }, ...training });

describe('POST /v1/fine-tunes with "auto"', () => {
  it("sync: metrics.lr_finder, plan.batch_size, plan.loss and plan.lr_finder_steps; the weights are the library's", async () => {
    const { app } = await testApp();
    const res = await app.request("/v1/fine-tunes", json({ ...autoRequest(), mode: "sync" }));
    expect(res.status).toBe(200);
    const result = (await res.json()) as Record<string, any>;
    expect(result.plan).toMatchObject({ batch_size: 16, loss: "cross_entropy", lr_finder_steps: 100, placement: "edge" });
    expect(result.metrics.lr_finder).toMatchObject({ method: "steep" });
    expect(result.metrics.lr_finder.lrs).toHaveLength(result.metrics.lr_finder.losses.length);
    const local = await train(autoRequest());
    expect(result.weights).toBe(local.weights);
    expect(result.metrics.lr_finder).toEqual(local.metrics.lr_finder);
    // the job record keeps the curve; the list leaves it out
    const job = (await (await app.request(`/v1/fine-tunes/${result.id}`)).json()) as Record<string, any>;
    expect(job.metrics.lr_finder.lr).toBe(result.metrics.lr_finder.lr);
    const list = (await (await app.request("/v1/fine-tunes")).json()) as { data: Record<string, any>[] };
    expect(list.data[0]!.metrics).not.toHaveProperty("lr_finder");
  });

  it("a GPU-node job runs the range test on the node and reports it; the stored request keeps lr \"auto\"", async () => {
    const t = await testApp();
    const node = new NodeClient({ baseUrl: "http://edge.test", token: NODE_TOKEN, fetch: async (url, init) => t.app.request(url, init) });
    const res = await t.app.request("/v1/fine-tunes", json({ ...autoRequest(), mode: "async", placement: "gpu-node" }));
    expect(res.status).toBe(202);
    const queued = (await res.json()) as Record<string, any>;
    expect(queued.plan).toMatchObject({ batch_size: 16, loss: "cross_entropy", lr_finder_steps: 100 });
    const claim = await node.claim("node-a");
    expect(await runClaimedJob(node, claim!, t.runtime, { placement: "gpu-node" })).toBe("completed");
    const done = (await (await t.app.request(`/v1/fine-tunes/${queued.id}`)).json()) as Record<string, any>;
    expect(done.status).toBe("succeeded");
    const local = await train(autoRequest());
    expect(done.metrics.lr_finder).toEqual(local.metrics.lr_finder);
    const weights = new Uint8Array(await (await t.app.request(`/v1/fine-tunes/${queued.id}/weights`)).arrayBuffer());
    expect(Buffer.from(weights).toString("base64")).toBe(local.weights);
  });

  it('batch_size "auto" fits the in-Worker memory budget; with placement "gpu-node", WebAssembly memory', async () => {
    const request = classifierRequest(1000, { epochs: 1, batch_size: "auto" });
    const at = (b: number) => prepareRun(classifierRequest(1000, { epochs: 1, batch_size: b })).plan.memory_bytes;
    // the parsed body shares the budget with the run (issue 21): add it, so the run's part is between the two
    const body = { ...request, mode: "sync" };
    const { app } = await testApp({ budget: { ...DEFAULT_EDGE_BUDGET, maxMemoryBytes: (at(32) + at(64)) / 2 + parsedRequestBytes(JSON.stringify(body).length, "json") } });
    const edge = await app.request("/v1/fine-tunes", json(body));
    expect(edge.status).toBe(200);
    expect(((await edge.json()) as Record<string, any>).plan.batch_size).toBe(32);
    const gpu = await app.request("/v1/fine-tunes", json({ ...request, mode: "async", placement: "gpu-node" }));
    expect(gpu.status).toBe(202);
    expect(((await gpu.json()) as Record<string, any>).plan.batch_size).toBe(256);
  });

  it("the range test counts against the in-Worker budget: a run that fits without it is not sync with it", async () => {
    const fixed = prepareRun(classifierRequest(120, { epochs: 3, batch_size: 16 })).plan;
    const auto = prepareRun(autoRequest()).plan;
    const maxCpuMs = (estimateCpuMs(fixed, DEFAULT_EDGE_BUDGET) + estimateCpuMs(auto, DEFAULT_EDGE_BUDGET)) / 2;
    const { app } = await testApp({ budget: { ...DEFAULT_EDGE_BUDGET, maxCpuMs } });
    expect((await app.request("/v1/fine-tunes", json({ ...classifierRequest(120, { epochs: 3, batch_size: 16 }), mode: "sync" }))).status).toBe(200);
    const refused = await app.request("/v1/fine-tunes", json({ ...autoRequest(), mode: "sync" }));
    expect(refused.status).toBe(422);
    const problem = (await refused.json()) as { code: string; errors: { path: string; message: string }[] };
    expect(problem).toMatchObject({ code: "over_budget", errors: [{ path: "mode" }] });
    expect(problem.errors[0]!.message).toContain("24 steps and up to 100 of the lr \"auto\" range test");
    const offloaded = await app.request("/v1/fine-tunes", json(autoRequest()));
    expect(offloaded.status).toBe(202);
    expect(await offloaded.json()).toMatchObject({ mode: "async", plan: { placement: "gpu-node" } });
  });

  it('"auto" where the schema has no such choice is a 400 naming the field', async () => {
    const { app } = await testApp();
    const cases: [Record<string, unknown>, string][] = [
      [{ optimizer: { type: "sgd", lr: 0.1, momentum: "auto" } }, "training.optimizer.momentum"],
      [{ epochs: "auto" }, "training.epochs"],
      [{ schedule: { type: "step", step_size: "auto" } }, "training.schedule.step_size"],
      [{ schedule: { type: "cosine", max_lr: "auto" } }, "training.schedule.max_lr"],
      [{ schedule: { type: "sequential", schedulers: [{ type: "constant", factor: "auto" }], milestones: [] } }, "training.schedule.schedulers[0].factor"],
      [{ loss: { type: "cross_entropy", label_smoothing: "auto" } }, "training.loss.label_smoothing"],
      [{ batch_size: "AUTO" }, "training.batch_size"],
    ];
    for (const [training, path] of cases) {
      const res = await app.request("/v1/fine-tunes", json(classifierRequest(40, training)));
      expect(res.status, JSON.stringify(training)).toBe(400);
      const problem = (await res.json()) as { errors: { path: string }[] };
      expect(problem.errors.map((e) => e.path), JSON.stringify(training)).toContain(path);
    }
  });

  it('loss "auto" that chooses cross_entropy for labels the output cannot hold: a 422 naming the row', async () => {
    const { app } = await testApp();
    const { x, y } = classificationData(40);
    y[3] = 7;
    const res = await app.request("/v1/fine-tunes", json({ ...classifierRequest(40, { loss: { type: "auto" } }), data: { train: { x, y } } }));
    expect(res.status).toBe(422);
    expect(((await res.json()) as { errors: { path: string }[] }).errors[0]!.path).toMatch(/^data\.train\.y\[3\]/);
  });
});
