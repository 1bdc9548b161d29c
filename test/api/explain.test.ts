/**
 * POST /v1/fine-tunes/{id}/explain and `explain` in the create request, through the app in Node
 * (real engine and kernels, the in-process job store); async jobs through the in-process consumer.
 */
import { describe, expect, it } from "vitest";
import { runClaimedJob } from "../../src/jobs/runner.js";
import { Explanations } from "../../src/schema/explain.js";
import { Job } from "../../src/schema/job.js";
import { DEFAULT_EDGE_BUDGET } from "../../src/api/budget.js";
import { seedRequest } from "../helpers.js";
import { testApp } from "./app.js";
import { createApp } from "../../src/api/app.js";
import { DEFAULT_LEASE_POLICY } from "../../src/jobs/state.js";
import { NodeClient } from "../../src/jobs/node-client.js";
import { runClaimedExplanation } from "../../src/jobs/explain-runner.js";
import { decodeExplanationTask, explanationIssues, explanationTaskOf } from "../../src/jobs/explain-task.js";
import { Explanation } from "../../src/schema/explanation.js";
import { NODE_TOKEN } from "./app.js";

const json = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

async function expectProblem(res: Response, status: number, code: string, path?: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toBe("application/problem+json");
  const body = (await res.json()) as { code: string; detail: string; errors?: { path: string }[] };
  expect(body.code).toBe(code);
  if (path) expect(body.errors?.map((e) => e.path)).toContain(path);
  return body;
}

const small = () => seedRequest(64, { training: { epochs: 2, batch_size: 16 }, data: { train: seedRequest(64).data.train, validation_split: 0.25 } });

/**
 * An app whose CPU budget (5 ms) the default KernelSHAP exceeds, and a fine-tune of `small()`
 * that succeeded, trained by an app with the default budget on the same store: under the 5 ms
 * budget a loaded machine can stop the training itself (over_budget, cancelled).
 */
async function smallBudgetWithJob(options: Parameters<typeof testApp>[0] = {}) {
  const t = await testApp({ ...options, budget: { ...DEFAULT_EDGE_BUDGET, maxCpuMs: 5 } });
  const trainer = await testApp({ store: t.store });
  const res = await trainer.app.request("/v1/fine-tunes", json(small()));
  expect(res.status).toBe(200);
  const { id, status } = (await res.json()) as { id: string; status: string };
  expect(status).toBe("succeeded");
  return { ...t, id };
}

describe("explain in the create request", () => {
  it("a sync run answers result.explanations, and the job keeps them", async () => {
    const { app } = await testApp();
    const res = await app.request("/v1/fine-tunes", json({ ...small(), explain: { method: "kernel_shap", samples: 64, target: 0 } }));
    expect(res.status).toBe(200);
    const result = (await res.json()) as { id: string; explanations: Explanations };
    const e = Explanations.parse(result.explanations);
    expect(e).toMatchObject({ method: "kernel_shap", target: 0 });
    expect(e.feature_names).toHaveLength(10);
    expect(e.attributions).toHaveLength(16); // the 16 validation rows
    expect(e.attributions.every((row) => row.length === 10 && row.every(Number.isFinite))).toBe(true);
    const job = Job.parse(await (await app.request(`/v1/fine-tunes/${result.id}`)).json());
    expect(job.explanations).toEqual(e);
    // a list item leaves them out (its size does not grow with the explanation)
    const list = (await (await app.request("/v1/fine-tunes")).json()) as { data: Record<string, unknown>[] };
    expect(list.data[0]!.explanations).toBeUndefined();
  });

  it("an async job explains on its worker and reports them in the job", async () => {
    const { app, store, runtime } = await testApp();
    const res = await app.request("/v1/fine-tunes", json({ ...small(), mode: "async", explain: { method: "integrated_gradients", steps: 8 } }));
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const claim = (await store.takeEdgeJob("consumer"))!;
    expect(await runClaimedJob(store.channel, claim, runtime, { placement: "edge" })).toBe("completed");
    const job = Job.parse(await (await app.request(`/v1/fine-tunes/${id}`)).json());
    expect(job.status).toBe("succeeded");
    expect(job.explanations!.convergence_delta).toHaveLength(16);
  });

  it("bad explain input is a 422 naming the field before anything trains", async () => {
    const { app } = await testApp();
    await expectProblem(await app.request("/v1/fine-tunes", json({ ...small(), explain: { method: "integrated_gradients", rows: [[1, 2]] } })), 422, "invalid_explain", "explain.rows[0]");
    await expectProblem(await app.request("/v1/fine-tunes", json({ ...small(), explain: { method: "kernel_shap", target: 1 } })), 422, "invalid_explain", "explain.target");
    await expectProblem(await app.request("/v1/fine-tunes", json({ ...small(), explain: { method: "lime" } })), 400, "invalid_request", "explain.method");
  });
});

describe("POST /v1/fine-tunes/{id}/explain", () => {
  it("explains a stored job's fine-tuned weights on demand: the same numbers as explain in the request", async () => {
    const { app } = await testApp();
    const spec = { method: "integrated_gradients", steps: 16, baseline: "mean", target: 0 };
    const created = (await (await app.request("/v1/fine-tunes", json({ ...small(), explain: spec }))).json()) as { id: string; explanations: Explanations };
    const res = await app.request(`/v1/fine-tunes/${created.id}/explain`, json(spec));
    expect(res.status).toBe(200);
    const e = Explanations.parse(await res.json());
    expect(e).toEqual(created.explanations);
    const rows = [[0.5, -0.25, 0, 0, 1, 0, 0, 0, 0, 0.125]];
    const own = Explanations.parse(await (await app.request(`/v1/fine-tunes/${created.id}/explain`, json({ method: "kernel_shap", rows, samples: 100 }))).json());
    expect(own.attributions).toHaveLength(1);
  });

  it("refuses bad input with a 422 naming the field, and a job that did not succeed", async () => {
    const { app } = await testApp();
    const { id } = (await (await app.request("/v1/fine-tunes", json(small()))).json()) as { id: string };
    await expectProblem(await app.request(`/v1/fine-tunes/${id}/explain`, json({ method: "kernel_shap", rows: [[1, 2, 3]] })), 422, "invalid_explain", "rows[0]");
    await expectProblem(await app.request(`/v1/fine-tunes/${id}/explain`, json({ method: "kernel_shap", target: 4 })), 422, "invalid_explain", "target");
    await expectProblem(await app.request(`/v1/fine-tunes/${id}/explain`, json({ method: "integrated_gradients", baseline: [1] })), 422, "invalid_explain", "baseline");
    await expectProblem(await app.request(`/v1/fine-tunes/${id}/explain`, json({ method: "integrated_gradients", steps: 1 })), 400, "invalid_request", "steps");
    const diverged = (await (await app.request("/v1/fine-tunes", json(seedRequest(128, { training: { epochs: 20, optimizer: { type: "sgd", lr: 1e6 } } })))).json()) as { id: string; status: string };
    expect(diverged.status).toBe("diverged");
    await expectProblem(await app.request(`/v1/fine-tunes/${diverged.id}/explain`, json({ method: "integrated_gradients" })), 422, "job_not_succeeded", "id");
    await expectProblem(await app.request(`/v1/fine-tunes/ft_${"0".repeat(32)}/explain`, json({ method: "integrated_gradients" })), 404, "not_found");
  });

  it("placement edge: an explanation over the in-Worker budget is a 422 over_budget that says what to do", async () => {
    // 5 ms of CPU: the run fits (about 0.2 ms), KernelSHAP of 16 rows x 1022 coalitions x 48 background rows does not
    const { app, id } = await smallBudgetWithJob();
    const body = await expectProblem(await app.request(`/v1/fine-tunes/${id}/explain`, json({ method: "kernel_shap", placement: "edge" })), 422, "over_budget", "samples");
    expect(body.detail).toContain('leave `placement` "auto"');
    expect((await app.request(`/v1/fine-tunes/${id}/explain`, json({ method: "kernel_shap", samples: 16, rows: [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]] }))).status).toBe(200);
  });

  it("placement edge: a job whose model is over the in-Worker memory budget is a 422 over_budget on placement", async () => {
    const { app, store, runtime } = await testApp();
    const { id } = (await (await app.request("/v1/fine-tunes", json(small()))).json()) as { id: string };
    // the same store behind a Worker with 1 KiB of memory
    const tight = createApp(() => ({
      runtime, store, apiKeys: [], budget: { ...DEFAULT_EDGE_BUDGET, maxMemoryBytes: 1024 }, maxBodyBytes: 1 << 20, version: "test",
      lease: DEFAULT_LEASE_POLICY, nodeTokens: [], pollMs: 10, rateLimiter: null, corsOrigins: [],
    }));
    const body = await expectProblem(await tight.request(`/v1/fine-tunes/${id}/explain`, json({ method: "integrated_gradients", steps: 4, placement: "edge" })), 422, "over_budget", "placement");
    expect(body.detail).toContain("MiB");
  });
});

describe("OpenAPI", () => {
  it("documents the route, the explain object in the request and explanations in the result and the job", async () => {
    const { app } = await testApp();
    const doc = (await (await app.request("http://x.test/openapi.json")).json()) as Record<string, any>;
    const op = doc.paths["/v1/fine-tunes/{id}/explain"].post;
    expect(op.operationId).toBe("explainFineTune");
    expect(op.requestBody.content["application/json"].schema.$ref).toBe("#/components/schemas/ExplainRequest");
    expect(op.responses["200"].content["application/json"].schema.$ref).toBe("#/components/schemas/Explanations");
    expect(op.responses["202"].content["application/json"].schema.$ref).toBe("#/components/schemas/Explanation");
    expect(doc.paths["/v1/fine-tunes/{id}/explanations/{eid}"].get.operationId).toBe("retrieveExplanation");
    expect(doc.paths["/v1/fine-tunes/{id}/explanations/{eid}/events"].get.operationId).toBe("streamExplanationEvents");
    expect(op.responses["422"].content["application/problem+json"].schema.$ref).toBe("#/components/schemas/Problem");
    expect(JSON.stringify(doc.components.schemas.ExplainRequest)).toContain('"kernel_shap"');
    expect(JSON.stringify(doc.components.schemas.FineTuneRequest.properties.explain)).toContain('"integrated_gradients"');
    expect(doc.components.schemas.FineTuneResult.properties.explanations).toBeDefined();
    expect(doc.components.schemas.Job.properties.explanations).toBeDefined();
  });
});

describe("explanations on a GPU node (202)", () => {
  const nodeAuth = { authorization: `Bearer ${NODE_TOKEN}`, "content-type": "application/json" };

  /** A succeeded fine-tune behind a Worker whose CPU budget (5 ms) the default KernelSHAP exceeds. */
  async function overBudget() {
    const t = await smallBudgetWithJob();
    const node = new NodeClient({ baseUrl: "http://edge.test", token: NODE_TOKEN, fetch: async (url, init) => t.app.request(url, init) });
    return { ...t, node };
  }

  it("over the budget: 202 with the queued explanation, a node computes it, GET returns the in-Worker numbers", async () => {
    const { app, store, runtime, id, node } = await overBudget();
    const spec = { method: "kernel_shap", target: 0 };
    const res = await app.request(`/v1/fine-tunes/${id}/explain`, json(spec));
    expect(res.status).toBe(202);
    const queued = Explanation.parse(await res.json());
    expect(queued).toMatchObject({ object: "explanation", fine_tune: id, status: "queued", placement: "gpu-node", result: null });
    expect(res.headers.get("location")).toBe(`/v1/fine-tunes/${id}/explanations/${queued.id}`);
    // the task is not a fine-tune: not listed, not retrievable as one
    const list = (await (await app.request("/v1/fine-tunes")).json()) as { data: { id: string }[] };
    expect(list.data.map((j) => j.id)).toEqual([id]);

    const claim = (await node.claim("node-1"))!;
    expect(explanationTaskOf(claim.job.id)).toEqual({ fineTuneId: id, explanationId: queued.id });
    expect(Explanation.parse(await (await app.request(res.headers.get("location")!)).json()).status).toBe("running");
    expect(await runClaimedExplanation(node, claim, runtime)).toBe("completed");

    const done = Explanation.parse(await (await app.request(res.headers.get("location")!)).json());
    expect(done.status).toBe("succeeded");
    expect(done.engine).toMatchObject({ kernel: runtime.variant, runtime: "node" });
    // the same explanation in the Worker, with a budget that fits it
    const roomy = createApp(() => ({
      runtime, store, apiKeys: [], budget: DEFAULT_EDGE_BUDGET, maxBodyBytes: 1 << 20, version: "test",
      lease: DEFAULT_LEASE_POLICY, nodeTokens: [], pollMs: 10, rateLimiter: null, corsOrigins: [],
    }));
    const inWorker = await roomy.request(`/v1/fine-tunes/${id}/explain`, json({ ...spec, placement: "edge" }));
    expect(inWorker.status).toBe(200);
    const expected = Explanations.parse(await inWorker.json());
    expect(done.result!.attributions).toHaveLength(16);
    let worst = 0;
    expected.attributions.forEach((row, i) => row.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - done.result!.attributions[i]![j]!)))));
    console.log(`node vs Worker KernelSHAP: largest difference ${worst.toExponential(2)}`);
    expect(worst).toBeLessThanOrEqual(1e-5);
    expect(done.result!.feature_names).toEqual(expected.feature_names);

    // its events: status, then done with the explanation
    const text = await (await app.request(`/v1/fine-tunes/${id}/explanations/${queued.id}/events`)).text();
    expect(text).toMatch(/event: status[\s\S]*event: done/);
    const last = JSON.parse(text.trim().split("\n").filter((l) => l.startsWith("data: ")).at(-1)!.slice(6));
    expect(Explanation.parse(last)).toMatchObject({ id: queued.id, status: "succeeded" });
  });

  it("placement gpu-node goes to a node whatever the budget; unknown or foreign ids are 404", async () => {
    const { app, id } = await overBudget();
    const res = await app.request(`/v1/fine-tunes/${id}/explain`, json({ method: "integrated_gradients", steps: 4, placement: "gpu-node" }));
    expect(res.status).toBe(202);
    const { id: eid } = Explanation.parse(await res.json());
    await expectProblem(await app.request(`/v1/fine-tunes/${id}/explanations/ex_${"0".repeat(32)}`), 404, "not_found", "eid");
    await expectProblem(await app.request(`/v1/fine-tunes/ft_${"1".repeat(32)}/explanations/${eid}`), 404, "not_found", "eid");
    await expectProblem(await app.request(`/v1/fine-tunes/${id}:${eid}`), 404, "not_found");
    await expectProblem(await app.request(`/v1/fine-tunes/${id}/explain`, json({ method: "integrated_gradients", placement: "moon" })), 400, "invalid_request", "placement");
    // the fine-tune deleted: its explanations answer 404 (their input went with it)
    expect((await app.request(`/v1/fine-tunes/${id}/explanations/${eid}`)).status).toBe(200);
    expect((await app.request(`/v1/fine-tunes/${id}`, { method: "DELETE" })).status).toBe(204);
    await expectProblem(await app.request(`/v1/fine-tunes/${id}/explanations/${eid}`), 404, "not_found", "eid");
  });

  it("a node's upload is checked against the task: wrong rows, widths, non-finite values, method and target are 422s", async () => {
    const { app, id, node } = await overBudget();
    expect((await app.request(`/v1/fine-tunes/${id}/explain`, json({ method: "integrated_gradients", steps: 4, target: 0, placement: "gpu-node" }))).status).toBe(202);
    const claim = (await node.claim("node-1"))!;
    const { header } = decodeExplanationTask((await node.readInput(claim.job.id, claim.leaseId))!);
    const good = {
      method: "integrated_gradients" as const,
      target: 0,
      feature_names: header.expected.feature_names,
      attributions: Array.from({ length: 16 }, () => new Array(10).fill(0.5)),
      feature_importance: new Array(10).fill(0.5),
      convergence_delta: new Array(16).fill(0),
    };
    expect(explanationIssues(header, good)).toEqual([]);
    const upload = (explanations: unknown, lease = claim.leaseId) =>
      app.request(`/v1/nodes/jobs/${claim.job.id}/explanation`, { method: "POST", headers: nodeAuth, body: JSON.stringify({ lease_id: lease, explanations, engine: { kernel: "wasm-simd", threads: 1, runtime: "node" }, duration_ms: 1 }) });
    await expectProblem(await upload({ ...good, attributions: good.attributions.slice(1) }), 422, "invalid_explanation", "explanations.attributions");
    await expectProblem(await upload({ ...good, attributions: [[1, 2, 3], ...good.attributions.slice(1)] }), 422, "invalid_explanation", "explanations.attributions[0]");
    // JSON has no NaN: 1e999 parses to Infinity
    const infinite = JSON.stringify({ lease_id: claim.leaseId, explanations: good, engine: { kernel: "wasm-simd", threads: 1, runtime: "node" }, duration_ms: 1 }).replace('"attributions":[[0.5', '"attributions":[[1e999');
    const inf = await app.request(`/v1/nodes/jobs/${claim.job.id}/explanation`, { method: "POST", headers: nodeAuth, body: infinite });
    expect([400, 422]).toContain(inf.status);
    expect(JSON.stringify(await inf.json())).toContain("explanations.attributions[0][0]");
    await expectProblem(await upload({ ...good, method: "kernel_shap", convergence_delta: undefined }), 422, "invalid_explanation", "explanations.method");
    await expectProblem(await upload({ ...good, target: 1 }), 422, "invalid_explanation", "explanations.target");
    await expectProblem(await upload({ ...good, convergence_delta: undefined }), 422, "invalid_explanation", "explanations.convergence_delta");
    expect((await upload(good, "stale-lease")).status).toBe(409);
    // none of those was taken: the task still runs, and the good one ends it
    expect(await (await upload(good)).json()).toEqual({ accepted: true });
    expect((await upload(good)).status).toBe(409); // a repeat: the lease ended with the task
    // a fine-tune's own job is not an explanation task
    await expectProblem(
      await app.request(`/v1/nodes/jobs/${id}/explanation`, { method: "POST", headers: nodeAuth, body: JSON.stringify({ lease_id: "x", explanations: good, engine: { kernel: "wasm-simd", threads: 1, runtime: "node" }, duration_ms: 1 }) }),
      422,
      "not_an_explanation",
      "id",
    );
  });

  it("a node that dies loses its lease: the task is queued again and another node finishes it", async () => {
    const t = await smallBudgetWithJob();
    const { id } = t;
    const node = new NodeClient({ baseUrl: "http://edge.test", token: NODE_TOKEN, fetch: async (url, init) => t.app.request(url, init) });
    const res = await t.app.request(`/v1/fine-tunes/${id}/explain`, json({ method: "integrated_gradients", steps: 4, placement: "gpu-node" }));
    const location = res.headers.get("location")!;
    const first = (await node.claim("dead-node"))!;
    await t.store.tick(Date.now() + DEFAULT_LEASE_POLICY.leaseMs + 1); // the lease alarm, past the lease
    expect(Explanation.parse(await (await t.app.request(location)).json()).status).toBe("queued");
    const second = (await node.claim("live-node"))!;
    expect(second.job.id).toBe(first.job.id);
    expect(second.attempt).toBe(2);
    expect(await runClaimedExplanation(node, first, t.runtime)).toBe("lease_lost");
    expect(await runClaimedExplanation(node, second, t.runtime)).toBe("completed");
    expect(Explanation.parse(await (await t.app.request(location)).json()).status).toBe("succeeded");
  });

  it("a queued explanation is a job of its key: MAX_ACTIVE_JOBS_PER_KEY counts it, cancel frees its slot, an ended one cannot be cancelled", async () => {
    const t = await smallBudgetWithJob({ quotas: { maxActiveJobs: 1, maxStoredBytes: null } });
    const { id } = t;
    const spec = { method: "integrated_gradients", steps: 4, placement: "gpu-node" };
    const first = await t.app.request(`/v1/fine-tunes/${id}/explain`, json(spec));
    expect(first.status).toBe(202);
    const queued = Explanation.parse(await first.json());
    const refused = await t.app.request(`/v1/fine-tunes/${id}/explain`, json(spec));
    await expectProblem(refused, 429, "too_many_active_jobs");
    expect(refused.headers.get("retry-after")).toBe("30");
    // an async fine-tune of the same key waits for the same slot
    await expectProblem(await t.app.request("/v1/fine-tunes", json({ ...small(), mode: "async" })), 429, "too_many_active_jobs");

    const cancel = `/v1/fine-tunes/${id}/explanations/${queued.id}/cancel`;
    const cancelled = await t.app.request(cancel, { method: "POST" });
    expect(cancelled.status).toBe(200);
    expect(Explanation.parse(await cancelled.json())).toMatchObject({ id: queued.id, status: "cancelled", result: null });
    // a retried cancel answers the same; a node finds nothing to claim
    expect(Explanation.parse(await (await t.app.request(cancel, { method: "POST" })).json()).status).toBe("cancelled");
    const node = new NodeClient({ baseUrl: "http://edge.test", token: NODE_TOKEN, fetch: async (url, init) => t.app.request(url, init) });
    expect(await node.claim("node-1")).toBeNull();

    // the slot is free again: the next explanation runs, and once it has ended it cannot be cancelled
    const next = await t.app.request(`/v1/fine-tunes/${id}/explain`, json(spec));
    expect(next.status).toBe(202);
    const { id: eid } = Explanation.parse(await next.json());
    expect(await runClaimedExplanation(node, (await node.claim("node-1"))!, t.runtime)).toBe("completed");
    await expectProblem(await t.app.request(`/v1/fine-tunes/${id}/explanations/${eid}/cancel`, { method: "POST" }), 409, "already_finished");
    await expectProblem(await t.app.request(`/v1/fine-tunes/${id}/explanations/ex_${"0".repeat(32)}/cancel`, { method: "POST" }), 404, "not_found", "eid");
  });

  it("MAX_STORED_BYTES_PER_KEY counts a queued explanation's stored task", async () => {
    const t = await smallBudgetWithJob();
    const { id } = t;
    const used = (await t.store.usage("")).storedBytes;
    expect(used).toBeGreaterThan(0);
    // room for the fine-tune and a little more, not for its explanation task (its model, data and weights again)
    const limited = await testApp({ store: t.store, budget: { ...DEFAULT_EDGE_BUDGET, maxCpuMs: 5 }, quotas: { maxActiveJobs: 8, maxStoredBytes: used + 64 } });
    await expectProblem(await limited.app.request(`/v1/fine-tunes/${id}/explain`, json({ method: "integrated_gradients", steps: 4, placement: "gpu-node" })), 429, "storage_quota_exceeded");
    // computed in the Worker, nothing is stored: not refused
    expect((await limited.app.request(`/v1/fine-tunes/${id}/explain`, json({ method: "integrated_gradients", steps: 4, placement: "edge" }))).status).toBe(200);
  });

  it("Idempotency-Key: a retried POST answers the first one's queued explanation; the key with another request is a 422", async () => {
    const { app, id, node } = await overBudget();
    const post = (body: unknown, key: string) => app.request(`/v1/fine-tunes/${id}/explain`, { ...json(body), headers: { "content-type": "application/json", "idempotency-key": key } });
    const spec = { method: "integrated_gradients", steps: 4, placement: "gpu-node" };
    const first = await post(spec, "explain-1");
    expect(first.status).toBe(202);
    const queued = Explanation.parse(await first.json());
    const again = await post(spec, "explain-1");
    expect(again.status).toBe(202);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(again.headers.get("location")).toBe(first.headers.get("location"));
    expect(Explanation.parse(await again.json()).id).toBe(queued.id);
    await expectProblem(await post({ ...spec, steps: 8 }, "explain-1"), 422, "idempotency_key_reused", "Idempotency-Key");
    await expectProblem(await post(spec, "bad key with spaces"), 400, "invalid_request", "Idempotency-Key");
    // one task was queued, not two
    expect(await node.claim("node-1")).not.toBeNull();
    expect(await node.claim("node-2")).toBeNull();
  });
});
