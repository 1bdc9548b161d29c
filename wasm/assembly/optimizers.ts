// Optimizer updates over a contiguous range of parameters (all trainable parameters are laid
// out contiguously, so one call updates the whole model). Scalars derived from the step count
// and the schedule (bias corrections, clr) are computed by the caller in f64, as Python does,
// and arrive here as the f32 values PyTorch's tensor ops would cast them to.
// Flags are i32 (0/1). Each kernel: f32x4 body, scalar tail with the same arithmetic order.
import { F32 } from "./simd";

// https://pytorch.org/docs/stable/generated/torch.optim.SGD.html
//   g = -g if maximize; g += wd p
//   momentum: buf = g (first step) else buf = mu buf + (1 - dampening) g
//             g = g + mu buf (nesterov) else g = buf
//   p += -lr g
export function sgd_step(
  param: usize, grad: usize, buf: usize, n: i32,
  lr: f32, momentum: f32, dampening1m: f32, weight_decay: f32,
  nesterov: i32, maximize: i32, first: i32,
): void {
  const N = <usize>n;
  const vlr = f32x4.splat(-lr), vmu = f32x4.splat(momentum), vd = f32x4.splat(dampening1m), vwd = f32x4.splat(weight_decay);
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) {
    const o = i * F32;
    const p = v128.load(param + o);
    let g = v128.load(grad + o);
    if (maximize) g = f32x4.neg(g);
    if (weight_decay != 0) g = f32x4.add(g, f32x4.mul(vwd, p));
    if (momentum != 0) {
      let b: v128;
      if (first) b = g;
      else b = f32x4.add(f32x4.mul(v128.load(buf + o), vmu), f32x4.mul(vd, g));
      v128.store(buf + o, b);
      g = nesterov ? f32x4.add(g, f32x4.mul(vmu, b)) : b;
    }
    v128.store(param + o, f32x4.add(p, f32x4.mul(vlr, g)));
  }
  for (; i < N; i++) {
    const o = i * F32;
    const p = load<f32>(param + o);
    let g = load<f32>(grad + o);
    if (maximize) g = -g;
    if (weight_decay != 0) g = g + weight_decay * p;
    if (momentum != 0) {
      const b: f32 = first ? g : load<f32>(buf + o) * momentum + dampening1m * g;
      store<f32>(buf + o, b);
      g = nesterov ? g + momentum * b : b;
    }
    store<f32>(param + o, p + -lr * g);
  }
}

// https://pytorch.org/docs/stable/generated/torch.optim.Adam.html (and AdamW)
//   adamw: p *= 1 - lr wd            adam: g += wd p
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;  amsgrad: vmax = max(vmax, v)
//   denom = sqrt(v or vmax) / sqrt(1 - beta2^t) + eps;  p += -(lr / (1 - beta1^t)) m / denom
export function adam_step(
  param: usize, grad: usize, m: usize, v: usize, vmax: usize, n: i32,
  step_size: f32, beta1: f32, beta1m: f32, beta2: f32, beta2m: f32, bias_correction2_sqrt: f32,
  eps: f32, weight_decay: f32, decay_factor: f32, amsgrad: i32, maximize: i32, decoupled: i32,
): void {
  const N = <usize>n;
  const vb1 = f32x4.splat(beta1), vb1m = f32x4.splat(beta1m), vb2 = f32x4.splat(beta2), vb2m = f32x4.splat(beta2m);
  const vbc2 = f32x4.splat(bias_correction2_sqrt), veps = f32x4.splat(eps), vss = f32x4.splat(-step_size);
  const vwd = f32x4.splat(weight_decay), vdecay = f32x4.splat(decay_factor);
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) {
    const o = i * F32;
    let p = v128.load(param + o);
    let g = v128.load(grad + o);
    if (maximize) g = f32x4.neg(g);
    if (decoupled) p = f32x4.mul(p, vdecay);
    else if (weight_decay != 0) g = f32x4.add(g, f32x4.mul(vwd, p));
    const mi = f32x4.add(f32x4.mul(v128.load(m + o), vb1), f32x4.mul(vb1m, g));
    const vi = f32x4.add(f32x4.mul(v128.load(v + o), vb2), f32x4.mul(f32x4.mul(vb2m, g), g));
    v128.store(m + o, mi);
    v128.store(v + o, vi);
    let s = vi;
    if (amsgrad) {
      s = f32x4.max(v128.load(vmax + o), vi);
      v128.store(vmax + o, s);
    }
    const denom = f32x4.add(f32x4.div(f32x4.sqrt(s), vbc2), veps);
    v128.store(param + o, f32x4.add(p, f32x4.div(f32x4.mul(vss, mi), denom)));
  }
  for (; i < N; i++) {
    const o = i * F32;
    let p = load<f32>(param + o);
    let g = load<f32>(grad + o);
    if (maximize) g = -g;
    if (decoupled) p = p * decay_factor;
    else if (weight_decay != 0) g = g + weight_decay * p;
    const mi = load<f32>(m + o) * beta1 + beta1m * g;
    const vi = load<f32>(v + o) * beta2 + beta2m * g * g;
    store<f32>(m + o, mi);
    store<f32>(v + o, vi);
    let s = vi;
    if (amsgrad) {
      s = max(load<f32>(vmax + o), vi);
      store<f32>(vmax + o, s);
    }
    const denom = Mathf.sqrt(s) / bias_correction2_sqrt + eps;
    store<f32>(param + o, p + (-step_size * mi) / denom);
  }
}

// https://pytorch.org/docs/stable/generated/torch.optim.RMSprop.html
//   g += wd p;  v = alpha v + (1 - alpha) g^2
//   centered: ga = alpha ga + (1 - alpha) g;  avg = sqrt(v - ga^2) + eps   else avg = sqrt(v) + eps
//   momentum: buf = mu buf + g / avg;  p += -lr buf      else p += -lr g / avg
export function rmsprop_step(
  param: usize, grad: usize, square_avg: usize, grad_avg: usize, buf: usize, n: i32,
  lr: f32, alpha: f32, alpha1m: f32, eps: f32, weight_decay: f32, momentum: f32,
  centered: i32, maximize: i32,
): void {
  const N = <usize>n;
  const va = f32x4.splat(alpha), va1m = f32x4.splat(alpha1m), veps = f32x4.splat(eps), vlr = f32x4.splat(-lr);
  const vwd = f32x4.splat(weight_decay), vmu = f32x4.splat(momentum);
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) {
    const o = i * F32;
    const p = v128.load(param + o);
    let g = v128.load(grad + o);
    if (maximize) g = f32x4.neg(g);
    if (weight_decay != 0) g = f32x4.add(g, f32x4.mul(vwd, p));
    const sq = f32x4.add(f32x4.mul(v128.load(square_avg + o), va), f32x4.mul(f32x4.mul(va1m, g), g));
    v128.store(square_avg + o, sq);
    let avg: v128;
    if (centered) {
      const ga = f32x4.add(f32x4.mul(v128.load(grad_avg + o), va), f32x4.mul(va1m, g));
      v128.store(grad_avg + o, ga);
      avg = f32x4.sqrt(f32x4.sub(sq, f32x4.mul(ga, ga)));
    } else {
      avg = f32x4.sqrt(sq);
    }
    avg = f32x4.add(avg, veps);
    if (momentum > 0) {
      const b = f32x4.add(f32x4.mul(v128.load(buf + o), vmu), f32x4.div(g, avg));
      v128.store(buf + o, b);
      v128.store(param + o, f32x4.add(p, f32x4.mul(vlr, b)));
    } else {
      v128.store(param + o, f32x4.add(p, f32x4.div(f32x4.mul(vlr, g), avg)));
    }
  }
  for (; i < N; i++) {
    const o = i * F32;
    const p = load<f32>(param + o);
    let g = load<f32>(grad + o);
    if (maximize) g = -g;
    if (weight_decay != 0) g = g + weight_decay * p;
    const sq = load<f32>(square_avg + o) * alpha + alpha1m * g * g;
    store<f32>(square_avg + o, sq);
    let avg: f32;
    if (centered) {
      const ga = load<f32>(grad_avg + o) * alpha + alpha1m * g;
      store<f32>(grad_avg + o, ga);
      avg = Mathf.sqrt(sq - ga * ga);
    } else {
      avg = Mathf.sqrt(sq);
    }
    avg = avg + eps;
    if (momentum > 0) {
      const b = load<f32>(buf + o) * momentum + g / avg;
      store<f32>(buf + o, b);
      store<f32>(param + o, p + -lr * b);
    } else {
      store<f32>(param + o, p + (-lr * g) / avg);
    }
  }
}

// https://pytorch.org/docs/stable/generated/torch.optim.Adagrad.html
//   g += wd p;  clr = lr / (1 + (t - 1) lr_decay)  (caller);  s += g^2;  p += -clr g / (sqrt(s) + eps)
export function adagrad_step(
  param: usize, grad: usize, sum: usize, n: i32, clr: f32, eps: f32, weight_decay: f32, maximize: i32,
): void {
  const N = <usize>n;
  const vclr = f32x4.splat(-clr), veps = f32x4.splat(eps), vwd = f32x4.splat(weight_decay);
  let i: usize = 0;
  for (; i + 4 <= N; i += 4) {
    const o = i * F32;
    const p = v128.load(param + o);
    let g = v128.load(grad + o);
    if (maximize) g = f32x4.neg(g);
    if (weight_decay != 0) g = f32x4.add(g, f32x4.mul(vwd, p));
    const s = f32x4.add(v128.load(sum + o), f32x4.mul(g, g));
    v128.store(sum + o, s);
    v128.store(param + o, f32x4.add(p, f32x4.div(f32x4.mul(vclr, g), f32x4.add(f32x4.sqrt(s), veps))));
  }
  for (; i < N; i++) {
    const o = i * F32;
    const p = load<f32>(param + o);
    let g = load<f32>(grad + o);
    if (maximize) g = -g;
    if (weight_decay != 0) g = g + weight_decay * p;
    const s = load<f32>(sum + o) + g * g;
    store<f32>(sum + o, s);
    store<f32>(param + o, p + (-clr * g) / (Mathf.sqrt(s) + eps));
  }
}
