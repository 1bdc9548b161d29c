// Activations, forward and backward, behind one dispatcher per direction: `fn` is the
// activation's code from src/engine/layers/activations.ts (ACTIVATIONS), so a new activation is
// a case here, its twin in src/engine/reference.ts, its WGSL case and its registry entry.
// Backward passes WRITE dinp (an activation's input gradient has one producer).
import { exp4, F32 } from "./simd";

// the codes of src/engine/layers/activations.ts
const RELU: i32 = 0;
const LEAKY_RELU: i32 = 1;
const GELU: i32 = 2;
const GELU_TANH: i32 = 3;
const TANH: i32 = 4;
const SIGMOID: i32 = 5;
const SILU: i32 = 6;
const MISH: i32 = 7;

/** out = f(inp), f the activation `fn` (slope: LeakyReLU's negative_slope). */
export function activation_forward(out: usize, inp: usize, fn: i32, slope: f32, n: i32): void {
  switch (fn) {
    case RELU: relu_forward(out, inp, n); break;
    case LEAKY_RELU: leaky_relu_forward(out, inp, slope, n); break;
    case GELU: gelu_forward(out, inp, n); break;
    case GELU_TANH: gelu_tanh_forward(out, inp, n); break;
    case TANH: tanh_forward(out, inp, n); break;
    case SIGMOID: sigmoid_forward(out, inp, n); break;
    case SILU: silu_forward(out, inp, n); break;
    case MISH: mish_forward(out, inp, n); break;
    default: break;
  }
}

/** dinp = dout * f'(.), from the activation's input `inp` or its output `out`, whichever f' reads. */
export function activation_backward(dinp: usize, dout: usize, inp: usize, out: usize, fn: i32, slope: f32, n: i32): void {
  switch (fn) {
    case RELU: relu_backward(dinp, dout, out, n); break;
    case LEAKY_RELU: leaky_relu_backward(dinp, dout, inp, slope, n); break;
    case GELU: gelu_backward(dinp, dout, inp, n); break;
    case GELU_TANH: gelu_tanh_backward(dinp, dout, inp, n); break;
    case TANH: tanh_backward(dinp, dout, out, n); break;
    case SIGMOID: sigmoid_backward(dinp, dout, out, n); break;
    case SILU: silu_backward(dinp, dout, inp, n); break;
    case MISH: mish_backward(dinp, dout, inp, n); break;
    default: break;
  }
}

// https://pytorch.org/docs/stable/generated/torch.nn.ReLU.html : relu(x) = max(0, x)

function relu_forward(out: usize, inp: usize, n: i32): void {
  const N = <usize>n;
  const zero = f32x4.splat(0);
  let i: usize = 0;
  // x where not (x <= 0), else +0: max(0, x) for every x, NaN kept (x <= 0 is false for it), and
  // two instructions where f32x4.max's NaN and signed-zero rules take V8 about eight
  for (; i + 4 <= N; i += 4) {
    const x = v128.load(inp + i * F32);
    v128.store(out + i * F32, v128.andnot(x, f32x4.le(x, zero)));
  }
  for (; i < N; i++) {
    const x = load<f32>(inp + i * F32);
    store<f32>(out + i * F32, x > 0 || isNaN(x) ? x : 0);
  }
}

/** dinp = dout where out > 0 else 0 (torch threshold_backward on the result). */
function relu_backward(dinp: usize, dout: usize, out: usize, n: i32): void {
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
function leaky_relu_forward(out: usize, inp: usize, slope: f32, n: i32): void {
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
function leaky_relu_backward(dinp: usize, dout: usize, inp: usize, slope: f32, n: i32): void {
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
 * erf(x) in four lanes, Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): the formula PyTorch's
 * vectorised CPU path (Vectorized<float>::erf, used by GELU) evaluates, so GELU matches it
 * closely. t = 1 / (1 + p|x|), erf(|x|) = 1 - t P(t) e^(-x^2), with e^(-x^2) from exp4 (Cephes
 * expf, simd.ts; 0 once x^2 > 87.3, where erf is 1 in f32 anyway), sign(x) restored by a select.
 * Plain multiplies, adds and a correctly rounded divide: both builds give the same bits.
 * https://pytorch.org/docs/stable/generated/torch.special.erf.html
 */
// @ts-ignore: decorator
@inline
function erf4(x: v128): v128 {
  const t = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.mul(f32x4.splat(0.3275911), f32x4.abs(x)), f32x4.splat(1)));
  let r = f32x4.sub(f32x4.mul(f32x4.splat(1.061405429), t), f32x4.splat(1.453152027));
  r = f32x4.add(f32x4.mul(r, t), f32x4.splat(1.421413741));
  r = f32x4.sub(f32x4.mul(r, t), f32x4.splat(0.284496736));
  r = f32x4.add(f32x4.mul(r, t), f32x4.splat(0.254829592));
  const y = f32x4.sub(f32x4.splat(1), f32x4.mul(f32x4.mul(r, t), exp4(f32x4.mul(f32x4.neg(x), x))));
  return v128.bitselect(f32x4.neg(y), y, f32x4.lt(x, f32x4.splat(0)));
}

const SQRT1_2: f32 = 0.7071067811865476;
// 1/sqrt(2*pi) = M_2_SQRTPI * M_SQRT1_2 * 0.5
const INV_SQRT_2PI: f32 = 0.3989422804014327;
// sqrt(2/pi) = M_SQRT2 * M_2_SQRTPI * 0.5
const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const GELU_KAPPA: f32 = 0.044715;

/** GELU (erf) of four lanes: (x / 2) (1 + erf(x / sqrt 2)). */
// @ts-ignore: decorator
@inline
function gelu4(x: v128): v128 {
  return f32x4.mul(f32x4.mul(x, f32x4.splat(0.5)), f32x4.add(f32x4.splat(1), erf4(f32x4.mul(x, f32x4.splat(SQRT1_2)))));
}

/** GELU's derivative times dout, four lanes: dout (Phi(x) + x phi(x)), phi(x) = e^(-x^2/2) / sqrt(2 pi). */
// @ts-ignore: decorator
@inline
function gelu_grad4(g: v128, x: v128): v128 {
  const cdf = f32x4.mul(f32x4.splat(0.5), f32x4.add(f32x4.splat(1), erf4(f32x4.mul(x, f32x4.splat(SQRT1_2)))));
  const pdf = f32x4.mul(f32x4.splat(INV_SQRT_2PI), exp4(f32x4.mul(f32x4.mul(f32x4.splat(-0.5), x), x)));
  return f32x4.mul(g, f32x4.add(cdf, f32x4.mul(x, pdf)));
}

// https://pytorch.org/docs/stable/generated/torch.nn.GELU.html : x * Phi(x), Phi(x) = 0.5 (1 + erf(x / sqrt 2))
// The f32x4 body, then the scalar tail through lane 0 of the same function (same bits).
function gelu_forward(out: usize, inp: usize, n: i32): void {
  const N = <usize>n;
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) v128.store(out + i * F32, gelu4(v128.load(inp + i * F32)));
  for (; i < N; i++) store<f32>(out + i * F32, f32x4.extract_lane(gelu4(f32x4.splat(load<f32>(inp + i * F32))), 0));
}

/** dinp = dout * (Phi(x) + x * phi(x)) */
function gelu_backward(dinp: usize, dout: usize, inp: usize, n: i32): void {
  const N = <usize>n;
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) v128.store(dinp + i * F32, gelu_grad4(v128.load(dout + i * F32), v128.load(inp + i * F32)));
  for (; i < N; i++) {
    const g = f32x4.splat(load<f32>(dout + i * F32));
    store<f32>(dinp + i * F32, f32x4.extract_lane(gelu_grad4(g, f32x4.splat(load<f32>(inp + i * F32))), 0));
  }
}

/** GELU(approximate='tanh'): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
function gelu_tanh_forward(out: usize, inp: usize, n: i32): void {
  for (let i: usize = 0; i < <usize>n; i++) {
    const x = load<f32>(inp + i * F32);
    const inner = SQRT_2_OVER_PI * (x + GELU_KAPPA * x * x * x);
    store<f32>(out + i * F32, 0.5 * x * (1.0 + Mathf.tanh(inner)));
  }
}

/** The derivative of the tanh form, as torch's GeluBackwardKernel writes it. */
function gelu_tanh_backward(dinp: usize, dout: usize, inp: usize, n: i32): void {
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
function tanh_forward(out: usize, inp: usize, n: i32): void {
  for (let i: usize = 0; i < <usize>n; i++) store<f32>(out + i * F32, Mathf.tanh(load<f32>(inp + i * F32)));
}

/** dinp = dout * (1 - y^2), y = tanh(x) (torch tanh_backward uses the output) */
function tanh_backward(dinp: usize, dout: usize, out: usize, n: i32): void {
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
function sigmoid_forward(out: usize, inp: usize, n: i32): void {
  for (let i: usize = 0; i < <usize>n; i++) {
    store<f32>(out + i * F32, 1.0 / (1.0 + Mathf.exp(-load<f32>(inp + i * F32))));
  }
}

/** dinp = dout * y * (1 - y) (torch sigmoid_backward: grad * (1 - y) * y) */
function sigmoid_backward(dinp: usize, dout: usize, out: usize, n: i32): void {
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

// https://pytorch.org/docs/stable/generated/torch.nn.SiLU.html : x * sigmoid(x), computed as
// torch's CPU kernel does: x / (1 + exp(-x))
function silu_forward(out: usize, inp: usize, n: i32): void {
  for (let i: usize = 0; i < <usize>n; i++) {
    const x = load<f32>(inp + i * F32);
    store<f32>(out + i * F32, x / (1.0 + Mathf.exp(-x)));
  }
}

/** dinp = dout * s * (1 + x (1 - s)), s = sigmoid(x) (torch silu_backward) */
function silu_backward(dinp: usize, dout: usize, inp: usize, n: i32): void {
  for (let i: usize = 0; i < <usize>n; i++) {
    const x = load<f32>(inp + i * F32);
    const s: f32 = 1.0 / (1.0 + Mathf.exp(-x));
    store<f32>(dinp + i * F32, load<f32>(dout + i * F32) * s * (1.0 + x * (1.0 - s)));
  }
}

// https://pytorch.org/docs/stable/generated/torch.nn.Mish.html : x * tanh(softplus(x)), as torch's
// CPU kernel writes it: x * tanh(log1p(exp(x))) (exp overflows to inf for large x: tanh(inf) = 1)
function mish_forward(out: usize, inp: usize, n: i32): void {
  for (let i: usize = 0; i < <usize>n; i++) {
    const x = load<f32>(inp + i * F32);
    store<f32>(out + i * F32, x * Mathf.tanh(Mathf.log1p(Mathf.exp(x))));
  }
}

/** dinp = dout * (t + x * s * (1 - t^2)), t = tanh(softplus(x)), s = sigmoid(x) (torch mish_backward) */
function mish_backward(dinp: usize, dout: usize, inp: usize, n: i32): void {
  for (let i: usize = 0; i < <usize>n; i++) {
    const x = load<f32>(inp + i * F32);
    const s: f32 = 1.0 / (1.0 + Mathf.exp(-x));
    const t = Mathf.tanh(Mathf.log1p(Mathf.exp(x)));
    store<f32>(dinp + i * F32, load<f32>(dout + i * F32) * (t + x * s * (1.0 - t * t)));
  }
}
