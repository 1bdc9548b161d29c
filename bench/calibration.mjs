// The cost model's calibration grid (issue 21): whole sync training runs of Linear(W, W)-ReLU-
// Linear(W, 10) MLPs over batch sizes x widths x {SGD, Adam}, each timed end to end (prepare,
// initialisation, the loop, the safetensors output) in the in-Worker configuration: one thread,
// the WASM kernel core (run under --experimental-wasm-relaxed-simd, the build workerd loads).
// Each point's run is sized to take a few hundred ms by a rough rate; the fastest of --repeats
// runs is kept (other processes only ever slow a run down). Each point also runs as a sync POST
// to a real `wrangler dev` (the budget lifted so every point runs): its training time in workerd
// is recorded next to the in-process one (workerd_to_node; they differ by this shared machine's
// noise, 0.6-2.5x, median 1.23x), and the POST's time as the client saw it (request_ms: with
// storing the weights in local R2 and the answer, seconds for the largest models).
// Next to each measurement it writes the estimate of src/api/budget.ts (estimateCpuMs,
// stepTrafficBytes) and their ratio; test/api/calibration.test.ts checks every point is within 1.5x.
//   node --experimental-wasm-relaxed-simd bench/calibration.mjs [--repeats 3] [--out bench/calibration.json]
//   node bench/calibration.mjs --rescore bench/calibration.json   (the estimates again, after changing the model)
// `npm run bench -- --only calibration` runs it (and writes bench/calibration.json).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, machineInfo, root, startWranglerDev, stopProcess, waitReady } from "./lib.mjs";

const argv = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
};
const REPEATS = Number(arg("repeats", 3));
const OUT = arg("out", join(root, "bench", "calibration.json"));
const WIDTHS = (arg("widths", "16,128,512,2048,4096")).split(",").map(Number);
const BATCHES = (arg("batches", "1,16,256")).split(",").map(Number);
const OPTIMIZERS = [
  { type: "sgd", lr: 0.01 },
  { type: "adam", lr: 1e-3 },
];
const TARGET_MS = Number(arg("target-ms", 600));
const OUTPUTS = 10;

const { train } = await import(join(root, "dist/src/node/index.js"));
const { DEFAULT_EDGE_BUDGET, estimateCpuMs, stepTrafficBytes } = await import(join(root, "dist/src/api/budget.js"));

/** A point's request: rows of batch-size batches, epochs sized so the run takes about TARGET_MS. */
function request(width, batch, optimizer, epochs, stepsPerEpoch) {
  const rows = batch * stepsPerEpoch;
  const x = Array.from({ length: rows }, (_, i) => Array.from({ length: width }, (_, j) => Math.round(Math.sin(i * 7 + j) * 500) / 1000));
  const y = Array.from({ length: rows }, (_, i) => Array.from({ length: OUTPUTS }, (_, j) => Math.round(Math.cos(i + j) * 500) / 1000));
  return {
    model: {
      layers: [
        { type: "linear", in_features: width, out_features: width },
        { type: "relu" },
        { type: "linear", in_features: width, out_features: OUTPUTS },
      ],
    },
    data: { train: { x, y } },
    training: { epochs, batch_size: batch, optimizer, shuffle: false, loss: { type: "mse" } },
  };
}

const estimate = (plan, optimizer) => estimateCpuMs(plan, DEFAULT_EDGE_BUDGET, stepTrafficBytes(plan, { momentum: 0, ...optimizer }, "float32"));
const round = (v, digits) => Math.round(v * 10 ** digits) / 10 ** digits;

// --rescore FILE: the estimates of a committed calibration again, with the cost model as built now
if (argv.includes("--rescore")) {
  const file = arg("rescore");
  const saved = JSON.parse(readFileSync(file, "utf8"));
  for (const p of saved.points) {
    const e = estimate({ ...p.plan, batch_size: p.batch_size, stepsPerEpoch: p.rows / p.batch_size }, OPTIMIZERS.find((o) => o.type === p.optimizer));
    p.estimate_ms = round(e, 1);
    p.ratio = round(e / p.measured_ms, 2);
  }
  for (const p of saved.epoch_points ?? []) {
    const e = estimate({ ...p.plan, batch_size: p.batch_size, stepsPerEpoch: p.rows / p.batch_size }, { type: p.optimizer });
    p.estimate_ms = round(e, 1);
    p.ratio = round(e / p.measured_ms, 2);
  }
  saved.budget = DEFAULT_EDGE_BUDGET;
  saved.ratio_range = [Math.min(...saved.points.map((p) => p.ratio)), Math.max(...saved.points.map((p) => p.ratio))];
  writeFileSync(file, `${JSON.stringify(saved, null, 2)}\n`);
  console.log(JSON.stringify({ rescored: saved.points.length, ratio_range: saved.ratio_range }));
  process.exit(0);
}

// the run of a point: rows of batch-size batches, steps sized so it takes about TARGET_MS
function sizing(width, batch, optimizer) {
  const params = width * width + width * OUTPUTS + width + OUTPUTS;
  const states = optimizer.type === "adam" ? 2 : 0;
  const stepMs = Math.max((6 * batch * params) / 3e7, (params * 4 * (8 + 2 * states)) / 2e6) + 0.02;
  const steps = Math.max(1, Math.min(40_000, Math.round(TARGET_MS / stepMs)));
  const stepsPerEpoch = Math.max(1, Math.min(64, steps, Math.floor(2 ** 18 / (width * batch))));
  return { stepsPerEpoch, epochs: Math.max(1, Math.round(steps / stepsPerEpoch)) };
}

const machine = machineInfo();
const work = mkdtempSync(join(tmpdir(), "edgetune-calibration-"));
const port = await freePort();
// the budget is lifted so every point runs sync; the estimate below uses the defaults
const dev = await startWranglerDev(port, join(work, "state"), { EDGE_MAX_CPU_MS: "100000000", EDGE_MAX_MEMORY_BYTES: String(2 ** 31), MAX_STORED_BYTES_PER_KEY: String(2 ** 40) });
const points = [];
try {
  await waitReady(dev, `http://127.0.0.1:${port}`, "wrangler dev");
  for (const width of WIDTHS) {
    for (const batch of BATCHES) {
      for (const optimizer of OPTIMIZERS) {
        const { stepsPerEpoch, epochs } = sizing(width, batch, optimizer);
        const body = request(width, batch, optimizer, epochs, stepsPerEpoch);
        const text = JSON.stringify({ ...body, mode: "sync" });
        let best = Infinity;
        let result = null;
        let wranglerError = null;
        // the largest models take tens of seconds to store in wrangler dev's local R2: fewer runs
        const repeats = width >= 4096 ? 1 : width >= 2048 ? Math.min(2, REPEATS) : REPEATS;
        for (let r = 0; r < repeats && wranglerError === null; r++) {
          const t0 = performance.now();
          try {
            const res = await fetch(`http://127.0.0.1:${port}/v1/fine-tunes`, { method: "POST", headers: { "content-type": "application/json" }, body: text, signal: AbortSignal.timeout(150_000) });
            const answer = await res.text();
            const ms = performance.now() - t0;
            if (res.status !== 200) throw new Error(`wrangler dev answered ${res.status}: ${answer.slice(0, 300)}`);
            const json = JSON.parse(answer);
            if (result === null || json.metrics.duration_ms < result.metrics.duration_ms) {
              best = ms;
              result = { metrics: json.metrics, plan: json.plan };
            }
          } catch (e) {
            // wrangler dev cuts off some answers of ~90 MB (the W=4096 weights in base64)
            wranglerError = String(e.message ?? e).slice(0, 200);
          }
        }
        // the same run in process (Node, one thread): to compare, and to stand in where wrangler dev failed
        let inProcessMs = Infinity;
        let local = null;
        for (let r = 0; r < repeats; r++) {
          const t0 = performance.now();
          local = await train(body, { threads: 1, kernel: "wasm" });
          inProcessMs = Math.min(inProcessMs, performance.now() - t0);
        }
        const plan = { params: local.plan.params, trainable_params: local.plan.trainable_params, flops: local.plan.flops, steps: local.plan.steps, memory_bytes: local.plan.memory_bytes };
        const estimateMs = estimate({ ...plan, batch_size: batch, stepsPerEpoch }, optimizer);
        const workerdMs = result === null ? null : result.metrics.duration_ms;
        const point = {
          width, batch_size: batch, optimizer: optimizer.type, rows: batch * stepsPerEpoch, epochs, body_bytes: text.length,
          plan,
          measured_ms: round(inProcessMs, 1),
          request_ms: result === null ? null : Math.round(best),
          estimate_ms: round(estimateMs, 1),
          ratio: round(estimateMs / inProcessMs, 2),
          workerd_ms: workerdMs,
          workerd_to_node: workerdMs === null ? null : round(workerdMs / inProcessMs, 2),
          ...(wranglerError === null ? {} : { wrangler_error: wranglerError }),
        };
        points.push(point);
        process.stderr.write(`W=${width} bs=${batch} ${optimizer.type}: ${plan.steps} steps, ${(text.length / 1e6).toFixed(2)} MB; ${point.measured_ms} ms in process (workerd ${point.workerd_ms}, request ${point.request_ms}), estimate ${point.estimate_ms} ms (x${point.ratio})\n`);
      }
    }
  }
} finally {
  await stopProcess(dev);
  rmSync(work, { recursive: true, force: true });
}

// many one-step epochs: what the per-epoch cost is calibrated on (the tiny 10-10-1 MLP, 1 row)
const epochPoints = [];
for (const epochs of [100_000, 20_000]) {
  const rows = epochs === 100_000 ? 1 : 64;
  const body = {
    model: { layers: [{ type: "linear", in_features: 10, out_features: 10 }, { type: "relu" }, { type: "linear", in_features: 10, out_features: 1 }] },
    data: { train: { x: Array.from({ length: rows }, (_, i) => Array.from({ length: 10 }, (_, j) => ((i + j) % 7) / 7)), y: Array.from({ length: rows }, (_, i) => (i % 3) / 3) } },
    training: { epochs, batch_size: 1, optimizer: { type: "adam", lr: 1e-3 }, loss: { type: "mse" } },
  };
  let best = Infinity;
  let local = null;
  for (let r = 0; r < REPEATS; r++) {
    const t0 = performance.now();
    local = await train(body, { threads: 1, kernel: "wasm" });
    best = Math.min(best, performance.now() - t0);
  }
  const plan = { params: local.plan.params, trainable_params: local.plan.trainable_params, flops: local.plan.flops, steps: local.plan.steps, memory_bytes: local.plan.memory_bytes };
  const e = estimate({ ...plan, batch_size: 1, stepsPerEpoch: rows }, { type: "adam" });
  epochPoints.push({ model: "10-10-1", rows, batch_size: 1, epochs, optimizer: "adam", plan, measured_ms: round(best, 1), estimate_ms: round(e, 1), ratio: round(e / best, 2) });
  process.stderr.write(`10-10-1, ${rows} rows x ${epochs} epochs: ${round(best, 1)} ms in process, estimate ${round(e, 1)} ms\n`);
}

const ratios = points.map((p) => p.ratio);
const out = {
  what:
    "whole sync runs of Linear(W,W)-ReLU-Linear(W,10) MLPs, MSE. measured_ms: the run timed in process (Node, one thread, the relaxed-SIMD WASM kernels workerd loads), the fastest of `repeats`; workerd_ms: the same run's metrics.duration_ms as a sync POST to wrangler dev (fastest of `repeats`, 1 for W=4096), workerd_to_node their ratio; request_ms: that POST as the client saw it (parsing the body, storing the job and its weights in local R2, the answer); estimate_ms: src/api/budget.ts with DEFAULT_EDGE_BUDGET",
  command: "node --experimental-wasm-relaxed-simd bench/calibration.mjs",
  machine,
  repeats: REPEATS,
  budget: DEFAULT_EDGE_BUDGET,
  ratio_range: [Math.min(...ratios), Math.max(...ratios)],
  points,
  epoch_points: epochPoints,
};
writeFileSync(OUT, `${JSON.stringify(out, null, 2)}\n`);
console.log(JSON.stringify({ points: points.length, ratio_range: out.ratio_range, out: OUT }));
