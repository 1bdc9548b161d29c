/**
 * Activation buffers shared by values that are not live together (graph/compile.ts
 * planValueBuffers): training gives the same bits as with a buffer per value, across layer
 * lists, Hub models and LoRA runs, and the plan's memory falls where the backward pass needs
 * fewer activations (a frozen base's inputs).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { loadNodeRuntime } from "../../src/node/index.js";
import { prepareRun, runPrepared, train, type PreparedRun, type TrainRequest } from "../../src/engine/train.js";
import { DEFAULT_EDGE_BUDGET } from "../../src/api/budget.js";
import { writeSafetensors } from "../../src/formats/safetensors.js";
import { GROUPS, type ParityCase } from "../parity/compare.js";
import { tokenData } from "../helpers.js";

const load = (group: string) => (JSON.parse(readFileSync(new URL(`../parity/fixtures/${group}.json`, import.meta.url), "utf8")) as { cases: ParityCase[] }).cases;
const withWeights = (c: ParityCase, extra: object = {}): TrainRequest => ({
  ...(c.request as object),
  weights: writeSafetensors(Object.entries(c.initial_weights).map(([name, t]) => ({ name, shape: t.shape, data: Float32Array.from(t.data) }))),
  ...extra,
}) as TrainRequest;

/** The same run with one buffer per value and one per gradient slot (what the planner replaced). */
function unshared(prepared: PreparedRun): PreparedRun {
  const own = prepared.model.values.map((v, i) => (v.input ? -1 : i));
  const sizes = [...prepared.model.values.map((v) => (v.input ? 0 : v.size)), ...prepared.model.gradSlots];
  const slots = prepared.model.gradSlots.map((_, s) => prepared.model.values.length + s);
  return { ...prepared, model: { ...prepared.model, valueBuffers: own, bufferSizes: sizes, gradSlotBuffers: slots } };
}

describe("shared activation buffers", async () => {
  const runtime = await loadNodeRuntime({ variant: "wasm-simd" });
  // every parity fixture (each op kind, each layer type), and adapter runs (frozen bases)
  const cases = [
    ...GROUPS.flatMap((g) => load(g).map((c) => [`${g}/${c.name}`, withWeights(c)] as const)),
    ["gpt2 with a LoRA adapter", withWeights(load("huggingface").find((c) => c.name === "gpt2_causal_lm")!, { adapter: { type: "lora", r: 2, target_modules: "all-linear" } })] as const,
    ["bert with a LoRA adapter", withWeights(load("huggingface").find((c) => c.name === "bert_seqcls_pairs")!, { adapter: { type: "lora", r: 2 } })] as const,
  ];
  for (const [name, request] of cases) {
    it(`${name}: the same bits as a buffer per value, in fewer buffers`, async () => {
      const prepared = prepareRun(request);
      const shared = await runPrepared(runtime, prepared);
      const alone = await runPrepared(runtime, unshared(prepareRun(request)));
      expect(shared.weights).toBe(alone.weights);
      expect(shared.metrics.history).toEqual(alone.metrics.history);
      const values = prepared.model.values.filter((v) => !v.input).length;
      expect(prepared.model.bufferSizes.length).toBeLessThanOrEqual(values + prepared.model.gradSlots.length);
      const elements = (sizes: readonly number[]) => sizes.reduce((s, n) => s + n, 0);
      expect(elements(prepared.model.bufferSizes)).toBeLessThanOrEqual(elements(prepared.model.values.map((v) => (v.input ? 0 : v.size))) + elements(prepared.model.gradSlots));
    });
  }

  it("a LoRA run on a MiniLM-shaped BERT plans less memory than before the buffers were shared", () => {
    const config = { architectures: ["BertForSequenceClassification"], hidden_size: 384, num_hidden_layers: 6, num_attention_heads: 12, intermediate_size: 1536, vocab_size: 30522, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 };
    const { input_ids, attention_mask, y } = tokenData(64, 128, 30522, 2);
    const request = { model: { huggingface: { config } }, data: { train: { input_ids, attention_mask, y } }, training: { epochs: 1, batch_size: 8, optimizer: { type: "adamw", lr: 1e-4 } } };
    const lora = prepareRun({ ...request, adapter: { type: "lora", r: 8 } } as TrainRequest);
    const full = prepareRun(request as TrainRequest);
    const mib = (p: PreparedRun) => p.plan.memory_bytes / 2 ** 20;
    const values = (p: PreparedRun) => p.model.values.filter((v) => !v.input).reduce((s, v) => s + v.size, 0);
    // the buffers hold the gradient slots too, where activation buffers cannot (graph/memory.ts)
    const buffers = (p: PreparedRun) => p.model.bufferSizes.reduce((s, n) => s + n, 0);
    console.log(`[buffers] MiniLM-shaped BERT, batch 8 x 128 tokens: LoRA r=8 ${mib(lora).toFixed(1)} MiB (activation and gradient buffers ${((8 * 4 * buffers(lora)) / 2 ** 20).toFixed(1)} of ${((8 * 4 * values(lora)) / 2 ** 20).toFixed(1)} MiB of activations unshared); full ${mib(full).toFixed(1)} MiB (activation and gradient buffers ${((8 * 4 * buffers(full)) / 2 ** 20).toFixed(1)} of ${((8 * 4 * values(full)) / 2 ** 20).toFixed(1)})`);
    expect(buffers(lora)).toBeLessThan(0.8 * values(lora));
    expect(buffers(full)).toBeLessThan(values(full));
  });

  it("gradient checkpointing: every fixture without BatchNorm trains to the same bits", async () => {
    const unsupported: string[] = [];
    for (const [name, request] of cases) {
      const plain = prepareRun(request);
      if (plain.model.ops.some((op) => op.kind === "batch_norm")) {
        unsupported.push(name);
        continue;
      }
      const ckpt = prepareRun({ ...request, training: { ...(request.training as object), gradient_checkpointing: true } } as TrainRequest);
      const [a, b] = [await runPrepared(runtime, plain), await runPrepared(runtime, ckpt)];
      expect(b.weights, name).toBe(a.weights);
      expect(b.metrics.history, name).toEqual(a.metrics.history);
    }
    expect(unsupported.length).toBeGreaterThan(0); // the BatchNorm fixtures: refused, below
  });

  it("gradient checkpointing with BatchNorm is a 422 naming the field", () => {
    const bn = load("norm").find((c) => JSON.stringify(c.request).includes("batch_norm"))!;
    expect(() => prepareRun({ ...withWeights(bn), training: { ...(bn.request as { training: object }).training, gradient_checkpointing: true } } as TrainRequest)).toThrow(/gradient_checkpointing/);
  });

  it("a MiniLM-shaped LoRA run with checkpointing and a float16 base", () => {
    const config = { architectures: ["BertForSequenceClassification"], hidden_size: 384, num_hidden_layers: 6, num_attention_heads: 12, intermediate_size: 1536, vocab_size: 30522, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 };
    const { input_ids, attention_mask, y } = tokenData(64, 128, 30522, 2);
    const request = (checkpointing: boolean) => ({
      model: { huggingface: { config }, base_dtype: "float16" }, adapter: { type: "lora", r: 8 },
      data: { train: { input_ids, attention_mask, y } }, training: { epochs: 1, batch_size: 8, optimizer: { type: "adamw", lr: 1e-4 }, gradient_checkpointing: checkpointing },
    }) as TrainRequest;
    const [without, with_] = [prepareRun(request(false)), prepareRun(request(true))];
    console.log(`[buffers] MiniLM-shaped BERT, LoRA r=8, float16 base, batch 8 x 128: ${(without.plan.memory_bytes / 2 ** 20).toFixed(1)} MiB, with gradient checkpointing ${(with_.plan.memory_bytes / 2 ** 20).toFixed(1)} MiB (${(with_.plan.flops / without.plan.flops).toFixed(2)}x the FLOPs)`);
    expect(with_.plan.memory_bytes).toBeLessThan(without.plan.memory_bytes);
    expect(with_.plan.flops).toBeGreaterThan(without.plan.flops);
    // within a block, a value the block's backward does not read gives its buffer back after its
    // last forward reader (118.5 MiB when each block value kept one; docs/adapters.md, Memory)
    expect(with_.plan.memory_bytes / 2 ** 20).toBeLessThan(110);
  });
});

describe("gradient slots in activation buffers the values do not need (graph/memory.ts)", async () => {
  const runtime = await loadNodeRuntime({ variant: "wasm-simd" });
  const minilm = { architectures: ["BertForSequenceClassification"], hidden_size: 384, num_hidden_layers: 6, num_attention_heads: 12, intermediate_size: 1536, vocab_size: 30522, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 };
  /** Issue 13's row as bench/lora.mjs sends it: LoRA r 8, float16 base, checkpointing, batch 8 x 128, AdamW. */
  const lora = (config: object, rows: number, T: number, vocab: number, extra: { checkpointing?: boolean; dropout?: boolean } = {}) => {
    const { input_ids, attention_mask, y } = tokenData(rows, T, vocab, 2);
    return {
      model: { huggingface: { config: extra.dropout ? { ...config, hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1 } : config }, base_dtype: "float16" }, adapter: { type: "lora", r: 8, lora_alpha: 16 },
      data: { train: { input_ids, attention_mask, y } },
      training: { epochs: 1, batch_size: 8, optimizer: { type: "adamw", lr: 1e-4 }, gradient_checkpointing: extra.checkpointing ?? true },
    } as TrainRequest;
  };

  it("issue 13's MiniLM-shaped LoRA run plans within the default edge budget (96 MiB)", () => {
    const prepared = prepareRun(lora(minilm, 32, 128, 30522));
    const mib = prepared.plan.memory_bytes / 2 ** 20;
    console.log(`[buffers] issue 13's MiniLM LoRA row: ${mib.toFixed(1)} MiB planned (109.5 before the gradient slots moved into free activation buffers)`);
    expect(prepared.plan.memory_bytes).toBeLessThanOrEqual(DEFAULT_EDGE_BUDGET.maxMemoryBytes);
    const m = prepared.model;
    // the FFN's two [8, 128, 1536] gradients (dL/d GELU's output, written over by dL/d its input)
    // live in the GELU output's buffer, which nothing reads in the backward pass: no buffer of
    // that size is added for gradients
    const ffn = 4 * 384;
    const valueBuffers = new Set(m.valueBuffers.filter((b) => b >= 0));
    const ffnSlots = m.gradSlots.map((size, s) => [size, s] as const).filter(([size]) => size === 128 * ffn).map(([, s]) => m.gradSlotBuffers[s]!);
    expect(ffnSlots.length).toBe(2);
    expect(new Set(ffnSlots).size).toBe(1);
    expect(valueBuffers.has(ffnSlots[0]!)).toBe(true);
    // in all, gradient-only buffers hold at most two [8, 128, 384] (3 MiB), down from 21 MiB of slots
    const gradientOnly = m.bufferSizes.filter((_, b) => !valueBuffers.has(b)).reduce((s, n) => s + n, 0);
    expect(gradientOnly).toBeLessThanOrEqual(2 * 128 * 384);
    expect(m.gradSlots.reduce((s, n) => s + n, 0)).toBeGreaterThan(6 * 128 * 384 + 2 * 128 * ffn);
  });

  it("a run's arena is what its plan counts, with and without checkpointing, with dropout", async () => {
    const small = { ...minilm, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 64, vocab_size: 100, max_position_embeddings: 64 };
    for (const extra of [{ checkpointing: true }, { checkpointing: false }, { checkpointing: true, dropout: true }]) {
      const request = lora(small, 20, 16, 100, extra);
      const diagnostics: { arenaBytes?: number; memoryBytes?: number } = {};
      const result = await train(runtime, request, { diagnostics });
      expect(result.status, JSON.stringify(extra)).toBe("succeeded");
      // the plan is the arena plus the module's static data (64 KiB); the memory never grew past it
      expect(result.plan.memory_bytes, JSON.stringify(extra)).toBeGreaterThanOrEqual(diagnostics.arenaBytes!);
      expect(result.plan.memory_bytes, JSON.stringify(extra)).toBeLessThan(diagnostics.arenaBytes! + 70_000);
      // and the run trains to the same bits as with a buffer per value and per slot
      const alone = await runPrepared(runtime, unshared(prepareRun(request)));
      const shared = await runPrepared(runtime, prepareRun(request));
      expect(shared.weights, JSON.stringify(extra)).toBe(alone.weights);
      expect(shared.metrics.history, JSON.stringify(extra)).toEqual(alone.metrics.history);
    }
  });
});
