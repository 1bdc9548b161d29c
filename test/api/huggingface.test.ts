/**
 * Hugging Face models over HTTP (app.request()): config.json and model.safetensors as multipart
 * parts beside a request without `model`, the result's huggingface report, the 422s, and an
 * asynchronous job whose stored input (Conv1D weights, shifted causal-LM labels, token types)
 * trains to the same numbers as the sync run.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { runClaimedJob } from "../../src/jobs/runner.js";
import { writeSafetensors } from "../../src/formats/safetensors.js";
import type { FineTuneResult } from "../../src/schema/result.js";
import { testApp } from "./app.js";

interface HubCase {
  name: string;
  request: { model: { huggingface: { config: Record<string, unknown> } }; data: { train: Record<string, unknown>; validation?: Record<string, unknown> }; training: Record<string, unknown> };
  initial_weights: Record<string, { shape: number[]; data: number[] }>;
}
const cases = (JSON.parse(readFileSync(new URL("../parity/fixtures/huggingface.json", import.meta.url), "utf8")) as { cases: HubCase[] }).cases;
const hub = (name: string) => {
  const c = cases.find((x) => x.name === name)!;
  const weights = writeSafetensors(Object.entries(c.initial_weights).map(([n, t]) => ({ name: n, shape: t.shape, data: Float32Array.from(t.data) })));
  return { ...c, weights, config: c.request.model.huggingface.config };
};
const json = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

function folderForm(c: ReturnType<typeof hub>, request: Record<string, unknown>): FormData {
  const form = new FormData();
  form.set("request", JSON.stringify(request));
  form.set("config", new Blob([JSON.stringify(c.config)], { type: "application/json" }), "config.json");
  form.set("weights", new Blob([c.weights as BlobPart]), "model.safetensors");
  return form;
}

describe("a Hub folder over multipart", () => {
  it("config and weights parts, a request without model: the same result as the JSON body, with the config returned", async () => {
    const t = await testApp();
    const gpt2 = hub("gpt2_causal_lm");
    const training = { ...gpt2.request.training, epochs: 2 };
    const form = folderForm(gpt2, { data: gpt2.request.data, training, mode: "sync" });
    const res = await t.app.request("/v1/fine-tunes", { method: "POST", body: form });
    expect(res.status).toBe(200);
    const result = (await res.json()) as FineTuneResult;
    expect(result.huggingface).toEqual({ architecture: "GPT2LMHeadModel", task: "causal-lm", config: gpt2.config, initialized: [], dropped: [] });
    expect(result.plan.groups!.map((g) => g.name)).toEqual(["transformer.embeddings", "transformer.h.0", "transformer.h.1", "transformer.ln_f", "lm_head"]);
    const viaJson = (await (await t.app.request("/v1/fine-tunes", json({ ...gpt2.request, training, weights: Buffer.from(gpt2.weights).toString("base64"), mode: "sync" }))).json()) as FineTuneResult;
    expect(viaJson.weights).toBe(result.weights);
  });

  it("token rows without y as a JSONL part (a causal LM's): the same result as inline rows; a classifier's rows without y: 422 at data.train.y", async () => {
    const t = await testApp();
    const gpt2 = hub("gpt2_causal_lm");
    const { input_ids, attention_mask } = gpt2.request.data.train as { input_ids: number[][]; attention_mask: number[][] };
    const jsonl = input_ids.map((ids, i) => JSON.stringify({ input_ids: ids, attention_mask: attention_mask[i] })).join("\n");
    const training = { ...gpt2.request.training, epochs: 2 };
    const form = folderForm(gpt2, { training, mode: "sync" });
    form.set("train", new Blob([jsonl], { type: "application/jsonl" }), "train.jsonl");
    const res = await t.app.request("/v1/fine-tunes", { method: "POST", body: form });
    expect(res.status).toBe(200);
    const inline = folderForm(gpt2, { data: gpt2.request.data, training, mode: "sync" });
    const viaInline = (await (await t.app.request("/v1/fine-tunes", { method: "POST", body: inline })).json()) as FineTuneResult;
    expect(((await res.json()) as FineTuneResult).weights).toBe(viaInline.weights);

    const bert = hub("bert_seqcls_padding");
    const rows = bert.request.data.train as { input_ids: number[][]; attention_mask: number[][] };
    const unlabelled = folderForm(bert, { training: bert.request.training, mode: "sync" });
    unlabelled.set("train", new Blob([rows.input_ids.map((ids, i) => JSON.stringify({ input_ids: ids, attention_mask: rows.attention_mask[i] })).join("\n")]), "train.jsonl");
    const refused = await t.app.request("/v1/fine-tunes", { method: "POST", body: unlabelled });
    expect(refused.status).toBe(422);
    expect(((await refused.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe("data.train.y");
  });

  it("a config part next to a request with layers, or a second config: 400 naming it", async () => {
    const t = await testApp();
    const gpt2 = hub("gpt2_causal_lm");
    const layers = folderForm(gpt2, { model: { layers: [{ type: "relu" }] }, data: gpt2.request.data });
    const res = await t.app.request("/v1/fine-tunes", { method: "POST", body: layers });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe("config");
    const twice = folderForm(gpt2, { model: { huggingface: { config: gpt2.config } }, data: gpt2.request.data });
    expect(((await (await t.app.request("/v1/fine-tunes", { method: "POST", body: twice })).json()) as { errors: { path: string }[] }).errors[0]!.path).toBe("model.huggingface.config");
  });

  it("an unsupported architecture is a 422 listing the supported ones, never a 5xx", async () => {
    const t = await testApp();
    const gpt2 = hub("gpt2_causal_lm");
    const res = await t.app.request("/v1/fine-tunes", json({ ...gpt2.request, model: { huggingface: { config: { ...gpt2.config, architectures: ["MistralForCausalLM"] } } } }));
    expect(res.status).toBe(422);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    const body = (await res.json()) as { errors: { path: string; message: string }[] };
    expect(body.errors[0]!.path).toBe("model.huggingface.config.architectures[0]");
    expect(body.errors[0]!.message).toMatch(/LlamaForCausalLM/);
  });
});

describe("asynchronous jobs", () => {
  for (const name of ["gpt2_causal_lm", "bert_seqcls_padding"]) {
    it(`${name}: the stored input trains to the sync run's numbers, and the job reports the Hub model`, async () => {
      const t = await testApp();
      const c = hub(name);
      const request = { ...c.request, training: { ...c.request.training, epochs: 2 }, weights: Buffer.from(c.weights).toString("base64") };
      const res = await t.app.request("/v1/fine-tunes", json({ ...request, mode: "async" }));
      expect(res.status).toBe(202);
      const queued = (await res.json()) as { id: string; huggingface: { architecture: string } };
      expect(queued.huggingface.architecture).toBe(c.config.architectures && (c.config.architectures as string[])[0]);
      const claim = (await t.store.takeEdgeJob("consumer"))!;
      expect(await runClaimedJob(t.store.channel, claim, t.runtime, { placement: "edge" })).toBe("completed");
      const job = (await (await t.app.request(`/v1/fine-tunes/${queued.id}`)).json()) as { status: string; metrics: { history: unknown[] } };
      expect(job.status).toBe("succeeded");
      const sync = (await (await t.app.request("/v1/fine-tunes", json({ ...request, mode: "sync" }))).json()) as FineTuneResult;
      expect(job.metrics.history).toEqual(sync.metrics.history);
      const weights = new Uint8Array(await (await t.app.request(`/v1/fine-tunes/${queued.id}/weights`)).arrayBuffer());
      expect(Buffer.from(weights).toString("base64")).toBe(sync.weights);
    });
  }
});
