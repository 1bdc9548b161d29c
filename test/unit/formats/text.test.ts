/**
 * Tokenizers (src/formats/text.ts) against published token ids, with real vocabularies taken
 * from npm packages at development time (test/fixtures/tokenizers/build.mjs says which):
 * bert-base-uncased (WordPiece) and GPT-2 (byte-level BPE). Then the rules the ids follow
 * (WordPiece's longest match first, BertNormalizer, BPE merges, byte fallback, templates),
 * truncation as the tokenizers crate does it, padding, and the 422s of a bad tokenizer.json.
 */
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { beforeAll, describe, expect, it } from "vitest";
import { loadTokenizer, longestFirst, tokenizeTables, tokenizerVocabularySize, type TextTokenizer } from "../../../src/formats/text.js";
import type { Table } from "../../../src/formats/dataset.js";
import { EdgetuneError, type FieldIssue } from "../../../src/errors.js";

const fixture = (name: string): Record<string, unknown> => {
  const bytes = readFileSync(new URL(`../../fixtures/tokenizers/${name}`, import.meta.url));
  return JSON.parse((name.endsWith(".gz") ? gunzipSync(bytes) : bytes).toString("utf8"));
};

function failure(run: () => unknown): { code: string; status: number; errors: FieldIssue[] } {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(EdgetuneError);
    const e = error as EdgetuneError;
    return { code: e.code, status: e.status, errors: e.errors };
  }
  throw new Error("expected an error");
}

const textTable = (text: string[], textPair?: string[], y?: number[]): Table => ({
  rows: text.length,
  features: 0,
  targets: y ? 1 : 0,
  x: new Float32Array(0),
  y: new Float32Array(y ?? []),
  targetsWereScalar: true,
  text,
  ...(textPair ? { textPair } : {}),
});
const rows = (t: Table, data: Float32Array | null | undefined = t.x) => Array.from({ length: t.rows }, (_, r) => [...data!.subarray(r * t.features, (r + 1) * t.features)]);

let bert: TextTokenizer;
let gpt2: TextTokenizer;
beforeAll(() => {
  bert = loadTokenizer(fixture("bert-base-uncased.json.gz"));
  gpt2 = loadTokenizer(fixture("gpt2.json.gz"));
});

describe("bert-base-uncased (WordPiece), published ids", () => {
  it('"Hello, world!" is [CLS] hello , world ! [SEP]', () => {
    expect(bert.encode("Hello, world!").ids).toEqual([101, 7592, 1010, 2088, 999, 102]);
  });

  it("a pair: [CLS] a [SEP] b [SEP], token_type_ids 0 then 1", () => {
    // Hugging Face course, chapter 3 "Processing the data" (bert-base-uncased):
    // tokenizer("This is the first sentence.", "This is the second one.")
    const { ids, typeIds } = bert.encode("This is the first sentence.", "This is the second one.");
    expect(ids).toEqual([101, 2023, 2003, 1996, 2034, 6251, 1012, 102, 2023, 2003, 1996, 2117, 2028, 1012, 102]);
    expect(typeIds).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]);
  });

  it("a batch padded to its longest row with [PAD] = 0 and mask 0", () => {
    // Hugging Face course, chapter 2 "Behind the pipeline" (distilbert-base-uncased-finetuned-sst-2-english,
    // whose vocabulary is bert-base-uncased's): tokenizer(raw_inputs, padding=True, truncation=True)
    const { train } = tokenizeTables(bert, { train: textTable(["I've been waiting for a HuggingFace course my whole life.", "I hate this so much!"]), validation: null }, {}, 512);
    expect(rows(train)).toEqual([
      [101, 1045, 1005, 2310, 2042, 3403, 2005, 1037, 17662, 12172, 2607, 2026, 2878, 2166, 1012, 102],
      [101, 1045, 5223, 2023, 2061, 2172, 999, 102, 0, 0, 0, 0, 0, 0, 0, 0],
    ]);
    expect(rows(train, train.mask)).toEqual([
      Array(16).fill(1),
      [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
    ]);
    expect(rows(train, train.tokenTypes)).toEqual([Array(16).fill(0), Array(16).fill(0)]);
    expect(bert.pad).toEqual({ id: 0, typeId: 0, from: "[PAD]" });
  });

  it("BertNormalizer lowercases and strips accents; BertPreTokenizer splits punctuation", () => {
    // Hugging Face course, chapter 6 "Normalization and pre-tokenization": bert-base-uncased's
    // normalizer turns "Héllò hôw are ü?" into "hello how are u?"
    expect(bert.encode("Héllò hôw are ü?").ids).toEqual(bert.encode("hello how are u?").ids);
    expect(bert.encodeWithoutSpecialTokens("hello how are u?")).toEqual([7592, 2129, 2024, 1057, 1029]);
    // "don't" is three words: don ' t (the apostrophe is punctuation)
    expect(bert.encodeWithoutSpecialTokens("don't")).toEqual(bert.encodeWithoutSpecialTokens("don ' t"));
  });

  it("a special token written in the text is that token", () => {
    expect(bert.encode("a [SEP] b").ids).toEqual([101, 1037, 102, 1038, 102]);
  });

  it("vocabulary: 30522 tokens", () => {
    expect(tokenizerVocabularySize(bert)).toBe(30522);
    expect(bert.specialTokens).toEqual({ single: 2, pair: 3 });
  });
});

describe("GPT-2 (byte-level BPE), published ids", () => {
  it('"Hello world" is [15496, 995]; " Hello world" [18435, 995]', () => {
    // transformers' GPT2Tokenizer docstring
    expect(gpt2.encode("Hello world").ids).toEqual([15496, 995]);
    expect(gpt2.encode(" Hello world").ids).toEqual([18435, 995]);
  });

  it("tiktoken's gpt2 tests: hello world, <|endoftext|>, runs of zeros", () => {
    // openai/tiktoken tests/test_encoding.py, test_simple and test_simple_repeated
    expect(gpt2.encode("hello world").ids).toEqual([31373, 995]);
    expect(gpt2.encode("hello <|endoftext|>").ids).toEqual([31373, 220, 50256]);
    const zeros: [number, number[]][] = [
      [1, [15]], [2, [405]], [3, [830]], [4, [2388]], [5, [20483]], [6, [10535]], [7, [24598]], [8, [8269]],
      [9, [10535, 830]], [10, [8269, 405]], [11, [8269, 830]], [12, [8269, 2388]], [13, [8269, 20483]],
      [14, [8269, 10535]], [15, [8269, 24598]], [16, [25645]], [17, [8269, 10535, 830]],
    ];
    for (const [n, ids] of zeros) expect({ n, ids: gpt2.encode("0".repeat(n)).ids }).toEqual({ n, ids });
  });

  it("matches OpenAI's encoder (gpt-3-encoder) on sentences with unicode, spaces and symbols", () => {
    const reference = fixture("gpt2-reference.json") as { rows: { text: string; ids: number[] }[] };
    expect(reference.rows.length).toBeGreaterThan(10);
    for (const { text, ids } of reference.rows) expect({ text, ids: gpt2.encode(text).ids }).toEqual({ text, ids });
  });

  it("adds no special tokens; a pair is the two texts, type ids 0 then 1", () => {
    expect(gpt2.specialTokens).toEqual({ single: 0, pair: 0 });
    expect(gpt2.encode("Hello world", "hello world")).toEqual({ ids: [15496, 995, 31373, 995], typeIds: [0, 0, 1, 1] });
  });

  it("no pad token: padding is id 0, masked out", () => {
    expect(gpt2.pad).toEqual({ id: 0, typeId: 0, from: "none" });
    const { train } = tokenizeTables(gpt2, { train: textTable(["Hello world", "hello"]), validation: null }, {}, 1024);
    expect(rows(train)).toEqual([[15496, 995], [31373, 0]]);
    expect(rows(train, train.mask)).toEqual([[1, 1], [1, 0]]);
  });

  it("vocabulary: 50257 tokens (50256 + <|endoftext|>)", () => {
    expect(tokenizerVocabularySize(gpt2)).toBe(50257);
  });
});

describe("WordPiece rules (tiny-wordpiece.json, ids read off its vocab)", () => {
  const json = fixture("tiny-wordpiece.json");
  const vocab = (json.model as { vocab: Record<string, number> }).vocab;
  const tok = loadTokenizer(json);
  const ids = (...tokens: string[]) => tokens.map((t) => vocab[t]!);

  it("greedy longest match first, then ## continuations", () => {
    expect(tok.encodeWithoutSpecialTokens("playing")).toEqual(ids("play", "##ing"));
    // "unplayable": "un" is the longest prefix in the vocab; "##play" is not, so letters follow
    expect(tok.encodeWithoutSpecialTokens("unplayable")).toEqual(ids("un", "##p", "##l", "##a", "##y", "##able"));
    expect(tok.encodeWithoutSpecialTokens("films")).toEqual(ids("film", "##s"));
  });

  it("a word it cannot spell is one [UNK]; so is a word over max_input_chars_per_word", () => {
    expect(tok.encodeWithoutSpecialTokens("good 42 movie")).toEqual(ids("good", "[UNK]", "movie"));
    expect(tok.encodeWithoutSpecialTokens(`${"a".repeat(101)} a`)).toEqual(ids("[UNK]", "a"));
  });

  it("lowercase, accents stripped, punctuation split off", () => {
    expect(tok.encodeWithoutSpecialTokens("Café!")).toEqual(ids("cafe", "!"));
    expect(tok.encodeWithoutSpecialTokens("Hello,world")).toEqual(ids("hello", ",", "world"));
  });

  it("[CLS] text [SEP] (text_pair [SEP]); [PAD] pads", () => {
    expect(tok.encode("good movie", "bad film")).toEqual({
      ids: ids("[CLS]", "good", "movie", "[SEP]", "bad", "film", "[SEP]"),
      typeIds: [0, 0, 0, 0, 1, 1, 1],
    });
    expect(tok.pad.id).toBe(vocab["[PAD]"]);
  });
});

describe("byte-level BPE and SentencePiece BPE (tiny-gpt2.json, tiny-llama.json)", () => {
  it("a cut-down GPT-2 gives GPT-2's ids where its merges reach", () => {
    const tiny = loadTokenizer(fixture("tiny-gpt2.json"));
    expect(tokenizerVocabularySize(tiny)).toBe(513);
    const text = "the cat is in the hat";
    const ids = tiny.encode(text).ids;
    expect(Math.max(...ids)).toBeLessThan(513);
    // decoding through GPT-2's own vocabulary gives the text back
    const gptVocab = Object.fromEntries(Object.entries((fixture("gpt2.json.gz").model as { vocab: Record<string, number> }).vocab).map(([t, i]) => [i, t]));
    expect(ids.map((i) => gptVocab[i]).join("").replaceAll("Ġ", " ")).toBe(text);
    expect(tiny.encode("<|endoftext|>").ids).toEqual([512]);
  });

  it("Llama style: <s> first (the template), byte fallback for characters outside the vocab", () => {
    const json = fixture("tiny-llama.json");
    const vocab = (json.model as { vocab: Record<string, number> }).vocab;
    const tok = loadTokenizer(json);
    const ids = tok.encode("the cat").ids;
    expect(ids[0]).toBe(1); // <s>
    expect(ids.slice(1)).toEqual([vocab["▁the"], vocab["▁cat"]]);
    // "H" is no piece: its UTF-8 byte 0x48 is <0x48> = 3 + 0x48
    expect(tok.encode("H").ids).toEqual([1, vocab["▁"], 3 + 0x48]);
    // a pair: <s> A <s> B with type ids 0 | 1
    expect(tok.encode("the", "cat")).toEqual({ ids: [1, vocab["▁the"], 1, vocab["▁cat"]], typeIds: [0, 0, 1, 1] });
    expect(tok.pad).toEqual({ id: 0, typeId: 0, from: "none" });
  });
});

describe("post-processors, as the tokenizers crate runs them", () => {
  it("BertProcessing (older BERT tokenizer.json files) gives what bert-base-uncased's template gives", () => {
    const json = fixture("bert-base-uncased.json.gz");
    const old = loadTokenizer({ ...json, post_processor: { type: "BertProcessing", sep: ["[SEP]", 102], cls: ["[CLS]", 101] } });
    for (const [a, b] of [["Hello, world!", null], ["This is the first sentence.", "This is the second one."]] as const) {
      expect(old.encode(a, b)).toEqual(bert.encode(a, b));
    }
    expect(old.specialTokens).toEqual({ single: 2, pair: 3 });
  });

  it("RobertaProcessing: <s> A </s></s> B </s>, every type id 0", () => {
    const json = fixture("tiny-gpt2.json");
    const tok = loadTokenizer({
      ...json,
      added_tokens: [...(json.added_tokens as object[]), { id: 513, content: "<s>", special: true }, { id: 514, content: "</s>", special: true }],
      post_processor: { type: "RobertaProcessing", sep: ["</s>", 514], cls: ["<s>", 513], trim_offsets: true, add_prefix_space: false },
    });
    const [a, b] = [tok.encodeWithoutSpecialTokens("the"), tok.encodeWithoutSpecialTokens(" cat")];
    expect(tok.encode("the", " cat")).toEqual({ ids: [513, ...a, 514, 514, ...b, 514], typeIds: Array(4 + a.length + b.length).fill(0) });
    expect(tok.specialTokens).toEqual({ single: 2, pair: 4 });
    expect(tokenizerVocabularySize(tok)).toBe(515);
  });

  it("Sequence [ByteLevel, TemplateProcessing] (Llama 3 style): the BOS of the template, special tokens of several ids", () => {
    const json = fixture("tiny-gpt2.json");
    const tok = loadTokenizer({
      ...json,
      added_tokens: [...(json.added_tokens as object[]), { id: 513, content: "<|begin_of_text|>", special: true }],
      post_processor: {
        type: "Sequence",
        processors: [
          { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
          {
            type: "TemplateProcessing",
            single: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
            pair: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "two", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
            special_tokens: { "<|begin_of_text|>": { id: "<|begin_of_text|>", ids: [513], tokens: ["<|begin_of_text|>"] }, two: { id: "two", ids: [512, 513], tokens: ["<|endoftext|>", "<|begin_of_text|>"] } },
          },
        ],
      },
    });
    const a = tok.encodeWithoutSpecialTokens("the cat");
    expect(tok.encode("the cat").ids).toEqual([513, ...a]);
    expect(tok.encode("the cat", "the cat")).toEqual({ ids: [513, ...a, 512, 513, ...a], typeIds: [0, ...a.map(() => 0), 1, 1, ...a.map(() => 1)] });
    expect(tok.specialTokens).toEqual({ single: 1, pair: 3 });
    // truncation leaves room for the BOS: max_length 3 keeps 2 tokens of the text
    const { train } = tokenizeTables(tok, { train: textTable(["the cat is in the hat"]), validation: null }, { truncation: true, max_length: 3 }, null);
    expect(rows(train)).toEqual([[513, ...tok.encodeWithoutSpecialTokens("the cat is in the hat").slice(0, 2)]]);
  });

  it("a Unigram model: its vocabulary is the list of pieces", () => {
    const tok = loadTokenizer({
      model: { type: "Unigram", unk_id: 0, vocab: [["<unk>", 0], ["▁a", -1], ["▁b", -2], ["▁ab", -0.5], ["a", -3], ["b", -3]] },
      pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: true },
    });
    expect(tokenizerVocabularySize(tok)).toBe(6);
    expect(tok.encode("ab a").ids).toEqual([3, 1]);
  });
});

describe("truncation (the tokenizers crate's truncate_encodings)", () => {
  it("longest_first keeps the short text whole when it can, else halves", () => {
    // the crate's own table (tokenizers/src/utils/truncation.rs, truncate_encodings_longest_first), max_length 7
    const cases: [number, number, number, number][] = [
      [0, 0, 0, 0], [0, 2, 0, 2], [0, 4, 0, 4], [0, 8, 0, 7],
      [2, 0, 2, 0], [2, 2, 2, 2], [2, 4, 2, 4], [2, 8, 2, 5],
      [4, 0, 4, 0], [4, 2, 4, 2], [4, 4, 3, 4], [4, 8, 3, 4],
      [8, 0, 7, 0], [8, 2, 5, 2], [8, 4, 4, 3], [8, 8, 3, 4],
    ];
    for (const [n1, n2, k1, k2] of cases) expect({ n1, n2, kept: longestFirst(n1, n2, 7) }).toEqual({ n1, n2, kept: [k1, k2] });
    expect(longestFirst(5, 5, 0)).toEqual([0, 0]);
  });

  const tok = loadTokenizer(fixture("tiny-wordpiece.json"));
  const words = (n: number) => Array(n).fill("good").join(" ");

  it("truncation false: a row over max_length is a 422 naming it, its token count and the limit", () => {
    const f = failure(() => tokenizeTables(tok, { train: textTable([words(3), words(9)]), validation: textTable([words(20)]) }, {}, 8));
    expect(f.status).toBe(422);
    expect(f.errors.map((e) => e.path)).toEqual(["data.train.text[1]", "data.validation.text[0]"]);
    expect(f.errors[0]!.message).toContain("11 tokens");
    expect(f.errors[0]!.message).toContain("max_length 8");
    expect(f.errors[0]!.message).toContain("truncation");
  });

  it("a file part's row is named by its line", () => {
    const table = { ...textTable([words(1), words(9)]), lines: Int32Array.from([2, 5]) };
    const f = failure(() => tokenizeTables(tok, { train: table, validation: null }, { max_length: 8 }, null));
    expect(f.errors).toEqual([expect.objectContaining({ path: "data.train", line: 5, column: "text" })]);
  });

  it("truncation true: cut to max_length with the special tokens kept; pairs longest_first", () => {
    const { train } = tokenizeTables(tok, { train: textTable([words(10), words(2)], [words(10), words(20)]), validation: null }, { truncation: true, max_length: 10 }, 512);
    expect(train.features).toBe(10);
    const [cls, good, sep] = [2, tok.encodeWithoutSpecialTokens("good")[0]!, 3];
    // 10 - 3 special tokens = 7: 10 + 10 -> 3 + 4; 2 + 20 -> 2 + 5
    expect(rows(train)).toEqual([
      [cls, good, good, good, sep, good, good, good, good, sep],
      [cls, good, good, sep, good, good, good, good, good, sep],
    ]);
    expect(rows(train, train.tokenTypes)).toEqual([
      [0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
      [0, 0, 0, 0, 1, 1, 1, 1, 1, 1],
    ]);
  });

  it("max_length defaults to the model's positions; over them it is refused", () => {
    const { train } = tokenizeTables(tok, { train: textTable([words(50)]), validation: null }, { truncation: true }, 16);
    expect(train.features).toBe(16);
    const f = failure(() => tokenizeTables(tok, { train: textTable(["good"]), validation: null }, { max_length: 600 }, 512));
    expect(f.errors[0]).toMatchObject({ path: "data.tokenization.max_length" });
    expect(f.errors[0]!.message).toContain("512");
    const g = failure(() => tokenizeTables(tok, { train: textTable(["good"]), validation: null }, { truncation: true }, null));
    expect(g.errors[0]!.path).toBe("data.tokenization.max_length");
  });
});

describe("padding", () => {
  const tok = loadTokenizer(fixture("tiny-wordpiece.json"));

  it('"longest" pads train and validation to the longest row of both', () => {
    const { train, validation } = tokenizeTables(tok, { train: textTable(["good"]), validation: textTable(["good good good"]) }, { padding: "longest" }, 512);
    expect(train.features).toBe(5);
    expect(validation!.features).toBe(5);
    expect(rows(train, train.mask)).toEqual([[1, 1, 1, 0, 0]]);
    expect(train).toMatchObject({ ids: true, rows: 1 });
    expect(train.text).toBeUndefined();
  });

  it('"max_length" pads to max_length', () => {
    const { train } = tokenizeTables(tok, { train: textTable(["good"], undefined, [1]), validation: null }, { padding: "max_length", max_length: 6 }, 512);
    expect(train.features).toBe(6);
    expect(rows(train)).toEqual([[2, tok.encodeWithoutSpecialTokens("good")[0]!, 3, 0, 0, 0]]);
    expect([...train.y]).toEqual([1]);
  });

  it("the padding section of tokenizer.json names the pad id and type id", () => {
    const tok2 = loadTokenizer({ ...fixture("tiny-wordpiece.json"), padding: { strategy: "BatchLongest", direction: "Right", pad_id: 4, pad_type_id: 1, pad_token: "[MASK]" } });
    expect(tok2.pad).toEqual({ id: 4, typeId: 1, from: "padding" });
    const { train } = tokenizeTables(tok2, { train: textTable(["good", "good good"]), validation: null }, {}, 512);
    expect(rows(train)[0]!.at(-1)).toBe(4);
    expect(rows(train, train.tokenTypes)[0]!.at(-1)).toBe(1);
  });

  it("an empty text with no special tokens gives no tokens: a 422", () => {
    const tiny = loadTokenizer(fixture("tiny-gpt2.json"));
    const f = failure(() => tokenizeTables(tiny, { train: textTable(["the", ""]), validation: null }, {}, 64));
    expect(f.errors[0]).toMatchObject({ path: "data.train.text[1]" });
  });
});

describe("a tokenizer.json that cannot be loaded is a 422 invalid_tokenizer naming the section", () => {
  const good = () => structuredClone(fixture("tiny-wordpiece.json")) as Record<string, any>;
  const cases: [string, (j: Record<string, any>) => unknown, string, string][] = [
    ["not an object", () => [1, 2], "tokenizer", "tokenizer.json"],
    ["no model", (j) => ({ ...j, model: undefined }), "tokenizer.model", "model object"],
    ["an unsupported model", (j) => ({ ...j, model: { ...j.model, type: "WordLevel" } }), "tokenizer.model.type", "BPE"],
    ["a vocab that is not {token: id}", (j) => ({ ...j, model: { ...j.model, vocab: { a: -1 } } }), 'tokenizer.model.vocab["a"]', "integers"],
    ["two tokens with one id", (j) => ({ ...j, model: { ...j.model, vocab: { a: 0, b: 0 } } }), 'tokenizer.model.vocab["b"]', "own id"],
    ["a bad merge", (j) => ({ ...j, model: { type: "BPE", vocab: { a: 0 }, merges: ["a b c"] } }), "tokenizer.model.merges[0]", "left right"],
    ["an unknown post-processor", (j) => ({ ...j, post_processor: { type: "Wat" } }), "tokenizer.post_processor.type", "TemplateProcessing"],
    ["a template naming an unknown token", (j) => ({ ...j, post_processor: { ...j.post_processor, single: [{ SpecialToken: { id: "<nope>", type_id: 0 } }], special_tokens: {} } }), "tokenizer.post_processor.single[0].SpecialToken.id", "<nope>"],
    ["an unknown normalizer", (j) => ({ ...j, normalizer: { type: "Wat" } }), "tokenizer.normalizer", "Wat"],
    ["a bad added token", (j) => ({ ...j, added_tokens: [{ id: "x" }] }), "tokenizer.added_tokens[0]", "content"],
    ["an unk_token outside the vocab", (j) => ({ ...j, model: { ...j.model, unk_token: "<unk>" } }), "tokenizer.model.unk_token", "<unk>"],
  ];
  for (const [name, mutate, path, words] of cases) {
    it(name, () => {
      const f = failure(() => loadTokenizer(mutate(good())));
      expect(f).toMatchObject({ status: 422, code: "invalid_tokenizer" });
      expect(f.errors[0]!.path).toBe(path);
      expect(f.errors[0]!.message).toContain(words);
    });
  }

  it("GPT-2's tokenizer.json has no model.type: BPE is inferred, as the crate does", () => {
    expect((fixture("gpt2.json.gz").model as { type?: string }).type).toBeUndefined();
    expect(gpt2.encode("hello").ids).toEqual([31373]);
  });
});
