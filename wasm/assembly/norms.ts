// Reductions for torch.nn.utils.clip_grad_norm_: the global norm is combined from these
// per-range partials by the caller (||g||_p = (sum |g|^p)^(1/p); inf-norm = max |g|).
// https://pytorch.org/docs/stable/generated/torch.nn.utils.clip_grad_norm_.html
import { F32 } from "./simd";

/** sum of x[i]^2, f32x4 lanes then the lanes summed in f64. */
export function sum_squares(x: usize, n: i32): f64 {
  const N = <usize>n;
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0);
  let i: usize = 0;
  for (; i + 8 <= N; i += 8) {
    const a = v128.load(x + i * F32), b = v128.load(x + i * F32, 16);
    acc0 = f32x4.add(acc0, f32x4.mul(a, a));
    acc1 = f32x4.add(acc1, f32x4.mul(b, b));
  }
  for (; i + 4 <= N; i += 4) {
    const a = v128.load(x + i * F32);
    acc0 = f32x4.add(acc0, f32x4.mul(a, a));
  }
  const acc = f32x4.add(acc0, acc1);
  let s: f64 = <f64>f32x4.extract_lane(acc, 0) + <f64>f32x4.extract_lane(acc, 1) +
    <f64>f32x4.extract_lane(acc, 2) + <f64>f32x4.extract_lane(acc, 3);
  for (; i < N; i++) {
    const v = load<f32>(x + i * F32);
    s += <f64>(v * v);
  }
  return s;
}

/** sum of |x[i]|^p for a general p > 0 (scalar: only used for unusual norm types). */
export function sum_abs_pow(x: usize, p: f64, n: i32): f64 {
  let s: f64 = 0;
  for (let i: usize = 0; i < <usize>n; i++) {
    const a = <f64>abs(load<f32>(x + i * F32));
    s += p == 1 ? a : Math.pow(a, p);
  }
  return s;
}

/** max of |x[i]| (NaN-propagating: any NaN makes the result NaN). */
export function max_abs(x: usize, n: i32): f32 {
  const N = <usize>n;
  let acc = f32x4.splat(0);
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) acc = f32x4.max(acc, f32x4.abs(v128.load(x + i * F32)));
  let m: f32 = max(max(f32x4.extract_lane(acc, 0), f32x4.extract_lane(acc, 1)), max(f32x4.extract_lane(acc, 2), f32x4.extract_lane(acc, 3)));
  for (; i < N; i++) m = max(m, abs(load<f32>(x + i * F32)));
  return m;
}
