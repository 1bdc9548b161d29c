// The figures of docs/strategy.md, in-process (no server): the digits MLP with lr "auto" against
// fixed learning rates, and the range test's curve as docs/figures/lr-finder-digits.svg.
//
//   npm run build:ts && node examples/digits-mlp-auto-lr/compare.mjs
import { readFile, writeFile, mkdir } from "node:fs/promises";
import { train } from "../../dist/src/node/index.js";
import { parseCsv } from "../../dist/src/formats/dataset.js";
import { lrFinderSvg } from "./plot.mjs";

const here = (file) => new URL(file, import.meta.url);
const request = JSON.parse(await readFile(here("request.json"), "utf8"));
const tables = {
  train: parseCsv(await readFile(here("train.csv"), "utf8"), { target: "y", field: "data.train" }),
  validation: parseCsv(await readFile(here("holdout.csv"), "utf8"), { target: "y", field: "data.validation" }),
};
const withTraining = (training) => ({ ...request, training: { ...request.training, ...training } });
const runs = [
  ['lr "auto", batch 32', withTraining({})],
  ["lr 1e-3 (Adam's default), batch 32", withTraining({ optimizer: { type: "adam", lr: 1e-3 } })],
  ["lr 1e-2, batch 32", withTraining({ optimizer: { type: "adam", lr: 1e-2 } })],
  ["lr 1e-4, batch 32", withTraining({ optimizer: { type: "adam", lr: 1e-4 } })],
  ['lr "auto", batch_size "auto"', withTraining({ batch_size: "auto" })],
];
console.log("| run | lr | batch | held-out accuracy after epochs 1, 4, 8 |\n| --- | --- | --- | --- |");
for (const [name, r] of runs) {
  const result = await train(r, { tables });
  const acc = (e) => result.metrics.history[e - 1].val_accuracy.toFixed(3);
  const lr = result.metrics.lr_finder ? `${result.metrics.lr_finder.lr.toPrecision(3)} (${result.metrics.lr_finder.method})` : String(r.training.optimizer.lr);
  console.log(`| ${name} | ${lr} | ${result.plan.batch_size} | ${acc(1)}, ${acc(4)}, ${acc(8)} |`);
  if (name === 'lr "auto", batch 32') {
    await mkdir(here("../../docs/figures/"), { recursive: true });
    await writeFile(here("../../docs/figures/lr-finder-digits.svg"), lrFinderSvg(result.metrics.lr_finder));
  }
}
console.log("wrote docs/figures/lr-finder-digits.svg");
