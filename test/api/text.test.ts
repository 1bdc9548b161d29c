/**
 * Text data over HTTP (app.request()): text rows with a tokenizer.json, inline in a JSON body or
 * as a `tokenizer` part beside CSV / JSONL parts, trained exactly as the token rows the tokenizer
 * makes of them; the 422s of text without a tokenizer, of a bad tokenizer, of a row longer than
 * max_length; and an asynchronous job, whose stored input holds the tokens (not the tokenizer).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { runClaimedJob } from "../../src/jobs/runner.js";
import { loadTokenizer } from "../../src/formats/text.js";
import { tokenClassifier } from "../helpers.js";
import { testApp } from "./app.js";

const tokenizerJson = JSON.parse(readFileSync(new URL("../fixtures/tokenizers/tiny-wordpiece.json", import.meta.url), "utf8")) as Record<string, unknown>;
const VOCAB = Object.keys((tokenizerJson.model as { vocab: object }).vocab).length;

const json = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

async function problem(res: Response, status: number) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toBe("application/problem+json");
  return (await res.json()) as { code: string; detail: string; errors: { path: string; line?: number; column?: string; message: string }[] };
}

const WORDS = ["good", "great", "love", "bad", "awful", "hate", "movie", "film", "the", "it", "was", "this", "is", "not"];
/** Reviews with a label: 1 when a positive word comes first. */
function reviews(rows: number, seed: number): { text: string[]; label: number[] } {
  let s = seed;
  const next = () => ((s = (s * 1103515245 + 12345) % 2 ** 31), s / 2 ** 31);
  const text: string[] = [];
  const label: number[] = [];
  for (let r = 0; r < rows; r++) {
    const words = Array.from({ length: 1 + Math.floor(next() * 6) }, () => WORDS[Math.floor(next() * WORDS.length)]!);
    text.push(`${words.join(" ")}${next() < 0.3 ? "!" : "."}`);
    label.push(["good", "great", "love"].includes(words[0]!) ? 1 : 0);
  }
  return { text, label };
}

/** embedding(VOCAB, 8, padding_idx 0 = [PAD]) + mean pool + linear(8, 2). */
function textClassifier(data: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const base = tokenClassifier("mean");
  return {
    ...base,
    model: {
      layers: [
        { type: "embedding", name: "emb", num_embeddings: VOCAB, embedding_dim: 8, padding_idx: 0 },
        { type: "pool", mode: "mean" },
        { type: "linear", name: "head", in_features: 8, out_features: 2 },
      ],
    },
    data,
    mode: "sync",
    ...extra,
  };
}

describe("text data over HTTP", () => {
  const train = reviews(40, 3);
  const validation = reviews(12, 4);

  it("inline text rows with a tokenizer train exactly as the token rows the tokenizer gives", async () => {
    const { app } = await testApp();
    const res = await app.request("/v1/fine-tunes", json(textClassifier({ train: { text: train.text, label: train.label }, validation: { text: validation.text, y: validation.label } }, { tokenizer: tokenizerJson })));
    expect(res.status).toBe(200);
    const a = (await res.json()) as { weights: string; metrics: { history: { train_loss: number; val_loss?: number }[] } };
    expect(a.metrics.history.every((h) => Number.isFinite(h.train_loss) && typeof h.val_loss === "number")).toBe(true);

    // the same rows tokenized here, padded to the longest of train and validation
    const tok = loadTokenizer(tokenizerJson);
    const encoded = [...train.text, ...validation.text].map((t) => tok.encode(t).ids);
    const T = Math.max(...encoded.map((ids) => ids.length));
    const rows = (from: number, to: number) => ({
      input_ids: encoded.slice(from, to).map((ids) => [...ids, ...Array(T - ids.length).fill(0)]),
      attention_mask: encoded.slice(from, to).map((ids) => [...ids.map(() => 1), ...Array(T - ids.length).fill(0)]),
    });
    const tokens = await app.request(
      "/v1/fine-tunes",
      json(textClassifier({ train: { ...rows(0, 40), y: train.label }, validation: { ...rows(40, 52), y: validation.label } })),
    );
    expect(tokens.status).toBe(200);
    const b = (await tokens.json()) as { weights: string; metrics: { history: unknown[] } };
    expect(b.metrics.history).toEqual(a.metrics.history);
    expect(b.weights).toBe(a.weights);
  });

  it("multipart: a tokenizer part (tokenizer.json) with CSV and JSONL text parts gives the same run", async () => {
    const { app } = await testApp();
    const inline = (await (await app.request("/v1/fine-tunes", json(textClassifier({ train: { text: train.text, label: train.label }, validation: { text: validation.text, label: validation.label } }, { tokenizer: tokenizerJson })))).json()) as { weights: string };

    const { data: _data, ...request } = textClassifier({});
    const csv = ["text,label", ...train.text.map((t, r) => `"${t.replaceAll('"', '""')}",${train.label[r]}`)].join("\r\n");
    const jsonl = validation.text.map((t, r) => JSON.stringify({ text: t, label: validation.label[r] })).join("\n");
    const form = new FormData();
    form.set("request", JSON.stringify({ ...request, data: {} }));
    form.set("tokenizer", new Blob([JSON.stringify(tokenizerJson)], { type: "application/json" }), "tokenizer.json");
    form.set("train", new Blob([csv], { type: "text/csv" }), "train.csv");
    form.set("validation", new Blob([jsonl], { type: "application/jsonl" }), "validation.jsonl");
    const res = await app.request("/v1/fine-tunes", { method: "POST", body: form });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { weights: string }).weights).toBe(inline.weights);
  });

  it("class names as labels: a CSV part of names trains as the JSON body of indices for a Hugging Face classifier (config.id2label); a layer list's names are a 422 at the line", async () => {
    const { app } = await testApp();
    const names = ["negative", "positive"];
    const config = {
      architectures: ["BertForSequenceClassification"], vocab_size: 90, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16,
      max_position_embeddings: 32, type_vocab_size: 2, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, id2label: { "0": names[0], "1": names[1] },
    };
    const request = { model: { huggingface: { config } }, tokenizer: tokenizerJson, training: { epochs: 2, batch_size: 8, optimizer: { type: "adamw", lr: 0.01 } } };
    const byIndex = await app.request("/v1/fine-tunes", json({ ...request, data: { train: { text: train.text, label: train.label } } }));
    expect(byIndex.status, await byIndex.clone().text()).toBe(200);
    const form = new FormData();
    form.set("request", JSON.stringify({ ...request, data: {} }));
    form.set("train", new Blob([["text,label", ...train.text.map((t, r) => `"${t.replaceAll('"', '""')}",${names[train.label[r]!]}`)].join("\n")], { type: "text/csv" }), "train.csv");
    const byName = await app.request("/v1/fine-tunes", { method: "POST", body: form });
    expect(byName.status).toBe(200);
    expect(((await byName.json()) as { weights: string }).weights).toBe(((await byIndex.json()) as { weights: string }).weights);

    const layers = new FormData();
    const { data: _data, ...classifier } = textClassifier({}, { tokenizer: tokenizerJson });
    layers.set("request", JSON.stringify({ ...classifier, data: {} }));
    layers.set("train", new Blob(["text,label\ngood movie,positive\nbad film,negative\n"], { type: "text/csv" }), "train.csv");
    const body = await problem(await app.request("/v1/fine-tunes", { method: "POST", body: layers }), 422);
    expect(body.errors[0]).toMatchObject({ path: "data.train", line: 2, column: "label", message: expect.stringMatching(/class names \("positive" first\).*label2id/) });
  });

  it("a tokenizer both as a part and in the request JSON: 400", async () => {
    const { app } = await testApp();
    const form = new FormData();
    form.set("request", JSON.stringify(textClassifier({ train: { text: ["good"], label: [1] } }, { tokenizer: tokenizerJson })));
    form.set("tokenizer", new Blob([JSON.stringify(tokenizerJson)]), "tokenizer.json");
    expect((await problem(await app.request("/v1/fine-tunes", { method: "POST", body: form }), 400)).errors[0]!.path).toBe("tokenizer");
  });

  it("text rows without a tokenizer: 422 tokenizer_required at tokenizer", async () => {
    const { app } = await testApp();
    const body = await problem(await app.request("/v1/fine-tunes", json(textClassifier({ train: { text: train.text, label: train.label } }))), 422);
    expect(body.code).toBe("tokenizer_required");
    expect(body.errors[0]).toMatchObject({ path: "tokenizer", message: expect.stringContaining("text rows need a tokenizer") });
  });

  it("a tokenizer.json that cannot load: 422 invalid_tokenizer naming the section", async () => {
    const { app } = await testApp();
    const bad = { ...tokenizerJson, post_processor: { type: "Nope" } };
    const body = await problem(await app.request("/v1/fine-tunes", json(textClassifier({ train: { text: ["good"], label: [1] } }, { tokenizer: bad }))), 422);
    expect(body).toMatchObject({ code: "invalid_tokenizer", errors: [{ path: "tokenizer.post_processor.type" }] });
  });

  it("a row longer than max_length without truncation: 422 naming the row and its token count; truncation trains", async () => {
    const { app } = await testApp();
    const text = ["good movie", "this is not a good movie it is bad", "great"];
    const data = (tokenization: Record<string, unknown>) => textClassifier({ train: { text, label: [1, 0, 1] }, tokenization }, { tokenizer: tokenizerJson });
    const body = await problem(await app.request("/v1/fine-tunes", json(data({ max_length: 6 }))), 422);
    expect(body.code).toBe("invalid_dataset");
    expect(body.errors).toEqual([{ path: "data.train.text[1]", message: expect.stringMatching(/row 1 is 11 tokens .*longer than max_length 6/) }]);
    expect((await app.request("/v1/fine-tunes", json(data({ max_length: 6, truncation: true })))).status).toBe(200);
  });

  it("text and token rows mixed across train and validation: 422", async () => {
    const { app } = await testApp();
    const body = await problem(
      await app.request("/v1/fine-tunes", json(textClassifier({ train: { text: ["good"], label: [1] }, validation: { input_ids: [[2, 3]], y: [1] } }, { tokenizer: tokenizerJson }))),
      422,
    );
    expect(body.errors[0]!.path).toBe("data.validation");
  });

  it("an asynchronous job stores the tokens, not the tokenizer, and trains them as the sync run does", async () => {
    const t = await testApp();
    const request = textClassifier({ train: { text: train.text, label: train.label }, validation_split: 0.25 }, { tokenizer: tokenizerJson, mode: "async" });
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
