/**
 * Every op kind with its definition on the kernel core. The record is total over OpKind, so
 * an op without a kernel-core implementation does not compile.
 */
import { attentionOp } from "./attention.js";
import { convOp } from "./conv.js";
import { activationOp, addOp, dropoutOp, mulOp } from "./elementwise.js";
import { linearOp } from "./linear.js";
import { batchNormOp, layerNormOp } from "./norm.js";
import { avgPoolOp, maxPoolOp } from "./pool.js";
import { ropeOp } from "./rope.js";
import { addPositionOp, embeddingOp, tokenPoolOp } from "./tokens.js";
import type { OpDef, OpKind, OpOf } from "./types.js";

export const OPS: { readonly [K in OpKind]: OpDef<OpOf<K>> } = {
  linear: linearOp,
  activation: activationOp,
  dropout: dropoutOp,
  add: addOp,
  attention: attentionOp,
  layer_norm: layerNormOp,
  batch_norm: batchNormOp,
  embedding: embeddingOp,
  add_position: addPositionOp,
  token_pool: tokenPoolOp,
  conv: convOp,
  max_pool: maxPoolOp,
  avg_pool: avgPoolOp,
  rope: ropeOp,
  mul: mulOp,
};

/** The definition of an op kind, typed for a generic op. */
export function opDef<O extends { kind: OpKind }>(op: O): OpDef<OpOf<O["kind"]>> {
  return OPS[op.kind] as OpDef<OpOf<O["kind"]>>;
}
