// lora side of `npm run bench`: issue 13's row. LoRA r=8 on a MiniLM-L6-shaped BERT (6 layers,
// hidden 384, 12 heads, intermediate 1536, vocab 30,522), batch 8 of 128 tokens, trained inside
// workerd through a real `wrangler dev` as a sync POST (placement edge): the base is float16 in
// WASM memory (model.base_dtype) and activations are recomputed per block
// (training.gradient_checkpointing). The Worker's CPU budget is raised for the run
// (EDGE_MAX_CPU_MS: a sync run of 32 rows takes longer than the default on this machine); its
// memory budget is the default (EDGE_MAX_MEMORY_BYTES, 96 MiB), which the run's plan must fit to
// be admitted at all. wrangler dev does not enforce Workers' limits, so the memory figures are
// measured: the plan's WASM bytes,
// workerd's peak resident set (VmHWM, the whole process: runtime, JS heap and WASM, and
// miniflare's local storage services), and the isolate's JS heap and ArrayBuffers through the
// inspector (isolateSampler).
//   node bench/lora.mjs [--rows N]
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
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
 * The isolate's own memory through the DevTools protocol (wrangler dev's inspector):
 * Runtime.getHeapUsage asked every 100 ms while the POST runs, then once more after
 * HeapProfiler.collectGarbage. usedSize is the JS heap; backingStorageSize the ArrayBuffers'
 * backing stores (V8 accounts the WebAssembly memory apart: it is not in either). workerd
 * answers inspector messages only while the isolate is idle, so in practice every answer comes
 * after the request: these are the live bytes after it, not its peak. LORA_TRACE=1 prints each.
 */
async function isolateSampler() {
  const list = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json();
  const ws = new WebSocket(list[0].webSocketDebuggerUrl);
  await new Promise((resolve, reject) => (ws.once("open", resolve), ws.once("error", reject)));
  const peak = { used: 0, backing: 0, total: 0, sum: 0, samples: 0, afterGc: null };
  let gcDone = false;
  ws.on("message", (data) => {
    const r = JSON.parse(String(data)).result;
    if (!r || typeof r.usedSize !== "number") return;
    if (gcDone) {
      peak.afterGc = { used: r.usedSize, backing: r.backingStorageSize ?? 0 };
      return;
    }
    peak.samples++;
    peak.used = Math.max(peak.used, r.usedSize);
    peak.total = Math.max(peak.total, r.totalSize);
    peak.backing = Math.max(peak.backing, r.backingStorageSize ?? 0);
    peak.sum = Math.max(peak.sum, r.usedSize + (r.backingStorageSize ?? 0));
    if (process.env.LORA_TRACE) console.error(`${(performance.now() / 1000).toFixed(1)} s heap ${(r.usedSize / MIB).toFixed(1)} MiB, backing stores ${((r.backingStorageSize ?? 0) / MIB).toFixed(1)} MiB`);
  });
  let n = 1;
  const ask = () => ws.send(JSON.stringify({ id: n++, method: "Runtime.getHeapUsage" }));
  ask();
  const timer = setInterval(ask, 100);
  return {
    async stop() {
      clearInterval(timer);
      ask();
      await new Promise((r) => setTimeout(r, 500));
      // what stays live once the isolate has collected its garbage
      ws.send(JSON.stringify({ id: n++, method: "HeapProfiler.collectGarbage" }));
      await new Promise((r) => setTimeout(r, 1000));
      gcDone = true;
      ask();
      await new Promise((r) => setTimeout(r, 500));
      ws.close();
      return peak;
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
  const t0 = performance.now();
  const res = await fetch(`http://127.0.0.1:${port}/v1/fine-tunes`, { method: "POST", headers: { authorization: `Bearer ${KEY}` }, body: form });
  const json = await res.json();
  const ms = performance.now() - t0;
  if (res.status !== 200 || json.status !== "succeeded") throw new Error(`POST answered ${res.status}: ${JSON.stringify(json).slice(0, 600)}\n${dev.output().slice(-2000)}`);
  const isolate = await sampler.stop();
  const after = workerdPeaks();
  const started = [...after].filter(([pid]) => !before.has(pid));
  const [pid, peak] = started.sort((a, b) => b[1] - a[1])[0] ?? [null, null];
  console.log(JSON.stringify({
    workload: "lora", rows: ROWS, tokens: T, batch: 8, params: json.plan.params, trainable_params: json.plan.trainable_params,
    plan_memory_bytes: json.plan.memory_bytes, planned_memory_bytes: planned.memory_bytes, placement: json.plan.placement, kernel: json.engine.kernel,
    runtime: json.engine.runtime, samples_per_second: json.metrics.samples_per_second, server_ms: json.metrics.duration_ms, client_ms: ms,
    weights_bytes: weights.length, isolate_js_heap_peak_bytes: isolate.used, isolate_backing_store_peak_bytes: isolate.backing,
    isolate_peak_bytes: isolate.sum, isolate_after_gc: isolate.afterGc, isolate_heap_total_peak_bytes: isolate.total, isolate_samples: isolate.samples, workerd_pid: pid, workerd_peak_rss_bytes: peak, workerd_ready_rss_bytes: pid ? ready.get(pid) ?? null : null,
  }));
} finally {
  await stop();
}
