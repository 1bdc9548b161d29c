/**
 * Text rows and Hugging Face tokenizers: a `tokenizer.json` as the Hub ships it turns `text`
 * (and `text_pair`) rows into token rows, as `tokenizer(text, text_pair, max_length=...,
 * truncation=..., padding=...)` of transformers' fast tokenizers does.
 *
 * The text -> tokens part (normalizer, pre-tokenizer, added tokens, the WordPiece / BPE /
 * Unigram model) is @huggingface/tokenizers (Tokenizers.js: pure JS, no dependencies, no
 * network, the tokenizer code of Transformers.js). What follows the model is written here after
 * the Rust `tokenizers` crate (tokenizers/src/processors/*.rs, tokenizers/src/utils/truncation.rs),
 * on token ids:
 *
 * - post-processing (special tokens and token_type_ids): TemplateProcessing, BertProcessing,
 *   RobertaProcessing, ByteLevel and Sequence, as the crate's `process_encodings`; the pair's
 *   sequence starts with type id 1, as `PostProcessor::process` sets it;
 * - truncation before post-processing, to `max_length` minus the special tokens the
 *   post-processor adds, `longest_first` for pairs (`truncate_encodings`);
 * - padding on the right, to the longest row of the run or to `max_length`, with the pad token
 *   (see {@link TextTokenizer.pad}) and attention_mask 0.
 *
 * Runtime-agnostic: strings and typed arrays only.
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { DatasetError, UnprocessableError, type FieldIssue } from "../errors.js";
import { describeValue, listNames } from "./describe.js";
import { MAX_ISSUES, TOKEN_ID_LIMIT, type Table } from "./dataset.js";

// ---------------------------------------------------------------- post-processors

/** One piece of a post-processed row: token ids and their type id each. */
interface Segment {
  ids: number[];
  types: number[];
}

/** A template piece: a special token's ids, or the first (0) or second (1) sequence. */
type TemplatePiece = { special: number[]; typeId: number } | { sequence: 0 | 1; typeId: number };

/** The post-processors of tokenizer.json that tokenization follows (the crate's PostProcessorWrapper). */
type PostProcessor =
  | { type: "ByteLevel" }
  | { type: "BertProcessing"; cls: number; sep: number }
  | { type: "RobertaProcessing"; cls: number; sep: number }
  | { type: "TemplateProcessing"; single: TemplatePiece[]; pair: TemplatePiece[] }
  | { type: "Sequence"; processors: PostProcessor[] };

const POST_PROCESSORS = ["TemplateProcessing", "BertProcessing", "RobertaProcessing", "ByteLevel", "Sequence"];

/** The crate's `process_encodings` of one post-processor over the segments (1 or 2 of them). */
function processSegments(processor: PostProcessor, segments: Segment[], addSpecialTokens: boolean): Segment[] {
  switch (processor.type) {
    case "ByteLevel": // offsets only: the ids and type ids pass as they are
      return segments;
    case "BertProcessing": {
      // bert.rs: [CLS] A [SEP] with type id 0, then B [SEP] with type id 1
      if (!addSpecialTokens) return segments;
      return segments.map((s, i) =>
        i === 0
          ? { ids: [processor.cls, ...s.ids, processor.sep], types: [0, ...s.types, 0] }
          : { ids: [...s.ids, processor.sep], types: [...s.types, 1] },
      );
    }
    case "RobertaProcessing": {
      // roberta.rs: every type id is 0; <s> A </s>, then </s> B </s>
      const zeroed = segments.map((s) => ({ ids: s.ids, types: s.ids.map(() => 0) }));
      if (!addSpecialTokens) return zeroed;
      return zeroed.map((s, i) => ({
        ids: [i === 0 ? processor.cls : processor.sep, ...s.ids, processor.sep],
        types: [0, ...s.types, 0],
      }));
    }
    case "TemplateProcessing": {
      // template.rs: each piece in turn; a sequence takes the piece's type id, a special token
      // its ids (only when special tokens are added)
      const template = segments.length === 2 ? processor.pair : processor.single;
      const out: Segment[] = [];
      for (const piece of template) {
        if ("sequence" in piece) {
          const s = segments[piece.sequence]!;
          out.push({ ids: s.ids, types: s.ids.map(() => piece.typeId) });
        } else if (addSpecialTokens) {
          out.push({ ids: piece.special, types: piece.special.map(() => piece.typeId) });
        }
      }
      return out;
    }
    case "Sequence": {
      let out = segments;
      for (const p of processor.processors) out = processSegments(p, out, addSpecialTokens);
      return out;
    }
  }
}

/** Post-processes one row (the crate's `PostProcessor::process`): type ids 0 and 1, the processor, then one row. */
function postProcess(processor: PostProcessor | null, a: number[], b: number[] | null): Segment {
  let segments: Segment[] = [{ ids: a, types: a.map(() => 0) }];
  if (b) segments.push({ ids: b, types: b.map(() => 1) });
  if (processor) segments = processSegments(processor, segments, true);
  return { ids: segments.flatMap((s) => s.ids), types: segments.flatMap((s) => s.types) };
}

// ---------------------------------------------------------------- loading

/**
 * A loaded tokenizer.json.
 *
 * @example
 * ```ts
 * const tok: TextTokenizer = loadTokenizer(tokenizerJson);
 * tok.encode("Hello, world!").ids; // [101, 7592, 1010, 2088, 999, 102] with bert-base-uncased
 * ```
 */
export interface TextTokenizer {
  /** Largest token id + 1, counting the added tokens (see {@link tokenizerVocabularySize}). */
  readonly vocabularySize: number;
  /**
   * The padding: `padding.pad_id` / `pad_type_id` of the tokenizer.json when it has a `padding`
   * section, else the `[PAD]` or `<pad>` token, else id 0 (GPT-2 and Llama tokenizers have no pad
   * token: the padding is then masked out by attention_mask 0 and never read).
   */
  readonly pad: { id: number; typeId: number; from: "padding" | "[PAD]" | "<pad>" | "none" };
  /** Special tokens the post-processor adds to one text, and to a pair. */
  readonly specialTokens: { single: number; pair: number };
  /** The tokens of one text (or pair) with special tokens and token_type_ids, before truncation. */
  encode(text: string, pair?: string | null): { ids: number[]; typeIds: number[] };
  /** The ids of one text alone: no special tokens. */
  encodeWithoutSpecialTokens(text: string): number[];
  /** Adds the special tokens (post-processing) to the ids of one text or pair. */
  addSpecialTokens(a: number[], b: number[] | null): { ids: number[]; typeIds: number[] };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isTokenId(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0;
}

const MODELS = ["BPE", "WordPiece", "Unigram"];

/** The model's type, as tokenizer.json names it or (older files, such as GPT-2's, have none) as the crate infers it. */
function modelType(model: Record<string, unknown>): string | null {
  if (typeof model.type === "string") return model.type;
  if (Array.isArray(model.vocab)) return "Unigram";
  if (isObject(model.vocab)) {
    if ("merges" in model) return "BPE";
    if ("continuing_subword_prefix" in model || "max_input_chars_per_word" in model) return "WordPiece";
  }
  return null;
}

/** Checks the model section; returns the largest id it holds (-1 when empty) and its token -> id map reader. */
function checkModel(json: Record<string, unknown>, fail: (path: string, message: string) => never): { maxId: number; idOf: (token: string) => number | undefined } {
  const model = json.model;
  if (!isObject(model)) fail("model", `is ${describeValue(model)}; a tokenizer.json has a model object ({"type": "BPE" | "WordPiece" | "Unigram", "vocab": ...})`);
  const type = modelType(model);
  if (type === null || !MODELS.includes(type)) {
    fail("model.type", `${type === null ? "is missing" : `is ${describeValue(type)}`}; the supported models are ${listNames(MODELS)}`);
  }
  let maxId = -1;
  if (type === "Unigram") {
    const vocab = model.vocab;
    if (!Array.isArray(vocab)) fail("model.vocab", `is ${describeValue(vocab)}; a Unigram vocab is a list of [piece, score]`);
    vocab.forEach((entry, i) => {
      if (!Array.isArray(entry) || typeof entry[0] !== "string" || typeof entry[1] !== "number") {
        fail(`model.vocab[${i}]`, `is ${describeValue(entry)}; expected [piece, score]`);
      }
    });
    if (model.unk_id !== undefined && model.unk_id !== null && (!isTokenId(model.unk_id) || model.unk_id >= vocab.length)) {
      fail("model.unk_id", `is ${describeValue(model.unk_id)}; expected an index into model.vocab (0..${vocab.length - 1})`);
    }
    const index = new Map<string, number>();
    vocab.forEach((entry, i) => index.has(entry[0]) || index.set(entry[0], i));
    return { maxId: vocab.length - 1, idOf: (token) => index.get(token) };
  }
  const vocab = model.vocab;
  if (!isObject(vocab)) fail("model.vocab", `is ${describeValue(vocab)}; a ${type} vocab is an object {token: id}`);
  const seen = new Map<number, string>();
  for (const [token, id] of Object.entries(vocab)) {
    if (!isTokenId(id)) fail(`model.vocab[${JSON.stringify(token)}]`, `is ${describeValue(id)}; token ids are integers >= 0`);
    if (id >= TOKEN_ID_LIMIT) fail(`model.vocab[${JSON.stringify(token)}]`, `is ${id}; token ids must be below 2^24 = 16777216`);
    const other = seen.get(id);
    if (other !== undefined) fail(`model.vocab[${JSON.stringify(token)}]`, `has id ${id}, which ${JSON.stringify(other)} has too: every token needs its own id`);
    seen.set(id, token);
    if (id > maxId) maxId = id;
  }
  if (type === "BPE") {
    const merges = model.merges;
    if (!Array.isArray(merges)) fail("model.merges", `is ${describeValue(merges)}; a BPE model has merges: ["a b", ...] or [["a", "b"], ...]`);
    merges.forEach((merge, i) => {
      const ok = typeof merge === "string" ? merge.split(" ").length === 2 : Array.isArray(merge) && merge.length === 2 && merge.every((m) => typeof m === "string");
      if (!ok) fail(`model.merges[${i}]`, `is ${describeValue(merge)}; a merge is "left right" or ["left", "right"]`);
    });
  }
  if (type === "WordPiece" && typeof model.unk_token === "string" && !(model.unk_token in vocab)) {
    fail("model.unk_token", `is ${JSON.stringify(model.unk_token)}, which is not in model.vocab`);
  }
  return { maxId, idOf: (token) => (Object.hasOwn(vocab, token) ? (vocab[token] as number) : undefined) };
}

/** Reads the post_processor section into the form tokenization runs. */
function readPostProcessor(value: unknown, path: string, specialId: (token: string) => number | undefined, fail: (path: string, message: string) => never): PostProcessor | null {
  if (value === null || value === undefined) return null;
  if (!isObject(value)) fail(path, `is ${describeValue(value)}; expected an object with a "type"`);
  const tokenPair = (name: "cls" | "sep"): number => {
    const pair = value[name];
    if (!Array.isArray(pair) || typeof pair[0] !== "string" || !isTokenId(pair[1])) fail(`${path}.${name}`, `is ${describeValue(pair)}; expected [token, id]`);
    return pair[1];
  };
  switch (value.type) {
    case "ByteLevel":
      return { type: "ByteLevel" };
    case "BertProcessing":
    case "RobertaProcessing":
      return { type: value.type, cls: tokenPair("cls"), sep: tokenPair("sep") };
    case "Sequence": {
      const list = value.processors;
      if (!Array.isArray(list)) fail(`${path}.processors`, `is ${describeValue(list)}; expected a list of post-processors`);
      return { type: "Sequence", processors: list.map((p, i) => readPostProcessor(p, `${path}.processors[${i}]`, specialId, fail) ?? { type: "ByteLevel" }) };
    }
    case "TemplateProcessing": {
      const specials = value.special_tokens ?? {};
      if (!isObject(specials)) fail(`${path}.special_tokens`, `is ${describeValue(specials)}; expected {name: {id, ids, tokens}}`);
      const template = (name: "single" | "pair"): TemplatePiece[] => {
        const pieces = value[name];
        if (!Array.isArray(pieces)) {
          fail(`${path}.${name}`, `is ${describeValue(pieces)}; expected a list of {"SpecialToken": {"id", "type_id"}} and {"Sequence": {"id": "A" | "B", "type_id"}}`);
        }
        return pieces.map((piece, i): TemplatePiece => {
          const at = `${path}.${name}[${i}]`;
          if (isObject(piece) && isObject(piece.Sequence)) {
            const { id, type_id: typeId } = piece.Sequence;
            if ((id !== "A" && id !== "B") || (name === "single" && id === "B")) fail(`${at}.Sequence.id`, `is ${describeValue(id)}; expected "A"${name === "pair" ? ' or "B"' : " (one text)"}`);
            if (!isTokenId(typeId)) fail(`${at}.Sequence.type_id`, `is ${describeValue(typeId)}; expected an integer >= 0`);
            return { sequence: id === "A" ? 0 : 1, typeId };
          }
          if (isObject(piece) && isObject(piece.SpecialToken)) {
            const { id, type_id: typeId } = piece.SpecialToken;
            if (!isTokenId(typeId)) fail(`${at}.SpecialToken.type_id`, `is ${describeValue(typeId)}; expected an integer >= 0`);
            const special = typeof id === "string" ? specials[id] : undefined;
            // the crate reads the ids from special_tokens; a template naming a token that is
            // missing there is refused by the crate too
            if (isObject(special)) {
              const ids = special.ids;
              if (!Array.isArray(ids) || !ids.every(isTokenId)) fail(`${path}.special_tokens[${JSON.stringify(id)}].ids`, `is ${describeValue(ids)}; expected a list of token ids`);
              return { special: ids, typeId };
            }
            const fallback = typeof id === "string" ? specialId(id) : undefined;
            if (fallback === undefined) fail(`${at}.SpecialToken.id`, `is ${describeValue(id)}, which is neither in ${path}.special_tokens nor a token of the vocabulary`);
            return { special: [fallback], typeId };
          }
          fail(at, `is ${describeValue(piece)}; expected {"SpecialToken": {...}} or {"Sequence": {...}}`);
        });
      };
      return { type: "TemplateProcessing", single: template("single"), pair: template("pair") };
    }
    default:
      fail(`${path}.type`, `is ${describeValue(value.type)}; the supported post-processors are ${listNames(POST_PROCESSORS)}`);
  }
}

/**
 * Loads a tokenizer.json object (as the Hub ships it, `tokenizer.json` of a model repository).
 * Anything that keeps it from loading is a 422 `invalid_tokenizer` at `field` (default
 * `tokenizer`), naming the section: an unsupported model or post-processor type, a vocab that is
 * not {token: id}, a merge that is not a pair, a pre-tokenizer regex JavaScript cannot compile.
 *
 * @example
 * ```ts
 * const tok = loadTokenizer(JSON.parse(await file.text()));
 * tok.encode("Hello world").ids; // [15496, 995] with GPT-2's tokenizer.json
 * ```
 */
export function loadTokenizer(json: unknown, field = "tokenizer"): TextTokenizer {
  const fail: (path: string, message: string) => never = (path, message) => {
    throw new UnprocessableError("invalid_tokenizer", [{ path: path === "" ? field : `${field}.${path}`, message }]);
  };
  if (!isObject(json)) fail("", `is ${describeValue(json)}; send the tokenizer.json object (a model repository's tokenizer.json)`);
  const { maxId: modelMaxId, idOf } = checkModel(json, fail);

  const added = json.added_tokens ?? [];
  if (!Array.isArray(added)) fail("added_tokens", `is ${describeValue(added)}; expected a list of {id, content, special}`);
  const addedIds = new Map<string, number>();
  let maxId = modelMaxId;
  added.forEach((token, i) => {
    if (!isObject(token) || !isTokenId(token.id) || typeof token.content !== "string") {
      fail(`added_tokens[${i}]`, `is ${describeValue(token)}; an added token is {"id": integer, "content": string, ...}`);
    }
    if (token.id >= TOKEN_ID_LIMIT) fail(`added_tokens[${i}].id`, `is ${token.id}; token ids must be below 2^24 = 16777216`);
    addedIds.set(token.content, token.id);
    if (token.id > maxId) maxId = token.id;
  });
  if (maxId < 0) fail("model.vocab", "is empty: the tokenizer has no tokens");
  const tokenId = (token: string): number | undefined => addedIds.get(token) ?? idOf(token);

  const processor = readPostProcessor(json.post_processor, "post_processor", tokenId, fail);
  const pad = padToken(json.padding, tokenId, fail);

  // Tokenizers.js runs the text -> tokens part; the post-processor runs here (above) and the
  // decoder is never needed, so neither is handed to it
  let inner: Tokenizer;
  try {
    inner = new Tokenizer({ ...json, added_tokens: added, normalizer: json.normalizer ?? null, pre_tokenizer: json.pre_tokenizer ?? null, post_processor: null, decoder: null }, {});
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const section = /normalizer/i.test(message) ? "normalizer" : /pre.?tokenizer|regular expression|regex/i.test(message) ? "pre_tokenizer" : /model/i.test(message) ? "model" : "";
    fail(section, `cannot be loaded: ${message}`);
  }
  const vocabularySize = maxId + 1;
  const encodeWithoutSpecialTokens = (text: string): number[] => {
    const { ids, tokens } = inner.encode(text, { add_special_tokens: false });
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!isTokenId(id)) {
        throw new UnprocessableError("invalid_tokenizer", [
          { path: field, message: `gives the token ${JSON.stringify(tokens[i])} of ${describeValue(text)}, which has no id: it is not in the vocabulary, and the model has no unk_token` },
        ]);
      }
    }
    return ids;
  };
  const addSpecialTokens = (a: number[], b: number[] | null) => {
    const { ids, types } = postProcess(processor, a, b);
    return { ids, typeIds: types };
  };
  return {
    vocabularySize,
    pad,
    specialTokens: { single: postProcess(processor, [], null).ids.length, pair: postProcess(processor, [], []).ids.length },
    encodeWithoutSpecialTokens,
    addSpecialTokens,
    encode: (text, pair) => addSpecialTokens(encodeWithoutSpecialTokens(text), pair === undefined || pair === null ? null : encodeWithoutSpecialTokens(pair)),
  };
}

/** The pad token: the tokenizer.json's padding section, else [PAD] or <pad>, else id 0. */
function padToken(padding: unknown, tokenId: (token: string) => number | undefined, fail: (path: string, message: string) => never): TextTokenizer["pad"] {
  if (isObject(padding)) {
    const { pad_id: id, pad_type_id: typeId = 0 } = padding;
    if (!isTokenId(id)) fail("padding.pad_id", `is ${describeValue(id)}; expected a token id`);
    if (!isTokenId(typeId)) fail("padding.pad_type_id", `is ${describeValue(typeId)}; expected an integer >= 0`);
    return { id, typeId, from: "padding" };
  }
  for (const token of ["[PAD]", "<pad>"] as const) {
    const id = tokenId(token);
    if (id !== undefined) return { id, typeId: 0, from: token };
  }
  return { id: 0, typeId: 0, from: "none" };
}

/**
 * The vocabulary a tokenizer writes ids into: its largest id + 1, counting the added tokens
 * (`len(tokenizer)` of transformers when the ids have no gaps). A model whose
 * config.vocab_size is smaller would read ids past its embedding.
 *
 * @example
 * ```ts
 * tokenizerVocabularySize(loadTokenizer(gpt2TokenizerJson)); // 50257
 * ```
 */
export function tokenizerVocabularySize(tok: TextTokenizer): number {
  return tok.vocabularySize;
}

// ---------------------------------------------------------------- tokenization

/**
 * `data.tokenization`: as transformers' `tokenizer(..., max_length, truncation, padding)`.
 *
 * @example
 * ```ts
 * const options: TokenizationOptions = { max_length: 128, truncation: true, padding: "max_length" };
 * ```
 */
export interface TokenizationOptions {
  /** The longest row, special tokens included; default: the model's max_position_embeddings. */
  max_length?: number | undefined;
  /** false (default): a longer row is refused; true: truncated (`longest_first` for pairs). */
  truncation?: boolean | undefined;
  /** "longest" (default): to the longest row of the run, train and validation; "max_length": to max_length. */
  padding?: "longest" | "max_length" | undefined;
}

/**
 * The lengths both texts of a pair keep under `longestFirst` truncation to `max` tokens: the
 * crate's `truncate_encodings` (tokenizers/src/utils/truncation.rs): the shorter text stays
 * whole when the longer one can give up enough; otherwise each keeps half, the second text the
 * odd token. One text keeps its first `max` tokens.
 *
 * @example
 * ```ts
 * longestFirst(8, 2, 7); // [5, 2]
 * longestFirst(4, 4, 7); // [3, 4]
 * ```
 */
export function longestFirst(n1: number, n2: number, max: number): [number, number] {
  if (n1 + n2 <= max) return [n1, n2];
  if (max <= 0) return [0, 0];
  let short = Math.min(n1, n2);
  let long = short > max ? short : Math.max(short, max - short);
  if (short + long > max) {
    short = Math.floor(max / 2);
    long = short + (max % 2);
  }
  return n1 > n2 ? [long, short] : [short, long];
}

/** The rows of one table, tokenized (unpadded). */
interface EncodedRows {
  ids: number[][];
  types: number[][];
}

/**
 * Tokenizes the text rows of a run (train and validation; one of them may be token rows already
 * or absent) into token rows: input_ids padded to one width, attention_mask (1 token, 0 padding)
 * and token_type_ids (0 first text, 1 the pair, as the post-processor says). `maxPositions` is
 * the model's limit (config.max_position_embeddings / n_positions) or null. Throws a 422 at
 * `data.tokenization.max_length` for a limit the model cannot take, and a DatasetError naming
 * every row (`data.train.text[i]`, or the line of a file part) longer than the limit without
 * truncation, with its token count.
 *
 * @example
 * ```ts
 * const { train, validation } = tokenizeTables(tok, { train: textTable, validation: null }, { truncation: true }, 512);
 * train.features; // the longest row's token count
 * ```
 */
export function tokenizeTables(
  tok: TextTokenizer,
  tables: { train: Table; validation: Table | null },
  options: TokenizationOptions,
  maxPositions: number | null,
): { train: Table; validation: Table | null } {
  const truncation = options.truncation ?? false;
  const padding = options.padding ?? "longest";
  const given = options.max_length;
  if (given !== undefined && maxPositions !== null && given > maxPositions) {
    throw new UnprocessableError("invalid_tokenization", [
      { path: "data.tokenization.max_length", message: `is ${given}, but the model takes at most ${maxPositions} positions (max_position_embeddings)` },
    ]);
  }
  const limit = given ?? maxPositions;
  if (limit === null && (truncation || padding === "max_length")) {
    throw new UnprocessableError("invalid_tokenization", [
      { path: "data.tokenization.max_length", message: `is needed: ${truncation ? "truncation" : 'padding "max_length"'} cuts or pads to max_length, and the model states no max_position_embeddings` },
    ]);
  }
  const special = (pair: boolean) => (pair ? tok.specialTokens.pair : tok.specialTokens.single);
  if (limit !== null && truncation) {
    const pair = [tables.train, tables.validation].some((t) => t?.textPair);
    if (limit < special(pair)) {
      throw new UnprocessableError("invalid_tokenization", [
        { path: "data.tokenization.max_length", message: `is ${limit}, fewer than the ${special(pair)} special tokens the tokenizer adds to ${pair ? "a pair" : "a text"}` },
      ]);
    }
  }

  const issues: FieldIssue[] = [];
  const encodeTable = (table: Table, split: "train" | "validation"): EncodedRows | null => {
    if (!table.text) return null;
    const ids: number[][] = [];
    const types: number[][] = [];
    for (let r = 0; r < table.rows; r++) {
      const pairText = table.textPair ? table.textPair[r]! : null;
      let a = tok.encodeWithoutSpecialTokens(table.text[r]!);
      let b = pairText === null ? null : tok.encodeWithoutSpecialTokens(pairText);
      const extra = special(b !== null);
      if (limit !== null && truncation) {
        // as the crate: truncate to max_length minus the special tokens, then add them
        const [n1, n2] = longestFirst(a.length, b?.length ?? 0, limit - extra);
        a = a.slice(0, n1);
        if (b) b = b.slice(0, n2);
      }
      const row = tok.addSpecialTokens(a, b);
      const where = rowPath(table, split, r);
      if (limit !== null && row.ids.length > limit && issues.length < MAX_ISSUES) {
        issues.push({
          ...where,
          message: `row ${r} is ${row.ids.length} tokens (special tokens included), longer than max_length ${limit}${given === undefined ? " (the model's max_position_embeddings)" : ""}: shorten it, or set data.tokenization.truncation to true`,
        });
      } else if (row.ids.length === 0 && issues.length < MAX_ISSUES) {
        issues.push({ ...where, message: `row ${r} gives no tokens (an empty text with a tokenizer that adds no special tokens): every row needs at least one` });
      }
      ids.push(row.ids);
      types.push(row.typeIds);
    }
    return { ids, types };
  };
  const train = encodeTable(tables.train, "train");
  const validation = tables.validation ? encodeTable(tables.validation, "validation") : null;
  if (issues.length > 0) throw new DatasetError(issues);

  let width = 0;
  if (padding === "max_length") width = limit!;
  else for (const rows of [train, validation]) for (const row of rows?.ids ?? []) width = Math.max(width, row.length);
  const tokenTable = (table: Table, rows: EncodedRows | null): Table => (rows ? toTokenTable(table, rows, width, tok.pad) : table);
  return {
    train: tokenTable(tables.train, train),
    validation: tables.validation ? tokenTable(tables.validation, validation) : null,
  };
}

/** Where a text row sits: `data.train.text[i]` inline, or the part and its line. */
function rowPath(table: Table, split: string, row: number): Omit<FieldIssue, "message"> {
  const line = table.lines?.[row];
  return line !== undefined ? { path: `data.${split}`, line, column: "text" } : { path: `data.${split}.text[${row}]` };
}

/** Token rows padded on the right to `width` with the pad token (type id pad.typeId, mask 0). */
function toTokenTable(table: Table, rows: EncodedRows, width: number, pad: TextTokenizer["pad"]): Table {
  const n = rows.ids.length;
  const x = new Float32Array(n * width).fill(pad.id);
  const mask = new Float32Array(n * width);
  const tokenTypes = new Float32Array(n * width).fill(pad.typeId);
  for (let r = 0; r < n; r++) {
    const ids = rows.ids[r]!;
    const types = rows.types[r]!;
    x.set(ids, r * width);
    mask.fill(1, r * width, r * width + ids.length);
    tokenTypes.set(types, r * width);
  }
  const { text: _text, textPair: _pair, ...rest } = table;
  return { ...rest, rows: n, features: width, x, ids: true, mask, tokenTypes };
}
