// Fine-tune a PyTorch-pretrained CNN for a new user's handwriting, through the API.
//
//   npm run build && npm run dev                     # in one terminal
//   node examples/digits-cnn/finetune.mjs            # in another
//
// The model (request.json) was pretrained in PyTorch on 1,000 of scikit-learn's 8x8 digits
// (pretrain.py wrote weights.safetensors). The new user writes with a thicker pen: train.csv
// holds 400 of their digits, holdout.csv 397 more that training never sees. The holdout is
// sent as validation data, so the result reports its accuracy before (metrics.initial) and
// after every epoch.
import { readFile, writeFile } from "node:fs/promises";
import { Edgetune } from "../../dist/src/sdk/index.js"; // in an app: import { Edgetune } from "edgetune/sdk"

const here = (file) => new URL(file, import.meta.url);
const client = new Edgetune({ baseURL: process.env.EDGETUNE_URL ?? "http://localhost:8787" });
const request = JSON.parse(await readFile(here("request.json"), "utf8"));

const result = await client.fineTunes.create({
  ...request,
  weights: await readFile(here("weights.safetensors")),
  data: { ...request.data, train: await readFile(here("train.csv"), "utf8"), validation: await readFile(here("holdout.csv"), "utf8") },
  mode: "sync",
});
const before = result.metrics.initial.val_accuracy;
const after = result.metrics.history.at(-1).val_accuracy;
console.log(`held-out accuracy on the new user's digits: ${before.toFixed(3)} pretrained -> ${after.toFixed(3)} fine-tuned ` +
  `(${result.metrics.steps} steps on ${result.engine.kernel}, ${result.plan.placement}, ${Math.round(result.metrics.duration_ms)} ms)`);
await writeFile("digits-tuned.safetensors", await client.fineTunes.weights(result.id));
console.log("wrote digits-tuned.safetensors (loads into the PyTorch model of pretrain.py with load_state_dict)");
