// The WebGPU benchmark of scripts/gpu-check.sh (`npm run bench:gpu`): whole train() calls on the
// WebGPU backend and on the WASM core with threads = cores, in this one run, on this machine.
//   node bench/gpu.mjs                   needs a hardware GPU adapter (exits 2 without one)
//   node bench/gpu.mjs --allow-software  also runs on SwiftShader, to test this script: its
//                                        timings are NOT performance figures and are printed as such
//   node bench/gpu.mjs --smoke           small sizes (with --allow-software: a quick self-test)
// Workloads: mlp (SPEC section 6: 784-256-10, cross-entropy, Adam, batch 64, 4,096 rows, 3 epochs)
// and large (4096-4096-4096-10 MLP, batch 512, 4,096 rows: a few hundred steps on the GPU; the
// WASM path runs one epoch of it, its rate is per FLOP so the ratio stands).
// GFLOP/s = the plan's FLOPs (forward, backward, update) / wall time of a train() call, after a
// warm-up call (pipeline compilation, JIT). One JSON line at the end, a table on stderr.
import { availableParallelism } from "node:os";
import { MLP, dist, mlpRequest, nowMs, randomClassification, rng } from "./lib.mjs";

const argv = process.argv.slice(2);
const allowSoftware = argv.includes("--allow-software");
const smoke = argv.includes("--smoke");
const say = (s) => process.stderr.write(`${s}\n`);

const { train, findWebGpuDevice, threadPool, tableFromInline } = await import(dist("src/node/index.js"));

const found = await findWebGpuDevice({ allowSoftware });
if (!found.device) {
  say(`bench:gpu: no GPU adapter: ${found.description}`);
  say("bench:gpu: this benchmark needs a hardware WebGPU adapter (on Linux: an NVIDIA driver with Vulkan, and the Vulkan loader libvulkan.so.1)");
  process.exit(2);
}
const device = found.device;
const threads = availableParallelism();
say(`bench:gpu: adapter ${found.description}${found.software ? " (SOFTWARE: timings below are not performance figures)" : ""}`);
say(`bench:gpu: WASM path on ${threads} threads (threads = cores)`);
const pool = threads > 1 ? await threadPool(threads) : undefined;

/** Times whole train() calls after one warm-up call; returns the median call. */
async function time(label, fn, repeats) {
  const t0 = nowMs();
  const warm = await fn(true);
  say(`bench:gpu: ${label}: warm-up ${((nowMs() - t0) / 1000).toFixed(1)} s (${warm.engine.kernel})`);
  const times = [];
  let last;
  for (let i = 0; i < repeats; i++) {
    const t = nowMs();
    last = await fn(false);
    times.push(nowMs() - t);
  }
  times.sort((a, b) => a - b);
  const ms = times[times.length >> 1];
  if (last.status !== "succeeded") throw new Error(`${label}: ${last.status} ${JSON.stringify(last.error)}`);
  return { ms, flops: last.plan.flops, steps: last.metrics.steps, gflops: last.plan.flops / ms / 1e6, kernel: last.engine.kernel, threads: last.engine.threads, loss: last.metrics.history.at(-1).train_loss };
}

const onGpu = { kernel: "webgpu", gpu: device };
const onWasm = { kernel: "wasm", ...(pool ? { parallel: pool } : {}) };
const results = {};

// ------------------------------------------------------------------ mlp
{
  const rows = smoke ? 512 : MLP.rows;
  const data = randomClassification(rows, MLP.features, MLP.classes, 1);
  const table = tableFromInline(data, "data.train");
  const request = { ...mlpRequest(data, MLP.epochs), data: {} };
  const run = (options) => () => train(request, { ...options, tables: { train: table } });
  const gpu = await time("mlp webgpu", run(onGpu), smoke ? 1 : 3);
  const wasm = await time("mlp wasm", run(onWasm), smoke ? 1 : 3);
  results.mlp = { workload: "784-256-10, batch 64, cross-entropy, Adam", rows, gpu, wasm, ratio: gpu.gflops / wasm.gflops };
}

// ------------------------------------------------------------------ large
{
  const width = smoke ? 256 : 4096;
  const batch = smoke ? 64 : 512;
  const rows = batch * 8;
  const classes = 10;
  const r = rng(7);
  const x = new Float32Array(rows * width);
  for (let i = 0; i < x.length; i++) x[i] = Math.fround(r() * 2 - 1);
  const y = new Float32Array(rows);
  for (let i = 0; i < rows; i++) y[i] = Math.floor(r() * classes);
  const table = { rows, features: width, targets: 1, x, y, targetsWereScalar: true };
  const request = (epochs) => ({
    model: {
      layers: [
        { type: "linear", name: "fc1", in_features: width, out_features: width }, { type: "relu" },
        { type: "linear", name: "fc2", in_features: width, out_features: width }, { type: "relu" },
        { type: "linear", name: "fc3", in_features: width, out_features: classes },
      ],
    },
    data: {},
    training: { epochs, batch_size: batch, shuffle: false, seed: 0, loss: { type: "cross_entropy" }, optimizer: { type: "adam", lr: 1e-4 } },
  });
  const gpuEpochs = smoke ? 2 : 40; // 320 steps
  const gpu = await time("large webgpu", (warm) => train(request(warm ? 1 : gpuEpochs), { ...onGpu, tables: { train: table } }), 1);
  const wasm = await time("large wasm", (warm) => train(request(1), { ...onWasm, tables: { train: table } }), 1);
  results.large = { workload: `${width}-${width}-${width}-${classes}, batch ${batch}, cross-entropy, Adam`, rows, gpu, wasm, ratio: gpu.gflops / wasm.gflops };
}

// ------------------------------------------------------------------ report
const fmt = (v, d = 1) => v.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
say("");
say(found.software ? "SOFTWARE ADAPTER: these timings test the script; they are not performance figures" : `WebGPU on ${found.description}, WASM on ${threads} threads:`);
say("| workload | steps (GPU / WASM) | WebGPU GFLOP/s | WASM GFLOP/s | WebGPU / WASM |");
say("| --- | --- | --- | --- | --- |");
for (const [name, r] of Object.entries(results)) {
  say(`| ${name}: ${r.workload} | ${r.gpu.steps} / ${r.wasm.steps} | ${fmt(r.gpu.gflops)} | ${fmt(r.wasm.gflops)} | ${fmt(r.ratio, 2)}x |`);
}
console.log(JSON.stringify({ adapter: found.description, software: found.software, threads, smoke, results }));
device.destroy();
await pool?.close();
process.exit(0);
