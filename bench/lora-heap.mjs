// The JavaScript side of the lora row (bench/lora.mjs), in-process in Node: the stages of the sync
// multipart POST as the API runs them (readCreateBody, prepareRun, encodeRunInput, runPreparedRaw,
// the result's weights), and the JS bytes (heap + ArrayBuffers) still live after each, garbage
// collected, counted from before the client's body was made (whose bytes are dropped once streamed). Transient copies inside a stage are
// not counted: the figures are what each stage leaves held while the next one runs. The WASM
// memory is the arena the run grew (diagnostics.memoryBytes). Usage (after `npm run build:ts`):
//   node --expose-gc bench/lora-heap.mjs
import { join } from "node:path";
import { root } from "./lib.mjs";
if (typeof globalThis.gc !== "function") throw new Error("run with node --expose-gc");
const { prepareRun } = await import(join(root, "dist/src/engine/prepare.js"));
const { runPreparedRaw } = await import(join(root, "dist/src/engine/train.js"));
const { defaultInit } = await import(join(root, "dist/src/engine/init.js"));
const { writeSafetensors } = await import(join(root, "dist/src/formats/safetensors.js"));
const { readCreateBody } = await import(join(root, "dist/src/api/body.js"));
const { encodeRunInput } = await import(join(root, "dist/src/jobs/run-input.js"));
const { encodeBase64 } = await import(join(root, "dist/src/formats/base64.js"));
const { convertWeights } = await import(join(root, "dist/src/engine/adapters/output.js"));
const { loadNodeRuntime } = await import(join(root, "dist/src/node/index.js"));
const { acquireKernels } = await import(join(root, "dist/src/engine/kernels.js"));
const { stageInKernelMemory } = await import(join(root, "dist/src/engine/staging.js"));
const MiB = 2 ** 20;
const config = { architectures: ["BertForSequenceClassification"], model_type: "bert", vocab_size: 30522, hidden_size: 384, num_hidden_layers: 6,
  num_attention_heads: 12, intermediate_size: 1536, max_position_embeddings: 512, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, id2label: { 0: "negative", 1: "positive" } };
const ROWS = 32, T = 128;
const input_ids = [], attention_mask = [], y = [];
for (let r = 0; r < ROWS; r++) { input_ids.push(Array.from({ length: T }, (_, t) => (t === 0 ? 101 : t < 100 ? 1000 + t * 7 : 0))); attention_mask.push(Array.from({ length: T }, (_, t) => (t < 100 ? 1 : 0))); y.push(r % 2); }
const request = { model: { huggingface: { config }, base_dtype: "float16" }, adapter: { type: "lora", r: 8, lora_alpha: 16 }, data: { train: { input_ids, attention_mask, y } },
  training: { epochs: 1, batch_size: 8, optimizer: { type: "adamw", lr: 1e-4 }, gradient_checkpointing: true }, output: { format: "peft" }, mode: "sync", placement: "edge" };
const plain = prepareRun({ ...request, adapter: null, output: { format: "full" }, model: { huggingface: { config } }, training: { epochs: 1, batch_size: 8 } });
const init = defaultInit(plain.model, 7);
let weights = writeSafetensors(plain.model.state.map((t) => ({ name: t.name, shape: [...t.shape], data: init.get(t.name) })), { dtype: "float16" });
const runtime = await loadNodeRuntime({ variant: "wasm-simd" });
const js = () => { globalThis.gc(); globalThis.gc(); const m = process.memoryUsage(); return { heap: m.heapUsed, buffers: m.arrayBuffers }; };
// the baseline leaves out the client's file (weights), dropped below once the body is made
const base = js();
base.buffers -= weights.byteLength;
let form = new FormData();
form.set("request", JSON.stringify(request));
form.set("weights", new Blob([weights]), "model.safetensors");
let req = new Request("http://x/v1/fine-tunes", { method: "POST", body: form });
let body = new Uint8Array(await req.arrayBuffer());
const bodyMib = +(body.byteLength / MiB).toFixed(1);
const chunked = (bytes) => {
  let at = 0;
  return new ReadableStream({ pull(c) { if (at >= bytes.length) return c.close(); c.enqueue(bytes.slice(at, (at += 65536))); } });
};
const type = req.headers.get("content-type");
weights = null; req = null; form = null;
const rows = [];
const mark = async (stage, extra = {}) => { await new Promise((r) => setTimeout(r, 100)); const m = js(); rows.push({ stage, js_mib: +(((m.heap - base.heap) + (m.buffers - base.buffers)) / MiB).toFixed(1), ...extra }); };
await mark("the client's multipart body (dropped once streamed)");
// the body arrives as a stream of 64 KiB chunks (as a socket gives it), not as one buffer
let wire = new Request("http://x/v1/fine-tunes", { method: "POST", body: chunked(body), headers: { "content-type": type }, duplex: "half" });
body = null;
// as the API does (fine-tunes.ts): the weights part goes straight into a kernel instance's memory
let staged = null;
const parsed = await readCreateBody(wire, 256 * MiB, undefined, { weightsBuffer: async (bytes, dataStart) => stageInKernelMemory((staged ??= await acquireKernels(runtime.module)), bytes, dataStart) });
wire = null;
const wasm = () => staged?.memory.buffer.byteLength ?? 0;
await mark("body read and parsed (readCreateBody)", { wasm_mib: +(wasm() / MiB).toFixed(1), staged_mib: +(parsed.stagedBytes / MiB).toFixed(1) });
const prepared = prepareRun(parsed.request, parsed.tables, { memoryBudgetBytes: 128 * MiB });
await mark("prepareRun (initialState)", { wasm_mib: +(wasm() / MiB).toFixed(1) });
const input = encodeRunInput(prepared, { state: false });
await mark("encodeRunInput (a sync job's stored input)", { input_mib: +(input.byteLength / MiB).toFixed(1), wasm_mib: +(wasm() / MiB).toFixed(1) });
const diagnostics = {};
const run = await runPreparedRaw(runtime, prepared, { id: "x", placement: "edge", diagnostics, instance: staged, weightsInKernelMemory: true });
const inWasm = run.weights.buffer === staged.memory.buffer;
await mark("trained (run.weights held)", { stored_weights_mib: +(run.weights.byteLength / MiB).toFixed(1), weights_in_wasm: inWasm, wasm_mib: +((diagnostics.memoryBytes ?? 0) / MiB).toFixed(1) });
const out = encodeBase64(convertWeights(run.weights));
await mark("result weights base64", { base64_mib: +(out.length / MiB).toFixed(2) });
const json = JSON.stringify({ ...run.result, weights: out });
await mark("response JSON");
console.log(JSON.stringify({ workload: "lora-heap", rows: ROWS, body_mib: bodyMib, plan_mib: +(prepared.plan.memory_bytes / MiB).toFixed(1), stages: rows }));
for (const r of rows) console.error(`${r.stage.padEnd(52)} ${String(r.js_mib).padStart(7)} MiB live JS${r.wasm_mib ? ` + WASM ${r.wasm_mib} MiB = ${(r.js_mib + r.wasm_mib).toFixed(1)} MiB` : ""}`);
void json;
