/**
 * Binary datasets (issue 17, item 1): a safetensors file read into a Table, validated by its
 * header and its values, the F32 tensors read in place.
 */
import { describe, expect, it } from "vitest";
import { looksLikeSafetensors, tableFromSafetensors } from "../../../src/formats/dataset-safetensors.js";
import { MAX_ISSUES, tableFromInline, type Table } from "../../../src/formats/dataset.js";
import { writeSafetensors } from "../../../src/formats/safetensors.js";
import { encodeBase64 } from "../../../src/formats/base64.js";
import { DatasetError, EdgetuneError, SafetensorsError } from "../../../src/errors.js";
import { prepareRun } from "../../../src/engine/prepare.js";
import { classificationData, tokenData } from "../../helpers.js";

type Dtype = "F32" | "F16" | "I64" | "I32" | "U8" | "BOOL";

/** A safetensors file of any dtype, built byte by byte (values as numbers, written little-endian). */
function file(tensors: { name: string; dtype: Dtype; shape: number[]; values: ArrayLike<number> }[]): Uint8Array {
  const size = { F32: 4, F16: 2, I64: 8, I32: 4, U8: 1, BOOL: 1 };
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.values.length * size[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let text = JSON.stringify(header);
  while ((8 + text.length) % 8 !== 0) text += " "; // pad as the reference writer does: data 8-byte aligned
  const out = new Uint8Array(8 + text.length + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, text.length, true);
  out.set(new TextEncoder().encode(text), 8);
  let at = 8 + text.length;
  for (const t of tensors) {
    for (let i = 0; i < t.values.length; i++) {
      const v = t.values[i]!;
      if (t.dtype === "F32") view.setFloat32(at, v, true);
      else if (t.dtype === "F16") view.setUint16(at, 0x3c00, true);
      else if (t.dtype === "I64") view.setBigInt64(at, BigInt(v), true);
      else if (t.dtype === "I32") view.setInt32(at, v, true);
      else view.setUint8(at, v);
      at += size[t.dtype];
    }
  }
  return out;
}

function datasetError(fn: () => unknown): DatasetError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(DatasetError);
  return caught as DatasetError;
}

const paths = (error: EdgetuneError) => error.errors.map((e) => e.path);

describe("tableFromSafetensors: feature rows", () => {
  it("x F32 [N, F] and y I64 [N] become the table, x read in place (a view of the input, no copy)", () => {
    const bytes = writeSafetensors([
      { name: "x", shape: [3, 2], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
      { name: "y", shape: [3], data: new Float32Array([0, 2, 1]), dtype: "I64" },
    ]);
    const table = tableFromSafetensors(bytes, "data.train");
    expect(table).toMatchObject({ rows: 3, features: 2, targets: 1, targetsWereScalar: true });
    expect([...table.x]).toEqual([1, 2, 3, 4, 5, 6]);
    expect([...table.y]).toEqual([0, 2, 1]);
    expect(table.x.buffer).toBe(bytes.buffer);
    expect(table.ids).toBeUndefined();
  });

  it("an unaligned input is copied once and reads the same", () => {
    const aligned = writeSafetensors([
      { name: "x", shape: [2, 2], data: new Float32Array([0.5, -1, 2, 3]) },
      { name: "y", shape: [2, 2], data: new Float32Array([1, 0, 0, 1]) },
    ]);
    const shifted = new Uint8Array(aligned.length + 1).subarray(1);
    shifted.set(aligned);
    const table = tableFromSafetensors(shifted, "data.train");
    expect(table.x.buffer).not.toBe(shifted.buffer);
    expect([...table.x]).toEqual([0.5, -1, 2, 3]);
    expect(table).toMatchObject({ targets: 2, targetsWereScalar: false });
    expect([...table.y]).toEqual([1, 0, 0, 1]);
  });

  it("rows of more than one dimension: features is the product; NaN and Infinity are refused by their index", () => {
    const values = new Float32Array(8).fill(1);
    values[6] = NaN; // row 1, [0][1][0]
    values[1] = -Infinity; // row 0, [0][0][1]
    const bytes = file([
      { name: "x", dtype: "F32", shape: [2, 1, 2, 2], values },
      { name: "y", dtype: "I32", shape: [2], values: [0, 1] },
    ]);
    const error = datasetError(() => tableFromSafetensors(bytes, "data.train"));
    expect(error.status).toBe(422);
    expect(error.errors).toEqual([
      { path: "data.train.x[0][0][0][1]", message: "is -Infinity: values must be finite" },
      { path: "data.train.x[1][0][1][0]", message: "is NaN: values must be finite" },
    ]);
    values[1] = values[6] = 1;
    const ok = file([
      { name: "x", dtype: "F32", shape: [2, 1, 2, 2], values },
      { name: "y", dtype: "I32", shape: [2], values: [0, 1] },
    ]);
    expect(tableFromSafetensors(ok, "data.train")).toMatchObject({ rows: 2, features: 4 });
  });

  it.each([1, 3, 4, 5, 63, 64, 65])("the finiteness check finds one bad value anywhere in %i values (the 4-way sums and their tail)", (length) => {
    const y = { name: "y", dtype: "F32" as const, shape: [length], values: new Float32Array(length) };
    const good = Float32Array.from({ length }, (_, i) => i - length / 2);
    expect(tableFromSafetensors(file([{ name: "x", dtype: "F32", shape: [length, 1], values: good }, y]), "data.train").rows).toBe(length);
    for (const at of new Set([0, length - 1, Math.floor(length / 2)])) {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const values = good.slice();
        values[at] = bad;
        const error = datasetError(() => tableFromSafetensors(file([{ name: "x", dtype: "F32", shape: [length, 1], values }, y]), "data.train"));
        expect(paths(error)).toEqual([`data.train.x[${at}][0]`]);
      }
    }
  });

  it("issues are capped at MAX_ISSUES however many values are bad", () => {
    const bytes = file([
      { name: "x", dtype: "F32", shape: [1000, 100], values: new Float32Array(100_000).fill(NaN) },
      { name: "y", dtype: "F32", shape: [1000], values: new Float32Array(1000) },
    ]);
    const error = datasetError(() => tableFromSafetensors(bytes, "data.train"));
    expect(error.errors).toHaveLength(MAX_ISSUES);
    expect(error.message).toMatch(/showing the first 20 issues/);
  });

  it("integer targets beyond float32's exact integers, and non-finite float targets, name the row", () => {
    const x = new Float32Array(4).fill(0);
    const error = datasetError(() =>
      tableFromSafetensors(file([{ name: "x", dtype: "F32", shape: [4, 1], values: x }, { name: "y", dtype: "I64", shape: [4], values: [0, -100, 2 ** 24, -(2 ** 40)] }]), "data.train"),
    );
    expect(paths(error)).toEqual(["data.train.y[2]", "data.train.y[3]"]);
    expect(error.errors[1]!.message).toContain(String(-(2 ** 40)));
    const floats = datasetError(() =>
      tableFromSafetensors(file([{ name: "x", dtype: "F32", shape: [2, 2], values: x }, { name: "y", dtype: "F32", shape: [2, 1], values: [1, Infinity] }]), "data.train"),
    );
    expect(paths(floats)).toEqual(["data.train.y[1][0]"]);
  });
});

describe("tableFromSafetensors: token rows", () => {
  it("input_ids I64 with an I64 mask and token_type_ids, and I32 ids with a BOOL mask, read the same", () => {
    const ids = [5, 9, 0, 7, 0, 0];
    const mask = [1, 1, 0, 1, 0, 0];
    const wide = tableFromSafetensors(
      file([
        { name: "input_ids", dtype: "I64", shape: [2, 3], values: ids },
        { name: "attention_mask", dtype: "I64", shape: [2, 3], values: mask },
        { name: "token_type_ids", dtype: "I64", shape: [2, 3], values: [0, 0, 0, 0, 1, 1] },
        { name: "y", dtype: "I64", shape: [2], values: [1, 0] },
      ]),
      "data.train",
    );
    expect(wide).toMatchObject({ rows: 2, features: 3, targets: 1, ids: true, targetsWereScalar: true });
    expect([...wide.x]).toEqual(ids);
    expect([...wide.mask!]).toEqual(mask);
    expect([...wide.tokenTypes!]).toEqual([0, 0, 0, 0, 1, 1]);
    const narrow = tableFromSafetensors(
      file([
        { name: "input_ids", dtype: "I32", shape: [2, 3], values: ids },
        { name: "attention_mask", dtype: "BOOL", shape: [2, 3], values: mask },
        { name: "y", dtype: "I32", shape: [2], values: [1, 0] },
      ]),
      "data.train",
    );
    expect([...narrow.x]).toEqual(ids);
    expect([...narrow.mask!]).toEqual(mask);
    expect(narrow.tokenTypes).toBeUndefined();
  });

  it("the same rows as inline JSON make the same table", () => {
    const data = tokenData(12, 5, 20, 3);
    const inline = tableFromInline(data, "data.train");
    const binary = tableFromSafetensors(
      file([
        { name: "input_ids", dtype: "I64", shape: [12, 5], values: data.input_ids.flat() },
        { name: "attention_mask", dtype: "I64", shape: [12, 5], values: data.attention_mask.flat() },
        { name: "y", dtype: "I64", shape: [12], values: data.y },
      ]),
      "data.train",
    );
    expect(binary).toEqual(inline);
  });

  it("a causal LM's rows take no y: the table has no targets", () => {
    const table = tableFromSafetensors(file([{ name: "input_ids", dtype: "I32", shape: [1, 4], values: [1, 2, 3, 4] }]), "data.train");
    expect(table).toMatchObject({ rows: 1, features: 4, targets: 0, ids: true });
    expect(table.y).toHaveLength(0);
  });

  it("ids out of range (negative, past 2^24, past 2^32 in an I64), mask values other than 0/1 and rows of padding only", () => {
    const error = datasetError(() =>
      tableFromSafetensors(
        file([
          { name: "input_ids", dtype: "I64", shape: [3, 3], values: [1, -1, 2, 2 ** 24, 3, 4, 2 ** 33, 1, 1] },
          { name: "attention_mask", dtype: "U8", shape: [3, 3], values: [1, 1, 1, 0, 0, 0, 1, 2, 0] },
          { name: "y", dtype: "I64", shape: [3], values: [0, 1, 0] },
        ]),
        "data.train",
      ),
    );
    expect(error.errors).toEqual([
      { path: "data.train.input_ids[0][1]", message: "is -1; token ids are >= 0" },
      { path: "data.train.input_ids[1][0]", message: expect.stringMatching(/^is 16777216; token ids must be below 2\^24/) },
      { path: "data.train.input_ids[2][0]", message: expect.stringMatching(/^is 8589934592; token ids must be below 2\^24/) },
      { path: "data.train.attention_mask[1]", message: expect.stringMatching(/^has no token with mask 1/) },
      { path: "data.train.attention_mask[2][1]", message: "is 2; attention_mask holds 1 (a token) or 0 (padding)" },
    ]);
  });
});

describe("tableFromSafetensors: the header", () => {
  const x = { name: "x", dtype: "F32" as const, shape: [2, 2], values: [1, 2, 3, 4] };
  const y = { name: "y", dtype: "I64" as const, shape: [2], values: [0, 1] };
  it.each([
    ["an unknown tensor", [x, y, { name: "labels", dtype: "I64" as const, shape: [2], values: [0, 1] }], 'data.train["labels"]', /is not a dataset tensor/],
    ["both x and input_ids", [x, y, { name: "input_ids", dtype: "I64" as const, shape: [2, 2], values: [1, 1, 1, 1] }], 'data.train["input_ids"]', /both x and input_ids/],
    ["neither x nor input_ids", [y], "data.train", /has no x .* and no input_ids/],
    ["feature rows without y", [x], 'data.train["y"]', /is missing/],
    ["x of another dtype", [{ ...x, dtype: "F16" as const }, y], 'data.train["x"]', /has dtype F16; x is F32/],
    ["x of one dimension", [{ ...x, shape: [4] }, y], 'data.train["x"]', /has shape \[4\]; x is \[N, features\]/],
    ["input_ids as floats", [{ ...x, name: "input_ids" }, y], 'data.train["input_ids"]', /has dtype F32; input_ids is I64 or I32/],
    ["y of other rows", [x, { ...y, shape: [1], values: [0] }], 'data.train["y"]', /has 1 rows, but x has 2/],
    ["y of three dimensions", [x, { ...y, shape: [2, 1, 1] }], 'data.train["y"]', /has shape \[2, 1, 1\]/],
    ["an empty x", [{ ...x, shape: [0, 2], values: [] }, y], 'data.train["x"]', /every dimension needs at least one element/],
    ["a mask with feature rows", [x, y, { name: "attention_mask", dtype: "I64" as const, shape: [2, 2], values: [1, 1, 1, 1] }], 'data.train["attention_mask"]', /feature rows \(x\) take none/],
    [
      "a mask of another shape",
      [{ name: "input_ids", dtype: "I64" as const, shape: [2, 2], values: [1, 1, 1, 1] }, { name: "attention_mask", dtype: "I64" as const, shape: [2, 1], values: [1, 1] }],
      'data.train["attention_mask"]',
      /has shape \[2, 1\], but input_ids has \[2, 2\]/,
    ],
  ])("%s", (_, tensors, path, message) => {
    const error = datasetError(() => tableFromSafetensors(file(tensors), "data.train"));
    expect(error.errors[0]).toEqual({ path, message: expect.stringMatching(message) });
  });

  it("a malformed file is a SafetensorsError (422) at the field", () => {
    let caught: unknown;
    try {
      tableFromSafetensors(new TextEncoder().encode("x0,x1,y\n1,2,0\n"), "data.train");
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(SafetensorsError);
    expect((caught as SafetensorsError).status).toBe(422);
    expect(paths(caught as SafetensorsError)).toEqual(["data.train"]);
  });

  it("looksLikeSafetensors tells a file from CSV, JSONL and short input", () => {
    expect(looksLikeSafetensors(file([x, y]))).toBe(true);
    expect(looksLikeSafetensors(new TextEncoder().encode("x0,x1,y\n1,2,0\n"))).toBe(false);
    expect(looksLikeSafetensors(new TextEncoder().encode('{"x":[1,2],"y":0}\n'))).toBe(false);
    expect(looksLikeSafetensors(new Uint8Array([2, 0, 0, 0, 0, 0, 0, 0, 0x7b]))).toBe(false);
    expect(looksLikeSafetensors(new Uint8Array(0))).toBe(false);
  });
});

describe("binary datasets in a request", () => {
  const model = { layers: [{ type: "linear", in_features: 4, out_features: 16 }, { type: "relu" }, { type: "linear", in_features: 16, out_features: 3 }] };
  const training = { loss: { type: "cross_entropy" } } as const;
  const data = classificationData(30);
  const bytes = file([
    { name: "x", dtype: "F32", shape: [30, 4], values: data.x.flat() },
    { name: "y", dtype: "I64", shape: [30], values: data.y },
  ]);
  const expectSameTable = (binary: Table, inline: Table) => {
    expect([...binary.x]).toEqual([...inline.x]);
    expect([...binary.y]).toEqual([...inline.y]);
    expect({ ...binary, x: null, y: null }).toEqual({ ...inline, x: null, y: null });
  };

  it("a Uint8Array and {safetensors: base64} prepare the same run as the inline rows", () => {
    const inline = prepareRun({ model, data: { train: data, validation: data }, training });
    const fromBytes = prepareRun({ model, data: { train: bytes, validation: bytes }, training });
    const fromBase64 = prepareRun({ model, data: { train: { safetensors: encodeBase64(bytes) } }, training });
    expectSameTable(fromBytes.train, inline.train);
    expectSameTable(fromBytes.validation!, inline.validation!);
    expectSameTable(fromBase64.train, inline.train);
  });

  it("checks against the model still apply: a class label out of range names the row", () => {
    const bad = file([
      { name: "x", dtype: "F32", shape: [2, 4], values: [0, 0, 0, 0, 1, 1, 1, 1] },
      { name: "y", dtype: "I64", shape: [2], values: [0, 7] },
    ]);
    const error = datasetError(() => prepareRun({ model, data: { train: bad }, training }));
    expect(paths(error)).toEqual(["data.train.y[1]"]);
  });

  it("{safetensors}: bad base64 and extra fields name the field", () => {
    expect(() => prepareRun({ model, data: { train: { safetensors: "a$b=" } }, training })).toThrow(/data\.train\.safetensors/);
    const extra = datasetError(() => prepareRun({ model, data: { train: { safetensors: encodeBase64(bytes), y: [1] } as never }, training }));
    expect(paths(extra)).toEqual(["data.train.y"]);
    let caught: unknown;
    try {
      prepareRun({ model, data: { train: { safetensors: encodeBase64(new TextEncoder().encode("x,y\n1,0\n")) } }, training });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(SafetensorsError);
    expect(paths(caught as SafetensorsError)).toEqual(["data.train.safetensors"]);
  });

  it("a typed array of numbers where a dataset goes is one issue, not one per number", () => {
    let caught: unknown;
    try {
      prepareRun({ model, data: { train: new Float32Array(1 << 20) as never }, training });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(EdgetuneError);
    expect((caught as EdgetuneError).errors).toEqual([{ path: "data.train", message: expect.stringMatching(/^is a Float32Array: give rows/) }]);
  });
});
