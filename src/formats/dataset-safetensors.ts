/**
 * Binary datasets: a safetensors file whose tensors are the columns of a Table.
 *
 *   x               F32 [N, ...]          feature rows (each row flattened in C order, as inline rows)
 *   input_ids       I64 or I32 [N, T]     token rows, instead of x
 *   attention_mask  I64, I32, U8 or BOOL [N, T]   optional, 1 = token, 0 = padding
 *   token_type_ids  I64 or I32 [N, T]     optional
 *   y               F32, I64 or I32: [N] (one target per row) or [N, K]; a causal LM's token rows take none
 *
 * The header is validated by the safetensors reader (every rule of the reference implementation);
 * then every value is checked once: floats finite, ids integers in [0, 2^24), masks 0 or 1. That
 * check is the only pass over the numbers: an aligned little-endian F32 tensor becomes the table
 * as a view of the input bytes, with no copy; integer tensors are converted to float32 (what the
 * engine reads) in the same loop that checks them. Issues point at the value the way inline rows
 * do (`data.train.x[12][3]`, `data.train.input_ids[4][7]`), up to MAX_ISSUES.
 *
 * Runtime-agnostic: typed arrays only.
 */
import { IssueList, NO_TOKEN_MESSAGE, TOKEN_ID_LIMIT, type Table } from "./dataset.js";
import { DTYPE_SIZES, parseSafetensors, type SafetensorsFile, type TensorInfo } from "./safetensors.js";
import { LITTLE_ENDIAN_HOST } from "./dtype.js";

export { looksLikeSafetensors } from "./safetensors-sniff.js";

/** The tensors a dataset file may hold. */
const DATASET_TENSORS = ["x", "input_ids", "attention_mask", "token_type_ids", "y"] as const;

/** A dataset's header names a handful of tensors: 1 MiB is far more than one needs. */
const MAX_DATASET_HEADER_BYTES = 1 << 20;


/**
 * Options of {@link tableFromSafetensors}.
 *
 * @example
 * ```ts
 * const options: SafetensorsTableOptions = { headerField: "data.train.safetensors" };
 * ```
 */
export interface SafetensorsTableOptions {
  /** Where the file itself sits, for issues about the file and its tensors (default: the field). */
  headerField?: string;
}

/**
 * Reads a safetensors dataset into a Table (see the file's comment for the tensors it holds).
 * `field` is where the dataset sits in the request ("data.train"). Throws SafetensorsError (422)
 * for a malformed file and DatasetError (422) for tensors or values that are not a dataset.
 *
 * @example
 * ```ts
 * const bytes = writeSafetensors([
 *   { name: "x", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
 *   { name: "y", shape: [2], data: new Float32Array([0, 1]), dtype: "I64" },
 * ]);
 * const table = tableFromSafetensors(bytes, "data.train");
 * // { rows: 2, features: 2, targets: 1, targetsWereScalar: true, x: Float32Array [1, 2, 3, 4], ... }
 * ```
 */
export function tableFromSafetensors(bytes: Uint8Array, field: string, options: SafetensorsTableOptions = {}): Table {
  const headerField = options.headerField ?? field;
  const file = parseSafetensors(bytes, { field: headerField, maxHeaderBytes: MAX_DATASET_HEADER_BYTES });
  const issues = new IssueList();
  const at = (name: string) => `${headerField}[${JSON.stringify(name)}]`;
  for (const name of file.tensors.keys()) {
    if (!(DATASET_TENSORS as readonly string[]).includes(name)) {
      issues.add({ path: at(name), message: `is not a dataset tensor: a dataset holds x (F32 [N, ...]) or input_ids (I64/I32 [N, T]) with optional attention_mask and token_type_ids, and y` });
    }
  }
  const x = file.tensors.get("x");
  const ids = file.tensors.get("input_ids");
  if (x && ids) issues.add({ path: at("input_ids"), message: "the file holds both x and input_ids: a dataset is feature rows (x) or token rows (input_ids)" });
  if (!x && !ids) issues.add({ path: headerField, message: `has no x (F32 [N, features]) and no input_ids (I64/I32 [N, T]); its tensors are ${[...file.tensors.keys()].map((n) => JSON.stringify(n)).join(", ") || "none"}` });
  issues.throwIfAny();

  const rowsTensor = (x ?? ids)!;
  const rowsName = x ? "x" : "input_ids";
  const shapeOk = (info: TensorInfo, dtypes: readonly string[], what: string, rank: number | "2+"): boolean => {
    const rankOk = rank === "2+" ? info.shape.length >= 2 : info.shape.length === rank;
    if (!dtypes.includes(info.dtype)) issues.add({ path: at(info.name), message: `has dtype ${info.dtype}; ${info.name} is ${dtypes.join(" or ")} (${what})` });
    else if (!rankOk) issues.add({ path: at(info.name), message: `has shape [${info.shape.join(", ")}]; ${info.name} is ${what}` });
    else if (info.shape.some((d) => d === 0)) issues.add({ path: at(info.name), message: `has shape [${info.shape.join(", ")}]: every dimension needs at least one element` });
    else return true;
    return false;
  };
  if (x) shapeOk(x, ["F32"], "[N, features] or [N, ...] float32, one row per sample", "2+");
  else shapeOk(ids!, ["I64", "I32"], "[N, T] integer token ids", 2);
  issues.throwIfAny();
  const rows = rowsTensor.shape[0]!;
  const features = rowsTensor.shape.slice(1).reduce((a, b) => a * b, 1);
  const sameShape = (info: TensorInfo | undefined, dtypes: readonly string[]): TensorInfo | undefined => {
    if (!info) return undefined;
    if (x) {
      issues.add({ path: at(info.name), message: `belongs to token rows (input_ids); feature rows (x) take none` });
      return undefined;
    }
    if (!shapeOk(info, dtypes, `[N, T] as input_ids [${ids!.shape.join(", ")}]`, 2)) return undefined;
    if (info.shape[0] !== rows || info.shape[1] !== features) {
      issues.add({ path: at(info.name), message: `has shape [${info.shape.join(", ")}], but input_ids has [${ids!.shape.join(", ")}]` });
      return undefined;
    }
    return info;
  };
  const mask = sameShape(file.tensors.get("attention_mask"), ["I64", "I32", "U8", "BOOL"]);
  const types = sameShape(file.tensors.get("token_type_ids"), ["I64", "I32"]);
  let y = file.tensors.get("y");
  if (y) {
    if (!shapeOk(y, ["F32", "I64", "I32"], "[N] (one target per row) or [N, K]", y.shape.length === 2 ? 2 : 1)) y = undefined;
    else if (y.shape[0] !== rows) {
      issues.add({ path: at("y"), message: `has ${y.shape[0]} rows, but ${rowsName} has ${rows}` });
      y = undefined;
    }
  } else if (x) {
    issues.add({ path: at("y"), message: "is missing: feature rows need targets, y (F32, I64 or I32, [N] or [N, K])" });
  }
  issues.throwIfAny();

  const table: Table = {
    rows,
    features,
    targets: y ? (y.shape[1] ?? 1) : 0,
    x: x ? finiteFloats(file, x, `${field}.x`, issues) : tokenIds(file, ids!, `${field}.input_ids`, issues),
    y: !y ? new Float32Array(0) : y.dtype === "F32" ? finiteFloats(file, y, `${field}.y`, issues) : integerTargets(file, y, `${field}.y`, issues),
    targetsWereScalar: y ? y.shape.length === 1 : false,
  };
  if (ids) {
    table.ids = true;
    if (mask) table.mask = attentionMask(file, mask, `${field}.attention_mask`, issues);
    if (types) table.tokenTypes = typeIds(file, types, `${field}.token_type_ids`, issues);
  }
  issues.throwIfAny();
  return table;
}

// ---------------------------------------------------------------- reading values

/** The tensor's bytes. */
function rawBytes(file: SafetensorsFile, info: TensorInfo): Uint8Array {
  return file.bytes.subarray(file.dataStart + info.begin, file.dataStart + info.end);
}

/** `[12][3]` for flat element 39 of a [N, 4] tensor (every index of its shape). */
function indexPath(flat: number, shape: readonly number[]): string {
  let out = "";
  for (let d = shape.length - 1; d >= 0; d--) {
    const size = shape[d]!;
    out = `[${flat % size}]${out}`;
    flat = Math.floor(flat / size);
  }
  return out;
}

/**
 * An F32 tensor with every value checked finite: a view of the input when it is aligned (and the
 * host little-endian), else one copy. The check is the only pass over the values.
 */
function finiteFloats(file: SafetensorsFile, info: TensorInfo, path: string, issues: IssueList): Float32Array {
  const raw = rawBytes(file, info);
  const count = raw.length / 4;
  let values: Float32Array;
  if (LITTLE_ENDIAN_HOST && raw.byteOffset % 4 === 0) values = new Float32Array(raw.buffer, raw.byteOffset, count);
  else {
    values = new Float32Array(count);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let i = 0; i < count; i++) values[i] = view.getFloat32(i * 4, true);
  }
  if (allFinite(values)) return values;
  for (let i = 0; i < count; i++) {
    const v = values[i]!;
    if (v - v === 0) continue; // finite (NaN - NaN and Inf - Inf are NaN)
    if (!issues.add({ path: `${path}${indexPath(i, info.shape)}`, message: `is ${Number.isNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity"}: values must be finite` })) break;
  }
  return values;
}

/**
 * Whether every value is finite, without a branch per value: v * 0 is ±0 for a finite v and NaN
 * for NaN or ±Infinity, and a sum that met a NaN stays NaN. Four sums let the loop run about
 * 2.5x faster than a compare per value; the issues are found by a second scan only when it fails.
 */
function allFinite(values: Float32Array): boolean {
  let a = 0, b = 0, c = 0, d = 0;
  const n = values.length;
  const whole = n - (n % 4);
  let i = 0;
  for (; i < whole; i += 4) {
    a += values[i]! * 0;
    b += values[i + 1]! * 0;
    c += values[i + 2]! * 0;
    d += values[i + 3]! * 0;
  }
  for (; i < n; i++) a += values[i]! * 0;
  return a + b + c + d === 0;
}

/**
 * Element i of an integer tensor as a number: I64 from its two 32-bit halves (exact up to 2^53,
 * far beyond any value these checks accept), I32, U8 and BOOL as stored.
 */
function integerReader(file: SafetensorsFile, info: TensorInfo): (i: number) => number {
  const raw = rawBytes(file, info);
  if (!LITTLE_ENDIAN_HOST) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    if (info.dtype === "I64") return (i) => view.getInt32(i * 8 + 4, true) * 4294967296 + view.getUint32(i * 8, true);
    if (info.dtype === "I32") return (i) => view.getInt32(i * 4, true);
    return (i) => view.getUint8(i);
  }
  if (info.dtype === "U8" || info.dtype === "BOOL") return (i) => raw[i]!;
  const aligned = raw.byteOffset % 4 === 0 ? raw : raw.slice(); // slice(): a new buffer, offset 0
  const words = new Int32Array(aligned.buffer, aligned.byteOffset, raw.length / 4);
  if (info.dtype === "I64") return (i) => words[2 * i + 1]! * 4294967296 + (words[2 * i]! >>> 0);
  return (i) => words[i]!;
}

/** How many elements a tensor holds. */
function elements(info: TensorInfo): number {
  return (info.end - info.begin) / DTYPE_SIZES[info.dtype];
}

/** Token ids as float32, each checked to be in [0, 2^24) (float32 holds every such integer exactly). */
function tokenIds(file: SafetensorsFile, info: TensorInfo, path: string, issues: IssueList): Float32Array {
  const read = integerReader(file, info);
  const out = new Float32Array(elements(info));
  for (let i = 0; i < out.length; i++) {
    const v = read(i);
    if (v >= 0 && v < TOKEN_ID_LIMIT) out[i] = v;
    else if (!issues.add({ path: `${path}${indexPath(i, info.shape)}`, message: v < 0 ? `is ${v}; token ids are >= 0` : `is ${v}; token ids must be below 2^24 = 16777216 (they are stored as float32, exact only up to there)` })) break;
  }
  return out;
}

/** token_type_ids as float32: integers >= 0 (below type_vocab_size, checked once the model is known). */
function typeIds(file: SafetensorsFile, info: TensorInfo, path: string, issues: IssueList): Float32Array {
  const read = integerReader(file, info);
  const out = new Float32Array(elements(info));
  for (let i = 0; i < out.length; i++) {
    const v = read(i);
    if (v >= 0 && v < TOKEN_ID_LIMIT) out[i] = v;
    else if (!issues.add({ path: `${path}${indexPath(i, info.shape)}`, message: `is ${v}; token_type_ids holds integers >= 0 (0 = the first text, 1 = the second)` })) break;
  }
  return out;
}

/** An attention mask as float32: 0 or 1, and at least one 1 per row. */
function attentionMask(file: SafetensorsFile, info: TensorInfo, path: string, issues: IssueList): Float32Array {
  const read = integerReader(file, info);
  const [rows, T] = info.shape as [number, number];
  const out = new Float32Array(rows * T);
  for (let r = 0; r < rows && !issues.full; r++) {
    let tokens = 0;
    let bad = false;
    for (let t = 0; t < T; t++) {
      const v = read(r * T + t);
      if (v === 0 || v === 1) {
        out[r * T + t] = v;
        tokens += v;
      } else if (!issues.add({ path: `${path}[${r}][${t}]`, message: `is ${v}; attention_mask holds 1 (a token) or 0 (padding)` })) break;
      else bad = true; // reported: no second issue for the row
    }
    if (tokens === 0 && !bad) issues.add({ path: `${path}[${r}]`, message: NO_TOKEN_MESSAGE });
  }
  return out;
}

/** Integer targets (class indices, -100 ignored, 0/1 labels) as float32: exact below 2^24 in magnitude. */
function integerTargets(file: SafetensorsFile, info: TensorInfo, path: string, issues: IssueList): Float32Array {
  const read = integerReader(file, info);
  const out = new Float32Array(elements(info));
  for (let i = 0; i < out.length; i++) {
    const v = read(i);
    if (Math.abs(v) < TOKEN_ID_LIMIT) out[i] = v;
    else if (!issues.add({ path: `${path}${indexPath(i, info.shape)}`, message: `is ${v}; integer targets must be below 2^24 = 16777216 in magnitude (they are stored as float32, exact only up to there)` })) break;
  }
  return out;
}
