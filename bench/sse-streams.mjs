// What open SSE streams cost (issue 20, finding 6): a real `wrangler dev` gets JOBS queued
// GPU-node jobs (no node, so nothing happens to them and their streams stay open), then STREAMS
// streams of /events spread over them. Over SECONDS with no stream, then SECONDS with them all
// open, this samples workerd's CPU time and RSS (/proc, every workerd process under wrangler).
// Leases are long (LEASE_SECONDS=3600) so that no re-dispatch runs meanwhile. `--root DIR` runs
// another checkout's Worker (its own wrangler.toml and sources), to compare before and after.
//   node bench/sse-streams.mjs [--streams 300] [--jobs 10] [--seconds 30] [--root DIR] [--poll MS]
// Prints a JSON summary.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { backgroundCpu, freePort, root as here } from "./lib.mjs";

const rest = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : fallback;
};
const STREAMS = Number(arg("streams", 300));
const JOBS = Number(arg("jobs", 10));
const SECONDS = Number(arg("seconds", 30));
const ROOT = arg("root", here);
// SSE_POLL_MS of the Worker (default: its wrangler.toml's)
const POLL = arg("poll", null);

const background = await backgroundCpu(2000);
const work = mkdtempSync(join(tmpdir(), "edgetune-bench-sse-"));
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const vars = { EDGETUNE_DEV: "true", LEASE_SECONDS: "3600", RATE_LIMIT_PER_MINUTE: "0", MAX_ACTIVE_JOBS_PER_KEY: "1000", MAX_STREAMS_PER_KEY: String(STREAMS), ...(POLL ? { SSE_POLL_MS: POLL } : {}) };
const child = spawn(
  process.execPath,
  [join(here, "node_modules/wrangler/bin/wrangler.js"), "dev", "--port", String(port), "--ip", "127.0.0.1", "--persist-to", join(work, "state"), ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`])],
  { cwd: ROOT, env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1" }, stdio: ["ignore", "pipe", "pipe"], detached: true },
);
let output = "";
child.stdout.on("data", (d) => (output += d));
child.stderr.on("data", (d) => (output += d));
const stop = () => {
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    // gone
  }
  rmSync(work, { recursive: true, force: true });
};
process.once("exit", stop);

for (let deadline = Date.now() + 90_000; ; ) {
  if (Date.now() > deadline) throw new Error(`wrangler dev did not start:\n${output.slice(-2000)}`);
  try {
    if ((await fetch(`${base}/healthz`)).ok) break;
  } catch {
    // not yet
  }
  await new Promise((r) => setTimeout(r, 250));
}

function workerdPids() {
  const lines = execFileSync("ps", ["-o", "pid=,pgid=,comm=", "-A"], { encoding: "utf8" }).trim().split("\n");
  return lines.map((l) => l.trim().split(/\s+/)).filter(([, pgid, comm]) => Number(pgid) === child.pid && comm.startsWith("workerd")).map(([pid]) => Number(pid));
}
const TICK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }));
function sample() {
  let rss = 0;
  let cpu = 0;
  for (const pid of workerdPids()) {
    rss += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) * 1024;
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    cpu += (Number(fields[11]) + Number(fields[12])) / TICK; // utime + stime, s
  }
  return { rss, cpu, at: Date.now() };
}

const job = {
  mode: "async",
  placement: "gpu-node",
  model: { layers: [{ type: "linear", in_features: 4, out_features: 3 }] },
  data: { train: { x: [[0, 1, 2, 3], [1, 2, 3, 4]], y: [0, 1] } },
  training: { epochs: 1, batch_size: 2, loss: { type: "cross_entropy" } },
};
const ids = [];
for (let i = 0; i < JOBS; i++) {
  const res = await fetch(`${base}/v1/fine-tunes`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(job) });
  if (res.status !== 202) throw new Error(`create answered ${res.status}: ${await res.text()}`);
  ids.push((await res.json()).id);
}

const window = async () => {
  const a = sample();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const b = sample();
  return { cpu_percent_of_a_core: Number(((100 * (b.cpu - a.cpu)) / ((b.at - a.at) / 1000)).toFixed(1)), rss_mib: Number((b.rss / 2 ** 20).toFixed(1)) };
};
const mib = (b) => Number((b / 2 ** 20).toFixed(1));

const rssBefore = sample().rss;
const idle = await window();

// the streams: each read until its first bytes (the replayed events), then left open
const controllers = [];
let refused = 0;
await Promise.all(
  Array.from({ length: STREAMS }, async (_, i) => {
    const controller = new AbortController();
    const res = await fetch(`${base}/v1/fine-tunes/${ids[i % ids.length]}/events`, { signal: controller.signal });
    if (res.status !== 200) {
      refused++;
      await res.arrayBuffer();
      return;
    }
    const reader = res.body.getReader();
    await reader.read();
    controllers.push(controller);
    // keep reading (keep-alives) so the connection stays drained
    (async () => {
      try {
        for (;;) if ((await reader.read()).done) break;
      } catch {
        // aborted
      }
    })();
  }),
);
const open = await window();
// which workerd holds the memory: wrangler dev runs the Worker's and its own proxy's
const byProcess = workerdPids().map((pid) => ({ pid, rss_mib: mib(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) * 1024), threads: Number(/Threads:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) }));
for (const c of controllers) c.abort();
await new Promise((r) => setTimeout(r, 3000));
const after = sample();

console.log(
  JSON.stringify(
    {
      root: ROOT,
      sse_poll_ms: POLL ?? "wrangler.toml",
      background_cpu_percent: background,
      jobs: JOBS,
      streams_open: controllers.length,
      streams_refused: refused,
      seconds: SECONDS,
      no_streams: idle,
      with_streams: open,
      rss_growth_mib: mib(open.rss_mib * 2 ** 20 - rssBefore),
      rss_by_process_with_streams: byProcess,
      rss_after_close_mib: mib(after.rss),
    },
    null,
    2,
  ),
);
process.exit(0);
