/**
 * A request's data checked against its model and loss, once the formats have parsed it into
 * Tables: token ids against the embedding's vocabulary, targets against the loss and the
 * output's width. The formats only parse (numbers, shapes, paths); what a value must be
 * depends on the model and the loss, which only the engine knows.
 */
import { IssueList, type Table } from "../formats/dataset.js";
import type { LossSpec } from "../schema/request.js";

// ---------------------------------------------------------------- token ids vs vocabulary

/**
 * Checks a token table's ids against the vocabulary of the embedding that reads them (an id
 * must be below num_embeddings): a DatasetError naming the row, the id and the vocabulary.
 *
 * @example
 * ```ts
 * checkTokenIds(table, { size: 1000, path: "model.layers[0]" }, "data.train");
 * // throws on an id 1000: "data.train.input_ids[12]: row 12: token id 1000 (position 3) ..."
 * ```
 */
export function checkTokenIds(table: Table, vocabulary: { size: number; path: string }, field: string): void {
  const issues: IssueList = new IssueList();
  const T = table.features;
  const { x } = table;
  for (let i = 0; i < x.length && !issues.full; i++) {
    const id = x[i]!;
    if (id < vocabulary.size) continue;
    const row = Math.floor(i / T);
    const message = `token id ${id} (position ${i % T}) is outside the vocabulary of ${vocabulary.path}: num_embeddings is ${vocabulary.size}, so ids are 0..${vocabulary.size - 1}`;
    const line = table.lines?.[row];
    issues.add(
      line !== undefined
        ? { path: field, line, column: "input_ids", message: `row ${row}: ${message}` }
        : { path: `${field}.input_ids[${row}]`, message: `row ${row}: ${message}` },
    );
    i = (row + 1) * T - 1; // one issue per row
  }
  issues.throwIfAny();
}

// ---------------------------------------------------------------- targets vs loss


/**
 * Checks that a table's targets fit the loss and the model's output: `outputs` values (classes)
 * at each of `positions` positions per sample (1, or the tokens of a per-token output [T, C]). Throws DatasetError with paths `${field}.y` (shape)
 * or `${field}.y[row]` (a value; the message repeats the row index).
 *
 * @example
 * ```ts
 * checkTargets(table, { type: "cross_entropy", weight: null, ignore_index: -100, label_smoothing: 0 }, 3, "data.train");
 * // throws if a label is 7: "row 7: label 7 is out of range for 3 classes (0..2)"
 * ```
 */
export function checkTargets(table: Table, loss: LossSpec, outputs: number, field: string, positions = 1): void {
  const issues: IssueList = new IssueList();
  if (table.targets === 0) {
    // text rows without y (or label): only a model that predicts its own tokens needs none
    issues.fatal({ path: `${field}.y`, message: `is missing: the rows have no targets, and ${loss.type} needs one per row (y, or label in text data)` });
  }
  const perToken = positions > 1 ? ` (${positions} positions x ${outputs} outputs: the model outputs one prediction per token)` : "";
  const checkWidth = (what: string): boolean => {
    if (table.targets === outputs * positions) return true;
    issues.add({
      path: `${field}.y`,
      message: `${loss.type} needs ${outputs * positions} target value${outputs * positions === 1 ? "" : "s"} per row (${what})${perToken}, but the rows have ${table.targets}`,
    });
    return false;
  };
  const checkClassIndex = (classCount: number, what: string): boolean => {
    if (table.targets === positions) return true;
    if (positions > 1) {
      issues.add({
        path: `${field}.y`,
        message: `${what}: the model outputs [${positions}, ${classCount}] per sample (one prediction per token), so each row needs ${positions} class indices (-100 to ignore a token), but the rows have ${table.targets} target values; for one label per sample, pool the tokens first`,
      });
      return false;
    }
    const hint =
      table.ids && table.targets === table.features
        ? `; these look like per-token labels (${table.features}, one per token): those need a model that outputs one prediction per token, [tokens, classes], without a pool`
        : table.targets === classCount
          ? "; give the class index, not one value per class"
          : "";
    issues.add({ path: `${field}.y`, message: `${what} needs one class index per row, but the rows have ${table.targets} target values${hint}` });
    return false;
  };
  const eachValue = (check: (value: number) => string | null): void => {
    const { y, targets } = table;
    for (let i = 0; i < y.length; i++) {
      const problem = check(y[i]!);
      if (problem === null) continue;
      const row = Math.floor(i / targets);
      const path = targets === 1 && table.targetsWereScalar ? `${field}.y[${row}]` : `${field}.y[${row}][${i % targets}]`;
      if (!issues.add({ path, message: `row ${row}: ${problem}` })) return;
    }
  };
  const classRange = (value: number, classCount: number): string | null => {
    if (!Number.isInteger(value)) return `label ${formatF32(value)} is not an integer class index`;
    if (value < 0 || value >= classCount) {
      return `label ${formatF32(value)} is out of range for ${classCount} class${classCount === 1 ? "" : "es"} (0..${classCount - 1})`;
    }
    return null;
  };

  switch (loss.type) {
    case "mse":
    case "l1":
    case "huber":
    case "smooth_l1":
      checkWidth("one per model output");
      break;
    case "cross_entropy": {
      // Compare in float32, which is how the labels are stored.
      const ignoreIndex = Math.fround(loss.ignore_index);
      if (checkClassIndex(outputs, "cross_entropy")) {
        eachValue((value) => {
          if (value === ignoreIndex) return null;
          const problem = classRange(value, outputs);
          return problem && `${problem} (or ignore_index ${loss.ignore_index})`;
        });
        // a mean over no labels is NaN (torch.nn.CrossEntropyLoss's too): refused here, rather
        // than a run that diverges at its first step
        if (table.y.length > 0 && table.y.every((value) => value === ignoreIndex)) {
          issues.add({ path: `${field}.y`, message: `every label is ignore_index ${loss.ignore_index}: the loss would be the mean over no labels (NaN); give at least one class index` });
        }
      }
      break;
    }
    case "multi_margin":
      if (checkClassIndex(outputs, "multi_margin")) eachValue((value) => classRange(value, outputs));
      break;
    case "bce_with_logits":
      if (checkWidth("one 0..1 label per model output")) {
        eachValue((value) => (value >= 0 && value <= 1 ? null : `target ${formatF32(value)} is outside [0, 1]`));
      }
      break;
    case "hinge":
      if (checkWidth("one label per model output")) {
        eachValue((value) => (value === -1 || value === 0 || value === 1 ? null : `target ${formatF32(value)} must be -1, 0 or 1 (0 counts as -1)`));
      }
      break;
    default: {
      const unknown: never = loss;
      throw new TypeError(`unknown loss ${JSON.stringify(unknown)}`);
    }
  }
  issues.throwIfAny();
}

/** The shortest decimal that reads back as the same float32 (0.1, not 0.10000000149011612). */
function formatF32(value: number): string {
  for (let digits = 1; digits < 9; digits++) {
    const text = String(Number(value.toPrecision(digits)));
    if (Math.fround(Number(text)) === value) return text;
  }
  return String(value);
}
