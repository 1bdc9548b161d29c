/**
 * Half-precision output of weights beyond the format's range (issue 20, finding 7): rounding
 * 70000 to float16 gives +Inf, which used to be stored. Now it is a 422 naming the tensor, or,
 * with output.overflow "clamp", the format's largest finite value. The frozen fc.weight holds
 * the out-of-range values (only fc.bias trains), so the result's weights are known exactly.
 */
import { describe, expect, it } from "vitest";
import { decodeBase64, encodeBase64 } from "../../src/formats/base64.js";
import { bf16BitsToF32, HALF_MAX } from "../../src/formats/dtype.js";
import { parseSafetensors, readTensorF32, writeSafetensors } from "../../src/formats/safetensors.js";
import { classificationData } from "../helpers.js";
import { testApp } from "./app.js";

const json = (body: unknown): RequestInit => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

/** fc.weight [3, 4] with `big` at [0, 0] and -`big` at [2, 3]; frozen, so the output holds them. */
function request(dtype: "float16" | "bfloat16", big: number, overflow?: "error" | "clamp", mode: "sync" | "async" = "sync") {
  const weight = new Float32Array(12).fill(0.5);
  weight[0] = big;
  weight[11] = -big;
  const weights = writeSafetensors([
    { name: "fc.weight", shape: [3, 4], data: weight },
    { name: "fc.bias", shape: [3], data: new Float32Array(3) },
  ]);
  return {
    mode,
    ...(mode === "async" ? { placement: "gpu-node" } : {}),
    model: { layers: [{ type: "linear", name: "fc", in_features: 4, out_features: 3 }] },
    weights: encodeBase64(weights),
    trainable: ["fc.bias"],
    data: { train: classificationData(32) },
    training: { epochs: 2, batch_size: 8, loss: { type: "cross_entropy" }, optimizer: { type: "sgd", lr: 0.01 } },
    output: { dtype, ...(overflow ? { overflow } : {}) },
  };
}

describe("half-precision output beyond the format's range (issue 20, finding 7)", () => {
  it("float16: 70000 is a 422 naming the tensor and the value, not +Inf in the file", async () => {
    const { app } = await testApp();
    const res = await app.request("/v1/fine-tunes", json(request("float16", 70_000)));
    expect(res.status).toBe(422);
    const problem = (await res.json()) as { code?: string; errors: { path: string; message: string }[] };
    expect(problem.errors[0]!.path).toBe("output.dtype");
    expect(problem.errors[0]!.message).toMatch(/tensor "fc\.weight" holds 70000 .*65504.*\+Inf.*overflow "clamp"/);
  });

  it("float16 with output.overflow clamp: ±65504 where the values were ±70000, the rest exact", async () => {
    const { app } = await testApp();
    const res = await app.request("/v1/fine-tunes", json(request("float16", 70_000, "clamp")));
    expect(res.status).toBe(200);
    const file = parseSafetensors(decodeBase64(((await res.json()) as { weights: string }).weights));
    expect(file.tensors.get("fc.weight")!.dtype).toBe("F16");
    const w = readTensorF32(file, "fc.weight");
    expect(w[0]).toBe(65504);
    expect(w[11]).toBe(-65504);
    expect([...w.slice(1, 11)]).toEqual(Array(10).fill(0.5));
    expect(w.every(Number.isFinite)).toBe(true);
  });

  it("float16 at the edge: 65519 rounds to 65504 and is taken; 65520 rounds to Inf and is refused", async () => {
    const { app } = await testApp();
    const ok = await app.request("/v1/fine-tunes", json(request("float16", 65_519)));
    expect(ok.status).toBe(200);
    const w = readTensorF32(parseSafetensors(decodeBase64(((await ok.json()) as { weights: string }).weights)), "fc.weight");
    expect([w[0], w[11]]).toEqual([65504, -65504]);
    expect((await app.request("/v1/fine-tunes", json(request("float16", 65_520)))).status).toBe(422);
  });

  it("bfloat16: 3.4e38 (float32, beyond bfloat16's 3.3895e38) is refused, and clamped on request", async () => {
    const { app } = await testApp();
    const big = 3.4e38;
    const refused = await app.request("/v1/fine-tunes", json(request("bfloat16", big)));
    expect(refused.status).toBe(422);
    expect(await refused.text()).toMatch(/fc\.weight.*bfloat16/);
    const clamped = await app.request("/v1/fine-tunes", json(request("bfloat16", big, "clamp")));
    expect(clamped.status).toBe(200);
    const w = readTensorF32(parseSafetensors(decodeBase64(((await clamped.json()) as { weights: string }).weights)), "fc.weight");
    expect(w[0]).toBe(HALF_MAX.bfloat16);
    expect(w[0]).toBe(bf16BitsToF32(0x7f7f));
    expect(w[11]).toBe(-HALF_MAX.bfloat16);
  });

  it("an async job whose output overflows ends failed naming the tensor; it never stores +Inf", async () => {
    const { app, store } = await testApp();
    const res = await app.request("/v1/fine-tunes", json(request("float16", 70_000, undefined, "async")));
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const { runClaimedJob } = await import("../../src/jobs/runner.js");
    const { loadNodeRuntime } = await import("../../src/node/kernel-module.js");
    const claim = (await store.claimNext("test-node"))!;
    expect(claim.job.id).toBe(id);
    await runClaimedJob(store.channel, claim, await loadNodeRuntime(), { placement: "gpu-node" });
    const job = (await store.get(id))!.job;
    expect(job.status).toBe("failed");
    expect(job.error!.message).toMatch(/fc\.weight.*70000/);
    expect(job.weights_url).toBeNull();
  });
});
