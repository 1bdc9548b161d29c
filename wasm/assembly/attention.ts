// Self-attention kernels (nn.MultiheadAttention as self-attention), used by the `attention` op
// (src/engine/ops/attention.ts) between its GEMMs (matmul_strided) per sample and head:
//
//   forward   Qs^T[dh,T] = Q_h^T / sqrt(dh)                transpose_strided (alpha = 1/sqrt(dh))
//             K^T [dh,T] = K_h^T                           transpose_strided
//             S   [T,T]  = Qs K^T                          matmul_strided
//             P   [T,T]  = softmax(S + masks)              attention_softmax (masks inside)
//             O_h [T,dh] = P V_h                           matmul_strided
//   backward  dP  [T,T]  = dO_h V_h^T                      transpose_strided + matmul_strided
//             dS  [T,T]  = (P * (dP - rowsum(dP * P))) / sqrt(dh)   attention_softmax_backward
//
// PyTorch 1.13 torch/nn/functional.py multi_head_attention_forward: q_scaled = q / sqrt(E),
// attn = softmax(baddbmm(attn_mask, q_scaled, k^T)), masks added as -inf, then bmm(attn, v).
// https://pytorch.org/docs/stable/generated/torch.nn.MultiheadAttention.html
//
// Every pointer is a byte offset into linear memory; every size counts f32 elements.
import { exp4, F32, hmax, storeTransposed4x4 } from "./simd";

/**
 * out[r*cols + c] = alpha * inp[c*ld + r] for r < rows, c < cols: the transpose of a strided
 * [cols, rows] view (one head's columns of a [T, 3D] projection, ld = 3D), scaled. Packs K_h^T
 * and V_h^T (alpha 1) and Q_h^T / sqrt(dh) into contiguous rows for matmul_strided's B operand.
 * 4x4 blocks are transposed in registers (as `transpose`); scalar edges for rows % 4, cols % 4.
 */
export function transpose_strided(out: usize, inp: usize, rows: i32, cols: i32, ld: i32, alpha: f32): void {
  const R = <usize>rows, C = <usize>cols, L = <usize>ld;
  const R4 = R & ~(<usize>3), C4 = C & ~(<usize>3);
  const a = f32x4.splat(alpha);
  for (let c: usize = 0; c < C4; c += 4) {
    for (let r: usize = 0; r < R4; r += 4) {
      // four rows of the view: inp[(c+i)*ld + r .. r+4]
      const p = inp + (c * L + r) * F32;
      const a0 = f32x4.mul(v128.load(p), a), a1 = f32x4.mul(v128.load(p + L * F32), a);
      const a2 = f32x4.mul(v128.load(p + 2 * L * F32), a), a3 = f32x4.mul(v128.load(p + 3 * L * F32), a);
      storeTransposed4x4(out + (r * C + c) * F32, C * F32, a0, a1, a2, a3);
    }
    for (let r = R4; r < R; r++) {
      for (let i: usize = 0; i < 4; i++) store<f32>(out + (r * C + c + i) * F32, alpha * load<f32>(inp + ((c + i) * L + r) * F32));
    }
  }
  for (let c = C4; c < C; c++) {
    for (let r: usize = 0; r < R; r++) store<f32>(out + (r * C + c) * F32, alpha * load<f32>(inp + (c * L + r) * F32));
  }
}

/**
 * The masked softmax of attention, row by row: probs[i, j] = exp(s_ij - m_i) / sum_j' exp(s_ij' - m_i)
 * over the keys j that query i may see, 0 for the others, where a key is hidden when
 *   - mask != 0 and mask[j] == 0 (key padding: the graph's attention mask row, 1 = token), or
 *   - causal != 0 and j > i (nn.Transformer.generate_square_subsequent_mask).
 * torch adds -inf for both and takes softmax(dim=-1) (max, exp(x - max), sum, times 1/sum);
 * exp(-inf) = 0 gives the zeros here. A query that sees no key at all is NaN in PyTorch
 * (0/0); here its row is all zeros (its output is 0 and no gradient flows through it).
 * The sum runs in four lanes over the f32x4 body, combined (l0 + l1) + (l2 + l3), then the tail.
 * scores [rows, cols], probs [rows, cols] (may be the same buffer), mask [cols] or 0.
 */
export function attention_softmax(probs: usize, scores: usize, mask: usize, rows: i32, cols: i32, causal: i32): void {
  const C = <usize>cols;
  const negInf = f32x4.splat(-Infinity);
  const zero = f32x4.splat(0);
  for (let i: usize = 0; i < <usize>rows; i++) {
    const s = scores + i * C * F32;
    const p = probs + i * C * F32;
    // keys j < n are not hidden by causality
    const n: usize = causal != 0 ? min(i + 1, C) : C;
    // ---- the largest visible score (pmax, one instruction, may pass over a NaN; a NaN score
    // still makes its row NaN, as in torch, through exp(NaN - m) in the sum)
    let mv = negInf;
    let seen = zero; // lanes that saw a visible key (all ones)
    let j: usize = 0;
    if (mask != 0) {
      for (; j + 4 <= n; j += 4) {
        const visible = f32x4.ne(v128.load(mask + j * F32), zero);
        seen = v128.or(seen, visible);
        mv = f32x4.pmax(mv, v128.bitselect(v128.load(s + j * F32), negInf, visible));
      }
    } else {
      for (; j + 4 <= n; j += 4) mv = f32x4.pmax(mv, v128.load(s + j * F32));
      if (n >= 4) seen = v128.not(zero);
    }
    let m = hmax(mv);
    let any = v128.any_true(seen);
    for (; j < n; j++) {
      if (mask == 0 || load<f32>(mask + j * F32) != 0) {
        m = max(m, load<f32>(s + j * F32));
        any = true;
      }
    }
    if (!any) {
      // every key hidden: zeros (PyTorch: NaN)
      for (let k: usize = 0; k < C; k++) store<f32>(p + k * F32, 0);
      continue;
    }
    // ---- exp(s - m) (0 for padded keys) and their sum
    const mvec = f32x4.splat(m);
    let acc = zero;
    for (j = 0; j + 4 <= n; j += 4) {
      let e = exp4(f32x4.sub(v128.load(s + j * F32), mvec));
      if (mask != 0) e = v128.and(e, f32x4.ne(v128.load(mask + j * F32), zero));
      v128.store(p + j * F32, e);
      acc = f32x4.add(acc, e);
    }
    let sum: f32 = f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 1) + (f32x4.extract_lane(acc, 2) + f32x4.extract_lane(acc, 3));
    for (; j < n; j++) {
      let e: f32 = 0;
      if (mask == 0 || load<f32>(mask + j * F32) != 0) e = f32x4.extract_lane(exp4(f32x4.splat(load<f32>(s + j * F32) - m)), 0);
      store<f32>(p + j * F32, e);
      sum += e;
    }
    // ---- times 1/sum; hidden-by-causality keys are 0
    const inv: f32 = 1.0 / sum;
    const iv = f32x4.splat(inv);
    for (j = 0; j + 4 <= n; j += 4) v128.store(p + j * F32, f32x4.mul(v128.load(p + j * F32), iv));
    for (; j < n; j++) store<f32>(p + j * F32, load<f32>(p + j * F32) * inv);
    for (; j < C; j++) store<f32>(p + j * F32, 0);
  }
}

/**
 * The backward of attention's softmax, with the 1/sqrt(dh) that scaled q folded in:
 *   dscores[i, j] = scale * (P_ij * (dP_ij - sum_k dP_ik P_ik))
 * (torch _softmax_backward_data: grad_input = output * (grad - (grad * output).sum(dim))). Hidden
 * keys have P = 0, so their gradient is 0, as is a row that saw no key. dscores may alias dprobs
 * or probs (each row's sum is taken before the row is written).
 * dscores, dprobs, probs [rows, cols].
 */
export function attention_softmax_backward(dscores: usize, dprobs: usize, probs: usize, scale: f32, rows: i32, cols: i32): void {
  const C = <usize>cols;
  const sv = f32x4.splat(scale);
  for (let i: usize = 0; i < <usize>rows; i++) {
    const g = dprobs + i * C * F32;
    const p = probs + i * C * F32;
    const d = dscores + i * C * F32;
    let acc = f32x4.splat(0);
    let j: usize = 0;
    for (; j + 4 <= C; j += 4) acc = f32x4.add(acc, f32x4.mul(v128.load(g + j * F32), v128.load(p + j * F32)));
    let r: f32 = f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 1) + (f32x4.extract_lane(acc, 2) + f32x4.extract_lane(acc, 3));
    for (; j < C; j++) r += load<f32>(g + j * F32) * load<f32>(p + j * F32);
    const rv = f32x4.splat(r);
    for (j = 0; j + 4 <= C; j += 4) {
      const pj = v128.load(p + j * F32);
      v128.store(d + j * F32, f32x4.mul(f32x4.mul(pj, f32x4.sub(v128.load(g + j * F32), rv)), sv));
    }
    for (; j < C; j++) {
      const pj = load<f32>(p + j * F32);
      store<f32>(d + j * F32, pj * (load<f32>(g + j * F32) - r) * scale);
    }
  }
}
