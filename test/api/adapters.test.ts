/**
 * LoRA adapters over HTTP (app.request()): an `adapter_weights` multipart part, and an
 * asynchronous adapter job whose finished resource carries adapter_config and whose weights are
 * in the requested format.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { runClaimedJob } from "../../src/jobs/runner.js";
import { parseSafetensors, writeSafetensors } from "../../src/formats/safetensors.js";
import type { FineTuneResult } from "../../src/schema/result.js";
import { seedRequest } from "../helpers.js";
import { testApp } from "./app.js";

const json = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
const adapted = (extra: Record<string, unknown> = {}) => ({
  ...seedRequest(64, { training: { epochs: 2, batch_size: 16, optimizer: { type: "adam", lr: 0.01 } } }),
  adapter: { type: "lora", r: 4, target_modules: ["fc1"] },
  output: { format: "peft" },
  ...extra,
});

describe("adapters over HTTP", () => {
  it("an async adapter job: the job carries adapter_config, its weights are PEFT's adapter file, as the sync run's", async () => {
    const t = await testApp();
    const res = await t.app.request("/v1/fine-tunes", json({ ...adapted(), mode: "async" }));
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const claim = (await t.store.takeEdgeJob("consumer"))!;
    expect(await runClaimedJob(t.store.channel, claim, t.runtime, { placement: "edge" })).toBe("completed");
    const job = (await (await t.app.request(`/v1/fine-tunes/${id}`)).json()) as { status: string; adapter_config: Record<string, unknown> };
    expect(job.status).toBe("succeeded");
    expect(job.adapter_config).toMatchObject({ peft_type: "LORA", r: 4, target_modules: ["fc1"] });
    const bytes = new Uint8Array(await (await t.app.request(`/v1/fine-tunes/${id}/weights`)).arrayBuffer());
    expect([...parseSafetensors(bytes).tensors.keys()]).toEqual(["base_model.model.fc1.lora_A.weight", "base_model.model.fc1.lora_B.weight"]);
    const sync = (await (await t.app.request("/v1/fine-tunes", json({ ...adapted(), mode: "sync" }))).json()) as FineTuneResult;
    expect(Buffer.from(bytes).toString("base64")).toBe(sync.weights);
  });

  it("adapter_weights as a multipart part continue the adapter; in both the part and the JSON it is a 400", async () => {
    const t = await testApp();
    const first = (await (await t.app.request("/v1/fine-tunes", json({ ...adapted(), mode: "sync" }))).json()) as FineTuneResult;
    const form = new FormData();
    const { training: _t, ...rest } = adapted();
    form.set("request", JSON.stringify({ ...rest, training: { epochs: 1, optimizer: { type: "sgd", lr: 0 } }, mode: "sync" }));
    form.set("adapter_weights", new Blob([Buffer.from(first.weights, "base64")]), "adapter_model.safetensors");
    const again = (await (await t.app.request("/v1/fine-tunes", { method: "POST", body: form })).json()) as FineTuneResult;
    expect(again.weights).toBe(first.weights);
    const both = new FormData();
    both.set("request", JSON.stringify({ ...adapted(), adapter_weights: first.weights }));
    both.set("adapter_weights", new Blob([Buffer.from(first.weights, "base64")]), "adapter_model.safetensors");
    const res = await t.app.request("/v1/fine-tunes", { method: "POST", body: both });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe("adapter_weights");
  });

  it("downloads convert: ?format=full | peft | merged, adapter_config.json beside them; a format for a plain run is a 422", async () => {
    const t = await testApp();
    const res = await t.app.request("/v1/fine-tunes", json({ ...adapted(), mode: "sync" }));
    const result = (await res.json()) as FineTuneResult;
    const id = result.id;
    const get = async (query: string) => parseSafetensors(new Uint8Array(await (await t.app.request(`/v1/fine-tunes/${id}/weights${query}`)).arrayBuffer()));
    const byDefault = await get("");
    expect([...byDefault.tensors.keys()]).toEqual(["base_model.model.fc1.lora_A.weight", "base_model.model.fc1.lora_B.weight"]);
    expect(byDefault.metadata).toEqual({ format: "pt" }); // as PEFT writes adapter_model.safetensors
    expect([...(await get("?format=full")).tensors.keys()]).toEqual(["fc1.weight", "fc1.bias", "fc1.lora_A.weight", "fc1.lora_B.weight", "fc2.weight", "fc2.bias"]);
    expect([...(await get("?format=merged")).tensors.keys()]).toEqual(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
    const config = await t.app.request(`/v1/fine-tunes/${id}/adapter_config.json`);
    expect(config.status).toBe(200);
    expect(await config.json()).toEqual(result.adapter_config);
    const bad = await t.app.request(`/v1/fine-tunes/${id}/weights?format=onnx`);
    expect(bad.status).toBe(422);
    const plain = (await (await t.app.request("/v1/fine-tunes", json({ ...seedRequest(64, { training: { epochs: 1 } }), mode: "sync" }))).json()) as FineTuneResult;
    const wrong = await t.app.request(`/v1/fine-tunes/${plain.id}/weights?format=peft`);
    expect(wrong.status).toBe(422);
    expect(((await wrong.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe("format");
    expect((await t.app.request(`/v1/fine-tunes/${plain.id}/adapter_config.json`)).status).toBe(404);
  });
});

describe("a float16 base as a multipart weights part (staged in the kernel core's memory)", () => {
  const hubCase = (JSON.parse(readFileSync(new URL("../parity/fixtures/huggingface.json", import.meta.url), "utf8")) as {
    cases: { name: string; request: Record<string, unknown>; initial_weights: Record<string, { shape: number[]; data: number[] }> }[];
  }).cases.find((c) => c.name === "bert_seqcls_padding")!;
  const checkpoint = writeSafetensors(
    Object.entries(hubCase.initial_weights).map(([name, t]) => ({ name, shape: t.shape, data: Float32Array.from(t.data) })),
    { dtype: "float16" },
  );
  const request = (epochs = 2) => ({
    ...hubCase.request,
    model: { ...(hubCase.request.model as object), base_dtype: "float16" },
    adapter: { type: "lora", r: 2 },
    training: { epochs, batch_size: 8, optimizer: { type: "adam", lr: 0.01 }, seed: 2 },
    output: { format: "peft" },
    mode: "sync",
  });
  const form = (weights: Uint8Array, body: Record<string, unknown> = request()) => {
    const f = new FormData();
    // the weights part first: it is staged before the request part is read
    f.set("weights", new Blob([weights as Uint8Array<ArrayBuffer>]), "model.safetensors");
    f.set("request", JSON.stringify(body));
    return { method: "POST", body: f };
  };

  it("trains as the same checkpoint sent in the JSON; its stored weights and explanation input are whole", async () => {
    const t = await testApp();
    const res = await t.app.request("/v1/fine-tunes", form(checkpoint));
    expect(res.status).toBe(200);
    const staged = (await res.json()) as FineTuneResult;
    const inline = (await (await t.app.request("/v1/fine-tunes", json({ ...request(), weights: Buffer.from(checkpoint).toString("base64") }))).json()) as FineTuneResult;
    expect(staged.metrics.history).toEqual(inline.metrics.history);
    expect(staged.weights).toBe(inline.weights);
    const full = parseSafetensors(new Uint8Array(await (await t.app.request(`/v1/fine-tunes/${staged.id}/weights?format=full`)).arrayBuffer()));
    expect(full.tensors.size).toBeGreaterThan(10);
    // a sync job's stored input is the model and data without the starting state (the weights file has it)
    const input = parseSafetensors((await t.store.getInput(staged.id))!);
    expect([...input.tensors.keys()].every((n) => n.startsWith("@"))).toBe(true);
  });

  it("a part cut short or longer than its header says is the safetensors 422 naming weights, as in the JSON", async () => {
    const t = await testApp();
    for (const bytes of [checkpoint.subarray(0, checkpoint.length - 10), Uint8Array.from([...checkpoint, 1, 2, 3])]) {
      const res = await t.app.request("/v1/fine-tunes", form(bytes));
      expect(res.status).toBe(422);
      const body = (await res.json()) as { code: string; errors: { path: string }[] };
      expect(body.code).toMatch(/^safetensors_/);
      expect(body.errors[0]!.path).toMatch(/^weights/);
      // the same problem as for those bytes in the JSON
      const inline = await t.app.request("/v1/fine-tunes", json({ ...request(), weights: Buffer.from(bytes).toString("base64") }));
      expect(inline.status).toBe(422);
      const expected = (await inline.json()) as typeof body;
      expect([body.code, body.errors]).toEqual([expected.code, expected.errors]);
    }
  });

  it("an Idempotency-Key reused with other weights is refused (the sync input does not hold them: they are hashed apart)", async () => {
    const t = await testApp();
    const keyed = (bytes: Uint8Array) => {
      const r = form(bytes, request(1));
      return { ...r, headers: { "idempotency-key": "lora-1" } };
    };
    expect((await t.app.request("/v1/fine-tunes", keyed(checkpoint))).status).toBe(200);
    const replayed = await t.app.request("/v1/fine-tunes", keyed(checkpoint));
    expect(replayed.status).toBe(200);
    expect(replayed.headers.get("idempotent-replayed")).toBe("true");
    const other = checkpoint.slice();
    other[other.length - 1] ^= 1; // one bit of the last tensor
    const refused = await t.app.request("/v1/fine-tunes", keyed(other));
    expect(refused.status).toBe(422);
    expect(((await refused.json()) as { code: string }).code).toBe("idempotency_key_reused");
  });
});
