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

  it("an explanation over the in-Worker budget is a 422 over_budget that says what to do", async () => {
    // 5 ms of CPU: the run fits (about 0.2 ms), KernelSHAP of 16 rows x 1022 coalitions x 48 background rows does not
    const { app } = await testApp({ budget: { ...DEFAULT_EDGE_BUDGET, maxCpuMs: 5 } });
    const res = await app.request("/v1/fine-tunes", json(small()));
    expect(res.status).toBe(200);
    const { id } = (await res.json()) as { id: string };
    const body = await expectProblem(await app.request(`/v1/fine-tunes/${id}/explain`, json({ method: "kernel_shap" })), 422, "over_budget", "samples");
    expect(body.detail).toContain("give `explain` in the fine-tune request");
    expect((await app.request(`/v1/fine-tunes/${id}/explain`, json({ method: "kernel_shap", samples: 16, rows: [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]] }))).status).toBe(200);
  });

  it("a job whose model is over the in-Worker memory budget is a 422 over_budget on id", async () => {
    const { app, store, runtime } = await testApp();
    const { id } = (await (await app.request("/v1/fine-tunes", json(small()))).json()) as { id: string };
    // the same store behind a Worker with 1 KiB of memory
    const tight = createApp(() => ({
      runtime, store, apiKeys: [], budget: { ...DEFAULT_EDGE_BUDGET, maxMemoryBytes: 1024 }, maxBodyBytes: 1 << 20, version: "test",
      lease: DEFAULT_LEASE_POLICY, nodeTokens: [], pollMs: 10, rateLimiter: null, corsOrigins: [],
    }));
    const body = await expectProblem(await tight.request(`/v1/fine-tunes/${id}/explain`, json({ method: "integrated_gradients", steps: 4 })), 422, "over_budget", "id");
    expect(body.detail).toContain("MiB");
  });
});

describe("OpenAPI", () => {
  it("documents the route, the explain object in the request and explanations in the result and the job", async () => {
    const { app } = await testApp();
    const doc = (await (await app.request("http://x.test/openapi.json")).json()) as Record<string, any>;
    const op = doc.paths["/v1/fine-tunes/{id}/explain"].post;
    expect(op.operationId).toBe("explainFineTune");
    expect(op.requestBody.content["application/json"].schema.$ref).toBe("#/components/schemas/ExplainSpec");
    expect(op.responses["200"].content["application/json"].schema.$ref).toBe("#/components/schemas/Explanations");
    expect(op.responses["422"].content["application/problem+json"].schema.$ref).toBe("#/components/schemas/Problem");
    expect(JSON.stringify(doc.components.schemas.ExplainSpec)).toContain('"kernel_shap"');
    expect(JSON.stringify(doc.components.schemas.FineTuneRequest.properties.explain)).toContain('"integrated_gradients"');
    expect(doc.components.schemas.FineTuneResult.properties.explanations).toBeDefined();
    expect(doc.components.schemas.Job.properties.explanations).toBeDefined();
  });
});
