/**
 * Text rows (`text`, `text_pair`, `y` or `label`) in inline JSON, CSV and JSONL, held as strings
 * until the tokenizer runs; and token_type_ids as a column of token rows.
 */
import { checkTargets } from "../../../src/engine/targets.js";
import { describe, expect, it } from "vitest";
import { parseCsv, parseJsonl, tableFromInline, type Table } from "../../../src/formats/dataset.js";
import { DatasetError, type FieldIssue } from "../../../src/errors.js";
import type { DatasetSpec } from "../../../src/schema/request.js";

function issuesOf(run: () => unknown): FieldIssue[] {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(DatasetError);
  return (caught as DatasetError).errors;
}
const inline = (d: Record<string, unknown>) => tableFromInline(d as DatasetSpec, "data.train");

describe("inline text rows", () => {
  it("text, text_pair and y: the strings as given, no features yet", () => {
    const t = inline({ text: ["a, b", 'say "hi"'], text_pair: ["x", "y"], y: [1, 0] });
    expect(t).toMatchObject({ rows: 2, features: 0, targets: 1, targetsWereScalar: true, text: ["a, b", 'say "hi"'], textPair: ["x", "y"] });
    expect([...t.y]).toEqual([1, 0]);
    expect(t.ids).toBeUndefined();
  });

  it("label is the target as Hugging Face datasets name it; no target at all is no targets", () => {
    expect([...inline({ text: ["a", "b"], label: [0, 2] }).y]).toEqual([0, 2]);
    const t = inline({ text: ["a", "b"] });
    expect(t).toMatchObject({ targets: 0, rows: 2 });
    expect(t.textPair).toBeUndefined();
  });

  it("names the offending row or field", () => {
    expect(issuesOf(() => inline({ text: ["a", 3] }))).toEqual([{ path: "data.train.text[1]", message: "is 3, not a string" }]);
    expect(issuesOf(() => inline({ text: ["a", "b"], text_pair: ["x"] }))[0]).toMatchObject({ path: "data.train.text_pair", message: "has 1 rows, but text has 2" });
    expect(issuesOf(() => inline({ text: ["a"], y: [1], label: [1] }))[0]).toMatchObject({ path: "data.train.label" });
    expect(issuesOf(() => inline({ text: ["a"], label: [NaN] }))[0]).toMatchObject({ path: "data.train.label[0]", message: "is NaN" });
    expect(issuesOf(() => inline({ text: ["a"], labels: [1] }))[0]).toMatchObject({ path: "data.train.labels", message: expect.stringContaining("text, text_pair, y or label") });
    expect(issuesOf(() => inline({ text: [] }))[0]).toMatchObject({ path: "data.train.text", message: expect.stringContaining("no rows") });
  });

  it("a table without targets is refused by a loss that needs them, at y", () => {
    const t = inline({ text: ["a"] });
    expect(issuesOf(() => checkTargets(t, { type: "cross_entropy", weight: null, ignore_index: -100, label_smoothing: 0 }, 2, "data.train"))).toEqual([
      { path: "data.train.y", message: expect.stringContaining("no targets") },
    ]);
  });
});

describe("CSV text rows", () => {
  it("RFC 4180: commas, doubled quotes and line breaks stay in the text; y is a number", () => {
    const csv = 'text,text_pair,y\r\n"Hello, world!","She said ""hi""",1\r\n"two\nlines",plain,0\r\n';
    const t = parseCsv(csv, { target: "y", field: "data.train" });
    expect(t.text).toEqual(["Hello, world!", "two\nlines"]);
    expect(t.textPair).toEqual(['She said "hi"', "plain"]);
    expect([...t.y]).toEqual([1, 0]);
    expect([...t.lines!]).toEqual([2, 3]);
  });

  it("with the default target y absent, label is the target; with neither, there is none", () => {
    expect([...parseCsv("label,text\n2,good\n0,bad\n", { target: "y", field: "data.train" }).y]).toEqual([2, 0]);
    const t = parseCsv("text\nonce upon a time\nthe end\n", { target: "y", field: "data.train" });
    expect(t).toMatchObject({ rows: 2, targets: 0, text: ["once upon a time", "the end"] });
  });

  it("a named target column must exist; other columns are refused; a bad label names line and column", () => {
    expect(issuesOf(() => parseCsv("text,y\na,1\n", { target: "stars", field: "data.train" }))[0]).toMatchObject({ line: 1, column: "stars" });
    expect(issuesOf(() => parseCsv("text,y,id\na,1,7\n", { target: "y", field: "data.train" }))[0]).toMatchObject({ line: 1, column: "id", message: expect.stringContaining("text, text_pair") });
    expect(issuesOf(() => parseCsv("text,y\na,1\nb,x\n", { target: "y", field: "data.train" }))).toEqual([
      { path: "data.train", line: 3, column: "y", message: 'is not a number: "x"' },
    ]);
    expect(issuesOf(() => parseCsv("text,y\na,1,2\n", { target: "y", field: "data.train" }))[0]).toMatchObject({ line: 2, message: "has 3 fields, header has 2" });
  });

  it("several target columns make a row of targets", () => {
    const t = parseCsv("text,a,b\nx,1,2\n", { target: ["a", "b"], field: "data.train" });
    expect(t).toMatchObject({ targets: 2, targetsWereScalar: false });
    expect([...t.y]).toEqual([1, 2]);
  });
});

describe("JSONL text rows", () => {
  it("one {text, text_pair?, y | label} per line", () => {
    const t = parseJsonl('{"text": "good", "label": 1}\n\n{"text": "bad", "label": 0}\n', { field: "data.train" });
    expect(t).toMatchObject({ rows: 2, targets: 1, text: ["good", "bad"] });
    expect([...t.y]).toEqual([1, 0]);
    expect([...t.lines!]).toEqual([1, 3]);
    expect(parseJsonl('{"text": "a b c"}\n', { field: "data.train" })).toMatchObject({ targets: 0 });
  });

  it("every line is the same kind, with the same fields", () => {
    const cases: [string, Partial<FieldIssue>][] = [
      ['{"text": "a", "y": 1}\n{"text": "b", "text_pair": "c", "y": 1}\n', { line: 2, column: "text_pair" }],
      ['{"text": "a", "y": 1}\n{"text": "b"}\n', { line: 2, column: "y" }],
      ['{"text": "a", "y": 1}\n{"text": "b", "label": 1}\n', { line: 2, column: "label" }],
      ['{"text": "a", "y": 1, "label": 1}\n', { line: 1, column: "label" }],
      ['{"text": 5, "y": 1}\n', { line: 1, column: "text" }],
      ['{"text": "a", "y": 1}\n{"x": [1], "y": 1}\n', { line: 2, column: "x" }],
      ['{"x": [1], "y": 1}\n{"text": "a", "y": 1}\n', { line: 2, column: "text" }],
      ['{"text": "a", "y": [1, 2]}\n{"text": "b", "y": 3}\n', { line: 2, column: "y" }],
    ];
    for (const [jsonl, expected] of cases) expect(issuesOf(() => parseJsonl(jsonl, { field: "data.train" }))[0]).toMatchObject(expected);
  });
});

describe("class names as targets (mapped to indices by the engine, through the model's label2id)", () => {
  it("inline: a string first target makes every target a name, kept with the table; y waits at 0", () => {
    const t = inline({ text: ["a", "b", "c"], label: ["pos", "neg", "pos"] });
    expect(t.labelNames).toEqual({ names: ["pos", "neg", "pos"], column: "label" });
    expect(t).toMatchObject({ rows: 3, targets: 1, targetsWereScalar: true });
    expect([...t.y]).toEqual([0, 0, 0]);
    expect(inline({ text: ["a"], y: [1] }).labelNames).toBeUndefined();
    expect(issuesOf(() => inline({ text: ["a", "b", "c"], y: ["pos", 1, " "] }))).toEqual([
      { path: "data.train.y[1]", message: 'is 1, but the first target is a class name ("pos"): give every target as a name, or every one as a class index' },
      { path: "data.train.y[2]", message: "is an empty class name" },
    ]);
    // a number first keeps them numbers, as before
    expect(issuesOf(() => inline({ text: ["a", "b"], y: [1, "pos"] }))).toEqual([{ path: "data.train.y[1]", message: 'is "pos", not a number' }]);
  });

  it("JSONL: a string on the first row makes names; lines are kept for the engine's issues", () => {
    const t = parseJsonl('{"text": "good", "label": "pos"}\n\n{"text": "bad", "label": "neg"}\n', { field: "data.train" });
    expect(t.labelNames).toEqual({ names: ["pos", "neg"], column: "label" });
    expect([...t.lines!]).toEqual([1, 3]);
    expect(issuesOf(() => parseJsonl('{"text": "a", "y": "pos"}\n{"text": "b", "y": 0}\n', { field: "data.train" }))).toEqual([
      { path: "data.train", line: 2, column: "y", message: `"y" is 0, but line 1's target is a class name ("pos"): give every target as a name, or every one as a class index` },
    ]);
  });

  it("CSV: a first cell that is no number makes names, and then every cell is a name as written (\"1\" too)", () => {
    const t = parseCsv("text,label\ngood,positive\nok, 1 \n\"bad\",\"very, negative\"\n", { target: "y", field: "data.train" });
    expect(t.labelNames).toEqual({ names: ["positive", "1", "very, negative"], column: "label" });
    expect(issuesOf(() => parseCsv("text,y\na,pos\nb,\n", { target: "y", field: "data.train" }))).toEqual([
      { path: "data.train", line: 3, column: "y", message: '"y" is an empty class name' },
    ]);
    // a number, or an empty cell, first: numbers, as before
    expect(issuesOf(() => parseCsv("text,y\na,1\nb,pos\n", { target: "y", field: "data.train" }))).toEqual([{ path: "data.train", line: 3, column: "y", message: 'is not a number: "pos"' }]);
    expect(issuesOf(() => parseCsv("text,y\na,\nb,pos\n", { target: "y", field: "data.train" }))[0]).toMatchObject({ line: 2, column: "y" });
    // several target columns are values, never names
    expect(issuesOf(() => parseCsv("text,a,b\nx,pos,2\n", { target: ["a", "b"], field: "data.train" }))[0]).toMatchObject({ line: 2, column: "a", message: 'is not a number: "pos"' });
  });
});

describe("token_type_ids of token rows", () => {
  const types = (t: Table) => [...t.tokenTypes!];

  it("inline: the same shape as input_ids", () => {
    const t = inline({ input_ids: [[101, 7, 102, 8, 102]], token_type_ids: [[0, 0, 0, 1, 1]], y: [1] });
    expect(types(t)).toEqual([0, 0, 0, 1, 1]);
    expect(inline({ input_ids: [[1, 2]], y: [1] }).tokenTypes).toBeUndefined();
    expect(issuesOf(() => inline({ input_ids: [[1, 2]], token_type_ids: [[0]], y: [1] }))[0]).toMatchObject({ path: "data.train.token_type_ids[0]" });
    expect(issuesOf(() => inline({ input_ids: [[1, 2]], token_type_ids: [[0, -1]], y: [1] }))[0]).toMatchObject({ path: "data.train.token_type_ids[0][1]" });
  });

  it("CSV and JSONL: a column, on every row or on none", () => {
    const csv = parseCsv("input_ids,token_type_ids,y\n1 2 3,0 1 1,0\n4 5 6,0 0 1,1\n", { target: "y", field: "data.train" });
    expect(types(csv)).toEqual([0, 1, 1, 0, 0, 1]);
    const jsonl = parseJsonl('{"input_ids": [1, 2], "token_type_ids": [0, 1], "y": 0}\n', { field: "data.train" });
    expect(types(jsonl)).toEqual([0, 1]);
    expect(issuesOf(() => parseJsonl('{"input_ids": [1, 2], "token_type_ids": [0, 1], "y": 0}\n{"input_ids": [1, 2], "y": 0}\n', { field: "data.train" }))[0]).toMatchObject({
      line: 2,
      column: "token_type_ids",
    });
    expect(issuesOf(() => parseJsonl('{"input_ids": [1, 2], "token_type_ids": [0, 0.5], "y": 0}\n', { field: "data.train" }))[0]).toMatchObject({ line: 1, column: "token_type_ids" });
  });
});
