// Token kernels: the embedding lookup and its scatter-add, the broadcast add of learned
// positions, and pooling over the tokens of a sequence that honours the attention mask.
// Outputs first, then inputs, then sizes. Token ids arrive as f32 (exact integers below 2^24,
// checked against num_embeddings before any kernel runs); a mask is f32 [rows, T] of 1 (token)
// and 0 (padding), pointer 0 when every token counts. Parameter gradients ACCUMULATE (+=);
// input gradients are WRITTEN.
import { F32 } from "./simd";

// ------------------------------------------------------------------ embedding
// https://pytorch.org/docs/stable/generated/torch.nn.Embedding.html : y[t] = weight[ids[t]];
// the row of padding_idx "does not contribute to the gradient".

/** out[t, :] = weight[ids[t], :] for t < n (n = rows * T tokens, dim = embedding_dim). */
export function embedding_forward(out: usize, weight: usize, ids: usize, n: i32, dim: i32): void {
  const rowBytes = <usize>dim * F32;
  for (let t: usize = 0; t < <usize>n; t++) {
    const id = <usize>(<i32>load<f32>(ids + t * F32));
    memory.copy(out + t * rowBytes, weight + id * rowBytes, rowBytes);
  }
}

/**
 * dweight[ids[t], :] += dout[t, :] in token order (torch's embedding_dense_backward_cpu: one
 * row added per index, in index order, so repeated ids sum deterministically); tokens whose id
 * is padding_idx add nothing (padding_idx -1: none).
 */
export function embedding_backward(dweight: usize, dout: usize, ids: usize, n: i32, dim: i32, padding_idx: i32): void {
  const D = <usize>dim;
  for (let t: usize = 0; t < <usize>n; t++) {
    const id = <i32>load<f32>(ids + t * F32);
    if (id == padding_idx) continue;
    const dst = dweight + <usize>id * D * F32;
    const src = dout + t * D * F32;
    let j: usize = 0;
    for (; j + 4 <= D; j += 4) v128.store(dst + j * F32, f32x4.add(v128.load(dst + j * F32), v128.load(src + j * F32)));
    for (; j < D; j++) store<f32>(dst + j * F32, load<f32>(dst + j * F32) + load<f32>(src + j * F32));
  }
}

// ------------------------------------------------------------------ learned positions

/**
 * out[r, c] = inp[r, c] + b[c] for r < rows, c < cols: x + weight[:T] of a position embedding
 * (cols = T * D; the first T rows of weight are contiguous). Its backward is bias_grad and copy.
 */
export function add_broadcast(out: usize, inp: usize, b: usize, rows: i32, cols: i32): void {
  const C = <usize>cols;
  for (let r: usize = 0; r < <usize>rows; r++) {
    const o = out + r * C * F32;
    const x = inp + r * C * F32;
    let c: usize = 0;
    for (; c + 4 <= C; c += 4) v128.store(o + c * F32, f32x4.add(v128.load(x + c * F32), v128.load(b + c * F32)));
    for (; c < C; c++) store<f32>(o + c * F32, load<f32>(x + c * F32) + load<f32>(b + c * F32));
  }
}

// ------------------------------------------------------------------ pooling over tokens
// x is [rows, T, D]; out is [rows, D]. Modes (src/engine/layers/tokens.ts POOL_MODES):
//   mean  sum of the valid tokens / their count   (x * mask[..., None]).sum(1) / mask.sum(1)
//   max   max over the valid tokens, the gradient to the first maximum (torch.max(dim=1))
//   cls   token 0                                (x[:, 0])
//   last  the last token with mask 1             (x[r, last valid index])

const POOL_MEAN: i32 = 0;
const POOL_MAX: i32 = 1;
const POOL_CLS: i32 = 2;
const POOL_LAST: i32 = 3;

/** Whether token t of row r counts (mask 0: every token). */
// @ts-ignore: decorator
@inline
function valid(mask: usize, r: usize, T: usize, t: usize): bool {
  return mask == 0 || load<f32>(mask + (r * T + t) * F32) != 0;
}

/** Tokens of row r that count (T without a mask). */
function countValid(mask: usize, r: usize, T: usize): i32 {
  if (mask == 0) return <i32>T;
  let count: i32 = 0;
  for (let t: usize = 0; t < T; t++) if (load<f32>(mask + (r * T + t) * F32) != 0) count++;
  return count;
}

/** The token cls/last pools from: 0, or the last token with mask 1 (0 when none has). */
function selectedToken(mode: i32, mask: usize, r: usize, T: usize): usize {
  if (mode == POOL_CLS) return 0;
  if (mask == 0) return T - 1;
  for (let t = <isize>T - 1; t >= 0; t--) if (load<f32>(mask + (r * T + <usize>t) * F32) != 0) return <usize>t;
  return 0;
}

/**
 * out[r, :] = the pooled tokens of x[r] (mode: 0 mean, 1 max, 2 cls, 3 last); max also writes
 * argmax[r, d] = the token index it took (f32), for the backward pass (argmax unused otherwise).
 */
export function token_pool_forward(out: usize, argmax: usize, x: usize, mask: usize, mode: i32, rows: i32, T: i32, D: i32): void {
  const TT = <usize>T, DD = <usize>D;
  for (let r: usize = 0; r < <usize>rows; r++) {
    const o = out + r * DD * F32;
    const xr = x + r * TT * DD * F32;
    if (mode == POOL_MEAN) {
      let j: usize = 0;
      for (; j + 4 <= DD; j += 4) {
        let acc = f32x4.splat(0);
        for (let t: usize = 0; t < TT; t++) if (valid(mask, r, TT, t)) acc = f32x4.add(acc, v128.load(xr + (t * DD + j) * F32));
        v128.store(o + j * F32, acc);
      }
      for (; j < DD; j++) {
        let s: f32 = 0;
        for (let t: usize = 0; t < TT; t++) if (valid(mask, r, TT, t)) s += load<f32>(xr + (t * DD + j) * F32);
        store<f32>(o + j * F32, s);
      }
      const count = f32x4.splat(<f32>countValid(mask, r, TT));
      j = 0;
      for (; j + 4 <= DD; j += 4) v128.store(o + j * F32, f32x4.div(v128.load(o + j * F32), count));
      for (; j < DD; j++) store<f32>(o + j * F32, load<f32>(o + j * F32) / f32x4.extract_lane(count, 0));
    } else if (mode == POOL_MAX) {
      const am = argmax + r * DD * F32;
      for (let j: usize = 0; j < DD; j++) {
        // the first valid token starts the scan; a later one replaces it only when strictly
        // larger (ties keep the first maximum) or NaN (torch.max propagates NaN)
        let best: f32 = -Infinity;
        let at: f32 = -1;
        for (let t: usize = 0; t < TT; t++) {
          if (!valid(mask, r, TT, t)) continue;
          const v = load<f32>(xr + (t * DD + j) * F32);
          if (at < 0 || v > best || (isNaN(v) && !isNaN(best))) {
            best = v;
            at = <f32>t;
          }
        }
        store<f32>(o + j * F32, best);
        store<f32>(am + j * F32, at);
      }
    } else {
      const t = selectedToken(mode, mask, r, TT);
      memory.copy(o, xr + t * DD * F32, DD * F32);
    }
  }
}

/**
 * dx[r] = the gradient of the pooling (written, every element): mean spreads dout / count over
 * the valid tokens; max sends dout[r, d] to token argmax[r, d]; cls and last to their token.
 */
export function token_pool_backward(dx: usize, dout: usize, argmax: usize, mask: usize, mode: i32, rows: i32, T: i32, D: i32): void {
  const TT = <usize>T, DD = <usize>D;
  memory.fill(dx, 0, <usize>rows * TT * DD * F32);
  for (let r: usize = 0; r < <usize>rows; r++) {
    const g = dout + r * DD * F32;
    const dr = dx + r * TT * DD * F32;
    if (mode == POOL_MEAN) {
      const count = f32x4.splat(<f32>countValid(mask, r, TT));
      for (let t: usize = 0; t < TT; t++) {
        if (!valid(mask, r, TT, t)) continue;
        const d = dr + t * DD * F32;
        let j: usize = 0;
        for (; j + 4 <= DD; j += 4) v128.store(d + j * F32, f32x4.div(v128.load(g + j * F32), count));
        for (; j < DD; j++) store<f32>(d + j * F32, load<f32>(g + j * F32) / f32x4.extract_lane(count, 0));
      }
    } else if (mode == POOL_MAX) {
      const am = argmax + r * DD * F32;
      for (let j: usize = 0; j < DD; j++) {
        const at = <i32>load<f32>(am + j * F32);
        if (at >= 0) store<f32>(dr + (<usize>at * DD + j) * F32, load<f32>(g + j * F32));
      }
    } else {
      const t = selectedToken(mode, mask, r, TT);
      memory.copy(dr + t * DD * F32, g, DD * F32);
    }
  }
}
