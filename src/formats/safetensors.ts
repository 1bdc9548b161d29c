/**
 * safetensors: read (every rule of the reference implementation) and write (F32/F16/BF16).
 *
 * Layout: an 8-byte little-endian u64 N, N bytes of UTF-8 JSON
 * `{"__metadata__"?: {string: string}, name: {dtype, shape, data_offsets: [begin, end]}, ...}`,
 * then the data section; offsets are relative to the data section, tensors are row-major and
 * little-endian, and sorted by offset they must tile the data section exactly.
 *
 * Parsing never copies the data section: the result keeps a reference to the input and
 * tensor positions, so memory stays bounded by the input size. Runtime-agnostic.
 */
import { describeValue } from "./describe.js";
import { SafetensorsError, type SafetensorsRule } from "../errors.js";
import { LITTLE_ENDIAN_HOST, decodeBf16, decodeF16, encodeBf16, encodeF16 } from "./dtype.js";

/** The reference implementation refuses headers above 100 MB (a DoS guard). */
export const MAX_HEADER_BYTES = 100_000_000;

/** Element size in bytes of every dtype the safetensors format defines. */
export const DTYPE_SIZES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
} as const;

/**
 * A safetensors dtype name.
 *
 * @example
 * ```ts
 * const dtype: SafetensorsDtype = "BF16";
 * ```
 */
export type SafetensorsDtype = keyof typeof DTYPE_SIZES;

/**
 * Where one tensor lies: `begin`/`end` are byte offsets relative to `SafetensorsFile.dataStart`.
 *
 * @example
 * ```ts
 * const info: TensorInfo = { name: "fc1.weight", dtype: "F32", shape: [10, 10], begin: 0, end: 400 };
 * ```
 */
export interface TensorInfo {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * A parsed, fully validated safetensors file. `bytes` is the input itself (not a copy).
 *
 * @example
 * ```ts
 * const file: SafetensorsFile = parseSafetensors(bytes);
 * const info = file.tensors.get("fc1.weight"); // { dtype: "F32", shape: [10, 10], begin: 0, end: 400, ... }
 * const raw = file.bytes.subarray(file.dataStart + info!.begin, file.dataStart + info!.end);
 * ```
 */
export interface SafetensorsFile {
  /** In header order. */
  tensors: Map<string, TensorInfo>;
  /** `__metadata__`, or null when absent. */
  metadata: Record<string, string> | null;
  bytes: Uint8Array;
  /** Offset in `bytes` of the data section: 8 + header length. */
  dataStart: number;
}

/**
 * Options of {@link parseSafetensors}.
 *
 * @example
 * ```ts
 * const options: ParseSafetensorsOptions = { field: "weights", maxHeaderBytes: 1 << 20 };
 * ```
 */
export interface ParseSafetensorsOptions {
  /** The request field the bytes came from, used as the error path (default "weights"). */
  field?: string;
  /** A tighter limit than the format's 100,000,000 bytes. */
  maxHeaderBytes?: number;
}

const METADATA_KEY = "__metadata__";


/**
 * Parses and validates a safetensors file, enforcing every rule of the reference reader.
 * Throws SafetensorsError naming the rule and, where there is one, the tensor.
 *
 * @example
 * ```ts
 * const file = parseSafetensors(decodeBase64(request.weights));
 * for (const [name, info] of file.tensors) console.log(name, info.dtype, info.shape);
 * ```
 */
export function parseSafetensors(bytes: Uint8Array, options: ParseSafetensorsOptions = {}): SafetensorsFile {
  const field = options.field ?? "weights";
  const fail: Fail = (rule, message, tensor) => {
    throw new SafetensorsError(rule, message, tensor, field);
  };

  if (bytes.length < 8) fail("file_too_small", `file is ${bytes.length} bytes; a safetensors file has at least the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // u64 read as two u32 so values >= 2^53 cannot lose precision on the way to the check.
  const lengthLow = view.getUint32(0, true);
  const lengthHigh = view.getUint32(4, true);
  const limit = Math.min(MAX_HEADER_BYTES, options.maxHeaderBytes ?? MAX_HEADER_BYTES);
  if (lengthHigh !== 0 || lengthLow > limit) {
    const declared = lengthHigh === 0 ? String(lengthLow) : (BigInt(lengthHigh) * 2n ** 32n + BigInt(lengthLow)).toString();
    fail("header_too_large", `header length ${declared} exceeds the limit of ${limit} bytes`);
  }
  const headerLength = lengthLow;
  const dataStart = 8 + headerLength;
  if (dataStart > bytes.length) {
    fail("header_past_eof", `header length ${headerLength} runs past the end of the ${bytes.length}-byte file`);
  }

  let headerText = "";
  try {
    // ignoreBOM keeps a BOM in the text so it fails JSON parsing, as in the reference reader.
    headerText = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, dataStart));
  } catch {
    fail("header_not_utf8", "header is not valid UTF-8");
  }
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (error) {
    fail("header_not_json", `header is not valid JSON (${(error as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail("header_not_object", `header is ${describe(header)}, expected a JSON object`);
  }
  const scan = scanKeys(headerText);
  if (scan.duplicate) fail("duplicate_key", scan.duplicate.message, scan.duplicate.tensor);

  const entries = header as Record<string, unknown>;
  let metadata: Record<string, string> | null = null;
  const tensors = new Map<string, TensorInfo>();
  // The scanner's key order, because Object.keys would move integer-like names ("10") first.
  for (const name of scan.topLevelKeys) {
    const entry = entries[name];
    if (name === METADATA_KEY) {
      metadata = readMetadata(entry, fail);
      continue;
    }
    tensors.set(name, readEntry(name, entry, fail));
  }

  const dataLength = bytes.length - dataStart;
  checkLayout([...tensors.values()], dataLength, fail);
  return { tensors, metadata, bytes, dataStart };
}

type Fail = (rule: SafetensorsRule, message: string, tensor?: string) => never;

function readMetadata(value: unknown, fail: Fail): Record<string, string> | null {
  // The reference reader deserialises Option<HashMap<String, String>>: null means absent.
  if (value === null) return null;
  if (typeof value !== "object" || Array.isArray(value)) {
    return fail("invalid_metadata", `${METADATA_KEY} must be an object of strings, got ${describe(value)}`);
  }
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (typeof record[key] !== "string") {
      fail("invalid_metadata", `${METADATA_KEY}[${JSON.stringify(key)}] must be a string, got ${describe(record[key])}`);
    }
  }
  // JSON.parse objects hold "__proto__" as an own key, so the parsed object is returned as is.
  return record as Record<string, string>;
}

function readEntry(name: string, value: unknown, fail: Fail): TensorInfo {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return fail("invalid_entry", `entry must be an object {dtype, shape, data_offsets}, got ${describe(value)}`, name);
  }
  const entry = value as Record<string, unknown>;
  // Extra fields are ignored, as by the reference reader (serde without deny_unknown_fields).
  for (const key of ["dtype", "shape", "data_offsets"]) {
    if (!Object.hasOwn(entry, key)) fail("invalid_entry", `entry has no "${key}"`, name);
  }
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== "string") return fail("invalid_entry", `dtype must be a string, got ${describe(dtype)}`, name);
  if (!Object.hasOwn(DTYPE_SIZES, dtype)) {
    fail("unknown_dtype", `dtype ${describeValue(dtype)} is not a safetensors dtype (${Object.keys(DTYPE_SIZES).join(", ")})`, name);
  }
  if (!Array.isArray(shape)) return fail("invalid_shape", `shape must be an array of non-negative integers, got ${describe(shape)}`, name);
  shape.forEach((dim: unknown, axis) => {
    if (!isNonNegativeSafeInteger(dim)) {
      fail("invalid_shape", `shape[${axis}] must be a non-negative integer, got ${describe(dim)}`, name);
    }
  });
  if (!Array.isArray(offsets) || offsets.length !== 2) {
    return fail("invalid_offsets", `data_offsets must be [begin, end], got ${describe(offsets)}`, name);
  }
  const [begin, end] = offsets as unknown[];
  if (!isNonNegativeSafeInteger(begin) || !isNonNegativeSafeInteger(end)) {
    return fail("invalid_offsets", `data_offsets must be two non-negative integers, got ${describe(offsets)}`, name);
  }
  if (end < begin) fail("invalid_offsets", `data_offsets [${begin}, ${end}] end before they begin`, name);
  return { name, dtype: dtype as SafetensorsDtype, shape: shape as number[], begin, end };
}

/** Sorted by offsets, tensors must tile [0, dataLength) exactly, each the size its shape says. */
function checkLayout(tensors: TensorInfo[], dataLength: number, fail: Fail): void {
  // Same order as the reference: sort by (begin, end), then walk.
  const sorted = tensors.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expectedBegin = 0;
  for (const info of sorted) {
    if (info.begin !== expectedBegin) {
      const problem = info.begin < expectedBegin ? "overlaps the previous tensor" : "leaves a gap after the previous tensor";
      fail("offsets_not_contiguous", `data_offsets [${info.begin}, ${info.end}] ${problem}: expected to begin at ${expectedBegin}`, info.name);
    }
    expectedBegin = info.end;
    const expectedBytes = byteLength(info, fail);
    if (info.end - info.begin !== expectedBytes) {
      fail(
        "byte_length_mismatch",
        `data_offsets [${info.begin}, ${info.end}] span ${info.end - info.begin} bytes, but ${info.dtype} ${JSON.stringify(info.shape)} needs ${expectedBytes}`,
        info.name,
      );
    }
    if (info.end > dataLength) {
      fail("trailing_bytes", `data_offsets end at ${info.end}, past the end of the ${dataLength}-byte data section`, info.name);
    }
  }
  if (expectedBegin !== dataLength) {
    fail("trailing_bytes", `tensors end at byte ${expectedBegin} of the data section, but it has ${dataLength} bytes`);
  }
}

/** numel * element size, refusing anything past 2^53 (the reference refuses past 2^64 the same way). */
function byteLength(info: TensorInfo, fail: Fail): number {
  let count = 1;
  // Fold in order, like the reference's checked_mul: an overflow before a 0 dimension still counts.
  for (const dim of info.shape) {
    count *= dim;
    if (!Number.isSafeInteger(count)) {
      fail("byte_length_mismatch", `shape ${JSON.stringify(info.shape)} has too many elements (overflow)`, info.name);
    }
  }
  const bytes = count * DTYPE_SIZES[info.dtype];
  if (!Number.isSafeInteger(bytes)) {
    fail("byte_length_mismatch", `shape ${JSON.stringify(info.shape)} of ${info.dtype} is too many bytes (overflow)`, info.name);
  }
  return bytes;
}

function isNonNegativeSafeInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function describe(value: unknown): string {
  return value === undefined ? "nothing" : describeValue(value, 60);
}

interface KeyScan {
  /** The top-level keys in file order. */
  topLevelKeys: string[];
  /** The first key that repeats within one object, at any depth. */
  duplicate: { message: string; tensor?: string | undefined } | null;
}

/**
 * Lists the header's top-level keys in order and finds the first key that repeats within one
 * JSON object, at any depth. JSON.parse silently keeps the last duplicate, which would let two
 * readers see different tensors in one file. `text` must already be valid JSON, so a light
 * scanner suffices: strings are skipped whole, and a string is a key when it follows `{` or `,`
 * inside an object.
 */
function scanKeys(text: string): KeyScan {
  const topLevelKeys: string[] = [];
  const QUOTE = 34, BACKSLASH = 92, OPEN_BRACE = 123, CLOSE_BRACE = 125, OPEN_BRACKET = 91, CLOSE_BRACKET = 93, COMMA = 44;
  // One entry per open container: the keys seen (objects) or null (arrays).
  const stack: (Set<string> | null)[] = [];
  let expectingKey = false;
  let topLevelKey: string | undefined; // the tensor (or __metadata__) being scanned
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === QUOTE) {
      let end = i + 1;
      for (;;) {
        end = text.indexOf('"', end);
        // Count the backslashes before the quote: an odd count escapes it.
        let backslashes = 0;
        for (let k = end - 1; text.charCodeAt(k) === BACKSLASH; k--) backslashes++;
        if (backslashes % 2 === 0) break;
        end++;
      }
      if (expectingKey) {
        const raw = text.slice(i, end + 1);
        // Escapes ("\u0061" is "a") must be decoded before comparing keys.
        const key = raw.includes("\\") ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        const keys = stack[stack.length - 1]!;
        if (keys.has(key)) {
          if (stack.length === 1) {
            const duplicate =
              key === METADATA_KEY
                ? { message: `${METADATA_KEY} appears more than once` }
                : { message: `tensor ${JSON.stringify(key)} appears more than once in the header`, tensor: key };
            return { topLevelKeys, duplicate };
          }
          const tensor = topLevelKey === METADATA_KEY ? undefined : topLevelKey;
          return { topLevelKeys, duplicate: { message: `key ${JSON.stringify(key)} appears more than once in ${JSON.stringify(topLevelKey)}`, tensor } };
        }
        keys.add(key);
        if (stack.length === 1) {
          topLevelKey = key;
          topLevelKeys.push(key);
        }
        expectingKey = false;
      }
      i = end;
    } else if (code === OPEN_BRACE) {
      stack.push(new Set());
      expectingKey = true;
    } else if (code === OPEN_BRACKET) {
      stack.push(null);
      expectingKey = false;
    } else if (code === CLOSE_BRACE || code === CLOSE_BRACKET) {
      stack.pop();
      expectingKey = false;
    } else if (code === COMMA) {
      expectingKey = stack[stack.length - 1] !== null;
    }
  }
  return { topLevelKeys, duplicate: null };
}

/**
 * Reads a float tensor (F32, F16, BF16 or F64) into a new Float32Array; F64 rounds to nearest
 * float32 as `tensor.float()` does. With `integers: true`, integer tensors (I64, I32, I16, I8,
 * U8; BatchNorm's num_batches_tracked, token ids) are read too, exactly up to 2^24 and rounded
 * beyond, as `tensor.float()` does. Other dtypes throw SafetensorsError("unsupported_dtype").
 * Offsets may be unaligned: the bytes are copied before being viewed.
 *
 * @example
 * ```ts
 * const weight = readTensorF32(file, "fc1.weight"); // Float32Array of 10*10 values
 * ```
 */
export function readTensorF32(file: SafetensorsFile, name: string, field = "weights", options: { integers?: boolean } = {}): Float32Array {
  const info = file.tensors.get(name);
  if (!info) {
    // A missing tensor is the caller's model/weights mismatch, named like the other tensor errors.
    throw new SafetensorsError("invalid_entry", `tensor ${JSON.stringify(name)} is not in the file`, name, field);
  }
  const raw = file.bytes.subarray(file.dataStart + info.begin, file.dataStart + info.end);
  const count = raw.length / DTYPE_SIZES[info.dtype];
  const out = new Float32Array(count);
  switch (info.dtype) {
    case "F32": {
      // Copy to an aligned buffer, then fix byte order only on a big-endian host.
      new Uint8Array(out.buffer).set(raw);
      if (!LITTLE_ENDIAN_HOST) swapBytesInPlace(new Uint8Array(out.buffer), 4);
      return out;
    }
    case "F16":
    case "BF16": {
      const halves = new Uint16Array(count);
      new Uint8Array(halves.buffer).set(raw);
      if (!LITTLE_ENDIAN_HOST) swapBytesInPlace(new Uint8Array(halves.buffer), 2);
      (info.dtype === "F16" ? decodeF16 : decodeBf16)(halves, out);
      return out;
    }
    case "F64": {
      const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      // Float32Array assignment rounds to nearest, ties to even, like PyTorch's double -> float.
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(i * 8, true);
      return out;
    }
    default:
      if (options.integers && isIntegerDtype(info.dtype)) {
        const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
        const read = INTEGER_READERS[info.dtype];
        for (let i = 0; i < count; i++) out[i] = read(view, i);
        return out;
      }
      throw new SafetensorsError(
        "unsupported_dtype",
        `dtype ${info.dtype} is not supported for training weights; use F32, F16, BF16 or F64`,
        name,
        field,
      );
  }
}

/**
 * A 16-bit float tensor (F16 or BF16) as its raw bits, without widening: a view into the file
 * when its data is 2-byte aligned on a little-endian host (no copy; it keeps the file's bytes
 * alive), else an aligned copy in host byte order. A run holding a frozen 16-bit base keeps the
 * checkpoint's bits so, instead of a float32 copy twice their size.
 *
 * @example
 * ```ts
 * const bits = readTensorHalfBits(file, "bert.embeddings.word_embeddings.weight"); // Uint16Array
 * ```
 */
export function readTensorHalfBits(file: SafetensorsFile, name: string, field = "weights"): Uint16Array {
  const info = file.tensors.get(name);
  if (!info) throw new SafetensorsError("invalid_entry", `tensor ${JSON.stringify(name)} is not in the file`, name, field);
  if (info.dtype !== "F16" && info.dtype !== "BF16") {
    throw new SafetensorsError("unsupported_dtype", `dtype ${info.dtype} is not a 16-bit float type (F16 or BF16)`, name, field);
  }
  const raw = file.bytes.subarray(file.dataStart + info.begin, file.dataStart + info.end);
  if (LITTLE_ENDIAN_HOST && raw.byteOffset % 2 === 0) return new Uint16Array(raw.buffer, raw.byteOffset, raw.length / 2);
  const halves = new Uint16Array(raw.length / 2);
  new Uint8Array(halves.buffer).set(raw);
  if (!LITTLE_ENDIAN_HOST) swapBytesInPlace(new Uint8Array(halves.buffer), 2);
  return halves;
}

/** Little-endian element readers of the integer dtypes. */
const INTEGER_READERS = {
  I64: (v: DataView, i: number) => Number(v.getBigInt64(i * 8, true)),
  I32: (v: DataView, i: number) => v.getInt32(i * 4, true),
  I16: (v: DataView, i: number) => v.getInt16(i * 2, true),
  I8: (v: DataView, i: number) => v.getInt8(i),
  U8: (v: DataView, i: number) => v.getUint8(i),
} as const;

function isIntegerDtype(dtype: SafetensorsDtype): dtype is keyof typeof INTEGER_READERS {
  return Object.hasOwn(INTEGER_READERS, dtype);
}

/**
 * One tensor to write: a row-major float32 array and its shape; `dtype: "I64"` stores it as
 * 64-bit integers (its values must be integers), and `"F16"`/`"BF16"` as that half type
 * (rounded as `.half()`/`.bfloat16()`, or given as the raw half bits in a Uint16Array), whatever
 * the file's float dtype: a run input or an adapter run's stored file keeps a frozen 16-bit base at
 * 2 bytes a value.
 *
 * @example
 * ```ts
 * const tensor: WritableTensor = { name: "fc2.bias", shape: [1], data: new Float32Array([0.5]) };
 * const frozen: WritableTensor = { name: "fc1.weight", shape: [1, 2], data: new Float32Array([0.5, -1]), dtype: "F16" };
 * ```
 */
export interface WritableTensor {
  name: string;
  shape: number[];
  /** The values; a Uint16Array is the tensor's raw half bits, written as they are (dtype F16 or BF16). */
  data: Float32Array | Uint16Array;
  dtype?: "I64" | "F16" | "BF16";
}

/**
 * Options of {@link writeSafetensors}.
 *
 * @example
 * ```ts
 * const options: WriteSafetensorsOptions = { dtype: "bfloat16", metadata: { format: "pt" } };
 * ```
 */
export interface WriteSafetensorsOptions {
  /** Stored dtype (default float32); float16/bfloat16 round like PyTorch's `.half()`/`.bfloat16()`. */
  dtype?: "float32" | "float16" | "bfloat16";
  metadata?: Record<string, string>;
  /**
   * Where the file is written: called with its length, returns a buffer of that length (a
   * view of the kernel core's memory, say), or null for a new one. The tensors' data must not
   * overlap it.
   */
  into?: (bytes: number) => Uint8Array | null;
}

const STORED_DTYPE = { float32: "F32", float16: "F16", bfloat16: "BF16" } as const;

/**
 * Serialises tensors as safetensors, in the given order, with `__metadata__` first when given and
 * the header padded with spaces to a multiple of 8 bytes (as the reference writer does), so the
 * result loads with `safetensors.torch.load_file`. Throws RangeError on a malformed tensor list
 * (a programming error, not a user one).
 *
 * @example
 * ```ts
 * const bytes = writeSafetensors(
 *   [{ name: "fc1.weight", shape: [1, 2], data: new Float32Array([0.5, -1]) }],
 *   { dtype: "float16", metadata: { format: "pt" } },
 * );
 * ```
 */
export function writeSafetensors(tensors: WritableTensor[], options: WriteSafetensorsOptions = {}): Uint8Array {
  const floatDtype = STORED_DTYPE[options.dtype ?? "float32"];
  const names = new Set<string>();
  // Built as text so key order is exactly ours (object literals would move integer-like names first).
  const headerParts: string[] = [];
  if (options.metadata) {
    for (const [key, value] of Object.entries(options.metadata)) {
      if (typeof value !== "string") throw new RangeError(`metadata ${JSON.stringify(key)} must be a string`);
    }
    headerParts.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(options.metadata)}`);
  }
  let offset = 0;
  for (const tensor of tensors) {
    if (tensor.name === METADATA_KEY) throw new RangeError(`a tensor cannot be named ${METADATA_KEY}`);
    if (names.has(tensor.name)) throw new RangeError(`tensor ${JSON.stringify(tensor.name)} is listed twice`);
    names.add(tensor.name);
    let count = 1;
    for (const dim of tensor.shape) {
      if (!isNonNegativeSafeInteger(dim)) throw new RangeError(`tensor ${JSON.stringify(tensor.name)} has an invalid shape ${JSON.stringify(tensor.shape)}`);
      count *= dim;
    }
    if (count !== tensor.data.length) {
      throw new RangeError(`tensor ${JSON.stringify(tensor.name)} has ${tensor.data.length} values, shape ${JSON.stringify(tensor.shape)} needs ${count}`);
    }
    const dtype = tensor.dtype ?? floatDtype;
    if (tensor.data instanceof Uint16Array && dtype !== "F16" && dtype !== "BF16") {
      throw new RangeError(`tensor ${JSON.stringify(tensor.name)} is given as half bits (a Uint16Array) but stored as ${dtype}`);
    }
    if (dtype === "I64" && (tensor.data as Float32Array).some((v) => !Number.isInteger(v))) {
      throw new RangeError(`tensor ${JSON.stringify(tensor.name)} is stored as I64 but holds a value that is not an integer`);
    }
    const end = offset + count * DTYPE_SIZES[dtype];
    headerParts.push(
      `${JSON.stringify(tensor.name)}:{"dtype":"${dtype}","shape":${JSON.stringify(tensor.shape)},"data_offsets":[${offset},${end}]}`,
    );
    offset = end;
  }
  const headerJson = new TextEncoder().encode(`{${headerParts.join(",")}}`);
  const paddedLength = Math.ceil(headerJson.length / 8) * 8;
  const dataStart = 8 + paddedLength;
  const out = options.into?.(dataStart + offset) ?? new Uint8Array(dataStart + offset);
  if (out.byteLength !== dataStart + offset) throw new RangeError(`writeSafetensors: the buffer given has ${out.byteLength} bytes, the file ${dataStart + offset}`);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(0, paddedLength, true);
  view.setUint32(4, 0, true); // the high word (headers are far below 4 GiB), written: `into` may give used memory
  out.set(headerJson, 8);
  out.fill(0x20, 8 + headerJson.length, dataStart);

  let position = dataStart;
  for (const tensor of tensors) {
    const encoded = encodeTensor(tensor.data, tensor.dtype ?? floatDtype);
    out.set(encoded, position);
    position += encoded.length;
  }
  return out;
}

function encodeTensor(data: Float32Array | Uint16Array, dtype: "F32" | "F16" | "BF16" | "I64"): Uint8Array {
  let bytes: Uint8Array;
  if (data instanceof Uint16Array) {
    // raw half bits: a view, copied once into the file (byte-swapped on a big-endian host)
    bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (LITTLE_ENDIAN_HOST) return bytes;
    bytes = bytes.slice();
    swapBytesInPlace(bytes, 2);
    return bytes;
  }
  if (dtype === "I64") {
    bytes = new Uint8Array(data.length * 8);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < data.length; i++) view.setBigInt64(i * 8, BigInt(data[i]!), true);
    return bytes;
  }
  if (dtype === "F32") {
    bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (LITTLE_ENDIAN_HOST) return bytes;
    bytes = bytes.slice();
    swapBytesInPlace(bytes, 4);
    return bytes;
  }
  const halves = new Uint16Array(data.length);
  (dtype === "F16" ? encodeF16 : encodeBf16)(data, halves);
  bytes = new Uint8Array(halves.buffer);
  if (!LITTLE_ENDIAN_HOST) swapBytesInPlace(bytes, 2);
  return bytes;
}

function swapBytesInPlace(bytes: Uint8Array, width: 2 | 4): void {
  for (let i = 0; i < bytes.length; i += width) {
    if (width === 2) {
      const a = bytes[i]!;
      bytes[i] = bytes[i + 1]!;
      bytes[i + 1] = a;
    } else {
      const a = bytes[i]!, b = bytes[i + 1]!;
      bytes[i] = bytes[i + 3]!;
      bytes[i + 1] = bytes[i + 2]!;
      bytes[i + 2] = b;
      bytes[i + 3] = a;
    }
  }
}
