// A direct f32x4 convolution forward for `npm run bench` (cnn): the alternative to the kernel
// core's im2col + GEMM, measured against it on the bench CNN's shapes. Stride 1, dilation 1,
// over an input already padded with zeros (conv_pad), register-blocked like the GEMM: 4 output
// channels x 8 output columns in eight f32x4 accumulators, the taps (c, kh, kw) in the inner loop.
// Compiled by bench/edgetune.mjs with the project's assemblyscript; not part of the kernel core.

// @ts-ignore: decorator
@inline
function ma(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return f32x4.relaxed_madd(a, b, c);
  } else {
    return f32x4.add(f32x4.mul(a, b), c);
  }
}

/** xp[C, H + 2P, W + 2P] = x[C, H, W] surrounded by P zeros. */
export function conv_pad(xp: usize, x: usize, C: i32, H: i32, W: i32, P: i32): void {
  const Hp = H + 2 * P, Wp = W + 2 * P;
  memory.fill(xp, 0, <usize>(C * Hp * Wp) * 4);
  for (let c = 0; c < C; c++) {
    for (let h = 0; h < H; h++) {
      memory.copy(xp + <usize>((c * Hp + h + P) * Wp + P) * 4, x + <usize>((c * H + h) * W) * 4, <usize>W * 4);
    }
  }
}

/**
 * out[O, OH, OW] = bias + sum_{c, kh, kw} w[o, c, kh, kw] * xp[c, oh + kh, ow + kw] for O a
 * multiple of 4 (the bench's 8 and 16 channels); 8-column blocks, a 4-column block, scalar tail.
 */
export function conv_direct(
  out: usize, xp: usize, w: usize, bias: usize, C: i32, Hp: i32, Wp: i32, O: i32, KH: i32, KW: i32, OH: i32, OW: i32,
): void {
  const taps = C * KH * KW;
  for (let o = 0; o + 4 <= O; o += 4) {
    const w0 = w + <usize>(o * taps) * 4, w1 = w0 + <usize>taps * 4, w2 = w1 + <usize>taps * 4, w3 = w2 + <usize>taps * 4;
    const b0 = load<f32>(bias + <usize>o * 4), b1 = load<f32>(bias + <usize>(o + 1) * 4);
    const b2 = load<f32>(bias + <usize>(o + 2) * 4), b3 = load<f32>(bias + <usize>(o + 3) * 4);
    for (let oh = 0; oh < OH; oh++) {
      const o0 = out + <usize>((o * OH + oh) * OW) * 4;
      const plane = <usize>(OH * OW) * 4;
      let ow = 0;
      for (; ow + 8 <= OW; ow += 8) {
        let a00 = f32x4.splat(b0), a01 = a00, a10 = f32x4.splat(b1), a11 = a10;
        let a20 = f32x4.splat(b2), a21 = a20, a30 = f32x4.splat(b3), a31 = a30;
        let t: usize = 0;
        for (let c = 0; c < C; c++) {
          for (let kh = 0; kh < KH; kh++) {
            const row = xp + <usize>((c * Hp + oh + kh) * Wp + ow) * 4;
            for (let kw = 0; kw < KW; kw++) {
              const x0 = v128.load(row + <usize>kw * 4), x1 = v128.load(row + <usize>kw * 4, 16);
              const v0 = f32x4.splat(load<f32>(w0 + t)), v1 = f32x4.splat(load<f32>(w1 + t));
              const v2 = f32x4.splat(load<f32>(w2 + t)), v3 = f32x4.splat(load<f32>(w3 + t));
              a00 = ma(v0, x0, a00); a01 = ma(v0, x1, a01);
              a10 = ma(v1, x0, a10); a11 = ma(v1, x1, a11);
              a20 = ma(v2, x0, a20); a21 = ma(v2, x1, a21);
              a30 = ma(v3, x0, a30); a31 = ma(v3, x1, a31);
              t += 4;
            }
          }
        }
        const p = o0 + <usize>ow * 4;
        v128.store(p, a00); v128.store(p, a01, 16);
        v128.store(p + plane, a10); v128.store(p + plane, a11, 16);
        v128.store(p + 2 * plane, a20); v128.store(p + 2 * plane, a21, 16);
        v128.store(p + 3 * plane, a30); v128.store(p + 3 * plane, a31, 16);
      }
      for (; ow + 4 <= OW; ow += 4) {
        let a0 = f32x4.splat(b0), a1 = f32x4.splat(b1), a2 = f32x4.splat(b2), a3 = f32x4.splat(b3);
        let t: usize = 0;
        for (let c = 0; c < C; c++) {
          for (let kh = 0; kh < KH; kh++) {
            const row = xp + <usize>((c * Hp + oh + kh) * Wp + ow) * 4;
            for (let kw = 0; kw < KW; kw++) {
              const x0 = v128.load(row + <usize>kw * 4);
              a0 = ma(f32x4.splat(load<f32>(w0 + t)), x0, a0);
              a1 = ma(f32x4.splat(load<f32>(w1 + t)), x0, a1);
              a2 = ma(f32x4.splat(load<f32>(w2 + t)), x0, a2);
              a3 = ma(f32x4.splat(load<f32>(w3 + t)), x0, a3);
              t += 4;
            }
          }
        }
        const p = o0 + <usize>ow * 4;
        v128.store(p, a0); v128.store(p + plane, a1); v128.store(p + 2 * plane, a2); v128.store(p + 3 * plane, a3);
      }
      for (; ow < OW; ow++) {
        for (let i = 0; i < 4; i++) {
          const wi = w0 + <usize>(i * taps) * 4;
          let s = load<f32>(bias + <usize>(o + i) * 4);
          let t: usize = 0;
          for (let c = 0; c < C; c++) {
            for (let kh = 0; kh < KH; kh++) {
              for (let kw = 0; kw < KW; kw++) {
                s += load<f32>(wi + t) * load<f32>(xp + <usize>((c * Hp + oh + kh) * Wp + ow + kw) * 4);
                t += 4;
              }
            }
          }
          store<f32>(o0 + <usize>i * plane + <usize>ow * 4, s);
        }
      }
    }
  }
}
