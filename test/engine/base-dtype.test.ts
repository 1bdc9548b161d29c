/**
 * `model.base_dtype`: frozen parameters held in float16 / bfloat16 on the kernel core. A run
 * with a 16-bit base is the float32 run whose frozen weights were rounded to that dtype first
 * (the kernels read the same f32 values, widened), its result carries the rounded values, and
 * its plan counts 2 bytes per frozen parameter (plus the widening scratch).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { rejection } from "./refusals.js";
import { seedRequest } from "../helpers.js";
import { loadNodeRuntime, train } from "../../src/node/index.js";
import { decodeRunInput, encodeRunInput } from "../../src/jobs/run-input.js";
import { convertWeights } from "../../src/engine/adapters/output.js";
import type { StateValues } from "../../src/engine/state-values.js";
import { prepareRun, runPrepared, runPreparedRaw, type ExactTrainRequest, type TrainRequest } from "../../src/engine/train.js";
import { stateElements, widenElements } from "../../src/engine/model.js";
import { decodeBase64 } from "../../src/formats/base64.js";
import { decodeBf16, decodeF16, encodeBf16, encodeF16 } from "../../src/formats/dtype.js";
import { parseSafetensors, readTensorF32, writeSafetensors } from "../../src/formats/safetensors.js";
import type { FineTuneResult } from "../../src/schema/result.js";

interface HubCase {
  name: string;
  request: { model: { huggingface: { config: Record<string, unknown> } }; data: { train: Record<string, unknown> } };
  initial_weights: Record<string, { shape: number[]; data: number[] }>;
}
const hubCases = (JSON.parse(readFileSync(new URL("../parity/fixtures/huggingface.json", import.meta.url), "utf8")) as { cases: HubCase[] }).cases;

type Dtype = "float16" | "bfloat16";

/** x rounded to the dtype (to nearest even) and back, as torch's x.to(dtype).float(). */
function rounded(x: Float32Array, dtype: Dtype): Float32Array {
  const bits = new Uint16Array(x.length);
  const out = new Float32Array(x.length);
  if (dtype === "float16") (encodeF16(x, bits), decodeF16(bits, out));
  else (encodeBf16(x, bits), decodeBf16(bits, out));
  return out;
}

/** A LoRA run of a Hub fixture; `round` rounds those base tensors to the dtype before the run. */
function hub(name: string, adapter: Record<string, unknown>, extra: Record<string, unknown> = {}, round: { names: ReadonlySet<string>; dtype: Dtype } | null = null): TrainRequest {
  const c = hubCases.find((x) => x.name === name)!;
  const weights = writeSafetensors(Object.entries(c.initial_weights).map(([n, t]) => {
    const data = Float32Array.from(t.data);
    return { name: n, shape: t.shape, data: round?.names.has(n) ? rounded(data, round.dtype) : data };
  }));
  return {
    model: c.request.model,
    data: c.request.data,
    weights,
    adapter: { type: "lora", ...adapter },
    training: { epochs: 3, batch_size: 8, optimizer: { type: "adam", lr: 0.01 }, seed: 2 },
    ...extra,
  } as TrainRequest;
}

function withBase(request: TrainRequest, dtype: Dtype): TrainRequest {
  return { ...request, model: { ...request.model, base_dtype: dtype } } as TrainRequest;
}

function tensorsOf(result: FineTuneResult): Map<string, Float32Array> {
  const file = parseSafetensors(decodeBase64(result.weights));
  return new Map([...file.tensors.keys()].map((n) => [n, readTensorF32(file, n)]));
}

/** The names of the frozen parameters of a request's model. */
function frozenOf(request: TrainRequest): Set<string> {
  return new Set(prepareRun(request).model.state.filter((t) => t.kind === "parameter" && !t.trainable).map((t) => t.name));
}

const CASES = [
  // BERT: frozen embedding tables (read row by row), LayerNorms, Linears; the classifier trains
  { label: "BERT query/value, float16", name: "bert_seqcls_padding", adapter: { r: 2 }, dtype: "float16" },
  // GPT-2: Conv1D (stored transposed) and the lm_head tied to the frozen wte (a Linear over a 16-bit table)
  { label: "GPT-2 c_attn, bfloat16", name: "gpt2_causal_lm", adapter: { r: 2 }, dtype: "bfloat16" },
  // Llama: RMSNorm weights, an untied lm_head
  { label: "Llama q/v, float16", name: "llama_untied", adapter: { r: 2 }, dtype: "float16" },
] as const;

describe("a 16-bit base is the float32 run of the rounded base", () => {
  for (const c of CASES) {
    it(`${c.label}: the same losses and weights, bit for bit; the result holds the rounded base`, async () => {
      const plain = hub(c.name, c.adapter);
      const frozen = frozenOf(plain);
      const file = new Set(Object.keys(hubCases.find((x) => x.name === c.name)!.initial_weights));
      expect(frozen.size).toBeGreaterThan(5);
      for (const n of frozen) expect(file.has(n), n).toBe(true);
      const half = await train(withBase(plain, c.dtype));
      const reference = await train(hub(c.name, c.adapter, {}, { names: frozen, dtype: c.dtype }));
      expect(half.status).toBe("succeeded");
      expect(half.metrics.history.at(-1)!.train_loss).toBeLessThan(half.metrics.history[0]!.train_loss);
      expect(half.metrics.history).toEqual(reference.metrics.history);
      const got = tensorsOf(half), want = tensorsOf(reference), given = tensorsOf(await train({ ...plain, training: { ...plain.training, epochs: 1, optimizer: { type: "sgd", lr: 0 } } } as TrainRequest));
      expect([...got.keys()]).toEqual([...want.keys()]);
      let changed = 0;
      for (const [n, w] of want) {
        expect(got.get(n), n).toEqual(w);
        if (!frozen.has(n)) continue;
        // a frozen tensor comes back as the value given, rounded (LayerNorm's ones and zeros stay as they are)
        expect(w, n).toEqual(rounded(given.get(n)!, c.dtype));
        if (given.get(n)!.some((v, i) => v !== w[i])) changed++;
      }
      expect(changed).toBeGreaterThan(5);
    });
  }

  it("on the TypeScript twins too (kernel js-reference), and with `trainable` freezing a layer list's fc1", async () => {
    const request = seedRequest(96, { trainable: ["fc2"], training: { epochs: 3, batch_size: 16, optimizer: { type: "adam", lr: 0.01 } } } as Partial<ExactTrainRequest>);
    const given = tensorsOf(await train({ ...request, training: { ...request.training, epochs: 1, optimizer: { type: "sgd", lr: 0 } } } as TrainRequest));
    const roundedBase = writeSafetensors([...given].map(([name, data]) => ({ name, shape: name === "fc1.weight" ? [10, 10] : name === "fc2.weight" ? [1, 10] : [data.length], data: name.startsWith("fc1.") ? rounded(data, "float16") : data })));
    for (const kernel of ["wasm", "js-reference"] as const) {
      const half = await train(withBase(request, "float16"), { kernel });
      const reference = await train({ ...request, weights: roundedBase } as TrainRequest, { kernel });
      expect(half.metrics.history, kernel).toEqual(reference.metrics.history);
      expect(tensorsOf(half), kernel).toEqual(tensorsOf(reference));
    }
  });
});

describe("the stored run input of a 16-bit base", () => {
  for (const c of CASES) {
    it(`${c.label}: frozen tensors stored in the base dtype, and the input trains to the same bits`, async () => {
      const request = withBase(hub(c.name, c.adapter), c.dtype);
      const prepared = prepareRun(request);
      const input = encodeRunInput(prepared);
      const file = parseSafetensors(input);
      const frozen = frozenOf(request);
      const half = c.dtype === "float16" ? "F16" : "BF16";
      for (const t of prepared.model.state) {
        const stored = file.tensors.get(t.name) ?? [...file.tensors].find(([n]) => n.startsWith("@adapter.") && n.endsWith(t.name.split(".").slice(-2).join(".")))?.[1];
        if (frozen.has(t.name)) expect(file.tensors.get(t.name)?.dtype, t.name).toBe(half);
        else if (stored) expect(stored.dtype, t.name).not.toBe(half);
      }
      // every frozen float32 value became 2 bytes: the file is smaller by 2 bytes a frozen parameter
      // (less the header's longer dtype names, at most a few bytes a tensor)
      const frozenCount = prepared.model.state.filter((t) => frozen.has(t.name)).reduce((s, t) => s + t.size, 0);
      const asFloat32 = encodeRunInput({ ...prepared, model: { ...prepared.model, baseDtype: "float32" } });
      expect(asFloat32.byteLength - input.byteLength).toBeGreaterThanOrEqual(2 * frozenCount - 8 * prepared.model.state.length);
      const runtime = await loadNodeRuntime();
      const [direct, stored] = [await runPrepared(runtime, prepared), await runPrepared(runtime, decodeRunInput(input))];
      expect(stored.metrics.history).toEqual(direct.metrics.history);
      expect(stored.weights).toBe(direct.weights);
    });

    it(`${c.label}: the stored weights file keeps the frozen base in the base dtype; downloads are float32 as before`, async () => {
      const request = withBase(hub(c.name, c.adapter), c.dtype);
      const prepared = prepareRun(request);
      const frozen = frozenOf(request);
      const { weights } = await runPreparedRaw(await loadNodeRuntime(), prepared);
      const file = parseSafetensors(weights);
      const half = c.dtype === "float16" ? "F16" : "BF16";
      for (const [name, info] of file.tensors) expect(info.dtype, name).toBe(frozen.has(name) ? half : "F32");
      for (const format of ["full", "merged", "peft"] as const) {
        const out = parseSafetensors(convertWeights(weights, format));
        for (const [name, info] of out.tensors) expect(info.dtype, `${format} ${name}`).toBe("F32");
      }
      // what the client gets is the float32 file of the same values
      const full = parseSafetensors(convertWeights(weights, "full"));
      for (const name of frozen) expect(readTensorF32(full, name), name).toEqual(readTensorF32(file, name));
    });
  }
});

describe("a 16-bit checkpoint under a base of its dtype", () => {
  for (const c of CASES) {
    it(`${c.label}: frozen tensors kept as the file's bits (not widened); the same bits as the float32 file of those values`, async () => {
      const hubCase = hubCases.find((x) => x.name === c.name)!;
      const tensors = Object.entries(hubCase.initial_weights).map(([n, t]) => ({ name: n, shape: t.shape, data: rounded(Float32Array.from(t.data), c.dtype) }));
      const asHalf = withBase({ ...hub(c.name, c.adapter), weights: writeSafetensors(tensors, { dtype: c.dtype }) } as TrainRequest, c.dtype);
      const asFloat = withBase({ ...hub(c.name, c.adapter), weights: writeSafetensors(tensors) } as TrainRequest, c.dtype);
      const prepared = prepareRun(asHalf);
      const state = prepared.initialState as StateValues;
      const frozen = frozenOf(asHalf);
      const held = [...frozen].filter((n) => state.half(n) !== undefined);
      // every frozen tensor but a transposed one (GPT-2's Conv1D) is held as bits
      const transposed = new Set(prepared.model.state.filter((t) => t.transposed).map((t) => t.name));
      expect(held.length).toBeGreaterThan(5);
      for (const n of frozen) if (!transposed.has(n)) expect(state.half(n), n).toBeDefined();
      for (const n of held) expect(state.get(n), n).toEqual(prepareRun(asFloat).initialState!.get(n));
      const runtime = await loadNodeRuntime();
      const [a, b] = [await runPrepared(runtime, prepared), await runPrepared(runtime, prepareRun(asFloat))];
      expect(a.metrics.history).toEqual(b.metrics.history);
      expect(a.weights).toBe(b.weights);
      // the stored run input writes the held bits as they are
      expect(decodeRunInput(encodeRunInput(prepared)).initialState!.get(held[0]!)).toEqual(state.get(held[0]!));
    });
  }

  it("a non-finite value in a held 16-bit tensor is a 422 naming the tensor and element", async () => {
    const hubCase = hubCases.find((x) => x.name === "bert_seqcls_padding")!;
    const tensors = Object.entries(hubCase.initial_weights).map(([n, t]) => ({ name: n, shape: t.shape, data: Float32Array.from(t.data) }));
    const target = tensors.find((t) => t.name.endsWith("attention.self.key.weight"))!;
    target.data[3] = Infinity;
    const e = await rejection(withBase({ ...hub("bert_seqcls_padding", { r: 2 }), weights: writeSafetensors(tensors, { dtype: "float16" }) } as TrainRequest, "float16"));
    expect(e.status).toBe(422);
    expect(e.errors).toContainEqual({ path: `weights[${JSON.stringify(target.name)}]`, message: "element 3 is Infinity: weights must be finite" });
  });
});

describe("the plan's memory", () => {
  it("counts 2 bytes per frozen parameter, plus the widening scratch of the largest frozen Linear", () => {
    for (const c of CASES) {
      const f32 = prepareRun(hub(c.name, c.adapter));
      const f16 = prepareRun(withBase(hub(c.name, c.adapter), c.dtype));
      const frozen = f32.model.stateCount - f32.model.trainableCount - f32.model.bufferCount;
      expect(stateElements(f16.model)).toBe(f32.model.stateCount - Math.floor(frozen / 2));
      const scratch = widenElements(f16.model);
      expect(scratch).toBeGreaterThan(0);
      expect(widenElements(f32.model)).toBe(0);
      // each allocation is rounded up to 16 bytes: two of them change size
      const saved = f32.plan.memory_bytes - f16.plan.memory_bytes;
      expect(Math.abs(saved - (2 * frozen - 4 * scratch)), c.label).toBeLessThanOrEqual(32);
      expect(saved, c.label).toBeGreaterThan(0);
      // the per-group figures count the same 2 bytes
      const groups = (p: typeof f32.plan) => p.groups.reduce((s, g) => s + g.memory_bytes, 0);
      expect(groups(f32.plan) - groups(f16.plan)).toBe(2 * (f32.model.paramCount - f32.model.trainableCount));
    }
  });

  it("the arena a run allocates is what the plan counted", async () => {
    for (const dtype of ["float16", "bfloat16"] as const) {
      const request = withBase(hub("bert_seqcls_padding", { r: 2 }), dtype);
      const diagnostics: { arenaBytes?: number } = {};
      const result = await train({ ...request, training: { ...request.training, epochs: 1 } } as TrainRequest, { kernel: "wasm", diagnostics });
      expect(result.status).toBe("succeeded");
      // the plan is the arena plus the module's static data (64 KiB), as for a float32 base
      expect(result.plan.memory_bytes).toBeGreaterThanOrEqual(diagnostics.arenaBytes!);
      expect(result.plan.memory_bytes).toBeLessThan(diagnostics.arenaBytes! + 70_000);
    }
  });
});

describe("a base too large for float32", () => {
  it("540M frozen parameters: refused in float32, planned in float16 (2 bytes each, one Linear widened at a time)", () => {
    const D = 8192;
    const request = {
      model: {
        layers: [
          ...Array.from({ length: 8 }, (_, i) => ({ type: "linear", name: `frozen${i}`, in_features: i === 0 ? 4 : D, out_features: D, bias: false })),
          { type: "linear", name: "head", in_features: D, out_features: 1 },
        ],
      },
      data: { train: { x: [[1, 2, 3, 4], [4, 3, 2, 1]], y: [0, 1] } },
      trainable: ["head"],
      training: { epochs: 1, batch_size: 2 },
    } as unknown as TrainRequest;
    let refused: unknown = null;
    try {
      prepareRun(request);
    } catch (e) {
      refused = e;
    }
    expect(refused).toMatchObject({ status: 422, errors: [{ path: "model.layers" }] });
    const { plan, model } = prepareRun(withBase(request, "float16"));
    expect(model.paramCount).toBeGreaterThan(7 * D * D);
    expect(widenElements(model)).toBe(D * D);
    expect(plan.memory_bytes).toBeLessThan(2 * model.paramCount + 4 * 2 * D * D + 64 * 2 ** 20); // the base, the scratch and matmul_nt's W^T, a little more
  });
});

describe("refusals", () => {
  it("a 16-bit base_dtype where every parameter trains is a 422 at model.base_dtype", async () => {
    const e = await rejection(withBase(seedRequest(32), "float16"));
    expect(e.status).toBe(422);
    expect(e.errors[0]!.path).toBe("model.base_dtype");
    expect(e.errors[0]!.message).toMatch(/every parameter trains/);
    const bad = await rejection({ ...seedRequest(32), model: { ...seedRequest(32).model, base_dtype: "float8" } });
    expect(bad.errors[0]!.path).toBe("model.base_dtype");
  });
});
