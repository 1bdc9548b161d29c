/**
 * examples/tiny-gpt2: the committed Hub folder (config.json, model.safetensors, tokenizer.json)
 * and its data fit together, and train() fine-tunes it as the example does (two epochs here
 * instead of four): the held-out perplexity falls and the weights come back with the file's
 * Hub names and shapes; its text rows with its tokenizer.json are the same rows. The example end
 * to end over HTTP: test/e2e/wrangler-dev.test.ts.
 */
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";
import { describe, expect, it } from "vitest";
import { train } from "../../src/node/index.js";
import type { TrainRequest } from "../../src/engine/train.js";
import { decodeBase64 } from "../../src/formats/base64.js";
import { parseSafetensors } from "../../src/formats/safetensors.js";

const dir = new URL("../../examples/tiny-gpt2/", import.meta.url);
const bytes = (name: string) => new Uint8Array(readFileSync(new URL(name, dir)));
const text = (name: string) => readFileSync(new URL(name, dir), "utf8");
const config = JSON.parse(text("config.json")) as { vocab_size: number; n_positions: number };
const request = JSON.parse(text("request.json")) as { training: Record<string, unknown> };

/** A JSONL file of {"input_ids", "attention_mask"} rows as inline token data. */
function tokenRows(name: string): { input_ids: number[][]; attention_mask: number[][] } {
  const rows = text(name).trim().split("\n").map((l) => JSON.parse(l) as { input_ids: number[]; attention_mask: number[] });
  return { input_ids: rows.map((r) => r.input_ids), attention_mask: rows.map((r) => r.attention_mask) };
}

/** The texts of a CSV file with one `text` column, every field quoted (RFC 4180, as pretrain.py writes it). */
function textRows(name: string): string[] {
  const csv = text(name);
  expect(csv.startsWith("text\r\n")).toBe(true);
  const fields = [...csv.slice(6).matchAll(/"((?:[^"]|"")*)"\r\n/g)];
  expect(fields.map((m) => m[0]).join("")).toBe(csv.slice(6)); // nothing between the fields
  return fields.map((m) => m[1]!.replaceAll('""', '"'));
}

function names(weights: Uint8Array): [string, number[]][] {
  return [...parseSafetensors(weights).tensors].map(([name, info]) => [name, info.shape]);
}

describe("examples/tiny-gpt2", () => {
  it("the folder fits together: the vocabulary is the tokenizer's, rows of n_positions ids, right-padded", () => {
    const tokenizer = JSON.parse(text("tokenizer.json")) as {
      model: { type: string; vocab: Record<string, number>; merges: string[] };
      added_tokens: { id: number; content: string }[];
    };
    expect(tokenizer.model.type).toBe("BPE");
    const ids = [...Object.values(tokenizer.model.vocab), ...tokenizer.added_tokens.map((t) => t.id)];
    expect(Math.max(...ids) + 1).toBe(config.vocab_size);
    expect(tokenizer.added_tokens.map((t) => t.content)).toEqual(["<|endoftext|>"]);
    for (const name of ["train.jsonl", "holdout.jsonl"]) {
      const { input_ids, attention_mask } = tokenRows(name);
      for (const [i, row] of input_ids.entries()) {
        expect(row).toHaveLength(config.n_positions);
        expect(row.every((id) => Number.isInteger(id) && id >= 0 && id < config.vocab_size)).toBe(true);
        const real = attention_mask[i]!.indexOf(0) === -1 ? row.length : attention_mask[i]!.indexOf(0);
        expect(attention_mask[i]!.slice(real).every((m) => m === 0)).toBe(true);
        expect(real).toBeGreaterThan(1);
      }
    }
    expect(textRows("train.csv")).toHaveLength(tokenRows("train.jsonl").input_ids.length);
    expect(textRows("holdout.csv")).toHaveLength(tokenRows("holdout.jsonl").input_ids.length);
  });

  it("fine-tunes for two epochs with train(): the held-out perplexity falls, the weights keep the file's Hub names and shapes", async () => {
    const weights = bytes("model.safetensors");
    const result = await train({
      ...request,
      model: { huggingface: { config } },
      weights: Buffer.from(weights).toString("base64"),
      data: { train: tokenRows("train.jsonl"), validation: tokenRows("holdout.jsonl") },
      training: { ...request.training, epochs: 2 },
    } as TrainRequest);
    expect(result.status).toBe("succeeded");
    const initial = result.metrics.initial!.val_perplexity!;
    // the figure PyTorch gives the float16 file (pretrain.py and check.py print 65.18)
    expect(initial).toBeCloseTo(65.18, 1);
    const history = result.metrics.history.map((e) => e.val_perplexity!);
    expect(history).toHaveLength(2);
    expect(history.at(-1)!).toBeLessThan(initial);
    expect(names(decodeBase64(result.weights!))).toEqual(names(weights));
    expect(result.huggingface!.config).toEqual(config);
  });

  it("its text rows tokenize to its token rows with @huggingface/tokenizers", () => {
    const tokenizer = new Tokenizer(JSON.parse(text("tokenizer.json")), {});
    for (const name of ["train", "holdout"]) {
      const { input_ids, attention_mask } = tokenRows(`${name}.jsonl`);
      const expected = input_ids.map((row, i) => row.filter((_, t) => attention_mask[i]![t] === 1));
      expect(textRows(`${name}.csv`).map((t) => tokenizer.encode(t).ids)).toEqual(expected);
    }
  });

  it("the text rows with tokenizer.json, padded to n_positions, train to the token rows' weights", async () => {
    const run = (data: Record<string, unknown>, tokenizer?: unknown) =>
      train({
        ...request,
        model: { huggingface: { config } },
        ...(tokenizer ? { tokenizer } : {}),
        weights: Buffer.from(bytes("model.safetensors")).toString("base64"),
        data,
        training: { ...request.training, epochs: 1 },
      } as TrainRequest);
    const tokens = await run({ train: tokenRows("train.jsonl"), validation: tokenRows("holdout.jsonl") });
    const texts = await run(
      { train: { text: textRows("train.csv") }, validation: { text: textRows("holdout.csv") }, tokenization: { padding: "max_length", max_length: config.n_positions } },
      JSON.parse(text("tokenizer.json")),
    );
    expect(texts.status).toBe("succeeded");
    expect(texts.metrics.history).toEqual(tokens.metrics.history);
    expect(texts.weights).toBe(tokens.weights);
  });
});
