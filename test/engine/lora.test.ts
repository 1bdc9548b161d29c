/**
 * LoRA adapters (src/engine/adapters): the graph rewrite (names, shapes, what trains), PEFT's
 * init (B = 0: the adapted model starts as the base), the output formats (full, peft, merged:
 * the merged model gives the adapter model's logits, Conv1D and embeddings included), continuing
 * an adapter, asynchronous jobs, and the 422s. PyTorch parity: test/parity (group lora).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { rejection } from "./refusals.js";
import { forwardLogits } from "./graph-gradcheck.js";
import { regressionData, seedRequest } from "../helpers.js";
import { loadNodeRuntime, train } from "../../src/node/index.js";
import { prepareRun, type ExactTrainRequest, type TrainRequest } from "../../src/engine/train.js";
import { decodeBase64 } from "../../src/formats/base64.js";
import { parseSafetensors, readTensorF32, writeSafetensors } from "../../src/formats/safetensors.js";

interface HubCase {
  name: string;
  request: { model: { huggingface: { config: Record<string, unknown> } }; data: { train: Record<string, unknown>; validation?: Record<string, unknown> } };
  initial_weights: Record<string, { shape: number[]; data: number[] }>;
}
const hubCases = (JSON.parse(readFileSync(new URL("../parity/fixtures/huggingface.json", import.meta.url), "utf8")) as { cases: HubCase[] }).cases;
function hub(name: string, adapter: Record<string, unknown>, training: Record<string, unknown> = {}): TrainRequest {
  const c = hubCases.find((x) => x.name === name)!;
  const weights = writeSafetensors(Object.entries(c.initial_weights).map(([n, t]) => ({ name: n, shape: t.shape, data: Float32Array.from(t.data) })));
  return {
    model: c.request.model,
    data: c.request.data,
    weights,
    adapter: { type: "lora", ...adapter },
    training: { epochs: 3, batch_size: 8, optimizer: { type: "adam", lr: 0.01 }, seed: 2, ...training },
  } as TrainRequest;
}

function tensorsOf(weights: string | Uint8Array): Map<string, Float32Array> {
  return new Map(listOf(weights).map((t) => [t.name, t.data]));
}

interface Tensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** A safetensors file's tensors with their shapes, in file order. */
function listOf(weights: string | Uint8Array): Tensor[] {
  const file = parseSafetensors(typeof weights === "string" ? decodeBase64(weights) : weights);
  return [...file.tensors].map(([name, info]) => ({ name, shape: [...info.shape], data: readTensorF32(file, name) }));
}

/** The seed MLP (fc1 10->10, fc2 10->1) with an adapter on fc1. */
function mlp(adapter: Record<string, unknown> = { target_modules: ["fc1"], r: 4, lora_alpha: 8 }, overrides: Partial<TrainRequest> = {}): TrainRequest {
  return seedRequest(128, { adapter: { type: "lora", ...adapter }, training: { epochs: 4, batch_size: 16, optimizer: { type: "adam", lr: 0.01 } }, ...overrides } as Partial<ExactTrainRequest>);
}

const runtime = await loadNodeRuntime({ variant: "wasm-simd" });

describe("the graph with an adapter", () => {
  it("an MLP's fc1 gains lora_A [r, in] and lora_B [out, r] (in PeftModel's state_dict order); only they train", () => {
    const { model, plan } = prepareRun(mlp());
    expect(model.state.map((t) => `${t.name} ${t.shape.join("x")}${t.trainable ? " trains" : ""}`)).toEqual([
      "fc1.weight 10x10", "fc1.bias 10", "fc1.lora_A.weight 4x10 trains", "fc1.lora_B.weight 10x4 trains", "fc2.weight 1x10", "fc2.bias 1",
    ]);
    expect(plan.trainable_params).toBe(80);
  });

  it("PEFT's defaults per architecture; modules_to_save and bias decide what else trains", () => {
    const bert = prepareRun(hub("bert_seqcls_padding", { r: 2 })).model;
    const trains = bert.state.filter((t) => t.trainable).map((t) => t.name);
    expect(trains.filter((n) => n.includes("lora_"))).toEqual(
      ["0", "1"].flatMap((i) => ["query", "value"].flatMap((m) => [`bert.encoder.layer.${i}.attention.self.${m}.lora_A.weight`, `bert.encoder.layer.${i}.attention.self.${m}.lora_B.weight`])).sort(),
    );
    // a sequence classifier's head trains in full, as PeftModelForSequenceClassification does
    expect(trains.filter((n) => !n.includes("lora_"))).toEqual(["classifier.weight", "classifier.bias"]);
    const llama = prepareRun(hub("llama_gqa_tied", { r: 2, target_modules: ["q_proj", "v_proj", "o_proj"], bias: "all" })).model;
    expect(llama.lora!.modules).toHaveLength(6);
    expect(llama.state.filter((t) => t.trainable && !t.name.includes("lora_"))).toEqual([]); // Llama has no biases
    const mlpAll = prepareRun(mlp({ target_modules: ["fc1"], bias: "lora_only" })).model;
    expect(mlpAll.state.filter((t) => t.trainable).map((t) => t.name)).toEqual(["fc1.bias", "fc1.lora_A.weight", "fc1.lora_B.weight"]);
  });

  it("all-linear adapts every Linear and Conv1D but the output head; a regular expression matches whole names", () => {
    const gpt2 = prepareRun(hub("gpt2_causal_lm", { r: 2, target_modules: "all-linear" })).model;
    expect(gpt2.lora!.modules.map((m) => m.module)).toEqual(
      ["0", "1"].flatMap((i) => ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"].map((m) => `transformer.h.${i}.${m}`)),
    );
    const llama = prepareRun(hub("llama_untied", { r: 2, target_modules: "all-linear" })).model;
    expect(llama.lora!.modules.some((m) => m.module === "lm_head")).toBe(false);
    const regex = prepareRun(hub("llama_untied", { r: 2, target_modules: "model\\.layers\\.1\\.self_attn\\.(q|k)_proj" })).model;
    expect(regex.lora!.modules.map((m) => m.module)).toEqual(["model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj"]);
  });
});

describe("outputs", () => {
  it("B starts at zero: with lr 0 the adapted MLP's loss is the base's, and merged weights are the base's", async () => {
    const base = await train(seedRequest(128, { training: { epochs: 1, batch_size: 16, optimizer: { type: "sgd", lr: 0 } } }));
    const adapted = await train(mlp(undefined, { training: { epochs: 1, batch_size: 16, optimizer: { type: "sgd", lr: 0 } }, output: { format: "merged" } } as Partial<ExactTrainRequest>));
    expect(adapted.metrics.history[0]!.train_loss).toBe(base.metrics.history[0]!.train_loss);
    expect(tensorsOf(adapted.weights)).toEqual(tensorsOf(base.weights));
  });

  for (const [name, request] of [
    ["an MLP", () => mlp()],
    ["GPT-2 c_attn (Conv1D, fan_in_fan_out)", () => hub("gpt2_causal_lm", { r: 4, lora_alpha: 16 })],
    ["BERT word_embeddings and query (lora_embedding_A/B)", () => hub("bert_seqcls_padding", { r: 2, target_modules: ["word_embeddings", "query"] })],
    ["Llama with rsLoRA", () => hub("llama_gqa_tied", { r: 4, lora_alpha: 16, use_rslora: true, target_modules: ["q_proj", "v_proj", "o_proj"] })],
  ] as const) {
    it(`${name}: the loss falls; the merged model gives the adapter model's logits; peft holds PEFT's keys`, async () => {
      const full = await train(request());
      expect(full.status).toBe("succeeded");
      expect(full.metrics.history.at(-1)!.train_loss).toBeLessThan(full.metrics.history[0]!.train_loss);
      const merged = await train({ ...request(), output: { format: "merged" } } as TrainRequest);
      const peft = await train({ ...request(), output: { format: "peft" } } as TrainRequest);
      // the same run three ways
      expect(merged.metrics.history).toEqual(full.metrics.history);
      const fullTensors = tensorsOf(full.weights);
      const peftTensors = tensorsOf(peft.weights);
      const adapterNames = [...fullTensors.keys()].filter((n) => n.includes(".lora_"));
      for (const n of adapterNames) expect(peftTensors.get(`base_model.model.${n}`), n).toEqual(fullTensors.get(n));
      expect([...peftTensors.keys()].every((k) => k.startsWith("base_model.model."))).toBe(true);
      expect(peft.adapter_config).toMatchObject({ peft_type: "LORA", r: request().adapter!.r, inference_mode: true });
      // logits: the trained adapter model (full weights) against the merged weights without an adapter
      const withAdapter = prepareRun({ ...request(), weights: baseOf(listOf(full.weights)), adapter_weights: adapterOf(listOf(full.weights)) } as TrainRequest);
      const { adapter: _a, ...plain } = request();
      const mergedRun = prepareRun({ ...plain, weights: decodeBase64(merged.weights) } as TrainRequest);
      const a = await forwardLogits(withAdapter, runtime, withAdapter.train, Math.min(8, withAdapter.train.rows));
      const b = await forwardLogits(mergedRun, runtime, mergedRun.train, Math.min(8, mergedRun.train.rows));
      let worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / (1e-5 + 1e-4 * Math.abs(b[i]!)));
      expect(worst).toBeLessThanOrEqual(1);
    });
  }
});

/** The base tensors of a full output, as a base model.safetensors. */
function baseOf(tensors: readonly Tensor[]): Uint8Array {
  return writeSafetensors(tensors.filter((t) => !t.name.includes(".lora_")));
}

/** The adapter tensors of a full output, as adapter_model.safetensors (PEFT's keys). */
function adapterOf(tensors: readonly Tensor[]): Uint8Array {
  return writeSafetensors(tensors.filter((t) => t.name.includes(".lora_")).map((t) => ({ ...t, name: `base_model.model.${t.name}` })));
}

describe("continuing an adapter", () => {
  it("adapter_weights (PEFT's keys) continue where a run stopped: with lr 0 they come back unchanged", async () => {
    const first = await train({ ...mlp(), output: { format: "peft" } } as TrainRequest);
    const again = await train({ ...mlp(), adapter_weights: first.weights, training: { epochs: 1, optimizer: { type: "sgd", lr: 0 } }, output: { format: "peft" } } as TrainRequest);
    expect(again.weights).toBe(first.weights);
    const moved = await train({ ...mlp(), adapter_weights: first.weights, output: { format: "peft" } } as TrainRequest);
    expect(moved.metrics.history[0]!.train_loss).toBeLessThan(first.metrics.history[0]!.train_loss);
  });

  it("an asynchronous job stores the adapter it continues and trains to the sync run's numbers", async () => {
    const { encodeRunInput, decodeRunInput } = await import("../../src/jobs/run-input.js");
    const { runPrepared } = await import("../../src/engine/train.js");
    const first = await train({ ...hub("gpt2_causal_lm", { r: 2 }), output: { format: "peft" } } as TrainRequest);
    const request = { ...hub("gpt2_causal_lm", { r: 2 }), adapter_weights: first.weights, output: { format: "peft" } } as TrainRequest;
    const sync = await train(request);
    // the runtime train() picks (the relaxed-SIMD build under --experimental-wasm-relaxed-simd): the same bits
    const replayed = await runPrepared(await loadNodeRuntime(), decodeRunInput(encodeRunInput(prepareRun(request))));
    expect(replayed.weights).toBe(sync.weights);
    expect(replayed.adapter_config).toEqual(sync.adapter_config);
  });
});

describe("Workers AI", () => {
  it("adapter_config carries the base's model_type; a rank above 32 gets a warning", async () => {
    const llama = await train({ ...hub("llama_gqa_tied", { r: 2 }), training: { epochs: 1 }, output: { format: "peft" } } as TrainRequest);
    expect(llama.adapter_config).toMatchObject({ model_type: "llama", task_type: "CAUSAL_LM", target_modules: ["q_proj", "v_proj"] });
    expect(llama.warnings).toBeUndefined();
    const wide = await train({
      model: { layers: [{ type: "linear", name: "fc1", in_features: 40, out_features: 40 }, { type: "relu" }, { type: "linear", name: "fc2", in_features: 40, out_features: 1 }] },
      data: { train: regressionData(32, 40) },
      adapter: { type: "lora", r: 33, target_modules: ["fc1"] },
      training: { epochs: 1 },
    } as TrainRequest);
    expect(wide.status).toBe("succeeded");
    expect(wide.warnings![0]).toMatch(/r is 33.*rank up to 32/);
  });
});

describe("refusals name the field", () => {
  it("target_modules that match nothing list the model's modules", async () => {
    const e = await rejection(mlp({ target_modules: ["q_proj"] }));
    expect(e.errors[0]).toMatchObject({ path: "adapter.target_modules" });
    expect(e.errors[0]!.message).toMatch(/fc1, fc2/);
    const none = await rejection(mlp({}));
    expect(none.errors[0]!.path).toBe("adapter.target_modules");
  });

  it("r larger than the layer", async () => {
    const e = await rejection(mlp({ target_modules: ["fc2"], r: 2 }));
    expect(e.errors[0]).toMatchObject({ path: "adapter.r" });
    expect(e.errors[0]!.message).toMatch(/fc2 \(10 -> 1\)/);
    expect((await rejection(mlp({ target_modules: ["fc1"], r: 0 }))).errors[0]!.path).toBe("adapter.r");
  });

  it("adapter weights whose shapes do not fit, or that are not this adapter's", async () => {
    const wrong = writeSafetensors([{ name: "base_model.model.fc1.lora_A.weight", shape: [8, 10], data: new Float32Array(80) }]);
    const e = await rejection({ ...mlp(), adapter_weights: wrong });
    expect(e.errors[0]!.path).toBe('adapter_weights["base_model.model.fc1.lora_A.weight"]');
    expect(e.errors[0]!.message).toMatch(/\[8, 10\].*\[4, 10\]/);
    const stranger = writeSafetensors([{ name: "base_model.model.fc2.lora_A.weight", shape: [4, 10], data: new Float32Array(40) }]);
    expect((await rejection({ ...mlp(), adapter_weights: stranger })).errors[0]!.path).toBe('adapter_weights["base_model.model.fc2.lora_A.weight"]');
  });

  it("adapter fields without an adapter, and trainable with one", async () => {
    const plain = seedRequest(64, { output: { format: "peft" } } as Partial<ExactTrainRequest>);
    expect((await rejection(plain)).errors[0]!.path).toBe("output.format");
    expect((await rejection({ ...mlp(), trainable: ["fc2"] })).errors[0]!.path).toBe("trainable");
  });
});
