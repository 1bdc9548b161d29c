// Explanations (issue 18): what integrated gradients and KernelSHAP cost on this machine, on the
// WASM kernel core in Node (one thread), for docs/explain.md. Not part of `npm run bench`'s table.
//   npm run build:ts && node bench/explain.mjs
import { join } from "node:path";
import { root } from "./lib.mjs";

const { loadNodeRuntime } = await import(join(root, "dist/src/node/index.js"));
const { acquireKernels } = await import(join(root, "dist/src/engine/kernels.js"));
const { prepareRun } = await import(join(root, "dist/src/engine/prepare.js"));
const { defaultInit } = await import(join(root, "dist/src/engine/init.js"));
const { explainRun, explainFlops, compileForExplanation, explainRows } = await import(join(root, "dist/src/engine/explain/index.js"));
const { ExplainSpec } = await import(join(root, "dist/src/schema/explain.js"));

let s = 7;
const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
const runtime = await loadNodeRuntime();
const instance = await acquireKernels(runtime.module);

const mlp = {
  name: "MLP 10-10-1 (the seed example), 100 rows",
  request: {
    model: { layers: [{ type: "linear", name: "fc1", in_features: 10, out_features: 10 }, { type: "relu" }, { type: "linear", name: "fc2", in_features: 10, out_features: 1 }] },
    data: { train: { x: Array.from({ length: 200 }, () => Array.from({ length: 10 }, rand)), y: Array.from({ length: 200 }, rand) } },
  },
};
const T = 32, V = 1000;
const ids = () => Array.from({ length: T }, () => 1 + Math.floor(((rand() + 1) / 2) * (V - 1)));
const encoder = {
  name: `encoder (embedding ${V}x64, 2 x TransformerEncoderLayer d 64, 4 heads, ff 128; ${T} tokens), 20 rows`,
  request: {
    model: {
      layers: [
        { type: "embedding", name: "emb", num_embeddings: V, embedding_dim: 64 },
        { type: "position_embedding", name: "pos", num_embeddings: T, embedding_dim: 64 },
        { type: "transformer_encoder_layer", name: "enc0", d_model: 64, nhead: 4, dim_feedforward: 128, dropout: 0 },
        { type: "transformer_encoder_layer", name: "enc1", d_model: 64, nhead: 4, dim_feedforward: 128, dropout: 0 },
        { type: "pool", mode: "mean" },
        { type: "linear", name: "head", in_features: 64, out_features: 2 },
      ],
    },
    data: { train: { input_ids: Array.from({ length: 20 }, ids), y: Array.from({ length: 20 }, (_, i) => i % 2) } },
    training: { loss: { type: "cross_entropy" } },
  },
};
const cases = [
  [mlp, { method: "integrated_gradients" }],
  [mlp, { method: "integrated_gradients", steps: 128 }],
  [mlp, { method: "kernel_shap" }],
  [encoder, { method: "integrated_gradients" }],
  [encoder, { method: "kernel_shap", samples: 256, background: Array.from({ length: 10 }, ids) }],
];
console.log("| model | explain | FLOPs (plan) | time | GFLOP/s |");
console.log("| --- | --- | --- | --- | --- |");
for (const [m, raw] of cases) {
  const prepared = prepareRun(m.request);
  const spec = ExplainSpec.parse(raw);
  const params = [...defaultInit(prepared.model, 0)].map(([name, data]) => ({ name, shape: [...prepared.model.state.find((t) => t.name === name).shape], data }));
  const rows = explainRows(spec, prepared.train).count;
  const flops = explainFlops(spec, compileForExplanation(prepared), rows, prepared.train.rows);
  await explainRun(instance, prepared, params, spec); // warm-up
  const t0 = performance.now();
  await explainRun(instance, prepared, params, spec);
  const ms = performance.now() - t0;
  const what = `${spec.method}${spec.method === "integrated_gradients" ? `, ${spec.steps} steps` : `, ${spec.samples} samples, ${Array.isArray(spec.background) ? spec.background.length : Math.min(100, prepared.train.rows)} background rows`}`;
  console.log(`| ${m.name} | ${what} | ${flops.toExponential(2)} | ${ms.toFixed(0)} ms | ${(flops / ms / 1e6).toFixed(2)} |`);
}
