// The fused training step: a compact Int32 program (src/engine/program.ts writes it) that runs
// a run's steps inside the kernel core, so JavaScript makes one call per chunk of steps
// instead of about fifteen per step. It calls the same kernels, with the same arguments, in
// the same order as the JS-driven step (src/engine/wasm-backend.ts), so the floats are the same.
// It allocates nothing: the program, its control block and its per-step tables are arena memory.
//
// Program words (i32), one body per batch size (the full batch, and the epoch's last, shorter one):
//   1 CALL     id nargs args...      kernel `id` (FUSED_KERNELS order) with its args (f32 as bits)
//   2 GATHER   dst src order B rows cols   gather_rows(dst, src, order + b*B*4, rows, cols), b the batch
//   3 LOSS     losses                the last call's f64 result to losses[s]; not finite: fault 1
//   4 CHECK    ptr n code            all_finite(ptr, n) or fault `code`
//   5 CLIP     grads n norm err lo hi   clip_grad_norm_ (norm 2: L2, 0: inf), max_norm an f64 (lo, hi words)
//   6 CALLROW  id nargs table        kernel `id` with the args of row s of `table` (the optimizer's per-step scalars)
// Control block (i32 words at ctl): 0 full body, 1 its words, 2 tail body, 3 its words, 4 the batch
// that takes the tail body (-1: none), 5 the first batch b0, 6 steps to run, 9 1 when the order is
// 0, 1, 2, ... (GATHER copies a batch's rows at once); written: 7 steps done, 8 fault code (0:
// none), 10-11 an f64 (the total norm of a non-finite clip).
import { matmul_nt, matmul_nn, matmul_tn } from "./gemm";
import { activation_forward, activation_backward } from "./activations";
import { bias_grad, mul, add, scale, fill, copy, axpy, gather_rows, all_finite } from "./elementwise";
import {
  mse_loss, l1_loss, huber_loss, smooth_l1_loss, cross_entropy_loss, bce_with_logits_loss, hinge_loss, multi_margin_loss,
} from "./losses";
import { sgd_step, adam_step, rmsprop_step, adagrad_step } from "./optimizers";
import { sum_squares, max_abs } from "./norms";
import { layer_norm_forward, layer_norm_backward } from "./normalization";

const OP_CALL = 1, OP_GATHER = 2, OP_LOSS = 3, OP_CHECK = 4, OP_CLIP = 5, OP_CALLROW = 6;
const FAULT_LOSS = 1, FAULT_NORM = 3;

@inline function P(a: usize, k: usize): usize { return <usize>load<u32>(a + (k << 2)); }
@inline function I(a: usize, k: usize): i32 { return load<i32>(a + (k << 2)); }
@inline function F(a: usize, k: usize): f32 { return load<f32>(a + (k << 2)); }

/** Calls kernel `id` (src/engine/program.ts FUSED_KERNELS, same order) with the args at `a`; its result, or 0. */
function call_kernel(id: i32, a: usize): f64 {
  switch (id) {
    case 0: matmul_nt(P(a, 0), P(a, 1), P(a, 2), P(a, 3), P(a, 4), I(a, 5), I(a, 6), I(a, 7)); return 0;
    case 1: matmul_nn(P(a, 0), P(a, 1), P(a, 2), I(a, 3), I(a, 4), I(a, 5), I(a, 6), P(a, 7)); return 0;
    case 2: matmul_tn(P(a, 0), P(a, 1), P(a, 2), I(a, 3), I(a, 4), I(a, 5), I(a, 6), P(a, 7)); return 0;
    case 3: bias_grad(P(a, 0), P(a, 1), I(a, 2), I(a, 3)); return 0;
    case 4: activation_forward(P(a, 0), P(a, 1), I(a, 2), F(a, 3), I(a, 4)); return 0;
    case 5: activation_backward(P(a, 0), P(a, 1), P(a, 2), P(a, 3), I(a, 4), F(a, 5), I(a, 6)); return 0;
    case 6: mul(P(a, 0), P(a, 1), P(a, 2), I(a, 3)); return 0;
    case 7: add(P(a, 0), P(a, 1), P(a, 2), I(a, 3)); return 0;
    case 8: scale(P(a, 0), F(a, 1), I(a, 2)); return 0;
    case 9: fill(P(a, 0), F(a, 1), I(a, 2)); return 0;
    case 10: copy(P(a, 0), P(a, 1), I(a, 2)); return 0;
    case 11: axpy(P(a, 0), P(a, 1), F(a, 2), I(a, 3)); return 0;
    case 12: gather_rows(P(a, 0), P(a, 1), P(a, 2), I(a, 3), I(a, 4)); return 0;
    case 13: return mse_loss(P(a, 0), P(a, 1), P(a, 2), I(a, 3));
    case 14: return l1_loss(P(a, 0), P(a, 1), P(a, 2), I(a, 3));
    case 15: return huber_loss(P(a, 0), P(a, 1), P(a, 2), F(a, 3), I(a, 4));
    case 16: return smooth_l1_loss(P(a, 0), P(a, 1), P(a, 2), F(a, 3), I(a, 4));
    case 17: return cross_entropy_loss(P(a, 0), P(a, 1), P(a, 2), P(a, 3), I(a, 4), I(a, 5), I(a, 6), F(a, 7));
    case 18: return bce_with_logits_loss(P(a, 0), P(a, 1), P(a, 2), P(a, 3), I(a, 4), I(a, 5));
    case 19: return hinge_loss(P(a, 0), P(a, 1), P(a, 2), I(a, 3));
    case 20: return multi_margin_loss(P(a, 0), P(a, 1), P(a, 2), P(a, 3), I(a, 4), I(a, 5), I(a, 6), F(a, 7));
    case 21:
      sgd_step(P(a, 0), P(a, 1), P(a, 2), I(a, 3), F(a, 4), F(a, 5), F(a, 6), F(a, 7), I(a, 8), I(a, 9), I(a, 10));
      return 0;
    case 22:
      adam_step(
        P(a, 0), P(a, 1), P(a, 2), P(a, 3), P(a, 4), I(a, 5), F(a, 6), F(a, 7), F(a, 8), F(a, 9), F(a, 10), F(a, 11),
        F(a, 12), F(a, 13), F(a, 14), I(a, 15), I(a, 16), I(a, 17),
      );
      return 0;
    case 23:
      rmsprop_step(
        P(a, 0), P(a, 1), P(a, 2), P(a, 3), P(a, 4), I(a, 5), F(a, 6), F(a, 7), F(a, 8), F(a, 9), F(a, 10), F(a, 11), I(a, 12), I(a, 13),
      );
      return 0;
    case 24: adagrad_step(P(a, 0), P(a, 1), P(a, 2), I(a, 3), F(a, 4), F(a, 5), F(a, 6), I(a, 7)); return 0;
    case 25:
      layer_norm_forward(P(a, 0), P(a, 1), P(a, 2), P(a, 3), P(a, 4), P(a, 5), I(a, 6), I(a, 7), F(a, 8), I(a, 9));
      return 0;
    case 26:
      layer_norm_backward(P(a, 0), P(a, 1), P(a, 2), P(a, 3), P(a, 4), P(a, 5), P(a, 6), P(a, 7), I(a, 8), I(a, 9), I(a, 10));
      return 0;
  }
  return 0;
}

/**
 * Runs steps [0, count) of the control block's batches b0 + s; stops at the first fault (the
 * step's own weights untouched by the update, or updated and non-finite: code 4, which the
 * caller restores from the step's snapshot). Returns the steps done.
 */
export function run_program(ctl: usize): i32 {
  const full = P(ctl, 0), fullWords = I(ctl, 1), tail = P(ctl, 2), tailWords = I(ctl, 3);
  const tailBatch = I(ctl, 4), b0 = I(ctl, 5), count = I(ctl, 6), inOrder = I(ctl, 9) != 0;
  store<i32>(ctl + 28, 0);
  store<i32>(ctl + 32, 0);
  for (let s = 0; s < count; s++) {
    const b = b0 + s;
    const body = b == tailBatch ? tail : full;
    const end = body + (<usize>(b == tailBatch ? tailWords : fullWords) << 2);
    let pc = body;
    let last: f64 = 0;
    while (pc < end) {
      const op = I(pc, 0);
      if (op == OP_CALL) {
        const nargs = <usize>I(pc, 2);
        last = call_kernel(I(pc, 1), pc + 12);
        pc += (3 + nargs) << 2;
      } else if (op == OP_CALLROW) {
        const nargs = <usize>I(pc, 2);
        last = call_kernel(I(pc, 1), P(pc, 3) + ((<usize>s * nargs) << 2));
        pc += 16;
      } else if (op == OP_GATHER) {
        const first = <usize>b * <usize>I(pc, 4);
        // rows in order: one contiguous copy (the same values gather_rows would copy row by row)
        if (inOrder) memory.copy(P(pc, 1), P(pc, 2) + ((first * <usize>I(pc, 6)) << 2), (<usize>I(pc, 5) * <usize>I(pc, 6)) << 2);
        else gather_rows(P(pc, 1), P(pc, 2), P(pc, 3) + (first << 2), I(pc, 5), I(pc, 6));
        pc += 28;
      } else if (op == OP_LOSS) {
        store<f64>(P(pc, 1) + (<usize>s << 3), last);
        if (!isFinite(last)) return fault(ctl, s, FAULT_LOSS);
        pc += 8;
      } else if (op == OP_CHECK) {
        if (!all_finite(P(pc, 1), I(pc, 2))) return fault(ctl, s, I(pc, 3));
        pc += 16;
      } else if (op == OP_CLIP) {
        // torch.nn.utils.clip_grad_norm_ as src/engine/step.ts: total = ||g|| rounded to f32,
        // coef = min(f32(max_norm / f32(total + 1e-6)), 1)
        const grads = P(pc, 1), n = I(pc, 2);
        const total: f32 = I(pc, 3) == 0 ? max_abs(grads, n) : <f32>Math.sqrt(sum_squares(grads, n));
        if (I(pc, 4) != 0 && !isFinite(total)) {
          store<f64>(ctl + 40, <f64>total);
          return fault(ctl, s, FAULT_NORM);
        }
        const maxNorm = load<f64>(pc + 20);
        const coef = Math.min(<f64><f32>(maxNorm / <f64><f32>(<f64>total + 1e-6)), 1.0);
        scale(grads, <f32>coef, n);
        pc += 28;
      } else {
        return fault(ctl, s, -1); // not a program: nothing more is run
      }
    }
    store<i32>(ctl + 28, s + 1);
  }
  return count;
}

function fault(ctl: usize, s: i32, code: i32): i32 {
  store<i32>(ctl + 28, s);
  store<i32>(ctl + 32, code);
  return s;
}
