// Differentially private fine-tuning on the digits of examples/digits-cnn: the same CNN, the same
// pretrained weights, the same new user's 400 digits, trained twice in-process, once without
// privacy and once with DP-SGD at ε = 3 (δ = 1e-3, below 1/400), and each measured on the 397
// held-out digits.
//
//   npm run build:ts && node examples/dp-digits/compare.mjs
//
// The holdout is public evaluation data here: a private run's validation data is not protected
// (docs/privacy.md), so it must not be the private rows.
import { readFile } from "node:fs/promises";
import { parseCsv, train } from "../../dist/src/node/index.js"; // in an app: import { train } from "edgetune"

const here = (file) => new URL(`../digits-cnn/${file}`, import.meta.url);
const request = JSON.parse(await readFile(here("request.json"), "utf8"));
const weights = new Uint8Array(await readFile(here("weights.safetensors")));
const tables = {
  train: parseCsv(await readFile(here("train.csv"), "utf8"), { target: "y", field: "data.train" }),
  validation: parseCsv(await readFile(here("holdout.csv"), "utf8"), { target: "y", field: "data.validation" }),
};

async function run(label, extra) {
  const result = await train({ ...request, weights, ...extra, training: { ...request.training, ...extra.training } }, { tables });
  const accuracy = result.metrics.history.at(-1).val_accuracy;
  const privacy = result.metrics.privacy;
  console.log(
    `${label.padEnd(12)} held-out accuracy ${accuracy.toFixed(3)}` +
      (privacy ? `  ε = ${privacy.epsilon.toFixed(3)} at δ = ${privacy.delta} (σ = ${privacy.noise_multiplier.toFixed(4)}, q = ${privacy.sample_rate}, ${privacy.steps} steps)` : "  no privacy guarantee"),
  );
  return { accuracy, initial: result.metrics.initial.val_accuracy, privacy };
}

const plain = await run("non-private", { training: {} });
const dp = await run("DP-SGD", {
  training: { epochs: 15, optimizer: { type: "adam", lr: 0.003 } },
  privacy: { type: "dp-sgd", max_grad_norm: 1.0, target_epsilon: 3, delta: 1e-3 },
});
console.log(`pretrained   held-out accuracy ${plain.initial.toFixed(3)}`);
console.log(`privacy cost ${(plain.accuracy - dp.accuracy).toFixed(3)} accuracy for ε = ${dp.privacy.epsilon.toFixed(2)}`);
