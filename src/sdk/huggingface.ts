/**
 * A Hugging Face model folder as create() params: config.json, model.safetensors and
 * tokenizer.json, as files were read (bytes or text) or already parsed.
 */
import type { FineTuneCreateParams, WeightsInput } from "./types.js";

/**
 * A JSON file: its bytes, its text, or the parsed object.
 *
 * @example
 * ```ts
 * const config: JsonFile = await readFile("model-dir/config.json");
 * ```
 */
export type JsonFile = Uint8Array | ArrayBuffer | string | Record<string, unknown>;

/**
 * The files of a Hub model folder.
 *
 * @example
 * ```ts
 * const files: HuggingFaceFiles = { config: await readFile("config.json"), weights: await readFile("model.safetensors") };
 * ```
 */
export interface HuggingFaceFiles {
  /** config.json */
  config: JsonFile;
  /** model.safetensors (the Hub's names; optional only for a model initialised from scratch) */
  weights?: WeightsInput | undefined;
  /** tokenizer.json, for text data */
  tokenizer?: JsonFile | undefined;
  /** The task, when it should be checked against the architecture ("sequence-classification", "causal-lm"). */
  task?: "sequence-classification" | "causal-lm" | undefined;
}

/**
 * The model, weights and tokenizer parts of a create() call for a Hub model folder: spread it
 * into the params.
 *
 * @example
 * ```ts
 * import { readFile } from "node:fs/promises";
 * import { Edgetune, huggingFace } from "edgetune/sdk";
 *
 * const client = new Edgetune({ baseURL: "http://localhost:8787" });
 * const model = huggingFace({
 *   config: await readFile("tiny-gpt2/config.json"),
 *   weights: await readFile("tiny-gpt2/model.safetensors"),
 *   tokenizer: await readFile("tiny-gpt2/tokenizer.json"),
 * });
 * const result = await client.fineTunes.create({ ...model, data: { train: await readFile("train.jsonl", "utf8") }, mode: "sync" });
 * ```
 */
export function huggingFace(files: HuggingFaceFiles): Pick<FineTuneCreateParams, "model" | "weights"> & { tokenizer?: Record<string, unknown> } {
  const config = parseJson(files.config, "config");
  return {
    model: { huggingface: { config, ...(files.task ? { task: files.task } : {}) } },
    ...(files.weights !== undefined ? { weights: files.weights } : {}),
    ...(files.tokenizer !== undefined ? { tokenizer: parseJson(files.tokenizer, "tokenizer") } : {}),
  };
}

function parseJson(file: JsonFile, what: string): Record<string, unknown> {
  if (typeof file === "object" && !(file instanceof Uint8Array) && !(file instanceof ArrayBuffer)) return file;
  const text = typeof file === "string" ? file : new TextDecoder().decode(file instanceof ArrayBuffer ? new Uint8Array(file) : file);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new TypeError(`huggingFace(): ${what} is not valid JSON (${(e as Error).message})`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new TypeError(`huggingFace(): ${what} must hold a JSON object`);
  return value as Record<string, unknown>;
}
