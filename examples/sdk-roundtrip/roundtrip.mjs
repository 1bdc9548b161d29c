// The PyTorch round trip through the SDK: fine-tune examples/seed-mlp (exported from PyTorch by
// ../seed-mlp/export.py) on a running edgetune, follow its progress, and write tuned.safetensors,
// which ../seed-mlp/check.py loads back into PyTorch.
//
//   npm run build && npm run dev                       # in one terminal
//   node examples/sdk-roundtrip/roundtrip.mjs          # in another
//   /usr/bin/python3 examples/seed-mlp/check.py tuned.safetensors
//
// EDGETUNE_URL (default http://localhost:8787) and EDGETUNE_API_KEY are read from the environment.
import { readFile, writeFile } from "node:fs/promises";
import { Edgetune } from "../../dist/src/sdk/index.js"; // in an app: import { Edgetune } from "edgetune/sdk"

const seed = new URL("../seed-mlp/", import.meta.url);
const client = new Edgetune({ baseURL: process.env.EDGETUNE_URL ?? "http://localhost:8787" });

const request = JSON.parse(await readFile(new URL("request.json", seed), "utf8"));
const job = await client.fineTunes.create({
  ...request,
  weights: await readFile(new URL("weights.safetensors", seed)), // bytes: sent as a multipart part
  data: { ...request.data, train: await readFile(new URL("train.csv", seed), "utf8") }, // CSV text: a part too
  mode: "async",
});
console.log(`${job.id}: ${job.status} on ${job.plan.placement}, ${job.plan.steps} steps`);

const done = await client.fineTunes.waitForCompletion(job.id, {
  onEvent: (e) => {
    if (e.event === "epoch") console.log(`epoch ${String(e.data.epoch).padStart(2)}  train_loss ${e.data.train_loss.toFixed(5)}  val_loss ${e.data.val_loss?.toFixed(5)}`);
  },
});
if (done.status !== "succeeded") {
  console.error(`${done.id} ended ${done.status}: ${done.error?.message ?? ""}`);
  process.exit(1);
}
await writeFile("tuned.safetensors", await client.fineTunes.weights(done.id));
const [first, last] = [done.metrics.history[0], done.metrics.history.at(-1)];
console.log(`train_loss ${first.train_loss.toFixed(5)} -> ${last.train_loss.toFixed(5)}; wrote tuned.safetensors`);
