/**
 * Causal-LM labels as transformers computes its loss: labels are the input ids with padding set
 * to -100 (or the rows' own `y`), shifted inside the model, so the logits at position t are
 * scored against labels[t + 1] and the last position against nothing:
 *
 *   shift_logits = logits[:, :-1];  shift_labels = labels[:, 1:]
 *   loss = cross_entropy(shift_logits, shift_labels, ignore_index=-100)   (mean over kept tokens)
 *
 * Here the shift moves into the targets (y[t] = labels[t + 1], y[T - 1] = -100), so the per-token
 * cross-entropy over every position is that same mean.
 * https://github.com/huggingface/transformers/blob/main/src/transformers/loss/loss_utils.py
 */
import { UnprocessableError } from "../../errors.js";
import type { Table } from "../../formats/dataset.js";

/**
 * The label cross-entropy ignores.
 *
 * @example
 * ```ts
 * labels[t] = mask[t] === 0 ? IGNORE_INDEX : ids[t];
 * ```
 */
export const IGNORE_INDEX = -100;

/**
 * Next-token targets for a causal LM: from the ids and the mask (rows without `y`), or from `y`
 * rows of labels as long as the ids.
 *
 * @example
 * ```ts
 * const t = causalLmTargets(table, "data.train"); // t.targets === t.features; y[r, T-1] === -100
 * ```
 */
export function causalLmTargets(table: Table, field: string): Table {
  const T = table.features;
  let labels: Float32Array;
  if (table.targets === 0) {
    labels = Float32Array.from(table.x, (id, i) => (table.mask && table.mask[i] === 0 ? IGNORE_INDEX : id));
  } else if (table.targets === T && !table.targetsWereScalar) {
    labels = table.y;
  } else {
    throw new UnprocessableError("invalid_dataset", [
      { path: `${field}.y`, message: `a causal LM's y rows are labels as long as input_ids (${T} per row, -100 to ignore a token), or leave y out to train on the ids themselves; the rows have ${table.targets}` },
    ]);
  }
  const y = new Float32Array(table.rows * T);
  let predicted = 0; // next-token labels that are not ignored
  for (let r = 0; r < table.rows; r++) {
    for (let t = 0; t < T - 1; t++) {
      const label = labels[r * T + t + 1]!;
      y[r * T + t] = label;
      if (label !== IGNORE_INDEX) predicted++;
    }
    y[r * T + T - 1] = IGNORE_INDEX;
  }
  if (predicted === 0) {
    // the loss would be a mean over no tokens: NaN in transformers as here, so refused up front
    throw new UnprocessableError("invalid_dataset", [
      table.targets === 0
        ? { path: `${field}.input_ids`, message: `no row has a token to predict: a causal LM learns each token from the ones before it, so a row needs at least 2 tokens with attention_mask 1` }
        : { path: `${field}.y`, message: `every label after a row's first token is ${IGNORE_INDEX}: a causal LM predicts each label from the tokens before it, so there is nothing to learn` },
    ]);
  }
  return { ...table, targets: T, y, targetsWereScalar: false };
}
