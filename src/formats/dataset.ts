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
import type { DatasetSpec, LossSpec } from "../schema/request.js";

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
}

/** Issues reported before parsing stops. */
export const MAX_ISSUES = 20;

// ---------------------------------------------------------------- shared helpers

/** Collects issues up to MAX_ISSUES; `full` tells the parser to stop once more were seen. */
class IssueList {
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

/** Grows two float32 buffers row by row; rows are written in place through `x`/`y`. */
/** Elements a table reserves before rows arrive (4 MiB of float32). */
const INITIAL_ELEMENTS = 1 << 20;

class TableBuilder {
  x: Float32Array;
  y: Float32Array;
  rows = 0;
  private capacity: number;

  constructor(
    readonly features: number,
    readonly targets: number,
    capacityHint: number,
  ) {
    // the hint (rows or lines counted in the input) is trusted only up to a few MB: a table grows
    // by doubling as real rows arrive, so memory follows the data, not a claimed size
    this.capacity = Math.max(1, Math.min(capacityHint, Math.floor(INITIAL_ELEMENTS / Math.max(1, features + targets))));
    this.x = new Float32Array(this.capacity * features);
    this.y = new Float32Array(this.capacity * targets);
  }

  /** Reserves the next row and returns its index. */
  addRow(): number {
    if (this.rows === this.capacity) {
      this.capacity *= 2;
      const x = new Float32Array(this.capacity * this.features);
      x.set(this.x);
      const y = new Float32Array(this.capacity * this.targets);
      y.set(this.y);
      this.x = x;
      this.y = y;
    }
    return this.rows++;
  }

  finish(targetsWereScalar: boolean): Table {
    const fits = this.rows === this.capacity;
    // Copy when over-allocated so the table holds no dead capacity for its lifetime.
    return {
      rows: this.rows,
      features: this.features,
      targets: this.targets,
      x: fits ? this.x : this.x.slice(0, this.rows * this.features),
      y: fits ? this.y : this.y.slice(0, this.rows * this.targets),
      targetsWereScalar,
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
 * Converts an inline dataset (`{x: number[][], y: (number | number[])[]}`) into a Table.
 * `field` is where it sits in the request, e.g. "data.train"; issue paths extend it
 * (`data.train.x[12]`, `data.train.y[5]`, `data.train.x[12][3]`).
 *
 * @example
 * ```ts
 * const table = tableFromInline({ x: [[1, 2], [3, 4]], y: [0, 1] }, "data.train");
 * // { rows: 2, features: 2, targets: 1, targetsWereScalar: true, ... }
 * ```
 */
export function tableFromInline(dataset: DatasetSpec, field: string): Table {
  const issues: IssueList = new IssueList();
  const { x, y } = dataset as { x: unknown; y: unknown };
  if (!Array.isArray(x) || x.length === 0) {
    issues.fatal({ path: `${field}.x`, message: Array.isArray(x) ? "has no rows; at least one is required" : "must be a list of rows" });
  }
  if (!Array.isArray(y)) issues.fatal({ path: `${field}.y`, message: "must be a list of targets" });
  const rows = x.length;
  if (y.length !== rows) issues.add({ path: `${field}.y`, message: `has ${y.length} targets, but x has ${rows} rows` });

  const firstRow: unknown = x[0];
  if (!Array.isArray(firstRow)) issues.fatal({ path: `${field}.x[0]`, message: "must be a list of numbers" });
  const features = firstRow.length;
  if (features === 0) issues.fatal({ path: `${field}.x[0]`, message: "is empty; each row needs at least one feature" });

  const firstTarget: unknown = y[0];
  const targetsWereScalar = !Array.isArray(firstTarget);
  const targets = Array.isArray(firstTarget) ? firstTarget.length : 1;
  if (y.length > 0 && targets === 0) issues.fatal({ path: `${field}.y[0]`, message: "is empty; each row needs at least one target" });

  // reserve only for rows that can be filled (lists of the right width): a claimed row count of
  // scalars must not make the table allocate rows x width
  let fillable = 0;
  for (let r = 0; r < rows; r++) if (Array.isArray(x[r]) && (x[r] as unknown[]).length === features) fillable++;
  const builder = new TableBuilder(features, targets, fillable);
  for (let r = 0; r < rows && !issues.full; r++) {
    const value: unknown = x[r];
    if (!Array.isArray(value) || value.length !== features) {
      // reported without reserving a row: a malformed row costs no memory
      copyInlineRow(value, `${field}.x[${r}]`, features, "values", builder.x, 0, issues);
      continue;
    }
    const row = builder.addRow();
    copyInlineRow(value, `${field}.x[${r}]`, features, "values", builder.x, row * features, issues);
  }
  for (let r = 0; r < Math.min(rows, y.length) && !issues.full; r++) {
    const target: unknown = y[r];
    const path = `${field}.y[${r}]`;
    if (targetsWereScalar) {
      if (Array.isArray(target)) {
        issues.add({ path, message: `is a list, but y[0] is a number: every target must have the same shape` });
        continue;
      }
      const value = toFiniteF32(target);
      if (Number.isNaN(value)) issues.add({ path, message: explainBadValue(target) });
      else builder.y[r] = value;
    } else {
      copyInlineRow(target, path, targets, "values", builder.y, r * targets, issues, "y[0]");
    }
  }
  issues.throwIfAny();
  return builder.finish(targetsWereScalar);
}

function copyInlineRow(
  row: unknown,
  path: string,
  expected: number,
  noun: string,
  out: Float32Array,
  offset: number,
  issues: IssueList,
  firstName = "x[0]",
): void {
  if (!Array.isArray(row)) {
    issues.add({ path, message: `is ${describeJson(row)}, expected a list of ${expected} numbers like ${firstName}` });
    return;
  }
  if (row.length !== expected) {
    issues.add({ path, message: `has ${row.length} ${noun}, expected ${expected} (as ${firstName})` });
    return;
  }
  for (let c = 0; c < expected; c++) {
    const value = toFiniteF32(row[c]);
    if (Number.isNaN(value)) {
      if (!issues.add({ path: `${path}[${c}]`, message: explainBadValue(row[c]) })) return;
    } else {
      out[offset + c] = value;
    }
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

  const targetNames = Array.isArray(options.target) ? options.target : [options.target];
  // Column index -> its slot: feature k is k, target t is -(t + 1).
  const slotOfColumn = new Int32Array(names.length);
  const isTarget = new Uint8Array(names.length);
  targetNames.forEach((name, t) => {
    const column = columnOfName.get(name);
    if (column === undefined) {
      const listed = listNames(names);
      issues.add({ path: field, line: headerLine, column: String(name), message: `target column ${describeValue(name, 60)} not found; the header has ${listed}` });
    } else if (isTarget[column]) {
      issues.add({ path: field, line: headerLine, column: String(name), message: `target column ${describeValue(name, 60)} is named twice` });
    } else {
      isTarget[column] = 1;
      slotOfColumn[column] = -(t + 1);
    }
  });
  issues.throwIfAny();
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
  return builder.finish(!Array.isArray(options.target));
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
    const { x, y } = parsed as { x?: unknown; y?: unknown };
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
  if (!builder && issues.issues.length === 0) {
    issues.add({ path: field, message: "has no rows; each line should be {\"x\": [...], \"y\": ...}" });
  }
  issues.throwIfAny();
  return builder!.finish(targetsWereScalar);
}

function copyJsonlValues(
  values: unknown[],
  name: "x" | "y",
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
    const hint = table.targets === classCount ? "; give the class index, not one value per class" : "";
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
