/**
 * Tabular training data: inline JSON, CSV and JSONL all become one `Table` of float32 rows.
 *
 * Every problem is reported as a DatasetError issue that points at the offending value the way
 * the user wrote it: `data.train.x[12][3]` for inline data, or `path` + `line` + `column` for a
 * cell of a CSV/JSONL file part. Up to MAX_ISSUES issues are collected so one request shows
 * many mistakes at once, and parsing stops there.
 *
 * Values are stored as float32 (what PyTorch trains on); a value that is finite as a double but
 * overflows float32 (1e39) is rejected like Infinity, since it would become Infinity in the tensor.
 *
 * Runtime-agnostic: strings and typed arrays only.
 */
import { describeValue, listNames } from "./describe.js";
import { DatasetError, type FieldIssue } from "../errors.js";
import { decodeBase64 } from "./base64.js";
import { tableFromSafetensors } from "./dataset-safetensors.js";
import type { DatasetSpec } from "../schema/request.js";

/**
 * A dataset in row-major float32: `x` is [rows, features], `y` is [rows, targets].
 * `targetsWereScalar` records that each target was a bare number (`y: [0, 2, 1]`, or one CSV
 * target column named by a string), so results can be reported in the shape the user gave.
 *
 * @example
 * ```ts
 * const table: Table = { rows: 2, features: 1, targets: 1, x: new Float32Array([1, 2]),
 *                        y: new Float32Array([0, 1]), targetsWereScalar: true };
 * ```
 */
export interface Table {
  rows: number;
  features: number;
  targets: number;
  x: Float32Array;
  y: Float32Array;
  targetsWereScalar: boolean;
  /** `x` holds token ids (`input_ids`, integers stored as f32), `features` of them per row. */
  ids?: boolean;
  /** The attention mask of token rows, [rows, features]: 1 = token, 0 = padding. */
  mask?: Float32Array | null;
  /** token_type_ids of token rows, [rows, features]: 0 = the first text, 1 = the second (text_pair). */
  tokenTypes?: Float32Array | null;
  /**
   * Text rows, as given (`text`): one string per row, `features` 0 until the request's tokenizer
   * turns them into token rows (tokenizeTables in formats/text.ts).
   */
  text?: string[];
  /** The second text of each row (`text_pair`), for text rows that come in pairs. */
  textPair?: string[] | null;
  /**
   * Token rows read from a CSV or JSONL part: the line each row came from, so that checks made
   * once the model is known (an id outside the vocabulary) point at the line.
   */
  lines?: Int32Array;
  /** The feature columns' header names, in order (a CSV of feature rows); absent for inline rows. */
  featureNames?: string[];
  /**
   * Text rows whose targets are class names (`"positive"`), one per row, under `column` (y or
   * label); `y` holds 0 until the engine maps them to class indices through the model's
   * config.label2id (mapLabelNames in engine/huggingface/labels.ts), the only place they mean one.
   */
  labelNames?: { names: string[]; column: string };
}

/** Issues reported before parsing stops. */
export const MAX_ISSUES = 20;

// ---------------------------------------------------------------- shared helpers

/**
 * Collects a dataset's issues up to MAX_ISSUES; `full` tells the parser to stop once more were
 * seen, and throwIfAny ends the check with one DatasetError naming every row and column.
 *
 * @example
 * ```ts
 * const issues = new IssueList();
 * issues.add({ path: "data.train.y[3]", message: "row 3: label 7 is out of range" });
 * issues.throwIfAny(); // throws DatasetError with that issue
 * ```
 */
export class IssueList {
  readonly issues: FieldIssue[] = [];
  /** True once an issue beyond MAX_ISSUES was seen (and dropped). */
  truncated = false;

  /** Adds an issue; returns false when the list is full and parsing should stop. */
  add(issue: FieldIssue): boolean {
    if (this.issues.length >= MAX_ISSUES) {
      this.truncated = true;
      return false;
    }
    this.issues.push(issue);
    return true;
  }

  /** An issue had to be dropped: stop parsing (exactly MAX_ISSUES issues is not yet full). */
  get full(): boolean {
    return this.truncated;
  }

  throwIfAny(): void {
    if (this.issues.length > 0) throw this.error();
  }

  /** Throws now with what was collected plus this last issue. */
  fatal(issue: FieldIssue): never {
    this.add(issue);
    throw this.error();
  }

  error(): DatasetError {
    const first = this.issues[0]!;
    const where = [first.line !== undefined ? `line ${first.line}` : "", first.column !== undefined ? `column ${JSON.stringify(first.column)}` : ""]
      .filter(Boolean)
      .join(", ");
    const more = this.truncated
      ? ` (and more: showing the first ${MAX_ISSUES} issues; parsing stopped there)`
      : this.issues.length > 1
        ? ` (and ${this.issues.length - 1} more)`
        : "";
    return new DatasetError(this.issues, `Invalid dataset: ${first.path}${where ? ` (${where})` : ""}: ${first.message}${more}`);
  }
}

/** Elements a table reserves before rows arrive (4 MiB of float32). */
const INITIAL_ELEMENTS = 1 << 20;

/**
 * Grows the float32 buffers of a table row by row (x, y, and for token rows with an attention
 * mask or token_type_ids, mask and types); rows are written in place through `x`/`y`/`mask`/`types`.
 */
class TableBuilder {
  x: Float32Array;
  y: Float32Array;
  mask: Float32Array | null;
  types: Float32Array | null;
  rows = 0;
  private capacity: number;

  constructor(
    readonly features: number,
    readonly targets: number,
    capacityHint: number,
    withMask = false,
    withTypes = false,
    /** The hint counts rows that are already in memory, each `features` wide (inline JSON rows). */
    exact = false,
  ) {
    // a hint read from text (lines counted) is trusted only up to a few MB: a table grows by
    // doubling as real rows arrive, so memory follows the data, not a claimed size. Rows already
    // in memory as JS arrays of the right width are the data: the table is sized once for them,
    // with no regrowth and no trimming copy (the inline JSON path writes each number once).
    const perRow = features * (1 + (withMask ? 1 : 0) + (withTypes ? 1 : 0)) + targets;
    this.capacity = Math.max(1, exact ? capacityHint : Math.min(capacityHint, Math.floor(INITIAL_ELEMENTS / Math.max(1, perRow))));
    this.x = new Float32Array(this.capacity * features);
    this.y = new Float32Array(this.capacity * targets);
    this.mask = withMask ? new Float32Array(this.capacity * features) : null;
    this.types = withTypes ? new Float32Array(this.capacity * features) : null;
  }

  /** Reserves the next row and returns its index. */
  addRow(): number {
    if (this.rows === this.capacity) {
      this.capacity *= 2;
      const grow = (a: Float32Array, width: number) => {
        const b = new Float32Array(this.capacity * width);
        b.set(a);
        return b;
      };
      this.x = grow(this.x, this.features);
      this.y = grow(this.y, this.targets);
      if (this.mask) this.mask = grow(this.mask, this.features);
      if (this.types) this.types = grow(this.types, this.features);
    }
    return this.rows++;
  }

  finish(targetsWereScalar: boolean, ids = false): Table {
    const fits = this.rows === this.capacity;
    // Copy when over-allocated so the table holds no dead capacity for its lifetime.
    const trim = (a: Float32Array, width: number) => (fits ? a : a.slice(0, this.rows * width));
    return {
      rows: this.rows,
      features: this.features,
      targets: this.targets,
      x: trim(this.x, this.features),
      y: trim(this.y, this.targets),
      targetsWereScalar,
      ...(ids ? { ids: true } : {}),
      ...(this.mask ? { mask: trim(this.mask, this.features) } : {}),
      ...(this.types ? { tokenTypes: trim(this.types, this.features) } : {}),
    };
  }
}

/** The value as float32 if it is a finite number that stays finite in float32, else NaN. */
function toFiniteF32(value: unknown): number {
  if (typeof value !== "number") return NaN;
  const rounded = Math.fround(value);
  return rounded - rounded === 0 ? rounded : NaN;
}

/** Why toFiniteF32 refused a JSON value. */
function explainBadValue(value: unknown): string {
  if (typeof value !== "number") return `is ${describeJson(value)}, not a number`;
  if (Number.isNaN(value)) return "is NaN";
  if (value === Infinity) return "is Infinity";
  if (value === -Infinity) return "is -Infinity";
  return `is ${value}, which overflows float32 (largest finite value about 3.4e38)`;
}

function describeJson(value: unknown): string {
  return describeValue(value);
}

// ---------------------------------------------------------------- inline JSON

/**
 * Converts an inline dataset into a Table: feature rows `{x: number[][], y}`, token rows
 * `{input_ids: number[][], attention_mask?: number[][], y}` (see tokenTableFromInline), text rows,
 * or a base64 safetensors file `{safetensors}` (see tableFromSafetensors); rows come with
 * `y` one target per row (`number | number[]`). `field` is where it sits in the request, e.g.
 * "data.train"; issue paths extend it (`data.train.x[12]`, `data.train.y[5]`, `data.train.x[12][3]`).
 *
 * @example
 * ```ts
 * const table = tableFromInline({ x: [[1, 2], [3, 4]], y: [0, 1] }, "data.train");
 * // { rows: 2, features: 2, targets: 1, targetsWereScalar: true, ... }
 * ```
 */
export function tableFromInline(dataset: DatasetSpec, field: string): Table {
  if ("safetensors" in dataset) return tableFromBase64Safetensors(dataset, field);
  if ("input_ids" in dataset) return tokenTableFromInline(dataset, field);
  if ("text" in dataset) return textTableFromInline(dataset, field);
  const issues: IssueList = new IssueList();
  const { x, y } = dataset as { x: unknown; y: unknown };
  if (!Array.isArray(x) || x.length === 0) {
    issues.fatal({ path: `${field}.x`, message: Array.isArray(x) ? "has no rows; at least one is required" : "must be a list of rows" });
  }
  const rows = x.length;
  const targetShape = inlineTargetShape(y, rows, "x", field, issues);

  const firstRow: unknown = x[0];
  if (!Array.isArray(firstRow)) issues.fatal({ path: `${field}.x[0]`, message: "must be a list of numbers" });
  const features = firstRow.length;
  if (features === 0) issues.fatal({ path: `${field}.x[0]`, message: "is empty; each row needs at least one feature" });

  // reserve only for rows that can be filled (lists of the right width): a claimed row count of
  // scalars must not make the table allocate rows x width
  let fillable = 0;
  for (let r = 0; r < rows; r++) if (Array.isArray(x[r]) && (x[r] as unknown[]).length === features) fillable++;
  const builder = new TableBuilder(features, targetShape.targets, fillable, false, false, true);
  for (let r = 0; r < rows && !issues.full; r++) {
    const value: unknown = x[r];
    if (!Array.isArray(value) || value.length !== features) {
      // reported without reserving a row: a malformed row costs no memory
      copyInlineRow(value, `${field}.x`, r, features, "values", builder.x, 0, issues);
      continue;
    }
    const row = builder.addRow();
    copyInlineRow(value, `${field}.x`, r, features, "values", builder.x, row * features, issues);
  }
  copyInlineTargets(y as unknown[], rows, targetShape, builder, field, issues);
  issues.throwIfAny();
  return builder.finish(targetShape.scalar);
}

/** `{safetensors: "<base64>"}`: a binary dataset in the request JSON (formats/dataset-safetensors.ts). */
function tableFromBase64Safetensors(dataset: Record<string, unknown>, field: string): Table {
  const issues = new IssueList();
  for (const key of Object.keys(dataset)) {
    if (key !== "safetensors") issues.add({ path: `${field}.${key}`, message: "is not a field of a binary dataset: give the whole dataset inside the safetensors file" });
  }
  if (typeof dataset.safetensors !== "string") issues.add({ path: `${field}.safetensors`, message: `is ${describeJson(dataset.safetensors)}, expected a base64 string of a safetensors file` });
  issues.throwIfAny();
  const headerField = `${field}.safetensors`;
  return tableFromSafetensors(decodeBase64(dataset.safetensors as string, headerField), field, { headerField });
}

/** The shape of inline targets, from y[0]: a number per row, or a list of `targets` numbers. */
function inlineTargetShape(y: unknown, rows: number, rowsName: string, field: string, issues: IssueList, yName = "y"): { scalar: boolean; targets: number } {
  if (!Array.isArray(y)) issues.fatal({ path: `${field}.${yName}`, message: "must be a list of targets" });
  if (y.length !== rows) issues.add({ path: `${field}.${yName}`, message: `has ${y.length} targets, but ${rowsName} has ${rows} rows` });
  const first: unknown = y[0];
  const targets = Array.isArray(first) ? first.length : 1;
  if (y.length > 0 && targets === 0) issues.fatal({ path: `${field}.${yName}[0]`, message: "is empty; each row needs at least one target" });
  return { scalar: !Array.isArray(first), targets };
}

/** Copies inline targets into the table (row r of y into row r of the builder). */
function copyInlineTargets(
  y: unknown[], rows: number, shape: { scalar: boolean; targets: number }, builder: TableBuilder, field: string, issues: IssueList, yName = "y",
): void {
  const { targets } = shape;
  // (a row past the builder's rows belongs to a malformed table: its writes fall off the end, its issues count)
  for (let r = 0; r < Math.min(rows, y.length) && !issues.full; r++) {
    const target: unknown = y[r];
    if (shape.scalar) {
      // the path is built only for an issue: this loop runs once per row
      if (Array.isArray(target)) {
        issues.add({ path: `${field}.${yName}[${r}]`, message: `is a list, but ${yName}[0] is a number: every target must have the same shape` });
        continue;
      }
      const value = toFiniteF32(target);
      if (Number.isNaN(value)) issues.add({ path: `${field}.${yName}[${r}]`, message: explainBadValue(target) });
      else builder.y[r] = value;
    } else {
      copyInlineRow(target, `${field}.${yName}`, r, targets, "values", builder.y, r * targets, issues, `${yName}[0]`);
    }
  }
}

// ---------------------------------------------------------------- token rows

/**
 * Token ids are stored as float32, which holds every integer below 2^24 exactly.
 *
 * @example
 * ```ts
 * id < TOKEN_ID_LIMIT; // 16777216
 * ```
 */
export const TOKEN_ID_LIMIT = 2 ** 24;

/** Why a value is not a token id (an integer in [0, 2^24)), or null when it is one. */
function tokenIdProblem(value: unknown): string | null {
  if (typeof value !== "number") return `is ${describeJson(value)}, not a token id (an integer)`;
  if (!Number.isInteger(value)) return `is ${value}, not an integer token id`;
  if (value < 0) return `is ${value}; token ids are >= 0`;
  if (value >= TOKEN_ID_LIMIT) return `is ${value}; token ids must be below 2^24 = 16777216 (they are stored as float32, exact only up to there)`;
  return null;
}

/** Why a value is not an attention-mask entry (0 or 1), or null. */
function maskValueProblem(value: unknown): string | null {
  return value === 0 || value === 1 ? null : `is ${describeJson(value)}; attention_mask holds 1 (a token) or 0 (padding)`;
}

/**
 * The issue of a token row whose attention mask has no 1 (shared by every reader of token rows).
 *
 * @example
 * ```ts
 * issues.add({ path: "data.train.attention_mask[3]", message: NO_TOKEN_MESSAGE });
 * ```
 */
export const NO_TOKEN_MESSAGE = "has no token with mask 1: every row needs at least one (a row of padding only has nothing to pool or predict)";

/** Whether row `row` of a [rows, T] mask has at least one 1. */
function rowHasToken(mask: Float32Array, row: number, T: number): boolean {
  for (let t = 0; t < T; t++) if (mask[row * T + t] !== 0) return true;
  return false;
}

/** Why a value is not a token type id (an integer >= 0; BERT's are 0 and 1), or null. */
function typeIdProblem(value: unknown): string | null {
  if (typeof value === "number" && Number.isInteger(value) && value >= 0 && value < TOKEN_ID_LIMIT) return null;
  return `is ${describeJson(value)}; token_type_ids holds integers >= 0 (0 = the first text, 1 = the second)`;
}

/**
 * Converts inline token rows `{input_ids, attention_mask?, token_type_ids?, y}` into a token Table (`ids`: x
 * holds the ids as float32). Rows are padded to one length T; attention_mask (same shape, 1 =
 * token, 0 = padding) is optional: without it every token counts; token_type_ids (same shape)
 * is optional too (without it every token is of the first text). Issues name the row:
 * `data.train.input_ids[3]` (a ragged row), `data.train.input_ids[3][7]` (not an integer id),
 * `data.train.attention_mask[3]` (only padding). Whether an id is inside the vocabulary is
 * known only with the model: prepareRun checks it (checkTokenIds).
 *
 * @example
 * ```ts
 * const table = tokenTableFromInline({ input_ids: [[5, 9, 0], [7, 0, 0]], attention_mask: [[1, 1, 0], [1, 0, 0]], y: [1, 0] }, "data.train");
 * // { rows: 2, features: 3, ids: true, mask: Float32Array [1, 1, 0, 1, 0, 0], ... }
 * ```
 */
export function tokenTableFromInline(dataset: Record<string, unknown>, field: string): Table {
  const issues: IssueList = new IssueList();
  const known = new Set(["input_ids", "attention_mask", "token_type_ids", "y"]);
  for (const key of Object.keys(dataset)) {
    if (!known.has(key)) {
      issues.add({ path: `${field}.${key}`, message: key === "x" ? "token rows take input_ids instead of x; give one of them" : "is not a field of token data (input_ids, attention_mask, token_type_ids, y)" });
    }
  }
  issues.throwIfAny();
  const { input_ids: ids, attention_mask: mask, token_type_ids: types, y } = dataset as { input_ids: unknown; attention_mask?: unknown; token_type_ids?: unknown; y: unknown };
  if (!Array.isArray(ids) || ids.length === 0) {
    issues.fatal({ path: `${field}.input_ids`, message: Array.isArray(ids) ? "has no rows; at least one is required" : "must be a list of rows of token ids" });
  }
  const rows = ids.length;
  const first: unknown = ids[0];
  if (!Array.isArray(first)) issues.fatal({ path: `${field}.input_ids[0]`, message: `is ${describeJson(first)}, expected a list of token ids` });
  const T = first.length;
  if (T === 0) issues.fatal({ path: `${field}.input_ids[0]`, message: "is empty; each row needs at least one token" });
  const hasMask = mask !== undefined && mask !== null;
  if (hasMask && !Array.isArray(mask)) issues.fatal({ path: `${field}.attention_mask`, message: "must be a list of rows of 0/1, one per row of input_ids" });
  if (hasMask && (mask as unknown[]).length !== rows) {
    issues.add({ path: `${field}.attention_mask`, message: `has ${(mask as unknown[]).length} rows, but input_ids has ${rows}` });
  }
  const hasTypes = types !== undefined && types !== null;
  if (hasTypes && !Array.isArray(types)) issues.fatal({ path: `${field}.token_type_ids`, message: "must be a list of rows of type ids, one per row of input_ids" });
  if (hasTypes && (types as unknown[]).length !== rows) {
    issues.add({ path: `${field}.token_type_ids`, message: `has ${(types as unknown[]).length} rows, but input_ids has ${rows}` });
  }
  // a causal LM's rows need no y (its labels are the ids): the table then has no targets
  const targetShape = y === undefined ? { scalar: false, targets: 0 } : inlineTargetShape(y, rows, "input_ids", field, issues);

  let fillable = 0;
  for (let r = 0; r < rows; r++) if (Array.isArray(ids[r]) && (ids[r] as unknown[]).length === T) fillable++;
  const builder = new TableBuilder(T, targetShape.targets, fillable, hasMask, hasTypes, true);
  for (let r = 0; r < rows && !issues.full; r++) {
    const row: unknown = ids[r];
    const path = `${field}.input_ids[${r}]`;
    if (!Array.isArray(row)) {
      issues.add({ path, message: `is ${describeJson(row)}, expected a list of ${T} token ids like input_ids[0]` });
      continue;
    }
    if (row.length !== T) {
      issues.add({ path, message: `has ${row.length} token ids, but input_ids[0] has ${T}: pad every row to one length (and mark the padding with attention_mask 0)` });
      continue;
    }
    const at = builder.addRow() * T;
    for (let t = 0; t < T; t++) {
      const problem = tokenIdProblem(row[t]);
      if (problem === null) builder.x[at + t] = row[t] as number;
      else if (!issues.add({ path: `${path}[${t}]`, message: problem })) break;
    }
    if (builder.types) {
      const typesRow: unknown = (types as unknown[])[r];
      const typesPath = `${field}.token_type_ids[${r}]`;
      if (!Array.isArray(typesRow) || typesRow.length !== T) {
        const got = Array.isArray(typesRow) ? `has ${typesRow.length} values` : `is ${describeJson(typesRow)}`;
        issues.add({ path: typesPath, message: `${got}, but input_ids[${r}] has ${T} token ids: one type id per token` });
      } else {
        for (let t = 0; t < T; t++) {
          const problem = typeIdProblem(typesRow[t]);
          if (problem === null) builder.types[at + t] = typesRow[t] as number;
          else if (!issues.add({ path: `${typesPath}[${t}]`, message: problem })) break;
        }
      }
    }
    if (!builder.mask) continue;
    const maskRow: unknown = (mask as unknown[])[r];
    const maskPath = `${field}.attention_mask[${r}]`;
    if (!Array.isArray(maskRow) || maskRow.length !== T) {
      const got = Array.isArray(maskRow) ? `has ${maskRow.length} values` : `is ${describeJson(maskRow)}`;
      issues.add({ path: maskPath, message: `${got}, but input_ids[${r}] has ${T} token ids: the mask has one 0/1 per token` });
      continue;
    }
    let bad = false;
    for (let t = 0; t < T; t++) {
      const problem = maskValueProblem(maskRow[t]);
      if (problem === null) builder.mask[at + t] = maskRow[t] as number;
      else if (((bad = true), !issues.add({ path: `${maskPath}[${t}]`, message: problem }))) break;
    }
    if (!bad && !rowHasToken(builder.mask, at / T, T)) issues.add({ path: maskPath, message: NO_TOKEN_MESSAGE });
  }
  if (y !== undefined) copyInlineTargets(y as unknown[], rows, targetShape, builder, field, issues);
  issues.throwIfAny();
  return builder.finish(targetShape.scalar, true);
}

function copyInlineRow(
  row: unknown,
  list: string,
  index: number,
  expected: number,
  noun: string,
  out: Float32Array,
  offset: number,
  issues: IssueList,
  firstName = "x[0]",
): void {
  // the path is built only for an issue: this loop runs once per number of the dataset
  if (!Array.isArray(row)) {
    issues.add({ path: `${list}[${index}]`, message: `is ${describeJson(row)}, expected a list of ${expected} numbers like ${firstName}` });
    return;
  }
  if (row.length !== expected) {
    issues.add({ path: `${list}[${index}]`, message: `has ${row.length} ${noun}, expected ${expected} (as ${firstName})` });
    return;
  }
  for (let c = 0; c < expected; c++) {
    const value: unknown = row[c];
    if (typeof value === "number") {
      // finite in float32 (NaN - NaN and Infinity - Infinity are NaN; 1e39 rounds to Infinity)
      const rounded = Math.fround(value);
      if (rounded - rounded === 0) {
        out[offset + c] = rounded;
        continue;
      }
    }
    if (!issues.add({ path: `${list}[${index}][${c}]`, message: explainBadValue(value) })) return;
  }
}

// ---------------------------------------------------------------- CSV

/**
 * Options of {@link parseCsv}.
 *
 * @example
 * ```ts
 * const options: CsvOptions = { target: ["y1", "y2"], field: "data.train" };
 * ```
 */
export interface CsvOptions {
  /** The target column's header name, or names (several outputs, in this order). */
  target: string | string[];
  /** Where the file came from, used as every issue's `path` (e.g. "data.train"). */
  field: string;
}

const CHAR = { quote: 34, comma: 44, lf: 10, cr: 13, space: 32, tab: 9, bom: 0xfeff } as const;

/**
 * Parses an RFC 4180 CSV with a header row. The `target` columns become `y` (in the order
 * named), every other column is a feature in header order. A UTF-8 BOM is stripped, CRLF and LF
 * both end lines, blank lines are skipped, spaces around numbers and header names are trimmed.
 * Issues carry `path: field`, the 1-based `line` where the record starts and the header name
 * as `column`.
 *
 * @example
 * ```ts
 * const table = parseCsv("a,b,y\n1,2,0\n3,4,1\n", { target: "y", field: "data.train" });
 * // { rows: 2, features: 2, targets: 1, x: [1,2,3,4], y: [0,1], targetsWereScalar: true }
 * ```
 */
export function parseCsv(text: string, options: CsvOptions): Table {
  const { field } = options;
  const issues: IssueList = new IssueList();
  const reader = new CsvRecordReader(text, field, issues);

  const header = reader.next();
  if (header === null) issues.fatal({ path: field, line: 1, message: "is empty; a header row is required" });
  const headerLine = reader.recordLine;
  const names = header.map((name) => name.trim());
  const columnOfName = new Map<string, number>();
  names.forEach((name, column) => {
    if (name === "") {
      issues.add({ path: field, line: headerLine, column: name, message: `header of column ${column + 1} is empty (a pandas index? write the CSV with index=False)` });
      return;
    }
    const previous = columnOfName.get(name);
    if (previous !== undefined) {
      issues.add({ path: field, line: headerLine, column: name, message: `header name ${JSON.stringify(name)} appears in columns ${previous + 1} and ${column + 1}` });
    } else {
      columnOfName.set(name, column);
    }
  });
  if (columnOfName.has("text") && !columnOfName.has("input_ids")) {
    issues.throwIfAny();
    return readTextCsv(reader, names, options.target, field, issues, text);
  }

  const targetNames = Array.isArray(options.target) ? options.target : [options.target];
  const tokenRows = columnOfName.has("input_ids");
  // Column index -> its slot: feature k is k, target t is -(t + 1).
  const slotOfColumn = new Int32Array(names.length);
  const isTarget = new Uint8Array(names.length);
  targetNames.forEach((name, t) => {
    const column = columnOfName.get(name);
    // token rows may come without their one target column: a causal LM's labels are its input ids
    if (column === undefined && tokenRows && targetNames.length === 1) return;
    if (column === undefined) {
      const listed = listNames(names);
      issues.add({ path: field, line: headerLine, column: targetColumnLabel(name), message: `target column ${describeValue(name, 60)} not found; the header has ${listed}` });
    } else if (isTarget[column]) {
      issues.add({ path: field, line: headerLine, column: targetColumnLabel(name), message: `target column ${describeValue(name, 60)} is named twice` });
    } else {
      isTarget[column] = 1;
      slotOfColumn[column] = -(t + 1);
    }
  });
  issues.throwIfAny();
  if (tokenRows) {
    const targetColumns = targetNames.flatMap((name) => (columnOfName.has(name) ? [columnOfName.get(name)!] : []));
    return readTokenCsv(reader, names, targetColumns, typeof options.target === "string" ? options.target : null, field, issues, text);
  }
  let features = 0;
  for (let column = 0; column < names.length; column++) {
    if (!isTarget[column]) slotOfColumn[column] = features++;
  }
  if (features === 0) issues.fatal({ path: field, line: headerLine, message: "has no feature columns: every column is a target" });
  const targets = targetNames.length;
  const columns = names.length;

  // every row needs at least one character per column: lines beyond that are blank or malformed
  const builder = new TableBuilder(features, targets, Math.min(countLines(text, reader.position), Math.ceil(text.length / (features + targets))));
  for (let record = reader.next(); record !== null; record = reader.next()) {
    const line = reader.recordLine;
    if (reader.recordBroken) continue; // already reported by the reader
    if (record.length !== columns) {
      if (!issues.add({ path: field, line, message: `has ${record.length} fields, header has ${columns}` })) break;
      continue;
    }
    const row = builder.addRow();
    for (let column = 0; column < columns; column++) {
      const cell = record[column]!;
      const value = parseNumberCell(cell);
      if (Number.isNaN(value)) {
        if (!issues.add({ path: field, line, column: names[column]!, message: explainBadCell(cell) })) break;
        continue;
      }
      const slot = slotOfColumn[column]!;
      if (slot >= 0) builder.x[row * features + slot] = value;
      else builder.y[row * targets - slot - 1] = value;
    }
    if (issues.full) break;
  }
  if (builder.rows === 0 && issues.issues.length === 0) {
    issues.add({ path: field, line: headerLine, message: "has a header row but no data rows" });
  }
  issues.throwIfAny();
  const featureNames = names.filter((_, column) => !isTarget[column]);
  return { ...builder.finish(!Array.isArray(options.target)), featureNames };
}

/**
 * A CSV of token rows (a header with an `input_ids` column): `input_ids` and, optionally,
 * `attention_mask` and `token_type_ids` hold a row of integers each, separated by spaces ("101 2023 102"); a list
 * as pandas writes it ("[101, 2023, 102]", quoted) reads the same. The target column holds a
 * number per row, or (one target column named by a string) a row of per-token labels written
 * the same way; several target columns hold a number each. No other columns are allowed.
 */
function readTokenCsv(
  reader: CsvRecordReader, names: string[], targetColumns: number[], singleTarget: string | null, field: string, issues: IssueList, text: string,
): Table {
  const idsColumn = names.indexOf("input_ids");
  const maskColumn = names.indexOf("attention_mask");
  const typesColumn = names.indexOf("token_type_ids");
  const headerLine = reader.recordLine;
  names.forEach((name, column) => {
    if (column !== idsColumn && column !== maskColumn && column !== typesColumn && !targetColumns.includes(column)) {
      issues.add({ path: field, line: headerLine, column: name, message: `a token CSV has the columns input_ids, attention_mask and token_type_ids (optional) and the target column(s); ${JSON.stringify(name)} is none of them` });
    }
  });
  issues.throwIfAny();
  const yName = singleTarget ?? "y";
  const rows = new TokenRowReader(field, issues, Math.min(countLines(text, reader.position), Math.ceil(text.length / 8)), yName);
  const keys = ["input_ids", ...(maskColumn >= 0 ? ["attention_mask"] : []), ...(typesColumn >= 0 ? ["token_type_ids"] : []), yName];
  for (let record = reader.next(); record !== null && !issues.full; record = reader.next()) {
    const line = reader.recordLine;
    if (reader.recordBroken) continue; // already reported by the reader
    if (record.length !== names.length) {
      issues.add({ path: field, line, message: `has ${record.length} fields, header has ${names.length}` });
      continue;
    }
    let y: unknown;
    if (targetColumns.length === 0) {
      y = undefined; // no target column: rows without targets
    } else if (singleTarget !== null) {
      const labels = integerListCell(record[targetColumns[0]!]!);
      y = labels.length === 1 ? labels[0] : labels;
    } else {
      y = targetColumns.map((column) => {
        const value = parseNumberCell(record[column]!);
        return Number.isNaN(value) ? record[column]!.trim() : value;
      });
    }
    rows.add(
      line,
      integerListCell(record[idsColumn]!),
      maskColumn >= 0 ? integerListCell(record[maskColumn]!) : undefined,
      typesColumn >= 0 ? integerListCell(record[typesColumn]!) : undefined,
      y,
      keys,
    );
  }
  return rows.finish();
}

/** "1 2 3", "1,2,3" or "[1, 2, 3]" -> [1, 2, 3]; a piece that is not a decimal number stays a string (for the message). */
function integerListCell(cell: string): unknown[] {
  let text = cell.trim();
  if (text.startsWith("[") && text.endsWith("]")) text = text.slice(1, -1);
  return text
    .split(/[\s,]+/)
    .filter((piece) => piece !== "")
    .map((piece) => (isDecimalNumber(piece, 0, piece.length) ? Number(piece) : piece));
}

/**
 * Reads CSV records one at a time in a single pass over the string. Quoted fields may contain
 * commas, newlines and "" escapes; `recordLine` is the 1-based line where the last record starts.
 */
class CsvRecordReader {
  position: number;
  recordLine = 0;
  /** The last record had a syntax error (already reported) and should be skipped. */
  recordBroken = false;
  private line = 1;

  constructor(
    private readonly text: string,
    private readonly field: string,
    private readonly issues: IssueList,
  ) {
    this.position = text.charCodeAt(0) === CHAR.bom ? 1 : 0;
  }

  /** The next non-blank record's fields, or null at the end of the text. */
  next(): string[] | null {
    const { text } = this;
    this.skipBlankLines();
    if (this.position >= text.length) return null;
    this.recordLine = this.line;
    this.recordBroken = false;
    const fields: string[] = [];
    for (;;) {
      let start = this.position;
      while (start < text.length && isSpaceOrTab(text.charCodeAt(start))) start++;
      if (text.charCodeAt(start) === CHAR.quote) {
        const value = this.readQuoted(start);
        if (value === null) return fields; // unterminated: reported, rest of text consumed
        fields.push(value);
      } else {
        let end = this.position;
        for (; end < text.length; end++) {
          const code = text.charCodeAt(end);
          if (code === CHAR.comma || code === CHAR.lf || code === CHAR.cr) break;
        }
        fields.push(text.slice(this.position, end));
        this.position = end;
      }
      // Now at a comma, a line end, or the end of the text.
      const code = text.charCodeAt(this.position);
      if (code === CHAR.comma) {
        this.position++;
        continue;
      }
      this.consumeLineEnd();
      return fields;
    }
  }

  /** Reads a quoted field whose opening quote is at `quote`; leaves `position` after it. */
  private readQuoted(quote: number): string | null {
    const { text } = this;
    const startLine = this.line;
    let value = "";
    let chunkStart = quote + 1;
    for (;;) {
      const close = text.indexOf('"', chunkStart);
      if (close === -1) {
        this.recordBroken = true;
        this.issues.add({ path: this.field, line: startLine, message: "has a quoted field that is never closed" });
        this.position = text.length;
        return null;
      }
      this.line += countLineBreaks(text, chunkStart, close);
      if (text.charCodeAt(close + 1) === CHAR.quote) {
        value += text.slice(chunkStart, close + 1); // "" is one literal quote
        chunkStart = close + 2;
        continue;
      }
      value += text.slice(chunkStart, close);
      this.position = close + 1;
      break;
    }
    while (this.position < text.length && isSpaceOrTab(text.charCodeAt(this.position))) this.position++;
    const after = text.charCodeAt(this.position);
    if (this.position < text.length && after !== CHAR.comma && after !== CHAR.lf && after !== CHAR.cr) {
      if (!this.recordBroken) {
        this.recordBroken = true;
        this.issues.add({ path: this.field, line: this.line, message: `has text after a closing quote: ${JSON.stringify(text.slice(this.position, this.position + 20))}` });
      }
      // Skip the rest of the field so the record can still be delimited.
      while (this.position < text.length) {
        const code = text.charCodeAt(this.position);
        if (code === CHAR.comma || code === CHAR.lf || code === CHAR.cr) break;
        this.position++;
      }
    }
    return value;
  }

  private consumeLineEnd(): void {
    const { text } = this;
    const code = text.charCodeAt(this.position);
    if (code === CHAR.cr) {
      this.position += text.charCodeAt(this.position + 1) === CHAR.lf ? 2 : 1;
      this.line++;
    } else if (code === CHAR.lf) {
      this.position++;
      this.line++;
    }
  }

  /** Skips lines that are empty or hold only spaces/tabs (pandas skips blank lines too). */
  private skipBlankLines(): void {
    const { text } = this;
    while (this.position < text.length) {
      let end = this.position;
      while (end < text.length && isSpaceOrTab(text.charCodeAt(end))) end++;
      const code = text.charCodeAt(end);
      if (end < text.length && code !== CHAR.lf && code !== CHAR.cr) return;
      this.position = end;
      if (end >= text.length) return;
      this.consumeLineEnd();
    }
  }
}

function isSpaceOrTab(code: number): boolean {
  return code === CHAR.space || code === CHAR.tab;
}

/** Line breaks (LF, CRLF or a lone CR) in text[from, to). */
function countLineBreaks(text: string, from: number, to: number): number {
  let count = 0;
  for (let i = from; i < to; i++) {
    const code = text.charCodeAt(i);
    if (code === CHAR.lf) count++;
    else if (code === CHAR.cr && text.charCodeAt(i + 1) !== CHAR.lf) count++;
  }
  return count;
}

/** An upper-bound-ish row count for the first allocation: LF count after `from`, plus one. */
function countLines(text: string, from: number): number {
  let count = 1;
  for (let i = text.indexOf("\n", from); i !== -1; i = text.indexOf("\n", i + 1)) count++;
  return count;
}

/**
 * A CSV cell as float32, or NaN when it is not a plain finite decimal number.
 * The grammar check comes first because Number() also accepts "", "0x10", "Infinity", "1_0"-like
 * surprises (and "" would silently become 0).
 */
function parseNumberCell(cell: string): number {
  let start = 0;
  let end = cell.length;
  while (start < end && isSpaceOrTab(cell.charCodeAt(start))) start++;
  while (end > start && isSpaceOrTab(cell.charCodeAt(end - 1))) end--;
  if (!isDecimalNumber(cell, start, end)) return NaN;
  return toFiniteF32(Number(start === 0 && end === cell.length ? cell : cell.slice(start, end)));
}

/** [+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)? over cell[start, end). */
function isDecimalNumber(cell: string, start: number, end: number): boolean {
  let i = start;
  const isDigit = (k: number) => {
    const code = cell.charCodeAt(k);
    return code >= 48 && code <= 57;
  };
  const sign = cell.charCodeAt(i);
  if (sign === 43 || sign === 45) i++; // + -
  let digits = 0;
  while (i < end && isDigit(i)) (i++, digits++);
  if (i < end && cell.charCodeAt(i) === 46) {
    i++; // .
    while (i < end && isDigit(i)) (i++, digits++);
  }
  if (digits === 0) return false;
  if (i < end && (cell.charCodeAt(i) | 32) === 101) {
    i++; // e E
    const exponentSign = cell.charCodeAt(i);
    if (exponentSign === 43 || exponentSign === 45) i++;
    let exponentDigits = 0;
    while (i < end && isDigit(i)) (i++, exponentDigits++);
    if (exponentDigits === 0) return false;
  }
  return i === end;
}

const NAN_SPELLINGS = new Set(["nan", "+nan", "-nan"]);
const INFINITY_SPELLINGS = new Set(["inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"]);

/** Why parseNumberCell refused a cell. */
function explainBadCell(cell: string): string {
  const trimmed = cell.replace(/^[ \t]+|[ \t]+$/g, "");
  if (trimmed === "") return "is empty, expected a number";
  const lower = trimmed.toLowerCase();
  if (NAN_SPELLINGS.has(lower)) return "is NaN";
  if (INFINITY_SPELLINGS.has(lower)) return `is not finite (${JSON.stringify(trimmed)})`;
  if (isDecimalNumber(trimmed, 0, trimmed.length)) {
    return `is not finite in float32: ${JSON.stringify(trimmed)} overflows (largest finite value about 3.4e38)`;
  }
  const shown = trimmed.length > 40 ? `${trimmed.slice(0, 37)}...` : trimmed;
  return `is not a number: ${JSON.stringify(shown)}`;
}

// ---------------------------------------------------------------- token rows from files

/**
 * Token rows of a JSONL or CSV part, one record at a time: input_ids (a row of token ids),
 * attention_mask and token_type_ids (optional; each given on every row or on none) and y
 * (optional too, on every row or on none: a causal LM's rows need none). The first good row
 * fixes the length T, whether a mask, type ids and targets come with the rows, and the target
 * shape. Issues carry the line and the column ("input_ids", "attention_mask",
 * "token_type_ids", "y"); the table records each row's line, so later
 * checks (an id outside the vocabulary) can name it too.
 */
class TokenRowReader {
  private builder: TableBuilder | null = null;
  private lines = new Int32Array(0);
  private targetsWereScalar = true;
  private hasTargets = true;
  private hasMask = false;
  private hasTypes = false;
  /** The line that fixed the shape. */
  firstLine = 0;

  constructor(
    private readonly field: string,
    private readonly issues: IssueList,
    private readonly capacityHint: number,
    /** What the target is called where it came from: "y" in JSONL, the target column's name in CSV. */
    private readonly yName = "y",
  ) {}

  /** Adds one record (values as the file holds them: arrays of numbers, or strings already split by the CSV reader). */
  add(line: number, ids: unknown, mask: unknown, types: unknown, y: unknown, keys: readonly string[]): void {
    const { field, issues } = this;
    for (const key of keys) {
      if (key !== "input_ids" && key !== "attention_mask" && key !== "token_type_ids" && key !== this.yName) {
        issues.add({ path: field, line, column: key, message: `${JSON.stringify(key)} is not a field of token rows (input_ids, attention_mask, token_type_ids, y)` });
        return;
      }
    }
    if (!Array.isArray(ids)) {
      issues.add({ path: field, line, column: "input_ids", message: ids === undefined ? `has no "input_ids"` : `"input_ids" is ${describeJson(ids)}, expected a list of token ids` });
      return;
    }
    // a causal LM's rows need no y (its labels are the ids): rows without y make a table without targets
    const yGiven = y !== undefined;
    const maskGiven = mask !== undefined && mask !== null;
    const typesGiven = types !== undefined && types !== null;
    const yIsList = Array.isArray(y);
    let builder = this.builder;
    if (!builder) {
      if (ids.length === 0) {
        issues.add({ path: field, line, column: "input_ids", message: `"input_ids" is empty; each row needs at least one token` });
        return;
      }
      if (yIsList && y.length === 0) {
        issues.add({ path: field, line, column: this.yName, message: `"${this.yName}" is empty; each row needs at least one target` });
        return;
      }
      this.hasTargets = yGiven;
      this.targetsWereScalar = yGiven && !yIsList;
      this.hasMask = maskGiven;
      this.hasTypes = typesGiven;
      this.firstLine = line;
      builder = this.builder = new TableBuilder(ids.length, !yGiven ? 0 : yIsList ? y.length : 1, this.capacityHint, maskGiven, typesGiven);
    }
    const T = builder.features;
    if (ids.length !== T) {
      issues.add({ path: field, line, column: "input_ids", message: `"input_ids" has ${ids.length} token ids, expected ${T} (as on line ${this.firstLine}): pad every row to one length and mark the padding with attention_mask 0` });
      return;
    }
    // a per-token column beside input_ids: on every row or on none, T values each
    const perToken = (column: string, given: boolean, firstHas: boolean, value: unknown, what: string): boolean => {
      if (given !== firstHas) {
        issues.add({
          path: field, line, column,
          message: given ? `"${column}" is given, but line ${this.firstLine} has none: give it on every row or on none` : `has no "${column}", but line ${this.firstLine} has one: give it on every row or on none`,
        });
        return false;
      }
      if (given && (!Array.isArray(value) || value.length !== T)) {
        issues.add({ path: field, line, column, message: `"${column}" ${Array.isArray(value) ? `has ${value.length} values` : `is ${describeJson(value)}`}, expected ${T}: ${what} per token of input_ids` });
        return false;
      }
      return true;
    };
    if (!perToken("attention_mask", maskGiven, this.hasMask, mask, "one 0/1")) return;
    if (!perToken("token_type_ids", typesGiven, this.hasTypes, types, "one type id")) return;
    if (yGiven !== this.hasTargets) {
      issues.add({
        path: field, line, column: this.yName,
        message: yGiven
          ? `"${this.yName}" is given, but line ${this.firstLine} has none: give it on every row or on none (a causal language model's rows need none)`
          : `has no "${this.yName}", but line ${this.firstLine} has one: give it on every row or on none`,
      });
      return;
    }
    if (yGiven && (yIsList === this.targetsWereScalar || (yIsList && y.length !== builder.targets))) {
      const expected = this.targetsWereScalar ? "a number" : `a list of ${builder.targets} numbers`;
      issues.add({ path: field, line, column: this.yName, message: `"${this.yName}" is ${yIsList ? `a list of ${y.length}` : describeJson(y)}, expected ${expected} (as on line ${this.firstLine})` });
      return;
    }
    const row = builder.addRow();
    if (this.lines.length < builder.x.length / Math.max(1, T)) {
      const grown = new Int32Array(Math.max(16, builder.x.length / Math.max(1, T)));
      grown.set(this.lines);
      this.lines = grown;
    }
    this.lines[row] = line;
    const at = row * T;
    for (let t = 0; t < T; t++) {
      const problem = tokenIdProblem(ids[t]);
      if (problem === null) builder.x[at + t] = ids[t] as number;
      else if (!issues.add({ path: field, line, column: "input_ids", message: `"input_ids"[${t}] ${problem}` })) return;
    }
    if (builder.mask) {
      let bad = false;
      for (let t = 0; t < T; t++) {
        const value = (mask as unknown[])[t];
        const problem = maskValueProblem(value);
        if (problem === null) builder.mask[at + t] = value as number;
        else if (((bad = true), !issues.add({ path: field, line, column: "attention_mask", message: `"attention_mask"[${t}] ${problem}` }))) return;
      }
      if (!bad && !rowHasToken(builder.mask, row, T)) issues.add({ path: field, line, column: "attention_mask", message: `"attention_mask" ${NO_TOKEN_MESSAGE}` });
    }
    if (builder.types) {
      for (let t = 0; t < T; t++) {
        const value = (types as unknown[])[t];
        const problem = typeIdProblem(value);
        if (problem === null) builder.types[at + t] = value as number;
        else if (!issues.add({ path: field, line, column: "token_type_ids", message: `"token_type_ids"[${t}] ${problem}` })) return;
      }
    }
    if (!yGiven) return;
    if (yIsList) copyJsonlValues(y, this.yName, builder.y, row * builder.targets, field, line, issues);
    else {
      const value = toFiniteF32(y);
      if (Number.isNaN(value)) issues.add({ path: field, line, column: this.yName, message: `"${this.yName}" ${explainBadValue(y)}` });
      else builder.y[row] = value;
    }
  }

  /** The table (or the issues). */
  finish(): Table {
    const { field, issues } = this;
    if (!this.builder && issues.issues.length === 0) {
      issues.add({ path: field, message: "has no rows of token ids" });
    }
    issues.throwIfAny();
    const table = this.builder!.finish(this.targetsWereScalar, true);
    table.lines = this.lines.slice(0, table.rows);
    return table;
  }
}

// ---------------------------------------------------------------- text rows

/**
 * Converts inline text rows `{text, text_pair?, y?}` into a text Table: the strings as they are
 * (`text`, `textPair`), no features until the request's tokenizer turns them into token rows
 * (tokenizeTables in formats/text.ts). The targets are `y`, or `label` as Hugging Face datasets
 * name it: a number (or a list of numbers) per row; without them the table has no targets (a
 * causal language model predicts the text itself). Issues name the row: `data.train.text[3]`
 * (not a string), `data.train.text_pair` (a count that differs from text).
 *
 * @example
 * ```ts
 * const table = textTableFromInline({ text: ["a fine film", "dull"], label: [1, 0] }, "data.train");
 * // { rows: 2, features: 0, targets: 1, text: ["a fine film", "dull"], ... }
 * ```
 */
export function textTableFromInline(dataset: Record<string, unknown>, field: string): Table {
  const issues: IssueList = new IssueList();
  for (const key of Object.keys(dataset)) {
    if (key === "text" || key === "text_pair" || key === "y" || key === "label") continue;
    issues.add({
      path: `${field}.${key}`,
      message: key === "x" || key === "input_ids" ? `text rows take text instead of ${key}; give one of them` : "is not a field of text data (text, text_pair, y or label)",
    });
  }
  if ("y" in dataset && "label" in dataset) issues.add({ path: `${field}.label`, message: "the targets are given twice, as y and as label: give one" });
  issues.throwIfAny();
  const strings = (name: "text" | "text_pair", rows: number | null): string[] => {
    const value = dataset[name];
    if (!Array.isArray(value) || value.length === 0) {
      issues.fatal({ path: `${field}.${name}`, message: Array.isArray(value) ? "has no rows; at least one is required" : "must be a list of strings, one per row" });
    }
    if (rows !== null && value.length !== rows) issues.add({ path: `${field}.${name}`, message: `has ${value.length} rows, but text has ${rows}` });
    value.forEach((s, r) => typeof s === "string" || issues.add({ path: `${field}.${name}[${r}]`, message: `is ${describeJson(s)}, not a string` }));
    return value as string[];
  };
  const text = strings("text", null);
  const rows = text.length;
  const pair = dataset.text_pair === undefined || dataset.text_pair === null ? null : strings("text_pair", rows);
  const yName = "y" in dataset ? "y" : "label" in dataset ? "label" : null;
  const shape = yName ? inlineTargetShape(dataset[yName], rows, "text", field, issues, yName) : { scalar: true, targets: 0 };
  const builder = new TableBuilder(0, shape.targets, rows);
  for (let r = 0; r < rows; r++) builder.addRow();
  const targets = yName ? (dataset[yName] as unknown[]) : [];
  const names = typeof targets[0] === "string" ? inlineLabelNames(targets, rows, `${field}.${yName}`, issues) : null;
  if (yName && !names) copyInlineTargets(targets, rows, shape, builder, field, issues, yName);
  issues.throwIfAny();
  return { ...builder.finish(shape.scalar), text, ...(pair ? { textPair: pair } : {}), ...(names ? { labelNames: { names, column: yName! } } : {}) };
}

/** Targets given as class names (the first is a string): every one must be a non-empty string. */
function inlineLabelNames(targets: unknown[], rows: number, list: string, issues: IssueList): string[] {
  const names: string[] = [];
  for (let r = 0; r < Math.min(rows, targets.length) && !issues.full; r++) {
    const issue = labelNameIssue(targets[r], targets[0] as string);
    if (issue) issues.add({ path: `${list}[${r}]`, message: issue });
    else names.push(targets[r] as string);
  }
  return names;
}

/** Why `value` is no class name, in data whose first target is the name `first`; null when it is one. */
function labelNameIssue(value: unknown, first: string): string | null {
  if (typeof value !== "string") return `is ${describeJson(value)}, but the first target is a class name (${JSON.stringify(first)}): give every target as a name, or every one as a class index`;
  if (value.trim() === "") return "is an empty class name";
  return null;
}

/**
 * Text rows of a JSONL or CSV part, one record at a time: `text`, `text_pair` (given on every
 * row or on none) and the target (`y` or `label`; on every row or on none). The first good row
 * fixes which of them come and the target's shape. Issues carry the line and the column.
 */
class TextRowReader {
  private builder: TableBuilder | null = null;
  private readonly text: string[] = [];
  private readonly pair: string[] = [];
  private readonly lines: number[] = [];
  private hasPair = false;
  private yName: string | null = null;
  private targetsWereScalar = true;
  /** The rows' class names, when the first row's target is one (a string); else null. */
  private names: string[] | null = null;
  /** The line that fixed the shape. */
  firstLine = 0;

  /** Whether the rows' targets are class names (decided by the first row; false before it). */
  get targetsAreNames(): boolean {
    return this.names !== null;
  }

  constructor(
    private readonly field: string,
    private readonly issues: IssueList,
    private readonly capacityHint: number,
  ) {}

  /**
   * Adds one record: the texts as the file holds them, and the target as {name, value} (or null).
   * A string value on the first row makes the targets class names (a CSV then gives every cell
   * as its text, "1" included).
   */
  add(line: number, text: unknown, pair: unknown, target: { name: string; value: unknown } | null): void {
    const { field, issues } = this;
    if (typeof text !== "string") {
      issues.add({ path: field, line, column: "text", message: text === undefined ? 'has no "text"' : `"text" is ${describeJson(text)}, not a string` });
      return;
    }
    const pairGiven = pair !== undefined && pair !== null;
    if (pairGiven && typeof pair !== "string") {
      issues.add({ path: field, line, column: "text_pair", message: `"text_pair" is ${describeJson(pair)}, not a string` });
      return;
    }
    const yIsList = target !== null && Array.isArray(target.value);
    let builder = this.builder;
    if (!builder) {
      if (yIsList && (target!.value as unknown[]).length === 0) {
        issues.add({ path: field, line, column: target!.name, message: `"${target!.name}" is empty; each row needs at least one target` });
        return;
      }
      this.hasPair = pairGiven;
      this.yName = target?.name ?? null;
      this.targetsWereScalar = !yIsList;
      if (typeof target?.value === "string") this.names = [];
      this.firstLine = line;
      builder = this.builder = new TableBuilder(0, target === null ? 0 : yIsList ? (target.value as unknown[]).length : 1, this.capacityHint);
    }
    if (pairGiven !== this.hasPair) {
      issues.add({
        path: field, line, column: "text_pair",
        message: pairGiven ? `"text_pair" is given, but line ${this.firstLine} has none: give it on every row or on none` : `has no "text_pair", but line ${this.firstLine} has one: give it on every row or on none`,
      });
      return;
    }
    if ((target?.name ?? null) !== this.yName) {
      const want = this.yName;
      issues.add({
        path: field, line, column: target?.name ?? want!,
        message: want === null ? `has "${target!.name}", but line ${this.firstLine} has no target: give it on every row or on none` : target === null ? `has no "${want}", but line ${this.firstLine} has one: give it on every row or on none` : `has "${target.name}", but line ${this.firstLine} has "${want}": name the target one way`,
      });
      return;
    }
    const { names } = this;
    if (target && names) {
      const issue = labelNameIssue(target.value, names[0] ?? (target.value as string));
      if (issue) {
        issues.add({ path: field, line, column: target.name, message: `"${target.name}" ${issue.replace("the first target", `line ${this.firstLine}'s target`)}` });
        return;
      }
    } else if (target && (yIsList === this.targetsWereScalar || (yIsList && (target.value as unknown[]).length !== builder.targets))) {
      const expected = this.targetsWereScalar ? "a number" : `a list of ${builder.targets} numbers`;
      issues.add({ path: field, line, column: target.name, message: `"${target.name}" is ${yIsList ? `a list of ${(target.value as unknown[]).length}` : describeJson(target.value)}, expected ${expected} (as on line ${this.firstLine})` });
      return;
    }
    const row = builder.addRow();
    this.text.push(text);
    if (pairGiven) this.pair.push(pair as string);
    this.lines.push(line);
    if (!target) return;
    if (names) names.push(target.value as string);
    else if (yIsList) copyJsonlValues(target.value as unknown[], target.name, builder.y, row * builder.targets, field, line, issues);
    else {
      const value = toFiniteF32(target.value);
      if (Number.isNaN(value)) issues.add({ path: field, line, column: target.name, message: `"${target.name}" ${explainBadValue(target.value)}` });
      else builder.y[row] = value;
    }
  }

  /** The table (or the issues). */
  finish(): Table {
    const { field, issues } = this;
    if (!this.builder && issues.issues.length === 0) issues.add({ path: field, message: "has no rows of text" });
    issues.throwIfAny();
    return {
      ...this.builder!.finish(this.targetsWereScalar),
      text: this.text,
      ...(this.hasPair ? { textPair: this.pair } : {}),
      lines: Int32Array.from(this.lines),
      ...(this.names ? { labelNames: { names: this.names, column: this.yName! } } : {}),
    };
  }
}

/** A target column's name as an issue's `column`: the name, or what it is when it is no string (a JS caller's). */
function targetColumnLabel(name: unknown): string {
  return typeof name === "string" ? name : describeValue(name, 60);
}

/**
 * A CSV of text rows (a header with a `text` column): `text`, `text_pair` (optional) and the
 * target column(s): `data.target`, or with the default `y` and no `y` column, `label` (as Hugging
 * Face datasets name it), or none at all (a causal language model needs none). Cells are taken
 * as written (RFC 4180 quoting keeps commas, quotes and line breaks in a text).
 */
function readTextCsv(reader: CsvRecordReader, names: string[], target: string | string[], field: string, issues: IssueList, text: string): Table {
  const headerLine = reader.recordLine;
  const column = (name: string) => names.indexOf(name);
  let targets = Array.isArray(target) ? target : [target];
  if (target === "y" && column("y") < 0) targets = column("label") >= 0 ? ["label"] : [];
  for (const name of targets) {
    if (column(name) < 0) issues.add({ path: field, line: headerLine, column: targetColumnLabel(name), message: `target column ${describeValue(name, 60)} not found; the header has ${listNames(names)}` });
  }
  const targetColumns = targets.map(column);
  const textColumn = column("text");
  const pairColumn = column("text_pair");
  names.forEach((name, c) => {
    if (c !== textColumn && c !== pairColumn && !targetColumns.includes(c)) {
      issues.add({ path: field, line: headerLine, column: name, message: `a text CSV has the columns text, text_pair (optional) and the target column(s) (data.target, default y, or label); ${JSON.stringify(name)} is none of them` });
    }
  });
  issues.throwIfAny();
  const rows = new TextRowReader(field, issues, Math.min(countLines(text, reader.position), Math.ceil(text.length / 2)));
  const single = typeof target === "string";
  for (let record = reader.next(); record !== null && !issues.full; record = reader.next()) {
    const line = reader.recordLine;
    if (reader.recordBroken) continue; // already reported by the reader
    if (record.length !== names.length) {
      issues.add({ path: field, line, message: `has ${record.length} fields, header has ${names.length}` });
      continue;
    }
    // one target column of class names (the first row's is a word, not a number): each cell as written
    const cell = single && targets.length === 1 ? record[targetColumns[0]!]!.trim() : "";
    if (rows.targetsAreNames || (cell !== "" && rows.firstLine === 0 && Number.isNaN(parseNumberCell(cell)))) {
      rows.add(line, record[textColumn], pairColumn >= 0 ? record[pairColumn] : undefined, { name: targets[0]!, value: cell });
      continue;
    }
    let bad = false;
    const values = targetColumns.map((c) => {
      const value = parseNumberCell(record[c]!);
      if (Number.isNaN(value)) {
        bad = true;
        issues.add({ path: field, line, column: names[c]!, message: explainBadCell(record[c]!) });
      }
      return value;
    });
    if (bad) continue;
    const y = targets.length === 0 ? null : { name: single ? targets[0]! : "y", value: single ? values[0] : values };
    rows.add(line, record[textColumn], pairColumn >= 0 ? record[pairColumn] : undefined, y);
  }
  return rows.finish();
}

// ---------------------------------------------------------------- JSONL

/**
 * Options of {@link parseJsonl}.
 *
 * @example
 * ```ts
 * const options: JsonlOptions = { field: "data.validation" };
 * ```
 */
export interface JsonlOptions {
  /** Where the file came from, used as every issue's `path` (e.g. "data.train"). */
  field: string;
}

/**
 * Parses JSON Lines, one `{"x": [numbers], "y": number | [numbers]}` per line; blank lines are
 * skipped. Issues carry `path: field`, the 1-based `line`, and `column: "x"` or `"y"` where
 * the problem is in one of them. The first valid row fixes the feature count and target shape.
 *
 * @example
 * ```ts
 * const table = parseJsonl('{"x":[1,2],"y":0}\n{"x":[3,4],"y":1}\n', { field: "data.train" });
 * // { rows: 2, features: 2, targets: 1, targetsWereScalar: true, ... }
 * ```
 */
export function parseJsonl(text: string, options: JsonlOptions): Table {
  const { field } = options;
  const issues: IssueList = new IssueList();
  let builder: TableBuilder | null = null;
  let targetsWereScalar = true;
  let shapeLine = 0; // the line that fixed the shape, for messages
  let tokenRows: TokenRowReader | false | null = null; // decided by the first object: "input_ids" or "x"
  let textRows: TextRowReader | false | null = null; // or "text"
  let position = text.charCodeAt(0) === CHAR.bom ? 1 : 0;
  for (let line = 1; position <= text.length && !issues.full; line++) {
    const newline = text.indexOf("\n", position);
    const lineEnd = newline === -1 ? text.length : newline;
    const content = text.slice(position, lineEnd);
    position = lineEnd + 1;
    if (content.trim() === "") continue;

    let parsed: unknown;
    try {
      parsed = JSON.parse(content);
    } catch (error) {
      issues.add({ path: field, line, message: `is not valid JSON: ${(error as Error).message}` });
      continue;
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      issues.add({ path: field, line, message: `is ${describeJson(parsed)}, expected an object like {"x": [...], "y": ...}` });
      continue;
    }
    const record = parsed as Record<string, unknown>;
    tokenRows ??= "input_ids" in record ? new TokenRowReader(field, issues, Math.min(countLines(text, position), Math.ceil(text.length / 16))) : false;
    textRows ??= !tokenRows && "text" in record ? new TextRowReader(field, issues, Math.min(countLines(text, position), Math.ceil(text.length / 12))) : false;
    if (textRows) {
      const unknown = Object.keys(record).find((key) => key !== "text" && key !== "text_pair" && key !== "y" && key !== "label");
      if (unknown !== undefined) {
        issues.add({ path: field, line, column: unknown, message: `${JSON.stringify(unknown)} is not a field of text rows (text, text_pair, y or label)` });
      } else if ("y" in record && "label" in record) {
        issues.add({ path: field, line, column: "label", message: 'has both "y" and "label": give the target once' });
      } else {
        const name = "y" in record ? "y" : "label" in record ? "label" : null;
        textRows.add(line, record.text, record.text_pair, name === null ? null : { name, value: record[name] });
      }
      continue;
    }
    if ("text" in record) {
      issues.add({ path: field, line, column: "text", message: `has "text", but the rows are ${tokenRows ? "token" : "feature"} rows (first on line ${tokenRows ? tokenRows.firstLine : shapeLine || "1"}): every line is one kind` });
      continue;
    }
    if (tokenRows) {
      if ("x" in record && !("input_ids" in record)) {
        issues.add({ path: field, line, column: "x", message: `has "x", but the rows are token rows ("input_ids", first on line ${tokenRows.firstLine}): every line is one kind` });
        continue;
      }
      tokenRows.add(line, record.input_ids, record.attention_mask, record.token_type_ids, record.y, Object.keys(record));
      continue;
    }
    if ("input_ids" in record) {
      issues.add({ path: field, line, column: "input_ids", message: `has "input_ids", but the rows are feature rows ("x", first on line ${shapeLine || "1"}): every line is one kind` });
      continue;
    }
    const { x, y } = record as { x?: unknown; y?: unknown };
    let broken = false;
    for (const [name, value] of [["x", x], ["y", y]] as const) {
      if (value === undefined) {
        issues.add({ path: field, line, column: name, message: `has no "${name}"` });
        broken = true;
      }
    }
    if (!Array.isArray(x)) {
      if (x !== undefined) issues.add({ path: field, line, column: "x", message: `"x" is ${describeJson(x)}, expected a list of numbers` });
      continue;
    }
    if (broken) continue;
    const yIsList = Array.isArray(y);
    if (!builder) {
      if (x.length === 0) {
        issues.add({ path: field, line, column: "x", message: `"x" is empty; each row needs at least one feature` });
        continue;
      }
      if (yIsList && y.length === 0) {
        issues.add({ path: field, line, column: "y", message: `"y" is empty; each row needs at least one target` });
        continue;
      }
      targetsWereScalar = !yIsList;
      builder = new TableBuilder(x.length, yIsList ? y.length : 1, Math.min(countLines(text, position), Math.ceil(text.length / (2 * x.length + 2))));
      shapeLine = line;
    }
    if (x.length !== builder.features) {
      issues.add({ path: field, line, column: "x", message: `"x" has ${x.length} values, expected ${builder.features} (as on line ${shapeLine})` });
      continue;
    }
    if (yIsList === targetsWereScalar || (yIsList && y.length !== builder.targets)) {
      const expected = targetsWereScalar ? "a number" : `a list of ${builder.targets} numbers`;
      issues.add({ path: field, line, column: "y", message: `"y" is ${yIsList ? `a list of ${y.length}` : describeJson(y)}, expected ${expected} (as on line ${shapeLine})` });
      continue;
    }
    const row = builder.addRow();
    copyJsonlValues(x, "x", builder.x, row * builder.features, field, line, issues);
    if (yIsList) copyJsonlValues(y, "y", builder.y, row * builder.targets, field, line, issues);
    else {
      const value = toFiniteF32(y);
      if (Number.isNaN(value)) issues.add({ path: field, line, column: "y", message: `"y" ${explainBadValue(y)}` });
      else builder.y[row] = value;
    }
  }
  if (tokenRows) return tokenRows.finish();
  if (textRows) return textRows.finish();
  if (!builder && issues.issues.length === 0) {
    issues.add({ path: field, message: "has no rows; each line should be {\"x\": [...], \"y\": ...} (or {\"input_ids\": [...], \"attention_mask\": [...], \"y\": ...}, or {\"text\": \"...\", \"y\": ...})" });
  }
  issues.throwIfAny();
  return builder!.finish(targetsWereScalar);
}

function copyJsonlValues(
  values: unknown[],
  name: string,
  out: Float32Array,
  offset: number,
  field: string,
  line: number,
  issues: IssueList,
): void {
  for (let i = 0; i < values.length; i++) {
    const value = toFiniteF32(values[i]);
    if (Number.isNaN(value)) {
      if (!issues.add({ path: field, line, column: name, message: `"${name}"[${i}] ${explainBadValue(values[i])}` })) return;
    } else {
      out[offset + i] = value;
    }
  }
}
