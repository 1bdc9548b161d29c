/**
 * Ghost norms (privacy/ghost.ts) against the definition: each row's gradient norm from the batch's
 * one backward pass equals the norm of that row's own gradient, computed by a backward pass over a
 * batch of that row alone, for every op with parameters the DP-SGD step supports: linear (one
 * position; per token by the Gram form and by forming dW), embedding with padding_idx and repeated
 * ids, position embeddings, layer and RMS norm, conv1d/conv2d with stride, dilation, padding and
 * groups, LoRA adapters, and a Hub BERT (token types, attention, GELU, pooler).
 */
import { describe, expect, it } from "vitest";
import { createLoss } from "../../src/engine/losses.js";
import { prepareRun, type TrainRequest } from "../../src/engine/train.js";
import { addSampleNormsSquared, SampleNorms, tiedParameters } from "../../src/engine/privacy/ghost.js";
import type { KernelOpContext, Op } from "../../src/engine/ops/types.js";
import { loadNodeRuntime } from "../../src/node/index.js";
import { classificationData, lcg, regressionData, tokenData } from "../helpers.js";
import { modelWithRows } from "./graph-gradcheck.js";

const runtime = await loadNodeRuntime();

/** Ghost norms of `rows` rows, and the norms of the same rows' gradients one row at a time (both of the per-sample loss). */
async function norms(request: TrainRequest, rows = 5): Promise<{ ghost: number[]; exact: number[] }> {
  const prepared = prepareRun(request);
  const { output, train } = prepared;
  const { memory, kernels, arena, model, put, x, mask, tokenTypes } = await modelWithRows(prepared, runtime, train, rows);
  const y = put(train.y.subarray(0, rows * train.targets));
  const loss = createLoss(prepared.request.training.loss, kernels, arena, output.classes);
  const view = { f32: (ptr: number, length: number) => new Float32Array(memory.buffer, ptr, length) };
  loss.compute(model.logitsGrad.ptr, model.forward({ x, mask, tokenTypes }, rows, true, 3), y, rows * output.positions);
  const squares = new Float64Array(rows);
  model.zeroGrad();
  model.backward(rows, (op, c, dy) => addSampleNormsSquared(op, c, view, rows, dy, squares));
  // the batch loss is the mean over rows: a row's own loss gradient is `rows` times its part
  const ghost = Array.from(squares, (s) => rows * Math.sqrt(s));
  const exact: number[] = [];
  const F = train.features;
  for (let i = 0; i < rows; i++) {
    const at = (p: number, width: number) => (p === 0 ? 0 : p + i * width * 4);
    const logits = model.forward({ x: at(x, F), mask: at(mask, F), tokenTypes: at(tokenTypes, F) }, 1, true, 3);
    loss.compute(model.logitsGrad.ptr, logits, at(y, train.targets), output.positions);
    model.zeroGrad();
    model.backward(1);
    exact.push(Math.sqrt(arena.f32(model.grads).reduce((a, g) => a + g * g, 0)));
  }
  return { ghost, exact };
}

function expectClose({ ghost, exact }: { ghost: number[]; exact: number[] }): void {
  expect(exact.every((n) => n > 0)).toBe(true);
  for (let i = 0; i < exact.length; i++) expect(Math.abs(ghost[i]! - exact[i]!)).toBeLessThanOrEqual(1e-4 * exact[i]! + 1e-7);
  // and the rows differ (a norm of the batch, or of another row, would not pass)
  expect(new Set(exact.map((n) => n.toPrecision(4))).size).toBe(exact.length);
}

const rowsOf = (rows: number, width: number, seed: number) => {
  const rand = lcg(seed);
  return Array.from({ length: rows }, () => Array.from({ length: width }, rand));
};

describe("ghost per-sample gradient norms equal the per-row gradients' norms", () => {
  it("linear + tanh + linear (one position), MSE", async () => {
    expectClose(await norms({
      model: { layers: [{ type: "linear", name: "fc1", in_features: 10, out_features: 7 }, { type: "tanh" }, { type: "linear", name: "fc2", in_features: 7, out_features: 2 }] },
      data: { train: { x: rowsOf(8, 10, 1), y: rowsOf(8, 2, 2) } },
    }));
  });

  it("per-token linears (the T×T Gram form, and dW formed where out·in < T²), RMS norm, frozen bias", async () => {
    expectClose(await norms({
      model: {
        input: { shape: [8, 4] },
        layers: [
          { type: "linear", name: "small", in_features: 4, out_features: 3 },
          { type: "rms_norm", name: "norm", normalized_shape: 3 },
          { type: "linear", name: "wide", in_features: 3, out_features: 12 },
          { type: "gelu" },
          { type: "flatten" },
          { type: "linear", name: "head", in_features: 96, out_features: 3 },
        ],
      },
      trainable: ["small", "norm", "wide.weight", "head"],
      data: { train: classificationData(8, 32) },
      training: { loss: { type: "cross_entropy" } },
    }));
  });

  it("embedding with padding_idx and repeated ids, position embedding, layer norm, mean pool", async () => {
    const data = tokenData(8, 6, 6, 3, 21); // a vocabulary of 6: ids repeat within rows
    expectClose(await norms({
      model: {
        layers: [
          { type: "embedding", name: "emb", num_embeddings: 6, embedding_dim: 6, padding_idx: 0 },
          { type: "position_embedding", name: "pos", num_embeddings: 6, embedding_dim: 6 },
          { type: "layer_norm", name: "ln", normalized_shape: 6 },
          { type: "pool", mode: "mean" },
          { type: "linear", name: "head", in_features: 6, out_features: 3 },
        ],
      },
      data: { train: data },
      training: { loss: { type: "cross_entropy" } },
    }));
  });

  it("conv1d with stride, dilation and groups; conv2d with padding", async () => {
    expectClose(await norms({
      model: {
        input: { shape: [4, 12] },
        layers: [{ type: "conv1d", name: "conv", in_channels: 4, out_channels: 6, kernel_size: 3, stride: 2, dilation: 2, groups: 2 }, { type: "tanh" }, { type: "flatten" }, { type: "linear", name: "head", in_features: 24, out_features: 1 }],
      },
      data: { train: regressionData(8, 48) },
    }));
    expectClose(await norms({
      model: {
        input: { shape: [2, 5, 5] },
        layers: [{ type: "conv2d", name: "conv", in_channels: 2, out_channels: 3, kernel_size: 3, padding: 1 }, { type: "tanh" }, { type: "max_pool2d", kernel_size: 2 }, { type: "flatten" }, { type: "linear", name: "head", in_features: 12, out_features: 3 }],
      },
      data: { train: classificationData(8, 50) },
      training: { loss: { type: "cross_entropy" } },
    }));
  });

  it("a LoRA adapter on an MLP (only A and B train)", async () => {
    expectClose(await norms({
      model: { layers: [{ type: "linear", name: "fc1", in_features: 10, out_features: 8 }, { type: "tanh" }, { type: "linear", name: "fc2", in_features: 8, out_features: 2 }] },
      adapter: { type: "lora", r: 2, lora_alpha: 4, target_modules: ["fc1", "fc2"] },
      data: { train: { x: rowsOf(8, 10, 5), y: rowsOf(8, 2, 6) } },
    } as TrainRequest));
  });

  it("a Hub BERT for sequence classification (token types, attention, pooler)", async () => {
    const data = tokenData(8, 6, 30, 3, 9);
    expectClose(await norms({
      model: {
        huggingface: {
          task: "sequence-classification",
          config: {
            architectures: ["BertForSequenceClassification"], model_type: "bert", vocab_size: 30, hidden_size: 8, num_hidden_layers: 1,
            num_attention_heads: 2, intermediate_size: 16, hidden_act: "gelu", hidden_dropout_prob: 0, attention_probs_dropout_prob: 0,
            max_position_embeddings: 8, type_vocab_size: 2, initializer_range: 0.2, layer_norm_eps: 1e-12, num_labels: 3,
          },
        },
      },
      data: { train: { ...data, token_type_ids: data.input_ids.map((r) => r.map((_, t) => (t >= 3 ? 1 : 0))) } },
      training: { loss: { type: "cross_entropy" } },
      privacy: { type: "dp-sgd", max_grad_norm: 1, noise_multiplier: 1 },
    } as TrainRequest));
  });
});

describe("SampleNorms: a tied parameter's per-sample norm sums its uses before squaring", () => {
  /**
   * Uses of one weight W [V, D] with random factors: linears (y = x·Wᵀ over T positions, dW_i =
   * Σ_t dy_t x_tᵀ) and embeddings (dW_i[id_t] += dy_t, not at padding). The per-sample gradients
   * are formed outright, summed over the uses, and squared; SampleNorms must give that.
   */
  function check(uses: ("linear" | "embedding")[], padding = -1) {
    const rand = lcg(uses.length * 31 + (padding + 2)); // uniform in (-1, 1)
    const [V, D, rows] = [7, 5, 3];
    const buffers = new Map<number, Float32Array>();
    const put = (a: Float32Array) => {
      const ptr = 16 * (buffers.size + 1);
      buffers.set(ptr, a);
      return ptr;
    };
    const view = { f32: (ptr: number, length: number) => buffers.get(ptr)!.subarray(0, length) };
    const expected = Array.from({ length: rows }, () => new Float64Array(V * D));
    const norms = new SampleNorms(new Set([0]));
    const out = new Float64Array(rows);
    uses.forEach((kind, u) => {
      const T = 2 + u; // uses of different lengths
      if (kind === "linear") {
        const x = Float32Array.from({ length: rows * T * D }, () => rand() - 0.5);
        const dy = Float32Array.from({ length: rows * T * V }, () => rand() - 0.5);
        const xPtr = put(x);
        const op = { kind: "linear", weight: 0, bias: -1, in: D, out: V, tokens: T, inputs: [1] } as unknown as Op;
        const c = { value: () => xPtr, grad: (i: number) => (i === 0 ? 1 : 0) } as unknown as KernelOpContext;
        norms.add(op, c, view, rows, [put(dy)], out);
        for (let i = 0; i < rows; i++)
          for (let t = 0; t < T; t++)
            for (let o = 0; o < V; o++) for (let j = 0; j < D; j++) expected[i]![o * D + j]! += dy[(i * T + t) * V + o]! * x[(i * T + t) * D + j]!;
      } else {
        const ids = Float32Array.from({ length: rows * T }, () => Math.floor(((rand() + 1) / 2) * 3)); // few ids: repeats, the padding among them
        const dy = Float32Array.from({ length: rows * T * D }, () => rand() - 0.5);
        const idsPtr = put(ids);
        const op = { kind: "embedding", weight: 0, tokens: T, dim: D, paddingIdx: padding, inputs: [1] } as unknown as Op;
        const c = { value: () => idsPtr, grad: (i: number) => (i === 0 ? 1 : 0) } as unknown as KernelOpContext;
        norms.add(op, c, view, rows, [put(dy)], out);
        for (let i = 0; i < rows; i++)
          for (let t = 0; t < T; t++) {
            const id = ids[i * T + t]!;
            if (id === padding) continue;
            for (let j = 0; j < D; j++) expected[i]![id * D + j]! += dy[(i * T + t) * D + j]!;
          }
      }
    });
    expect(out.every((v) => v === 0)).toBe(true); // nothing before the pass is over
    norms.finish(rows, out);
    for (let i = 0; i < rows; i++) {
      const exact = expected[i]!.reduce((s, g) => s + g * g, 0);
      expect(Math.abs(out[i]! - exact)).toBeLessThanOrEqual(1e-9 * exact);
    }
  }

  it("linear + embedding (a tied lm_head), with and without padding", () => {
    check(["linear", "embedding"]);
    check(["embedding", "linear"], 0);
  });
  it("two linears, two embeddings, and three uses", () => {
    check(["linear", "linear"]);
    check(["embedding", "embedding"], 1);
    check(["embedding", "linear", "linear"], 2);
  });
  it("tiedParameters finds a GPT-2's wte and nothing in an untied model", () => {
    const gpt2 = prepareRun({
      model: { huggingface: { task: "causal-lm", config: { model_type: "gpt2", architectures: ["GPT2LMHeadModel"], vocab_size: 16, n_positions: 8, n_embd: 8, n_layer: 1, n_head: 2 } } },
      data: { train: { input_ids: [[1, 2, 3, 4]] } },
    } as unknown as TrainRequest);
    expect([...tiedParameters(gpt2.model)].map((i) => gpt2.model.state[i]!.name)).toEqual(["transformer.wte.weight"]);
    const frozen = prepareRun({ ...({ model: gpt2.request.model, data: { train: { input_ids: [[1, 2, 3, 4]] } } } as unknown as TrainRequest), trainable: ["transformer.h"] } as TrainRequest);
    expect(tiedParameters(frozen.model).size).toBe(0);
  });
});
