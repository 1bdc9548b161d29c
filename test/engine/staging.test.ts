/**
 * A checkpoint staged in the kernel core's memory (engine/staging.ts): the API writes a
 * multipart `weights` part into a kernel instance's memory, the starting state holds views of
 * it, and the run on that instance moves them above its state block and loads from there. A
 * staged run is the same run, bit for bit, and its memory is the plan's (the staged bytes sit
 * where the activations go). A large run's weights file can be written into the memory training
 * freed (weightsInKernelMemory).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { loadNodeRuntime } from "../../src/node/index.js";
import { acquireKernels, KEEP_MEMORY_BYTES, releaseKernels, WASM_PAGE } from "../../src/engine/kernels.js";
import { stageInKernelMemory } from "../../src/engine/staging.js";
import { stateElements } from "../../src/engine/model.js";
import type { StateValues } from "../../src/engine/state-values.js";
import { prepareRun, runPreparedRaw, type TrainRequest } from "../../src/engine/train.js";
import { parseSafetensors, writeSafetensors } from "../../src/formats/safetensors.js";

interface HubCase {
  name: string;
  request: { model: { huggingface: { config: Record<string, unknown> } }; data: { train: Record<string, unknown> } };
  initial_weights: Record<string, { shape: number[]; data: number[] }>;
}
const hubCases = (JSON.parse(readFileSync(new URL("../parity/fixtures/huggingface.json", import.meta.url), "utf8")) as { cases: HubCase[] }).cases;

/** A LoRA request over a Hub fixture whose checkpoint is written in `dtype` (a 16-bit base of that dtype). */
function hub(name: string, dtype: "float16" | "bfloat16", batch = 8): { request: TrainRequest; file: Uint8Array } {
  const c = hubCases.find((x) => x.name === name)!;
  const file = writeSafetensors(Object.entries(c.initial_weights).map(([n, t]) => ({ name: n, shape: t.shape, data: Float32Array.from(t.data) })), { dtype });
  const request = {
    model: { ...c.request.model, base_dtype: dtype },
    data: c.request.data,
    adapter: { type: "lora", r: 2 },
    training: { epochs: 2, batch_size: batch, optimizer: { type: "adam", lr: 0.01 }, seed: 2 },
  } as TrainRequest;
  return { request, file };
}

/** The file written into a fresh kernel instance's memory, as the API's body reader does. */
async function staged(file: Uint8Array) {
  const runtime = await loadNodeRuntime();
  const instance = await acquireKernels(runtime.module);
  const dataStart = 8 + Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  const view = stageInKernelMemory(instance, file.byteLength, dataStart);
  view.set(file);
  return { runtime, instance, view, dataStart };
}

const CASES = [
  { label: "BERT query/value, float16", name: "bert_seqcls_padding", dtype: "float16" },
  // GPT-2's Conv1D tensors are transposed on reading (copies, not views): the rest is staged
  { label: "GPT-2 c_attn, bfloat16", name: "gpt2_causal_lm", dtype: "bfloat16" },
  { label: "Llama q/v, float16", name: "llama_untied", dtype: "float16" },
] as const;

describe("a run from a staged checkpoint", () => {
  for (const c of CASES) {
    it(`${c.label}: the same history and weights, bit for bit, as from the checkpoint in the heap`, async () => {
      const { request, file } = hub(c.name, c.dtype);
      const { runtime, instance, view, dataStart } = await staged(file);
      // the data starts 16-byte aligned, as the kernels read it
      expect((view.byteOffset + dataStart) % 16).toBe(0);
      const prepared = prepareRun({ ...request, weights: view } as TrainRequest);
      const state = prepared.initialState as StateValues;
      const views = [...state.halfEntries()].filter(([, h]) => h.bits.buffer === instance.memory.buffer);
      expect(views.length).toBeGreaterThan(3);
      const diagnostics: { memoryBytes?: number } = {};
      const fromStage = await runPreparedRaw(runtime, prepared, { instance, diagnostics });
      const fromHeap = await runPreparedRaw(runtime, prepareRun({ ...request, weights: file.slice() } as TrainRequest));
      expect(fromStage.result.status).toBe("succeeded");
      expect(fromStage.result.metrics.history).toEqual(fromHeap.result.metrics.history);
      expect(fromStage.weights).toEqual(fromHeap.weights);
      // no more memory than the plan, or than its state block and the staged tensors together
      const base = Math.ceil(instance.kernels.heap_base() / 16) * 16;
      const floor = base + stateElements(prepared.model) * 4 + file.byteLength - dataStart + 32;
      expect(diagnostics.memoryBytes!).toBeLessThanOrEqual(Math.ceil(Math.max(prepared.plan.memory_bytes, floor) / WASM_PAGE) * WASM_PAGE);
    });
  }

  it("a staged base whose bytes fit above the state block grows the memory to the plan, no more", async () => {
    // batch 64: the activations are larger than the staged base
    const { request, file } = hub("bert_seqcls_padding", "float16", 64);
    const { runtime, instance, view } = await staged(file);
    const prepared = prepareRun({ ...request, weights: view } as TrainRequest);
    const diagnostics: { memoryBytes?: number } = {};
    const result = await runPreparedRaw(runtime, prepared, { instance, diagnostics });
    expect(result.result.status).toBe("succeeded");
    expect(diagnostics.memoryBytes).toBe(Math.ceil(prepared.plan.memory_bytes / WASM_PAGE) * WASM_PAGE);
  });
});

describe("weightsInKernelMemory", () => {
  // fc1 (2560 x 2560 at 2 bytes, frozen in float16; its widening scratch at 4) and a small
  // trainable fc2: a memory over KEEP_MEMORY_BYTES, 4 rows
  const F = 2560;
  const request = {
    model: { layers: [{ type: "linear", in_features: F, out_features: F }, { type: "relu" }, { type: "linear", in_features: F, out_features: 1 }], base_dtype: "float16" },
    trainable: ["2"],
    data: { train: { x: Array.from({ length: 4 }, (_, i) => Array.from({ length: F }, (_, j) => Math.sin(i + j) / 8)), y: [0.5, -0.5, 1, 0] } },
    training: { epochs: 1, batch_size: 2, optimizer: { type: "sgd", lr: 0.01 }, seed: 3 },
  } as unknown as TrainRequest;

  it("writes a large run's file into the memory training freed: the same bytes, a view of the run's memory", async () => {
    const runtime = await loadNodeRuntime();
    const instance = await acquireKernels(runtime.module);
    const inMemory = await runPreparedRaw(runtime, prepareRun(request), { instance, weightsInKernelMemory: true });
    const inHeap = await runPreparedRaw(runtime, prepareRun(request));
    expect(instance.memory.buffer.byteLength).toBeGreaterThan(32 * 2 ** 20);
    expect(inMemory.weights.buffer).toBe(instance.memory.buffer);
    expect(inHeap.weights.buffer).not.toBe(instance.memory.buffer);
    // compared as bytes (a deep equal of 26 MB element by element takes minutes)
    expect(inMemory.weights.byteLength).toBe(inHeap.weights.byteLength);
    expect(Buffer.compare(inMemory.weights, inHeap.weights)).toBe(0);
    expect([...parseSafetensors(inMemory.weights).tensors.keys()]).toEqual(["0.weight", "0.bias", "2.weight", "2.bias"]);
    // the instance holding it is not handed to another run
    const next = await acquireKernels(runtime.module);
    expect(next).not.toBe(instance);
    releaseKernels(runtime.module, next);
  });

  it("the module keeps no instance whose memory grew large: a finished run's memory is left to the GC with its request", async () => {
    const runtime = await loadNodeRuntime();
    const instance = await acquireKernels(runtime.module);
    const run = await runPreparedRaw(runtime, prepareRun(request), { instance, weightsInKernelMemory: true });
    expect(run.weights.buffer).toBe(instance.memory.buffer);
    // a large instance given back is dropped, not pooled (a sync run on the edge gives nothing back then)
    releaseKernels(runtime.module, instance);
    // the pool (up to 4 idle instances) is all acquireKernels can hand out before instantiating
    const pooled = [];
    for (let i = 0; i < 5; i++) pooled.push(await acquireKernels(runtime.module));
    expect(pooled).not.toContain(instance);
    for (const p of pooled) expect(p.memory.buffer.byteLength).toBeLessThanOrEqual(KEEP_MEMORY_BYTES);
    for (const p of pooled) releaseKernels(runtime.module, p);
  });
});
