import { describe, it, expect } from "vitest";
import { parseSafetensors, readTensorF32, writeSafetensors, type SafetensorsFile } from "../../../src/formats/safetensors.js";
import { f16BitsToF32, bf16BitsToF32 } from "../../../src/formats/dtype.js";
import { SafetensorsError, type SafetensorsRule } from "../../../src/errors.js";

const encoder = new TextEncoder();

/** A safetensors file from a header (object or raw text) and a data section, built byte by byte. */
function buildFile(header: unknown, data: Uint8Array | number = 0, declaredLength?: number): Uint8Array {
  const headerBytes = typeof header === "string" ? encoder.encode(header) : header instanceof Uint8Array ? header : encoder.encode(JSON.stringify(header));
  const dataBytes = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + headerBytes.length + dataBytes.length);
  new DataView(out.buffer).setUint32(0, declaredLength ?? headerBytes.length, true);
  out.set(headerBytes, 8);
  out.set(dataBytes, 8 + headerBytes.length);
  return out;
}

function f32Entry(shape: number[], begin: number, end: number) {
  return { dtype: "F32", shape, data_offsets: [begin, end] };
}

function expectRule(bytes: Uint8Array, rule: SafetensorsRule, tensor: string | undefined, options?: { field?: string; maxHeaderBytes?: number }): SafetensorsError {
  let caught: unknown;
  try {
    parseSafetensors(bytes, options);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(SafetensorsError);
  const error = caught as SafetensorsError;
  expect({ rule: error.rule, tensor: error.tensor }).toEqual({ rule, tensor });
  expect(error.status).toBe(422);
  const field = options?.field ?? "weights";
  expect(error.errors[0]!.path).toBe(tensor === undefined ? field : `${field}[${JSON.stringify(tensor)}]`);
  return error;
}

describe("parseSafetensors: every rule of the reference reader", () => {
  it("file_too_small", () => {
    expectRule(new Uint8Array(7), "file_too_small", undefined);
    expectRule(new Uint8Array(0), "file_too_small", undefined);
  });

  it("header_too_large: above 100,000,000 bytes", () => {
    expectRule(buildFile("{}", 0, 100_000_001), "header_too_large", undefined);
  });

  it("header_too_large: a u64 length >= 2^53 is not misread", () => {
    const bytes = new Uint8Array(16);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, 2, true); // 2^53 + 2: as a double read it would be ambiguous
    view.setUint32(4, 0x200000, true);
    const error = expectRule(bytes, "header_too_large", undefined);
    expect(error.message).toContain("9007199254740994");
    view.setUint32(0, 0xffffffff, true);
    view.setUint32(4, 0xffffffff, true);
    expectRule(bytes, "header_too_large", undefined);
    // A high word of 1 with a small low word must not wrap to a small length.
    view.setUint32(0, 2, true);
    view.setUint32(4, 1, true);
    expectRule(bytes, "header_too_large", undefined);
  });

  it("header_too_large: the caller's tighter limit", () => {
    const file = buildFile({ a: f32Entry([1], 0, 4) }, 4);
    expect(() => parseSafetensors(file)).not.toThrow();
    expectRule(file, "header_too_large", undefined, { maxHeaderBytes: 16 });
  });

  it("header_past_eof", () => {
    expectRule(buildFile("{}", 0, 100), "header_past_eof", undefined);
    expectRule(buildFile('{"a":1}', 0, 3), "header_not_json", undefined); // in bounds, cuts the JSON
  });

  it("header_not_utf8", () => {
    expectRule(buildFile(new Uint8Array([0x7b, 0xff, 0x7d])), "header_not_utf8", undefined);
    // A lone surrogate encoded in UTF-8 (CESU) is not valid UTF-8 either.
    expectRule(buildFile(new Uint8Array([0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x7d])), "header_not_utf8", undefined);
  });

  it("header_not_json", () => {
    expectRule(buildFile('{"a": '), "header_not_json", undefined);
    expectRule(buildFile(""), "header_not_json", undefined);
    // A BOM is not JSON whitespace: kept in the text, it fails like in the reference reader.
    expectRule(buildFile(new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d])), "header_not_json", undefined);
  });

  it("header_not_object", () => {
    expectRule(buildFile("[]"), "header_not_object", undefined);
    expectRule(buildFile("null"), "header_not_object", undefined);
    expectRule(buildFile("42"), "header_not_object", undefined);
  });

  it("duplicate_key: a tensor listed twice", () => {
    const header = `{"a":${JSON.stringify(f32Entry([1], 0, 4))},"a":${JSON.stringify(f32Entry([1], 0, 4))}}`;
    expectRule(buildFile(header, 4), "duplicate_key", "a");
  });

  it("duplicate_key: the same name spelled with an escape", () => {
    const header = `{"ab":${JSON.stringify(f32Entry([1], 0, 4))},"\\u0061b":${JSON.stringify(f32Entry([1], 4, 8))}}`;
    expectRule(buildFile(header, 8), "duplicate_key", "ab");
  });

  it("duplicate_key: a field repeated inside an entry, and __metadata__ twice", () => {
    const header = `{"w":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}}`;
    expectRule(buildFile(header, 4), "duplicate_key", "w");
    expectRule(buildFile(`{"__metadata__":{},"__metadata__":{}}`), "duplicate_key", undefined);
    expectRule(buildFile(`{"__metadata__":{"k":"1","k":"2"}}`), "duplicate_key", undefined);
  });

  it("duplicate_key: not fooled by quotes, braces and commas inside strings", () => {
    const header = { "a\",\"b": f32Entry([1], 0, 4), "{b}": f32Entry([1], 4, 8), "c\\": f32Entry([1], 8, 12), __metadata__: { x: '"a":{,' } };
    const file = parseSafetensors(buildFile(header, 12));
    expect([...file.tensors.keys()]).toEqual(['a","b', "{b}", "c\\"]);
  });

  it("invalid_entry", () => {
    expectRule(buildFile({ w: 5 }), "invalid_entry", "w");
    expectRule(buildFile({ w: [] }), "invalid_entry", "w");
    expectRule(buildFile({ w: { dtype: "F32", shape: [1] } }, 4), "invalid_entry", "w");
    expectRule(buildFile({ w: { dtype: 1, shape: [1], data_offsets: [0, 4] } }, 4), "invalid_entry", "w");
  });

  it("unknown_dtype", () => {
    const error = expectRule(buildFile({ w: { dtype: "Q4", shape: [1], data_offsets: [0, 1] } }, 1), "unknown_dtype", "w");
    expect(error.message).toContain("Q4");
    expectRule(buildFile({ w: { dtype: "f32", shape: [1], data_offsets: [0, 4] } }, 4), "unknown_dtype", "w");
    expectRule(buildFile({ w: { dtype: "toString", shape: [1], data_offsets: [0, 4] } }, 4), "unknown_dtype", "w");
  });

  it("invalid_shape", () => {
    for (const shape of ["2", [-1], [1.5], ["2"], [null], [2 ** 53]]) {
      expectRule(buildFile({ w: { dtype: "F32", shape, data_offsets: [0, 4] } }, 4), "invalid_shape", "w");
    }
  });

  it("invalid_offsets", () => {
    for (const offsets of [[0], [0, 4, 8], [-1, 3], ["0", "4"], [0.5, 4], null, [5, 1]]) {
      expectRule(buildFile({ w: { dtype: "U8", shape: [4], data_offsets: offsets } }, 4), "invalid_offsets", "w");
    }
  });

  it("offsets_not_contiguous: a gap", () => {
    expectRule(buildFile({ a: f32Entry([1], 0, 4), b: f32Entry([1], 8, 12) }, 12), "offsets_not_contiguous", "b");
  });

  it("offsets_not_contiguous: an overlap", () => {
    expectRule(buildFile({ a: f32Entry([2], 0, 8), b: f32Entry([2], 4, 12) }, 12), "offsets_not_contiguous", "b");
  });

  it("offsets_not_contiguous: not starting at 0", () => {
    expectRule(buildFile({ a: f32Entry([1], 4, 8) }, 8), "offsets_not_contiguous", "a");
  });

  it("offsets_not_contiguous: two tensors at the same place", () => {
    expectRule(buildFile({ a: f32Entry([1], 0, 4), b: f32Entry([1], 0, 4) }, 4), "offsets_not_contiguous", "b");
  });

  it("offsets are checked in offset order, whatever the header order", () => {
    const file = parseSafetensors(buildFile({ b: f32Entry([1], 4, 8), a: f32Entry([1], 0, 4) }, 8));
    expect([...file.tensors.keys()]).toEqual(["b", "a"]);
  });

  it("keeps header order even for integer-like names", () => {
    const file = parseSafetensors(buildFile({ x: f32Entry([1], 0, 4), 10: f32Entry([1], 4, 8) }, 8));
    // JSON.stringify already moved "10" first; write the header text by hand instead.
    const header = `{"x":${JSON.stringify(f32Entry([1], 0, 4))},"10":${JSON.stringify(f32Entry([1], 4, 8))}}`;
    expect([...file.tensors.keys()]).toEqual(["10", "x"]);
    expect([...parseSafetensors(buildFile(header, 8)).tensors.keys()]).toEqual(["x", "10"]);
  });

  it("byte_length_mismatch", () => {
    expectRule(buildFile({ w: f32Entry([3], 0, 8) }, 8), "byte_length_mismatch", "w");
    expectRule(buildFile({ w: { dtype: "F16", shape: [2, 2], data_offsets: [0, 16] } }, 16), "byte_length_mismatch", "w");
  });

  it("byte_length_mismatch: overflow is caught, not wrapped", () => {
    const error = expectRule(buildFile({ w: f32Entry([2 ** 30, 2 ** 30, 2 ** 30], 0, 0) }), "byte_length_mismatch", "w");
    expect(error.message).toContain("overflow");
    expectRule(buildFile({ w: { dtype: "F64", shape: [2 ** 51], data_offsets: [0, 0] } }), "byte_length_mismatch", "w");
  });

  it("trailing_bytes: data after the last tensor", () => {
    expectRule(buildFile({ w: f32Entry([1], 0, 4) }, 5), "trailing_bytes", undefined);
    expectRule(buildFile({}, 1), "trailing_bytes", undefined);
  });

  it("trailing_bytes: tensors that end past the end of the file", () => {
    expectRule(buildFile({ w: f32Entry([2], 0, 8) }, 4), "trailing_bytes", "w");
  });

  it("invalid_metadata", () => {
    expectRule(buildFile({ __metadata__: { a: 1 } }), "invalid_metadata", undefined);
    expectRule(buildFile({ __metadata__: "pt" }), "invalid_metadata", undefined);
    expectRule(buildFile({ __metadata__: ["pt"] }), "invalid_metadata", undefined);
    expectRule(buildFile({ __metadata__: { a: { b: "c" } } }), "invalid_metadata", undefined);
  });

  it("uses the caller's field in the error path", () => {
    const error = expectRule(buildFile({ w: f32Entry([3], 0, 8) }, 8), "byte_length_mismatch", "w", { field: "files.weights" });
    expect(error.errors[0]!.path).toBe('files.weights["w"]');
  });
});

describe("parseSafetensors: valid files", () => {
  it("parses a file written by hand: metadata, unaligned header, mixed dtypes, an empty tensor", () => {
    const data = new Uint8Array(4 + 2 * 2 + 2 + 8);
    const view = new DataView(data.buffer);
    view.setFloat32(0, 1.5, true); // a: F32 [1]
    view.setUint16(4, 0x3c00, true); // b: F16 [2] = [1, -2]
    view.setUint16(6, 0xc000, true);
    view.setUint16(8, 0x3f80, true); // c: BF16 [1, 1] = [[1]]
    view.setFloat64(10, 0.1, true); // d: F64 [] (a scalar) = 0.1 at an unaligned offset
    // Written by hand so the test does not trust our writer; 7-byte-misaligned on purpose.
    const header =
      '{"__metadata__":{"format":"pt"},' +
      '"d":{"dtype":"F64","shape":[],"data_offsets":[10,18]},' +
      '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' +
      '"e":{"dtype":"I64","shape":[0,3],"data_offsets":[18,18]},' +
      '"b":{"dtype":"F16","shape":[2],"data_offsets":[4,8]},' +
      '"c":{"dtype":"BF16","shape":[1,1],"data_offsets":[8,10]}}  ';
    expect((8 + encoder.encode(header).length) % 8).not.toBe(0);
    const file = parseSafetensors(buildFile(header, data));
    expect(file.metadata).toEqual({ format: "pt" });
    expect(file.dataStart).toBe(8 + encoder.encode(header).length);
    expect(file.tensors.get("d")).toEqual({ name: "d", dtype: "F64", shape: [], begin: 10, end: 18 });
    expect([...readTensorF32(file, "a")]).toEqual([1.5]);
    expect([...readTensorF32(file, "b")]).toEqual([1, -2]);
    expect([...readTensorF32(file, "c")]).toEqual([1]);
    expect([...readTensorF32(file, "d")]).toEqual([Math.fround(0.1)]);
    expect(file.tensors.get("e")!.shape).toEqual([0, 3]);
  });

  it("does not copy the data section", () => {
    const bytes = buildFile({ a: f32Entry([1], 0, 4) }, 4);
    expect(parseSafetensors(bytes).bytes).toBe(bytes);
  });

  it("reads a file that is a view into a larger buffer", () => {
    const inner = buildFile({ a: f32Entry([1], 0, 4) }, new Uint8Array(new Float32Array([2.5]).buffer));
    const outer = new Uint8Array(inner.length + 5);
    outer.set(inner, 3);
    const file = parseSafetensors(outer.subarray(3, 3 + inner.length));
    expect([...readTensorF32(file, "a")]).toEqual([2.5]);
  });

  it("accepts a null __metadata__ and extra fields in an entry, as the reference does", () => {
    const file = parseSafetensors(buildFile({ __metadata__: null, a: { ...f32Entry([1], 0, 4), extra: true } }, 4));
    expect(file.metadata).toBeNull();
    expect(file.tensors.size).toBe(1);
  });

  it("keeps a __proto__ metadata key as data", () => {
    const file = parseSafetensors(buildFile('{"__metadata__":{"__proto__":"x"}}      '));
    expect(Object.keys(file.metadata!)).toEqual(["__proto__"]);
    expect(file.metadata!["__proto__"]).toBe("x");
  });
});

describe("readTensorF32", () => {
  it("throws unsupported_dtype for integer tensors, naming the tensor", () => {
    const file = parseSafetensors(buildFile({ steps: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }, 8));
    let caught: unknown;
    try {
      readTensorF32(file, "steps", "weights");
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(SafetensorsError);
    expect((caught as SafetensorsError).rule).toBe("unsupported_dtype");
    expect((caught as SafetensorsError).tensor).toBe("steps");
    expect((caught as SafetensorsError).errors[0]!.path).toBe('weights["steps"]');
  });

  it("throws for a tensor that is not in the file", () => {
    const file = parseSafetensors(buildFile({}));
    expect(() => readTensorF32(file, "fc1.weight")).toThrow(SafetensorsError);
  });
});

/** Test vectors from the reference implementation's own tests (huggingface/safetensors, tensor.rs). */
const REFERENCE_SERIALIZATION = [
  64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34,
  115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48,
  44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
];
const REFERENCE_ALIGNED = [
  72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115,
  104, 97, 112, 101, 34, 58, 91, 49, 44, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91,
  48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32, 32, 32, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
];
const REFERENCE_EMPTY = [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32];
const REFERENCE_EMPTY_WITH_METADATA = [
  40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95, 95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111,
  114, 107, 34, 58, 34, 112, 116, 34, 125, 125, 32, 32, 32, 32, 32,
];

describe("writeSafetensors", () => {
  const sixValues = new Float32Array([0, 1, 2, 3, 4, 5]);

  it("writes byte-for-byte what the reference writer writes", () => {
    expect([...writeSafetensors([{ name: "attn.0", shape: [1, 2, 3], data: sixValues }])]).toEqual(REFERENCE_SERIALIZATION);
    expect([...writeSafetensors([{ name: "attn0", shape: [1, 1, 2, 3], data: sixValues }])]).toEqual(REFERENCE_ALIGNED);
    expect([...writeSafetensors([])]).toEqual(REFERENCE_EMPTY);
    expect([...writeSafetensors([], { metadata: { framework: "pt" } })]).toEqual(REFERENCE_EMPTY_WITH_METADATA);
  });

  it("reads the reference writer's files", () => {
    const file = parseSafetensors(Uint8Array.from(REFERENCE_ALIGNED));
    expect(file.tensors.get("attn0")!.shape).toEqual([1, 1, 2, 3]);
    expect([...readTensorF32(file, "attn0")]).toEqual([0, 1, 2, 3, 4, 5]);
    expect(parseSafetensors(Uint8Array.from(REFERENCE_EMPTY_WITH_METADATA)).metadata).toEqual({ framework: "pt" });
  });

  it("pads the header with spaces to a multiple of 8, keeps the given order, __metadata__ first", () => {
    const bytes = writeSafetensors(
      [
        { name: "10", shape: [1], data: new Float32Array([1]) },
        { name: "2", shape: [2], data: new Float32Array([2, 3]) },
        { name: "fc1.weight", shape: [1, 1], data: new Float32Array([4]) },
      ],
      { metadata: { format: "pt" } },
    );
    const headerLength = new DataView(bytes.buffer).getUint32(0, true);
    expect(headerLength % 8).toBe(0);
    expect(new DataView(bytes.buffer).getUint32(4, true)).toBe(0);
    const headerText = new TextDecoder().decode(bytes.subarray(8, 8 + headerLength));
    expect(headerText).toMatch(/^\{"__metadata__":\{"format":"pt"\},"10":.*,"2":.*,"fc1\.weight":.*\} *$/);
    expect(headerText.trimEnd().length).toBeGreaterThan(headerLength - 8);
    const file = parseSafetensors(bytes);
    expect([...file.tensors.values()].map((t) => [t.name, t.begin, t.end])).toEqual([
      ["10", 0, 4],
      ["2", 4, 12],
      ["fc1.weight", 12, 16],
    ]);
    expect([...readTensorF32(file, "2")]).toEqual([2, 3]);
  });

  const special = new Float32Array([1, -2, 65504, 65520, 2 ** -24, 2 ** -25, 1 + 2 ** -11, 1 + 3 * 2 ** -11, NaN, -Infinity, 0.1]);

  function storedHalves(bytes: Uint8Array, name: string): number[] {
    const file = parseSafetensors(bytes);
    const info = file.tensors.get(name)!;
    const view = new DataView(bytes.buffer, bytes.byteOffset + file.dataStart + info.begin, info.end - info.begin);
    return Array.from({ length: view.byteLength / 2 }, (_, i) => view.getUint16(i * 2, true));
  }

  it("round-trips float32 exactly", () => {
    const data = new Float32Array([0.1, -3.5e38, 1e-45, -0, Infinity]);
    const file = parseSafetensors(writeSafetensors([{ name: "w", shape: [5], data }], { dtype: "float32" }));
    expect(file.tensors.get("w")!.dtype).toBe("F32");
    expect(Object.is(readTensorF32(file, "w")[3], -0)).toBe(true);
    expect([...readTensorF32(file, "w")]).toEqual([...data]);
  });

  it("writes float16 with PyTorch's rounding, little-endian, and reads it back", () => {
    const bytes = writeSafetensors([{ name: "w", shape: [special.length], data: special }], { dtype: "float16" });
    const file = parseSafetensors(bytes);
    expect(file.tensors.get("w")).toMatchObject({ dtype: "F16", shape: [special.length] });
    const halves = storedHalves(bytes, "w");
    expect(halves.map((h) => h.toString(16))).toEqual(
      [0x3c00, 0xc000, 0x7bff, 0x7c00, 0x0001, 0x0000, 0x3c00, 0x3c02, halves[8]!, 0xfc00, 0x2e66].map((h) => h.toString(16)),
    );
    expect(halves[8]! & 0x7fff).toBe(0x7e00);
    const back = readTensorF32(file, "w");
    expect([...back]).toEqual(halves.map((h) => f16BitsToF32(h)));
  });

  it("writes bfloat16 with PyTorch's rounding, little-endian, and reads it back", () => {
    const data = new Float32Array([1, -2, 0.1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, NaN, Infinity, 3.4028234663852886e38]);
    const bytes = writeSafetensors([{ name: "w", shape: [2, 4], data }], { dtype: "bfloat16" });
    expect(parseSafetensors(bytes).tensors.get("w")!.dtype).toBe("BF16");
    const halves = storedHalves(bytes, "w");
    expect(halves.map((h) => h.toString(16))).toEqual(["3f80", "c000", "3dcd", "3f80", "3f82", "7fc0", "7f80", "7f80"]);
    expect([...readTensorF32(parseSafetensors(bytes), "w")]).toEqual(halves.map((h) => bf16BitsToF32(h)));
  });

  it("keeps tensor data aligned to its dtype (header padded to 8)", () => {
    for (const dtype of ["float32", "float16", "bfloat16"] as const) {
      for (let nameLength = 1; nameLength < 12; nameLength++) {
        const bytes = writeSafetensors([{ name: "x".repeat(nameLength), shape: [1], data: new Float32Array([1]) }], { dtype });
        const file: SafetensorsFile = parseSafetensors(bytes);
        expect(file.dataStart % 8).toBe(0);
      }
    }
  });

  it("writes a subarray's values, not its whole buffer", () => {
    const backing = new Float32Array([9, 1, 2, 9]);
    const file = parseSafetensors(writeSafetensors([{ name: "w", shape: [2], data: backing.subarray(1, 3) }]));
    expect([...readTensorF32(file, "w")]).toEqual([1, 2]);
  });

  it("refuses a malformed tensor list", () => {
    expect(() => writeSafetensors([{ name: "w", shape: [3], data: new Float32Array(2) }])).toThrow(RangeError);
    expect(() => writeSafetensors([{ name: "w", shape: [1], data: new Float32Array(1) }, { name: "w", shape: [1], data: new Float32Array(1) }])).toThrow(RangeError);
    expect(() => writeSafetensors([{ name: "__metadata__", shape: [1], data: new Float32Array(1) }])).toThrow(RangeError);
  });
});
