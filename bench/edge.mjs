// edge side of `npm run bench`: the tiny request as a sync POST through a real `wrangler dev`
// (local workerd, Durable Objects and R2 persisted to a temporary directory), N requests after
// warm-up; p50/p90 latency as the client sees it, and the server's own training time.
//   node bench/edge.mjs [--requests N] [--warmup N]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, root, seedMlp, startWranglerDev, stats, stopProcess, tinyRequest, waitReady } from "./lib.mjs";

const rest = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : fallback;
};
const REQUESTS = Number(arg("requests", 30));
const WARMUP = Number(arg("warmup", 3));
const KEY = "bench-key";

const work = mkdtempSync(join(tmpdir(), "edgetune-bench-"));
const port = await freePort();
const started = performance.now();
const dev = await startWranglerDev(port, join(work, "state"), { EDGETUNE_API_KEYS: KEY });
const output = () => dev.output();

async function stop() {
  await stopProcess(dev);
  rmSync(work, { recursive: true, force: true });
}

// never leave wrangler dev behind: on a signal, or if the whole run takes too long
for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, () => stop().then(() => process.exit(130)));
const watchdog = setTimeout(() => {
  console.error("bench/edge: gave up after 150 s");
  stop().then(() => process.exit(1));
}, 150_000);
watchdog.unref();

try {
  await waitReady(dev, `http://127.0.0.1:${port}`, "wrangler dev");
  const startupMs = performance.now() - started;

  const seed = seedMlp();
  const { encodeBase64 } = await import(join(root, "dist/src/formats/base64.js"));
  const body = JSON.stringify(tinyRequest({ ...seed, weights: encodeBase64(seed.weights) }, { mode: "sync" }));
  const post = async () => {
    const t0 = performance.now();
    const res = await fetch(`http://127.0.0.1:${port}/v1/fine-tunes`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
      body,
    });
    const json = await res.json();
    const ms = performance.now() - t0;
    if (res.status !== 200 || json.status !== "succeeded") {
      await new Promise((r) => setTimeout(r, 500)); // let wrangler's log of the error arrive
      throw new Error(`POST answered ${res.status}: ${JSON.stringify(json).slice(0, 500)}\nwrangler dev said:\n${output().slice(-2500)}`);
    }
    return { ms, serverMs: json.metrics.duration_ms, steps: json.metrics.steps };
  };
  const first = await post();
  for (let i = 1; i < WARMUP; i++) await post();
  const lat = [];
  const server = [];
  for (let i = 0; i < REQUESTS; i++) {
    const r = await post();
    lat.push(r.ms);
    server.push(r.serverMs);
  }
  console.log(JSON.stringify({
    workload: "edge", requests: REQUESTS, warmup: WARMUP, body_bytes: body.length, steps: first.steps,
    startup_ms: startupMs, first_ms: first.ms, latency_ms: stats(lat), server_train_ms: stats(server),
  }));
} finally {
  await stop();
}
