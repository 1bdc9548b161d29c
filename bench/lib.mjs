// Shared helpers for `npm run bench`: timing statistics, workload definitions, data.
// Plain Node ESM; everything imported from the built package lives under dist/.
import { readFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import os from "node:os";

export const root = dirname(dirname(fileURLToPath(import.meta.url)));
export const dist = (p) => join(root, "dist", p);

/**
 * The kernel core of this Node's runtime (the plain SIMD build, or relaxed SIMD under
 * --experimental-wasm-relaxed-simd) on a memory of its own, with an arena over it: for timing
 * kernels one by one. Needs `npm run build`.
 *
 * @example
 * ```js
 * const { k, arena, runtime } = await standaloneKernels();
 * const x = arena.alloc(1024);
 * ```
 */
export async function standaloneKernels() {
  const { loadNodeRuntime } = await import(dist("src/node/index.js"));
  const { instantiateKernels } = await import(dist("src/engine/kernels.js"));
  const { Arena } = await import(dist("src/engine/arena.js"));
  const runtime = await loadNodeRuntime();
  const memory = new WebAssembly.Memory({ initial: 1 });
  const k = await instantiateKernels(runtime.module, memory);
  return { runtime, memory, k, arena: new Arena(memory, k.heap_base()) };
}

/**
 * Median CPU microseconds per call of `fn` over 7 rounds, each long enough (30 ms of CPU) for
 * process.cpuUsage's microsecond clock, after a warm-up round that sizes them; this process's CPU
 * time, which other processes on a shared machine do not stretch.
 *
 * @example
 * ```js
 * const us = cpuMicrosPerCall(() => k.matmul_nn(out, a, b, 64, 64, 64, 0));
 * ```
 */
export function cpuMicrosPerCall(fn) {
  let reps = 4;
  for (;;) {
    const c = process.cpuUsage();
    for (let i = 0; i < reps; i++) fn();
    const d = process.cpuUsage(c);
    if (d.user + d.system > 30_000) break;
    reps *= 2;
  }
  const us = [];
  for (let t = 0; t < 7; t++) {
    const c = process.cpuUsage();
    for (let i = 0; i < reps; i++) fn();
    const d = process.cpuUsage(c);
    us.push((d.user + d.system) / reps);
  }
  return us.sort((a, b) => a - b)[3];
}

/** Median, min, max of a list of numbers. */
export function stats(values) {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  const pct = (p) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
  return { n: s.length, median, min: s[0], max: s[s.length - 1], p10: pct(10), p50: pct(50), p90: pct(90), p99: pct(99) };
}

export const nowMs = () => performance.now();

/** Deterministic uniform [0,1) stream (mulberry32), so every run builds the same data. */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ------------------------------------------------------------------ workloads (SPEC section 6)

/** tiny: Linear(10,10)-ReLU-Linear(10,1), MSE, Adam 1e-3, batch 32, 1,000 rows, 20 epochs, no shuffle. */
export const TINY = { rows: 1000, features: 10, hidden: 10, outputs: 1, batch: 32, epochs: 20, lr: 1e-3 };
TINY.stepsPerEpoch = Math.ceil(TINY.rows / TINY.batch);
TINY.steps = TINY.stepsPerEpoch * TINY.epochs;

/** mlp: 784-256-10, cross-entropy, Adam 1e-3, batch 64, 4,096 rows of random data (10 classes), no shuffle. */
export const MLP = { rows: 4096, features: 784, hidden: 256, classes: 10, batch: 64, lr: 1e-3, epochs: 3 };
/** FLOPs of one training sample (forward 2*in*out per linear, backward twice that). */
MLP.flopsPerSample = 3 * 2 * (MLP.features * MLP.hidden + MLP.hidden * MLP.classes);

/**
 * cnn: a small CNN on 28x28 inputs, conv2d(1,8,3,padding=1)-relu-max_pool2d(2)-conv2d(8,16,3,padding=1)-relu-
 * max_pool2d(2)-flatten-linear(784,10), cross-entropy, Adam 1e-3, batch 64, 2,048 random rows, no shuffle.
 */
export const CNN = { rows: 2048, side: 28, classes: 10, batch: 64, lr: 1e-3, epochs: 2 };
/** FLOPs of one training sample: forward MACs x 2, backward about twice that (conv1 needs no dx). */
CNN.flopsPerSample = (() => {
  const conv1 = 8 * 9 * 28 * 28, conv2 = 16 * 72 * 14 * 14, fc = 784 * 10;
  return 2 * (conv1 + conv2 + fc) + 2 * (conv1 + 2 * conv2 + 2 * fc);
})();

export function cnnRequest({ x, y }, epochs) {
  return {
    model: {
      input: { shape: [1, CNN.side, CNN.side] },
      layers: [
        { type: "conv2d", name: "conv1", in_channels: 1, out_channels: 8, kernel_size: 3, padding: 1 },
        { type: "relu" },
        { type: "max_pool2d", kernel_size: 2 },
        { type: "conv2d", name: "conv2", in_channels: 8, out_channels: 16, kernel_size: 3, padding: 1 },
        { type: "relu" },
        { type: "max_pool2d", kernel_size: 2 },
        { type: "flatten" },
        { type: "linear", name: "fc", in_features: 16 * 7 * 7, out_features: CNN.classes },
      ],
    },
    data: { train: { x, y } },
    training: {
      epochs,
      batch_size: CNN.batch,
      shuffle: false,
      loss: { type: "cross_entropy" },
      optimizer: { type: "adam", lr: CNN.lr },
    },
  };
}

/**
 * encoder: token classification with a 2-layer transformer encoder over 64 tokens: embedding(1000, 64)
 * + position_embedding(64, 64), two transformer_encoder_layer(d_model 64, nhead 4, dim_feedforward 128,
 * dropout 0), mean pooling over the attention mask, linear(64, 2); cross-entropy, Adam 1e-3,
 * batch 32, 512 random rows of 48-64 real tokens (right padding), no shuffle.
 */
export const ENCODER = { rows: 512, tokens: 64, vocab: 1000, dModel: 64, heads: 4, ff: 128, layers: 2, classes: 2, batch: 32, lr: 1e-3, epochs: 1 };

/** Random token rows as the encoder bench (and its PyTorch twin in torch_bench.py) use them: ids, mask, labels. */
export function randomTokens(rows, tokens, vocab, classes, seed) {
  const r = rng(seed);
  const input_ids = [], attention_mask = [], y = [];
  for (let i = 0; i < rows; i++) {
    const length = 48 + Math.floor(r() * (tokens - 48 + 1));
    input_ids.push(Array.from({ length: tokens }, (_, t) => (t < length ? 1 + Math.floor(r() * (vocab - 1)) : 0)));
    attention_mask.push(Array.from({ length: tokens }, (_, t) => (t < length ? 1 : 0)));
    y.push(Math.floor(r() * classes));
  }
  return { input_ids, attention_mask, y };
}

export function encoderRequest(data, epochs) {
  const E = ENCODER;
  const layer = { type: "transformer_encoder_layer", d_model: E.dModel, nhead: E.heads, dim_feedforward: E.ff, dropout: 0 };
  return {
    model: {
      layers: [
        { type: "embedding", name: "emb", num_embeddings: E.vocab, embedding_dim: E.dModel },
        { type: "position_embedding", name: "pos", num_embeddings: E.tokens, embedding_dim: E.dModel },
        { type: "sequential", name: "encoder", layers: Array.from({ length: E.layers }, () => layer) },
        { type: "pool", mode: "mean" },
        { type: "linear", name: "head", in_features: E.dModel, out_features: E.classes },
      ],
    },
    data: { train: data },
    training: { epochs, batch_size: E.batch, shuffle: false, loss: { type: "cross_entropy" }, optimizer: { type: "adam", lr: E.lr } },
  };
}

/**
 * bert-tiny (issue 17's target): a BertForSequenceClassification config shaped like
 * google/bert_uncased_L-2_H-128_A-2 (2 layers, hidden 128, 2 heads, 512 intermediate) with a
 * 2,000-token vocabulary and 64 positions, dropout 0; 256 rows of 64 tokens, batch 16, AdamW.
 */
export const BERT_TINY = { rows: 256, tokens: 64, vocab: 2000, hidden: 128, heads: 2, intermediate: 512, layers: 2, classes: 2, batch: 16, lr: 1e-4, weightDecay: 0.01, epochs: 1 };

/** The Hugging Face config.json of the bert-tiny bench (torch_bench.py builds the same model). */
export function bertTinyConfig() {
  const B = BERT_TINY;
  return {
    architectures: ["BertForSequenceClassification"], model_type: "bert", vocab_size: B.vocab, hidden_size: B.hidden,
    num_hidden_layers: B.layers, num_attention_heads: B.heads, intermediate_size: B.intermediate, hidden_act: "gelu",
    hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, max_position_embeddings: B.tokens, type_vocab_size: 2,
    layer_norm_eps: 1e-12, pad_token_id: 0, num_labels: B.classes,
  };
}

export function bertTinyRequest(data, epochs) {
  const B = BERT_TINY;
  return {
    model: { huggingface: { config: bertTinyConfig() } },
    data: { train: data },
    training: { epochs, batch_size: B.batch, shuffle: false, optimizer: { type: "adamw", lr: B.lr, weight_decay: B.weightDecay } },
  };
}

/** memory: ~1M parameters (100-1000-900-10), 10,000 x 100 rows, 1 epoch. */
export const MEMORY = { rows: 10000, features: 100, widths: [1000, 900], classes: 10, batch: 32, epochs: 1 };
MEMORY.params = (() => {
  let p = 0, inp = MEMORY.features;
  for (const w of [...MEMORY.widths, MEMORY.classes]) (p += inp * w + w), (inp = w);
  return p;
})();

/** The examples/seed-mlp data (1,000 rows x 10 features, y) and its PyTorch-exported weights. */
export function seedMlp() {
  const csv = readFileSync(join(root, "examples/seed-mlp/train.csv"), "utf8").trim().split(/\r?\n/);
  const header = csv[0].split(",");
  const yCol = header.indexOf("y");
  const x = [];
  const y = [];
  for (const line of csv.slice(1)) {
    const cells = line.split(",").map(Number);
    y.push(cells[yCol]);
    x.push(cells.filter((_, i) => i !== yCol));
  }
  const weights = new Uint8Array(readFileSync(join(root, "examples/seed-mlp/weights.safetensors")));
  return { x, y, weights };
}

/** The tiny request, as a caller of train() holds it in memory (weights as safetensors bytes or base64). */
export function tinyRequest({ x, y, weights }, extra = {}) {
  return {
    model: {
      layers: [
        { type: "linear", name: "fc1", in_features: TINY.features, out_features: TINY.hidden },
        { type: "relu" },
        { type: "linear", name: "fc2", in_features: TINY.hidden, out_features: TINY.outputs },
      ],
    },
    weights,
    data: { train: { x, y } },
    training: {
      epochs: TINY.epochs,
      batch_size: TINY.batch,
      shuffle: false,
      loss: { type: "mse" },
      optimizer: { type: "adam", lr: TINY.lr },
    },
    ...extra,
  };
}

/** Random classification rows: x uniform [0,1), y a class index. */
export function randomClassification(rows, features, classes, seed) {
  const r = rng(seed);
  const x = new Array(rows);
  const y = new Array(rows);
  for (let i = 0; i < rows; i++) {
    const row = new Array(features);
    for (let j = 0; j < features; j++) row[j] = Math.fround(r());
    x[i] = row;
    y[i] = Math.floor(r() * classes);
  }
  return { x, y };
}

export function mlpRequest({ x, y }, epochs) {
  return {
    model: {
      layers: [
        { type: "linear", name: "fc1", in_features: MLP.features, out_features: MLP.hidden },
        { type: "relu" },
        { type: "linear", name: "fc2", in_features: MLP.hidden, out_features: MLP.classes },
      ],
    },
    data: { train: { x, y } },
    training: {
      epochs,
      batch_size: MLP.batch,
      shuffle: false,
      loss: { type: "cross_entropy" },
      optimizer: { type: "adam", lr: MLP.lr },
    },
  };
}

export function memoryRequest({ x, y }) {
  const layers = [];
  let inp = MEMORY.features;
  MEMORY.widths.forEach((w, i) => {
    layers.push({ type: "linear", name: `fc${i + 1}`, in_features: inp, out_features: w }, { type: "relu" });
    inp = w;
  });
  layers.push({ type: "linear", name: "out", in_features: inp, out_features: MEMORY.classes });
  return {
    model: { layers },
    data: { train: { x, y } },
    training: {
      epochs: MEMORY.epochs,
      batch_size: MEMORY.batch,
      shuffle: false,
      loss: { type: "cross_entropy" },
      optimizer: { type: "adam", lr: 1e-3 },
    },
  };
}

// ------------------------------------------------------------------ machine

export function machineInfo() {
  let cpuModel = os.cpus()[0]?.model ?? "unknown";
  let flags = [];
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    cpuModel = /model name\s*:\s*(.*)/.exec(info)?.[1]?.trim() ?? cpuModel;
    flags = (/flags\s*:\s*(.*)/.exec(info)?.[1] ?? "").split(/\s+/);
  } catch {
    // not Linux
  }
  let mhz = os.cpus()[0]?.speed || null;
  let family = null;
  const caches = {};
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    mhz = Number(/cpu MHz\s*:\s*([\d.]+)/.exec(info)?.[1]) || mhz;
    const fam = /cpu family\s*:\s*(\d+)/.exec(info)?.[1];
    const mod = /^model\s*:\s*(\d+)/m.exec(info)?.[1];
    if (fam) family = `family ${fam} model ${mod}`;
    for (let i = 0; i < 8; i++) {
      const dir = `/sys/devices/system/cpu/cpu0/cache/index${i}`;
      if (!existsSync(dir)) break;
      const level = readFileSync(`${dir}/level`, "utf8").trim();
      const type = readFileSync(`${dir}/type`, "utf8").trim();
      if (type === "Instruction") continue;
      caches[`L${level}`] = readFileSync(`${dir}/size`, "utf8").trim();
    }
  } catch {
    // not Linux
  }
  return {
    cpu: cpuModel,
    cores: os.cpus().length,
    family,
    mhz,
    caches_per_core: caches,
    simd: ["sse4_1", "avx2", "fma", "avx512f"].filter((f) => flags.includes(f)),
    memory_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    date: new Date().toISOString(),
  };
}

/** The last line of a child's stdout that parses as JSON. */
export function lastJson(text) {
  const lines = text.trim().split("\n").reverse();
  for (const l of lines) {
    const t = l.trim();
    if (!t.startsWith("{")) continue;
    try {
      return JSON.parse(t);
    } catch {
      // keep looking
    }
  }
  throw new Error(`no JSON result in output:\n${text.slice(-2000)}`);
}

export function haveDist() {
  return existsSync(dist("src/node/index.js")) && existsSync(join(root, "build/wasm/simd.wasm"));
}

/** Share of the machine's CPU time that other processes used over `ms` while this one waited (Linux /proc/stat). */
export async function backgroundCpu(ms = 1000) {
  const read = () => {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3] + (f[4] ?? 0);
    return { idle, total: f.reduce((a, b) => a + b, 0) };
  };
  try {
    const a = read();
    await new Promise((r) => setTimeout(r, ms));
    const b = read();
    return Math.round((1 - (b.idle - a.idle) / Math.max(1, b.total - a.total)) * 1000) / 10;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- processes (edge bench, load test)

/** A free TCP port on 127.0.0.1. */
export async function freePort() {
  const { createServer } = await import("node:net");
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

/** A Node child process (`args` after the node binary) with its output kept for error messages. */
export async function startProcess(args, env = {}) {
  const { spawn } = await import("node:child_process");
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  return { child, output: () => output };
}

/**
 * `wrangler dev` on 127.0.0.1:`port`, state under `persist`, `--var` for each of `vars`, then
 * `args` (e.g. `--config` of another Worker). Its inspector listens on a free port: the default,
 * 9229, is taken by any other `wrangler dev` on the machine, and a second one then fails to start.
 */
export async function startWranglerDev(port, persist, vars = {}, args = []) {
  // a local run (EDGETUNE_DEV=true): the open API and the development node token, as `npm run dev`
  const varArgs = Object.entries({ EDGETUNE_DEV: "true", ...vars }).flatMap(([k, v]) => ["--var", `${k}:${v}`]);
  const inspector = args.includes("--inspector-port") ? [] : ["--inspector-port", String(await freePort())];
  return startProcess([join(root, "node_modules/wrangler/bin/wrangler.js"), "dev", "--port", String(port), "--ip", "127.0.0.1", "--persist-to", persist, ...inspector, ...varArgs, ...args]);
}

/** Resolves once `${url}/healthz` answers 200; throws with the process's output if it exits or takes 90 s. */
export async function waitReady(proc, url, what) {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (proc.child.exitCode !== null) throw new Error(`${what} exited early:\n${proc.output().slice(-3000)}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} did not become ready:\n${proc.output().slice(-3000)}`);
}

/** SIGTERM, then SIGKILL after 5 s. */
export async function stopProcess(proc) {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  const exited = new Promise((r) => proc.child.once("exit", r));
  proc.child.kill("SIGTERM");
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill("SIGKILL");
}

/**
 * `wrangler dev` for a measurement of workerd itself: its own process group (so that its workerd
 * processes can be found and sampled), run from `checkout` (another worktree's Worker, for
 * before/after figures), state in a temporary folder, killed with its group and the folder
 * removed when this process exits. Resolves once `/healthz` answers.
 *
 * @example
 * const dev = await startSampledWranglerDev({ vars: { RATE_LIMIT_PER_MINUTE: "0" } });
 * const before = dev.sample(); // { rss, cpu, at }
 */
export async function startSampledWranglerDev({ checkout = root, vars = {}, args = [], prefix = "edgetune-bench-" } = {}) {
  const { spawn, execFileSync } = await import("node:child_process");
  const { mkdtempSync, readFileSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const work = mkdtempSync(join(tmpdir(), prefix));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const varArgs = Object.entries({ EDGETUNE_DEV: "true", ...vars }).flatMap(([k, v]) => ["--var", `${k}:${v}`]);
  const child = spawn(
    process.execPath,
    [join(root, "node_modules/wrangler/bin/wrangler.js"), "dev", "--port", String(port), "--ip", "127.0.0.1", "--persist-to", join(work, "state"), ...args, ...varArgs],
    { cwd: checkout, env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1" }, stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const stop = () => {
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // gone
    }
    rmSync(work, { recursive: true, force: true });
  };
  process.once("exit", stop);
  for (let deadline = Date.now() + 90_000; ; ) {
    if (Date.now() > deadline) throw new Error(`wrangler dev did not start:\n${output.slice(-2000)}`);
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  /** workerd processes in wrangler's process group. */
  const workerdPids = () =>
    execFileSync("ps", ["-o", "pid=,pgid=,comm=", "-A"], { encoding: "utf8" })
      .trim()
      .split("\n")
      .map((l) => l.trim().split(/\s+/))
      .filter(([, pgid, comm]) => Number(pgid) === child.pid && comm.startsWith("workerd"))
      .map(([pid]) => Number(pid));
  const tick = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }));
  /** The workerd processes' resident bytes (each, largest first, and summed) and CPU seconds so far. */
  const sample = () => {
    const each = [];
    let cpu = 0;
    for (const pid of workerdPids()) {
      try {
        each.push(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) * 1024);
        const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
        cpu += (Number(fields[11]) + Number(fields[12])) / tick; // utime + stime, s
      } catch {
        // gone meanwhile
      }
    }
    each.sort((a, b) => b - a);
    return { rss: each.reduce((a, b) => a + b, 0), each, cpu, at: Date.now() };
  };
  return { base, port, child, stop, output: () => output, workerdPids, sample };
}

/** A one-epoch GPU-node job on two rows: with no node polling it stays queued (what the idle and stream benches hold open). */
export const QUEUED_GPU_JOB = {
  mode: "async",
  placement: "gpu-node",
  model: { layers: [{ type: "linear", in_features: 4, out_features: 3 }] },
  data: { train: { x: [[0, 1, 2, 3], [1, 2, 3, 4]], y: [0, 1] } },
  training: { epochs: 1, batch_size: 2, loss: { type: "cross_entropy" } },
};
