/**
 * Token models end to end: token data (inline, JSONL, CSV) through validation, the embedding,
 * position_embedding and pool layers, per-token targets, and the paths the mask travels
 * (shuffling, validation_split, threads, async run inputs).
 */
import { describe, expect, it } from "vitest";
import { train } from "../../src/node/index.js";
import type { TrainRequest } from "../../src/engine/train.js";
import { decodeBase64 } from "../../src/formats/base64.js";
import { parseSafetensors, readTensorF32 } from "../../src/formats/safetensors.js";

/** The tensors of a result's weights. */
export function tensorsOf(weights: string): Map<string, Float32Array> {
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

/** Token rows with right padding: ids in [1, vocab), 0 on padding; label = (first id) mod classes. */
export function tokenData(rows: number, T: number, vocab: number, classes: number, seed = 1) {
  let s = seed;
  const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const input_ids: number[][] = [];
  const attention_mask: number[][] = [];
  const y: number[] = [];
  for (let r = 0; r < rows; r++) {
    const length = 1 + Math.floor(rand() * T);
    const ids = Array.from({ length: T }, (_, t) => (t < length ? 1 + Math.floor(rand() * (vocab - 1)) : 0));
    input_ids.push(ids);
    attention_mask.push(ids.map((_, t) => (t < length ? 1 : 0)));
    y.push(ids[0]! % classes);
  }
  return { input_ids, attention_mask, y };
}

export function tokenClassifier(mode = "mean", overrides: Partial<TrainRequest> = {}): TrainRequest {
  return {
    model: {
      layers: [
        { type: "embedding", name: "emb", num_embeddings: 20, embedding_dim: 8, padding_idx: 0 },
        { type: "pool", mode },
        { type: "linear", name: "head", in_features: 8, out_features: 3 },
      ],
    },
    data: { train: tokenData(48, 6, 20, 3) },
    training: { epochs: 3, batch_size: 8, optimizer: { type: "adam", lr: 0.01 }, loss: { type: "cross_entropy" } },
    ...overrides,
  } as TrainRequest;
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
