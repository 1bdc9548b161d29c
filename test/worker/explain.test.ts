/**
 * Explanations inside workerd: `explain` in a sync create runs in the Worker, the run input is
 * stored with the weights (in the job's Durable Object when small, else R2), and POST
 * /v1/fine-tunes/{id}/explain reads both back with the job.
 */
import { SELF, env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { seedRequest } from "../helpers.js";
import { DEV_NODE_TOKEN } from "../../src/api/auth.js";
import { ownerIndex } from "./owner-index.js";

const auth = { authorization: "Bearer worker-test-key" };
const post = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json", ...auth }, body: JSON.stringify(body) });

describe("explanations in workerd", () => {
  it("explain in the request, then on demand from the stored input: the same numbers; bad input is a 422", async () => {
    const spec = { method: "integrated_gradients", steps: 32, target: 0 };
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post({ ...seedRequest(64, { training: { epochs: 2 } }), explain: spec }));
    expect(res.status).toBe(200);
    const result = (await res.json()) as { id: string; engine: { kernel: string }; explanations: { attributions: number[][]; convergence_delta: number[] } };
    expect(result.engine.kernel).toBe("wasm-relaxed-simd");
    expect(result.explanations.attributions).toHaveLength(64);
    // a small input is held by the job's object (INLINE_BLOB_BYTES), with its weights
    expect(await runInDurableObject(env.JOBS.get(env.JOBS.idFromName(result.id)), async (_i, state) => (await state.storage.get("blob:input")) !== undefined)).toBe(true);

    const again = await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${result.id}/explain`, post(spec));
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual(result.explanations);

    const bad = await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${result.id}/explain`, post({ method: "kernel_shap", rows: [[1, 2, 3]] }));
    expect(bad.status).toBe(422);
    expect(bad.headers.get("content-type")).toBe("application/problem+json");
    expect(((await bad.json()) as { errors: { path: string }[] }).errors.map((e) => e.path)).toContain("rows[0]");
  });

  it("on a GPU node: 202, a node claims the task from the dispatcher, its upload is checked, GET returns the result", async () => {
    const spec = { method: "integrated_gradients", steps: 16, target: 0 };
    const created = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post(seedRequest(32, { training: { epochs: 1 } })));
    const { id } = (await created.json()) as { id: string };
    const inWorker = await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${id}/explain`, post(spec));
    expect(inWorker.status).toBe(200);
    const expected = (await inWorker.json()) as { attributions: number[][] };

    const res = await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${id}/explain`, post({ ...spec, placement: "gpu-node" }));
    expect(res.status).toBe(202);
    const queued = (await res.json()) as { id: string; status: string; fine_tune: string };
    expect(queued).toMatchObject({ status: "queued", fine_tune: id });
    const location = `http://edgetune.test${res.headers.get("location")}`;
    expect(location).toBe(`http://edgetune.test/v1/fine-tunes/${id}/explanations/${queued.id}`);
    // not a fine-tune of the listing
    const list = (await (await SELF.fetch("http://edgetune.test/v1/fine-tunes", { headers: auth })).json()) as { data: { id: string }[] };
    expect(list.data.some((j) => j.id.includes(":"))).toBe(false);

    const node = { authorization: `Bearer ${DEV_NODE_TOKEN}`, "content-type": "application/json" };
    const claimed = await SELF.fetch("http://edgetune.test/v1/nodes/claim", { method: "POST", headers: node, body: JSON.stringify({ node: "workerd-node" }) });
    expect(claimed.status).toBe(200);
    const claim = (await claimed.json()) as { job: { id: string }; lease_id: string };
    expect(claim.job.id).toBe(`${id}:${queued.id}`);
    const input = await SELF.fetch(`http://edgetune.test/v1/nodes/jobs/${claim.job.id}/input?lease_id=${claim.lease_id}`, { headers: node });
    expect(input.status).toBe(200);
    expect(new TextDecoder().decode((await input.arrayBuffer()).slice(0, 23))).toBe("edgetune-explain-task/1");
    expect(((await (await SELF.fetch(location, { headers: auth })).json()) as { status: string }).status).toBe("running");

    const upload = (explanations: unknown) =>
      SELF.fetch(`http://edgetune.test/v1/nodes/jobs/${claim.job.id}/explanation`, {
        method: "POST",
        headers: node,
        body: JSON.stringify({ lease_id: claim.lease_id, explanations, engine: { kernel: "wasm-simd", threads: 1, runtime: "node" }, duration_ms: 3 }),
      });
    const short = await upload({ ...expected, attributions: expected.attributions.slice(1) });
    expect(short.status).toBe(422);
    expect(((await short.json()) as { code: string; errors: { path: string }[] })).toMatchObject({ code: "invalid_explanation", errors: [{ path: "explanations.attributions" }] });
    const narrow = await upload({ ...expected, attributions: [[1], ...expected.attributions.slice(1)] });
    expect(((await narrow.json()) as { errors: { path: string }[] }).errors.map((e) => e.path)).toContain("explanations.attributions[0]");
    const good = await upload(expected);
    expect(await good.json()).toEqual({ accepted: true });

    const done = (await (await SELF.fetch(location, { headers: auth })).json()) as { status: string; result: unknown; engine: unknown };
    expect(done.status).toBe("succeeded");
    expect(done.result).toEqual(expected);
    expect(done.engine).toEqual({ kernel: "wasm-simd", threads: 1, runtime: "node" });
    const events = await (await SELF.fetch(`${location}/events`, { headers: auth })).text();
    expect(events).toMatch(/event: status[\s\S]*event: done/);
  });

  it("a queued explanation counts as an active job of its key until it is cancelled; cancel answers it cancelled", async () => {
    const index = await ownerIndex("worker-test-key");
    const created = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post(seedRequest(32, { training: { epochs: 1 } })));
    const { id } = (await created.json()) as { id: string };
    const before = await index.usage();
    const res = await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${id}/explain`, post({ method: "integrated_gradients", steps: 4, target: 0, placement: "gpu-node" }));
    expect(res.status).toBe(202);
    const { id: eid } = (await res.json()) as { id: string };
    const queued = await index.usage();
    expect(queued.activeJobs).toBe(before.activeJobs + 1);
    expect(queued.storedBytes).toBeGreaterThan(before.storedBytes);

    const cancel = await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${id}/explanations/${eid}/cancel`, { method: "POST", headers: auth });
    expect(cancel.status).toBe(200);
    expect(((await cancel.json()) as { status: string }).status).toBe("cancelled");
    expect((await index.usage()).activeJobs).toBe(before.activeJobs);
  });
});
