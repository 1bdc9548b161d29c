// Fine-tune a tiny GPT-2, pretrained on the GPL-3 text, on the Apache-2.0 text, through the HTTP
// API, and write the tuned Hugging Face folder.
//
//   npm run dev                                                          # in one terminal
//   node examples/tiny-gpt2/finetune.mjs [http://localhost:8787] [--text]  # in another
//
// The Hub folder (config.json, model.safetensors, tokenizer.json) and the data were made by
// pretrain.py. The request is multipart: `request` (request.json: the training settings),
// `config` (config.json, which makes model.huggingface.config), `weights` (model.safetensors,
// Hub names), `train` (train.jsonl: the first 80% of Apache-2.0's paragraphs as token rows) and
// `validation` (holdout.jsonl: the last 20%). With --text, the same rows go as text (train.csv,
// holdout.csv) with a `tokenizer` part (tokenizer.json), and the server tokenizes them to the
// same ids. A causal LM needs no targets: the labels are the input ids, shifted inside the
// model. The held-out perplexity is reported before training (metrics.initial) and after every
// epoch. The tuned folder is written to ./tiny-gpt2-tuned.
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";

const here = (file) => new URL(file, import.meta.url);
const args = process.argv.slice(2);
const text = args.includes("--text");
const baseURL = (args.find((a) => a !== "--text") ?? process.env.EDGETUNE_URL ?? "http://localhost:8787").replace(/\/+$/, "");
const headers = process.env.EDGETUNE_API_KEY ? { authorization: `Bearer ${process.env.EDGETUNE_API_KEY}` } : {};
const part = async (file, type) => new Blob([await readFile(here(file))], { type });

const request = JSON.parse(await readFile(here("request.json"), "utf8"));
const config = JSON.parse(await readFile(here("config.json"), "utf8"));
// text rows padded to n_positions, as the token rows are (padding id 0, attention_mask 0)
const data = text ? { tokenization: { padding: "max_length", max_length: config.n_positions } } : {};
const form = new FormData();
// the plan fits the Worker's budget (about 1 s of CPU for 4 epochs), so the run happens in the request
form.set("request", JSON.stringify({ ...request, data, mode: "sync" }));
form.set("config", await part("config.json", "application/json"), "config.json");
form.set("weights", await part("model.safetensors", "application/octet-stream"), "model.safetensors");
if (text) {
  form.set("tokenizer", await part("tokenizer.json", "application/json"), "tokenizer.json");
  form.set("train", await part("train.csv", "text/csv"), "train.csv");
  form.set("validation", await part("holdout.csv", "text/csv"), "holdout.csv");
} else {
  form.set("train", await part("train.jsonl", "application/jsonl"), "train.jsonl");
  form.set("validation", await part("holdout.jsonl", "application/jsonl"), "holdout.jsonl");
}

const response = await fetch(`${baseURL}/v1/fine-tunes`, { method: "POST", body: form, headers });
const result = await response.json();
if (!response.ok || result.status !== "succeeded") {
  console.error(JSON.stringify(result, null, 2));
  process.exit(1);
}
const before = result.metrics.initial.val_perplexity;
const after = result.metrics.history.at(-1).val_perplexity;
console.log(`held-out perplexity on the Apache License: ${before.toFixed(2)} pretrained -> ${after.toFixed(2)} fine-tuned ` +
  `(${result.metrics.steps} steps on ${result.engine.kernel}, ${result.plan.placement}, ${Math.round(result.metrics.duration_ms)} ms; ` +
  `${text ? "text rows tokenized by the server" : "token rows"})`);

// the tuned folder: the weights with Hub names, config.json as returned (unchanged), the tokenizer
const weights = await fetch(`${baseURL}/v1/fine-tunes/${result.id}/weights`, { headers });
if (!weights.ok) throw new Error(`GET weights: ${weights.status} ${await weights.text()}`);
await mkdir("tiny-gpt2-tuned", { recursive: true });
await writeFile("tiny-gpt2-tuned/model.safetensors", new Uint8Array(await weights.arrayBuffer()));
await writeFile("tiny-gpt2-tuned/config.json", JSON.stringify(result.huggingface.config, null, 2) + "\n");
await copyFile(here("tokenizer.json"), "tiny-gpt2-tuned/tokenizer.json");
console.log("wrote tiny-gpt2-tuned/ (config.json, model.safetensors, tokenizer.json): check.py loads it into the PyTorch GPT-2");
