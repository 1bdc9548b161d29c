/**
 * A first look at an uploaded training file, read with the API's own CSV parser
 * (src/formats/dataset.ts), so the page reports a missing target column or a bad cell the way
 * the server would, before anything is sent.
 */
import { parseCsv } from "../formats/dataset.js";
import { linear, type ModelSpec } from "./demos.js";

/**
 * What the page learned from a training file: a line for the Data box and, for a numeric CSV, a
 * proposed model (features-32-outputs MLP) and loss.
 *
 * @example
 * ```ts
 * const look: CsvLook = { summary: "train.csv: 4 rows, 2 features, 2 classes (cross_entropy suggested)", ok: true, model: { layers: [] }, loss: "cross_entropy" };
 * ```
 */
export interface CsvLook {
  summary: string;
  /** false: the file cannot be used as it is (the summary says why). */
  ok: boolean;
  model?: ModelSpec;
  loss?: "cross_entropy" | "mse";
}

/**
 * Reads a training file's text. JSONL (by name or a leading `{`) and text or token CSVs are
 * only summarised (their model is written by hand); a numeric CSV gets a proposed MLP, with
 * `cross_entropy` when one target holds 2 to 50 class indices, else `mse`.
 *
 * @example
 * ```ts
 * lookAtCsv("a,b,y\n0,1,0\n1,0,1\n", "xor.csv", ["y"]).summary; // "xor.csv: 2 rows, 2 features, 2 classes (cross_entropy suggested)"
 * ```
 */
export function lookAtCsv(text: string, name: string, targets: string[]): CsvLook {
  if (/\.(jsonl|ndjson)$/i.test(name) || text.trimStart().startsWith("{")) {
    return { ok: true, summary: `${name}: JSONL; write the model by hand.` };
  }
  if (targets.length === 0) return { ok: false, summary: "Name the target column(s) first." };
  let table;
  try {
    table = parseCsv(text, { target: targets.length === 1 ? targets[0]! : targets, field: name });
  } catch (e) {
    const issues = (e as { errors?: { message: string; line?: number }[] }).errors ?? [];
    const first = issues[0];
    return { ok: false, summary: first ? `${name}${first.line ? ` line ${first.line}` : ""}: ${first.message}` : `${name}: ${(e as Error).message}` };
  }
  if (table.text || table.ids) {
    return { ok: true, summary: `${name}: ${table.rows} rows of ${table.text ? "text" : "token ids"}; write the model by hand.` };
  }
  let classes = 0;
  let integral = table.targets === 1 && table.rows > 0;
  for (let i = 0; integral && i < table.rows; i++) {
    const v = table.y[i]!;
    if (!Number.isInteger(v) || v < 0) integral = false;
    else classes = Math.max(classes, v + 1);
  }
  const classify = integral && classes >= 2 && classes <= 50;
  const outputs = classify ? classes : table.targets;
  return {
    ok: true,
    summary: `${name}: ${table.rows} rows, ${table.features} features, ${classify ? `${classes} classes (cross_entropy suggested)` : `${table.targets} regression target(s)`}`,
    model: { layers: [linear("fc1", table.features, 32), { type: "relu" }, linear("fc2", 32, outputs)] },
    loss: classify ? "cross_entropy" : "mse",
  };
}
