// A memory-bound step (issue 21, finding 1): a square Linear at batch size 1, where each step
// streams every weight, its gradient and the optimizer state for a few FLOPs each. Prints the
// measured ms per step next to the FLOPs-only estimate, the figures that set EDGE_BYTES_PER_MS
// (src/api/budget.ts). Run after `npm run build:ts`: node bench/memory-bound.mjs [N]
import { train } from "../dist/src/node/index.js";
import { stepTrafficBytes } from "../dist/src/api/budget.js";
const N = Number(process.argv[2] ?? 2048), rows = 64;
const x = Array.from({ length: rows }, (_, i) => Array.from({ length: N }, (_, j) => Math.sin(i * 7 + j) * 0.1));
const y = Array.from({ length: rows }, (_, i) => Array.from({ length: N }, (_, j) => Math.cos(i + j) * 0.1));
for (const opt of [{ type: "sgd", lr: 0.01 }, { type: "adam", lr: 1e-3 }]) {
  const r = await train({ model: { layers: [{ type: "linear", in_features: N, out_features: N }] }, data: { train: { x, y } }, training: { epochs: 2, batch_size: 1, optimizer: opt, shuffle: false } });
  const steps = r.metrics.steps, ms = r.metrics.duration_ms;
  const traffic = stepTrafficBytes(r.plan, { ...opt, momentum: 0 }, "float32");
  console.log(
    `Linear(${N}, ${N}), batch 1, ${opt.type}: ${(ms / steps).toFixed(2)} ms a step over ${steps} steps; by FLOPs at 2e7/ms ${(r.plan.flops / r.plan.steps / 2e7).toFixed(2)} ms; ` +
      `traffic ${(traffic / 1e6).toFixed(1)} MB a step, so ${(traffic / (ms / steps) / 1e6).toFixed(2)} GB/s`,
  );
}
