/**
 * The built-in demos: data generated in the page with a seeded PRNG (the same demo sends the
 * same rows every time), a model and the training options that suit it.
 */
import type { TrainingFields } from "./form.js";

/** Rows of numbers and one target per row, as `data.train` takes them inline. */
export interface InlineRows {
  x: number[][];
  y: number[];
}

/** A layer of the model JSON (the API validates it; the page only writes and shows it). */
export type LayerSpec = Record<string, unknown> & { type: string };

/** The model JSON: layers in nn.Sequential order and an optional input shape. */
export interface ModelSpec {
  input?: { shape: number[] };
  layers: LayerSpec[];
}

/**
 * One demo: its data, a summary line, its model and the training fields it sets (the rest of the
 * form takes the defaults).
 *
 * @example
 * ```ts
 * const rows = DEMOS.xor.data(); // { x: [[0, 0], [0, 1], [1, 0], [1, 1]], y: [0, 1, 1, 0] }
 * ```
 */
export interface Demo {
  data(): InlineRows;
  summary: string;
  model: ModelSpec;
  training: Partial<TrainingFields>;
}

/** Names of the demos, in the order the Dataset menu lists them. */
export type DemoName = "moons" | "xor" | "sine";

/**
 * mulberry32: a small seeded PRNG (uniform in [0, 1)).
 *
 * @example
 * ```ts
 * const rand = mulberry32(7);
 * rand(); // the same number on every run
 * ```
 */
export function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A standard normal sample (Box-Muller). */
function gauss(rand: () => number): number {
  const u = 1 - rand();
  const v = rand();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

const round4 = (v: number) => Math.round(v * 1e4) / 1e4;

/** Two interleaved half circles (scikit-learn's make_moons), classes alternating 0, 1. */
function moons(n: number, noise: number, seed: number): InlineRows {
  const rand = mulberry32(seed);
  const x: number[][] = [];
  const y: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = i % 2;
    const t = Math.PI * rand();
    const px = c === 0 ? Math.cos(t) : 1 - Math.cos(t);
    const py = c === 0 ? Math.sin(t) : 0.5 - Math.sin(t);
    x.push([round4(px + noise * gauss(rand)), round4(py + noise * gauss(rand))]);
    y.push(c);
  }
  return { x, y };
}

/** y = sin(x) + noise on [-pi, pi]. */
function sine(n: number, noise: number, seed: number): InlineRows {
  const rand = mulberry32(seed);
  const x: number[][] = [];
  const y: number[] = [];
  for (let i = 0; i < n; i++) {
    const v = (rand() * 2 - 1) * Math.PI;
    x.push([round4(v)]);
    y.push(round4(Math.sin(v) + noise * gauss(rand)));
  }
  return { x, y };
}

/**
 * A linear layer's JSON.
 *
 * @example
 * ```ts
 * linear("fc1", 2, 32); // { type: "linear", name: "fc1", in_features: 2, out_features: 32 }
 * ```
 */
export function linear(name: string, inFeatures: number, outFeatures: number): LayerSpec {
  return { type: "linear", name, in_features: inFeatures, out_features: outFeatures };
}

/** The demos by name. */
export const DEMOS: Record<DemoName, Demo> = {
  moons: {
    data: () => moons(300, 0.15, 7),
    summary: "300 rows, 2 features, classes 0 and 1 (generated in the page, seed 7)",
    model: { layers: [linear("fc1", 2, 32), { type: "relu" }, linear("fc2", 32, 32), { type: "relu" }, linear("fc3", 32, 2)] },
    training: { loss: "cross_entropy", optimizer: "adam", lr: "0.01", schedule: "cosine", batch: "32", epochs: "30", split: "0.2" },
  },
  xor: {
    data: () => ({ x: [[0, 0], [0, 1], [1, 0], [1, 1]], y: [0, 1, 1, 0] }),
    summary: "4 rows, 2 features, targets 0/1 (no validation: too few rows)",
    model: { layers: [linear("fc1", 2, 8), { type: "tanh" }, linear("fc2", 8, 1)] },
    training: { loss: "bce_with_logits", optimizer: "adam", lr: "0.05", schedule: "constant", batch: "4", epochs: "150", split: "0" },
  },
  sine: {
    data: () => sine(256, 0.05, 3),
    summary: "256 rows, y = sin(x) + noise on [-pi, pi] (generated in the page, seed 3)",
    model: { layers: [linear("fc1", 1, 32), { type: "tanh" }, linear("fc2", 32, 32), { type: "tanh" }, linear("fc3", 32, 1)] },
    training: { loss: "mse", optimizer: "adam", lr: "0.01", schedule: "constant", batch: "32", epochs: "60", split: "0.2" },
  },
};

/**
 * Whether a Dataset menu value is a demo (the other value is "upload").
 *
 * @example
 * ```ts
 * isDemo("moons"); // true
 * isDemo("upload"); // false
 * ```
 */
export function isDemo(name: string): name is DemoName {
  return Object.hasOwn(DEMOS, name);
}
