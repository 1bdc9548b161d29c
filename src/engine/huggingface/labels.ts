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
import { IssueList, type Table } from "../../formats/dataset.js";

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

/**
 * The class index of each class name a sequence classifier's config knows: its `label2id`, else
 * the inverse of `id2label`, else the names PretrainedConfig gives a config with neither
 * (LABEL_0 .. LABEL_{num_labels-1}). An index must be an integer below num_labels: a 422 at
 * `model.huggingface.config.label2id.<name>` (or `id2label.<key>`) otherwise.
 * https://github.com/huggingface/transformers/blob/main/src/transformers/configuration_utils.py
 * (PretrainedConfig.__init__ and its num_labels setter)
 *
 * @example
 * ```ts
 * labelIds({ id2label: { "0": "NEGATIVE", "1": "POSITIVE" } }, 2); // Map { "NEGATIVE" => 0, "POSITIVE" => 1 }
 * ```
 */
export function labelIds(config: { label2id?: unknown; id2label?: Record<string, string> }, classes: number): Map<string, number> {
  const ids = new Map<string, number>();
  const { label2id, id2label } = config;
  if (label2id !== undefined && label2id !== null) {
    const field = "model.huggingface.config.label2id";
    if (typeof label2id !== "object" || Array.isArray(label2id)) {
      throw new UnprocessableError("invalid_model", [{ path: field, message: "must be an object of class names to class indices" }]);
    }
    for (const [name, id] of Object.entries(label2id)) {
      if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= classes) {
        throw new UnprocessableError("invalid_model", [{ path: `${field}.${name}`, message: `is ${JSON.stringify(id)}; a class index is an integer 0..${classes - 1} (num_labels ${classes})` }]);
      }
      ids.set(name, id);
    }
    if (ids.size > 0) return ids;
  }
  if (id2label && Object.keys(id2label).length > 0) {
    for (const [key, name] of Object.entries(id2label)) {
      const id = /^\d+$/.test(key) ? Number(key) : NaN; // PretrainedConfig reads each key with int()
      if (!(id < classes)) {
        throw new UnprocessableError("invalid_model", [{ path: `model.huggingface.config.id2label.${key}`, message: `is keyed ${JSON.stringify(key)}; a class index is an integer 0..${classes - 1} (num_labels ${classes})` }]);
      }
      ids.set(name, id);
    }
    return ids;
  }
  for (let i = 0; i < classes; i++) ids.set(`LABEL_${i}`, i);
  return ids;
}

/**
 * A table whose targets are class names (text rows with `"y": "positive"`), with each name
 * replaced by its class index from `ids` (labelIds): a DatasetError naming each row whose name
 * the model does not know, with the names it does. Other tables come back as they are.
 *
 * @example
 * ```ts
 * const t = mapLabelNames(table, labelIds(config, 2), "data.train"); // t.y = [1, 0, ...], no labelNames
 * ```
 */
export function mapLabelNames(table: Table, ids: Map<string, number>, field: string): Table {
  if (!table.labelNames) return table;
  const { names, column } = table.labelNames;
  const issues = new IssueList();
  const y = new Float32Array(table.rows);
  const known = [...ids.keys()];
  const list = known.length <= 12 ? known.map((n) => JSON.stringify(n)).join(", ") : `${known.slice(0, 12).map((n) => JSON.stringify(n)).join(", ")} and ${known.length - 12} more`;
  for (let r = 0; r < table.rows && !issues.full; r++) {
    const id = ids.get(names[r]!);
    if (id !== undefined) {
      y[r] = id;
      continue;
    }
    const message = `row ${r}: ${JSON.stringify(names[r])} is not a class of the model; its classes are ${list}`;
    const line = table.lines?.[r];
    issues.add(line !== undefined ? { path: field, line, column, message } : { path: `${field}.${column}[${r}]`, message });
  }
  issues.throwIfAny();
  const { labelNames: _names, ...rest } = table;
  return { ...rest, y };
}
