// What open SSE streams cost (issue 20, finding 6): a real `wrangler dev` gets JOBS queued
// GPU-node jobs (no node, so nothing happens to them and their streams stay open), then STREAMS
// streams of /events spread over them. Over SECONDS with no stream, then SECONDS with them all
// open, this samples workerd's CPU time and RSS (/proc, every workerd process under wrangler).
// Leases are long (LEASE_SECONDS=3600) so that no re-dispatch runs meanwhile. `--root DIR` runs
// another checkout's Worker (its own wrangler.toml and sources), to compare before and after.
//   node bench/sse-streams.mjs [--streams 300] [--jobs 10] [--seconds 30] [--root DIR] [--poll MS]
// Prints a JSON summary.
import { readFileSync } from "node:fs";
import { backgroundCpu, root as here, QUEUED_GPU_JOB, startSampledWranglerDev } from "./lib.mjs";

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
const vars = { LEASE_SECONDS: "3600", RATE_LIMIT_PER_MINUTE: "0", MAX_ACTIVE_JOBS_PER_KEY: "1000", MAX_STREAMS_PER_KEY: String(STREAMS), ...(POLL ? { SSE_POLL_MS: POLL } : {}) };
const dev = await startSampledWranglerDev({ checkout: ROOT, vars, prefix: "edgetune-bench-sse-" });
const { base, stop, sample } = dev;

const job = QUEUED_GPU_JOB;
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
const byProcess = dev.workerdPids().map((pid) => ({ pid, rss_mib: mib(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) * 1024), threads: Number(/Threads:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) }));
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
