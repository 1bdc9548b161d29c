// Train a 64-32-10 MLP on scikit-learn's digits from PyTorch's default init, with the learning
// rate left to edgetune ("lr": "auto"), through the API.
//
//   npm run build && npm run dev                        # in one terminal
//   node examples/digits-mlp-auto-lr/finetune.mjs       # in another
//
// request.json asks for "lr": "auto" and "loss": {"type": "auto"}: before training, the run
// tests learning rates from 1e-7 to 10 on a copy of the weights (fastai's lr_find), takes the
// steepest descent of the smoothed loss, and trains 8 epochs from the original weights at that
// rate; the integer labels and the 10 outputs make the loss cross-entropy. holdout.csv (360
// digits that training never sees) is sent as validation data, so every epoch reports its accuracy.
// Writes digits-mlp.safetensors and lr-finder.svg (the range test's curve, as docs/strategy.md shows it).
import { readFile, writeFile } from "node:fs/promises";
import { Edgetune } from "../../dist/src/sdk/index.js"; // in an app: import { Edgetune } from "edgetune/sdk"
import { lrFinderSvg } from "./plot.mjs";

const here = (file) => new URL(file, import.meta.url);
const client = new Edgetune({ baseURL: process.env.EDGETUNE_URL ?? "http://localhost:8787" });
const request = JSON.parse(await readFile(here("request.json"), "utf8"));

const result = await client.fineTunes.create({
  ...request,
  data: { ...request.data, train: await readFile(here("train.csv"), "utf8"), validation: await readFile(here("holdout.csv"), "utf8") },
  mode: "sync",
});
const finder = result.metrics.lr_finder;
console.log(`lr "auto": ${finder.lr.toPrecision(3)} (${finder.method}, a range test of ${finder.lrs.length} steps); loss "auto": ${result.plan.loss}`);
for (const h of result.metrics.history) console.log(`epoch ${h.epoch}  train_loss ${h.train_loss.toFixed(4)}  val_loss ${h.val_loss.toFixed(4)}  val_accuracy ${h.val_accuracy.toFixed(3)}`);
console.log(`held-out accuracy after ${result.metrics.history.length} epochs: ${result.metrics.history.at(-1).val_accuracy.toFixed(3)}`);
await writeFile("digits-mlp.safetensors", await client.fineTunes.weights(result.id));
await writeFile("lr-finder.svg", lrFinderSvg(finder));
console.log("wrote digits-mlp.safetensors and lr-finder.svg");
