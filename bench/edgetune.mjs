// edgetune side of `npm run bench`: one workload per process, one JSON line on stdout.
//   node bench/edgetune.mjs tiny|mlp|cnn|encoder|bert-tiny|gemm|instantiate|memory|profile [--repeats N]
// Imports the built package (dist/, build/wasm); run `npm run build` first (bench/run.mjs does).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  BERT_TINY, bertTinyRequest, CNN, ENCODER, MEMORY, MLP, TINY, cnnRequest, encoderRequest, randomTokens, dist, memoryRequest, mlpRequest, nowMs, randomClassification, root, seedMlp, stats, tinyRequest,
} from "./lib.mjs";

const { train, loadNodeRuntime, prepareRun, runPrepared, tableFromInline, writeSafetensors } = await import(dist("src/node/index.js"));
const { instantiateKernels, acquireKernels, releaseKernels } = await import(dist("src/engine/kernels.js"));
const { createWasmBackend } = await import(dist("src/engine/wasm-backend.js"));
const { Arena } = await import(dist("src/engine/arena.js"));
const { convOp } = await import(dist("src/engine/ops/conv.js"));

const [workload, ...rest] = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : fallback;
};
const out = (o) => console.log(JSON.stringify(o));

async function timeCalls(fn, repeats) {
  await fn(); // warm-up call
  const times = [];
  const cpu = []; // this process's CPU time per call (all its threads): what other processes on a shared machine do not inflate
  let last;
  for (let i = 0; i < repeats; i++) {
    const c0 = process.cpuUsage();
    const t0 = nowMs();
    last = await fn();
    times.push(nowMs() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  return { times, cpu, last };
}

// ------------------------------------------------------------------ tiny
async function tiny() {
  const repeats = Number(arg("repeats", 5));
  const runtime = await loadNodeRuntime();
  const request = tinyRequest(seedMlp());
  // the fused steps (the default) and the JS-driven steps (fused: false), calls alternated so
  // that a busy machine slows both alike, after a warm-up call of each
  await train(request);
  await train(request, { fused: false });
  const fusedTimes = [], stepped = [], fusedCpu = [];
  let last;
  for (let i = 0; i < repeats; i++) {
    const c0 = process.cpuUsage();
    let t0 = nowMs();
    last = await train(request);
    fusedTimes.push(nowMs() - t0);
    const c = process.cpuUsage(c0);
    fusedCpu.push((c.user + c.system) / 1000); // this process's CPU time: what other processes do not stretch
    t0 = nowMs();
    await train(request, { fused: false });
    stepped.push(nowMs() - t0);
  }
  const s = stats(fusedTimes);
  // phases of one call: validation + planning (prepareRun), then training + encoding (runPrepared)
  const prep = [];
  const run = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = nowMs();
    const p = prepareRun(request);
    const t1 = nowMs();
    await runPrepared(runtime, p);
    prep.push(t1 - t0);
    run.push(nowMs() - t1);
  }
  const floor = await tinyKernelFloor(runtime);
  out({
    workload: "tiny", variant: runtime.variant, kernel_floor: floor, fused_floor: await tinyFusedFloor(runtime, request), steps: last.metrics.steps, status: last.status,
    final_loss: last.metrics.history.at(-1).train_loss,
    call_ms: s, steps_per_s: (TINY.steps / s.median) * 1000, cpu_ms: stats(fusedCpu),
    stepped_call_ms: stats(stepped), stepped_steps_per_s: (TINY.steps / stats(stepped).median) * 1000,
    // V8 is still optimising the validation and training code during the first calls after the warm-up
    first10_call_ms: stats(fusedTimes.slice(0, 10)).median, last_half_call_ms: stats(fusedTimes.slice(fusedTimes.length >> 1)).median,
    phases_ms: { prepare: stats(prep).median, run_and_encode: stats(run).median },
  });
}

/**
 * The fused steps of the tiny run alone (program.ts): each epoch's optimizer scalars recorded
 * (prepare, in JS) and its 32 steps run as one run_program call, 20 epochs; what a train()
 * call spends in the kernel core and in the per-step JS that remains.
 */
async function tinyFusedFloor(runtime, request) {
  const prepared = prepareRun(request);
  const instance = await acquireKernels(runtime.module);
  try {
    const backend = await createWasmBackend(instance, prepared, prepared.initialState, { variant: runtime.variant });
    const fused = backend.fused;
    if (!fused) return null;
    fused.setOrder(null);
    const runs = [], prepares = [];
    for (let r = 0; r < 35; r++) {
      let prep = 0, run = 0;
      for (let e = 0; e < TINY.epochs; e++) {
        const t0 = nowMs();
        for (let st = 0; st < TINY.stepsPerEpoch; st++) fused.prepare(st);
        const t1 = nowMs();
        fused.run(0, TINY.stepsPerEpoch);
        run += nowMs() - t1;
        prep += t1 - t0;
      }
      if (r >= 15) (runs.push(run), prepares.push(prep)); // the first 15: tier-up
    }
    const run_ms = stats(runs).median, prepare_ms = stats(prepares).median;
    return { calls_per_epoch: 1, run_ms, prepare_ms, us_per_step: (run_ms * 1000) / TINY.steps, prepare_us_per_step: (prepare_ms * 1000) / TINY.steps };
  } finally {
    releaseKernels(runtime.module, instance);
  }
}

/**
 * The kernel work of one tiny step called straight from JS, without the engine around it:
 * the 15 kernel calls a step makes (forward, MSE, zero_grad, backward, finiteness checks,
 * last-finite copy, Adam), 640 times. The floor any JS-driven step loop over these kernels pays.
 */
async function tinyKernelFloor(runtime) {
  const memory = new WebAssembly.Memory({ initial: 1 });
  const k = await instantiateKernels(runtime.module, memory);
  const arena = new Arena(memory, k.heap_base());
  const B = TINY.batch, F = TINY.features, H = TINY.hidden, O = TINY.outputs;
  const P = H * F + H + O * H + O;
  const x = arena.alloc(TINY.rows * F), y = arena.alloc(TINY.rows * O);
  const params = arena.alloc(P), grads = arena.alloc(P), m = arena.alloc(P), v = arena.alloc(P), last = arena.alloc(P);
  const h = arena.alloc(B * H), a = arena.alloc(B * H), out = arena.alloc(B * O), gA = arena.alloc(B * H), gB = arena.alloc(B * H);
  const scratch = arena.alloc(H * F);
  arena.f32(x).fill(0.5); arena.f32(y).fill(0.25); arena.f32(params).fill(0.01);
  const w1 = params.ptr, b1 = w1 + H * F * 4, w2 = b1 + H * 4, b2 = w2 + O * H * 4;
  const dw1 = grads.ptr, db1 = dw1 + H * F * 4, dw2 = db1 + H * 4, db2 = dw2 + O * H * 4;
  const epoch = () => {
    for (let s = 0; s < TINY.stepsPerEpoch; s++) {
      const rows = Math.min(B, TINY.rows - s * B);
      const xp = x.ptr + s * B * F * 4, yp = y.ptr + s * B * O * 4;
      k.matmul_nt(h.ptr, xp, w1, b1, scratch.ptr, rows, H, F);
      k.activation_forward(a.ptr, h.ptr, 0, 0, rows * H); // relu
      k.matmul_nt(out.ptr, a.ptr, w2, b2, scratch.ptr, rows, O, H);
      k.mse_loss(gA.ptr, out.ptr, yp, rows * O);
      k.fill(grads.ptr, 0, P);
      k.matmul_tn(dw2, gA.ptr, a.ptr, O, H, rows, 1);
      k.bias_grad(db2, gA.ptr, rows, O);
      k.matmul_nn(gB.ptr, gA.ptr, w2, rows, H, O, 0);
      k.activation_backward(gA.ptr, gB.ptr, h.ptr, a.ptr, 0, 0, rows * H); // relu
      k.matmul_tn(dw1, gA.ptr, xp, H, F, rows, 1);
      k.bias_grad(db1, gA.ptr, rows, H);
      k.all_finite(grads.ptr, P);
      k.copy(last.ptr, params.ptr, P);
      k.adam_step(params.ptr, grads.ptr, m.ptr, v.ptr, 0, P, 1e-3, 0.9, 0.1, 0.999, 0.001, 1, 1e-8, 0, 1, 0, 0, 0);
      k.all_finite(params.ptr, P);
    }
  };
  for (let i = 0; i < 20; i++) epoch(); // tier up
  const runs = [];
  for (let r = 0; r < 15; r++) {
    const t0 = nowMs();
    for (let e = 0; e < TINY.epochs; e++) epoch();
    runs.push(nowMs() - t0);
  }
  const ms = stats(runs).median;
  return { calls_per_step: 15, run_ms: ms, us_per_step: (ms * 1000) / TINY.steps };
}

// ------------------------------------------------------------------ mlp
async function mlp() {
  const repeats = Number(arg("repeats", 3));
  const epochs = Number(arg("epochs", MLP.epochs));
  const runtime = await loadNodeRuntime();
  const data = randomClassification(MLP.rows, MLP.features, MLP.classes, 1);
  const request = mlpRequest(data, epochs);
  const samples = MLP.rows * epochs;
  const result = {};
  // whole train() calls on the inline JSON request (what SPEC section 6 times)
  {
    const { times, last } = await timeCalls(() => train(request), repeats);
    const s = stats(times);
    result.inline = { call_ms: s, samples_per_s: (samples / s.median) * 1000, status: last.status, steps: last.metrics.steps,
      final_loss: last.metrics.history.at(-1).train_loss };
  }
  // the same with data already parsed into a Table (as a CSV upload arrives): no per-number zod validation
  {
    const table = tableFromInline(data, "data.train");
    const req = { ...request, data: {} };
    const { times } = await timeCalls(() => train(req, { tables: { train: table } }), repeats);
    const s = stats(times);
    result.tables = { call_ms: s, samples_per_s: (samples / s.median) * 1000 };
  }
  // TrainOptions.threads = 2 (whatever the engine does with it)
  {
    const { times, last } = await timeCalls(() => train(request, { threads: 2 }), repeats);
    const s = stats(times);
    result.threads2 = { call_ms: s, samples_per_s: (samples / s.median) * 1000, engine_threads: last.engine?.threads };
  }
  // issue 17: one epoch as one whole train() call, the dataset as JSON (the request object; and
  // its text, parsed in the call) and as a safetensors file (x F32 [4096, 784], y I64 [4096])
  {
    const oneEpoch = mlpRequest(data, 1);
    const text = JSON.stringify(oneEpoch);
    const bytes = writeSafetensors([
      { name: "x", shape: [MLP.rows, MLP.features], data: Float32Array.from(data.x.flat()) },
      { name: "y", shape: [MLP.rows], data: Float32Array.from(data.y), dtype: "I64" },
    ]);
    const binary = { ...oneEpoch, data: { train: bytes } };
    const call = async (label, fn) => {
      const { times, last } = await timeCalls(fn, repeats);
      const s = stats(times);
      return { call_ms: s, samples_per_s: (MLP.rows / s.median) * 1000, final_loss: last.metrics.history.at(-1).train_loss, engine_threads: last.engine?.threads };
    };
    result.one_epoch = {
      json: await call("json", () => train(oneEpoch)),
      json_text: await call("json text", () => train(JSON.parse(text))),
      binary: await call("binary", () => train(binary)),
      binary_threads2: await call("binary, 2 threads", () => train(binary, { threads: 2 })),
      json_text_bytes: text.length,
      binary_bytes: bytes.length,
    };
    const t1 = nowMs();
    prepareRun(oneEpoch);
    const t2 = nowMs();
    prepareRun(binary);
    result.one_epoch.prepare_ms = { json: t2 - t1, binary: nowMs() - t2 };
  }
  const t0 = nowMs();
  prepareRun(request);
  result.prepare_ms = nowMs() - t0;
  out({ workload: "mlp", variant: runtime.variant, epochs, samples, flops_per_sample: MLP.flopsPerSample, ...result });
}

// ------------------------------------------------------------------ cnn
async function cnn() {
  const repeats = Number(arg("repeats", 3));
  const epochs = Number(arg("epochs", CNN.epochs));
  const runtime = await loadNodeRuntime();
  const data = randomClassification(CNN.rows, CNN.side * CNN.side, CNN.classes, 4);
  const request = cnnRequest(data, epochs);
  const samples = CNN.rows * epochs;
  const { times, last } = await timeCalls(() => train(request), repeats);
  const s = stats(times);
  const inline = { call_ms: s, samples_per_s: (samples / s.median) * 1000, status: last.status, steps: last.metrics.steps,
    final_loss: last.metrics.history.at(-1).train_loss, kernel: last.engine?.kernel };
  const table = tableFromInline(data, "data.train");
  const tabled = await timeCalls(() => train({ ...request, data: {} }, { tables: { train: table } }), repeats);
  const tables = { call_ms: stats(tabled.times), samples_per_s: (samples / stats(tabled.times).median) * 1000 };
  out({ workload: "cnn", variant: runtime.variant, epochs, samples, flops_per_sample: CNN.flopsPerSample, inline, tables, conv: await convShapes(runtime) });
}

// ------------------------------------------------------------------ encoder
async function encoder() {
  const repeats = Number(arg("repeats", 3));
  const epochs = Number(arg("epochs", ENCODER.epochs));
  const runtime = await loadNodeRuntime();
  const E = ENCODER;
  const request = encoderRequest(randomTokens(E.rows, E.tokens, E.vocab, E.classes, 5), epochs);
  const samples = E.rows * epochs;
  const { times, cpu, last } = await timeCalls(() => train(request), repeats);
  const s = stats(times);
  out({
    workload: "encoder", variant: runtime.variant, epochs, samples,
    inline: { call_ms: s, cpu_ms: stats(cpu).median, samples_per_s: (samples / s.median) * 1000, status: last.status, steps: last.metrics.steps,
      final_loss: last.metrics.history.at(-1).train_loss, kernel: last.engine?.kernel },
  });
}

// ------------------------------------------------------------------ bert-tiny
async function bertTiny() {
  const repeats = Number(arg("repeats", 3));
  const epochs = Number(arg("epochs", BERT_TINY.epochs));
  const runtime = await loadNodeRuntime();
  const B = BERT_TINY;
  const request = bertTinyRequest(randomTokens(B.rows, B.tokens, B.vocab, B.classes, 7), epochs);
  const samples = B.rows * epochs;
  const { times, cpu, last } = await timeCalls(() => train(request), repeats);
  const s = stats(times);
  out({
    workload: "bert-tiny", variant: runtime.variant, epochs, samples,
    inline: { call_ms: s, cpu_ms: stats(cpu).median, samples_per_s: (samples / s.median) * 1000, status: last.status, steps: last.metrics.steps,
      final_loss: last.metrics.history.at(-1).train_loss, kernel: last.engine?.kernel },
  });
}

async function compileBenchKernel(name, relaxed) {
  const { default: asc } = await import("assemblyscript/asc");
  const { mkdirSync } = await import("node:fs");
  const dir = join(root, "bench/.build");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}${relaxed ? "-relaxed" : ""}.wasm`);
  const flags = ["--enable", "simd", ...(relaxed ? ["--enable", "relaxed-simd"] : [])];
  const { error, stderr } = await asc.main([
    join(root, `bench/assembly/${name}.ts`), "--runtime", "stub", "--noAssert", "--use", "abort=", "--importMemory",
    "--optimizeLevel", "3", "--shrinkLevel", "0", ...flags, "--outFile", file,
  ]);
  if (error) throw new Error(`${name} build failed: ${stderr.toString()}`);
  return readFileSync(file);
}

/**
 * The two convolutions of the bench CNN, forward over a batch of 64: the kernel core's
 * im2col + GEMM (the conv op itself) against a direct register-blocked f32x4 loop over a
 * zero-padded copy (bench/assembly/conv_direct.ts); and the op's backward (dW, db, dx).
 */
async function convShapes(runtime) {
  const relaxed = runtime.variant === "wasm-relaxed-simd";
  const memory = new WebAssembly.Memory({ initial: 1 });
  const k = await instantiateKernels(runtime.module, memory);
  const arena = new Arena(memory, k.heap_base());
  const { instance } = await WebAssembly.instantiate(await compileBenchKernel("conv_direct", relaxed), { env: { memory } });
  const direct = instance.exports;
  const R = CNN.batch;
  const time = (fn) => {
    for (let w = 0; w < 5; w++) fn();
    let reps = 2;
    for (;;) {
      const t0 = nowMs();
      for (let i = 0; i < reps; i++) fn();
      if (nowMs() - t0 > 60) break;
      reps *= 2;
    }
    const us = [];
    for (let t = 0; t < 7; t++) {
      const t0 = nowMs();
      for (let i = 0; i < reps; i++) fn();
      us.push(((nowMs() - t0) * 1000) / reps);
    }
    return stats(us).median;
  };
  const r = (() => { let v = 3; return () => ((v = (v * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5; })();
  const shapes = {};
  for (const [label, C, O, side] of [["conv1 1->8 28x28", 1, 8, 28], ["conv2 8->16 14x14", 8, 16, 14]]) {
    const geo = { C, H: side, W: side, KH: 3, KW: 3, SH: 1, SW: 1, PH: 1, PW: 1, DH: 1, DW: 1, OH: side, OW: side };
    const op = { kind: "conv", inputs: [0], outputs: [1], weight: 0, bias: 1, O, groups: 1, ...geo, rowChunk: side };
    const image = C * side * side, outs = O * side * side, taps = C * 9;
    const fill = (reg) => { const a = arena.f32(reg); for (let i = 0; i < a.length; i++) a[i] = r(); return reg.ptr; };
    const x = fill(arena.alloc(R * image)), w = fill(arena.alloc(O * taps)), b = fill(arena.alloc(O)), dy = fill(arena.alloc(R * outs));
    const y = arena.alloc(R * outs).ptr, y2 = arena.alloc(R * outs).ptr, dx = arena.alloc(R * image).ptr;
    const dW = arena.alloc(O * taps).ptr, db = arena.alloc(O).ptr;
    const ws = arena.alloc(convOp.workspace(op, R)).ptr;
    const xp = arena.alloc(C * (side + 2) ** 2).ptr;
    const c = { k, value: (id) => (id === 0 ? x : y), state: (i) => (i === 0 ? w : i === 1 ? b : 0), grad: (i) => (i === 0 ? dW : i === 1 ? db : 0), saved: () => 0, workspace: ws, training: true, seed: 0 };
    const im2colForward = () => convOp.kernel.forward(c, op, R);
    const directForward = () => {
      for (let n = 0; n < R; n++) {
        direct.conv_pad(xp, x + n * image * 4, C, side, side, 1);
        direct.conv_direct(y2 + n * outs * 4, xp, w, b, C, side + 2, side + 2, O, 3, 3, side, side);
      }
    };
    im2colForward();
    directForward();
    const a = arena.f32(y, R * outs), d = arena.f32(y2, R * outs);
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - d[i]));
    const flops = 2 * R * outs * taps;
    const tIm2col = time(im2colForward), tDirect = time(directForward);
    const tBackward = time(() => convOp.kernel.backward(c, op, R, [dy], [C > 1 ? dx : 0]));
    shapes[label] = {
      forward_im2col_gemm_us: tIm2col, forward_direct_us: tDirect,
      forward_im2col_gemm_gflops: flops / (tIm2col * 1000), forward_direct_gflops: flops / (tDirect * 1000),
      backward_us: tBackward, backward_has_dx: C > 1, max_abs_diff: maxDiff,
    };
  }
  return shapes;
}

// ------------------------------------------------------------------ gemm + peak
async function compilePeak(relaxed) {
  const { default: asc } = await import("assemblyscript/asc");
  const { mkdirSync } = await import("node:fs");
  const dir = join(root, "bench/.build");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, relaxed ? "peak-relaxed.wasm" : "peak-simd.wasm");
  const flags = ["--enable", "simd", ...(relaxed ? ["--enable", "relaxed-simd"] : [])];
  const { error, stderr } = await asc.main([
    join(root, "bench/assembly/peak.ts"), "--runtime", "stub", "--noAssert", "--use", "abort=",
    "--optimizeLevel", "3", "--shrinkLevel", "0", ...flags, "--outFile", file,
  ]);
  if (error) throw new Error(`peak build failed: ${stderr.toString()}`);
  return readFileSync(file);
}

/**
 * The machine's f32x4 peak: the better of two loops, each timed best of 7 (bench/assembly/peak.ts):
 * a register-only loop of 12 independent multiply-add chains, and the GEMM's 4x8 register tile
 * over operands that stay in L1, with no stores. The tile is the higher on this machine: its
 * multiplies do not wait on the accumulators, while the register loop's chains carry both.
 */
async function measurePeak(relaxed) {
  const bytes = await compilePeak(relaxed);
  const { instance } = await WebAssembly.instantiate(bytes, {});
  const { peak, peak_tile, FLOPS_PER_ITER, TILE_FLOPS_PER_ITER } = instance.exports;
  const best = (fn, flopsPerIter) => {
    fn(1_000_000); // tier up
    let iters = 1_000_000;
    for (;;) {
      const t0 = nowMs();
      fn(iters);
      if (nowMs() - t0 > 100) break;
      iters *= 2;
    }
    const rates = [];
    for (let r = 0; r < 7; r++) {
      const t0 = nowMs();
      fn(iters);
      const ms = nowMs() - t0;
      rates.push((iters * flopsPerIter) / (ms * 1e6));
    }
    return stats(rates);
  };
  const register = best((n) => peak(n, 0.5), FLOPS_PER_ITER.value);
  const tile = best((n) => peak_tile(n, 1024), TILE_FLOPS_PER_ITER.value);
  const top = tile.max >= register.max ? { form: "4x8 tile, operands in L1", s: tile } : { form: "register loop, 12 chains", s: register };
  return {
    gflops: top.s.max, median: top.s.median, form: top.form,
    register_loop_gflops: register.max, tile_gflops: tile.max, accumulators: 12, flops_per_iter: FLOPS_PER_ITER.value,
  };
}

async function gemm() {
  const M = 256, N = 256, K = 256;
  const variant = arg("variant", undefined);
  const runtime = await loadNodeRuntime(variant ? { variant } : {});
  const memory = new WebAssembly.Memory({ initial: 1 });
  const k = await instantiateKernels(runtime.module, memory);
  const arena = new Arena(memory, k.heap_base());
  const a = arena.alloc(M * K), b = arena.alloc(K * N), o = arena.alloc(M * N), scratch = arena.alloc(K * N);
  const r = (() => { let s = 7; return () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5; })();
  arena.f32(a).forEach((_, i, arr) => (arr[i] = r()));
  arena.f32(b).forEach((_, i, arr) => (arr[i] = r()));
  const A = arena.f32(a).slice(), B = arena.f32(b).slice();
  // out = A·B (nn: b is [K,N]); nt: b read as [N,K]; tn: a read as [K,M]. Each gets scratch, as
  // the linear op gives its workspace (nt packs W^T there; nn and tn B's blocks, at this stride)
  const ops = {
    matmul_nn: () => k.matmul_nn(o.ptr, a.ptr, b.ptr, M, N, K, 0, scratch.ptr),
    matmul_nt: () => k.matmul_nt(o.ptr, a.ptr, b.ptr, 0, scratch.ptr, M, N, K),
    matmul_tn: () => k.matmul_tn(o.ptr, a.ptr, b.ptr, M, N, K, 0, scratch.ptr),
  };
  const ref = {
    matmul_nn: (i, j) => { let s = 0; for (let q = 0; q < K; q++) s += A[i * K + q] * B[q * N + j]; return s; },
    matmul_nt: (i, j) => { let s = 0; for (let q = 0; q < K; q++) s += A[i * K + q] * B[j * K + q]; return s; },
    matmul_tn: (i, j) => { let s = 0; for (let q = 0; q < K; q++) s += A[q * M + i] * B[q * N + j]; return s; },
  };
  const flops = 2 * M * N * K;
  const results = {};
  for (const [name, fn] of Object.entries(ops)) {
    fn();
    const got = arena.f32(o);
    let maxErr = 0;
    for (const [i, j] of [[0, 0], [17, 203], [255, 255], [128, 3]]) maxErr = Math.max(maxErr, Math.abs(got[i * N + j] - ref[name](i, j)));
    for (let w = 0; w < 20; w++) fn(); // tier up
    let reps = 10;
    for (;;) {
      const t0 = nowMs();
      for (let i = 0; i < reps; i++) fn();
      if (nowMs() - t0 > 60) break;
      reps *= 2;
    }
    const rates = [];
    for (let t = 0; t < 7; t++) {
      const t0 = nowMs();
      for (let i = 0; i < reps; i++) fn();
      rates.push((flops * reps) / ((nowMs() - t0) * 1e6));
    }
    const s = stats(rates);
    results[name] = { gflops: s.median, best: s.max, max_abs_error: maxErr };
  }
  // the mlp bench's GEMMs (batch 64, 784-256-10), to explain where its step time goes
  const shapes = {};
  const R = 64; // rows per batch
  const sa = arena.alloc(R * 784), sw = arena.alloc(784 * 256), so = arena.alloc(784 * 256), ss = arena.alloc(784 * 256);
  const rate = (fn, flops) => {
    for (let w = 0; w < 20; w++) fn();
    let reps = 10;
    for (;;) {
      const t0 = nowMs();
      for (let i = 0; i < reps; i++) fn();
      if (nowMs() - t0 > 40) break;
      reps *= 2;
    }
    const us = [];
    for (let t = 0; t < 5; t++) {
      const t0 = nowMs();
      for (let i = 0; i < reps; i++) fn();
      us.push(((nowMs() - t0) * 1000) / reps);
    }
    const m = stats(us).median;
    return { us: m, gflops: flops ? flops / (m * 1000) : null };
  };
  // forward fc1: out[64,256] = x[64,784] . W[256,784]^T (+ the W^T packing inside matmul_nt)
  shapes["fc1 forward matmul_nt 64x256x784"] = rate(() => k.matmul_nt(so.ptr, sa.ptr, sw.ptr, 0, ss.ptr, R, 256, 784), 2 * R * 256 * 784);
  shapes["  of which transpose W 256x784"] = rate(() => k.transpose(ss.ptr, sw.ptr, 784, 256), 0);
  shapes["fc1 forward matmul_nn on packed W^T 64x256x784"] = rate(() => k.matmul_nn(so.ptr, sa.ptr, ss.ptr, R, 256, 784, 0), 2 * R * 256 * 784);
  // weight gradient fc1: dW[256,784] += dy[64,256]^T . x[64,784]
  shapes["fc1 dW matmul_tn 256x784x64"] = rate(() => k.matmul_tn(so.ptr, sa.ptr, sw.ptr, 256, 784, R, 1), 2 * R * 256 * 784);
  shapes["fc2 forward matmul_nt 64x10x256"] = rate(() => k.matmul_nt(so.ptr, sa.ptr, sw.ptr, 0, ss.ptr, R, 10, 256), 2 * R * 10 * 256);
  const peak = await measurePeak(runtime.variant === "wasm-relaxed-simd");
  out({ workload: "gemm", variant: runtime.variant, shape: [M, N, K], ...results, mlp_shapes: shapes, peak });
}

// ------------------------------------------------------------------ WASM instantiation
async function instantiate() {
  const file = arg("file", "simd.wasm");
  const bytes = readFileSync(join(root, "build/wasm", file));
  const c0 = nowMs();
  const module = await WebAssembly.compile(bytes);
  const compileMs = nowMs() - c0;
  const times = [];
  for (let i = 0; i < 220; i++) {
    const memory = new WebAssembly.Memory({ initial: 1 });
    const t0 = nowMs();
    await WebAssembly.instantiate(module, { env: { memory } });
    if (i >= 20) times.push(nowMs() - t0); // first 20 warm the call path
  }
  out({ workload: "instantiate", file, bytes: bytes.length, compile_ms: compileMs, instantiate_ms: stats(times) });
}

// ------------------------------------------------------------------ memory
// Run with --expose-gc (bench/run.mjs does) so the baselines exclude garbage.
async function memory() {
  const mb = (x) => x / 2 ** 20;
  const v8 = await import("node:v8");
  await loadNodeRuntime();
  global.gc?.();
  const base = process.memoryUsage();
  const data = randomClassification(MEMORY.rows, MEMORY.features, MEMORY.classes, 3);
  const request = memoryRequest(data);
  global.gc?.();
  const withRequest = process.memoryUsage();
  const diagnostics = {};
  let heapPeak = withRequest.heapUsed;
  let samples = 0;
  const sample = () => {
    const h = v8.getHeapStatistics().used_heap_size;
    if (h > heapPeak) heapPeak = h;
    samples += 1;
  };
  const t0 = nowMs();
  // step events only to sample the JS heap while training (a cheap callback per step)
  const result = await train(request, { diagnostics, stepEvents: true, onProgress: sample });
  const ms = nowMs() - t0;
  sample();
  const after = process.memoryUsage();
  const maxRss = process.resourceUsage().maxRSS * 1024; // peak resident set of the whole process
  const wasmBytes = diagnostics.memoryBytes;
  out({
    workload: "memory", params: result.plan.params, rows: MEMORY.rows, features: MEMORY.features, epochs: MEMORY.epochs,
    batch: MEMORY.batch, status: result.status, train_ms: ms, samples_per_s: (MEMORY.rows * MEMORY.epochs) / (ms / 1000),
    gc_exposed: typeof global.gc === "function", heap_samples: samples,
    plan_memory_mb: mb(result.plan.memory_bytes),
    wasm_memory_mb: mb(wasmBytes), arena_mb: mb(diagnostics.arenaBytes),
    heap_base_mb: mb(base.heapUsed), request_heap_mb: mb(withRequest.heapUsed - base.heapUsed),
    heap_peak_mb: mb(heapPeak), heap_total_after_mb: mb(after.heapTotal),
    result_weights_mb: mb(result.weights.length),
    isolate_estimate_mb: mb(heapPeak + wasmBytes),
    rss_base_mb: mb(base.rss), rss_with_request_mb: mb(withRequest.rss), rss_peak_mb: mb(maxRss),
    rss_peak_delta_mb: mb(maxRss - base.rss),
  });
}

// ------------------------------------------------------------------ profile: where the time goes
// Wraps every kernel export with a timer by intercepting WebAssembly.instantiate for the
// kernel module, then runs the real train() and attributes time to kernels and to the rest.
async function profile() {
  const which = arg("of", "mlp");
  const runtime = await loadNodeRuntime();
  const totals = new Map();
  let calls = 0;
  const realInstantiate = WebAssembly.instantiate.bind(WebAssembly);
  WebAssembly.instantiate = async (mod, imports) => {
    const result = await realInstantiate(mod, imports);
    const instance = result instanceof WebAssembly.Instance ? result : result.instance;
    if (mod !== runtime.module) return result;
    const wrapped = {};
    for (const [name, fn] of Object.entries(instance.exports)) {
      if (typeof fn !== "function") { wrapped[name] = fn; continue; }
      wrapped[name] = (...args) => {
        const t0 = performance.now();
        const r = fn(...args);
        const dt = performance.now() - t0;
        const e = totals.get(name) ?? { ms: 0, calls: 0 };
        e.ms += dt; e.calls += 1; calls += 1;
        totals.set(name, e);
        return r;
      };
    }
    return { exports: wrapped };
  };
  // timer overhead per wrapped call
  const noop = () => 0;
  const t0 = performance.now();
  for (let i = 0; i < 1e5; i++) { const a = performance.now(); noop(); const b = performance.now(); if (b < a) throw 0; }
  const overheadMs = (performance.now() - t0) / 1e5;

  const request = which === "tiny" ? tinyRequest(seedMlp())
    : which === "cnn" ? cnnRequest(randomClassification(CNN.rows, CNN.side * CNN.side, CNN.classes, 4), 1)
    : which === "encoder" ? encoderRequest(randomTokens(ENCODER.rows, ENCODER.tokens, ENCODER.vocab, ENCODER.classes, 5), 1)
    : which === "bert-tiny" ? bertTinyRequest(randomTokens(BERT_TINY.rows, BERT_TINY.tokens, BERT_TINY.vocab, BERT_TINY.classes, 7), 1)
    : mlpRequest(randomClassification(MLP.rows, MLP.features, MLP.classes, 1), 1);
  await train(request); // warm-up
  totals.clear(); calls = 0;
  const p0 = performance.now();
  const prepared = prepareRun(request);
  const p1 = performance.now();
  await runPrepared(runtime, prepared);
  const p2 = performance.now();
  const kernelMs = [...totals.values()].reduce((s, e) => s + e.ms, 0);
  out({
    workload: `profile-${which}`, total_ms: p2 - p0, prepare_ms: p1 - p0, run_ms: p2 - p1, kernel_ms: kernelMs,
    kernel_calls: calls, timer_overhead_us_per_call: overheadMs * 1000,
    kernels: Object.fromEntries([...totals.entries()].sort((a, b) => b[1].ms - a[1].ms).map(([n, e]) => [n, { ms: e.ms, calls: e.calls }])),
  });
}

const workloads = { tiny, mlp, cnn, encoder, "bert-tiny": bertTiny, gemm, instantiate, memory, profile };
if (!workloads[workload]) {
  console.error(`usage: node bench/edgetune.mjs ${Object.keys(workloads).join("|")}`);
  process.exit(2);
}
await workloads[workload]();
