// Personalise a classifier head per user: one shared "encoder" layer stays frozen, and each
// user's small labelled set fine-tunes only the head (`trainable: ["head"]`). Each user gets
// their own weights file; the encoder is byte-identical in all of them.
//
//   npm run build && npm run dev                          # in one terminal
//   node examples/per-user-head/personalise.mjs           # in another
//
// The data is synthetic (seeded): 8-dimensional "embeddings" and 3 intents, where every user
// labels the same embeddings a little differently (their own decision boundary).
import { writeFile } from "node:fs/promises";
import { Edgetune } from "../../dist/src/sdk/index.js"; // in an app: import { Edgetune } from "edgetune/sdk"

const client = new Edgetune({ baseURL: process.env.EDGETUNE_URL ?? "http://localhost:8787" });

let state = 7;
const rand = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
const embedding = () => Array.from({ length: 8 }, rand);

/** A user's labels: the class whose direction (rotated by the user's bias) best matches. */
function labelsFor(user, x) {
  return x.map((v) => {
    const scores = [v[0] + user.bias * v[3], v[1] - user.bias * v[4], v[2] + user.bias * v[5]];
    return scores.indexOf(Math.max(...scores));
  });
}

const model = {
  layers: [
    { type: "linear", name: "encoder", in_features: 8, out_features: 16 },
    { type: "tanh" },
    { type: "linear", name: "head", in_features: 16, out_features: 3 },
  ],
};

// 1. a base model for everyone (here: trained once on pooled data; in practice, your pretrained weights)
const pooled = Array.from({ length: 600 }, embedding);
const base = await client.fineTunes.create({
  model,
  data: { train: { x: pooled, y: labelsFor({ bias: 0 }, pooled) }, validation_split: 0.2 },
  training: { epochs: 30, batch_size: 32, loss: { type: "cross_entropy" }, optimizer: { type: "adam", lr: 0.01 }, seed: 1 },
  mode: "sync",
});
console.log(`base model: val_accuracy ${base.metrics.history.at(-1).val_accuracy.toFixed(3)}`);

// 2. per user: 60 labelled examples, only the head trains, starting from the base weights
for (const user of [{ name: "ada", bias: 0.8 }, { name: "lin", bias: -0.8 }]) {
  const x = Array.from({ length: 60 }, embedding);
  const result = await client.fineTunes.create({
    model,
    weights: base.weights,
    trainable: ["head"],
    data: { train: { x, y: labelsFor(user, x) }, validation_split: 0.25 },
    training: { epochs: 60, batch_size: 16, loss: { type: "cross_entropy" }, optimizer: { type: "adam", lr: 0.02 }, seed: 2 },
    mode: "sync",
  });
  const h = result.metrics.history;
  console.log(`${user.name}: head-only fine-tune, val_accuracy ${h[0].val_accuracy.toFixed(3)} -> ${h.at(-1).val_accuracy.toFixed(3)}, ${result.plan.trainable_params} of ${result.plan.params} parameters trained`);
  await writeFile(`head-${user.name}.safetensors`, Buffer.from(result.weights, "base64"));
}
console.log("wrote head-ada.safetensors and head-lin.safetensors (same encoder, each user's own head)");
