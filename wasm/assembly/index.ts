// The edgetune kernel core. Every export is a plain function over linear memory that the
// TypeScript arena owns (imported as env.memory): outputs first, then inputs, then sizes.
// Kernels never allocate. See src/engine/kernels.ts for the typed view of these exports.
export { matmul_nt, matmul_nn, matmul_tn, matmul_strided, transpose } from "./gemm";
export { activation_forward, activation_backward } from "./activations";
export { transpose_strided, attention_softmax, attention_softmax_backward } from "./attention";
export { rope_table, rope } from "./rope";
export {
  bias_grad,
  dropout_forward, mul, add,
  scale, fill, copy, axpy, gather_rows, all_finite,
} from "./elementwise";
export {
  mse_loss, l1_loss, huber_loss, smooth_l1_loss,
  cross_entropy_loss, bce_with_logits_loss, hinge_loss, multi_margin_loss,
} from "./losses";
export { sgd_step, adam_step, rmsprop_step, adagrad_step } from "./optimizers";
export { sum_squares, sum_abs_pow, max_abs } from "./norms";
export {
  layer_norm_forward, layer_norm_backward,
  batch_norm_stats, batch_norm_update, batch_norm_forward, batch_norm_backward,
} from "./normalization";
export {
  embedding_forward, embedding_backward, add_broadcast, token_pool_forward, token_pool_backward,
} from "./tokens";
export { widen_f16, widen_bf16, embedding_forward_half } from "./halves";
export { conv_im2col, conv_im2col_t, conv_col2im, conv_bias_forward, conv_bias_backward } from "./conv";
export {
  max_pool_forward, max_pool_backward, avg_pool_forward, avg_pool_backward,
  adaptive_avg_pool_forward, adaptive_avg_pool_backward,
} from "./pool";
export { run_program } from "./program";

/** First byte the arena may use: everything below belongs to the module's static data. */
export function heap_base(): usize {
  return __heap_base;
}
