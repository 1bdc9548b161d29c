// edge side of `npm run bench`: the tiny request as a sync POST through a real `wrangler dev`
// (local workerd, Durable Objects and R2 persisted to a temporary directory), N requests after
// warm-up; p50/p90 latency as the client sees it, and the server's own training time.
//   node bench/edge.mjs [--requests N] [--warmup N]
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { root, seedMlp, stats, tinyRequest } from "./lib.mjs";

const rest = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : fallback;
};
const REQUESTS = Number(arg("requests", 30));
const WARMUP = Number(arg("warmup", 3));
const KEY = "bench-key";

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

const work = mkdtempSync(join(tmpdir(), "edgetune-bench-"));
const port = await freePort();
const started = performance.now();
const child = spawn(
  process.execPath,
  [join(root, "node_modules/wrangler/bin/wrangler.js"), "dev", "--port", String(port), "--ip", "127.0.0.1",
    "--persist-to", join(work, "state"), "--var", `EDGETUNE_API_KEYS:${KEY}`],
  { cwd: root, env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1" }, stdio: ["ignore", "pipe", "pipe"] },
);
let output = "";
child.stdout.on("data", (d) => (output += d));
child.stderr.on("data", (d) => (output += d));

async function stop() {
  if (child.exitCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (child.exitCode === null) child.kill("SIGKILL");
  }
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
  const deadline = Date.now() + 90_000;
  let ready = false;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited early:\n${output.slice(-3000)}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) {
        ready = true;
        break;
      }
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  if (!ready) throw new Error(`wrangler dev did not become ready:\n${output.slice(-3000)}`);
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
      throw new Error(`POST answered ${res.status}: ${JSON.stringify(json).slice(0, 500)}\nwrangler dev said:\n${output.slice(-2500)}`);
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
