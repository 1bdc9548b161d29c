/**
 * Token data over HTTP (app.request()): inline token rows in a JSON body, token rows in
 * multipart CSV and JSONL parts, their 422s (the row, or the part's line and column), and an
 * asynchronous job whose stored input carries the ids and the mask.
 */
import { describe, expect, it } from "vitest";
import { runClaimedJob } from "../../src/jobs/runner.js";
import { tokenClassifier, tokenData } from "../helpers.js";
import { testApp } from "./app.js";

const json = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

async function problem(res: Response, status: number) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toBe("application/problem+json");
  return (await res.json()) as { code: string; detail: string; errors: { path: string; line?: number; column?: string; message: string }[] };
}

/** Token rows as a CSV part: input_ids and attention_mask as space-separated integers, then the label. */
function tokenCsv(d: ReturnType<typeof tokenData>): string {
  const rows = d.input_ids.map((ids, r) => `${ids.join(" ")},${d.attention_mask[r]!.join(" ")},${d.y[r]}`);
  return ["input_ids,attention_mask,label", ...rows].join("\n");
}

/** Token rows as a JSONL part. */
function tokenJsonl(d: ReturnType<typeof tokenData>): string {
  return d.input_ids.map((ids, r) => JSON.stringify({ input_ids: ids, attention_mask: d.attention_mask[r], y: d.y[r] })).join("\n");
}

function multipart(train: Blob, validation?: Blob, target = "label"): FormData {
  const { data: _data, ...rest } = tokenClassifier("mean");
  const form = new FormData();
  form.set("request", JSON.stringify({ ...rest, mode: "sync", data: { target } }));
  form.set("train", train, "train");
  if (validation) form.set("validation", validation, "validation");
  return form;
}

describe("token data over HTTP", () => {
  it("inline token rows in a JSON body train, with the same result as the CSV and JSONL parts of the same rows", async () => {
    const { app } = await testApp();
    const train = tokenData(40, 6, 20, 3, 11), validation = tokenData(16, 6, 20, 3, 12);
    const inline = await app.request("/v1/fine-tunes", json({ ...tokenClassifier("mean", { data: { train, validation } }), mode: "sync" }));
    expect(inline.status).toBe(200);
    const a = (await inline.json()) as { weights: string; metrics: { history: { val_loss?: number; val_accuracy?: number }[] } };
    expect(a.metrics.history.every((h) => typeof h.val_loss === "number" && typeof h.val_accuracy === "number")).toBe(true);

    const parts = multipart(new Blob([tokenCsv(train)], { type: "text/csv" }), new Blob([tokenJsonl(validation)], { type: "application/jsonl" }));
    const res = await app.request("/v1/fine-tunes", { method: "POST", body: parts });
    expect(res.status).toBe(200);
    const b = (await res.json()) as { weights: string; metrics: { history: unknown[] } };
    expect(b.metrics.history).toEqual(a.metrics.history);
    expect(b.weights).toBe(a.weights);
  });

  it("an id outside the vocabulary in a CSV part: 422 naming the part, the line and the column", async () => {
    const { app } = await testApp();
    const train = tokenData(20, 6, 20, 3);
    train.input_ids[4]![1] = 57;
    const body = await problem(await app.request("/v1/fine-tunes", { method: "POST", body: multipart(new Blob([tokenCsv(train)], { type: "text/csv" })) }), 422);
    expect(body.errors[0]).toMatchObject({ path: "data.train", line: 6, column: "input_ids", message: expect.stringMatching(/row 4: token id 57 \(position 1\) is outside the vocabulary of model\.layers\[0\]: num_embeddings is 20/) });
  });

  it("a malformed JSONL token line: 422 with its line and column", async () => {
    const { app } = await testApp();
    const lines = tokenJsonl(tokenData(10, 6, 20, 3)).split("\n");
    lines[6] = JSON.stringify({ input_ids: [1, 2, 3, 0, 0, 0], attention_mask: [0, 0, 0, 0, 0, 0], y: 1 });
    const body = await problem(await app.request("/v1/fine-tunes", { method: "POST", body: multipart(new Blob([lines.join("\n")], { type: "application/jsonl" }), undefined, "y") }), 422);
    expect(body.code).toBe("invalid_dataset");
    expect(body.errors[0]).toMatchObject({ path: "data.train", line: 7, column: "attention_mask", message: expect.stringMatching(/no token with mask 1/) });
  });

  it("inline rows with a ragged row: 422 naming data.train.input_ids[r]", async () => {
    const { app } = await testApp();
    const train = tokenData(10, 6, 20, 3);
    train.input_ids[2] = [1, 2];
    const body = await problem(await app.request("/v1/fine-tunes", json({ ...tokenClassifier("mean", { data: { train } }), mode: "sync" })), 422);
    expect(body.errors[0]).toMatchObject({ path: "data.train.input_ids[2]" });
    expect(body.detail).toMatch(/data\.train\.input_ids\[2\]/);
  });

  it("an asynchronous edge job stores the ids and the mask with its input and trains them", async () => {
    const t = await testApp();
    const request = { ...tokenClassifier("last", { data: { train: tokenData(40, 6, 20, 3), validation_split: 0.25 } }), mode: "async" };
    const res = await t.app.request("/v1/fine-tunes", json(request));
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const claim = (await t.store.takeEdgeJob("consumer"))!;
    expect(await runClaimedJob(t.store.channel, claim, t.runtime, { placement: "edge" })).toBe("completed");
    const job = (await (await t.app.request(`/v1/fine-tunes/${id}`)).json()) as { status: string; metrics: { history: unknown[] } };
    expect(job.status).toBe("succeeded");
    const sync = (await (await t.app.request("/v1/fine-tunes", json({ ...request, mode: "sync" }))).json()) as { metrics: { history: unknown[] } };
    expect(job.metrics.history).toEqual(sync.metrics.history);
  });
});
