// Normalisation layers: LayerNorm and RMSNorm (per row), BatchNorm (per channel over the batch).
// Outputs first, then inputs, then sizes. Input gradients are WRITTEN; parameter gradients
// (dweight, dbias) ACCUMULATE with +=. A pointer 0 means "absent": no weight (no affine), no
// bias, no input gradient wanted. Every reduction is f32 in one documented order, which the
// TypeScript twins (src/engine/reference.ts) and the WGSL kernels (src/engine/webgpu/wgsl.ts)
// repeat, so all three agree bit for bit where the hardware rounds the same:
//
//   sum of a contiguous run x[0..n):  lanes l0..l3 accumulate x[4k + j] over the 4-aligned body
//   (f32x4, a separate multiply and add: no fused madd in either build), then
//   s = (l0 + l1) + (l2 + l3), then the tail x[n - n % 4 ..] added to s in order.
//
//   sum over a BatchNorm channel (runs of L elements, one per sample n = 0..N-1): the bodies of
//   every run go to the same four lanes, the tails to a scalar t in order of (n, l); the total is
//   (l0 + l1) + (l2 + l3) + t when L >= 4, else t (all elements in order of n, then l).
import { F32, hsum } from "./simd";

/** Sum of a contiguous run x[0..n) in the documented order. */
// @ts-ignore: decorator
@inline
function runSum(x: usize, n: usize): f32 {
  let acc = f32x4.splat(0);
  let i: usize = 0;
  for (; i + 4 <= n; i += 4) acc = f32x4.add(acc, v128.load(x + i * F32));
  let s = hsum(acc);
  for (; i < n; i++) s += load<f32>(x + i * F32);
  return s;
}

/** Sum of (x[i] - c)^2 over a contiguous run, in the documented order. */
// @ts-ignore: decorator
@inline
function runSquares(x: usize, c: f32, n: usize): f32 {
  const cv = f32x4.splat(c);
  let acc = f32x4.splat(0);
  let i: usize = 0;
  for (; i + 4 <= n; i += 4) {
    const d = f32x4.sub(v128.load(x + i * F32), cv);
    acc = f32x4.add(acc, f32x4.mul(d, d));
  }
  let s = hsum(acc);
  for (; i < n; i++) {
    const d = load<f32>(x + i * F32) - c;
    s += d * d;
  }
  return s;
}

// ------------------------------------------------------------------ LayerNorm / RMSNorm
// https://pytorch.org/docs/stable/generated/torch.nn.LayerNorm.html :
//   y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias, Var biased, over the last D elements.
// https://pytorch.org/docs/stable/generated/torch.nn.RMSNorm.html :
//   y = x / sqrt(mean(x^2) + eps) * weight: the same with the centering left out (center 0).

/**
 * out[r, :] = (x[r, :] - mean_r) * rstd_r * weight + bias for each of `rows` rows of D elements:
 * mean_r = sum(x) / D (0 when center is 0), var_r = sum((x - mean_r)^2) / D,
 * rstd_r = 1 / sqrt(var_r + eps). Writes mean[r] (when center is 1) and rstd[r] for the backward.
 */
export function layer_norm_forward(
  out: usize, mean: usize, rstd: usize, inp: usize, weight: usize, bias: usize,
  rows: i32, D: i32, eps: f32, center: i32,
): void {
  const n = <usize>D;
  const fD = <f32>D;
  for (let r: usize = 0; r < <usize>rows; r++) {
    const x = inp + r * n * F32;
    const y = out + r * n * F32;
    const mu: f32 = center != 0 ? runSum(x, n) / fD : 0;
    const rs: f32 = 1.0 / Mathf.sqrt(runSquares(x, mu, n) / fD + eps);
    if (center != 0) store<f32>(mean + r * F32, mu);
    store<f32>(rstd + r * F32, rs);
    const muv = f32x4.splat(mu);
    const rsv = f32x4.splat(rs);
    let j: usize = 0;
    for (; j + 4 <= n; j += 4) {
      let v = f32x4.mul(f32x4.sub(v128.load(x + j * F32), muv), rsv);
      if (weight != 0) v = f32x4.mul(v, v128.load(weight + j * F32));
      if (bias != 0) v = f32x4.add(v, v128.load(bias + j * F32));
      v128.store(y + j * F32, v);
    }
    for (; j < n; j++) {
      let v = (load<f32>(x + j * F32) - mu) * rs;
      if (weight != 0) v = v * load<f32>(weight + j * F32);
      if (bias != 0) v = v + load<f32>(bias + j * F32);
      store<f32>(y + j * F32, v);
    }
  }
}

/**
 * The backward of layer_norm_forward, per row, with xhat = (x - mean) * rstd and g = dout * weight:
 *   dinp = ((g - a) - xhat * b) * rstd,  a = sum(g) / D (0 when center is 0),  b = sum(g * xhat) / D
 *   dweight[j] += sum_r dout * xhat,     dbias[j] += sum_r dout   (rows in order)
 * dinp, dweight, dbias: 0 when not wanted; weight 0 when there is none (g = dout).
 */
export function layer_norm_backward(
  dinp: usize, dweight: usize, dbias: usize, dout: usize, inp: usize, weight: usize, mean: usize, rstd: usize,
  rows: i32, D: i32, center: i32,
): void {
  const n = <usize>D;
  const fD = <f32>D;
  for (let r: usize = 0; r < <usize>rows; r++) {
    const x = inp + r * n * F32;
    const dy = dout + r * n * F32;
    const mu: f32 = center != 0 ? load<f32>(mean + r * F32) : 0;
    const rs = load<f32>(rstd + r * F32);
    const muv = f32x4.splat(mu);
    const rsv = f32x4.splat(rs);
    if (dinp != 0) {
      // a = sum(g) / D, b = sum(g * xhat) / D, in the documented order
      let accG = f32x4.splat(0);
      let accGX = f32x4.splat(0);
      let j: usize = 0;
      for (; j + 4 <= n; j += 4) {
        let g = v128.load(dy + j * F32);
        if (weight != 0) g = f32x4.mul(g, v128.load(weight + j * F32));
        const xh = f32x4.mul(f32x4.sub(v128.load(x + j * F32), muv), rsv);
        accG = f32x4.add(accG, g);
        accGX = f32x4.add(accGX, f32x4.mul(g, xh));
      }
      let sG = hsum(accG);
      let sGX = hsum(accGX);
      for (; j < n; j++) {
        let g = load<f32>(dy + j * F32);
        if (weight != 0) g = g * load<f32>(weight + j * F32);
        const xh = (load<f32>(x + j * F32) - mu) * rs;
        sG += g;
        sGX += g * xh;
      }
      const a: f32 = center != 0 ? sG / fD : 0;
      const b: f32 = sGX / fD;
      const av = f32x4.splat(a);
      const bv = f32x4.splat(b);
      const dx = dinp + r * n * F32;
      j = 0;
      for (; j + 4 <= n; j += 4) {
        let g = v128.load(dy + j * F32);
        if (weight != 0) g = f32x4.mul(g, v128.load(weight + j * F32));
        const xh = f32x4.mul(f32x4.sub(v128.load(x + j * F32), muv), rsv);
        v128.store(dx + j * F32, f32x4.mul(f32x4.sub(f32x4.sub(g, av), f32x4.mul(xh, bv)), rsv));
      }
      for (; j < n; j++) {
        let g = load<f32>(dy + j * F32);
        if (weight != 0) g = g * load<f32>(weight + j * F32);
        const xh = (load<f32>(x + j * F32) - mu) * rs;
        store<f32>(dx + j * F32, ((g - a) - xh * b) * rs);
      }
    }
    if (dweight != 0 || dbias != 0) {
      let j: usize = 0;
      for (; j + 4 <= n; j += 4) {
        const g = v128.load(dy + j * F32);
        if (dweight != 0) {
          const xh = f32x4.mul(f32x4.sub(v128.load(x + j * F32), muv), rsv);
          v128.store(dweight + j * F32, f32x4.add(v128.load(dweight + j * F32), f32x4.mul(g, xh)));
        }
        if (dbias != 0) v128.store(dbias + j * F32, f32x4.add(v128.load(dbias + j * F32), g));
      }
      for (; j < n; j++) {
        const g = load<f32>(dy + j * F32);
        if (dweight != 0) {
          const xh = (load<f32>(x + j * F32) - mu) * rs;
          store<f32>(dweight + j * F32, load<f32>(dweight + j * F32) + g * xh);
        }
        if (dbias != 0) store<f32>(dbias + j * F32, load<f32>(dbias + j * F32) + g);
      }
    }
  }
}

// ------------------------------------------------------------------ BatchNorm
// https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm1d.html (and BatchNorm2d):
//   y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias per channel, over the batch and the
//   positions; training uses the batch's statistics (biased variance) and updates
//   running = (1 - momentum) running + momentum statistic (unbiased variance); evaluation
//   uses the running statistics. Inputs are [N, C, L] (L = 1 for [N, C], H*W for 2d).

/** Elements of channel c in [N, C, L]: run n starts at (n*C + c) * L. */
// @ts-ignore: decorator
@inline
function channelRun(base: usize, n: usize, c: usize, C: usize, L: usize): usize {
  return base + ((n * C + c) * L) * F32;
}

/**
 * The sum over channel c of f(x), f = x (squares 0) or (x - m)^2 (squares 1), in the documented
 * channel order (one L-element run per sample).
 */
// @ts-ignore: decorator
@inline
function channelSum(inp: usize, c: usize, m: f32, squares: bool, N: usize, C: usize, L: usize): f32 {
  const mv = f32x4.splat(m);
  let acc = f32x4.splat(0);
  let t: f32 = 0;
  const body = L - L % 4;
  for (let n: usize = 0; n < N; n++) {
    const x = channelRun(inp, n, c, C, L);
    let l: usize = 0;
    for (; l < body; l += 4) {
      const v = v128.load(x + l * F32);
      if (squares) {
        const d = f32x4.sub(v, mv);
        acc = f32x4.add(acc, f32x4.mul(d, d));
      } else {
        acc = f32x4.add(acc, v);
      }
    }
    for (; l < L; l++) {
      const v = load<f32>(x + l * F32);
      if (squares) {
        const d = v - m;
        t += d * d;
      } else {
        t += v;
      }
    }
  }
  return L >= 4 ? hsum(acc) + t : t;
}

/**
 * Per-channel batch statistics of inp [N, C, L]: mean[c] = sum(x) / (N L) and the biased
 * variance var[c] = sum((x - mean)^2) / (N L), each sum in the documented channel order.
 */
export function batch_norm_stats(mean: usize, variance: usize, inp: usize, N: i32, C: i32, L: i32): void {
  const n = <usize>N, ch = <usize>C, len = <usize>L;
  const count = <f32>(N * L);
  let c: usize = 0;
  if (len == 1) {
    // [N, C]: each channel's sum runs down a column, in row order: 4 channels per f32x4
    const cnt = f32x4.splat(count);
    for (; c + 4 <= ch; c += 4) {
      let s = f32x4.splat(0);
      for (let r: usize = 0; r < n; r++) s = f32x4.add(s, v128.load(inp + (r * ch + c) * F32));
      const m = f32x4.div(s, cnt);
      let q = f32x4.splat(0);
      for (let r: usize = 0; r < n; r++) {
        const d = f32x4.sub(v128.load(inp + (r * ch + c) * F32), m);
        q = f32x4.add(q, f32x4.mul(d, d));
      }
      v128.store(mean + c * F32, m);
      v128.store(variance + c * F32, f32x4.div(q, cnt));
    }
  }
  for (; c < ch; c++) {
    const m = channelSum(inp, c, 0, false, n, ch, len) / count;
    store<f32>(mean + c * F32, m);
    store<f32>(variance + c * F32, channelSum(inp, c, m, true, n, ch, len) / count);
  }
}

/**
 * The running statistics after one training batch of `count` values per channel:
 *   num_batches_tracked += 1;  m = momentum, or 1 / num_batches_tracked when momentum < 0
 *   (momentum None: the cumulative average);
 *   running_mean = m * mean + (1 - m) * running_mean;
 *   running_var = m * var * count / (count - 1) + (1 - m) * running_var   (unbiased)
 * in f64, rounded to f32 once, as torch's CPU kernel (double accumulators) does.
 */
export function batch_norm_update(
  running_mean: usize, running_var: usize, num_batches_tracked: usize, mean: usize, variance: usize,
  C: i32, momentum: f64, count: i32,
): void {
  const tracked = <f64>load<f32>(num_batches_tracked) + 1;
  store<f32>(num_batches_tracked, <f32>tracked);
  const m: f64 = momentum < 0 ? 1.0 / tracked : momentum;
  const unbias: f64 = <f64>count / <f64>(count - 1);
  for (let c: usize = 0; c < <usize>C; c++) {
    const rm = <f64>load<f32>(running_mean + c * F32);
    const rv = <f64>load<f32>(running_var + c * F32);
    store<f32>(running_mean + c * F32, <f32>(m * <f64>load<f32>(mean + c * F32) + (1 - m) * rm));
    store<f32>(running_var + c * F32, <f32>(m * (<f64>load<f32>(variance + c * F32) * unbias) + (1 - m) * rv));
  }
}

/**
 * out = (x - mean[c]) * rstd[c] * weight[c] + bias[c] over inp [N, C, L], rstd = 1 / sqrt(var + eps):
 * the batch's statistics in training, the running ones in evaluation. weight, bias: 0 for none.
 */
export function batch_norm_forward(
  out: usize, inp: usize, mean: usize, variance: usize, weight: usize, bias: usize,
  N: i32, C: i32, L: i32, eps: f32,
): void {
  const n = <usize>N, ch = <usize>C, len = <usize>L;
  if (len == 1) {
    // [N, C]: rows of C channels, 4 channels per f32x4
    const epsv = f32x4.splat(eps);
    const one = f32x4.splat(1);
    for (let r: usize = 0; r < n; r++) {
      const x = inp + r * ch * F32;
      const y = out + r * ch * F32;
      let c: usize = 0;
      for (; c + 4 <= ch; c += 4) {
        const rs = f32x4.div(one, f32x4.sqrt(f32x4.add(v128.load(variance + c * F32), epsv)));
        let v = f32x4.mul(f32x4.sub(v128.load(x + c * F32), v128.load(mean + c * F32)), rs);
        if (weight != 0) v = f32x4.mul(v, v128.load(weight + c * F32));
        if (bias != 0) v = f32x4.add(v, v128.load(bias + c * F32));
        v128.store(y + c * F32, v);
      }
      for (; c < ch; c++) store<f32>(y + c * F32, normalized(load<f32>(x + c * F32), c, mean, variance, weight, bias, eps));
    }
    return;
  }
  for (let c: usize = 0; c < ch; c++) {
    const m = load<f32>(mean + c * F32);
    const rs: f32 = 1.0 / Mathf.sqrt(load<f32>(variance + c * F32) + eps);
    const w: f32 = weight != 0 ? load<f32>(weight + c * F32) : 1;
    const b: f32 = bias != 0 ? load<f32>(bias + c * F32) : 0;
    const mv = f32x4.splat(m), rsv = f32x4.splat(rs), wv = f32x4.splat(w), bv = f32x4.splat(b);
    for (let s: usize = 0; s < n; s++) {
      const x = channelRun(inp, s, c, ch, len);
      const y = channelRun(out, s, c, ch, len);
      let l: usize = 0;
      for (; l + 4 <= len; l += 4) {
        let v = f32x4.mul(f32x4.sub(v128.load(x + l * F32), mv), rsv);
        if (weight != 0) v = f32x4.mul(v, wv);
        if (bias != 0) v = f32x4.add(v, bv);
        v128.store(y + l * F32, v);
      }
      for (; l < len; l++) {
        let v = (load<f32>(x + l * F32) - m) * rs;
        if (weight != 0) v = v * w;
        if (bias != 0) v = v + b;
        store<f32>(y + l * F32, v);
      }
    }
  }
}

/** One element of batch_norm_forward, for the scalar tail of the [N, C] path. */
// @ts-ignore: decorator
@inline
function normalized(x: f32, c: usize, mean: usize, variance: usize, weight: usize, bias: usize, eps: f32): f32 {
  const rs: f32 = 1.0 / Mathf.sqrt(load<f32>(variance + c * F32) + eps);
  let v = (x - load<f32>(mean + c * F32)) * rs;
  if (weight != 0) v = v * load<f32>(weight + c * F32);
  if (bias != 0) v = v + load<f32>(bias + c * F32);
  return v;
}

/**
 * The backward of batch_norm_forward with the batch's statistics (training), per channel c,
 * with xhat = (x - mean) * rstd, sdy = sum(dout) and sdyx = sum(dout * xhat) (documented order):
 *   sums[c] = sdy, sums[C + c] = sdyx (written: the WebGPU twin hands them to its second pass)
 *   dweight[c] += sdyx,  dbias[c] += sdy
 *   dinp = ((dout - sdy / (N L)) - xhat * (sdyx / (N L))) * (weight * rstd)
 * dinp, dweight, dbias: 0 when not wanted; weight 0 when there is none.
 */
export function batch_norm_backward(
  dinp: usize, dweight: usize, dbias: usize, sums: usize,
  dout: usize, inp: usize, mean: usize, variance: usize, weight: usize,
  N: i32, C: i32, L: i32, eps: f32,
): void {
  const n = <usize>N, ch = <usize>C, len = <usize>L;
  const count = <f32>(N * L);
  const body = len - len % 4;
  let c: usize = 0;
  if (len == 1) {
    // [N, C]: each channel's sums run down a column, in row order: 4 channels per f32x4
    const cnt = f32x4.splat(count);
    const one = f32x4.splat(1);
    const epsv = f32x4.splat(eps);
    for (; c + 4 <= ch; c += 4) {
      const mv = v128.load(mean + c * F32);
      const rsv = f32x4.div(one, f32x4.sqrt(f32x4.add(v128.load(variance + c * F32), epsv)));
      let sdy = f32x4.splat(0);
      let sdyx = f32x4.splat(0);
      for (let r: usize = 0; r < n; r++) {
        const g = v128.load(dout + (r * ch + c) * F32);
        sdy = f32x4.add(sdy, g);
        sdyx = f32x4.add(sdyx, f32x4.mul(g, f32x4.mul(f32x4.sub(v128.load(inp + (r * ch + c) * F32), mv), rsv)));
      }
      v128.store(sums + c * F32, sdy);
      v128.store(sums + (ch + c) * F32, sdyx);
      if (dweight != 0) v128.store(dweight + c * F32, f32x4.add(v128.load(dweight + c * F32), sdyx));
      if (dbias != 0) v128.store(dbias + c * F32, f32x4.add(v128.load(dbias + c * F32), sdy));
    }
    if (dinp != 0) {
      // dx row by row (stores down a column are several times slower); the per-channel factors
      // are recomputed per row with the same operations, so the values are the same
      for (let r: usize = 0; r < n; r++) {
        for (let b: usize = 0; b < c; b += 4) {
          const rsv = f32x4.div(one, f32x4.sqrt(f32x4.add(v128.load(variance + b * F32), epsv)));
          const av = f32x4.div(v128.load(sums + b * F32), cnt);
          const bv = f32x4.div(v128.load(sums + (ch + b) * F32), cnt);
          const kv = weight != 0 ? f32x4.mul(v128.load(weight + b * F32), rsv) : rsv;
          const at = (r * ch + b) * F32;
          const xh = f32x4.mul(f32x4.sub(v128.load(inp + at), v128.load(mean + b * F32)), rsv);
          v128.store(dinp + at, f32x4.mul(f32x4.sub(f32x4.sub(v128.load(dout + at), av), f32x4.mul(xh, bv)), kv));
        }
      }
    }
  }
  for (; c < ch; c++) {
    const m = load<f32>(mean + c * F32);
    const rs: f32 = 1.0 / Mathf.sqrt(load<f32>(variance + c * F32) + eps);
    const mv = f32x4.splat(m), rsv = f32x4.splat(rs);
    // sdy and sdyx in the documented channel order
    let accD = f32x4.splat(0);
    let accDX = f32x4.splat(0);
    let tD: f32 = 0;
    let tDX: f32 = 0;
    for (let s: usize = 0; s < n; s++) {
      const x = channelRun(inp, s, c, ch, len);
      const dy = channelRun(dout, s, c, ch, len);
      let l: usize = 0;
      for (; l < body; l += 4) {
        const g = v128.load(dy + l * F32);
        accD = f32x4.add(accD, g);
        accDX = f32x4.add(accDX, f32x4.mul(g, f32x4.mul(f32x4.sub(v128.load(x + l * F32), mv), rsv)));
      }
      for (; l < len; l++) {
        const g = load<f32>(dy + l * F32);
        tD += g;
        tDX += g * ((load<f32>(x + l * F32) - m) * rs);
      }
    }
    const sdy: f32 = len >= 4 ? hsum(accD) + tD : tD;
    const sdyx: f32 = len >= 4 ? hsum(accDX) + tDX : tDX;
    store<f32>(sums + c * F32, sdy);
    store<f32>(sums + (ch + c) * F32, sdyx);
    if (dweight != 0) store<f32>(dweight + c * F32, load<f32>(dweight + c * F32) + sdyx);
    if (dbias != 0) store<f32>(dbias + c * F32, load<f32>(dbias + c * F32) + sdy);
    if (dinp == 0) continue;
    const a: f32 = sdy / count;
    const b: f32 = sdyx / count;
    const k: f32 = (weight != 0 ? load<f32>(weight + c * F32) : 1) * rs;
    const av = f32x4.splat(a), bv = f32x4.splat(b), kv = f32x4.splat(k);
    for (let s: usize = 0; s < n; s++) {
      const x = channelRun(inp, s, c, ch, len);
      const dy = channelRun(dout, s, c, ch, len);
      const dx = channelRun(dinp, s, c, ch, len);
      let l: usize = 0;
      for (; l < body; l += 4) {
        const xh = f32x4.mul(f32x4.sub(v128.load(x + l * F32), mv), rsv);
        v128.store(dx + l * F32, f32x4.mul(f32x4.sub(f32x4.sub(v128.load(dy + l * F32), av), f32x4.mul(xh, bv)), kv));
      }
      for (; l < len; l++) {
        const xh = (load<f32>(x + l * F32) - m) * rs;
        store<f32>(dx + l * F32, ((load<f32>(dy + l * F32) - a) - xh * b) * k);
      }
    }
  }
}
