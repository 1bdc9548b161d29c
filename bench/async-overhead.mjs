// The fixed cost of running a job async rather than sync on the edge, through a real `wrangler
// dev` (issue 16 item 3): the seed MLP for 300 epochs, sync then async, N times in a row with
// nothing else calling (no GETs, no event stream while it runs). Per job, the time that is not
// training: sync, the POST's round trip minus the run's duration_ms; async, from the POST to the
// job's finished_at minus its duration_ms, split into POST -> started_at and started_at ->
// finished_at minus training. Medians over the runs after 2 warm-ups. Where edge-async.mjs
// compares whole jobs (ratios that a busy machine blurs), this isolates what async adds.
//   node bench/async-overhead.mjs [--runs 15] [--epochs 300]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, root, seedMlp, startWranglerDev, stats, stopProcess, tinyRequest, waitReady } from "./lib.mjs";

const rest = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? Number(rest[i + 1]) : fallback;
};
const RUNS = arg("runs", 15);
const EPOCHS = arg("epochs", 300);
const WARM_UP = 2;

const work = mkdtempSync(join(tmpdir(), "edgetune-bench-async-overhead-"));
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const dev = await startWranglerDev(port, join(work, "state"), { RATE_LIMIT_PER_MINUTE: "0" });
try {
  await waitReady(dev, base, "wrangler dev");
  const seed = seedMlp();
  const { encodeBase64 } = await import(join(root, "dist/src/formats/base64.js"));
  const r = tinyRequest({ x: seed.x, y: seed.y, weights: encodeBase64(seed.weights) });
  const body = (mode) => JSON.stringify({ ...r, training: { ...r.training, epochs: EPOCHS }, mode, ...(mode === "async" ? { placement: "edge" } : {}) });
  const post = (mode) => fetch(`${base}/v1/fine-tunes`, { method: "POST", headers: { "content-type": "application/json" }, body: body(mode) });
  const phases = { sync_ms: [], async_ms: [], post_to_started_ms: [], started_to_finished_ms: [] };
  for (let i = 0; i < WARM_UP + RUNS; i++) {
    const s0 = Date.now();
    const sync = await post("sync");
    const result = await sync.json();
    const s1 = Date.now();
    if (sync.status !== 200) throw new Error(`sync POST answered ${sync.status}: ${JSON.stringify(result).slice(0, 300)}`);
    const a0 = Date.now(); // the job's timestamps are on the same clock (one machine)
    const accepted = await post("async");
    const { id } = await accepted.json();
    if (accepted.status !== 202) throw new Error(`async POST answered ${accepted.status}`);
    await (await fetch(`${base}/v1/fine-tunes/${id}/events`)).text(); // ends after the final event
    const job = await (await fetch(`${base}/v1/fine-tunes/${id}`)).json();
    if (job.status !== "succeeded") throw new Error(`async job ${id} ended ${job.status}`);
    if (i < WARM_UP) continue;
    const at = (field) => Date.parse(job[field]);
    phases.sync_ms.push(s1 - s0 - result.metrics.duration_ms);
    phases.async_ms.push(at("finished_at") - a0 - job.metrics.duration_ms);
    phases.post_to_started_ms.push(at("started_at") - a0);
    phases.started_to_finished_ms.push(at("finished_at") - at("started_at") - job.metrics.duration_ms);
  }
  const medians = Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, stats(v).median]));
  process.stderr.write(`async-overhead: ${EPOCHS} epochs, ${RUNS} runs, medians of the time besides training: sync ${medians.sync_ms} ms, async ${medians.async_ms} ms (POST -> started ${medians.post_to_started_ms} ms, started -> finished ${medians.started_to_finished_ms} ms)\n`);
  console.log(JSON.stringify({ workload: "async-overhead", epochs: EPOCHS, runs: RUNS, medians_ms: medians }));
} finally {
  await stopProcess(dev);
  rmSync(work, { recursive: true, force: true });
}
