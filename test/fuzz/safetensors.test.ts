/**
 * Property tests and fuzzing of the safetensors reader and writer.
 *
 * 1. Arbitrary bytes, and byte-level damage to valid files (length field, truncation, flipped
 *    and inserted bytes), only ever raise SafetensorsError, quickly, asking for no more memory
 *    than a small multiple of the input.
 * 2. Structured mutations of valid files (dtypes, shapes, offsets, duplicate keys at any depth,
 *    metadata, extra and missing fields, trailing or missing data) are accepted exactly when an
 *    independent oracle of the format's rules accepts them; rejections are SafetensorsError.
 * 3. writeSafetensors -> parseSafetensors -> readTensorF32 is bit-exact for F32 and rounds to
 *    nearest-even for F16/BF16 (checked against an independent rounding), for arbitrary names,
 *    shapes and values (NaN, infinities, -0, subnormals).
 */
import { afterAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { DTYPE_SIZES, MAX_HEADER_BYTES, parseSafetensors, readTensorF32, writeSafetensors, type SafetensorsFile } from "../../src/formats/safetensors.js";
import { SafetensorsError } from "../../src/errors.js";
import { anyString, checkProperty, meterAllocations, nastyNumber, printReports } from "./fuzz.js";

afterAll(() => printReports("safetensors"));

const encoder = new TextEncoder();
const DTYPES = Object.keys(DTYPE_SIZES) as (keyof typeof DTYPE_SIZES)[];
const FLOAT_DTYPES = new Set(["F32", "F16", "BF16", "F64"]);

// ---------------------------------------------------------------- building files

/** Raw JSON text spliced into a header as is (used to write duplicate keys, which objects cannot hold). */
class Raw {
  constructor(readonly text: string) {}
}
type HeaderValue = unknown;
/** A header as ordered pairs, so that duplicates and key order are under the test's control. */
type Pairs = [string, HeaderValue][];

function jsonText(value: HeaderValue): string {
  return value instanceof Raw ? value.text : JSON.stringify(value);
}

function headerText(pairs: Pairs): string {
  return `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${jsonText(v)}`).join(",")}}`;
}

/** 8-byte length (declared, or the header's), the header padded with `padding` spaces, the data. */
function assemble(header: string | Uint8Array, data: Uint8Array, padding = 0, declared?: bigint): Uint8Array {
  const headerBytes = typeof header === "string" ? encoder.encode(header + " ".repeat(padding)) : header;
  const out = new Uint8Array(8 + headerBytes.length + data.length);
  new DataView(out.buffer).setBigUint64(0, declared ?? BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  out.set(data, 8 + headerBytes.length);
  return out;
}

/** A valid file as the structured generator sees it. */
interface FileModel {
  pairs: Pairs;
  data: Uint8Array;
  padding: number;
}

const tensorName = fc.oneof(
  { weight: 3, arbitrary: fc.stringMatching(/^[a-z][a-z0-9_]{0,6}(\.[a-z0-9_]{1,6}){0,2}$/) },
  { weight: 1, arbitrary: anyString },
  { weight: 1, arbitrary: fc.constantFrom("0.weight", "10", "2", "__proto__", "constructor", "toString", "", " ", "\\", '"', "a\u0000b") },
).filter((name) => name !== "__metadata__");

const shapeArb = fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 });

/** Valid files: tensors tiling the data section in one order, listed in the header in another. */
const validFile: fc.Arbitrary<FileModel> = fc
  .record({
    tensors: fc.uniqueArray(fc.record({ name: tensorName, dtype: fc.constantFrom(...DTYPES), shape: shapeArb }), {
      maxLength: 5,
      selector: (t) => t.name,
    }),
    metadata: fc.option(fc.dictionary(anyString, anyString, { maxKeys: 3 }), { nil: undefined }),
    metadataAt: fc.nat(),
    order: fc.array(fc.nat(), { minLength: 5, maxLength: 5 }),
    seedByte: fc.integer({ min: 0, max: 255 }),
    padding: fc.integer({ min: 0, max: 7 }),
  })
  .map(({ tensors, metadata, metadataAt, order, seedByte, padding }) => {
    let offset = 0;
    const placed = tensors.map((t) => {
      const bytes = t.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZES[t.dtype];
      const entry = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
      offset += bytes;
      return [t.name, entry] as [string, HeaderValue];
    });
    // Header order: a permutation of the data order (offsets need not follow the header).
    const keyed = placed.map((p, i) => ({ p, k: order[i % order.length]! * 8 + i }));
    keyed.sort((a, b) => a.k - b.k);
    const pairs: Pairs = keyed.map((x) => x.p);
    if (metadata !== undefined) pairs.splice(metadataAt % (pairs.length + 1), 0, ["__metadata__", metadata]);
    const data = new Uint8Array(offset);
    for (let i = 0; i < data.length; i++) data[i] = (seedByte + i * 31) & 255;
    return { pairs, data, padding };
  });

// ---------------------------------------------------------------- the oracle

const isNonNegativeSafeInteger = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Raw);

/**
 * The format's rules (shared/REFERENCE.md "safetensors"), written independently of the reader:
 * would a file with these header pairs and a data section of `dataLength` bytes be accepted?
 * Integers are limited to 2^53 (JSON numbers in JavaScript), where the reference uses u64.
 */
function oracleAccepts(pairs: Pairs, dataLength: number, duplicateInside: boolean): boolean {
  if (duplicateInside) return false;
  const keys = new Set<string>();
  const spans: [number, number][] = [];
  for (const [key, value] of pairs) {
    if (keys.has(key)) return false;
    keys.add(key);
    if (key === "__metadata__") {
      if (value === null) continue;
      if (!isPlainObject(value) || !Object.values(value).every((s) => typeof s === "string")) return false;
      continue;
    }
    if (!isPlainObject(value)) return false;
    if (!["dtype", "shape", "data_offsets"].every((k) => Object.hasOwn(value, k))) return false;
    const { dtype, shape, data_offsets: offsets } = value;
    if (typeof dtype !== "string" || !Object.hasOwn(DTYPE_SIZES, dtype)) return false;
    if (!Array.isArray(shape) || !shape.every(isNonNegativeSafeInteger)) return false;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeSafeInteger)) return false;
    const [begin, end] = offsets as [number, number];
    if (end < begin) return false;
    // checked multiplication, in order: a partial product past 2^53 is an overflow even if a 0 follows
    let count = 1n;
    for (const dim of shape as number[]) {
      count *= BigInt(dim);
      if (count > BigInt(Number.MAX_SAFE_INTEGER)) return false;
    }
    const bytes = count * BigInt(DTYPE_SIZES[dtype as keyof typeof DTYPE_SIZES]);
    if (bytes > BigInt(Number.MAX_SAFE_INTEGER) || bytes !== BigInt(end - begin)) return false;
    spans.push([begin, end]);
  }
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let expected = 0;
  for (const [begin, end] of spans) {
    if (begin !== expected) return false;
    expected = end;
  }
  return expected === dataLength;
}

// ---------------------------------------------------------------- checking one parse

/**
 * Parses `bytes` under the allocation meter and a time bound. A rejection must be a
 * SafetensorsError naming `weights` or `weights["<tensor>"]`; an accepted file must be
 * consistent (no copy of the input, tensors inside it, readTensorF32 sized by the shape).
 */
function checkParse(bytes: Uint8Array): SafetensorsFile | SafetensorsError {
  const { report, value, error } = meterAllocations(() => parseSafetensors(bytes));
  // Parsing never copies the data section: the only buffers are small (the header length view).
  expect(report.totalBytes, `parse asked for ${report.largestBytes} bytes (${report.largestKind}) at once`).toBeLessThanOrEqual(64 + bytes.length);
  if (error !== undefined) {
    if (!(error instanceof SafetensorsError)) throw new Error(`parseSafetensors threw ${String(error)}`, { cause: error });
    expect(error.status).toBe(422);
    const path = error.errors[0]!.path;
    expect(path === "weights" || path.startsWith("weights[")).toBe(true);
    return error;
  }
  const file = value!;
  expect(file.bytes).toBe(bytes);
  let total = 0;
  for (const info of file.tensors.values()) {
    expect(info.begin).toBeGreaterThanOrEqual(0);
    expect(file.dataStart + info.end).toBeLessThanOrEqual(bytes.length);
    total += info.end - info.begin;
    const read = meterAllocations(() => readTensorF32(file, info.name));
    const numel = info.shape.reduce((a, b) => a * b, 1);
    // The tensor's own bytes bound what reading it may ask for: at most 4 output bytes + 1 input copy per input byte.
    expect(read.report.totalBytes).toBeLessThanOrEqual(5 * (info.end - info.begin) + 64);
    if (FLOAT_DTYPES.has(info.dtype)) {
      expect(read.error).toBeUndefined();
      expect(read.value!.length).toBe(numel);
    } else {
      expect(read.error).toBeInstanceOf(SafetensorsError);
      expect((read.error as SafetensorsError).rule).toBe("unsupported_dtype");
    }
  }
  expect(total).toBe(bytes.length - file.dataStart);
  return file;
}

// ---------------------------------------------------------------- structured mutations

const anyJson = fc.jsonValue({ maxDepth: 3 });
const dtypeValue = fc.oneof(fc.constantFrom(...DTYPES), fc.constantFrom("f32", "F32 ", "Q4", "F128", "", "__proto__", "toString", "I4"), anyString, anyJson);
const dim = fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 0, max: 6 }) }, { weight: 1, arbitrary: nastyNumber });
const shapeValue = fc.oneof(
  { weight: 4, arbitrary: fc.array(dim, { maxLength: 5 }) },
  { weight: 1, arbitrary: fc.constantFrom([2 ** 31, 2 ** 31], [2 ** 40, 2 ** 40, 0], [2 ** 26, 2 ** 26, 2 ** 26], [0, 2 ** 53], [2 ** 53, 0], [2 ** 53 - 1], new Array(1000).fill(1), [-0], [null]) },
  { weight: 1, arbitrary: anyJson },
);
const offsetValue = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.nat({ max: 200 }), fc.nat({ max: 200 })) },
  { weight: 2, arbitrary: fc.array(nastyNumber, { maxLength: 3 }) },
  { weight: 1, arbitrary: fc.constantFrom([0, 2 ** 53], [2 ** 53, 2 ** 53 + 4], [0, 2 ** 64], [1, 0], [0]) },
  { weight: 1, arbitrary: anyJson },
);

type Mutation =
  | { kind: "dtype"; at: number; value: unknown }
  | { kind: "shape"; at: number; value: unknown }
  | { kind: "offsets"; at: number; value: unknown }
  | { kind: "shift"; at: number; delta: number; which: 0 | 1 }
  | { kind: "duplicateTopLevel"; at: number; alter: boolean }
  | { kind: "duplicateInside"; at: number; key: string }
  | { kind: "metadata"; value: unknown }
  | { kind: "extraField"; at: number; key: string; value: unknown }
  | { kind: "removeField"; at: number; key: string }
  | { kind: "replaceEntry"; at: number; value: unknown }
  | { kind: "addTensor"; name: string; value: unknown }
  | { kind: "trailing"; bytes: Uint8Array }
  | { kind: "dropData"; count: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("dtype" as const), at: fc.nat(), value: dtypeValue }),
  fc.record({ kind: fc.constant("shape" as const), at: fc.nat(), value: shapeValue }),
  fc.record({ kind: fc.constant("offsets" as const), at: fc.nat(), value: offsetValue }),
  fc.record({ kind: fc.constant("shift" as const), at: fc.nat(), delta: fc.integer({ min: -9, max: 9 }), which: fc.constantFrom(0 as const, 1 as const) }),
  fc.record({ kind: fc.constant("duplicateTopLevel" as const), at: fc.nat(), alter: fc.boolean() }),
  fc.record({ kind: fc.constant("duplicateInside" as const), at: fc.nat(), key: fc.constantFrom("dtype", "shape", "data_offsets", "extra") }),
  fc.record({
    kind: fc.constant("metadata" as const),
    value: fc.oneof(fc.dictionary(anyString, anyString, { maxKeys: 3 }), fc.dictionary(anyString, anyJson, { maxKeys: 3 }), anyJson, fc.constant(null)),
  }),
  fc.record({ kind: fc.constant("extraField" as const), at: fc.nat(), key: fc.oneof(anyString, fc.constantFrom("__proto__", "constructor", "offsets")), value: anyJson }),
  fc.record({ kind: fc.constant("removeField" as const), at: fc.nat(), key: fc.constantFrom("dtype", "shape", "data_offsets") }),
  fc.record({ kind: fc.constant("replaceEntry" as const), at: fc.nat(), value: anyJson }),
  fc.record({
    kind: fc.constant("addTensor" as const),
    name: tensorName,
    value: fc.oneof(fc.record({ dtype: dtypeValue, shape: shapeValue, data_offsets: offsetValue }), anyJson),
  }),
  fc.record({ kind: fc.constant("trailing" as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant("dropData" as const), count: fc.integer({ min: 1, max: 16 }) }),
);

/** Applies mutations to a copy of the file model; returns the header pairs, data and whether a nested duplicate was written. */
function mutate(file: FileModel, mutations: Mutation[]): { pairs: Pairs; data: Uint8Array; duplicateInside: boolean } {
  // JSON clones: own "__proto__" keys stay data properties (structuredClone would not promise that)
  const clone = (v: HeaderValue): HeaderValue => (v instanceof Raw ? v : v === undefined ? v : JSON.parse(JSON.stringify(v)));
  const pairs: Pairs = file.pairs.map(([k, v]) => [k, clone(v)]);
  let data = file.data;
  let duplicateInside = false;
  const tensorIndexes = () => pairs.flatMap(([k, v], i) => (k !== "__metadata__" && isPlainObject(v) ? [i] : []));
  const pick = (at: number) => {
    const indexes = tensorIndexes();
    return indexes.length === 0 ? -1 : indexes[at % indexes.length]!;
  };
  const entry = (i: number) => pairs[i]![1] as Record<string, unknown>;
  for (const m of mutations) {
    switch (m.kind) {
      case "dtype":
      case "shape":
      case "offsets": {
        const i = pick(m.at);
        if (i >= 0) entry(i)[m.kind === "offsets" ? "data_offsets" : m.kind] = m.value;
        break;
      }
      case "shift": {
        const i = pick(m.at);
        const offsets = i >= 0 ? entry(i).data_offsets : undefined;
        if (Array.isArray(offsets) && typeof offsets[m.which] === "number") offsets[m.which] = Math.max(0, offsets[m.which] + m.delta);
        break;
      }
      case "duplicateTopLevel": {
        if (pairs.length === 0) break;
        const [k, v] = pairs[m.at % pairs.length]!;
        pairs.push([k, m.alter ? { dtype: "F32", shape: [0], data_offsets: [0, 0] } : clone(v)]);
        break;
      }
      case "duplicateInside": {
        const i = pick(m.at);
        if (i < 0) break;
        const value = entry(i);
        const body = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
        body.push(`${JSON.stringify(m.key)}:${JSON.stringify(value[m.key] ?? 0)}`);
        if (!Object.hasOwn(value, m.key)) body.push(`${JSON.stringify(m.key)}:1`);
        pairs[i] = [pairs[i]![0], new Raw(`{${body.join(",")}}`)];
        duplicateInside = true;
        break;
      }
      case "metadata": {
        const at = pairs.findIndex(([k]) => k === "__metadata__");
        if (at >= 0) pairs[at] = ["__metadata__", m.value];
        else pairs.unshift(["__metadata__", m.value]);
        break;
      }
      case "extraField": {
        const i = pick(m.at);
        // Object literal keys would not stay own data properties for "__proto__": define it.
        if (i >= 0 && !Object.hasOwn(entry(i), m.key)) Object.defineProperty(entry(i), m.key, { value: m.value, enumerable: true, writable: true, configurable: true });
        break;
      }
      case "removeField": {
        const i = pick(m.at);
        if (i >= 0) delete entry(i)[m.key];
        break;
      }
      case "replaceEntry": {
        const i = pick(m.at);
        if (i >= 0) pairs[i] = [pairs[i]![0], m.value];
        break;
      }
      case "addTensor":
        pairs.push([m.name, m.value]);
        break;
      case "trailing": {
        const longer = new Uint8Array(data.length + m.bytes.length);
        longer.set(data);
        longer.set(m.bytes, data.length);
        data = longer;
        break;
      }
      case "dropData":
        data = data.subarray(0, Math.max(0, data.length - m.count));
        break;
    }
  }
  return { pairs, data, duplicateInside };
}

// ---------------------------------------------------------------- byte-level damage

type Damage =
  | { kind: "length"; value: bigint }
  | { kind: "truncate"; at: number }
  | { kind: "flip"; at: number; xor: number }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "header"; bytes: Uint8Array };

const lengthValue = fc.oneof(
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  fc.constantFrom(0n, 1n, 2n, 7n, 8n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 32n + 2n, 2n ** 40n, 2n ** 53n, 2n ** 53n + 2n, 2n ** 63n, 2n ** 64n - 1n, BigInt(MAX_HEADER_BYTES), BigInt(MAX_HEADER_BYTES + 1)),
  fc.integer({ min: 0, max: 400 }).map(BigInt),
);

const damage: fc.Arbitrary<Damage> = fc.oneof(
  fc.record({ kind: fc.constant("length" as const), value: lengthValue }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant("header" as const), bytes: fc.uint8Array({ maxLength: 64 }) }),
);

function applyDamage(bytes: Uint8Array, d: Damage): Uint8Array {
  switch (d.kind) {
    case "length": {
      const out = bytes.length >= 8 ? bytes.slice() : new Uint8Array(8);
      new DataView(out.buffer).setBigUint64(0, d.value, true);
      return out;
    }
    case "truncate":
      return bytes.slice(0, d.at % (bytes.length + 1));
    case "flip": {
      const out = bytes.slice();
      if (out.length > 0) out[d.at % out.length]! ^= d.xor;
      return out;
    }
    case "insert": {
      const at = d.at % (bytes.length + 1);
      const out = new Uint8Array(bytes.length + d.bytes.length);
      out.set(bytes.subarray(0, at));
      out.set(d.bytes, at);
      out.set(bytes.subarray(at), at + d.bytes.length);
      return out;
    }
    case "header": {
      const dataStart = bytes.length < 8 ? bytes.length : 8 + new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
      return assemble(d.bytes, bytes.subarray(Math.min(bytes.length, dataStart)));
    }
  }
}

// ---------------------------------------------------------------- properties

describe("fuzz: parseSafetensors only ever throws SafetensorsError, in bounded time and memory", () => {
  it("arbitrary bytes", async () => {
    await checkProperty(
      "safetensors: arbitrary bytes",
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        checkParse(bytes);
      }),
      3000,
    );
  });

  it("a correct length field followed by arbitrary header text and data", async () => {
    const headerTextArb = fc.oneof(fc.json({ maxDepth: 3 }), anyString, fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify({ t: v })));
    await checkProperty(
      "safetensors: arbitrary header JSON/text",
      fc.property(headerTextArb, fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: 7 }), (text, data, padding) => {
        checkParse(assemble(text, data, padding));
      }),
      3000,
    );
  });

  it("byte-level damage to valid files (length field up to 2^64-1, truncation, flipped and inserted bytes)", async () => {
    await checkProperty(
      "safetensors: byte-level damage to valid files",
      fc.property(validFile, fc.array(damage, { minLength: 1, maxLength: 3 }), (file, damages) => {
        let bytes = assemble(headerText(file.pairs), file.data, file.padding);
        for (const d of damages) bytes = applyDamage(bytes, d);
        checkParse(bytes);
      }),
      3000,
    );
  });
});

describe("fuzz: structured mutations are accepted exactly when the format's rules say so", () => {
  it("valid files are accepted, listed in header order, with every tensor where the header says", async () => {
    await checkProperty(
      "safetensors: valid files accepted",
      fc.property(validFile, (file) => {
        const bytes = assemble(headerText(file.pairs), file.data, file.padding);
        const parsed = checkParse(bytes);
        expect(parsed).not.toBeInstanceOf(SafetensorsError);
        const result = parsed as SafetensorsFile;
        const tensors = file.pairs.filter(([k]) => k !== "__metadata__");
        expect([...result.tensors.keys()]).toEqual(tensors.map(([k]) => k));
        const metadata = file.pairs.find(([k]) => k === "__metadata__");
        expect(result.metadata).toEqual(metadata ? metadata[1] : null);
        for (const [name, entry] of tensors) {
          const info = result.tensors.get(name)!;
          const { dtype, shape, data_offsets } = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
          expect({ dtype: info.dtype, shape: info.shape, begin: info.begin, end: info.end }).toEqual({ dtype, shape, begin: data_offsets[0], end: data_offsets[1] });
        }
      }),
      1000,
    );
  });

  it("mutated headers and data sections", async () => {
    let accepted = 0;
    const report = await checkProperty(
      "safetensors: structured mutations vs oracle",
      fc.property(validFile, fc.array(mutation, { minLength: 1, maxLength: 3 }), (file, mutations) => {
        const { pairs, data, duplicateInside } = mutate(file, mutations);
        const bytes = assemble(headerText(pairs), data, file.padding);
        const parsed = checkParse(bytes);
        const expected = oracleAccepts(pairs, data.length, duplicateInside);
        const got = !(parsed instanceof SafetensorsError);
        if (got !== expected) {
          throw new Error(`oracle says ${expected ? "accept" : "reject"}, reader says ${got ? "accept" : `reject (${(parsed as SafetensorsError).message})`}\nheader: ${headerText(pairs)}\ndata: ${data.length} bytes`);
        }
        if (got) accepted++;
      }),
      5000,
    );
    // the mutations must not all be fatal, or this would test nothing but rejection
    expect(accepted).toBeGreaterThan(report.runs / 20);
  });
});

describe("tiny files that claim huge sizes are refused without allocating", () => {
  const cases: [string, () => Uint8Array][] = [
    ["a 2^40-byte header", () => assemble("{}", new Uint8Array(0), 0, 2n ** 40n)],
    ["a 2^64-1-byte header", () => assemble("{}", new Uint8Array(0), 0, 2n ** 64n - 1n)],
    ["a 99,999,999-byte header in a 16-byte file", () => assemble("{}  ", new Uint8Array(4), 0, 99_999_999n)],
    ["a [2^31, 2^31] F32 tensor", () => assemble(headerText([["w", { dtype: "F32", shape: [2 ** 31, 2 ** 31], data_offsets: [0, 4] }]]), new Uint8Array(4))],
    ["a [2^26, 2^26, 2^26] tensor (overflow)", () => assemble(headerText([["w", { dtype: "F64", shape: [2 ** 26, 2 ** 26, 2 ** 26], data_offsets: [0, 8] }]]), new Uint8Array(8))],
    ["offsets [0, 2^53-1]", () => assemble(headerText([["w", { dtype: "U8", shape: [2 ** 53 - 1], data_offsets: [0, 2 ** 53 - 1] }]]), new Uint8Array(8))],
    ["a shape of 100,000 ones", () => assemble(`{"w":{"dtype":"F32","shape":[${new Array(100_000).fill(1).join(",")}],"data_offsets":[0,8]}}`, new Uint8Array(8))],
  ];
  for (const [name, build] of cases) {
    it(name, () => {
      const bytes = build();
      const before = process.memoryUsage().arrayBuffers;
      for (let i = 0; i < 20; i++) {
        const result = checkParse(bytes);
        expect(result).toBeInstanceOf(SafetensorsError);
      }
      // the meter (in checkParse) is exact; this is the coarse, process-wide view of the same fact
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 << 20);
    });
  }
});

describe("deeply nested header JSON", () => {
  const deep = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;

  it("is accepted quickly where the format ignores it (an extra field of an entry)", () => {
    const bytes = assemble(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":${deep(100_000)}}}`, new Uint8Array(4));
    expect(checkParse(bytes)).not.toBeInstanceOf(SafetensorsError);
  });

  // Fixed (found by this fuzzer, issue 7): describe() in src/formats/safetensors.ts JSON.stringify()s the
  // offending value into the message; a value nested ~10,000 deep (a 20 KB header) overflows the
  // stack, so parseSafetensors throws RangeError ("Maximum call stack size exceeded") instead of
  // SafetensorsError, and POST /v1/fine-tunes answers 500. (Fixed: the message builder)
  // bounds its depth (or describes containers without serialising them).
  it("regression: a deeply nested shape, data_offsets, dtype, entry or metadata value is a SafetensorsError, not a stack overflow", async () => {
    await checkProperty(
      "safetensors: deep nesting in described values",
      fc.property(
        fc.constantFrom("shape", "data_offsets", "dtype", "entry", "metadata"),
        fc.integer({ min: 5_000, max: 50_000 }),
        fc.boolean(),
        (where, depth, objects) => {
          const value = objects ? `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}` : deep(depth);
          const header =
            where === "entry"
              ? `{"w":${value}}`
              : where === "metadata"
                ? `{"__metadata__":{"k":${value}}}`
                : `{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],${JSON.stringify(where)}:${value}}}`;
          const result = checkParse(assemble(header, new Uint8Array(4)));
          expect(result).toBeInstanceOf(SafetensorsError);
        },
      ),
      50,
    );
  });
});

// ---------------------------------------------------------------- round trips

/** Round half to even of a double. */
function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff < 0.5) return floor;
  if (diff > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * Rounds a float32 value to a binary format with `mantissaBits` stored mantissa bits and
 * minimum normal exponent `minExponent`, nearest-even, overflowing to infinity at 2^(maxExponent+1).
 * Exact in doubles: every float32 value divided by a power of two is exact.
 */
function roundToFormat(value: number, mantissaBits: number, minExponent: number, maxExponent: number): number {
  if (Number.isNaN(value) || !Number.isFinite(value) || value === 0) return value;
  const sign = value < 0 ? -1 : 1;
  const magnitude = Math.abs(value);
  let exponent = Math.floor(Math.log2(magnitude));
  while (2 ** exponent > magnitude) exponent--;
  while (2 ** (exponent + 1) <= magnitude) exponent++;
  const quantum = 2 ** (Math.max(exponent, minExponent) - mantissaBits);
  const rounded = roundHalfEven(magnitude / quantum) * quantum;
  if (rounded >= 2 ** (maxExponent + 1)) return sign * Infinity;
  return sign * rounded; // sign * 0 keeps -0 for negative values that round to zero
}
const toF16 = (v: number) => roundToFormat(v, 10, -14, 15);
const toBf16 = (v: number) => roundToFormat(v, 7, -126, 127);

const writableTensors = fc.uniqueArray(
  fc.record({ name: tensorName, shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }) }).chain(({ name, shape }) => {
    const count = shape.reduce((a, b) => a * b, 1);
    return fc.float32Array({ minLength: count, maxLength: count }).map((data) => ({ name, shape, data }));
  }),
  { maxLength: 5, selector: (t) => t.name },
);

describe("round trip: writeSafetensors -> parseSafetensors -> readTensorF32", () => {
  it("float32 is bit-exact, float16 and bfloat16 round to nearest-even", async () => {
    await checkProperty(
      "safetensors: write/read round trip",
      fc.property(
        writableTensors,
        fc.constantFrom("float32" as const, "float16" as const, "bfloat16" as const),
        fc.option(fc.dictionary(anyString, anyString, { maxKeys: 3 }), { nil: undefined }),
        (tensors, dtype, metadata) => {
          const bytes = writeSafetensors(tensors, { dtype, ...(metadata ? { metadata } : {}) });
          // the reference writer's layout: header padded with spaces to 8 bytes
          expect(Number(new DataView(bytes.buffer).getBigUint64(0, true)) % 8).toBe(0);
          const file = parseSafetensors(bytes);
          expect([...file.tensors.keys()]).toEqual(tensors.map((t) => t.name));
          expect(file.metadata).toEqual(metadata ?? null);
          for (const t of tensors) {
            const info = file.tensors.get(t.name)!;
            expect(info.shape).toEqual(t.shape);
            expect(info.dtype).toBe({ float32: "F32", float16: "F16", bfloat16: "BF16" }[dtype]);
            const read = readTensorF32(file, t.name);
            expect(read.length).toBe(t.data.length);
            if (dtype === "float32") {
              expect(new Uint32Array(read.buffer, read.byteOffset, read.length)).toEqual(new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length));
              continue;
            }
            const round = dtype === "float16" ? toF16 : toBf16;
            for (let i = 0; i < read.length; i++) {
              const expected = round(t.data[i]!);
              const got = read[i]!;
              if (!(Object.is(got, expected) || (Number.isNaN(got) && Number.isNaN(expected)))) {
                throw new Error(`${dtype} ${t.name}[${i}]: ${t.data[i]} read back as ${got}, expected ${expected}`);
              }
            }
          }
        },
      ),
      1000,
    );
  });
});
