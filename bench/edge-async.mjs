// The same job run sync and async on the edge, through a real `wrangler dev` (issue 16 item 3,
// issue 20 finding 1): the seed MLP (1,000 rows) for 300 and 3,000 epochs, and 1 row for
// 20,000 epochs. Sync: the POST's round trip. Async: from the POST to the job's finished_at (the
// client and wrangler dev share the machine's clock); a client follows it on /events meanwhile
// (stream_ms: until that stream ended, having carried every epoch) and GETs the job every
// GET_EVERY_MS, whose latencies are the "GET while it runs" figures. REPEATS of each; medians.
//   node bench/edge-async.mjs [--repeats N] [--cases 300,3000,20000]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, root, seedMlp, startWranglerDev, stats, stopProcess, tinyRequest, waitReady } from "./lib.mjs";

const rest = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : fallback;
};
const REPEATS = Number(arg("repeats", 3));
const CASES = arg("cases", "300,3000,20000").split(",").map(Number);
// a case that does not finish within this is reported as such (the old job state took minutes)
const ASYNC_LIMIT_MS = Number(arg("limit-ms", 120_000));
const GET_EVERY_MS = 50;
const KEY = "bench-key";

const work = mkdtempSync(join(tmpdir(), "edgetune-bench-async-"));
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const dev = await startWranglerDev(port, join(work, "state"), { EDGETUNE_API_KEYS: KEY, RATE_LIMIT_PER_MINUTE: "0" });

async function stop() {
  await stopProcess(dev);
  rmSync(work, { recursive: true, force: true });
}
for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, () => stop().then(() => process.exit(130)));
const watchdog = setTimeout(() => {
  console.error("bench/edge-async: gave up after 900 s");
  stop().then(() => process.exit(1));
}, 900_000);
watchdog.unref();

const headers = { "content-type": "application/json", authorization: `Bearer ${KEY}` };

/** One sync run: the POST's round trip (ms). */
async function runSync(body) {
  const t0 = performance.now();
  const res = await fetch(`${base}/v1/fine-tunes`, { method: "POST", headers, body });
  const json = await res.json();
  if (res.status !== 200 || json.status !== "succeeded") throw new Error(`sync POST answered ${res.status}: ${JSON.stringify(json).slice(0, 300)}\n${dev.output().slice(-2000)}`);
  return performance.now() - t0;
}

/**
 * One async run: from the POST to the end of its /events stream (it ends after the final event;
 * reads wake on each stored report), and the latencies of GETs of the job every GET_EVERY_MS
 * meanwhile.
 */
async function runAsync(body) {
  const t0 = performance.now();
  const postedAt = Date.now(); // the same clock as the job's timestamps (one machine)
  const res = await fetch(`${base}/v1/fine-tunes`, { method: "POST", headers, body });
  const job = await res.json();
  if (res.status !== 202) throw new Error(`async POST answered ${res.status}: ${JSON.stringify(job).slice(0, 300)}`);
  const gets = [];
  let streaming = true;
  const sampler = (async () => {
    while (streaming) {
      const g0 = performance.now();
      await (await fetch(`${base}/v1/fine-tunes/${job.id}`, { headers })).arrayBuffer();
      gets.push(performance.now() - g0);
      await new Promise((r) => setTimeout(r, GET_EVERY_MS));
    }
  })();
  const limit = AbortSignal.timeout(ASYNC_LIMIT_MS);
  let finished = true;
  try {
    await (await fetch(`${base}/v1/fine-tunes/${job.id}/events`, { headers, signal: limit })).text();
  } catch {
    finished = false;
  }
  const ms = performance.now() - t0;
  streaming = false;
  await sampler;
  const current = await (await fetch(`${base}/v1/fine-tunes/${job.id}`, { headers })).json();
  if (!finished) {
    await fetch(`${base}/v1/fine-tunes/${job.id}/cancel`, { method: "POST", headers });
    return { ms, gets, finished: false, epochs_done: current.metrics?.epochs ?? current.metrics?.history?.length ?? 0 };
  }
  if (current.status !== "succeeded") throw new Error(`async job ended ${current.status}: ${JSON.stringify(current.error)}`);
  const at = (k) => Date.parse(current[k]);
  return { ms: at("finished_at") - postedAt, stream_ms: ms, gets, finished: true, dispatch_ms: at("started_at") - at("created_at"), run_ms: at("finished_at") - at("started_at"), train_ms: current.metrics.duration_ms };
}

try {
  await waitReady(dev, base, "wrangler dev");
  const seed = seedMlp();
  const { encodeBase64 } = await import(join(root, "dist/src/formats/base64.js"));
  const request = (epochs) => {
    const oneRow = epochs >= 20_000;
    const data = oneRow ? { x: seed.x.slice(0, 1), y: seed.y.slice(0, 1) } : { x: seed.x, y: seed.y };
    const r = tinyRequest({ ...data, weights: encodeBase64(seed.weights) });
    return { ...r, training: { ...r.training, epochs } };
  };
  await runSync(JSON.stringify({ ...request(20), mode: "sync" })); // warm-up
  const cases = [];
  for (const epochs of CASES) {
    const sync = [];
    const async = [];
    const gets = [];
    const phases = { stream_ms: [], dispatch_ms: [], run_ms: [], train_ms: [] };
    let unfinished = null;
    for (let i = 0; i < REPEATS; i++) {
      sync.push(await runSync(JSON.stringify({ ...request(epochs), mode: "sync" })));
      const a = await runAsync(JSON.stringify({ ...request(epochs), mode: "async", placement: "edge" }));
      gets.push(...a.gets);
      if (!a.finished) {
        unfinished = { after_ms: a.ms, epochs_done: a.epochs_done };
        break; // one unfinished run says enough
      }
      async.push(a.ms);
      for (const k of Object.keys(phases)) phases[k].push(a[k]);
    }
    const s = stats(sync);
    const a = async.length ? stats(async) : null;
    cases.push({
      epochs,
      rows: epochs >= 20_000 ? 1 : seed.x.length,
      sync_ms: s,
      async_ms: a,
      ratio: a ? a.median / s.median : null,
      get_ms: stats(gets),
      // medians: the client's /events stream until it ended, and server side: queued -> running
      // (dispatch), running -> ended (run), of which training
      async_phases_ms: async.length ? Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, stats(v).median])) : null,
      ...(unfinished ? { unfinished } : {}),
    });
    process.stderr.write(`edge-async: ${epochs} epochs: sync ${s.median.toFixed(0)} ms, async ${a ? a.median.toFixed(0) + " ms" : `unfinished after ${(unfinished.after_ms / 1000).toFixed(0)} s (${unfinished.epochs_done} epochs)`}, GET p99 ${stats(gets).p99.toFixed(0)} ms${async.length ? `; async phases ${JSON.stringify(Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, Math.round(stats(v).median)])))}` : ""}\n`);
  }
  console.log(JSON.stringify({ workload: "async", repeats: REPEATS, get_every_ms: GET_EVERY_MS, cases }));
} finally {
  await stop();
}
