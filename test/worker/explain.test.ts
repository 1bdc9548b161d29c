/**
 * Explanations inside workerd: `explain` in a sync create runs in the Worker, the run input goes
 * to R2 next to the weights, and POST /v1/fine-tunes/{id}/explain reads both back from R2 and the
 * job from its Durable Object.
 */
import { SELF, env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { seedRequest } from "../helpers.js";

const auth = { authorization: "Bearer worker-test-key" };
const post = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json", ...auth }, body: JSON.stringify(body) });

describe("explanations in workerd", () => {
  it("explain in the request, then on demand from R2: the same numbers; bad input is a 422", async () => {
    const spec = { method: "integrated_gradients", steps: 32, target: 0 };
    const res = await SELF.fetch("http://edgetune.test/v1/fine-tunes", post({ ...seedRequest(64, { training: { epochs: 2 } }), explain: spec }));
    expect(res.status).toBe(200);
    const result = (await res.json()) as { id: string; engine: { kernel: string }; explanations: { attributions: number[][]; convergence_delta: number[] } };
    expect(result.engine.kernel).toBe("wasm-relaxed-simd");
    expect(result.explanations.attributions).toHaveLength(64);
    expect(await env.BLOBS.get(`inputs/${result.id}.safetensors`)).not.toBeNull();

    const again = await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${result.id}/explain`, post(spec));
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual(result.explanations);

    const bad = await SELF.fetch(`http://edgetune.test/v1/fine-tunes/${result.id}/explain`, post({ method: "kernel_shap", rows: [[1, 2, 3]] }));
    expect(bad.status).toBe(422);
    expect(bad.headers.get("content-type")).toBe("application/problem+json");
    expect(((await bad.json()) as { errors: { path: string }[] }).errors.map((e) => e.path)).toContain("rows[0]");
  });
});
