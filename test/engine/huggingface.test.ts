/**
 * Hugging Face architectures (src/engine/huggingface): the Hub's state_dict names and shapes from
 * config.json, checkpoint reading (prefixless files, ignored buffers, dropped heads, a missing
 * task head, Conv1D's [in, out]), causal-LM labels, token types, training on WASM against the
 * TypeScript twins, and the 422s a user meets. PyTorch parity: test/parity (group huggingface).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { rejection } from "./refusals.js";
import { tokenData } from "../helpers.js";
import { loadNodeRuntime, train } from "../../src/node/index.js";
import { graphGradcheck } from "./graph-gradcheck.js";
import { prepareRun, type TrainRequest } from "../../src/engine/train.js";
import { defaultInit } from "../../src/engine/init.js";
import { decide, DEFAULT_EDGE_BUDGET } from "../../src/api/budget.js";
import { transpose } from "../../src/engine/huggingface/checkpoint.js";
import { causalLmTargets } from "../../src/engine/huggingface/labels.js";
import { decodeBase64 } from "../../src/formats/base64.js";
import { parseSafetensors, readTensorF32, writeSafetensors, type WritableTensor } from "../../src/formats/safetensors.js";

const BERT = {
  architectures: ["BertForSequenceClassification"], vocab_size: 20, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2,
  intermediate_size: 16, max_position_embeddings: 12, type_vocab_size: 2, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0,
  id2label: { "0": "a", "1": "b", "2": "c" }, model_type: "bert",
};
const DISTILBERT = {
  architectures: ["DistilBertForSequenceClassification"], vocab_size: 20, dim: 8, n_layers: 1, n_heads: 2, hidden_dim: 16,
  max_position_embeddings: 12, dropout: 0, attention_dropout: 0, seq_classif_dropout: 0, id2label: { "0": "a", "1": "b", "2": "c" },
};
const GPT2 = {
  architectures: ["GPT2LMHeadModel"], vocab_size: 20, n_embd: 8, n_layer: 1, n_head: 2, n_positions: 12,
  resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0, model_type: "gpt2",
};
const LLAMA = {
  architectures: ["LlamaForCausalLM"], vocab_size: 20, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1,
  num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: true, pad_token_id: 0, model_type: "llama",
};

type Config = Record<string, unknown>;

/** A request for a Hugging Face config over tokenData rows (6 tokens, ids below 20). */
function hfRequest(config: Config, overrides: Partial<TrainRequest> = {}, rows = 24): TrainRequest {
  const causal = String((config.architectures as string[])[0]).match(/LMHead|CausalLM/);
  const { input_ids, attention_mask, y } = tokenData(rows, 6, 20, 3);
  return {
    model: { huggingface: { config } },
    data: { train: causal ? { input_ids, attention_mask } : { input_ids, attention_mask, y } },
    training: { epochs: 3, batch_size: 8, optimizer: { type: "adam", lr: 0.01 } },
    ...overrides,
  } as TrainRequest;
}

/** The state_dict names and shapes compileModel gives a config. */
function stateOf(config: Config): [string, number[]][] {
  return prepareRun(hfRequest(config)).model.state.map((t) => [t.name, [...t.shape]]);
}

/** A model.safetensors for a config (PyTorch-like init; Conv1D weights as [in, out]), with extra or renamed keys. */
function checkpoint(config: Config, edit: (tensors: WritableTensor[]) => WritableTensor[] = (t) => t): Uint8Array {
  const prepared = prepareRun(hfRequest(config));
  const init = defaultInit(prepared.model, 3);
  const tensors = prepared.model.state.map((t) => {
    const data = init.get(t.name)!;
    return { name: t.name, shape: [...t.shape], data: t.transposed ? transpose(data, t.shape[1]!, t.shape[0]!) : data };
  });
  return writeSafetensors(edit(tensors));
}

function tensorsOf(weights: string | Uint8Array): Map<string, Float32Array> {
  const file = parseSafetensors(typeof weights === "string" ? decodeBase64(weights) : weights);
  return new Map([...file.tensors.keys()].map((name) => [name, readTensorF32(file, name)]));
}

describe("Hub names and shapes from config.json", () => {
  it("BertForSequenceClassification", () => {
    const H = 8, I = 16;
    const layer = "bert.encoder.layer.0";
    expect(stateOf(BERT)).toEqual([
      ["bert.embeddings.word_embeddings.weight", [20, H]],
      ["bert.embeddings.position_embeddings.weight", [12, H]],
      ["bert.embeddings.token_type_embeddings.weight", [2, H]],
      ["bert.embeddings.LayerNorm.weight", [H]], ["bert.embeddings.LayerNorm.bias", [H]],
      [`${layer}.attention.self.query.weight`, [H, H]], [`${layer}.attention.self.query.bias`, [H]],
      [`${layer}.attention.self.key.weight`, [H, H]], [`${layer}.attention.self.key.bias`, [H]],
      [`${layer}.attention.self.value.weight`, [H, H]], [`${layer}.attention.self.value.bias`, [H]],
      [`${layer}.attention.output.dense.weight`, [H, H]], [`${layer}.attention.output.dense.bias`, [H]],
      [`${layer}.attention.output.LayerNorm.weight`, [H]], [`${layer}.attention.output.LayerNorm.bias`, [H]],
      [`${layer}.intermediate.dense.weight`, [I, H]], [`${layer}.intermediate.dense.bias`, [I]],
      [`${layer}.output.dense.weight`, [H, I]], [`${layer}.output.dense.bias`, [H]],
      [`${layer}.output.LayerNorm.weight`, [H]], [`${layer}.output.LayerNorm.bias`, [H]],
      ["bert.pooler.dense.weight", [H, H]], ["bert.pooler.dense.bias", [H]],
      ["classifier.weight", [3, H]], ["classifier.bias", [3]],
    ]);
  });

  it("DistilBertForSequenceClassification", () => {
    const l = "distilbert.transformer.layer.0";
    expect(stateOf(DISTILBERT).map(([n, s]) => `${n} ${s.join("x")}`)).toEqual([
      "distilbert.embeddings.word_embeddings.weight 20x8", "distilbert.embeddings.position_embeddings.weight 12x8",
      "distilbert.embeddings.LayerNorm.weight 8", "distilbert.embeddings.LayerNorm.bias 8",
      ...["q_lin", "k_lin", "v_lin", "out_lin"].flatMap((m) => [`${l}.attention.${m}.weight 8x8`, `${l}.attention.${m}.bias 8`]),
      `${l}.sa_layer_norm.weight 8`, `${l}.sa_layer_norm.bias 8`,
      `${l}.ffn.lin1.weight 16x8`, `${l}.ffn.lin1.bias 16`, `${l}.ffn.lin2.weight 8x16`, `${l}.ffn.lin2.bias 8`,
      `${l}.output_layer_norm.weight 8`, `${l}.output_layer_norm.bias 8`,
      "pre_classifier.weight 8x8", "pre_classifier.bias 8", "classifier.weight 3x8", "classifier.bias 3",
    ]);
  });

  it("GPT2LMHeadModel: Conv1D weights [in, out], lm_head tied to wte and absent", () => {
    const h = "transformer.h.0";
    expect(stateOf(GPT2).map(([n, s]) => `${n} ${s.join("x")}`)).toEqual([
      "transformer.wte.weight 20x8", "transformer.wpe.weight 12x8",
      `${h}.ln_1.weight 8`, `${h}.ln_1.bias 8`,
      `${h}.attn.c_attn.weight 8x24`, `${h}.attn.c_attn.bias 24`, `${h}.attn.c_proj.weight 8x8`, `${h}.attn.c_proj.bias 8`,
      `${h}.ln_2.weight 8`, `${h}.ln_2.bias 8`,
      `${h}.mlp.c_fc.weight 8x32`, `${h}.mlp.c_fc.bias 32`, `${h}.mlp.c_proj.weight 32x8`, `${h}.mlp.c_proj.bias 8`,
      "transformer.ln_f.weight 8", "transformer.ln_f.bias 8",
    ]);
  });

  it("LlamaForCausalLM: grouped-query projections, RMSNorm weights, tied or untied lm_head", () => {
    const l = "model.layers.0";
    const tied = [
      "model.embed_tokens.weight 20x8",
      `${l}.self_attn.q_proj.weight 8x8`, `${l}.self_attn.k_proj.weight 4x8`, `${l}.self_attn.v_proj.weight 4x8`, `${l}.self_attn.o_proj.weight 8x8`,
      `${l}.mlp.gate_proj.weight 16x8`, `${l}.mlp.up_proj.weight 16x8`, `${l}.mlp.down_proj.weight 8x16`,
      `${l}.input_layernorm.weight 8`, `${l}.post_attention_layernorm.weight 8`, "model.norm.weight 8",
    ];
    expect(stateOf(LLAMA).map(([n, s]) => `${n} ${s.join("x")}`)).toEqual(tied);
    expect(stateOf({ ...LLAMA, tie_word_embeddings: false }).map(([n, s]) => `${n} ${s.join("x")}`)).toEqual([...tied, "lm_head.weight 20x8"]);
  });
});

describe("the plan per layer group", () => {
  it("a Hub model's blocks, whose parameters and FLOPs add up to the plan's", () => {
    const { plan } = prepareRun(hfRequest({ ...BERT, num_hidden_layers: 2 }));
    expect(plan.groups.map((g) => g.name)).toEqual(["bert.embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1", "bert.pooler", "classifier"]);
    expect(plan.groups.reduce((s, g) => s + g.params, 0)).toBe(plan.params);
    const flops = plan.groups.reduce((s, g) => s + g.flops, 0);
    expect(flops / plan.flops).toBeCloseTo(1, 10);
    const [layer0, layer1] = [plan.groups[1]!, plan.groups[2]!];
    expect(layer1.params).toBe(layer0.params);
    // the last layer's tail (after its attention) runs on the first token's row only: the
    // pooler reads nothing else (bert.ts), so that layer costs less than the first
    expect(layer1.flops).toBeLessThan(0.75 * layer0.flops);
    expect(layer1.memory_bytes).toBeLessThan(layer0.memory_bytes);
    expect(plan.groups.every((g) => g.memory_bytes > 4 * g.params)).toBe(true);
  });
});

describe("placement follows the plan", () => {
  // bert-tiny (google/bert_uncased_L-2_H-128_A-2): 4.4M parameters, 3.9M of them word embeddings
  const bertTiny = { architectures: ["BertForSequenceClassification"], hidden_size: 128, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 512 };
  const request = (trainable?: string[]) => {
    const { input_ids, attention_mask, y } = tokenData(512, 64, 30522, 2);
    return { model: { huggingface: { config: bertTiny } }, data: { train: { input_ids, attention_mask, y } }, training: { epochs: 2, batch_size: 16, optimizer: { type: "adamw", lr: 5e-5 } }, ...(trainable ? { trainable } : {}) } as TrainRequest;
  };

  it("bert-tiny with frozen embeddings fits the Worker; trained whole, it goes to a GPU node", () => {
    const frozen = prepareRun(request(["bert.encoder", "bert.pooler", "classifier"]));
    expect(frozen.plan.params).toBe(4386178);
    expect(decide(frozen.request, frozen.plan, DEFAULT_EDGE_BUDGET)).toEqual({ run: "sync" });
    const whole = prepareRun(request());
    expect(decide(whole.request, whole.plan, DEFAULT_EDGE_BUDGET)).toEqual({ run: "async", placement: "gpu-node" });
  });
});

describe("a sequence classifier's loss when training.loss is absent: what its forward picks", () => {
  // transformers' *ForSequenceClassification.forward: config.problem_type, or regression for
  // num_labels 1, single-label for class indices, multi-label for float labels (here: rows of num_labels values)
  const rows = (width: number) => Array.from({ length: 24 }, (_, r) => (width === 1 ? r % 3 : Array.from({ length: width }, (_, j) => (r + j) % 2)));
  const lossOf = (config: Config, width: number, loss?: object) => {
    const request = hfRequest(config);
    const train = (request.data as { train: Record<string, unknown> }).train;
    train.y = rows(width);
    if (loss) (request.training as Record<string, unknown>).loss = loss;
    return prepareRun(request).request.training.loss;
  };

  it("class indices: cross-entropy; rows of num_labels values: BCE with logits (multi-label)", () => {
    expect(lossOf(BERT, 1).type).toBe("cross_entropy");
    expect(lossOf(BERT, 3)).toEqual({ type: "bce_with_logits", pos_weight: null });
    expect(lossOf(DISTILBERT, 3).type).toBe("bce_with_logits");
  });

  it("num_labels 1: MSE (regression)", () => {
    const { id2label: _, ...config } = BERT;
    expect(lossOf({ ...config, num_labels: 1 }, 1).type).toBe("mse");
  });

  it("config.problem_type decides over the labels' shape, as in transformers", () => {
    expect(lossOf({ ...BERT, problem_type: "regression" }, 3).type).toBe("mse");
    expect(lossOf({ ...BERT, problem_type: "multi_label_classification" }, 3).type).toBe("bce_with_logits");
    expect(lossOf({ ...DISTILBERT, problem_type: "single_label_classification" }, 1).type).toBe("cross_entropy");
    expect(lossOf({ ...BERT, problem_type: null }, 1).type).toBe("cross_entropy");
  });

  it("an explicit training.loss stands", () => {
    expect(lossOf({ ...BERT, problem_type: "multi_label_classification" }, 1, { type: "cross_entropy" }).type).toBe("cross_entropy");
  });

  it("single-label classification with rows of values, and a problem_type transformers does not have, are 422s naming the field", async () => {
    const request = hfRequest({ ...BERT, problem_type: "single_label_classification" });
    (request.data as { train: Record<string, unknown> }).train.y = rows(3);
    expect((await rejection(request)).errors[0]!.path).toBe("data.train.y");
    const unknown = await rejection(hfRequest({ ...BERT, problem_type: "multilabel" }));
    expect(unknown.status).toBe(422);
    expect(unknown.errors[0]!.path).toBe("model.huggingface.config.problem_type");
  });
});

describe("refusals name the field", () => {
  it("an unsupported architecture lists the supported ones", async () => {
    const e = await rejection(hfRequest({ ...BERT, architectures: ["T5ForConditionalGeneration"] }));
    expect(e.status).toBe(422);
    expect(e.errors[0]!.path).toBe("model.huggingface.config.architectures[0]");
    expect(e.errors[0]!.message).toMatch(/BertForSequenceClassification, DistilBertForSequenceClassification, GPT2LMHeadModel, LlamaForCausalLM/);
  });

  it("a config field edgetune does not support", async () => {
    const act = await rejection(hfRequest({ ...BERT, hidden_act: "quick_gelu" }));
    expect(act.errors[0]!.path).toBe("model.huggingface.config.hidden_act");
    const rope = await rejection(hfRequest({ ...LLAMA, rope_scaling: { rope_type: "llama3", factor: 8 } }));
    expect(rope.errors[0]!.path).toBe("model.huggingface.config.rope_scaling");
    const heads = await rejection(hfRequest({ ...LLAMA, num_key_value_heads: 3 }));
    expect(heads.errors[0]!.path).toBe("model.huggingface.config.num_key_value_heads");
  });

  it("a task that is not the architecture's", async () => {
    const request = hfRequest(GPT2);
    (request.model as { huggingface: { task?: string } }).huggingface.task = "sequence-classification";
    expect((await rejection(request)).errors[0]!.path).toBe("model.huggingface.task");
  });

  it("rows longer than the learned positions", async () => {
    const { input_ids, attention_mask, y } = tokenData(8, 14, 20, 3);
    const e = await rejection({ ...hfRequest(BERT), data: { train: { input_ids, attention_mask, y } } });
    expect(e.errors[0]!.path).toBe("data.train.input_ids");
    expect(e.errors[0]!.message).toMatch(/14 tokens.*12 positions/);
  });

  it("feature rows, and both layers and huggingface", async () => {
    expect((await rejection({ ...hfRequest(BERT), data: { train: { x: [[1, 2]], y: [0] } } })).errors[0]!.path).toBe("data.train");
    const both = hfRequest(BERT);
    (both.model as Record<string, unknown>).layers = [{ type: "relu" }];
    expect((await rejection(both)).errors[0]!.path).toBe("model.huggingface");
  });

  it("missing and unknown checkpoint keys are listed", async () => {
    const weights = checkpoint(GPT2, (ts) => [...ts.filter((t) => !t.name.includes("ln_f")), { name: "transformer.extra.weight", shape: [1], data: new Float32Array(1) }]);
    const e = await rejection({ ...hfRequest(GPT2), weights: Buffer.from(weights).toString("base64") });
    expect(e.status).toBe(422);
    const messages = e.errors.map((i) => `${i.path}: ${i.message}`).join("\n");
    expect(messages).toMatch(/weights\["transformer\.extra\.weight"\]/);
    expect(messages).toMatch(/missing 2 tensor\(s\).*transformer\.ln_f\.weight, transformer\.ln_f\.bias/);
  });

  it("token_type_ids beyond type_vocab_size", async () => {
    const request = hfRequest(BERT);
    const data = request.data!.train as { input_ids: number[][]; token_type_ids?: number[][] };
    data.token_type_ids = data.input_ids.map((row) => row.map((_, t) => (t > 2 ? 2 : 0)));
    const e = await rejection(request);
    expect(e.errors[0]!.path).toBe("data.train.token_type_ids[0]");
  });
});

describe("checkpoints as they come from the Hub", () => {
  it("GPT-2 without the transformer. prefix and with attn.bias buffers: read, and written back the same way (Conv1D [in, out] round trip)", async () => {
    const bytes = checkpoint(GPT2, (ts) => [
      ...ts.map((t) => ({ ...t, name: t.name.replace(/^transformer\./, "") })),
      { name: "h.0.attn.bias", shape: [1, 1, 12, 12], data: new Float32Array(144).fill(1) },
    ]);
    const result = await train({ ...hfRequest(GPT2), weights: bytes, training: { epochs: 1, optimizer: { type: "sgd", lr: 0 } } });
    expect(result.status).toBe("succeeded");
    const given = tensorsOf(bytes);
    given.delete("h.0.attn.bias");
    const out = tensorsOf(result.weights);
    expect([...out.keys()]).toEqual([...given.keys()]);
    // lr 0: every tensor comes back exactly as given, so the transposition is undone on the way out
    for (const [name, data] of given) expect(out.get(name), name).toEqual(data);
    expect(result.huggingface).toMatchObject({ architecture: "GPT2LMHeadModel", task: "causal-lm", config: GPT2, initialized: [], dropped: [] });
  });

  it("an older BERT file's LayerNorm gamma and beta load as weight and bias (transformers' _fix_key)", async () => {
    const bytes = checkpoint(BERT, (ts) => ts.map((t) => ({ ...t, name: t.name.replace(/LayerNorm\.weight$/, "LayerNorm.gamma").replace(/LayerNorm\.bias$/, "LayerNorm.beta") })));
    const result = await train({ ...hfRequest(BERT), weights: bytes, training: { epochs: 1, optimizer: { type: "sgd", lr: 0 } } });
    const out = tensorsOf(result.weights);
    expect(out.has("bert.embeddings.LayerNorm.weight")).toBe(true);
    expect(out.get("bert.encoder.layer.0.output.LayerNorm.bias")).toEqual(tensorsOf(bytes).get("bert.encoder.layer.0.output.LayerNorm.beta"));
  });

  it("a BERT pre-training checkpoint: cls.* dropped, the classifier and pooler initialised, both reported", async () => {
    const bytes = checkpoint(BERT, (ts) => [
      ...ts.filter((t) => !t.name.startsWith("classifier.") && !t.name.startsWith("bert.pooler.")),
      { name: "cls.predictions.bias", shape: [20], data: new Float32Array(20) },
      { name: "bert.embeddings.position_ids", shape: [1, 12], data: new Float32Array(12) },
    ]);
    const result = await train({ ...hfRequest(BERT), weights: bytes });
    expect(result.status).toBe("succeeded");
    expect(result.huggingface!.dropped).toEqual(["cls.predictions.bias"]);
    expect(result.huggingface!.initialized).toEqual(["bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"]);
    expect(tensorsOf(result.weights).has("classifier.weight")).toBe(true);
  });
});

describe("text rows with the model's tokenizer.json", () => {
  const tokenizer = (name: string) => JSON.parse(readFileSync(new URL(`../fixtures/tokenizers/${name}.json`, import.meta.url), "utf8")) as Record<string, unknown>;
  const reviews = ["a good movie", "this film was awful", "i love it", "not great", "the movie is bad", "hello world, what a film!", "great great film", "it was not good"];

  it("GPT-2 on text without y: the labels are the tokens; validation perplexity falls", async () => {
    const config = { ...GPT2, vocab_size: 513, n_positions: 16 };
    const result = await train({
      model: { huggingface: { config } },
      tokenizer: tokenizer("tiny-gpt2"),
      data: { train: { text: [...reviews, ...reviews] }, validation: { text: reviews.slice(0, 4) } },
      training: { epochs: 5, batch_size: 4, optimizer: { type: "adam", lr: 0.01 } },
    } as TrainRequest);
    expect(result.status).toBe("succeeded");
    expect(result.metrics.history.at(-1)!.val_perplexity!).toBeLessThan(result.metrics.initial!.val_perplexity!);
  });

  it("a tokenizer with more ids than config.json's vocab_size is a 422 at tokenizer", async () => {
    const e = await rejection({ model: { huggingface: { config: { ...GPT2, vocab_size: 300 } } }, tokenizer: tokenizer("tiny-gpt2"), data: { train: { text: reviews } } });
    expect(e.errors[0]!.path).toBe("tokenizer");
    expect(e.errors[0]!.message).toMatch(/513 token ids.*vocab_size is 300/);
  });

  it("BERT: text longer than max_position_embeddings is a 422 without truncation, and trains with it; pairs reach token_type_embeddings", async () => {
    const config = { ...BERT, vocab_size: 90, max_position_embeddings: 8 };
    const long = { model: { huggingface: { config } }, tokenizer: tokenizer("tiny-wordpiece"), data: { train: { text: reviews, y: reviews.map((_, i) => i % 3) } } };
    const e = await rejection(long);
    expect(e.errors[0]!.path, e.errors[0]!.message).toMatch(/^data\.train\.text\[\d+\]$/);
    expect(e.errors[0]!.message).toMatch(/8/);
    const truncated = await train({ ...long, data: { ...long.data, tokenization: { truncation: true } } } as TrainRequest);
    expect(truncated.status).toBe("succeeded");
    const pairs = await train({
      ...long,
      data: { train: { text: reviews.map((r) => r.split(" ")[0]!), text_pair: reviews.map((r) => r.split(" ").at(-1)!), y: reviews.map((_, i) => i % 3) } },
      training: { epochs: 1, optimizer: { type: "sgd", lr: 0.1 } },
    } as TrainRequest);
    const types = tensorsOf(pairs.weights).get("bert.embeddings.token_type_embeddings.weight")!;
    const before = tensorsOf((await train({ ...long, data: { ...long.data, tokenization: { truncation: true } }, training: { epochs: 1, optimizer: { type: "sgd", lr: 0 } } } as TrainRequest)).weights).get("bert.embeddings.token_type_embeddings.weight")!;
    expect(types.subarray(8)).not.toEqual(before.subarray(8));
  });
});

describe("class names as targets (text rows' y), through the config's label2id", () => {
  const tokenizer = JSON.parse(readFileSync(new URL("../fixtures/tokenizers/tiny-wordpiece.json", import.meta.url), "utf8")) as Record<string, unknown>;
  const reviews = ["a good movie", "this film was awful", "i love it", "not great", "the movie is bad", "great great film"];
  const config = { ...BERT, vocab_size: 90, id2label: { "0": "negative", "1": "neutral", "2": "positive" } };
  const indices = [2, 0, 2, 1, 0, 2];
  const names = indices.map((i) => config.id2label[String(i) as "0"]);
  const request = (y: unknown[], over: Record<string, unknown> = {}, cfg: Record<string, unknown> = config) =>
    ({ model: { huggingface: { config: cfg } }, tokenizer, data: { train: { text: reviews, y } }, training: { epochs: 2, batch_size: 2, optimizer: { type: "sgd", lr: 0.1 } }, ...over }) as TrainRequest;

  it("names train exactly as their class indices: same targets, same loss, same weights", async () => {
    expect([...prepareRun(request(names)).train.y]).toEqual(indices);
    expect(prepareRun(request(names)).request.training.loss.type).toBe("cross_entropy");
    const [byName, byIndex] = await Promise.all([train(request(names)), train(request(indices))]);
    expect(byName.status).toBe("succeeded");
    expect(byName.metrics.history).toEqual(byIndex.metrics.history);
    expect(Buffer.from(byName.weights).equals(Buffer.from(byIndex.weights))).toBe(true);
  });

  it("label2id decides over id2label; a config with neither knows LABEL_0.. LABEL_{num_labels-1}, as PretrainedConfig names them", () => {
    const label2id = { neg: 1, pos: 0 };
    expect([...prepareRun(request(["pos", "neg", "pos", "neg", "pos", "pos"], {}, { ...config, label2id })).train.y]).toEqual([0, 1, 0, 1, 0, 0]);
    const { id2label: _, ...bare } = config;
    expect([...prepareRun(request(["LABEL_2", "LABEL_0", "LABEL_1", "LABEL_1", "LABEL_0", "LABEL_0"], {}, { ...bare, num_labels: 3 })).train.y]).toEqual([2, 0, 1, 1, 0, 0]);
  });

  it("a name the model does not know is a 422 at its row, listing the names it knows; so is a class index past num_labels in label2id", async () => {
    const e = await rejection(request(["positive", "negative", "Positive", "neutral", "negative", "positive"]));
    expect(e.status).toBe(422);
    expect(e.errors).toHaveLength(1);
    expect(e.errors[0]!.path).toBe("data.train.y[2]");
    expect(e.errors[0]!.message).toMatch(/"Positive" is not a class of the model; its classes are "negative", "neutral", "positive"$/);
    const bad = await rejection(request(names, {}, { ...config, label2id: { negative: 0, neutral: 1, positive: 3 } }));
    expect(bad.errors[0]!.path).toBe("model.huggingface.config.label2id.positive");
    expect(bad.errors[0]!.message).toMatch(/integer 0\.\.2/);
    const badKey = await rejection(request(names, {}, { ...config, id2label: { "0": "negative", "1": "neutral", two: "positive" } }));
    expect(badKey.errors[0]!.path).toBe("model.huggingface.config.id2label.two");
  });

  it("validation names map the same way, and a validation name the model does not know is a 422 at data.validation", async () => {
    const ok = prepareRun({ ...request(indices), data: { train: { text: reviews, y: indices }, validation: { text: reviews.slice(0, 2), label: ["neutral", "positive"] } } } as TrainRequest);
    expect([...ok.validation!.y]).toEqual([1, 2]);
    const e = await rejection({ ...request(names), data: { train: { text: reviews, y: names }, validation: { text: reviews.slice(0, 1), y: ["great"] } } });
    expect(e.errors[0]!.path).toBe("data.validation.y[0]");
  });

  it("names and numbers mixed, or empty, are a 422 at the row", async () => {
    const e = await rejection(request(["positive", "negative", 2, "neutral", "", "positive"]));
    expect(e.errors.map((i) => i.path)).toEqual(["data.train.y[2]", "data.train.y[4]"]);
    expect(e.errors[0]!.message).toMatch(/is 2, but the first target is a class name \("positive"\)/);
    expect(e.errors[1]!.message).toMatch(/empty class name/);
  });

  it("names for a model that has none to map them through are a 422 at y: a causal LM, a regression or multi-label head", async () => {
    const gpt2 = await rejection({ model: { huggingface: { config: { ...GPT2, vocab_size: 513 } } }, tokenizer: JSON.parse(readFileSync(new URL("../fixtures/tokenizers/tiny-gpt2.json", import.meta.url), "utf8")), data: { train: { text: reviews, y: names } } });
    expect(gpt2.errors[0]!.path).toBe("data.train.y");
    expect(gpt2.errors[0]!.message).toMatch(/class names \("positive" first\).*sequence classifier's config\.label2id/);
    for (const [cfg, why] of [[{ ...config, problem_type: "regression" }, /regression \(config\.problem_type\)/], [{ ...config, problem_type: "multi_label_classification" }, /multi_label_classification/], [{ ...BERT, vocab_size: 90, id2label: undefined, num_labels: 1 }, /regression \(num_labels 1\)/]] as const) {
      const e = await rejection(request(names, {}, cfg));
      expect(e.errors[0]!.path).toBe("data.train.y");
      expect(e.errors[0]!.message).toMatch(why);
    }
  });
});

describe("causal-LM labels", () => {
  it("are the next token, -100 on padding and at the last position", () => {
    const table = {
      rows: 2, features: 4, targets: 0, targetsWereScalar: false, ids: true,
      x: new Float32Array([5, 6, 7, 0, 8, 9, 10, 11]), y: new Float32Array(0), mask: new Float32Array([1, 1, 1, 0, 1, 1, 1, 1]),
    };
    expect([...causalLmTargets(table, "data.train").y]).toEqual([6, 7, -100, -100, 9, 10, 11, -100]);
  });

  it("take y rows as labels, shifted", () => {
    const table = {
      rows: 1, features: 3, targets: 3, targetsWereScalar: false, ids: true,
      x: new Float32Array([5, 6, 7]), y: new Float32Array([-100, 6, 7]), mask: null,
    };
    expect([...causalLmTargets(table, "data.train").y]).toEqual([6, 7, -100]);
  });

  it("with nothing to predict (rows of one real token, or y all -100 past the first) are a 422, not a NaN loss", async () => {
    const oneToken = await rejection({ model: { huggingface: { config: GPT2 } }, data: { train: { input_ids: [[3, 0], [4, 0]], attention_mask: [[1, 0], [1, 0]] } }, training: { epochs: 1 } } as TrainRequest);
    expect(oneToken.status).toBe(422);
    expect(oneToken.errors[0]!.path).toBe("data.train.input_ids");
    expect(oneToken.errors[0]!.message).toMatch(/at least 2 tokens/);
    const ignored = await rejection({ model: { huggingface: { config: GPT2 } }, data: { train: { input_ids: [[3, 4, 5]], y: [[3, -100, -100]] } }, training: { epochs: 1 } } as TrainRequest);
    expect(ignored.errors[0]!.path).toBe("data.train.y");
    // one real next token anywhere is enough
    const some = await train({ model: { huggingface: { config: GPT2 } }, data: { train: { input_ids: [[3, 0], [4, 5]], attention_mask: [[1, 0], [1, 1]] } }, training: { epochs: 1 } } as TrainRequest);
    expect(some.status).toBe("succeeded");
  });
});

describe("graph gradients vs central differences, per architecture", async () => {
  const runtime = await loadNodeRuntime({ variant: "wasm-simd" });
  for (const [name, config] of [["BERT", BERT], ["DistilBERT", DISTILBERT], ["GPT-2", GPT2], ["Llama (GQA, tied)", LLAMA], ["Llama (MQA, untied, biases)", { ...LLAMA, num_key_value_heads: 1, tie_word_embeddings: false, attention_bias: true, mlp_bias: true }]] as const) {
    it(name, async () => {
      const request = hfRequest(config, { training: { loss: undefined, seed: 3 } as never });
      const data = request.data!.train as { input_ids: number[][]; token_type_ids?: number[][] };
      if (name === "BERT") data.token_type_ids = data.input_ids.map((row) => row.map((_, t) => (t >= 3 ? 1 : 0)));
      const { samples, bad } = await graphGradcheck(prepareRun(request), runtime);
      console.log(`[graph gradcheck] ${name}: ${samples - bad.length}/${samples} samples agree${bad.length ? `; off: ${bad.slice(0, 3).join("; ")}` : ""}`);
      expect(samples).toBeGreaterThan(40);
      expect(bad.length, bad.join("\n")).toBeLessThanOrEqual(Math.floor(samples * 0.1));
    });
  }
});

describe("training", () => {
  for (const [name, config] of [["BERT", BERT], ["DistilBERT", DISTILBERT], ["GPT-2", GPT2], ["Llama (GQA, tied)", LLAMA], ["Llama (untied)", { ...LLAMA, tie_word_embeddings: false }]] as const) {
    it(`${name}: the loss falls, and WASM matches the TypeScript twins`, async () => {
      // SGD with momentum: Adam divides rounding-level gradients by their own size, which no two summation orders agree on
      const request = hfRequest(config, { training: { epochs: 4, batch_size: 8, optimizer: { type: "sgd", lr: 0.1, momentum: 0.9 }, seed: 5 } });
      const wasm = await train(request, { kernel: "wasm" });
      const ref = await train(request, { kernel: "js-reference" });
      expect(wasm.status).toBe("succeeded");
      const history = wasm.metrics.history;
      expect(history.at(-1)!.train_loss).toBeLessThan(history[0]!.train_loss);
      const a = tensorsOf(wasm.weights), b = tensorsOf(ref.weights);
      let worst = 0;
      for (const [n, t] of b) for (let i = 0; i < t.length; i++) worst = Math.max(worst, Math.abs(a.get(n)![i]! - t[i]!) / (1e-5 + 1e-4 * Math.abs(t[i]!)));
      expect(worst).toBeLessThanOrEqual(1);
    });
  }

  it("a causal LM reports validation perplexity = exp(val_loss)", async () => {
    const request = hfRequest(GPT2);
    const train0 = request.data!.train as { input_ids: number[][]; attention_mask: number[][] };
    request.data!.validation = { input_ids: train0.input_ids.slice(0, 4), attention_mask: train0.attention_mask.slice(0, 4) };
    const result = await train(request);
    const last = result.metrics.history.at(-1)!;
    expect(last.val_perplexity).toBeCloseTo(Math.exp(last.val_loss!), 4);
    expect(result.metrics.initial!.val_perplexity).toBeGreaterThan(last.val_perplexity!);
  });

  it("BERT reads token_type_ids: segment 1 gives other weights than all zeros", async () => {
    const base = hfRequest(BERT, { training: { epochs: 1, batch_size: 8, optimizer: { type: "sgd", lr: 0.1 } } });
    const paired = structuredClone(base);
    const data = paired.data!.train as { input_ids: number[][]; token_type_ids?: number[][] };
    data.token_type_ids = data.input_ids.map((row) => row.map((_, t) => (t >= 3 ? 1 : 0)));
    const zeros = tensorsOf((await train(base)).weights).get("bert.embeddings.token_type_embeddings.weight")!;
    const pairs = tensorsOf((await train(paired)).weights).get("bert.embeddings.token_type_embeddings.weight")!;
    // row 1 is only trained when some token has type 1
    const init = tensorsOf((await train({ ...base, training: { ...base.training, optimizer: { type: "sgd", lr: 0 } } })).weights).get("bert.embeddings.token_type_embeddings.weight")!;
    expect(zeros.subarray(8)).toEqual(init.subarray(8));
    expect(pairs.subarray(8)).not.toEqual(init.subarray(8));
  });
});
