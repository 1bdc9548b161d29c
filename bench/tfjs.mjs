// tfjs side of `npm run bench`: @tensorflow/tfjs + @tensorflow/tfjs-backend-wasm 4.22 on Node,
// SIMD, 1 thread, the .wasm loaded from node_modules (fetch is disabled: no network).
//   node bench/tfjs.mjs tiny|mlp [--epochs N] [--repeats N]
// A hand-written training loop (optimizer.minimize) on tensors already in memory, after a warm-up pass.
import { createRequire } from "node:module";
import { join } from "node:path";
import * as fs from "node:fs";
import { MLP, TINY, root, seedMlp, stats } from "./lib.mjs";

const require = createRequire(import.meta.url);
const [workload, ...rest] = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : fallback;
};

// no network: any fetch is recorded and refused
const fetches = [];
globalThis.fetch = async (url) => {
  fetches.push(String(url));
  throw new Error(`bench: network disabled (fetch ${url})`);
};
// record which .wasm files the backend reads
const wasmReads = new Set();
for (const name of ["readFileSync", "readFile"]) {
  const real = fs[name];
  const patched = function (p, ...a) {
    if (String(p).endsWith(".wasm")) wasmReads.add(String(p).replace(root + "/", ""));
    return real.call(this, p, ...a);
  };
  try {
    require("fs")[name] = patched;
  } catch {
    // read-only export: the check below still reports the flags
  }
}

const log = console.log;
console.log = () => {}; // tfjs greets Node users on import
const tf = require("@tensorflow/tfjs");
const wasm = require("@tensorflow/tfjs-backend-wasm");
console.log = log;

tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false); // the single-threaded SIMD build
wasm.setWasmPaths(join(root, "node_modules/@tensorflow/tfjs-backend-wasm/dist") + "/");
if (!(await tf.setBackend("wasm"))) throw new Error("tfjs: the wasm backend did not initialise");
await tf.ready();
const backend = {
  name: tf.getBackend(),
  simd: await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT"),
  multithread: await tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT"),
  threads: tf.backend().wasm?._get_threads_count?.() ?? null,
  version: tf.version.tfjs,
};
if (backend.name !== "wasm" || !backend.simd) throw new Error(`tfjs: expected wasm with SIMD, got ${JSON.stringify(backend)}`);

/** A dense layer's variables, PyTorch-style default init (values do not matter for speed). */
function dense(inp, out) {
  const bound = 1 / Math.sqrt(inp);
  return {
    w: tf.variable(tf.randomUniform([inp, out], -bound, bound, "float32", 1)),
    b: tf.variable(tf.randomUniform([out], -bound, bound, "float32", 2)),
  };
}

function trainLoop(layers, lossFn, batches, epochs, optimizer) {
  let total = 0;
  for (let e = 0; e < epochs; e++) {
    for (const { x, y } of batches) {
      const cost = optimizer.minimize(() => {
        const h = tf.relu(tf.add(tf.matMul(x, layers[0].w), layers[0].b));
        const out = tf.add(tf.matMul(h, layers[1].w), layers[1].b);
        return lossFn(out, y);
      }, true);
      total += cost.dataSync()[0];
      cost.dispose();
    }
  }
  return total;
}

function batchesOf(x, y, rows, batch) {
  const out = [];
  for (let i = 0; i < rows; i += batch) {
    const n = Math.min(batch, rows - i);
    out.push({ x: x.slice([i, 0], [n, -1]), y: y.slice([i, 0], [n, -1]) });
  }
  return out;
}

function time(fn, repeats) {
  const times = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  return stats(times);
}

let result;
if (workload === "tiny") {
  const { x, y } = seedMlp();
  const X = tf.tensor2d(x.flat(), [TINY.rows, TINY.features]);
  const Y = tf.tensor2d(y, [TINY.rows, 1]);
  const batches = batchesOf(X, Y, TINY.rows, TINY.batch);
  const layers = [dense(TINY.features, TINY.hidden), dense(TINY.hidden, TINY.outputs)];
  const opt = tf.train.adam(TINY.lr);
  const mse = (p, t) => tf.mean(tf.squaredDifference(p, t));
  trainLoop(layers, mse, batches, 1, opt); // warm-up pass
  const s = time(() => trainLoop(layers, mse, batches, TINY.epochs, opt), Number(arg("repeats", 3)));
  result = { steps: TINY.steps, run_ms: s, steps_per_s: (TINY.steps / s.median) * 1000, us_per_step: (s.median * 1000) / TINY.steps };
} else if (workload === "mlp") {
  const epochs = Number(arg("epochs", 1));
  const X = tf.randomUniform([MLP.rows, MLP.features], 0, 1, "float32", 3);
  const labels = tf.randomUniform([MLP.rows], 0, MLP.classes, "int32", 4);
  const Y = tf.oneHot(labels, MLP.classes).toFloat();
  const batches = batchesOf(X, Y, MLP.rows, MLP.batch);
  const layers = [dense(MLP.features, MLP.hidden), dense(MLP.hidden, MLP.classes)];
  const opt = tf.train.adam(MLP.lr);
  const ce = (logits, onehot) => tf.losses.softmaxCrossEntropy(onehot, logits);
  trainLoop(layers, ce, batches, 1, opt); // warm-up epoch
  const s = time(() => trainLoop(layers, ce, batches, epochs, opt), Number(arg("repeats", 1)));
  const samples = MLP.rows * epochs;
  result = { epochs, samples, run_ms: s, samples_per_s: (samples / s.median) * 1000 };
} else {
  console.error("usage: node bench/tfjs.mjs tiny|mlp");
  process.exit(2);
}
console.log(JSON.stringify({ workload, available: true, backend, wasm_files: [...wasmReads], fetches, tensors: tf.memory().numTensors, ...result }));
