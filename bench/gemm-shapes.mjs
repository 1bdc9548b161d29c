// GFLOP/s of the kernel core's GEMMs at the shapes a transformer step runs, timed by this
// process's CPU time (so other processes on a shared machine do not stretch the figure):
//   node bench/gemm-shapes.mjs                                    plain SIMD build
//   node --experimental-wasm-relaxed-simd bench/gemm-shapes.mjs   relaxed-SIMD build (the Worker's)
// Linear layers of bert-tiny (BERT_TINY in lib.mjs: 1,024 tokens per batch, hidden 128,
// intermediate 512) in the three layouts, each given scratch as the linear op gives its
// workspace, and one attention head's products (64 tokens, head width 16 as the encoder bench,
// 64 as bert-tiny) through matmul_strided with the op's strides.
// Also the attention softmax per 64 x 64 block. Prints one JSON line. Needs `npm run build`.
import { cpuMicrosPerCall as cpuUs, standaloneKernels } from "./lib.mjs";

const { runtime, k, arena } = await standaloneKernels();
const SIZE = 1024 * 1024; // floats per operand: enough for every shape below
const A = arena.alloc(SIZE), B = arena.alloc(SIZE), O = arena.alloc(SIZE), S = arena.alloc(SIZE);
let seed = 7;
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5;
arena.f32(A).forEach((_, i, a) => (a[i] = rnd()));
arena.f32(B).forEach((_, i, a) => (a[i] = rnd()));

const T = 1024, H = 128, I = 512;
const shapes = {
  // forward y = x W^T (+ b): [T, in] x [out, in]^T
  "nt 1024x128x128 (q/k/v/out forward)": [() => k.matmul_nt(O.ptr, A.ptr, B.ptr, S.ptr, S.ptr + 4 * H * I, T, H, H), 2 * T * H * H],
  "nt 1024x512x128 (intermediate forward)": [() => k.matmul_nt(O.ptr, A.ptr, B.ptr, 0, S.ptr, T, I, H), 2 * T * I * H],
  "nt 1024x128x512 (output forward)": [() => k.matmul_nt(O.ptr, A.ptr, B.ptr, 0, S.ptr, T, H, I), 2 * T * H * I],
  // input gradient dx = dy W
  "nn 1024x128x512 (intermediate dx)": [() => k.matmul_nn(O.ptr, A.ptr, B.ptr, T, H, I, 0, S.ptr), 2 * T * H * I],
  "nn 1024x512x128 (output dx)": [() => k.matmul_nn(O.ptr, A.ptr, B.ptr, T, I, H, 0, S.ptr), 2 * T * I * H],
  // weight gradient dW += dy^T x, K = the batch's 1,024 tokens
  "tn 128x128x1024 (q/k/v/out dW)": [() => k.matmul_tn(O.ptr, A.ptr, B.ptr, H, H, T, 1, S.ptr), 2 * H * H * T],
  "tn 512x128x1024 (intermediate dW)": [() => k.matmul_tn(O.ptr, A.ptr, B.ptr, I, H, T, 1, S.ptr), 2 * I * H * T],
  "tn 128x512x1024 (output dW)": [() => k.matmul_tn(O.ptr, A.ptr, B.ptr, H, I, T, 1, S.ptr), 2 * H * I * T],
};
for (const dh of [16, 64]) {
  const tok = 64, D = 4 * dh, W = 3 * D; // packed q/k/v rows of 3D
  shapes[`head dh ${dh}: S = Qs K^T`] = [() => k.matmul_strided(O.ptr, A.ptr, B.ptr, tok, tok, dh, 1, tok, tok, tok, 0), 2 * tok * tok * dh];
  shapes[`head dh ${dh}: O = P V`] = [() => k.matmul_strided(O.ptr, A.ptr, B.ptr, tok, dh, tok, tok, 1, W, D, 0), 2 * tok * tok * dh];
  shapes[`head dh ${dh}: dV = P^T dO`] = [() => k.matmul_strided(O.ptr, A.ptr, B.ptr, tok, dh, tok, 1, tok, D, W, 1), 2 * tok * tok * dh];
  shapes[`head dh ${dh}: dP = dO V^T`] = [() => k.matmul_strided(O.ptr, A.ptr, B.ptr, tok, tok, dh, D, 1, tok, tok, 0), 2 * tok * tok * dh];
}
const gemm = {};
for (const [name, [fn, flops]] of Object.entries(shapes)) {
  const us = cpuUs(fn);
  gemm[name] = { us, gflops: flops / (us * 1000) };
}
const softmaxUs = cpuUs(() => k.attention_softmax(O.ptr, A.ptr, B.ptr, 64, 64, 0));
console.log(JSON.stringify({ workload: "gemm-shapes", variant: runtime.variant, gemm, attention_softmax_64x64: { us: softmaxUs, ns_per_weight: (softmaxUs * 1000) / 4096 } }));
