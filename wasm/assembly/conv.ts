// Convolution as im2col + the blocked GEMM of gemm.ts (the GEMMs are matmul_strided calls made
// by src/engine/ops/conv.ts; these kernels move data between images and column matrices).
//
//   nn.Conv2d, https://pytorch.org/docs/stable/generated/torch.nn.Conv2d.html :
//   out(n, o, oh, ow) = bias(o) + sum_{c < C/groups, kh, kw} weight(o, c, kh, kw)
//                                   * x(n, g*C/groups + c, oh*SH + kh*DH - PH, ow*SW + kw*DW - PW)
//   with g = o / (O/groups) and x = 0 outside the image (padding_mode "zeros"). nn.Conv1d is the
//   same with H = KH = 1.
//
// The column matrix of one sample: row k = (c*KH + kh)*KW + kw (the weight's [in/groups, KH, KW]
// order, so the rows of one group are contiguous), column l = oh*OW + ow. A range of output rows
// [oh0, oh1) is unfolded at a time, which bounds the workspace for large images.
//
//   forward  out_g[O/g, L]   = W_g[O/g, K_g] · col_g[K_g, L]        (+ bias: conv_bias_forward first)
//   dW       dW_g[O/g, K_g] += dy_g[O/g, L] · colT[L, K_g]          (colT: conv_im2col_t)
//   dx       dcol_g[K_g, L]  = W_g^T · dy_g;  dx += col2im(dcol)     (conv_col2im)
//   db       db[o]          += sum_{n, l} dy(n, o, l)               (conv_bias_backward)
//
// Every pointer is a byte offset into linear memory; every size counts f32 elements.
import { F32, hsum } from "./simd";

/** ceil(a / b) for b > 0 and any sign of a (i32 division truncates toward zero). */
// @ts-ignore: decorator
@inline
function ceilDiv(a: i32, b: i32): i32 {
  return a >= 0 ? (a + b - 1) / b : -(-a / b);
}

/** The first output column whose input column ow*S + off is >= 0, clamped to [0, OW]. */
// @ts-ignore: decorator
@inline
function firstValid(off: i32, S: i32, OW: i32): i32 {
  return off >= 0 ? 0 : min(ceilDiv(-off, S), OW);
}

/** One past the last output column whose input column ow*S + off is < W, clamped to [lo, OW]. */
// @ts-ignore: decorator
@inline
function endValid(off: i32, S: i32, W: i32, OW: i32, lo: i32): i32 {
  return max(lo, min(ceilDiv(W - off, S), OW));
}

/** dst[i*ds] = 0 for i < n. */
// @ts-ignore: decorator
@inline
function zeroSpan(dst: usize, ds: usize, n: i32): void {
  let i: i32 = 0;
  if (ds == 1) {
    const z = f32x4.splat(0);
    for (; i + 4 <= n; i += 4) v128.store(dst + <usize>i * F32, z);
  }
  for (; i < n; i++) store<f32>(dst + <usize>i * ds * F32, 0);
}

/** dst[i*ds] = src[i*ss] for i < n (f32x4 when both are contiguous). */
// @ts-ignore: decorator
@inline
function copySpan(dst: usize, ds: usize, src: usize, ss: usize, n: i32): void {
  let i: i32 = 0;
  if (ds == 1 && ss == 1) {
    for (; i + 4 <= n; i += 4) v128.store(dst + <usize>i * F32, v128.load(src + <usize>i * F32));
  }
  for (; i < n; i++) store<f32>(dst + <usize>i * ds * F32, load<f32>(src + <usize>i * ss * F32));
}

/** dst[i*ds] += src[i*ss] for i < n (f32x4 when both are contiguous). */
// @ts-ignore: decorator
@inline
function addSpan(dst: usize, ds: usize, src: usize, ss: usize, n: i32): void {
  let i: i32 = 0;
  if (ds == 1 && ss == 1) {
    for (; i + 4 <= n; i += 4) {
      const p = dst + <usize>i * F32;
      v128.store(p, f32x4.add(v128.load(p), v128.load(src + <usize>i * F32)));
    }
  }
  for (; i < n; i++) {
    const p = dst + <usize>i * ds * F32;
    store<f32>(p, load<f32>(p) + load<f32>(src + <usize>i * ss * F32));
  }
}

/**
 * The column matrix of output rows [oh0, oh1) of one sample x[C, H, W], element (k, l) stored at
 * dst + (k*ks + l*ls)*4, with l counted from oh0. `fold` = 0 writes it (im2col); `fold` = 1 adds
 * it back into x instead (col2im: x(c, ih, iw) += dst(k, l), the adjoint of the unfold).
 */
function unfold(
  dst: usize, ks: usize, ls: usize, x: usize, fold: bool,
  C: i32, H: i32, W: i32, KH: i32, KW: i32, SH: i32, SW: i32, PH: i32, PW: i32, DH: i32, DW: i32,
  OW: i32, oh0: i32, oh1: i32,
): void {
  const plane = <usize>H * <usize>W;
  let k: usize = 0;
  for (let c: i32 = 0; c < C; c++) {
    const img = x + <usize>c * plane * F32;
    for (let kh: i32 = 0; kh < KH; kh++) {
      for (let kw: i32 = 0; kw < KW; kw++) {
        const offW = kw * DW - PW;
        const lo = firstValid(offW, SW, OW);
        const hi = endValid(offW, SW, W, OW, lo);
        for (let oh = oh0; oh < oh1; oh++) {
          const p = dst + (k * ks + <usize>(oh - oh0) * <usize>OW * ls) * F32;
          const ih = oh * SH + kh * DH - PH;
          if (ih < 0 || ih >= H) {
            if (!fold) zeroSpan(p, ls, OW);
            continue;
          }
          // input column of output column lo: lo*SW + offW (>= 0 by construction)
          const row = img + (<usize>ih * <usize>W + <usize>(lo * SW + offW)) * F32;
          const q = p + <usize>lo * ls * F32;
          if (fold) {
            addSpan(row, <usize>SW, q, ls, hi - lo);
          } else {
            zeroSpan(p, ls, lo);
            copySpan(q, ls, row, <usize>SW, hi - lo);
            zeroSpan(p + <usize>hi * ls * F32, ls, OW - hi);
          }
        }
        k++;
      }
    }
  }
}

/**
 * im2col of output rows [oh0, oh1) of one sample: col[C*KH*KW, (oh1 - oh0)*OW] from x[C, H, W]
 * (zeros where a tap falls in the padding). f32x4 copies along rows when SW = 1.
 */
export function conv_im2col(
  col: usize, x: usize,
  C: i32, H: i32, W: i32, KH: i32, KW: i32, SH: i32, SW: i32, PH: i32, PW: i32, DH: i32, DW: i32,
  OW: i32, oh0: i32, oh1: i32,
): void {
  const L = <usize>(oh1 - oh0) * <usize>OW;
  unfold(col, L, 1, x, false, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OW, oh0, oh1);
}

/**
 * The transposed column matrix of output rows [oh0, oh1): colT[(oh1 - oh0)*OW, C*KH*KW], the
 * B operand of the weight gradient dW += dy · colT (the GEMM reads B's rows contiguously).
 */
export function conv_im2col_t(
  colT: usize, x: usize,
  C: i32, H: i32, W: i32, KH: i32, KW: i32, SH: i32, SW: i32, PH: i32, PW: i32, DH: i32, DW: i32,
  OW: i32, oh0: i32, oh1: i32,
): void {
  const K = <usize>C * <usize>KH * <usize>KW;
  unfold(colT, 1, K, x, false, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OW, oh0, oh1);
}

/**
 * col2im of output rows [oh0, oh1): dx[C, H, W] += the column matrix dcol[C*KH*KW, (oh1 - oh0)*OW]
 * folded back onto the image (taps in the padding are dropped). ACCUMULATES: the caller zeroes
 * dx once, then folds each range of output rows.
 */
export function conv_col2im(
  dx: usize, dcol: usize,
  C: i32, H: i32, W: i32, KH: i32, KW: i32, SH: i32, SW: i32, PH: i32, PW: i32, DH: i32, DW: i32,
  OW: i32, oh0: i32, oh1: i32,
): void {
  const L = <usize>(oh1 - oh0) * <usize>OW;
  unfold(dcol, L, 1, dx, true, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OW, oh0, oh1);
}

/** out[n, c, l] = bias[c] for n < rows, c < channels, l < L: the GEMM then accumulates onto it. */
export function conv_bias_forward(out: usize, bias: usize, rows: i32, channels: i32, L: i32): void {
  let p = out;
  for (let n: i32 = 0; n < rows; n++) {
    for (let c: i32 = 0; c < channels; c++) {
      const b = load<f32>(bias + <usize>c * F32);
      const v = f32x4.splat(b);
      let l: i32 = 0;
      for (; l + 4 <= L; l += 4) v128.store(p + <usize>l * F32, v);
      for (; l < L; l++) store<f32>(p + <usize>l * F32, b);
      p += <usize>L * F32;
    }
  }
}

/**
 * dbias[c] += sum_{n < rows} sum_{l < L} dout[n, c, l] (nn.Conv2d's bias gradient). Per (n, c):
 * four lane sums over l, combined as (l0 + l1) + (l2 + l3), then the scalar tail, then added.
 */
export function conv_bias_backward(dbias: usize, dout: usize, rows: i32, channels: i32, L: i32): void {
  for (let c: i32 = 0; c < channels; c++) {
    let s = load<f32>(dbias + <usize>c * F32);
    for (let n: i32 = 0; n < rows; n++) {
      const p = dout + (<usize>n * <usize>channels + <usize>c) * <usize>L * F32;
      let acc = f32x4.splat(0);
      let l: i32 = 0;
      for (; l + 4 <= L; l += 4) acc = f32x4.add(acc, v128.load(p + <usize>l * F32));
      let r = hsum(acc);
      for (; l < L; l++) r += load<f32>(p + <usize>l * F32);
      s += r;
    }
    store<f32>(dbias + <usize>c * F32, s);
  }
}
