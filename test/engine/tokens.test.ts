/**
 * Token models end to end: token data (inline, JSONL, CSV) through validation, the embedding,
 * position_embedding and pool layers, per-token targets, and the paths the mask travels
 * (shuffling, validation_split, async run inputs; threads: the tokens parity group in
 * threads.test.ts).
 */
import { rejection } from "./refusals.js";
import { describe, expect, it } from "vitest";
import { train } from "../../src/node/index.js";
import { tokenClassifier, tokenData } from "../helpers.js";
import { prepareRun } from "../../src/engine/train.js";
import type { TrainRequest } from "../../src/engine/train.js";
import { decodeBase64 } from "../../src/formats/base64.js";
import { parseSafetensors, readTensorF32 } from "../../src/formats/safetensors.js";

/** The tensors of a result's weights. */
function tensorsOf(weights: string): Map<string, Float32Array> {
  const file = parseSafetensors(decodeBase64(weights));
  return new Map([...file.tensors.keys()].map((name) => [name, readTensorF32(file, name)]));
}

/** Largest |a - b| / (1e-6 + 1e-5 |b|) over every tensor (the kernels are not bit-identical: GEMM sums in another order). */
function worst(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let w = 0;
  for (const [name, t] of b) {
    const u = a.get(name)!;
    for (let i = 0; i < t.length; i++) w = Math.max(w, Math.abs(u[i]! - t[i]!) / (1e-6 + 1e-5 * Math.abs(t[i]!)));
  }
  return w;
}

describe("a token classifier trains", () => {
  for (const mode of ["mean", "max", "cls", "last"]) {
    it(`embedding + pool(${mode}) + linear: the same weights on WASM and the TypeScript twins`, async () => {
      const wasm = await train(tokenClassifier(mode), { kernel: "wasm" });
      const ref = await train(tokenClassifier(mode), { kernel: "js-reference" });
      expect(wasm.status).toBe("succeeded");
      expect(wasm.metrics.history.at(-1)!.train_loss).toBeLessThan(wasm.metrics.history[0]!.train_loss);
      expect(worst(tensorsOf(wasm.weights), tensorsOf(ref.weights))).toBeLessThanOrEqual(1);
    });
  }
});

// ------------------------------------------------------------------ refusals: 422 naming the field


const layers = (...l: unknown[]) => ({ layers: l });
const emb = (extra: Record<string, unknown> = {}) => ({ type: "embedding", num_embeddings: 20, embedding_dim: 8, ...extra });
const head = { type: "linear", in_features: 8, out_features: 3 };
const withTrain = (edit: (d: ReturnType<typeof tokenData>) => void) => {
  const d = tokenData(48, 6, 20, 3);
  edit(d);
  return tokenClassifier("mean", { data: { train: d } });
};

describe("token requests are refused with the field and both shapes", () => {
  const cases: [string, () => unknown, string, RegExp][] = [
    ["an id outside the embedding's vocabulary", () => withTrain((d) => (d.input_ids[12]![2] = 20)), "data.train.input_ids[12]", /token id 20 \(position 2\) is outside the vocabulary of model\.layers\[0\]: num_embeddings is 20, so ids are 0\.\.19/],
    ["an id outside the vocabulary in the validation rows", () => ({ ...tokenClassifier(), data: { train: tokenData(16, 6, 20, 3), validation: { ...tokenData(8, 6, 20, 3), input_ids: tokenData(8, 6, 20, 3).input_ids.map((r, i) => (i === 5 ? r.map(() => 25) : r)) } } }), "data.validation.input_ids[5]", /token id 25/],
    ["an id that is not an integer", () => withTrain((d) => (d.input_ids[3]![0] = 1.5)), "data.train.input_ids[3][0]", /not an integer/],
    ["a row whose mask is all zeros", () => withTrain((d) => d.attention_mask[7]!.fill(0)), "data.train.attention_mask[7]", /no token with mask 1/],
    ["a mask value other than 0/1", () => withTrain((d) => (d.attention_mask[2]![1] = 0.5)), "data.train.attention_mask[2][1]", /1 \(a token\) or 0 \(padding\)/],
    ["ragged rows", () => withTrain((d) => d.input_ids[4]!.push(1)), "data.train.input_ids[4]", /has 7 token ids, but input_ids\[0\] has 6/],
    ["a padding_idx outside the vocabulary", () => tokenClassifier("mean", { model: layers(emb({ padding_idx: 20 }), { type: "pool" }, head) }), "model.layers[0].padding_idx", /-20 <= padding_idx < 20/],
    ["an embedding over feature rows", () => ({ ...tokenClassifier(), data: { train: { x: [[1, 2]], y: [0] } } }), "model.layers[0].type", /takes token ids/],
    ["a linear layer over token ids", () => tokenClassifier("mean", { model: layers({ type: "linear", in_features: 6, out_features: 3 }) }), "model.layers[0].type", /needs features, but its input is token ids \[6\]/],
    ["more tokens than position_embedding has positions", () => tokenClassifier("mean", { model: layers(emb(), { type: "position_embedding", num_embeddings: 4, embedding_dim: 8 }, { type: "pool" }, head) }), "model.layers[1].num_embeddings", /is 4 positions but the input \[6, 8\] has 6 tokens/],
    ["a position_embedding of another width", () => tokenClassifier("mean", { model: layers(emb(), { type: "position_embedding", num_embeddings: 8, embedding_dim: 4 }, { type: "pool" }, head) }), "model.layers[1].embedding_dim", /is 4 but the input \[6, 8\] has 8 features per token/],
    ["a pool over something that is not a sequence", () => tokenClassifier("mean", { model: layers(emb(), { type: "pool" }, { type: "pool" }, head) }), "model.layers[2]", /pools a sequence \[tokens, features\], but its input is \[8\]/],
    ["a shaped input for token ids", () => tokenClassifier("mean", { model: { input: { shape: [2, 3] }, ...layers(emb(), { type: "pool" }, head) } }), "model.input.shape", /token ids are read as one sequence/],
    ["validation rows of another length", () => ({ ...tokenClassifier(), data: { train: tokenData(16, 6, 20, 3), validation: tokenData(8, 5, 20, 3) } }), "data.validation.input_ids", /5 token ids but the training rows have 6 token ids/],
    ["validation rows without the mask the training rows have", () => ({ ...tokenClassifier(), data: { train: tokenData(16, 6, 20, 3), validation: { input_ids: tokenData(8, 6, 20, 3).input_ids, y: tokenData(8, 6, 20, 3).y } } }), "data.validation.attention_mask", /is missing but the training data has/],
    ["attention over fewer tokens than the mask covers", () => tokenClassifier("mean", { model: layers(emb(), { type: "conv1d", in_channels: 6, out_channels: 3, kernel_size: 1 }, { type: "multihead_attention", embed_dim: 8, num_heads: 2 }, { type: "flatten" }, { type: "linear", in_features: 24, out_features: 3 }) }), "model.layers[2]", /attends over 3 tokens \(input \[3, 8\]\) but the attention mask has 6 per row/],
    ["token rows with x", () => ({ ...tokenClassifier(), data: { train: { ...tokenData(8, 6, 20, 3), x: [[1]] } } }), "data.train.x", /input_ids instead of x/],
  ];
  for (const [what, request, path, message] of cases) {
    it(what, async () => {
      const e = await rejection(request());
      expect(e.status).toBe(422);
      const issue = e.errors.find((i) => i.path === path);
      expect(issue, JSON.stringify(e.errors)).toBeDefined();
      expect(issue!.message).toMatch(message);
    });
  }
});

// ------------------------------------------------------------------ per-token targets

/** A tagger: embedding + linear per token ([6, 4] output), y a label per token with -100 on padding. */
function tagger(overrides: Partial<TrainRequest> = {}): TrainRequest {
  const d = tokenData(40, 6, 20, 4, 3);
  const y = d.input_ids.map((row, r) => row.map((id, t) => (d.attention_mask[r]![t] ? id % 4 : -100)));
  return {
    model: layers(emb({ name: "emb", padding_idx: 0 }), { type: "linear", name: "tag", in_features: 8, out_features: 4 }),
    data: { train: { ...d, y }, validation_split: 0.25 },
    training: { epochs: 4, batch_size: 8, optimizer: { type: "adam", lr: 0.05 }, loss: { type: "cross_entropy" } },
    ...overrides,
  } as TrainRequest;
}

describe("per-token targets", () => {
  it("a [T, C] output trains on every labelled token; val_accuracy counts only labelled tokens", async () => {
    const result = await train(tagger());
    expect(result.status).toBe("succeeded");
    const last = result.metrics.history.at(-1)!;
    expect(last.val_accuracy).toBeGreaterThan(0.5);
    // recompute it from the final weights: logits[t] = tag.W emb[id_t] + tag.b, argmax against the
    // labels of the validation rows, counting only tokens whose label is not -100
    const prepared = prepareRun(tagger());
    const w = tensorsOf(result.weights);
    const E = w.get("emb.weight")!, W = w.get("tag.weight")!, b = w.get("tag.bias")!;
    const { x, y, rows } = prepared.validation!;
    let correct = 0, labelled = 0;
    for (let i = 0; i < rows * 6; i++) {
      if (y[i] === -100) continue;
      const logits = [0, 1, 2, 3].map((c) => b[c]! + [...Array(8).keys()].reduce((s, j) => s + W[c * 8 + j]! * E[x[i]! * 8 + j]!, 0));
      labelled++;
      if (logits.indexOf(Math.max(...logits)) === y[i]) correct++;
    }
    expect(labelled).toBeLessThan(rows * 6); // padding was ignored, not counted as wrong or right
    expect(last.val_accuracy).toBe(correct / labelled);
  });

  it("per-token labels for a pooled model, and one label per row for a per-token model, are explained", async () => {
    const pooled = await rejection({ ...tagger(), model: layers(emb(), { type: "pool" }, { type: "linear", in_features: 8, out_features: 4 }) });
    expect(pooled.errors[0]).toMatchObject({ path: "data.train.y", message: expect.stringMatching(/cross_entropy needs one class index per row, but the rows have 6 target values; these look like per-token labels \(6, one per token\): those need a model that outputs one prediction per token, \[tokens, classes\], without a pool/) });
    const perToken = await rejection({ ...tagger(), data: { train: tokenData(16, 6, 20, 4) } });
    expect(perToken.errors[0]).toMatchObject({
      path: "data.train.y",
      message: expect.stringMatching(/the model outputs \[6, 4\] per sample \(one prediction per token\), so each row needs 6 class indices \(-100 to ignore a token\).*pool the tokens first/),
    });
  });

  it("a per-token label out of range names the row and the token", async () => {
    const request = tagger();
    (request.data.train as unknown as { y: number[][] }).y[3]![1] = 9;
    const e = await rejection(request);
    expect(e.errors[0]).toMatchObject({ path: "data.train.y[3][1]", message: "row 3: label 9 is out of range for 4 classes (0..3) (or ignore_index -100)" });
  });
});

// ------------------------------------------------------------------ the mask on every path

/** The same rows with other ids on the padding: the mask hides them, so nothing may change. */
function withPaddingIds(d: ReturnType<typeof tokenData>) {
  return { ...d, input_ids: d.input_ids.map((row, r) => row.map((id, t) => (d.attention_mask[r]![t] ? id : 1 + ((r * 7 + t * 3) % 19)))) };
}

describe("the attention mask travels with its rows", () => {
  const run = (d: ReturnType<typeof tokenData>, options: Parameters<typeof train>[1] = {}) =>
    train(tokenClassifier("mean", { data: { train: d, validation_split: 0.25 }, training: { epochs: 3, batch_size: 8, shuffle: true, seed: 9, optimizer: { type: "adam", lr: 0.01 }, loss: { type: "cross_entropy" } } }), options);

  for (const kernel of ["wasm", "js-reference"] as const) {
    it(`through shuffling and validation_split (${kernel}): ids under the padding change nothing`, async () => {
      const d = tokenData(48, 6, 20, 3, 5);
      const [a, b] = [await run(d, { kernel }), await run(withPaddingIds(d), { kernel })];
      expect(a.metrics.history).toEqual(b.metrics.history);
      expect(a.weights).toBe(b.weights);
      // and the padding ids do reach the model: without the mask they change the result
      const noMask = (x: ReturnType<typeof tokenData>) => ({ input_ids: x.input_ids, y: x.y }) as ReturnType<typeof tokenData>;
      const [c, e] = [await run(noMask(d), { kernel }), await run(noMask(withPaddingIds(d)), { kernel })];
      expect(c.weights).not.toBe(e.weights);
    });
  }

  it("through an async run input (safetensors with @train.input_ids and @train.attention_mask)", async () => {
    const { prepareRun } = await import("../../src/engine/train.js");
    const { encodeRunInput, decodeRunInput } = await import("../../src/jobs/run-input.js");
    const request = tokenClassifier("max", { data: { train: tokenData(40, 6, 20, 3), validation_split: 0.2 } });
    const prepared = prepareRun(request);
    const decoded = decodeRunInput(encodeRunInput(prepared));
    for (const part of ["train", "validation"] as const) {
      expect(decoded[part]!.ids).toBe(true);
      expect(decoded[part]!.x).toEqual(prepared[part]!.x);
      expect(decoded[part]!.mask).toEqual(prepared[part]!.mask);
      expect(decoded[part]!.y).toEqual(prepared[part]!.y);
    }
    expect(decoded.model.vocabulary).toEqual({ size: 20, path: "model.layers[0]" });
    const { loadNodeRuntime } = await import("../../src/node/index.js");
    const { runPrepared } = await import("../../src/engine/train.js");
    const runtime = await loadNodeRuntime();
    const [direct, stored] = [await runPrepared(runtime, prepared), await runPrepared(runtime, decoded)];
    expect(stored.weights).toBe(direct.weights);
  });
});
