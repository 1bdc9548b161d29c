// Pooling over planes [planes, H, W] (planes = rows * channels; 1-d pooling is H = 1), in
// PyTorch's CPU kernels' order of operations (aten/src/ATen/native/cpu/MaxPoolKernel.cpp,
// AvgPoolKernel.cpp, AdaptiveAvgPoolKernel.cpp, torch 1.13). Windows are strided and mostly
// 2 or 3 wide: the averages stay scalar; the max, which wasm's scalar compare-and-select makes
// slow, runs four windows per f32x4 where they lie inside the image.
//
// Backward passes WRITE the input gradient: they zero it, then scatter each output's gradient
// in output order (oh, ow), as PyTorch does.
//
// Every pointer is a byte offset into linear memory; every size counts elements.
import { F32 } from "./simd";

/**
 * nn.MaxPool2d, https://pytorch.org/docs/stable/generated/torch.nn.MaxPool2d.html :
 * out(p, oh, ow) = max over the window's taps inside the image (the padding never wins), with
 * indices(p, oh, ow) = ih*W + iw of the first maximum in row-major order, or of the last NaN
 * (a NaN always replaces the running max: `val > max || isnan(val)`). A window whose taps are all
 * -inf keeps -inf and the index of its first tap.
 *
 * Four outputs of a row whose windows lie inside the image horizontally run in f32x4 lanes
 * (their taps gathered with a load for stride 1, two loads and a shuffle for stride 2);
 * the rule is applied per lane with compare masks, so lanes and the scalar edges agree.
 */
export function max_pool_forward(
  out: usize, indices: usize, x: usize, planes: i32, H: i32, W: i32,
  KH: i32, KW: i32, SH: i32, SW: i32, PH: i32, PW: i32, DH: i32, DW: i32, OH: i32, OW: i32,
): void {
  // outputs [owLo, owHi) have every tap column inside [0, W)
  const span = (KW - 1) * DW;
  const owLo = min(OW, (PW + SW - 1) / SW);
  const owHi = max(owLo, min(OW, W - 1 - span + PW >= 0 ? (W - 1 - span + PW) / SW + 1 : 0));
  const lanes = i32x4(0, SW, 2 * SW, 3 * SW);
  let o = out;
  let q = indices;
  for (let p: i32 = 0; p < planes; p++) {
    const img = x + <usize>p * <usize>H * <usize>W * F32;
    for (let oh: i32 = 0; oh < OH; oh++) {
      let ih0 = oh * SH - PH;
      const ih1 = min(ih0 + (KH - 1) * DH + 1, H);
      while (ih0 < 0) ih0 += DH;
      let ow: i32 = 0;
      for (; ow < OW; ow++) {
        if (ow >= owLo && ow + 4 <= owHi) {
          // four windows side by side: columns iw0 + j*SW + kw*DW, j = lane
          const iw0 = ow * SW - PW;
          let best = f32x4.splat(-Infinity);
          let at = i32x4.add(i32x4.splat(ih0 * W + iw0), lanes);
          for (let ih = ih0; ih < ih1; ih += DH) {
            for (let kw: i32 = 0; kw < KW; kw++) {
              const first = ih * W + iw0 + kw * DW;
              const t = img + <usize>first * F32;
              let v: v128;
              if (SW == 1) v = v128.load(t);
              else if (SW == 2) v = v128.shuffle<f32>(v128.load(t), v128.load(t, 12), 0, 2, 5, 7); // reads taps 0..6 only
              else {
                v = f32x4.splat(load<f32>(t));
                v = f32x4.replace_lane(v, 1, load<f32>(t + <usize>SW * F32));
                v = f32x4.replace_lane(v, 2, load<f32>(t + <usize>(2 * SW) * F32));
                v = f32x4.replace_lane(v, 3, load<f32>(t + <usize>(3 * SW) * F32));
              }
              const take = v128.or(f32x4.gt(v, best), f32x4.ne(v, v));
              best = v128.bitselect(v, best, take);
              at = v128.bitselect(i32x4.add(i32x4.splat(first), lanes), at, take);
            }
          }
          v128.store(o, best);
          v128.store(q, at);
          o += 4 * F32;
          q += 16;
          ow += 3;
          continue;
        }
        let iw0 = ow * SW - PW;
        const iw1 = min(iw0 + span + 1, W);
        while (iw0 < 0) iw0 += DW;
        let best: f32 = -Infinity;
        let at: i32 = ih0 * W + iw0;
        for (let ih = ih0; ih < ih1; ih += DH) {
          for (let iw = iw0; iw < iw1; iw += DW) {
            const index = ih * W + iw;
            const v = load<f32>(img + <usize>index * F32);
            if (v > best || isNaN<f32>(v)) {
              best = v;
              at = index;
            }
          }
        }
        store<f32>(o, best);
        store<i32>(q, at);
        o += F32;
        q += 4;
      }
    }
  }
}

/** dx = 0, then dx(p, indices(p, oh, ow)) += dy(p, oh, ow) in output order (max_pool2d_with_indices_backward). */
export function max_pool_backward(dx: usize, dy: usize, indices: usize, planes: i32, H: i32, W: i32, OH: i32, OW: i32): void {
  const plane = <usize>H * <usize>W;
  const outs = <usize>OH * <usize>OW;
  memory.fill(dx, 0, <usize>planes * plane * F32);
  for (let p: usize = 0; p < <usize>planes; p++) {
    const img = dx + p * plane * F32;
    for (let i: usize = 0; i < outs; i++) {
      const e = p * outs + i;
      const at = img + <usize>load<i32>(indices + e * 4) * F32;
      store<f32>(at, load<f32>(at) + load<f32>(dy + e * F32));
    }
  }
}

/**
 * nn.AvgPool2d, https://pytorch.org/docs/stable/generated/torch.nn.AvgPool2d.html : the window
 * [oh*SH - PH, + KH) x [ow*SW - PW, + KW) is cut at H + PH (W + PW) for the padded size and at
 * the image for the sum; out = sum / divisor, the divisor being divisor_override (when not 0),
 * else the padded window's size (count_include_pad) or the number of taps inside the image.
 * backward: dx = 0, then dy / divisor is added to every tap of the window inside the image.
 */
function avgPool(
  backward: bool, out: usize, x: usize, planes: i32, H: i32, W: i32,
  KH: i32, KW: i32, SH: i32, SW: i32, PH: i32, PW: i32, OH: i32, OW: i32,
  countIncludePad: i32, divisorOverride: i32,
): void {
  // forward: out = pooled x; backward: out = dx, x = dy
  if (backward) memory.fill(out, 0, <usize>planes * <usize>H * <usize>W * F32);
  let e: usize = 0; // output element
  for (let p: i32 = 0; p < planes; p++) {
    const img = (backward ? out : x) + <usize>p * <usize>H * <usize>W * F32;
    for (let oh: i32 = 0; oh < OH; oh++) {
      for (let ow: i32 = 0; ow < OW; ow++) {
        let hs = oh * SH - PH, ws = ow * SW - PW;
        let he = min(hs + KH, H + PH), we = min(ws + KW, W + PW);
        const poolSize = (he - hs) * (we - ws);
        hs = max(hs, 0);
        ws = max(ws, 0);
        he = min(he, H);
        we = min(we, W);
        const divisor = <f32>(divisorOverride != 0 ? divisorOverride : countIncludePad != 0 ? poolSize : (he - hs) * (we - ws));
        if (backward) {
          const delta = load<f32>(x + e * F32) / divisor;
          for (let ih = hs; ih < he; ih++) {
            for (let iw = ws; iw < we; iw++) {
              const at = img + (<usize>ih * <usize>W + <usize>iw) * F32;
              store<f32>(at, load<f32>(at) + delta);
            }
          }
        } else {
          let s: f32 = 0;
          if (hs < he && ws < we) {
            for (let ih = hs; ih < he; ih++) {
              for (let iw = ws; iw < we; iw++) s += load<f32>(img + (<usize>ih * <usize>W + <usize>iw) * F32);
            }
            s = s / divisor;
          }
          store<f32>(out + e * F32, s);
        }
        e++;
      }
    }
  }
}

/** out[planes, OH, OW] = average pooling of x[planes, H, W] (see avgPool). */
export function avg_pool_forward(
  out: usize, x: usize, planes: i32, H: i32, W: i32,
  KH: i32, KW: i32, SH: i32, SW: i32, PH: i32, PW: i32, OH: i32, OW: i32,
  count_include_pad: i32, divisor_override: i32,
): void {
  avgPool(false, out, x, planes, H, W, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override);
}

/** dx[planes, H, W] = the adjoint of avg_pool_forward applied to dy[planes, OH, OW] (written). */
export function avg_pool_backward(
  dx: usize, dy: usize, planes: i32, H: i32, W: i32,
  KH: i32, KW: i32, SH: i32, SW: i32, PH: i32, PW: i32, OH: i32, OW: i32,
  count_include_pad: i32, divisor_override: i32,
): void {
  avgPool(true, dx, dy, planes, H, W, KH, KW, SH, SW, PH, PW, OH, OW, count_include_pad, divisor_override);
}

/**
 * nn.AdaptiveAvgPool2d, https://pytorch.org/docs/stable/generated/torch.nn.AdaptiveAvgPool2d.html :
 * window [floor(oh*H/OH), ceil((oh+1)*H/OH)) x [floor(ow*W/OW), ceil((ow+1)*W/OW));
 * out = sum / kh / kw (two divisions, as torch's kernel).
 */
export function adaptive_avg_pool_forward(out: usize, x: usize, planes: i32, H: i32, W: i32, OH: i32, OW: i32): void {
  let o = out;
  for (let p: i32 = 0; p < planes; p++) {
    const img = x + <usize>p * <usize>H * <usize>W * F32;
    for (let oh: i32 = 0; oh < OH; oh++) {
      const hs = (oh * H) / OH, he = ((oh + 1) * H + OH - 1) / OH;
      for (let ow: i32 = 0; ow < OW; ow++) {
        const ws = (ow * W) / OW, we = ((ow + 1) * W + OW - 1) / OW;
        let s: f32 = 0;
        for (let ih = hs; ih < he; ih++) {
          for (let iw = ws; iw < we; iw++) s += load<f32>(img + (<usize>ih * <usize>W + <usize>iw) * F32);
        }
        store<f32>(o, s / <f32>(he - hs) / <f32>(we - ws));
        o += F32;
      }
    }
  }
}

/** dx = 0, then each output's dy / kh / kw is added to every tap of its window. */
export function adaptive_avg_pool_backward(dx: usize, dy: usize, planes: i32, H: i32, W: i32, OH: i32, OW: i32): void {
  memory.fill(dx, 0, <usize>planes * <usize>H * <usize>W * F32);
  let g = dy;
  for (let p: i32 = 0; p < planes; p++) {
    const img = dx + <usize>p * <usize>H * <usize>W * F32;
    for (let oh: i32 = 0; oh < OH; oh++) {
      const hs = (oh * H) / OH, he = ((oh + 1) * H + OH - 1) / OH;
      for (let ow: i32 = 0; ow < OW; ow++) {
        const ws = (ow * W) / OW, we = ((ow + 1) * W + OW - 1) / OW;
        const delta = load<f32>(g) / <f32>(he - hs) / <f32>(we - ws);
        g += F32;
        for (let ih = hs; ih < he; ih++) {
          for (let iw = ws; iw < we; iw++) {
            const at = img + (<usize>ih * <usize>W + <usize>iw) * F32;
            store<f32>(at, load<f32>(at) + delta);
          }
        }
      }
    }
  }
}
