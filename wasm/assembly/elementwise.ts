// Elementwise kernels: bias gradient, activations forward and backward, dropout, and the
// small vector utilities the training step needs. Outputs first, then inputs, then sizes.
// Activation backward passes WRITE dinp (each activation's input gradient has exactly one
// producer in a Sequential); parameter gradients (bias_grad) ACCUMULATE with +=.
import { F32, madd } from "./simd";

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
  for (; j < C; j++) {
    let s = load<f32>(dbias + j * F32);
    let p = dout + j * F32;
    for (let r: i32 = 0; r < rows; r++) {
      s += load<f32>(p);
      p += C * F32;
    }
    store<f32>(dbias + j * F32, s);
  }
}

// ------------------------------------------------------------------ activations
// https://pytorch.org/docs/stable/generated/torch.nn.ReLU.html : relu(x) = max(0, x)

export function relu_forward(out: usize, inp: usize, n: i32): void {
  const N = <usize>n;
  const zero = f32x4.splat(0);
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) v128.store(out + i * F32, f32x4.max(v128.load(inp + i * F32), zero));
  for (; i < N; i++) {
    const x = load<f32>(inp + i * F32);
    store<f32>(out + i * F32, x > 0 || isNaN(x) ? x : 0);
  }
}

/** dinp = dout where out > 0 else 0 (torch threshold_backward on the result). */
export function relu_backward(dinp: usize, dout: usize, out: usize, n: i32): void {
  const N = <usize>n;
  const zero = f32x4.splat(0);
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) {
    const mask = f32x4.gt(v128.load(out + i * F32), zero);
    v128.store(dinp + i * F32, v128.and(v128.load(dout + i * F32), mask));
  }
  for (; i < N; i++) store<f32>(dinp + i * F32, load<f32>(out + i * F32) > 0 ? load<f32>(dout + i * F32) : 0);
}

// https://pytorch.org/docs/stable/generated/torch.nn.LeakyReLU.html : x if x > 0 else slope*x
export function leaky_relu_forward(out: usize, inp: usize, slope: f32, n: i32): void {
  const N = <usize>n;
  const zero = f32x4.splat(0);
  const s = f32x4.splat(slope);
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) {
    const x = v128.load(inp + i * F32);
    v128.store(out + i * F32, v128.bitselect(x, f32x4.mul(x, s), f32x4.gt(x, zero)));
  }
  for (; i < N; i++) {
    const x = load<f32>(inp + i * F32);
    store<f32>(out + i * F32, x > 0 ? x : x * slope);
  }
}

/** dinp = dout if inp > 0 else dout*slope */
export function leaky_relu_backward(dinp: usize, dout: usize, inp: usize, slope: f32, n: i32): void {
  const N = <usize>n;
  const zero = f32x4.splat(0);
  const s = f32x4.splat(slope);
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) {
    const g = v128.load(dout + i * F32);
    v128.store(dinp + i * F32, v128.bitselect(g, f32x4.mul(g, s), f32x4.gt(v128.load(inp + i * F32), zero)));
  }
  for (; i < N; i++) {
    const g = load<f32>(dout + i * F32);
    store<f32>(dinp + i * F32, load<f32>(inp + i * F32) > 0 ? g : g * slope);
  }
}

/**
 * erf(x), Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): the formula PyTorch's vectorised
 * CPU path (Vectorized<float>::erf, used by GELU) evaluates, so GELU matches it closely.
 */
// @ts-ignore: decorator
@inline
function erf32(x: f32): f32 {
  const ax = abs(x);
  const t: f32 = 1.0 / (0.3275911 * ax + 1.0);
  const r: f32 = (((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592;
  const y: f32 = 1.0 - r * t * Mathf.exp(-x * x);
  return x < 0 ? -y : y;
}

const SQRT1_2: f32 = 0.7071067811865476;
// 1/sqrt(2*pi) = M_2_SQRTPI * M_SQRT1_2 * 0.5
const INV_SQRT_2PI: f32 = 0.3989422804014327;
// sqrt(2/pi) = M_SQRT2 * M_2_SQRTPI * 0.5
const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const GELU_KAPPA: f32 = 0.044715;

// https://pytorch.org/docs/stable/generated/torch.nn.GELU.html : x * Phi(x), Phi(x) = 0.5 (1 + erf(x / sqrt 2))
export function gelu_forward(out: usize, inp: usize, n: i32): void {
  for (let i: usize = 0; i < <usize>n; i++) {
    const x = load<f32>(inp + i * F32);
    store<f32>(out + i * F32, x * 0.5 * (1.0 + erf32(x * SQRT1_2)));
  }
}

/** dinp = dout * (Phi(x) + x * phi(x)) */
export function gelu_backward(dinp: usize, dout: usize, inp: usize, n: i32): void {
  for (let i: usize = 0; i < <usize>n; i++) {
    const x = load<f32>(inp + i * F32);
    const cdf: f32 = 0.5 * (1.0 + erf32(x * SQRT1_2));
    const pdf: f32 = INV_SQRT_2PI * Mathf.exp(-0.5 * x * x);
    store<f32>(dinp + i * F32, load<f32>(dout + i * F32) * (cdf + x * pdf));
  }
}

/** GELU(approximate='tanh'): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
export function gelu_tanh_forward(out: usize, inp: usize, n: i32): void {
  for (let i: usize = 0; i < <usize>n; i++) {
    const x = load<f32>(inp + i * F32);
    const inner = SQRT_2_OVER_PI * (x + GELU_KAPPA * x * x * x);
    store<f32>(out + i * F32, 0.5 * x * (1.0 + Mathf.tanh(inner)));
  }
}

/** The derivative of the tanh form, as torch's GeluBackwardKernel writes it. */
export function gelu_tanh_backward(dinp: usize, dout: usize, inp: usize, n: i32): void {
  for (let i: usize = 0; i < <usize>n; i++) {
    const x = load<f32>(inp + i * F32);
    const xSq = x * x;
    const inner = SQRT_2_OVER_PI * (x + GELU_KAPPA * xSq * x);
    const th = Mathf.tanh(inner);
    const left: f32 = 0.5 * x;
    const right: f32 = 1.0 + th;
    const leftDerivative: f32 = 0.5 * right;
    const rightDerivative: f32 = left * (1.0 - th * th) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_KAPPA * xSq);
    store<f32>(dinp + i * F32, load<f32>(dout + i * F32) * (leftDerivative + rightDerivative));
  }
}

// https://pytorch.org/docs/stable/generated/torch.nn.Tanh.html
export function tanh_forward(out: usize, inp: usize, n: i32): void {
  for (let i: usize = 0; i < <usize>n; i++) store<f32>(out + i * F32, Mathf.tanh(load<f32>(inp + i * F32)));
}

/** dinp = dout * (1 - y^2), y = tanh(x) (torch tanh_backward uses the output) */
export function tanh_backward(dinp: usize, dout: usize, out: usize, n: i32): void {
  const N = <usize>n;
  const one = f32x4.splat(1);
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) {
    const y = v128.load(out + i * F32);
    v128.store(dinp + i * F32, f32x4.mul(v128.load(dout + i * F32), f32x4.sub(one, f32x4.mul(y, y))));
  }
  for (; i < N; i++) {
    const y = load<f32>(out + i * F32);
    store<f32>(dinp + i * F32, load<f32>(dout + i * F32) * (1.0 - y * y));
  }
}

// https://pytorch.org/docs/stable/generated/torch.nn.Sigmoid.html : 1 / (1 + exp(-x))
export function sigmoid_forward(out: usize, inp: usize, n: i32): void {
  for (let i: usize = 0; i < <usize>n; i++) {
    store<f32>(out + i * F32, 1.0 / (1.0 + Mathf.exp(-load<f32>(inp + i * F32))));
  }
}

/** dinp = dout * y * (1 - y) (torch sigmoid_backward: grad * (1 - y) * y) */
export function sigmoid_backward(dinp: usize, dout: usize, out: usize, n: i32): void {
  const N = <usize>n;
  const one = f32x4.splat(1);
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) {
    const y = v128.load(out + i * F32);
    v128.store(dinp + i * F32, f32x4.mul(f32x4.mul(v128.load(dout + i * F32), f32x4.sub(one, y)), y));
  }
  for (; i < N; i++) {
    const y = load<f32>(out + i * F32);
    store<f32>(dinp + i * F32, load<f32>(dout + i * F32) * (1.0 - y) * y);
  }
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
  for (let r: usize = 0; r < <usize>rows; r++) {
    const idx = <usize>load<i32>(indices + r * 4);
    memory.copy(out + r * rowBytes, src + idx * rowBytes, rowBytes);
  }
}

/** 1 when every x[i] is finite, else 0. x*0 is 0 for finite x and NaN for NaN or +-Inf. */
export function all_finite(x: usize, n: i32): i32 {
  const N = <usize>n;
  const zero = f32x4.splat(0);
  let acc = zero;
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) acc = f32x4.add(acc, f32x4.mul(v128.load(x + i * F32), zero));
  let s: f32 = 0;
  for (; i < N; i++) s += load<f32>(x + i * F32) * 0;
  s += f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 1) + f32x4.extract_lane(acc, 2) + f32x4.extract_lane(acc, 3);
  return s == 0 ? 1 : 0;
}
