// A hyperparameter search on scikit-learn's digits (docs/strategy.md, "Searches"): 6 trials of
// the 64-32-10 MLP, each with a learning rate drawn log-uniformly from [1e-4, 1] and a batch
// size from {16, 32, 64}, at most 2 running at once, ranked by the held-out val_loss.
//
//   npm run build && npm run dev                       # in one terminal
//   node examples/digits-mlp-auto-lr/search.mjs        # in another
//
// The search is an async job; each trial is a job of its own (`parent`: the search's id) that
// the Queue runs on the edge. The search's weights are the best trial's, byte for byte.
// With --asha: 12 trials under successive halving (grace 1 epoch, reduction factor 3: rungs at
// epochs 1 and 3), so the trials that start badly are stopped early.
// Writes digits-mlp-search.safetensors.
import { readFile, writeFile } from "node:fs/promises";
import { Edgetune } from "../../dist/src/sdk/index.js"; // in an app: import { Edgetune } from "edgetune/sdk"

const here = (file) => new URL(file, import.meta.url);
const client = new Edgetune({ baseURL: process.env.EDGETUNE_URL ?? "http://localhost:8787" });
const request = JSON.parse(await readFile(here("request.json"), "utf8"));

const asha = process.argv.includes("--asha");
const startedAt = Date.now();
const search = await client.fineTunes.create({
  ...request,
  data: { ...request.data, train: await readFile(here("train.csv"), "utf8"), validation: await readFile(here("holdout.csv"), "utf8") },
  mode: "async",
  search: {
    space: { "training.optimizer.lr": { log_uniform: [1e-4, 1] }, "training.batch_size": { choice: [16, 32, 64] } },
    trials: asha ? 12 : 6,
    parallel: 2,
    seed: 0,
    ...(asha ? { early_termination: { type: "asha", grace_epochs: 1, reduction_factor: 3 } } : {}),
  },
});
console.log(`search ${search.id}: ${search.trials.length} trials, ${search.search.parallel} at once`);
const done = await client.fineTunes.waitForCompletion(search.id, {
  onEvent: (e) => {
    if (e.event === "trial" && e.data.status === "succeeded") console.log(`trial ${e.data.id} succeeded: val_loss ${e.data.metric.toFixed(4)}`);
  },
});
console.log(`${done.status} in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
console.log("best  lr        batch  epochs  val_loss  val_accuracy  stopped at");
let epochs = 0;
for (const t of await client.fineTunes.trials(search.id)) {
  const trial = await client.fineTunes.retrieve(t.id);
  const last = trial.metrics.history.at(-1);
  epochs += trial.metrics.epochs;
  console.log(
    `${t.best ? "  *  " : "     "} ${t.params["training.optimizer.lr"].toExponential(2)}  ${String(t.params["training.batch_size"]).padStart(5)}  ${String(trial.metrics.epochs).padStart(6)}  ${last.val_loss.toFixed(4)}    ${last.val_accuracy.toFixed(3)}${t.stopped_at_rung ? `         rung ${t.stopped_at_rung}` : ""}`,
  );
}
console.log(`epochs trained: ${epochs} of ${search.trials.length * request.training.epochs}`);
const weights = await client.fineTunes.weights(search.id);
const best = await client.fineTunes.weights(done.best_trial);
console.log(`the search's weights are the best trial's: ${Buffer.from(weights).equals(Buffer.from(best))}`);
await writeFile("digits-mlp-search.safetensors", weights);
console.log("wrote digits-mlp-search.safetensors");
