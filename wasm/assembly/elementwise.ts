// Elementwise kernels: bias gradient, dropout, residual sums, and the small vector utilities
// the training step needs (activations are in activations.ts). Outputs first, then inputs,
// then sizes. Parameter gradients (bias_grad) ACCUMULATE with +=.
import { F32, loadPart, madd, storePart } from "./simd";

// ------------------------------------------------------------------ linear helpers

/** dbias[cols] += sum over rows of dout[rows, cols]. torch: Linear bias grad = dy.sum(0). */
export function bias_grad(dbias: usize, dout: usize, rows: i32, cols: i32): void {
  const C = <usize>cols;
  let j: usize = 0;
  for (; j + 4 <= C; j += 4) {
    let acc = v128.load(dbias + j * F32);
    let p = dout + j * F32;
    for (let r: i32 = 0; r < rows; r++) {
      acc = f32x4.add(acc, v128.load(p));
      p += C * F32;
    }
    v128.store(dbias + j * F32, acc);
  }
  // the last C % 4 columns as one partial vector (lanes = columns): each sums its rows in order, as a scalar loop would
  const T = C - j;
  if (T == 1) biasGradTail(dbias + j * F32, dout + j * F32, rows, C, 1);
  else if (T == 2) biasGradTail(dbias + j * F32, dout + j * F32, rows, C, 2);
  else if (T == 3) biasGradTail(dbias + j * F32, dout + j * F32, rows, C, 3);
}

// @ts-ignore: decorator
@inline
function biasGradTail(dbias: usize, dout: usize, rows: i32, C: usize, T: i32): void {
  let acc = loadPart(dbias, T);
  let p = dout;
  for (let r: i32 = 0; r < rows; r++) {
    acc = f32x4.add(acc, loadPart(p, T));
    p += C * F32;
  }
  storePart(dbias, acc, T);
}

// ------------------------------------------------------------------ dropout
// https://pytorch.org/docs/stable/generated/torch.nn.Dropout.html : zero with probability p,
// scale survivors by 1/(1-p). The mask comes from a counter-based hash of (seed, index), so it
// is reproducible and independent of call order; it does not reproduce torch's RNG stream.

/** 32-bit finaliser of MurmurHash3: a bijective mix of the counter. */
// @ts-ignore: decorator
@inline
function mix32(h: u32): u32 {
  h ^= h >> 16;
  h *= 0x85ebca6b;
  h ^= h >> 13;
  h *= 0xc2b2ae35;
  h ^= h >> 16;
  return h;
}

/** mask[i] = 1/(1-p) or 0; out = inp * mask. */
export function dropout_forward(out: usize, mask: usize, inp: usize, p: f32, seed: u32, n: i32): void {
  const scale: f32 = p < 1 ? <f32>(1.0 / (1.0 - <f64>p)) : 0;
  // keep iff u >= p, u uniform in [0,1) with 24 bits
  const threshold = <u32>Math.ceil(<f64>p * 16777216.0);
  for (let i: u32 = 0; i < <u32>n; i++) {
    const u = mix32(mix32(seed ^ 0x9e3779b9) + i * 0x9e3779b9) >> 8;
    const m: f32 = u >= threshold ? scale : 0;
    store<f32>(mask + <usize>i * F32, m);
    store<f32>(out + <usize>i * F32, load<f32>(inp + <usize>i * F32) * m);
  }
}

/** out = a * b, elementwise (dropout backward: dinp = dout * mask). */
export function mul(out: usize, a: usize, b: usize, n: i32): void {
  const N = <usize>n;
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) v128.store(out + i * F32, f32x4.mul(v128.load(a + i * F32), v128.load(b + i * F32)));
  for (; i < N; i++) store<f32>(out + i * F32, load<f32>(a + i * F32) * load<f32>(b + i * F32));
}

/** out = a + b, elementwise (residual connections: x + f(x)). */
export function add(out: usize, a: usize, b: usize, n: i32): void {
  const N = <usize>n;
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) v128.store(out + i * F32, f32x4.add(v128.load(a + i * F32), v128.load(b + i * F32)));
  for (; i < N; i++) store<f32>(out + i * F32, load<f32>(a + i * F32) + load<f32>(b + i * F32));
}

// ------------------------------------------------------------------ utilities

/** x *= s (gradient clipping). */
export function scale(x: usize, s: f32, n: i32): void {
  const N = <usize>n;
  const sv = f32x4.splat(s);
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) v128.store(x + i * F32, f32x4.mul(v128.load(x + i * F32), sv));
  for (; i < N; i++) store<f32>(x + i * F32, load<f32>(x + i * F32) * s);
}

/** out = value. */
export function fill(out: usize, value: f32, n: i32): void {
  const N = <usize>n;
  const v = f32x4.splat(value);
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) v128.store(out + i * F32, v);
  for (; i < N; i++) store<f32>(out + i * F32, value);
}

/** out = x (non-overlapping or overlapping ranges; bulk memory copy). */
export function copy(out: usize, x: usize, n: i32): void {
  memory.copy(out, x, <usize>n * F32);
}

/** out += alpha * x. */
export function axpy(out: usize, x: usize, alpha: f32, n: i32): void {
  const N = <usize>n;
  const a = f32x4.splat(alpha);
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) v128.store(out + i * F32, madd(a, v128.load(x + i * F32), v128.load(out + i * F32)));
  for (; i < N; i++) store<f32>(out + i * F32, load<f32>(out + i * F32) + alpha * load<f32>(x + i * F32));
}

/** out[r, :] = src[indices[r], :] for r < rows; indices are i32. Builds a batch from the dataset. */
export function gather_rows(out: usize, src: usize, indices: usize, rows: i32, cols: i32): void {
  const rowBytes = <usize>cols * F32;
  if (rowBytes > GATHER_COPY_BYTES) {
    for (let r: usize = 0; r < <usize>rows; r++) {
      const idx = <usize>load<i32>(indices + r * 4);
      memory.copy(out + r * rowBytes, src + idx * rowBytes, rowBytes);
    }
    return;
  }
  // short rows (a tiny model's 10 features): v128 moves, then 4-byte moves (bits as they are),
  // which cost less than a memory.copy call per row
  for (let r: usize = 0; r < <usize>rows; r++) {
    const s = src + <usize>load<i32>(indices + r * 4) * rowBytes, d = out + r * rowBytes;
    let o: usize = 0;
    for (; o + 16 <= rowBytes; o += 16) v128.store(d + o, v128.load(s + o));
    for (; o < rowBytes; o += 4) store<u32>(d + o, load<u32>(s + o));
  }
}

/** Rows longer than this (bytes) are gathered with memory.copy. */
const GATHER_COPY_BYTES: usize = 256;

/**
 * 1 when every x[i] is finite, else 0. x*0 is 0 for finite x and NaN for NaN or +-Inf. Four
 * independent sums, 16 values a round: one sum would wait on its own add each round (latency
 * bound, about 4x slower on a step's 200k gradients, which it checks twice a step).
 */
export function all_finite(x: usize, n: i32): i32 {
  const N = <usize>n;
  const zero = f32x4.splat(0);
  let acc = zero, acc1 = zero, acc2 = zero, acc3 = zero;
  let i: usize = 0;
  for (; i + 16 <= N; i += 16) {
    const p = x + i * F32;
    acc = f32x4.add(acc, f32x4.mul(v128.load(p), zero));
    acc1 = f32x4.add(acc1, f32x4.mul(v128.load(p, 16), zero));
    acc2 = f32x4.add(acc2, f32x4.mul(v128.load(p, 32), zero));
    acc3 = f32x4.add(acc3, f32x4.mul(v128.load(p, 48), zero));
  }
  acc = f32x4.add(f32x4.add(acc, acc1), f32x4.add(acc2, acc3));
  for (; i + 4 <= N; i += 4) acc = f32x4.add(acc, f32x4.mul(v128.load(x + i * F32), zero));
  let s: f32 = 0;
  for (; i < N; i++) s += load<f32>(x + i * F32) * 0;
  s += f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 1) + f32x4.extract_lane(acc, 2) + f32x4.extract_lane(acc, 3);
  return s == 0 ? 1 : 0;
}
