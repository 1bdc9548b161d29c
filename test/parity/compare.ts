/**
 * Replays a PyTorch parity case through a train() function and measures the worst error
 * against SPEC section 4's tolerance |a - b| <= 1e-5 + 1e-4 |b|. Runtime-agnostic: used by
 * the Node parity test and by the workerd parity test (relaxed-SIMD build).
 */
import { decodeBase64 } from "../../src/formats/base64.js";
import { parseSafetensors, readTensorF32, writeSafetensors } from "../../src/formats/safetensors.js";
import type { TrainRequest } from "../../src/engine/train.js";
import type { FineTuneResult } from "../../src/schema/result.js";

export interface Tensor {
  shape: number[];
  data: number[];
}
export interface ParityCase {
  name: string;
  description: string;
  request: Record<string, unknown>;
  initial_weights: Record<string, Tensor>;
  expected: {
    weights: Record<string, Tensor>;
    history: { epoch: number; train_loss: number; val_loss?: number; val_accuracy?: number; lr: number }[];
    steps: number;
    best_epoch: number | null;
    /**
     * Hugging Face cases (`request.model.huggingface`) only: the plain-PyTorch reference's logits
     * (test/parity/huggingface.py) for the expected weights, in float32, of the validation rows or,
     * without validation data, of the first 4 training rows; `shape` is [rows, num_labels] or
     * [rows, T, vocab_size], `data` row-major.
     */
    logits?: { rows: "validation" | "train[:4]"; shape: number[]; data: number[] };
  };
}

export const ATOL = 1e-5;
export const RTOL = 1e-4;
export const GROUPS = ["optimizers", "losses", "schedules", "training", "graph", "attention", "norm", "tokens", "conv", "transformer", "huggingface"] as const;
/**
 * DP-SGD cases (fixtures/privacy.json, test/parity/privacy.py; request `privacy`, issue 14), in the
 * same format. Not in GROUPS: a private run is on one thread, which the GROUPS loop of
 * test/engine/threads.test.ts expects otherwise; test/engine/privacy.test.ts replays them on WASM
 * and the TypeScript twins, test/webgpu/privacy.test.ts on WebGPU, test/worker/parity.test.ts in
 * workerd.
 */
export const PRIVACY_GROUPS = ["privacy"] as const;

/** Largest |a-b| / (atol + rtol |b|) over a list: <= 1 passes. */
export function worstRatio(actual: ArrayLike<number>, expected: ArrayLike<number>): { ratio: number; index: number; abs: number } {
  let worst = { ratio: 0, index: -1, abs: 0 };
  for (let i = 0; i < expected.length; i++) {
    const abs = Math.abs(actual[i]! - expected[i]!);
    const ratio = Number.isNaN(abs) ? Infinity : abs / (ATOL + RTOL * Math.abs(expected[i]!));
    if (ratio > worst.ratio) worst = { ratio, index: i, abs };
  }
  return worst;
}

/** Runs one case and reports the worst error per tensor and per history metric. */
export async function replay(c: ParityCase, train: (request: TrainRequest) => Promise<FineTuneResult>) {
  const weights = writeSafetensors(
    Object.entries(c.initial_weights).map(([name, t]) => ({ name, shape: t.shape, data: Float32Array.from(t.data) })),
  );
  const result = await train({ ...(c.request as object), weights } as TrainRequest);
  const file = parseSafetensors(decodeBase64(result.weights));
  const report: string[] = [];
  let worst = 0;
  for (const [name, t] of Object.entries(c.expected.weights)) {
    // integers: num_batches_tracked comes back as I64, as PyTorch stores it
    const w = worstRatio(readTensorF32(file, name, "weights", { integers: true }), t.data);
    worst = Math.max(worst, w.ratio);
    report.push(`${name} ${w.abs.toExponential(2)} (${(w.ratio * 100).toFixed(1)}%)`);
  }
  for (const key of ["train_loss", "val_loss", "val_accuracy", "lr"] as const) {
    const expected = c.expected.history.map((h) => h[key]);
    if (expected.every((v) => v === undefined)) continue;
    const actual = result.metrics.history.map((h) => h[key] ?? NaN);
    const w = worstRatio(actual, expected as number[]);
    worst = Math.max(worst, w.ratio);
    report.push(`${key} ${w.abs.toExponential(2)} (${(w.ratio * 100).toFixed(1)}%)`);
  }
  return { result, worst, report };
}

/**
 * LoRA adapter cases (fixtures/lora.json, issue 13), generated with test/parity/lora.py (PEFT v0.20.0's
 * LoRA in plain PyTorch). Not in GROUPS: `parity.test.ts` replays GROUPS through `replay`, which the
 * adapter cases do not fit (they expect an adapter state and a merged model, not `weights`), and the
 * engine does not take `adapter` yet. A LoRA parity test iterates LORA_GROUPS with `replayLora`.
 */
export const LORA_GROUPS = ["lora"] as const;

export interface LoraParityCase {
  name: string;
  description: string;
  /** An API request body without `weights`, `adapter_weights` and `output`; with `adapter`. */
  request: Record<string, unknown>;
  initial_weights: Record<string, Tensor>;
  /** The starting adapter, in adapter_model.safetensors names (base_model.model.<module>.lora_A.weight, ...). */
  initial_adapter_weights?: Record<string, Tensor>;
  expected: {
    /** `output.format: "peft"`: adapter_model.safetensors' tensors after training, PEFT names. */
    adapter: Record<string, Tensor>;
    /** `result.adapter_config`: adapter_config.json as PEFT's save_pretrained writes it (target_modules sorted; compare it as a set). */
    adapter_config: Record<string, unknown>;
    /** `output.format: "merged"`: the base model's state_dict with W0 + s B A merged in, base names. */
    merged: Record<string, Tensor>;
    history: { epoch: number; train_loss: number; val_loss?: number; val_accuracy?: number; lr: number }[];
    steps: number;
    best_epoch: number | null;
  };
  meta: Record<string, unknown>;
}

/**
 * Runs one LoRA case with `output.format` `peft` or `merged` and reports the worst error over the
 * expected tensors (adapter or merged) and the history; `missing` / `extra` list tensor names that
 * differ from the expected set (they must be empty).
 */
export async function replayLora(
  c: LoraParityCase,
  train: (request: TrainRequest) => Promise<FineTuneResult>,
  format: "peft" | "merged",
) {
  const file = (m: Record<string, Tensor>) =>
    writeSafetensors(Object.entries(m).map(([name, t]) => ({ name, shape: t.shape, data: Float32Array.from(t.data) })));
  const request: Record<string, unknown> = { ...c.request, weights: file(c.initial_weights), output: { format } };
  if (c.initial_adapter_weights) request.adapter_weights = file(c.initial_adapter_weights);
  const result = await train(request as unknown as TrainRequest);
  const parsed = parseSafetensors(decodeBase64(result.weights));
  const expected = format === "peft" ? c.expected.adapter : c.expected.merged;
  const missing = Object.keys(expected).filter((name) => !parsed.tensors.has(name));
  const extra = [...parsed.tensors.keys()].filter((name) => !(name in expected));
  const report: string[] = [];
  let worst = 0;
  for (const [name, t] of Object.entries(expected)) {
    if (!parsed.tensors.has(name)) continue;
    const w = worstRatio(readTensorF32(parsed, name, "weights"), t.data);
    worst = Math.max(worst, w.ratio);
    report.push(`${name} ${w.abs.toExponential(2)} (${(w.ratio * 100).toFixed(1)}%)`);
  }
  for (const key of ["train_loss", "val_loss", "val_accuracy", "lr"] as const) {
    const want = c.expected.history.map((h) => h[key]);
    if (want.every((v) => v === undefined)) continue;
    const actual = result.metrics.history.map((h) => h[key] ?? NaN);
    const w = worstRatio(actual, want as number[]);
    worst = Math.max(worst, w.ratio);
    report.push(`${key} ${w.abs.toExponential(2)} (${(w.ratio * 100).toFixed(1)}%)`);
  }
  return { result, worst, report, missing, extra, metadata: parsed.metadata };
}
