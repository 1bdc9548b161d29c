// Losses, each fused with its gradient. Reduction is always 'mean' as in PyTorch's default.
// Each returns the loss (f64 for the caller's bookkeeping; computed as PyTorch does, in f32
// per element) and, when `grad` is not 0, WRITES dL/dpred into grad (same shape as pred).
// Targets are f32: class indices are exact integers in f32.
import { F32 } from "./simd";

// https://pytorch.org/docs/stable/generated/torch.nn.MSELoss.html
// loss = mean((x - y)^2); grad = (2/n) (x - y)   (torch: norm = 2./numel, cast to float)
export function mse_loss(grad: usize, pred: usize, target: usize, n: i32): f64 {
  if (n == 0) return 0;
  const N = <usize>n;
  const norm = <f32>(2.0 / <f64>n);
  let sum: f64 = 0;
  const vnorm = f32x4.splat(norm);
  let i: usize = 0;
  let acc = f32x4.splat(0);
  for (; i + 4 <= N; i += 4) {
    const d = f32x4.sub(v128.load(pred + i * F32), v128.load(target + i * F32));
    acc = f32x4.add(acc, f32x4.mul(d, d));
    if (grad != 0) v128.store(grad + i * F32, f32x4.mul(vnorm, d));
  }
  sum = <f64>f32x4.extract_lane(acc, 0) + <f64>f32x4.extract_lane(acc, 1) + <f64>f32x4.extract_lane(acc, 2) + <f64>f32x4.extract_lane(acc, 3);
  for (; i < N; i++) {
    const d = load<f32>(pred + i * F32) - load<f32>(target + i * F32);
    sum += <f64>(d * d);
    if (grad != 0) store<f32>(grad + i * F32, norm * d);
  }
  return sum / <f64>n;
}

// https://pytorch.org/docs/stable/generated/torch.nn.L1Loss.html
// loss = mean(|x - y|); grad = sgn(x - y) / n
export function l1_loss(grad: usize, pred: usize, target: usize, n: i32): f64 {
  if (n == 0) return 0;
  const inv = <f32>(1.0 / <f64>n);
  let sum: f64 = 0;
  for (let i: usize = 0; i < <usize>n; i++) {
    const d = load<f32>(pred + i * F32) - load<f32>(target + i * F32);
    sum += <f64>abs(d);
    if (grad != 0) store<f32>(grad + i * F32, d > 0 ? inv : d < 0 ? -inv : <f32>0);
  }
  return sum / <f64>n;
}

// https://pytorch.org/docs/stable/generated/torch.nn.HuberLoss.html
// l = 0.5 d^2 if |d| < delta else delta (|d| - 0.5 delta); grad = clamp(d, -delta, delta) / n
export function huber_loss(grad: usize, pred: usize, target: usize, delta: f32, n: i32): f64 {
  if (n == 0) return 0;
  const inv = <f32>(1.0 / <f64>n);
  let sum: f64 = 0;
  for (let i: usize = 0; i < <usize>n; i++) {
    const d = load<f32>(pred + i * F32) - load<f32>(target + i * F32);
    const ad = abs(d);
    sum += <f64>(ad < delta ? 0.5 * d * d : delta * (ad - 0.5 * delta));
    if (grad != 0) store<f32>(grad + i * F32, d < -delta ? -inv * delta : d > delta ? inv * delta : inv * d);
  }
  return sum / <f64>n;
}

// https://pytorch.org/docs/stable/generated/torch.nn.SmoothL1Loss.html
// l = 0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta; grad = clamp(d / beta, -1, 1) / n.
// beta == 0 is L1 (torch dispatches smooth_l1 with beta 0 to l1_loss).
export function smooth_l1_loss(grad: usize, pred: usize, target: usize, beta: f32, n: i32): f64 {
  if (beta == 0) return l1_loss(grad, pred, target, n);
  if (n == 0) return 0;
  const inv = <f32>(1.0 / <f64>n);
  let sum: f64 = 0;
  for (let i: usize = 0; i < <usize>n; i++) {
    const d = load<f32>(pred + i * F32) - load<f32>(target + i * F32);
    const ad = abs(d);
    sum += <f64>(ad < beta ? 0.5 * d * d / beta : ad - 0.5 * beta);
    if (grad != 0) store<f32>(grad + i * F32, d < -beta ? -inv : d > beta ? inv : inv * d / beta);
  }
  return sum / <f64>n;
}

// https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html
// logp = log_softmax(x); with class weights w (1 when weight == 0) and smoothing eps:
//   loss = [(1-eps) sum_i -w[y_i] logp[i,y_i] + (eps/C) sum_i sum_c -w_c logp[i,c]] / W,
//   W = sum of w[y_i] over rows whose target != ignore_index (ignored rows add nothing).
// grad[i,c] = [(1-eps) w[y_i] (p_ic - [c == y_i]) + (eps/C)(S_w p_ic - w_c)] / W, S_w = sum_c w_c.
// W == 0 (every row ignored) gives NaN, as torch does.
export function cross_entropy_loss(
  grad: usize, logits: usize, target: usize, weight: usize,
  B: i32, C: i32, ignore_index: i32, label_smoothing: f32,
): f64 {
  const Cu = <usize>C;
  const eps = <f64>label_smoothing;
  let sumW: f64 = 0; // S_w
  for (let c: usize = 0; c < Cu; c++) sumW += weight != 0 ? <f64>load<f32>(weight + c * F32) : 1.0;
  let nll: f64 = 0;
  let smooth: f64 = 0;
  let W: f64 = 0;
  for (let i: usize = 0; i < <usize>B; i++) {
    const row = logits + i * Cu * F32;
    const y = <i32>load<f32>(target + i * F32);
    if (y == ignore_index) {
      if (grad != 0) for (let c: usize = 0; c < Cu; c++) store<f32>(grad + (i * Cu + c) * F32, 0);
      continue;
    }
    let m: f32 = -Infinity;
    for (let c: usize = 0; c < Cu; c++) m = max(m, load<f32>(row + c * F32));
    let se: f64 = 0;
    for (let c: usize = 0; c < Cu; c++) se += Math.exp(<f64>(load<f32>(row + c * F32) - m));
    const lse = <f64>m + Math.log(se);
    const wy: f64 = weight != 0 ? <f64>load<f32>(weight + <usize>y * F32) : 1.0;
    W += wy;
    nll -= wy * (<f64>load<f32>(row + <usize>y * F32) - lse);
    if (eps > 0) {
      for (let c: usize = 0; c < Cu; c++) {
        const wc: f64 = weight != 0 ? <f64>load<f32>(weight + c * F32) : 1.0;
        smooth -= wc * (<f64>load<f32>(row + c * F32) - lse);
      }
    }
    if (grad != 0) {
      // first the un-normalised gradient; divided by W once W is known
      for (let c: usize = 0; c < Cu; c++) {
        const p = Math.exp(<f64>load<f32>(row + c * F32) - lse);
        const wc: f64 = weight != 0 ? <f64>load<f32>(weight + c * F32) : 1.0;
        let g = (1.0 - eps) * wy * (p - (<i32>c == y ? 1.0 : 0.0));
        if (eps > 0) g += (eps / <f64>C) * (sumW * p - wc);
        store<f32>(grad + (i * Cu + c) * F32, <f32>g);
      }
    }
  }
  if (grad != 0) {
    const invW = <f32>(1.0 / W);
    const total = <usize>B * Cu;
    for (let k: usize = 0; k < total; k++) store<f32>(grad + k * F32, load<f32>(grad + k * F32) * invW);
  }
  return ((1.0 - eps) * nll + (eps / <f64>C) * smooth) / W;
}

// https://pytorch.org/docs/stable/generated/torch.nn.BCEWithLogitsLoss.html
// lw = 1 + (pw_j - 1) y;  l = (1 - y) x + lw (log1p(exp(-|x|)) + max(-x, 0))
// grad = (lw sigmoid(x) - pw_j y) / n    (torch's backward: ((pw*y + 1 - y) * sigmoid(x) - pw*y))
// pos_weight is 0 (none) or a [C] vector broadcast over rows.
export function bce_with_logits_loss(grad: usize, logits: usize, target: usize, pos_weight: usize, B: i32, C: i32): f64 {
  const n = <usize>B * <usize>C;
  if (n == 0) return 0;
  const inv = <f32>(1.0 / <f64>n);
  let sum: f64 = 0;
  for (let k: usize = 0; k < n; k++) {
    const x = load<f32>(logits + k * F32);
    const y = load<f32>(target + k * F32);
    const pw: f32 = pos_weight != 0 ? load<f32>(pos_weight + (k % <usize>C) * F32) : 1;
    const lw: f32 = (pw - 1) * y + 1;
    const softplusNeg = <f32>Math.log1p(Math.exp(-<f64>abs(x))) + max(-x, <f32>0); // -log sigmoid(x)
    sum += <f64>((1 - y) * x + lw * softplusNeg);
    if (grad != 0) {
      const s = <f32>(1.0 / (1.0 + Math.exp(-<f64>x)));
      store<f32>(grad + k * F32, (lw * s - pw * y) * inv);
    }
  }
  return sum / <f64>n;
}

// Binary SVM hinge (Keras "hinge"): mean(max(0, 1 - t x)), t = +1 for label 1, else -1.
// grad = -t / n where 1 - t x >= 0 (torch.clamp(min=0) passes the gradient at the kink).
export function hinge_loss(grad: usize, pred: usize, target: usize, n: i32): f64 {
  if (n == 0) return 0;
  const inv = <f32>(1.0 / <f64>n);
  let sum: f64 = 0;
  for (let i: usize = 0; i < <usize>n; i++) {
    const x = load<f32>(pred + i * F32);
    const t: f32 = load<f32>(target + i * F32) == 1 ? 1 : -1;
    const z: f32 = 1 - t * x;
    sum += <f64>max(z, <f32>0);
    if (grad != 0) store<f32>(grad + i * F32, z >= 0 ? -t * inv : 0);
  }
  return sum / <f64>n;
}

// https://pytorch.org/docs/stable/generated/torch.nn.MultiMarginLoss.html
// l_i = w[y_i] sum_{j != y_i} max(0, margin - x[y_i] + x[j])^p / C, mean over rows.
// grad: h = g (p = 1) or 2 g z (p = 2), g = 1/(B C), times w[y]; grad[j] = h, grad[y] -= h, for z > 0.
export function multi_margin_loss(
  grad: usize, logits: usize, target: usize, weight: usize, B: i32, C: i32, p: i32, margin: f32,
): f64 {
  if (B == 0) return 0;
  const Cu = <usize>C;
  const g = <f32>(1.0 / (<f64>B * <f64>C));
  let sum: f64 = 0;
  for (let i: usize = 0; i < <usize>B; i++) {
    const row = logits + i * Cu * F32;
    const grow = grad + i * Cu * F32;
    const y = <usize>(<i32>load<f32>(target + i * F32));
    const xy = load<f32>(row + y * F32);
    const wy: f32 = weight != 0 ? load<f32>(weight + y * F32) : 1;
    let rowSum: f32 = 0;
    let gy: f32 = 0;
    for (let c: usize = 0; c < Cu; c++) {
      if (c == y) continue;
      const z = margin - xy + load<f32>(row + c * F32);
      let h: f32 = 0;
      if (z > 0) {
        rowSum += (p == 1 ? z : z * z) * wy;
        h = (p == 1 ? g : 2 * g * z) * wy;
        gy -= h;
      }
      if (grad != 0) store<f32>(grow + c * F32, h);
    }
    if (grad != 0) store<f32>(grow + y * F32, gy);
    sum += <f64>(rowSum / <f32>C);
  }
  return sum / <f64>B;
}
