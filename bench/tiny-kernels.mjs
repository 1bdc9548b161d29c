// Nanoseconds per call of each kernel call a tiny training step makes (TINY in lib.mjs: a batch
// of 32, Linear(10,10)-ReLU-Linear(10,1), MSE, Adam; the 15 calls of edgetune.mjs's
// tinyKernelFloor), and of GEMMs with one narrow side from larger models, timed by this
// process's CPU time (other processes on a shared machine do not stretch it):
//   node bench/tiny-kernels.mjs                                    plain SIMD build
//   node --experimental-wasm-relaxed-simd bench/tiny-kernels.mjs   relaxed-SIMD build (the Worker's)
// Prints one JSON line. Needs `npm run build`. BENCHMARKS.md (the tiny paragraph) has the figures.
import { cpuMicrosPerCall, standaloneKernels, TINY } from "./lib.mjs";

const { runtime, k, arena } = await standaloneKernels();
let seed = 11;
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5;
const filled = (n) => {
  const region = arena.alloc(n);
  arena.f32(region).forEach((_, i, a) => (a[i] = rnd()));
  return region;
};

/** Median CPU nanoseconds per call (lib.mjs cpuMicrosPerCall), to 0.1 ns. */
const cpuNs = (fn) => Math.round(cpuMicrosPerCall(fn) * 10_000) / 10;

// ---- one tiny step's calls, on its shapes (values random: the timing does not depend on them)
const B = TINY.batch, F = TINY.features, H = TINY.hidden, O = TINY.outputs;
const P = H * F + H + O * H + O;
const x = filled(B * F), y = filled(B * O), params = filled(P), grads = filled(P), m = filled(P), v = arena.alloc(P), last = arena.alloc(P);
const h = arena.alloc(B * H), a = arena.alloc(B * H), out = arena.alloc(B * O), gA = filled(B * H), gB = arena.alloc(B * H);
const scratch = arena.alloc(H * F);
const w1 = params.ptr, b1 = w1 + H * F * 4, w2 = b1 + H * 4, b2 = w2 + O * H * 4;
const dw1 = grads.ptr, db1 = dw1 + H * F * 4, dw2 = db1 + H * 4, db2 = dw2 + O * H * 4;
const step = {
  [`matmul_nt ${B}x${H}x${F} + bias (fc1)`]: () => k.matmul_nt(h.ptr, x.ptr, w1, b1, scratch.ptr, B, H, F),
  [`relu forward ${B * H}`]: () => k.activation_forward(a.ptr, h.ptr, 0, 0, B * H),
  [`matmul_nt ${B}x${O}x${H} + bias (fc2)`]: () => k.matmul_nt(out.ptr, a.ptr, w2, b2, scratch.ptr, B, O, H),
  [`mse_loss ${B * O}`]: () => k.mse_loss(gA.ptr, out.ptr, y.ptr, B * O),
  [`fill ${P} (zero_grad)`]: () => k.fill(grads.ptr, 0, P),
  [`matmul_tn ${O}x${H}x${B} (dW fc2)`]: () => k.matmul_tn(dw2, gA.ptr, a.ptr, O, H, B, 1),
  [`bias_grad ${B}x${O}`]: () => k.bias_grad(db2, gA.ptr, B, O),
  [`matmul_nn ${B}x${H}x${O} (dx fc2)`]: () => k.matmul_nn(gB.ptr, gA.ptr, w2, B, H, O, 0),
  [`relu backward ${B * H}`]: () => k.activation_backward(gA.ptr, gB.ptr, h.ptr, a.ptr, 0, 0, B * H),
  [`matmul_tn ${H}x${F}x${B} (dW fc1)`]: () => k.matmul_tn(dw1, gA.ptr, x.ptr, H, F, B, 1),
  [`bias_grad ${B}x${H}`]: () => k.bias_grad(db1, gA.ptr, B, H),
  [`all_finite ${P} (gradients)`]: () => k.all_finite(grads.ptr, P),
  [`copy ${P} (snapshot)`]: () => k.copy(last.ptr, params.ptr, P),
  [`adam_step ${P}`]: () => k.adam_step(params.ptr, grads.ptr, m.ptr, v.ptr, 0, P, 1e-3, 0.9, 0.1, 0.999, 0.001, 1, 1e-8, 0, 1, 0, 0, 0),
  [`all_finite ${P} (weights)`]: () => k.all_finite(params.ptr, P),
};
const tinyStep = {};
let sum = 0;
for (const [name, fn] of Object.entries(step)) {
  const ns = cpuNs(fn);
  tinyStep[name] = ns;
  sum += ns;
}
// the same kernels' weights are overwritten by adam_step above: harmless for a timing

// ---- GEMMs with a narrow side (an output layer of 10 or 1, a weight gradient of a 3-wide layer)
const SIZE = 256 * 1024;
const GA = filled(SIZE), GB = filled(SIZE), GO = arena.alloc(SIZE), GS = arena.alloc(SIZE);
const narrow = {};
for (const [kind, M, N, K] of [["nt", 64, 10, 256], ["nt", 64, 1, 256], ["tn", 10, 256, 64], ["tn", 3, 64, 64], ["nn", 64, 256, 10]]) {
  const fn = kind === "nt" ? () => k.matmul_nt(GO.ptr, GA.ptr, GB.ptr, 0, GS.ptr, M, N, K)
    : kind === "tn" ? () => k.matmul_tn(GO.ptr, GA.ptr, GB.ptr, M, N, K, 1)
    : () => k.matmul_nn(GO.ptr, GA.ptr, GB.ptr, M, N, K, 0);
  narrow[`matmul_${kind} ${M}x${N}x${K}`] = cpuNs(fn);
}
console.log(JSON.stringify({ bench: "tiny-kernels", variant: runtime.variant, ns_per_call: { tiny_step: tinyStep, tiny_step_sum: Math.round(sum), narrow_gemms: narrow } }));
