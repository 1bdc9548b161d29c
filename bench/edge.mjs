// edge side of `npm run bench`: the tiny request as a sync POST through a real `wrangler dev`
// (local workerd, Durable Objects and R2 persisted to a temporary directory), N requests after
// warm-up; p50/p90 latency as the client sees it, and the server's own training time. Then the
// floor under it: the Worker's own GET /healthz (its middleware, no storage), and a plain Hono
// Worker (bench/edge-floor) under another `wrangler dev`: a GET, a POST of the same body read as
// text, and one parsed as JSON (the loopback round trip and the body's transfer, nothing else).
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
const running = new Set();

async function stop() {
  for (const dev of running) await stopProcess(dev);
  rmSync(work, { recursive: true, force: true });
}

// never leave wrangler dev behind: on a signal, or if the whole run takes too long
for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, () => stop().then(() => process.exit(130)));
const watchdog = setTimeout(() => {
  console.error("bench/edge: gave up after 240 s");
  stop().then(() => process.exit(1));
}, 240_000);
watchdog.unref();

/** `wrangler dev` of this Worker, or (with `args`) another one, ready to serve; stopped by stop(). */
async function serve(name, vars, args = []) {
  const port = await freePort();
  const dev = await startWranglerDev(port, join(work, name), vars, args);
  running.add(dev);
  await waitReady(dev, `http://127.0.0.1:${port}`, `wrangler dev (${name})`);
  return { dev, base: `http://127.0.0.1:${port}` };
}

/** `fn`'s latency in ms, `WARMUP` calls then `REQUESTS` measured, one at a time. */
async function latencies(fn) {
  for (let i = 0; i < WARMUP; i++) await fn();
  const out = [];
  for (let i = 0; i < REQUESTS; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return stats(out);
}

const ok = async (res) => {
  if (!res.ok) throw new Error(`${res.url} answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
  return res.json();
};

try {
  const started = performance.now();
  const edge = await serve("state", { EDGETUNE_API_KEYS: KEY });
  const startupMs = performance.now() - started;

  const seed = seedMlp();
  const { encodeBase64 } = await import(join(root, "dist/src/formats/base64.js"));
  const body = JSON.stringify(tinyRequest({ ...seed, weights: encodeBase64(seed.weights) }, { mode: "sync" }));
  const post = async () => {
    const t0 = performance.now();
    const res = await fetch(`${edge.base}/v1/fine-tunes`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
      body,
    });
    const json = await res.json();
    const ms = performance.now() - t0;
    if (res.status !== 200 || json.status !== "succeeded") {
      await new Promise((r) => setTimeout(r, 500)); // let wrangler's log of the error arrive
      throw new Error(`POST answered ${res.status}: ${JSON.stringify(json).slice(0, 500)}\nwrangler dev said:\n${edge.dev.output().slice(-2500)}`);
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
  const healthz = await latencies(async () => ok(await fetch(`${edge.base}/healthz`)));
  await stopProcess(edge.dev);
  running.delete(edge.dev);

  // the floor: a plain Hono Worker under the same wrangler dev, no bindings
  const floor = await serve("floor", {}, ["--config", join(root, "bench/edge-floor/wrangler.toml")]);
  const postFloor = (path) => async () => ok(await fetch(`${floor.base}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body }));
  const floorMs = {
    get: await latencies(async () => ok(await fetch(`${floor.base}/healthz`))),
    post_text: await latencies(postFloor("/echo")),
    post_json: await latencies(postFloor("/parse")),
  };
  console.log(JSON.stringify({
    workload: "edge", requests: REQUESTS, warmup: WARMUP, body_bytes: body.length, steps: first.steps,
    startup_ms: startupMs, first_ms: first.ms, latency_ms: stats(lat), server_train_ms: stats(server),
    healthz_ms: healthz, floor_ms: floorMs,
  }));
} finally {
  await stop();
}
