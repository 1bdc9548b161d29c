import { checkTargets } from "../../../src/engine/targets.js";
import { describe, it, expect } from "vitest";
import { parseCsv, parseJsonl, tableFromInline, MAX_ISSUES, type Table } from "../../../src/formats/dataset.js";
import { DatasetError, type FieldIssue } from "../../../src/errors.js";
import type { DatasetSpec, LossSpec } from "../../../src/schema/request.js";

function issuesOf(run: () => unknown): { issues: FieldIssue[]; error: DatasetError } {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(DatasetError);
  const error = caught as DatasetError;
  expect(error.status).toBe(422);
  return { issues: error.errors, error };
}

const inline = (x: unknown, y: unknown) => () => tableFromInline({ x, y } as DatasetSpec, "data.train");

describe("tableFromInline", () => {
  it("builds a row-major float32 table with scalar targets", () => {
    const table = tableFromInline({ x: [[1, 2], [3, 4], [5, 6]], y: [0, 1, 0.5] }, "data.train");
    expect(table).toMatchObject({ rows: 3, features: 2, targets: 1, targetsWereScalar: true });
    expect([...table.x]).toEqual([1, 2, 3, 4, 5, 6]);
    expect([...table.y]).toEqual([0, 1, 0.5]);
    expect(table.x).toBeInstanceOf(Float32Array);
  });

  it("builds row targets", () => {
    const table = tableFromInline({ x: [[1], [2]], y: [[1, 2], [3, 4]] }, "data.train");
    expect(table).toMatchObject({ rows: 2, features: 1, targets: 2, targetsWereScalar: false });
    expect([...table.y]).toEqual([1, 2, 3, 4]);
  });

  it("x and y of different lengths: path .y", () => {
    const { issues } = issuesOf(inline([[1], [2]], [1]));
    expect(issues).toEqual([{ path: "data.train.y", message: "has 1 targets, but x has 2 rows" }]);
  });

  it("a ragged x row: path .x[i]", () => {
    const x = Array.from({ length: 13 }, () => Array(10).fill(0));
    x[12] = Array(9).fill(0);
    const { issues } = issuesOf(inline(x, Array(13).fill(0)));
    expect(issues).toEqual([{ path: "data.train.x[12]", message: "has 9 values, expected 10 (as x[0])" }]);
  });

  it("a y of the wrong shape: path .y[i]", () => {
    expect(issuesOf(inline([[1], [2], [3]], [0, [1], 2])).issues[0]!.path).toBe("data.train.y[1]");
    const ragged = issuesOf(inline([[1], [2]], [[1, 2], [3]])).issues;
    expect(ragged).toEqual([{ path: "data.train.y[1]", message: "has 1 values, expected 2 (as y[0])" }]);
  });

  it("non-finite values: path .x[i][j] and .y[i]", () => {
    const { issues } = issuesOf(inline([[1, NaN], [Infinity, 2], [-Infinity, 1e39]], [0, NaN, 1]));
    expect(issues).toEqual([
      { path: "data.train.x[0][1]", message: "is NaN" },
      { path: "data.train.x[1][0]", message: "is Infinity" },
      { path: "data.train.x[2][0]", message: "is -Infinity" },
      { path: "data.train.x[2][1]", message: expect.stringContaining("overflows float32") },
      { path: "data.train.y[1]", message: "is NaN" },
    ]);
  });

  it("non-numbers (when called without the schema)", () => {
    expect(issuesOf(inline([[1, "2"]], [0])).issues).toEqual([{ path: "data.train.x[0][1]", message: 'is "2", not a number' }]);
  });

  it("needs at least one row and one feature", () => {
    expect(issuesOf(inline([], [])).issues[0]!.path).toBe("data.train.x");
    expect(issuesOf(inline([[]], [1])).issues).toEqual([{ path: "data.train.x[0]", message: "is empty; each row needs at least one feature" }]);
    expect(issuesOf(inline([[1]], [[]])).issues[0]!.path).toBe("data.train.y[0]");
  });

  it(`stops after ${MAX_ISSUES} issues and says there were more`, () => {
    const x = Array.from({ length: 50 }, () => [NaN]);
    const { issues, error } = issuesOf(inline(x, Array(50).fill(0)));
    expect(issues).toHaveLength(MAX_ISSUES);
    expect(error.message).toMatch(/more/);
    expect(error.message).toContain(`first ${MAX_ISSUES}`);
  });
});

describe("parseCsv", () => {
  const options = { target: "y", field: "data.train" };

  it("reads features in header order and the target column wherever it is", () => {
    const table = parseCsv("a,y,b\n1,0,2\n3,1,4\n", options);
    expect(table).toMatchObject({ rows: 2, features: 2, targets: 1, targetsWereScalar: true });
    expect([...table.x]).toEqual([1, 2, 3, 4]);
    expect([...table.y]).toEqual([0, 1]);
  });

  it("several target columns, in the order named", () => {
    const table = parseCsv("t1,a,t2\n1,5,2\n3,6,4\n", { target: ["t2", "t1"], field: "data.train" });
    expect(table).toMatchObject({ features: 1, targets: 2, targetsWereScalar: false });
    expect([...table.y]).toEqual([2, 1, 4, 3]);
  });

  it("handles a BOM, CRLF, quoted fields with commas, newlines and \"\" escapes, and trailing blank lines", () => {
    const text = '\uFEFF"feat ""one""",  "b,c" ,y\r\n" 1.5 ",2,0\r\n"-3","4",1\r\n\r\n\r\n';
    const table = parseCsv(text, options);
    expect(table.rows).toBe(2);
    expect([...table.x]).toEqual([1.5, 2, -3, 4]);
    expect([...table.y]).toEqual([0, 1]);
  });

  it("counts lines through quoted newlines and CRLF", () => {
    const text = 'a,y\r\n1,0\r\n"2\n",1\r\nbad,0\r\n';
    // The quoted newline is inside a number cell, so that record is an error too; check the next line number.
    const { issues } = issuesOf(() => parseCsv(text, options));
    expect(issues.map((i) => i.line)).toEqual([3, 5]);
  });

  it("accepts number spellings users write and trims spaces around them", () => {
    const table = parseCsv("a,y\n1,0\n-2.5,0\n1e-3,0\n.5,0\n+4,0\n5.,0\n 6 ,0\n2E+2,0\n", options);
    expect([...table.x]).toEqual([1, -2.5, 1e-3, 0.5, 4, 5, 6, 200].map(Math.fround));
  });

  it("skips blank lines between rows", () => {
    expect(parseCsv("a,y\n1,0\n\n  \n2,1\n", options).rows).toBe(2);
  });

  it("missing target column: lists the header names", () => {
    const { issues } = issuesOf(() => parseCsv("a,b,label\n1,2,3\n", options));
    expect(issues).toEqual([{ path: "data.train", line: 1, column: "y", message: 'target column "y" not found; the header has "a", "b", "label"' }]);
  });

  it("duplicate header names", () => {
    const { issues } = issuesOf(() => parseCsv("a,y,a\n1,2,3\n", options));
    expect(issues).toEqual([{ path: "data.train", line: 1, column: "a", message: 'header name "a" appears in columns 1 and 3' }]);
  });

  it("an empty header name (a pandas index column)", () => {
    const { issues } = issuesOf(() => parseCsv(",a,y\n0,1,2\n", options));
    expect(issues[0]).toMatchObject({ path: "data.train", line: 1, message: expect.stringContaining("empty") });
  });

  it("ragged rows", () => {
    const { issues } = issuesOf(() => parseCsv("a,b,c,d,e,y\n1,2,3,4,5,6\n1,2,3,4,5\n", options));
    expect(issues).toEqual([{ path: "data.train", line: 3, message: "has 5 fields, header has 6" }]);
  });

  it("not a number: quotes the text; rejects empty cells, 1abc, 0x10", () => {
    const { issues } = issuesOf(() => parseCsv("a,b,y\n1abc,,0\n0x10,1,0\n1_0,1 2,0\n", options));
    expect(issues).toEqual([
      { path: "data.train", line: 2, column: "a", message: 'is not a number: "1abc"' },
      { path: "data.train", line: 2, column: "b", message: "is empty, expected a number" },
      { path: "data.train", line: 3, column: "a", message: 'is not a number: "0x10"' },
      { path: "data.train", line: 4, column: "a", message: 'is not a number: "1_0"' },
      { path: "data.train", line: 4, column: "b", message: 'is not a number: "1 2"' },
    ]);
  });

  it("NaN and Infinity in any spelling", () => {
    const { issues } = issuesOf(() => parseCsv("a,y\nNaN,0\nnan,0\n-NAN,0\nInfinity,0\n-inf,0\nINF,0\n1e39,0\n1e400,y\n", options));
    expect(issues.map((i) => [i.line, i.message])).toEqual([
      [2, "is NaN"],
      [3, "is NaN"],
      [4, "is NaN"],
      [5, 'is not finite ("Infinity")'],
      [6, 'is not finite ("-inf")'],
      [7, 'is not finite ("INF")'],
      [8, expect.stringContaining("is not finite in float32")],
      [9, expect.stringContaining("is not finite in float32")],
      [9, 'is not a number: "y"'],
    ]);
    expect(issues[8]!.column).toBe("y");
  });

  it("unterminated quotes and text after a closing quote", () => {
    expect(issuesOf(() => parseCsv('a,y\n"1,0\n2,1\n', options)).issues).toEqual([
      { path: "data.train", line: 2, message: "has a quoted field that is never closed" },
    ]);
    expect(issuesOf(() => parseCsv('a,y\n"1"x,0\n', options)).issues[0]).toMatchObject({ line: 2, message: expect.stringContaining("after a closing quote") });
  });

  it("an empty file, a header without rows, and no feature columns", () => {
    expect(issuesOf(() => parseCsv("", options)).issues[0]!.message).toContain("header row is required");
    expect(issuesOf(() => parseCsv("\uFEFF\n\n", options)).issues[0]!.message).toContain("header row is required");
    expect(issuesOf(() => parseCsv("a,y\n", options)).issues[0]!.message).toContain("no data rows");
    expect(issuesOf(() => parseCsv("y\n1\n", options)).issues[0]!.message).toContain("no feature columns");
  });

  it(`reports the first ${MAX_ISSUES} issues, then stops and says there were more`, () => {
    const text = "a,y\n" + "x,0\n".repeat(100);
    const { issues, error } = issuesOf(() => parseCsv(text, options));
    expect(issues).toHaveLength(MAX_ISSUES);
    expect(issues[MAX_ISSUES - 1]!.line).toBe(MAX_ISSUES + 1);
    expect(error.message).toMatch(/more/);
  });

  it("parses 10,000 rows x 100 columns in one pass (values land in the right cells)", () => {
    const header = [...Array.from({ length: 99 }, (_, i) => `f${i}`), "y"].join(",");
    const lines = [header];
    for (let r = 0; r < 10_000; r++) {
      const cells = Array.from({ length: 99 }, (_, c) => ((r * 31 + c * 7) % 1000) / 8 - 60);
      lines.push([...cells, r % 3].join(","));
    }
    const text = lines.join("\n");
    const table = parseCsv(text, options);
    expect(table).toMatchObject({ rows: 10_000, features: 99, targets: 1 });
    expect(table.x[9_999 * 99 + 98]).toBe(((9_999 * 31 + 98 * 7) % 1000) / 8 - 60);
    expect(table.y[9_999]).toBe(9_999 % 3);
  });
});

describe("parseJsonl", () => {
  const options = { field: "data.validation" };

  it("reads rows, skipping blank lines, with scalar or row targets", () => {
    const scalar = parseJsonl('{"x":[1,2],"y":0}\n\n{"x":[3,4],"y":1}\r\n   \n', options);
    expect(scalar).toMatchObject({ rows: 2, features: 2, targets: 1, targetsWereScalar: true });
    expect([...scalar.x]).toEqual([1, 2, 3, 4]);
    const rows = parseJsonl('\uFEFF{"x":[1],"y":[1,2]}\n{"y":[3,4],"x":[2]}', options);
    expect(rows).toMatchObject({ rows: 2, features: 1, targets: 2, targetsWereScalar: false });
    expect([...rows.y]).toEqual([1, 2, 3, 4]);
  });

  it("invalid JSON names the line", () => {
    const { issues } = issuesOf(() => parseJsonl('{"x":[1],"y":0}\n{"x":[1],"y":\n', options));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ path: "data.validation", line: 2, message: expect.stringContaining("not valid JSON") });
  });

  it("not an object, missing x or y", () => {
    const { issues } = issuesOf(() => parseJsonl('[1,2]\n{"y":0}\n{"x":[1]}\n{}\n', options));
    expect(issues).toEqual([
      { path: "data.validation", line: 1, message: expect.stringContaining("expected an object") },
      { path: "data.validation", line: 2, column: "x", message: 'has no "x"' },
      { path: "data.validation", line: 3, column: "y", message: 'has no "y"' },
      { path: "data.validation", line: 4, column: "x", message: 'has no "x"' },
      { path: "data.validation", line: 4, column: "y", message: 'has no "y"' },
    ]);
  });

  it("non-finite and non-number values", () => {
    const { issues } = issuesOf(() => parseJsonl('{"x":[1e999, "a"],"y":0}\n{"x":[1,2],"y":1e39}\n', options));
    expect(issues).toEqual([
      { path: "data.validation", line: 1, column: "x", message: '"x"[0] is Infinity' },
      { path: "data.validation", line: 1, column: "x", message: '"x"[1] is "a", not a number' },
      { path: "data.validation", line: 2, column: "y", message: expect.stringContaining("overflows float32") },
    ]);
  });

  it("ragged x and y", () => {
    const { issues } = issuesOf(() => parseJsonl('{"x":[1,2],"y":0}\n{"x":[1],"y":0}\n{"x":[1,2],"y":[0]}\n', options));
    expect(issues).toEqual([
      { path: "data.validation", line: 2, column: "x", message: '"x" has 1 values, expected 2 (as on line 1)' },
      { path: "data.validation", line: 3, column: "y", message: '"y" is a list of 1, expected a number (as on line 1)' },
    ]);
  });

  it("an empty file and an empty x", () => {
    expect(issuesOf(() => parseJsonl("\n\n", options)).issues[0]!.message).toContain("no rows");
    expect(issuesOf(() => parseJsonl('{"x":[],"y":0}', options)).issues[0]).toMatchObject({ line: 1, column: "x" });
  });

  it("grows past its first size guess (lines longer than one row are fine too)", () => {
    const text = Array.from({ length: 1000 }, (_, i) => `{"x":[${i}],"y":${i % 2}}`).join("\n");
    const table = parseJsonl(text, options);
    expect(table.rows).toBe(1000);
    expect(table.x[999]).toBe(999);
    expect(table.x.length).toBe(1000);
  });
});

describe("checkTargets", () => {
  const table = (y: number[], targets = 1, scalar = targets === 1): Table => ({
    rows: y.length / targets,
    features: 1,
    targets,
    x: new Float32Array(y.length / targets),
    y: Float32Array.from(y),
    targetsWereScalar: scalar,
  });
  const crossEntropy: LossSpec = { type: "cross_entropy", weight: null, ignore_index: -100, label_smoothing: 0 };
  const check = (t: Table, loss: LossSpec, outputs: number) => () => checkTargets(t, loss, outputs, "data.train");

  for (const loss of [{ type: "mse" }, { type: "l1" }, { type: "huber", delta: 1 }, { type: "smooth_l1", beta: 1 }] as LossSpec[]) {
    it(`${loss.type}: needs one target per output`, () => {
      expect(check(table([1, 2, 3, 4], 2), loss, 2)).not.toThrow();
      const { issues } = issuesOf(check(table([1, 2, 3, 4], 2), loss, 1));
      expect(issues).toEqual([{ path: "data.train.y", message: expect.stringContaining("needs 1 target value per row") }]);
      expect(issues[0]!.message).toContain("have 2");
    });
  }

  it("cross_entropy: class indices in range, or ignore_index", () => {
    expect(check(table([0, 1, 2, -100]), crossEntropy, 3)).not.toThrow();
    const { issues } = issuesOf(check(table([0, 1, 2, 0, 0, 0, 0, 7, 1.5, -1]), crossEntropy, 3));
    expect(issues).toEqual([
      { path: "data.train.y[7]", message: "row 7: label 7 is out of range for 3 classes (0..2) (or ignore_index -100)" },
      { path: "data.train.y[8]", message: "row 8: label 1.5 is not an integer class index (or ignore_index -100)" },
      { path: "data.train.y[9]", message: "row 9: label -1 is out of range for 3 classes (0..2) (or ignore_index -100)" },
    ]);
    expect(check(table([-1, 2]), { ...crossEntropy, ignore_index: -1 }, 3)).not.toThrow();
  });

  it("cross_entropy: every label ignored is a 422 (the mean over no labels is NaN)", () => {
    expect(issuesOf(check(table([-100, -100]), crossEntropy, 3)).issues).toEqual([
      { path: "data.train.y", message: "every label is ignore_index -100: the loss would be the mean over no labels (NaN); give at least one class index" },
    ]);
    expect(issuesOf(check(table([-1]), { ...crossEntropy, ignore_index: -1 }, 3)).issues).toHaveLength(1);
  });

  it("cross_entropy: one target column", () => {
    const { issues } = issuesOf(check(table([0, 1, 0, 1, 0, 0], 3), crossEntropy, 3));
    expect(issues).toEqual([{ path: "data.train.y", message: expect.stringContaining("one class index per row") }]);
  });

  it("multi_margin: class indices in range, no ignore_index", () => {
    const loss: LossSpec = { type: "multi_margin", p: 1, margin: 1, weight: null };
    expect(check(table([0, 1]), loss, 2)).not.toThrow();
    expect(issuesOf(check(table([0, -100]), loss, 2)).issues).toEqual([
      { path: "data.train.y[1]", message: "row 1: label -100 is out of range for 2 classes (0..1)" },
    ]);
    expect(issuesOf(check(table([0, 1, 0, 1], 2), loss, 2)).issues[0]!.path).toBe("data.train.y");
  });

  it("bce_with_logits: one label per output, in [0, 1]", () => {
    const loss: LossSpec = { type: "bce_with_logits", pos_weight: null };
    expect(check(table([0, 0.25, 1, 0], 2), loss, 2)).not.toThrow();
    expect(issuesOf(check(table([0, 1], 1), loss, 2)).issues[0]!.path).toBe("data.train.y");
    expect(issuesOf(check(table([0, 1.1, -0.5, 1], 2), loss, 2)).issues).toEqual([
      { path: "data.train.y[0][1]", message: "row 0: target 1.1 is outside [0, 1]" },
      { path: "data.train.y[1][0]", message: "row 1: target -0.5 is outside [0, 1]" },
    ]);
  });

  it("hinge: one label per output, in {-1, 0, 1}", () => {
    const loss: LossSpec = { type: "hinge" };
    expect(check(table([-1, 0, 1]), loss, 1)).not.toThrow();
    expect(issuesOf(check(table([1, 0.5, 2]), loss, 1)).issues).toEqual([
      { path: "data.train.y[1]", message: "row 1: target 0.5 must be -1, 0 or 1 (0 counts as -1)" },
      { path: "data.train.y[2]", message: "row 2: target 2 must be -1, 0 or 1 (0 counts as -1)" },
    ]);
    expect(issuesOf(check(table([1, 0]), loss, 2)).issues[0]!.path).toBe("data.train.y");
  });
});

describe("the JSON path (issue 17, item 2): numbers checked as they are written, reports capped", () => {
  it("a large table is written exactly, every value as Math.fround of the input", () => {
    // more rows than the builder reserves for text input (1 MiB of float32): inline rows are sized once
    const rows = 1500, features = 784;
    const x = Array.from({ length: rows }, (_, r) => Array.from({ length: features }, (_, c) => (r * features + c) / 7));
    const table = tableFromInline({ x, y: x.map((_, r) => r % 10) }, "data.train");
    expect(table).toMatchObject({ rows, features, targets: 1 });
    expect(table.x.length).toBe(rows * features);
    expect(table.x[rows * features - 1]).toBe(Math.fround((rows * features - 1) / 7));
    expect(table.y[rows - 1]).toBe((rows - 1) % 10);
  });

  it("rows given as typed arrays are reported once per row, up to MAX_ISSUES, not once per number", () => {
    const x: unknown[] = Array.from({ length: 5000 }, () => new Float32Array(784));
    x[0] = new Array(784).fill(0);
    const { issues, error } = issuesOf(inline(x, new Array(5000).fill(0)));
    expect(issues).toHaveLength(MAX_ISSUES);
    expect(issues[0]).toEqual({ path: "data.train.x[1]", message: "is a Float32Array (a typed array, not a list), expected a list of 784 numbers like x[0]" });
    expect(error.message).toMatch(/showing the first 20 issues/);
  });

  it("a bad value past a good prefix names its row and column", () => {
    const x = [[1, 2, 3], [4, "5", 6], [7, 8, 1e39]];
    expect(issuesOf(inline(x, [0, 1, 2])).issues).toEqual([
      { path: "data.train.x[1][1]", message: 'is "5", not a number' },
      { path: "data.train.x[2][2]", message: "is 1e+39, which overflows float32 (largest finite value about 3.4e38)" },
    ]);
  });

  it("zod's report of a request field is capped too: 100,000 wrong values are 20 issues", async () => {
    const { prepareRun } = await import("../../../src/engine/prepare.js");
    const { RequestValidationError } = await import("../../../src/errors.js");
    let caught: unknown;
    try {
      prepareRun({ model: { layers: [{ type: "linear", in_features: 1, out_features: 1 }] }, trainable: new Array(100_000).fill(5) as never, data: { train: { x: [[1]], y: [1] } } });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(RequestValidationError);
    const errors = (caught as InstanceType<typeof RequestValidationError>).errors;
    expect(errors).toHaveLength(20);
    expect(errors[0]!.path).toBe("trainable[0]");
    expect(errors[19]!.message).toMatch(/\(and 99980 more issues: showing the first 20\)$/);
  });
});
