/**
 * The kernel core's interface: the exports of wasm/assembly/index.ts, typed.
 *
 * Every pointer (`Ptr`) is a byte offset into the arena's WebAssembly.Memory; every size counts
 * f32 elements; flags are 0/1. Outputs come first, then inputs, then sizes (llm.c order).
 * The same interface is implemented by the WASM module (instantiateKernels) and by the plain
 * TypeScript reference twins (createReferenceKernels in reference.ts), which the tests compare.
 *
 * Runtime-agnostic: the compiled WebAssembly.Module is injected by the runtime entry.
 */
import type { WasmMemory, WasmModule } from "./wasm-types.js";

/** A byte offset into the arena's memory. */
export type Ptr = number;
/** 0 or 1. */
export type Flag = number;

/**
 * The geometry arguments of the convolution kernels, in order: C, H, W (the sample's image),
 * KH, KW, SH, SW, PH, PW, DH, DW (kernel, stride, top/left padding, dilation), OW (output width)
 * and the output rows [oh0, oh1) to unfold.
 */
export type ConvGeometry = [
  C: number, H: number, W: number, KH: number, KW: number, SH: number, SW: number, PH: number, PW: number,
  DH: number, DW: number, OW: number, oh0: number, oh1: number,
];

/**
 * Floats of scratch matmul_nn and matmul_tn pack one block of B into (gemm.ts GEMM_KC x
 * GEMM_NC, 128 x 64).
 *
 * @example
 * ```ts
 * const scratch = op.in * op.out >= GEMM_PACK_FLOATS ? c.workspace : 0;
 * ```
 */
export const GEMM_PACK_FLOATS = 128 * 64;

export interface Kernels {
  /** out[M,N] = a[M,K] · b[N,K]^T + bias[N] (bias 0: none); scratch holds K*N floats. */
  matmul_nt(out: Ptr, a: Ptr, b: Ptr, bias: Ptr, scratch: Ptr, M: number, N: number, K: number): void;
  /**
   * out[M,N] (+)= a[M,K] · b[K,N]. `scratch` (0 or absent: none) has room for GEMM_PACK_FLOATS
   * floats: where M >= 64 and N is a multiple of 128 (B's rows that far apart share a few L1
   * sets), B's blocks are copied there before use; the same result either way.
   */
  matmul_nn(out: Ptr, a: Ptr, b: Ptr, M: number, N: number, K: number, accumulate: Flag, scratch?: Ptr): void;
  /** out[M,N] (+)= a[K,M]^T · b[K,N]; `scratch` as matmul_nn's. */
  matmul_tn(out: Ptr, a: Ptr, b: Ptr, M: number, N: number, K: number, accumulate: Flag, scratch?: Ptr): void;
  /**
   * out[i*ldo + j] (+)= sum_k a[i*ars + k*acs] · b[k*ldb + j] (i < M, j < N, k < K): the GEMM over
   * strided views (a head of a projection, a transposed operand, a group of channels).
   */
  matmul_strided(out: Ptr, a: Ptr, b: Ptr, M: number, N: number, K: number, ars: number, acs: number, ldb: number, ldo: number, accumulate: Flag): void;
  /** out[rows,cols] = inp[cols,rows]^T */
  transpose(out: Ptr, inp: Ptr, rows: number, cols: number): void;
  /** out[r*cols + c] = alpha * inp[c*ld + r]: a strided [cols, rows] view (one attention head), transposed and scaled */
  transpose_strided(out: Ptr, inp: Ptr, rows: number, cols: number, ld: number, alpha: number): void;
  /**
   * probs[rows,cols] = softmax over each row of scores, keys hidden by the key-padding `mask`
   * ([cols], 0 = padding; 0: none) or by `causal` (j > i) getting 0; a row with no visible key is 0.
   */
  attention_softmax(probs: Ptr, scores: Ptr, mask: Ptr, rows: number, cols: number, causal: Flag): void;
  /** dscores = scale * P * (dP - rowsum(dP * P)) (may alias dprobs or probs) */
  attention_softmax_backward(dscores: Ptr, dprobs: Ptr, probs: Ptr, scale: number, rows: number, cols: number): void;
  /**
   * RoPE's angle table of positions 0..T-1 (transformers' float32 recipe): cos[T, half] and
   * sin[T, half] of t / f32(theta^(i / half))
   */
  rope_table(cos: Ptr, sin: Ptr, T: number, half: number, theta: number): void;
  /**
   * out[t, h, :] = inp[t, h, :] rotated rotate_half-wise by the angles of row t of the table
   * (sign -1: the opposite angle, the backward); out may be inp
   */
  rope(out: Ptr, inp: Ptr, cos: Ptr, sin: Ptr, sign: number, nTokens: number, heads: number, headDim: number): void;

  /** dbias[cols] += sum_r dout[r, cols] */
  bias_grad(dbias: Ptr, dout: Ptr, rows: number, cols: number): void;
  /** out = f(inp), f the activation with code `fn` (layers/activations.ts); slope: LeakyReLU's */
  activation_forward(out: Ptr, inp: Ptr, fn: number, slope: number, n: number): void;
  /** dinp = dout * f'(.), reading the activation's input or output as f' needs */
  activation_backward(dinp: Ptr, dout: Ptr, inp: Ptr, out: Ptr, fn: number, slope: number, n: number): void;
  /** mask = 1/(1-p) or 0 from a hash of (seed, i); out = inp * mask */
  dropout_forward(out: Ptr, mask: Ptr, inp: Ptr, p: number, seed: number, n: number): void;
  /** out = a * b */
  mul(out: Ptr, a: Ptr, b: Ptr, n: number): void;
  /** out = a + b */
  add(out: Ptr, a: Ptr, b: Ptr, n: number): void;
  /** x *= s */
  scale(x: Ptr, s: number, n: number): void;
  fill(out: Ptr, value: number, n: number): void;
  copy(out: Ptr, x: Ptr, n: number): void;
  /** out += alpha * x */
  axpy(out: Ptr, x: Ptr, alpha: number, n: number): void;
  /** out[r,:] = src[indices[r],:], indices i32 */
  gather_rows(out: Ptr, src: Ptr, indices: Ptr, rows: number, cols: number): void;
  /** 1 when every element is finite */
  all_finite(x: Ptr, n: number): number;

  /** Losses: return the mean loss; write dL/dpred into grad unless grad is 0. */
  mse_loss(grad: Ptr, pred: Ptr, target: Ptr, n: number): number;
  l1_loss(grad: Ptr, pred: Ptr, target: Ptr, n: number): number;
  huber_loss(grad: Ptr, pred: Ptr, target: Ptr, delta: number, n: number): number;
  smooth_l1_loss(grad: Ptr, pred: Ptr, target: Ptr, beta: number, n: number): number;
  cross_entropy_loss(
    grad: Ptr, logits: Ptr, target: Ptr, weight: Ptr, B: number, C: number, ignore_index: number, label_smoothing: number,
  ): number;
  bce_with_logits_loss(grad: Ptr, logits: Ptr, target: Ptr, pos_weight: Ptr, B: number, C: number): number;
  hinge_loss(grad: Ptr, pred: Ptr, target: Ptr, n: number): number;
  multi_margin_loss(
    grad: Ptr, logits: Ptr, target: Ptr, weight: Ptr, B: number, C: number, p: number, margin: number,
  ): number;

  sgd_step(
    param: Ptr, grad: Ptr, buf: Ptr, n: number,
    lr: number, momentum: number, dampening1m: number, weight_decay: number,
    nesterov: Flag, maximize: Flag, first: Flag,
  ): void;
  adam_step(
    param: Ptr, grad: Ptr, m: Ptr, v: Ptr, vmax: Ptr, n: number,
    step_size: number, beta1: number, beta1m: number, beta2: number, beta2m: number, bias_correction2_sqrt: number,
    eps: number, weight_decay: number, decay_factor: number, amsgrad: Flag, maximize: Flag, decoupled: Flag,
  ): void;
  rmsprop_step(
    param: Ptr, grad: Ptr, square_avg: Ptr, grad_avg: Ptr, buf: Ptr, n: number,
    lr: number, alpha: number, alpha1m: number, eps: number, weight_decay: number, momentum: number,
    centered: Flag, maximize: Flag,
  ): void;
  adagrad_step(param: Ptr, grad: Ptr, sum: Ptr, n: number, clr: number, eps: number, weight_decay: number, maximize: Flag): void;

  /** out[t, :] = weight[ids[t], :] for t < n; ids f32 integers below the vocabulary */
  embedding_forward(out: Ptr, weight: Ptr, ids: Ptr, n: number, dim: number): void;
  /** out[t, :] = f32(weight[ids[t], :]) over a 16-bit table (u16 bits; bf16 1: bfloat16, 0: float16) */
  embedding_forward_half(out: Ptr, weight: Ptr, ids: Ptr, n: number, dim: number, bf16: Flag): void;
  /** out[i] = f32(inp[i]) for n float16 values (u16 bits at inp, 2-byte aligned) */
  widen_f16(out: Ptr, inp: Ptr, n: number): void;
  /** out[i] = f32(inp[i]) for n bfloat16 values (u16 bits at inp, 2-byte aligned) */
  widen_bf16(out: Ptr, inp: Ptr, n: number): void;
  /** dweight[ids[t], :] += dout[t, :] in token order, skipping padding_idx (-1: none) */
  embedding_backward(dweight: Ptr, dout: Ptr, ids: Ptr, n: number, dim: number, padding_idx: number): void;
  /** out[r, c] = inp[r, c] + b[c] */
  add_broadcast(out: Ptr, inp: Ptr, b: Ptr, rows: number, cols: number): void;
  /**
   * out[r, :] = pool over the tokens of x[r] ([T, D]) with mask[r, t] = 1 (mask 0: all);
   * mode 0 mean, 1 max (argmax[r, d] = the token taken, f32), 2 cls, 3 last
   */
  token_pool_forward(out: Ptr, argmax: Ptr, x: Ptr, mask: Ptr, mode: number, rows: number, T: number, D: number): void;
  /** dx = the pooling's gradient (written, every element) */
  token_pool_backward(dx: Ptr, dout: Ptr, argmax: Ptr, mask: Ptr, mode: number, rows: number, T: number, D: number): void;

  sum_squares(x: Ptr, n: number): number;
  sum_abs_pow(x: Ptr, p: number, n: number): number;
  max_abs(x: Ptr, n: number): number;

  /**
   * LayerNorm / RMSNorm over rows of D: out = (x - mean) * rstd * weight + bias, mean = 0 when
   * center is 0 (RMSNorm); writes mean[rows] (center 1) and rstd[rows]. weight, bias 0: none.
   */
  layer_norm_forward(out: Ptr, mean: Ptr, rstd: Ptr, inp: Ptr, weight: Ptr, bias: Ptr, rows: number, D: number, eps: number, center: Flag): void;
  /** Its backward: writes dinp, accumulates dweight and dbias (each 0 when not wanted). */
  layer_norm_backward(
    dinp: Ptr, dweight: Ptr, dbias: Ptr, dout: Ptr, inp: Ptr, weight: Ptr, mean: Ptr, rstd: Ptr, rows: number, D: number, center: Flag,
  ): void;
  /** BatchNorm's per-channel mean[C] and biased variance[C] of inp [N, C, L]. */
  batch_norm_stats(mean: Ptr, variance: Ptr, inp: Ptr, N: number, C: number, L: number): void;
  /**
   * The running statistics after a batch of `count` values per channel: num_batches_tracked += 1,
   * running = m * stat + (1 - m) * running (unbiased variance); momentum < 0: m = 1 / num_batches_tracked.
   */
  batch_norm_update(
    running_mean: Ptr, running_var: Ptr, num_batches_tracked: Ptr, mean: Ptr, variance: Ptr, C: number, momentum: number, count: number,
  ): void;
  /** out = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c] over inp [N, C, L]. */
  batch_norm_forward(out: Ptr, inp: Ptr, mean: Ptr, variance: Ptr, weight: Ptr, bias: Ptr, N: number, C: number, L: number, eps: number): void;
  /**
   * Its backward with batch statistics: writes dinp and sums [2C] (sum dout, sum dout * xhat per
   * channel), accumulates dweight and dbias.
   */
  batch_norm_backward(
    dinp: Ptr, dweight: Ptr, dbias: Ptr, sums: Ptr, dout: Ptr, inp: Ptr, mean: Ptr, variance: Ptr, weight: Ptr,
    N: number, C: number, L: number, eps: number,
  ): void;
  // Convolution data movement (wasm/assembly/conv.ts): one sample's image [C, H, W] and a
  // range [oh0, oh1) of output rows (ConvGeometry); the column matrix has C*KH*KW rows
  // k = (c*KH + kh)*KW + kw and (oh1 - oh0)*OW columns.
  /** col[C*KH*KW, (oh1 - oh0)*OW] = the taps of x (0 in the padding) */
  conv_im2col(col: Ptr, x: Ptr, ...geometry: ConvGeometry): void;
  /** colT[(oh1 - oh0)*OW, C*KH*KW] = the same, transposed */
  conv_im2col_t(colT: Ptr, x: Ptr, ...geometry: ConvGeometry): void;
  /** dx[C, H, W] += dcol folded back onto the image (accumulates) */
  conv_col2im(dx: Ptr, dcol: Ptr, ...geometry: ConvGeometry): void;
  /** out[rows, channels, L] = bias[channels] broadcast */
  conv_bias_forward(out: Ptr, bias: Ptr, rows: number, channels: number, L: number): void;
  /** dbias[c] += sum over rows and L of dout[rows, channels, L] */
  conv_bias_backward(dbias: Ptr, dout: Ptr, rows: number, channels: number, L: number): void;

  // Pooling over planes x[planes, H, W] (wasm/assembly/pool.ts). Backward passes write dx.
  /** out = the max of each window; indices (i32) = ih*W + iw of its first maximum, or of its last NaN */
  max_pool_forward(
    out: Ptr, indices: Ptr, x: Ptr, planes: number, H: number, W: number,
    KH: number, KW: number, SH: number, SW: number, PH: number, PW: number, DH: number, DW: number, OH: number, OW: number,
  ): void;
  /** dx = 0, dx[indices] += dy */
  max_pool_backward(dx: Ptr, dy: Ptr, indices: Ptr, planes: number, H: number, W: number, OH: number, OW: number): void;
  /** out = the sum of each window's taps inside the image / its divisor (divisor_override, or the count with or without padding) */
  avg_pool_forward(
    out: Ptr, x: Ptr, planes: number, H: number, W: number,
    KH: number, KW: number, SH: number, SW: number, PH: number, PW: number, OH: number, OW: number,
    count_include_pad: Flag, divisor_override: number,
  ): void;
  /** dx = 0, then dy / divisor added to each window's taps inside the image */
  avg_pool_backward(
    dx: Ptr, dy: Ptr, planes: number, H: number, W: number,
    KH: number, KW: number, SH: number, SW: number, PH: number, PW: number, OH: number, OW: number,
    count_include_pad: Flag, divisor_override: number,
  ): void;
  /** out = the mean of windows [floor(o*I/O), ceil((o+1)*I/O)) (sum / kh / kw) */
  adaptive_avg_pool_forward(out: Ptr, x: Ptr, planes: number, H: number, W: number, OH: number, OW: number): void;
  /** dx = 0, then dy / kh / kw added to each window's taps */
  adaptive_avg_pool_backward(dx: Ptr, dy: Ptr, planes: number, H: number, W: number, OH: number, OW: number): void;

  /**
   * Runs a fused program's steps (program.ts, wasm/assembly/program.ts): the control block at
   * `ctl` names the program bodies, the batches and the step count; returns the steps done
   * (fewer when one faulted: its code is in the block).
   */
  run_program(ctl: Ptr): number;

  /** First byte the arena may hand out. */
  heap_base(): number;
}

/** The names of every kernel, for checks that an instance is complete. */
export const KERNEL_NAMES = [
  "matmul_nt", "matmul_nn", "matmul_tn", "matmul_strided", "transpose", "bias_grad",
  "transpose_strided", "attention_softmax", "attention_softmax_backward", "rope_table", "rope",
  "activation_forward", "activation_backward",
  "dropout_forward", "mul", "add", "scale", "fill", "copy", "axpy", "gather_rows", "all_finite",
  "mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "cross_entropy_loss",
  "bce_with_logits_loss", "hinge_loss", "multi_margin_loss",
  "sgd_step", "adam_step", "rmsprop_step", "adagrad_step",
  "layer_norm_forward", "layer_norm_backward",
  "batch_norm_stats", "batch_norm_update", "batch_norm_forward", "batch_norm_backward",
  "embedding_forward", "embedding_forward_half", "widen_f16", "widen_bf16", "embedding_backward", "add_broadcast", "token_pool_forward", "token_pool_backward",
  "conv_im2col", "conv_im2col_t", "conv_col2im", "conv_bias_forward", "conv_bias_backward",
  "max_pool_forward", "max_pool_backward", "avg_pool_forward", "avg_pool_backward",
  "adaptive_avg_pool_forward", "adaptive_avg_pool_backward",
  "sum_squares", "sum_abs_pow", "max_abs", "run_program", "heap_base",
] as const satisfies readonly (keyof Kernels)[];

/** Which build of the kernel core is running. */
export type KernelVariant = "wasm-simd" | "wasm-relaxed-simd" | "js-reference";

/** WebAssembly page size in bytes. */
export const WASM_PAGE = 65536;

/**
 * Instantiates the kernel core over a memory the caller owns.
 *
 * @example
 * ```ts
 * const memory = new WebAssembly.Memory({ initial: 16, maximum: 65536 });
 * const kernels = await instantiateKernels(module, memory);
 * kernels.activation_forward(outPtr, inPtr, 0, 0, n); // relu
 * ```
 */
export async function instantiateKernels(module: WasmModule, memory: WasmMemory): Promise<Kernels> {
  const instance = await WebAssembly.instantiate(module, { env: { memory } });
  const exports = instance.exports as unknown as Kernels;
  for (const name of KERNEL_NAMES) {
    if (typeof exports[name] !== "function") {
      throw new Error(`kernel module lacks export ${name}: rebuild it with npm run build:wasm`);
    }
  }
  return exports;
}

/** A kernel instance with the memory it owns. */
export interface KernelInstance {
  memory: WasmMemory;
  kernels: Kernels;
}

/** Instances whose memory grew past this are dropped after a run instead of kept for reuse. */
export const KEEP_MEMORY_BYTES = 32 * 1024 * 1024;
const idle = new WeakMap<WasmModule, KernelInstance[]>();

/**
 * Takes an idle kernel instance for `module`, or instantiates one. Reusing instances matters
 * for small jobs: V8 tiers JS-to-Wasm call wrappers up per instance, so a fresh instance per
 * run would pay the slow generic wrapper on thousands of calls. Give it back with
 * releaseKernels; concurrent runs each get their own instance.
 *
 * @example
 * ```ts
 * const instance = await acquireKernels(module);
 * try { run(instance.kernels, instance.memory); } finally { releaseKernels(module, instance); }
 * ```
 */
export async function acquireKernels(module: WasmModule): Promise<KernelInstance> {
  const pool = idle.get(module);
  const reused = pool?.pop();
  if (reused) return reused;
  const memory = new WebAssembly.Memory({ initial: 1 });
  return { memory, kernels: await instantiateKernels(module, memory) };
}

/** Returns an instance to the pool (unless its memory grew large: then it is left to the GC). */
export function releaseKernels(module: WasmModule, instance: KernelInstance): void {
  if (instance.memory.buffer.byteLength > KEEP_MEMORY_BYTES) return;
  let pool = idle.get(module);
  if (!pool) idle.set(module, (pool = []));
  if (pool.length < 4) pool.push(instance);
}
