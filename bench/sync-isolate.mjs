// A sync job and its isolate (issue 20, finding 8): while one key's sync job near the default
// 10 s CPU budget trains in a real `wrangler dev`, this measures the latency of GET /healthz
// (one request every 20 ms, one after another) and of another key's tiny sync job (one after
// another), against the same requests with nothing training, and the long job alone and with
// them (what the turns cost it). `--root DIR` runs another
// checkout's Worker (its own wrangler.toml and sources), to compare before and after.
//   node bench/sync-isolate.mjs [--epochs 600] [--root DIR]
// Prints a JSON summary (ms).
import { backgroundCpu, root as here, rng, startSampledWranglerDev, stats } from "./lib.mjs";

const rest = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : fallback;
};
const EPOCHS = Number(arg("epochs", 600));
const ROOT = arg("root", here);
const KEYS = ["isolate-long-key", "isolate-tiny-key"];

const dev = await startSampledWranglerDev({ checkout: ROOT, vars: { EDGETUNE_API_KEYS: KEYS.join(","), RATE_LIMIT_PER_MINUTE: "0" }, prefix: "edgetune-bench-isolate-" });
const { base, stop } = dev;

/** How long a request may go unanswered before it counts as lost. */
const NO_ANSWER_MS = 60_000;
const post = (key, body) => fetch(`${base}/v1/fine-tunes`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${key}` }, body: JSON.stringify(body), signal: AbortSignal.timeout(NO_ANSWER_MS) });
const health = () => fetch(`${base}/healthz`, { signal: AbortSignal.timeout(NO_ANSWER_MS) });

/** 64 -> 256 -> 10 on 2,000 rows, batch 32: about 13 ms of the default cost model an epoch. */
function longJob(epochs) {
  const rand = rng(5);
  const x = Array.from({ length: 2000 }, () => Array.from({ length: 64 }, () => Math.round(rand() * 256) / 256));
  const y = x.map((r) => (r[0] > 0.5 ? 1 : 0) + (r[1] > 0.5 ? 2 : 0));
  return {
    mode: "sync",
    model: { layers: [{ type: "linear", in_features: 64, out_features: 256 }, { type: "relu" }, { type: "linear", in_features: 256, out_features: 10 }] },
    data: { train: { x, y } },
    training: { epochs, batch_size: 32, loss: { type: "cross_entropy" }, optimizer: { type: "adam", lr: 1e-3 } },
  };
}

const TINY = {
  mode: "sync",
  model: { layers: [{ type: "linear", in_features: 2, out_features: 1 }] },
  data: { train: { x: [[0, 1], [1, 0], [1, 1], [0, 0]], y: [1, 0, 1, 0] } },
  training: { epochs: 1, batch_size: 4, loss: { type: "mse" } },
};

/** Sequential requests of `make` until `running()` is false; their latencies (ms), and the answers that were not 200. */
async function sample(make, running, gapMs) {
  const latencies = [];
  const failed = [];
  while (running()) {
    const t0 = performance.now();
    try {
      const res = await make();
      const text = await res.text();
      if (res.ok) latencies.push(performance.now() - t0);
      else failed.push(`${res.status}: ${text.slice(0, 120)}`);
    } catch (e) {
      // no answer within NO_ANSWER_MS (the isolate was restarted under the request)
      failed.push(`no answer after ${Math.round(performance.now() - t0)} ms: ${e.cause?.code ?? e.name}`);
    }
    if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
  }
  return { latencies, failed };
}
const summarise = ({ latencies, failed }) => ({ ...round(stats(latencies)), ...(failed.length ? { failed: failed.length, first_failure: failed[0] } : {}) });

const round = (s) => Object.fromEntries(Object.entries(s).map(([k, v]) => [k, Math.round(v * 10) / 10]));

const background = await backgroundCpu(2000);

// warm up: compile paths, create the Durable Objects of both keys
for (const key of KEYS) await (await post(key, TINY)).arrayBuffer();
await (await post(KEYS[0], longJob(2))).arrayBuffer();

// idle: the same requests with nothing training, for 3 s
let idleUntil = Date.now() + 3000;
const [idleHealth, idleTiny] = await Promise.all([sample(health, () => Date.now() < idleUntil, 20), sample(() => post(KEYS[1], TINY), () => Date.now() < idleUntil, 0)]);

// the long job alone: what the turns cost it
const alone0 = performance.now();
const aloneRes = await post(KEYS[0], longJob(EPOCHS));
const aloneText = await aloneRes.text();
const aloneMs = performance.now() - alone0;
if (aloneRes.status !== 200) throw new Error(`the long job alone answered ${aloneRes.status}: ${aloneText.slice(0, 400)}`);
const plan = JSON.parse(aloneText).plan;

// during the long job
let training = true;
const t0 = performance.now();
const long = fetch(`${base}/v1/fine-tunes`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${KEYS[0]}` }, body: JSON.stringify(longJob(EPOCHS)), signal: AbortSignal.timeout(300_000) })
  .then(async (res) => ({ status: res.status, text: await res.text(), ms: performance.now() - t0 }))
  .catch((e) => ({ status: 0, text: `no answer: ${e.cause?.code ?? e.name}`, ms: performance.now() - t0 }))
  .finally(() => (training = false));
const [busyHealth, busyTiny, job] = await Promise.all([sample(health, () => training, 20), sample(() => post(KEYS[1], TINY), () => training, 0), long]);
// the default cost model's estimate (src/api/budget.ts, wrangler.toml's EDGE_* vars)
const estimatedMs = plan.flops / 2e7 + plan.steps * 0.03;
const summary = {
  root: ROOT,
  // the share of the machine's CPU other processes used, measured before the run (figures are noisy above a few %)
  background_cpu_percent: background,
  long_job: { epochs: EPOCHS, steps: plan.steps, estimated_cpu_ms: Math.round(estimatedMs), wall_ms_alone: Math.round(aloneMs), wall_ms_with_others: Math.round(job.ms), ...(job.status === 200 ? {} : { with_others_failed: `${job.status}: ${job.text.slice(0, 120)}` }) },
  idle: { healthz: summarise(idleHealth), tiny_job: summarise(idleTiny) },
  during_long_job: { healthz: summarise(busyHealth), tiny_job: summarise(busyTiny) },
};
console.log(JSON.stringify(summary, null, 2));
stop();
process.exit(0);
