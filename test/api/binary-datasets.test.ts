/**
 * Binary datasets over HTTP (issue 17, item 1): a safetensors file as a `train` / `validation`
 * multipart part, or as `{"safetensors": "<base64>"}` in the JSON request, trains exactly as the
 * same rows inline; bad files and bad values are 422 problems naming the field.
 */
import { describe, expect, it } from "vitest";
import { encodeBase64 } from "../../src/formats/base64.js";
import { writeSafetensors } from "../../src/formats/safetensors.js";
import { regressionData, seedRequest } from "../helpers.js";
import { runClaimedJob } from "../../src/jobs/runner.js";
import { testApp } from "./app.js";

const json = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

/** 64 rows of the seed regression data, inline and as a safetensors dataset. */
function rows(count: number, seed = 12345) {
  const data = regressionData(count, 10, seed);
  const bytes = writeSafetensors([
    { name: "x", shape: [count, 10], data: Float32Array.from(data.x.flat()) },
    { name: "y", shape: [count], data: Float32Array.from(data.y) },
  ]);
  return { data, bytes };
}

const request = () => seedRequest(64, { training: { epochs: 3, batch_size: 16, seed: 3 } });

async function problem(res: Response, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toBe("application/problem+json");
  const body = (await res.json()) as { code: string; errors: { path: string; message: string }[] };
  expect(body.code).toBe(code);
  return body;
}

describe("binary datasets over HTTP", () => {
  const train = rows(64);
  const validation = rows(16, 99);

  async function inlineResult() {
    const { app } = await testApp();
    const res = await app.request("/v1/fine-tunes", json({ ...request(), data: { train: train.data, validation: validation.data } }));
    expect(res.status).toBe(200);
    return (await res.json()) as { weights: string; metrics: { history: { train_loss: number; val_loss: number }[] } };
  }

  it("safetensors train and validation parts (by name, and by content as application/octet-stream) train as the inline rows", async () => {
    const expected = await inlineResult();
    const { app } = await testApp();
    const { data: _data, ...rest } = request();
    const form = new FormData();
    form.set("request", JSON.stringify({ ...rest, data: {} }));
    form.set("train", new Blob([train.bytes as BlobPart]), "train.safetensors");
    form.set("validation", new Blob([validation.bytes as BlobPart], { type: "application/octet-stream" }), "validation.bin");
    const res = await app.request("/v1/fine-tunes", { method: "POST", body: form });
    expect(res.status).toBe(200);
    const result = (await res.json()) as typeof expected;
    expect(result.metrics.history).toEqual(expected.metrics.history);
    expect(result.weights).toBe(expected.weights);
  });

  it('{"safetensors": "<base64>"} in the JSON request trains as the inline rows', async () => {
    const expected = await inlineResult();
    const { app } = await testApp();
    const res = await app.request("/v1/fine-tunes", json({ ...request(), data: { train: { safetensors: encodeBase64(train.bytes) }, validation: { safetensors: encodeBase64(validation.bytes) } } }));
    expect(res.status).toBe(200);
    expect(((await res.json()) as typeof expected).weights).toBe(expected.weights);
  });

  it("an application/octet-stream part holding CSV text is still read as CSV", async () => {
    const { app } = await testApp();
    const header = [...Array.from({ length: 10 }, (_, i) => `f${i}`), "y"].join(",");
    const csv = [header, ...train.data.x.map((r, i) => [...r, train.data.y[i]].join(","))].join("\n");
    const { data: _data, ...rest } = request();
    const form = new FormData();
    form.set("request", JSON.stringify({ ...rest, data: {} }));
    form.set("train", new Blob([csv], { type: "application/octet-stream" }), "train");
    const res = await app.request("/v1/fine-tunes", { method: "POST", body: form });
    expect(res.status).toBe(200);
  });

  it("a NaN in a safetensors part is a 422 naming the row and column", async () => {
    const x = Float32Array.from(train.data.x.flat());
    x[1 * 10 + 3] = NaN;
    const bytes = writeSafetensors([
      { name: "x", shape: [64, 10], data: x },
      { name: "y", shape: [64], data: Float32Array.from(train.data.y) },
    ]);
    const { app } = await testApp();
    const form = new FormData();
    form.set("request", JSON.stringify({ model: request().model }));
    form.set("train", new Blob([bytes as BlobPart]), "train.safetensors");
    const body = await problem(await app.request("/v1/fine-tunes", { method: "POST", body: form }), 422, "invalid_dataset");
    expect(body.errors).toEqual([{ path: "data.train.x[1][3]", message: "is NaN: values must be finite" }]);
  });

  it("a .safetensors part that is not one is a 422 safetensors problem at the part", async () => {
    const { app } = await testApp();
    const form = new FormData();
    form.set("request", JSON.stringify({ model: request().model }));
    form.set("train", new Blob(["x0,y\n1,0\n"]), "train.safetensors");
    const body = await problem(await app.request("/v1/fine-tunes", { method: "POST", body: form }), 422, "safetensors_header_too_large");
    expect(body.errors[0]!.path).toBe("data.train");
  });

  it("the JSON form's bad base64 and tensors name their field", async () => {
    const { app } = await testApp();
    const bad = await problem(await app.request("/v1/fine-tunes", json({ ...request(), data: { train: { safetensors: "not base64!" } } })), 400, "invalid_request");
    expect(bad.errors[0]!.path).toBe("data.train.safetensors");
    const labels = writeSafetensors([{ name: "x", shape: [1, 10], data: new Float32Array(10) }, { name: "labels", shape: [1], data: new Float32Array(1) }]);
    const wrong = await problem(await app.request("/v1/fine-tunes", json({ ...request(), data: { train: { safetensors: encodeBase64(labels) } } })), 422, "invalid_dataset");
    expect(wrong.errors.map((e) => e.path)).toEqual(['data.train.safetensors["labels"]']);
  });

  it("an async job from a safetensors part is stored and run to the sync result", async () => {
    const expected = await inlineResult();
    const { app, store, runtime } = await testApp();
    const { data: _data, ...rest } = request();
    const form = new FormData();
    form.set("request", JSON.stringify({ ...rest, mode: "async", data: {} }));
    form.set("train", new Blob([train.bytes as BlobPart]), "train.safetensors");
    form.set("validation", new Blob([validation.bytes as BlobPart]), "validation.safetensors");
    const res = await app.request("/v1/fine-tunes", { method: "POST", body: form });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const claim = (await store.takeEdgeJob("consumer"))!;
    expect(await runClaimedJob(store.channel, claim, runtime, { placement: "edge" })).toBe("completed");
    const weights = new Uint8Array(await (await app.request(`/v1/fine-tunes/${id}/weights`)).arrayBuffer());
    expect(encodeBase64(weights)).toBe(expected.weights);
  });

  it("/openapi.json documents the JSON form", async () => {
    const { app } = await testApp();
    const doc = JSON.stringify(await (await app.request("/openapi.json")).json());
    expect(doc).toContain('"safetensors"');
  });
});
