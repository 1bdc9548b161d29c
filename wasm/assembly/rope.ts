// Rotary position embedding (RoPE), Llama's rotate_half form, used by the `rope` op
// (src/engine/ops/rope.ts) on the queries and keys of every head:
//
//   rope_table  cos[t, i] = cos(t f_i), sin[t, i] = sin(t f_i), f_i = 1 / theta^(i / half)
//   rope        y[i]        = x[i] cos - x[i + half] sin        (sign = 1: the forward)
//               y[i + half] = x[i + half] cos + x[i] sin        (sign = -1: the backward, the
//                                                                rotation by the opposite angle)
//
// transformers' LlamaRotaryEmbedding (default rope_type) and apply_rotary_pos_emb:
//   inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))       float32
//   freqs    = inv_freq[None, :, None] @ position_ids[:, None, :]            float32, K = 1
//   emb      = cat(freqs, freqs); cos = emb.cos(); sin = emb.sin()           float32
//   q_embed  = q * cos + rotate_half(q) * sin,  rotate_half(x) = cat(-x2, x1)
// https://github.com/huggingface/transformers/blob/main/src/transformers/models/llama/modeling_llama.py
//
// Every pointer is a byte offset into linear memory; every size counts f32 elements.
import { F32 } from "./simd";

/**
 * The angle table of positions 0..T-1: cos [T, half] and sin [T, half], as transformers builds
 * it in float32: e_i = f32(2i / headDim) (= f32(i / half)), p_i = f32(theta^e_i), inv_i = f32(1 / p_i),
 * a_ti = f32(t * inv_i), cos = f32(cos(a_ti)), sin = f32(sin(a_ti)). pow, cos and sin are
 * evaluated in f64 and rounded once (torch's float32 pow, cos and sin are within an ulp of
 * that). theta arrives as f32, as torch casts the Python float base to the tensor's dtype.
 */
export function rope_table(cos: usize, sin: usize, T: i32, half: i32, theta: f32): void {
  const Hf = <usize>half;
  for (let i: usize = 0; i < Hf; i++) {
    const e = <f32>(<f64>i / <f64>half);
    const p = <f32>Math.pow(<f64>theta, <f64>e);
    const inv: f32 = <f32>1.0 / p;
    for (let t: usize = 0; t < <usize>T; t++) {
      const a = <f64>(<f32>t * inv);
      store<f32>(cos + (t * Hf + i) * F32, <f32>Math.cos(a));
      store<f32>(sin + (t * Hf + i) * F32, <f32>Math.sin(a));
    }
  }
}

/**
 * out = the rotation of inp [n_tokens, heads, headDim] by the angles of the table (token t
 * reads row t of cos and sin [n_tokens, headDim / 2]); sign = -1 negates sin (the backward:
 * dx = the rotation of dy by the opposite angle). Each product is rounded, then the sum, as
 * torch's q * cos + rotate_half(q) * sin (no fused multiply-add in either build). out may be
 * inp (each pair is read before it is written). The f32x4 body runs over i in fours, the
 * scalar tail over half % 4.
 */
export function rope(out: usize, inp: usize, cos: usize, sin: usize, sign: f32, n_tokens: i32, heads: i32, headDim: i32): void {
  const Hd = <usize>headDim;
  const Hf = Hd >> 1;
  const H4 = Hf & ~(<usize>3);
  const sv = f32x4.splat(sign);
  for (let t: usize = 0; t < <usize>n_tokens; t++) {
    const c0 = cos + t * Hf * F32;
    const s0 = sin + t * Hf * F32;
    for (let h: usize = 0; h < <usize>heads; h++) {
      const x = inp + (t * <usize>heads + h) * Hd * F32;
      const y = out + (t * <usize>heads + h) * Hd * F32;
      let i: usize = 0;
      for (; i < H4; i += 4) {
        const c = v128.load(c0 + i * F32);
        const s = f32x4.mul(v128.load(s0 + i * F32), sv);
        const x1 = v128.load(x + i * F32);
        const x2 = v128.load(x + (i + Hf) * F32);
        v128.store(y + i * F32, f32x4.sub(f32x4.mul(x1, c), f32x4.mul(x2, s)));
        v128.store(y + (i + Hf) * F32, f32x4.add(f32x4.mul(x2, c), f32x4.mul(x1, s)));
      }
      for (; i < Hf; i++) {
        const c = load<f32>(c0 + i * F32);
        const s = load<f32>(s0 + i * F32) * sign;
        const x1 = load<f32>(x + i * F32);
        const x2 = load<f32>(x + (i + Hf) * F32);
        store<f32>(y + i * F32, x1 * c - x2 * s);
        store<f32>(y + (i + Hf) * F32, x2 * c + x1 * s);
      }
    }
  }
}
