/**
 * Token rows in every format: inline JSON ({input_ids, attention_mask?, y}), JSONL lines and
 * CSV columns, with the issues naming the row (inline) or the line and column (file parts).
 */
import { checkTokenIds } from "../../../src/engine/targets.js";
import { describe, expect, it } from "vitest";
import { parseCsv, parseJsonl, tableFromInline } from "../../../src/formats/dataset.js";
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
  expect((caught as DatasetError).status).toBe(422);
  return (caught as DatasetError).errors;
}

const inline = (d: Record<string, unknown>) => () => tableFromInline(d as DatasetSpec, "data.train");

describe("inline token rows", () => {
  it("ids, the mask and scalar targets become a token table", () => {
    const t = tableFromInline({ input_ids: [[5, 9, 0], [7, 0, 0]], attention_mask: [[1, 1, 0], [1, 0, 0]], y: [1, 0] } as DatasetSpec, "data.train");
    expect(t).toMatchObject({ rows: 2, features: 3, targets: 1, ids: true, targetsWereScalar: true });
    expect([...t.x]).toEqual([5, 9, 0, 7, 0, 0]);
    expect([...t.mask!]).toEqual([1, 1, 0, 1, 0, 0]);
    expect([...t.y]).toEqual([1, 0]);
  });

  it("without attention_mask every token counts (no mask); per-token targets are rows", () => {
    const t = tableFromInline({ input_ids: [[1, 2], [3, 4]], y: [[0, -100], [1, 2]] } as DatasetSpec, "data.train");
    expect(t.mask).toBeUndefined();
    expect(t).toMatchObject({ targets: 2, targetsWereScalar: false, ids: true });
    expect([...t.y]).toEqual([0, -100, 1, 2]);
  });

  it("a ragged row is named, with both lengths and the remedy", () => {
    expect(issuesOf(inline({ input_ids: [[1, 2, 3], [1, 2]], y: [0, 1] }))).toEqual([
      { path: "data.train.input_ids[1]", message: "has 2 token ids, but input_ids[0] has 3: pad every row to one length (and mark the padding with attention_mask 0)" },
    ]);
  });

  it("ids that are not integers in [0, 2^24) are named by row and position", () => {
    const issues = issuesOf(inline({ input_ids: [[1, 2.5], [-1, 3], [2 ** 24, 1], ["7", 1]], y: [0, 0, 0, 0] }));
    expect(issues.map((i) => i.path)).toEqual(["data.train.input_ids[0][1]", "data.train.input_ids[1][0]", "data.train.input_ids[2][0]", "data.train.input_ids[3][0]"]);
    expect(issues[0]!.message).toBe("is 2.5, not an integer token id");
    expect(issues[1]!.message).toBe("is -1; token ids are >= 0");
    expect(issues[2]!.message).toMatch(/below 2\^24 = 16777216/);
    expect(issues[3]!.message).toBe('is "7", not a token id (an integer)');
  });

  it("a mask value other than 0/1, a row of padding only, a mask of another shape", () => {
    const issues = issuesOf(inline({ input_ids: [[1, 2], [3, 4], [5, 6], [7, 8]], attention_mask: [[1, 2], [0, 0], [1], [1, 0]], y: [0, 1, 0, 1] }));
    expect(issues).toEqual([
      { path: "data.train.attention_mask[0][1]", message: "is 2; attention_mask holds 1 (a token) or 0 (padding)" },
      { path: "data.train.attention_mask[1]", message: expect.stringMatching(/^has no token with mask 1/) },
      { path: "data.train.attention_mask[2]", message: "has 1 values, but input_ids[2] has 2 token ids: the mask has one 0/1 per token" },
    ]);
  });

  it("a mask with another number of rows, and x beside input_ids", () => {
    expect(issuesOf(inline({ input_ids: [[1]], attention_mask: [[1], [1]], y: [0] }))).toEqual([
      { path: "data.train.attention_mask", message: "has 2 rows, but input_ids has 1" },
    ]);
    expect(issuesOf(inline({ input_ids: [[1]], x: [[1]], y: [0] }))[0]).toMatchObject({ path: "data.train.x", message: expect.stringMatching(/input_ids instead of x/) });
  });

  it("targets are checked as for feature rows", () => {
    expect(issuesOf(inline({ input_ids: [[1], [2]], y: [0] }))).toEqual([{ path: "data.train.y", message: "has 1 targets, but input_ids has 2 rows" }]);
  });
});

describe("checkTokenIds: ids against the embedding's vocabulary", () => {
  const vocabulary = { size: 10, path: "model.layers[0]" };
  it("an id of num_embeddings or more names the row, the id and the vocabulary (once per row)", () => {
    const t = tableFromInline({ input_ids: [[1, 2], [3, 10], [12, 11]], y: [0, 0, 0] } as DatasetSpec, "data.train");
    expect(issuesOf(() => checkTokenIds(t, vocabulary, "data.train"))).toEqual([
      { path: "data.train.input_ids[1]", message: "row 1: token id 10 (position 1) is outside the vocabulary of model.layers[0]: num_embeddings is 10, so ids are 0..9" },
      { path: "data.train.input_ids[2]", message: "row 2: token id 12 (position 0) is outside the vocabulary of model.layers[0]: num_embeddings is 10, so ids are 0..9" },
    ]);
    expect(() => checkTokenIds(t, { size: 13, path: "x" }, "data.train")).not.toThrow();
  });

  it("rows read from a file part are named by their line", () => {
    const t = parseJsonl('{"input_ids":[1,2],"y":0}\n\n{"input_ids":[3,10],"y":1}\n', { field: "data.train" });
    expect(issuesOf(() => checkTokenIds(t, vocabulary, "data.train"))).toEqual([
      { path: "data.train", line: 3, column: "input_ids", message: expect.stringMatching(/^row 1: token id 10 \(position 1\)/) },
    ]);
  });
});

describe("JSONL token rows", () => {
  it('{"input_ids", "attention_mask", "y"} per line', () => {
    const t = parseJsonl('{"input_ids":[4,5,0],"attention_mask":[1,1,0],"y":2}\n{"input_ids":[6,0,0],"attention_mask":[1,0,0],"y":[1]}\n'.replace('"y":[1]', '"y":1'), { field: "data.train" });
    expect(t).toMatchObject({ rows: 2, features: 3, ids: true, targetsWereScalar: true });
    expect([...t.x]).toEqual([4, 5, 0, 6, 0, 0]);
    expect([...t.mask!]).toEqual([1, 1, 0, 1, 0, 0]);
    expect([...t.lines!]).toEqual([1, 2]);
  });

  it("issues carry the line and the column", () => {
    const text = [
      '{"input_ids":[1,2,3],"attention_mask":[1,1,0],"y":0}',
      '{"input_ids":[1,2],"attention_mask":[1,1],"y":0}',
      '{"input_ids":[1,2,3],"y":0}',
      '{"input_ids":[1,2.5,3],"attention_mask":[1,1,1],"y":0}',
      '{"input_ids":[1,2,3],"attention_mask":[0,0,0],"y":0}',
      '{"x":[1,2,3],"y":0}',
      '{"input_ids":[1,2,3],"attention_mask":[1,1,1],"y":0,"label":1}',
    ].join("\n");
    const issues = issuesOf(() => parseJsonl(text, { field: "data.train" }));
    expect(issues.map((i) => [i.line, i.column])).toEqual([
      [2, "input_ids"], [3, "attention_mask"], [4, "input_ids"], [5, "attention_mask"], [6, "x"], [7, "label"],
    ]);
    expect(issues[0]!.message).toMatch(/has 2 token ids, expected 3 \(as on line 1\): pad every row/);
    expect(issues[1]!.message).toMatch(/no "attention_mask", but line 1 has one/);
    expect(issues[2]!.message).toBe('"input_ids"[1] is 2.5, not an integer token id');
    expect(issues[3]!.message).toMatch(/^"attention_mask" has no token with mask 1/);
  });

  it("rows without y (a causal LM's) make a table without targets; y on some rows only is refused", () => {
    const t = parseJsonl('{"input_ids":[4,5,0],"attention_mask":[1,1,0]}\n{"input_ids":[6,7,8],"attention_mask":[1,1,1]}\n', { field: "data.train" });
    expect(t).toMatchObject({ rows: 2, features: 3, targets: 0, ids: true });
    expect([...t.x]).toEqual([4, 5, 0, 6, 7, 8]);
    const mixed = issuesOf(() => parseJsonl('{"input_ids":[1,2]}\n{"input_ids":[3,4],"y":1}\n{"input_ids":[5,6]}\n', { field: "data.train" }));
    expect(mixed).toEqual([{ path: "data.train", line: 2, column: "y", message: expect.stringMatching(/^"y" is given, but line 1 has none: give it on every row or on none/) }]);
    const missing = issuesOf(() => parseJsonl('{"input_ids":[1,2],"y":0}\n{"input_ids":[3,4]}\n', { field: "data.train" }));
    expect(missing).toEqual([{ path: "data.train", line: 2, column: "y", message: 'has no "y", but line 1 has one: give it on every row or on none' }]);
  });

  it("feature lines after token lines are refused (one kind per file)", () => {
    const issues = issuesOf(() => parseJsonl('{"x":[1],"y":0}\n{"input_ids":[1],"y":0}\n', { field: "data.train" }));
    expect(issues).toEqual([{ path: "data.train", line: 2, column: "input_ids", message: expect.stringMatching(/feature rows \("x", first on line 1\)/) }]);
  });
});

describe("CSV token rows", () => {
  it("space-separated integers, or lists as pandas writes them", () => {
    const csv = 'input_ids,attention_mask,y\n101 7 102 0,1 1 1 0,2\n"[101, 9, 0, 0]","[1, 1, 0, 0]",1\n';
    const t = parseCsv(csv, { target: "y", field: "data.train" });
    expect(t).toMatchObject({ rows: 2, features: 4, targets: 1, ids: true, targetsWereScalar: true });
    expect([...t.x]).toEqual([101, 7, 102, 0, 101, 9, 0, 0]);
    expect([...t.mask!]).toEqual([1, 1, 1, 0, 1, 1, 0, 0]);
    expect([...t.lines!]).toEqual([2, 3]);
  });

  it("a target column of per-token labels (a row per cell)", () => {
    const t = parseCsv("input_ids,tags\n1 2 0,3 1 -100\n4 0 0,2 -100 -100\n", { target: "tags", field: "data.train" });
    expect(t).toMatchObject({ rows: 2, targets: 3, targetsWereScalar: false });
    expect([...t.y]).toEqual([3, 1, -100, 2, -100, -100]);
    expect(t.mask).toBeUndefined();
  });

  it("issues carry the line and the column, as for feature CSVs", () => {
    const csv = "input_ids,attention_mask,label\n1 2 3,1 1 1,0\n1 2,1 1,0\n1 x 3,1 1 1,1\n1 2 3,1 1 2,1\n1 2 3,0 0 0,1\n1 2 3,1 1 1,abc\n";
    const issues = issuesOf(() => parseCsv(csv, { target: "label", field: "data.train" }));
    expect(issues.map((i) => [i.line, i.column])).toEqual([[3, "input_ids"], [4, "input_ids"], [5, "attention_mask"], [6, "attention_mask"], [7, "label"]]);
    expect(issues[1]!.message).toBe('"input_ids"[1] is "x", not a token id (an integer)');
    expect(issues[4]!.message).toBe('"label" is "abc", not a number');
  });

  it("without the target column (a causal LM's rows): a table without targets; a missing column of several targets is still refused", () => {
    const t = parseCsv("input_ids,attention_mask\n1 2 0,1 1 0\n3 4 5,1 1 1\n", { target: "y", field: "data.train" });
    expect(t).toMatchObject({ rows: 2, features: 3, targets: 0, ids: true });
    expect([...t.x]).toEqual([1, 2, 0, 3, 4, 5]);
    const issues = issuesOf(() => parseCsv("input_ids,a\n1 2,0\n", { target: ["a", "b"], field: "data.train" }));
    expect(issues).toEqual([{ path: "data.train", line: 1, column: "b", message: expect.stringMatching(/^target column "b" not found/) }]);
  });

  it("a column that is neither ids, mask nor target is refused at the header", () => {
    const issues = issuesOf(() => parseCsv("input_ids,text,y\n1 2,hello,0\n", { target: "y", field: "data.train" }));
    expect(issues).toEqual([{ path: "data.train", line: 1, column: "text", message: expect.stringMatching(/input_ids, attention_mask and token_type_ids \(optional\) and the target column/) }]);
  });
});
