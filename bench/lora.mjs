// lora side of `npm run bench`: issue 13's row. LoRA r=8 on a MiniLM-L6-shaped BERT (6 layers,
// hidden 384, 12 heads, intermediate 1536, vocab 30,522), batch 8 of 128 tokens, trained inside
// workerd through a real `wrangler dev` as a sync POST (placement edge): the base is float16 in
// WASM memory (model.base_dtype) and activations are recomputed per block
// (training.gradient_checkpointing). The Worker's CPU budget is raised for the run
// (EDGE_MAX_CPU_MS: a sync run of 32 rows takes longer than the default on this machine); its
// memory budget is the default (EDGE_MAX_MEMORY_BYTES, 96 MiB), which the run's plan must fit to
// be admitted at all. wrangler dev does not enforce Workers' limits, so the memory figures are
// measured: the isolate's own (isolateSampler: its JS heap and ArrayBuffers read through the
// inspector during and after the POST, what it still holds after it from a heap snapshot, WASM
// memory included; bounded during the run by the largest JS reading plus the plan's WASM bytes,
// the figure the row checks against Workers' 128 MB), and, as information, workerd's peak
// resident set (VmHWM, the whole process: runtime, isolate, and miniflare's local storage
// services, which receive the 43.6 MiB weights file).
//   node bench/lora.mjs [--rows N]
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { snapshotArrayBuffers } from "./heap-snapshot.mjs";
import { freePort, root, startWranglerDev, stopProcess, waitReady } from "./lib.mjs";

const rest = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : fallback;
};
const ROWS = Number(arg("rows", 32));
const T = 128;
const KEY = "bench-key";
const MIB = 2 ** 20;

const { prepareRun } = await import(join(root, "dist/src/engine/prepare.js"));
const { defaultInit } = await import(join(root, "dist/src/engine/init.js"));
const { writeSafetensors } = await import(join(root, "dist/src/formats/safetensors.js"));

const config = {
  architectures: ["BertForSequenceClassification"], model_type: "bert", vocab_size: 30522, hidden_size: 384, num_hidden_layers: 6,
  num_attention_heads: 12, intermediate_size: 1536, max_position_embeddings: 512, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0,
  id2label: { 0: "negative", 1: "positive" },
};
// rows of 128 token ids (the last quarter padding), labels 0/1
let s = 12345;
const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
const input_ids = [];
const attention_mask = [];
const y = [];
for (let r = 0; r < ROWS; r++) {
  const length = 96 + Math.floor(rand() * 32);
  input_ids.push(Array.from({ length: T }, (_, t) => (t === 0 ? 101 : t < length ? 1000 + Math.floor(rand() * 29000) : 0)));
  attention_mask.push(Array.from({ length: T }, (_, t) => (t < length ? 1 : 0)));
  y.push(r % 2);
}
const request = {
  model: { huggingface: { config }, base_dtype: "float16" },
  adapter: { type: "lora", r: 8, lora_alpha: 16 },
  data: { train: { input_ids, attention_mask, y } },
  training: { epochs: 1, batch_size: 8, optimizer: { type: "adamw", lr: 1e-4 }, gradient_checkpointing: true },
  output: { format: "peft" },
  mode: "sync",
  placement: "edge",
};
// a pretrained-like base: _init_weights' distributions, written as float16 (as a Hub file may be)
const plain = prepareRun({ ...request, adapter: null, output: { format: "full" }, model: { huggingface: { config } }, training: { epochs: 1, batch_size: 8 } });
const init = defaultInit(plain.model, 7);
const weights = writeSafetensors(plain.model.state.map((t) => ({ name: t.name, shape: [...t.shape], data: init.get(t.name) })), { dtype: "float16" });
const planned = prepareRun({ ...request, weights }).plan;

const work = mkdtempSync(join(tmpdir(), "edgetune-bench-"));
const port = await freePort();
const inspectorPort = await freePort();
const dev = await startWranglerDev(port, join(work, "state"), {
  EDGETUNE_API_KEYS: KEY, EDGE_MAX_CPU_MS: "600000", MAX_BODY_BYTES: String(128 * MIB),
}, ["--inspector-port", String(inspectorPort)]);
async function stop() {
  await stopProcess(dev);
  rmSync(work, { recursive: true, force: true });
}
for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, () => stop().then(() => process.exit(130)));
const watchdog = setTimeout(() => {
  console.error("bench/lora: gave up after 280 s");
  stop().then(() => process.exit(1));
}, 280_000);
watchdog.unref();

/** The workerd processes on this machine (wrangler dev starts one) and their peak resident set. */
function workerdPeaks() {
  const peaks = new Map();
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (!cmd.includes("workerd")) continue;
      const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      if (hwm) peaks.set(pid, Number(hwm[1]) * 1024);
    } catch {
      // gone
    }
  }
  return peaks;
}

/**
 * The isolate's own memory through the DevTools protocol (wrangler dev's inspector).
 * Runtime.getHeapUsage is asked every 100 ms while the POST runs: usedSize is the JS heap,
 * backingStorageSize the ArrayBuffers' backing stores, garbage not yet collected included, and
 * never the WebAssembly memory (a Worker that holds a 100 MiB WebAssembly.Memory reads 0 there).
 * workerd answers inspector messages only while the isolate is not running JavaScript: the run
 * yields between its steps (syncYield), so some answers may come during the POST
 * (`during_post`); the rest come after it. Once the POST has answered, a heap snapshot
 * (HeapProfiler.takeHeapSnapshot, which collects the garbage first: workerd does not answer
 * HeapProfiler.collectGarbage, and a reading after it still counts dead ArrayBuffers) gives what
 * the isolate still holds: every live ArrayBuffer, WebAssembly memories included
 * (heap-snapshot.mjs), and Runtime.getHeapUsage once more. LORA_TRACE=1 prints each reading.
 */
async function isolateSampler() {
  const list = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json();
  const ws = new WebSocket(list[0].webSocketDebuggerUrl, { maxPayload: 2 ** 30 });
  await new Promise((resolve, reject) => (ws.once("open", resolve), ws.once("error", reject)));
  const peak = { used: 0, backing: 0, sum: 0, samples: 0, duringPost: 0, duringPostSum: 0 };
  let posting = false;
  let n = 1;
  const waiting = new Map();
  const chunks = [];
  ws.on("message", (data) => {
    const message = JSON.parse(String(data));
    if (message.method === "HeapProfiler.addHeapSnapshotChunk") return void chunks.push(message.params.chunk);
    if (waiting.has(message.id)) return void (waiting.get(message.id)(message.result), waiting.delete(message.id));
    const r = message.result;
    if (!r || typeof r.usedSize !== "number") return;
    const backing = r.backingStorageSize ?? 0;
    peak.samples++;
    peak.used = Math.max(peak.used, r.usedSize);
    peak.backing = Math.max(peak.backing, backing);
    peak.sum = Math.max(peak.sum, r.usedSize + backing);
    if (posting) (peak.duringPost++, (peak.duringPostSum = Math.max(peak.duringPostSum, r.usedSize + backing)));
    if (process.env.LORA_TRACE) console.error(`${(performance.now() / 1000).toFixed(1)} s${posting ? " (POST)" : ""} heap ${(r.usedSize / MIB).toFixed(1)} MiB, backing stores ${(backing / MIB).toFixed(1)} MiB`);
  });
  const call = (method, params = {}) => new Promise((resolve) => {
    const id = n++;
    waiting.set(id, resolve);
    ws.send(JSON.stringify({ id, method, params }));
  });
  const ask = () => ws.send(JSON.stringify({ id: n++, method: "Runtime.getHeapUsage" }));
  const before = await call("Runtime.getHeapUsage");
  const timer = setInterval(ask, 100);
  return {
    before: { used: before.usedSize, backing: before.backingStorageSize ?? 0 },
    posting(on) {
      posting = on;
    },
    async stop() {
      clearInterval(timer);
      await new Promise((r) => setTimeout(r, 500));
      await call("HeapProfiler.enable");
      await call("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
      const held = snapshotArrayBuffers(chunks.join(""), { largest: 5, minBytes: MIB });
      chunks.length = 0;
      const after = await call("Runtime.getHeapUsage");
      ws.close();
      return { peak, after: { used: after.usedSize, backing: after.backingStorageSize ?? 0, ...held } };
    },
  };
}

try {
  const before = workerdPeaks();
  await waitReady(dev, `http://127.0.0.1:${port}`, "wrangler dev");
  const ready = workerdPeaks();
  const form = new FormData();
  form.set("request", JSON.stringify(request));
  form.set("weights", new Blob([weights]), "model.safetensors");
  const sampler = await isolateSampler();
  sampler.posting(true);
  const t0 = performance.now();
  const res = await fetch(`http://127.0.0.1:${port}/v1/fine-tunes`, { method: "POST", headers: { authorization: `Bearer ${KEY}` }, body: form });
  const json = await res.json();
  const ms = performance.now() - t0;
  sampler.posting(false);
  if (res.status !== 200 || json.status !== "succeeded") throw new Error(`POST answered ${res.status}: ${JSON.stringify(json).slice(0, 600)}\n${dev.output().slice(-2000)}`);
  const isolate = { before: sampler.before, ...(await sampler.stop()) };
  const after = workerdPeaks();
  const started = [...after].filter(([pid]) => !before.has(pid));
  const [pid, peak] = started.sort((a, b) => b[1] - a[1])[0] ?? [null, null];
  console.log(JSON.stringify({
    workload: "lora", rows: ROWS, tokens: T, batch: 8, params: json.plan.params, trainable_params: json.plan.trainable_params,
    plan_memory_bytes: json.plan.memory_bytes, planned_memory_bytes: planned.memory_bytes, placement: json.plan.placement, kernel: json.engine.kernel,
    runtime: json.engine.runtime, samples_per_second: json.metrics.samples_per_second, server_ms: json.metrics.duration_ms, client_ms: ms,
    weights_bytes: weights.length,
    // the isolate (see isolateSampler): readings during and after the POST, before a collection
    isolate_before: { js_heap_bytes: isolate.before.used, backing_store_bytes: isolate.before.backing },
    isolate_samples: isolate.peak.samples, isolate_samples_during_post: isolate.peak.duringPost,
    isolate_js_heap_peak_bytes: isolate.peak.used, isolate_backing_store_peak_bytes: isolate.peak.backing, isolate_sampled_peak_bytes: isolate.peak.sum,
    // what it still holds once the garbage is collected (a heap snapshot): JS heap, ArrayBuffers, WASM memory
    isolate_after: {
      js_heap_bytes: isolate.after.used, backing_store_bytes: isolate.after.backing, array_buffer_bytes: isolate.after.otherBytes,
      wasm_memory_bytes: isolate.after.wasmBytes, largest_buffers: isolate.after.largest,
    },
    // the isolate during the run, bounded: the largest JS reading (heap + ArrayBuffers, garbage
    // included) plus the run's WASM memory (the plan: what its arena grows to), which no reading shows
    isolate_peak_bound_bytes: isolate.peak.sum + json.plan.memory_bytes,
    workerd_pid: pid, workerd_peak_rss_bytes: peak, workerd_ready_rss_bytes: pid ? ready.get(pid) ?? null : null,
  }));
} finally {
  await stop();
}
