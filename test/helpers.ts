/** Shared fixtures for tests: small seeded datasets and requests. */
import type { ExactTrainRequest as TrainRequest } from "../src/engine/train.js";

/** A request whose training data are inline feature rows (what seedRequest and classifierRequest build). */
export type RowsRequest = TrainRequest & { data: { train: { x: number[][]; y: (number | number[])[] } } };

/** A deterministic uniform(-1, 1) generator (LCG) for test data. */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
}

/** Rows of `features` uniform(-1,1) values and a linear-ish regression target. */
export function regressionData(rows: number, features = 10, seed = 12345) {
  const rand = lcg(seed);
  const x = Array.from({ length: rows }, () => Array.from({ length: features }, rand));
  const y = x.map((r) => r.reduce((a, v, i) => a + v * (i % 3 === 0 ? 0.5 : -0.25), 0.1));
  return { x, y };
}

/** Three-class data: the class is the argmax of three fixed projections. */
export function classificationData(rows: number, features = 4, seed = 7) {
  const rand = lcg(seed);
  const x = Array.from({ length: rows }, () => Array.from({ length: features }, rand));
  const y = x.map((r) => {
    const scores = [r[0]! + r[1]!, r[2]! - r[0]!, r[3]! - r[1]!];
    return scores.indexOf(Math.max(...scores));
  });
  return { x, y };
}

/** The SPEC seed example: Linear(10,10)-ReLU-Linear(10,1), MSE, Adam 1e-3, batch 32. */
export function seedRequest(rows = 1000, overrides: Partial<TrainRequest> = {}): RowsRequest {
  return {
    model: {
      layers: [
        { type: "linear", name: "fc1", in_features: 10, out_features: 10 },
        { type: "relu" },
        { type: "linear", name: "fc2", in_features: 10, out_features: 1 },
      ],
    },
    data: { train: regressionData(rows) },
    training: { epochs: 20, batch_size: 32, optimizer: { type: "adam", lr: 1e-3 }, loss: { type: "mse" } },
    ...overrides,
  } as RowsRequest;
}

/** A 4-16-3 classifier request with cross-entropy. */
export function classifierRequest(rows = 120, training: TrainRequest["training"] = {}): RowsRequest {
  return {
    model: {
      layers: [
        { type: "linear", name: "fc1", in_features: 4, out_features: 16 },
        { type: "relu" },
        { type: "linear", name: "fc2", in_features: 16, out_features: 3 },
      ],
    },
    data: { train: classificationData(rows) },
    training: { epochs: 10, batch_size: 16, loss: { type: "cross_entropy" }, optimizer: { type: "adam", lr: 1e-2 }, ...training },
  };
}

/**
 * Token rows right-padded to T with id 0: lengths in [1, T], ids in [1, vocab), the attention
 * mask, and the label (first id) mod classes.
 */
export function tokenData(rows: number, T: number, vocab: number, classes: number, seed = 1) {
  const rand = lcg(seed);
  const below = (n: number) => Math.floor(((rand() + 1) / 2) * n);
  const input_ids: number[][] = [];
  const attention_mask: number[][] = [];
  const y: number[] = [];
  for (let r = 0; r < rows; r++) {
    const length = 1 + below(T);
    const ids = Array.from({ length: T }, (_, t) => (t < length ? 1 + below(vocab - 1) : 0));
    input_ids.push(ids);
    attention_mask.push(ids.map((_, t) => (t < length ? 1 : 0)));
    y.push(ids[0]! % classes);
  }
  return { input_ids, attention_mask, y };
}

/** embedding(20, 8, padding_idx 0) + pool(mode) + linear(8, 3) over tokenData(48, 6, 20, 3), cross-entropy. */
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

/**
 * A sync job that trains for seconds in the Worker: 64 -> 256 -> 10 (Adam) on 2,000 seeded rows,
 * batch 32, `epochs` epochs (about 13 ms of the default cost model an epoch).
 *
 * @example
 * ```ts
 * await app.request("/v1/fine-tunes", json(slowSyncJob(600)));
 * ```
 */
export function slowSyncJob(epochs: number) {
  const rand = lcg(5);
  const x = Array.from({ length: 2000 }, () => Array.from({ length: 64 }, () => Math.round(rand() * 256) / 256));
  const y = x.map((r) => (r[0]! > 0.5 ? 1 : 0) + (r[1]! > 0.5 ? 2 : 0));
  return {
    mode: "sync",
    model: { layers: [{ type: "linear", in_features: 64, out_features: 256 }, { type: "relu" }, { type: "linear", in_features: 256, out_features: 10 }] },
    data: { train: { x, y } },
    training: { epochs, batch_size: 32, loss: { type: "cross_entropy" }, optimizer: { type: "adam", lr: 1e-3 } },
  };
}
