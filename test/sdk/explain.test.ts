/** client.fineTunes.explain against the real app (app.request() as the injected fetch). */
import { describe, expect, it } from "vitest";
import { ExplanationFailedError, UnprocessableEntityError, type Explanation } from "../../src/sdk/index.js";
import { NodeClient } from "../../src/jobs/node-client.js";
import { runClaimedExplanation } from "../../src/jobs/explain-runner.js";
import { NODE_TOKEN } from "../api/app.js";
import { seedRequest } from "../helpers.js";
import { header, sdkSetup } from "./helpers.js";

describe("client.fineTunes.explain", () => {
  it("posts the explain object and answers the explanations; bad input is UnprocessableEntityError naming the field", async () => {
    const { client, calls } = await sdkSetup();
    const result = await client.fineTunes.create({ ...seedRequest(64, { training: { epochs: 2 } }), mode: "sync" });
    const e = await client.fineTunes.explain(result.id, { method: "integrated_gradients", steps: 32, target: 0 });
    const call = calls.at(-1)!;
    expect(call.url).toBe(`http://edge.test/v1/fine-tunes/${result.id}/explain`);
    expect(header(call, "content-type")).toBe("application/json");
    expect(JSON.parse(call.init.body as string)).toEqual({ method: "integrated_gradients", steps: 32, target: 0 });
    expect(e.method).toBe("integrated_gradients");
    expect(e.attributions).toHaveLength(64); // no validation rows: the first 100 (all) training rows
    expect(e.convergence_delta).toHaveLength(64);
    const error = await client.fineTunes.explain(result.id, { method: "kernel_shap", rows: [[1, 2]] }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(UnprocessableEntityError);
    expect((error as UnprocessableEntityError).errors.map((i) => i.path)).toContain("rows[0]");
  });

  it("a 202 (on a GPU node) is waited for: the same explanations as in the Worker; a failed task is ExplanationFailedError", async () => {
    const { client, app, runtime } = await sdkSetup();
    const result = await client.fineTunes.create({ ...seedRequest(64, { training: { epochs: 2 } }), mode: "sync" });
    const node = new NodeClient({ baseUrl: "http://edge.test", token: NODE_TOKEN, fetch: async (url, init) => app.request(url, init) });
    // a node that takes one task once it is queued
    const work = async (fail = false) => {
      for (;;) {
        const claim = await node.claim("sdk-node");
        if (!claim) {
          await new Promise((r) => setTimeout(r, 5));
          continue;
        }
        if (fail) return node.complete(claim.job.id, claim.leaseId, { failure: "the node ran out of memory" }, null);
        return runClaimedExplanation(node, claim, runtime);
      }
    };
    const spec = { method: "integrated_gradients" as const, steps: 16, target: 0 };
    const queued: Explanation[] = [];
    const [onNode] = await Promise.all([client.fineTunes.explain(result.id, { ...spec, placement: "gpu-node" }, { pollInterval: 5, onQueued: (e) => void queued.push(e) }), work()]);
    expect(queued).toHaveLength(1);
    expect(queued[0]).toMatchObject({ object: "explanation", fine_tune: result.id, status: "queued" });
    expect(onNode).toEqual(await client.fineTunes.explain(result.id, spec));
    expect((await client.fineTunes.retrieveExplanation(result.id, queued[0]!.id)).status).toBe("succeeded");

    const [failed] = await Promise.all([client.fineTunes.explain(result.id, { ...spec, placement: "gpu-node" }, { pollInterval: 5 }).catch((e: unknown) => e), work(true)]);
    expect(failed).toBeInstanceOf(ExplanationFailedError);
    expect((failed as ExplanationFailedError).explanation.error?.message).toBe("the node ran out of memory");
  });

  it("createExplanation sends an Idempotency-Key (a given one replays the first task); cancelExplanation cancels, and a retried cancel answers the same", async () => {
    const { client, calls } = await sdkSetup();
    const result = await client.fineTunes.create({ ...seedRequest(64, { training: { epochs: 2 } }), mode: "sync" });
    const spec = { method: "integrated_gradients" as const, steps: 4, target: 0, placement: "gpu-node" as const };
    const first = (await client.fineTunes.createExplanation(result.id, spec)) as Explanation;
    expect(header(calls.at(-1)!, "idempotency-key")).toMatch(/\S+/);
    const keyed = (await client.fineTunes.createExplanation(result.id, spec, { idempotencyKey: "explain-once" })) as Explanation;
    const replayed = (await client.fineTunes.createExplanation(result.id, spec, { idempotencyKey: "explain-once" })) as Explanation;
    expect(replayed.id).toBe(keyed.id);
    expect(keyed.id).not.toBe(first.id);
    await client.fineTunes.createExplanation(result.id, spec, { idempotencyKey: null });
    expect(header(calls.at(-1)!, "idempotency-key")).toBeNull();

    const cancelled = await client.fineTunes.cancelExplanation(result.id, first.id);
    expect(cancelled).toMatchObject({ id: first.id, status: "cancelled" });
    expect(calls.at(-1)!.url).toBe(`http://edge.test/v1/fine-tunes/${result.id}/explanations/${first.id}/cancel`);
    expect((await client.fineTunes.cancelExplanation(result.id, first.id)).status).toBe("cancelled");
    expect((await client.fineTunes.retrieveExplanation(result.id, keyed.id)).status).toBe("queued");
  });
});
