// What queued GPU-node jobs cost while no node polls (issue 20, finding 5): a real `wrangler dev`
// gets JOBS GPU-node jobs and no node; over SECONDS this samples workerd's RSS and CPU time
// (/proc, every workerd process under wrangler) and the latency of GET /v1/fine-tunes?limit=20.
// LEASE_SECONDS is short (default 5) so that a periodic re-dispatch, once per lease per job,
// shows within the window. `--root DIR` runs another checkout's Worker (its own wrangler.toml
// and sources), to compare before and after.
//   node bench/queued-idle.mjs [--jobs 500] [--seconds 60] [--lease 5] [--root DIR]
import { root as here, QUEUED_GPU_JOB, startSampledWranglerDev, stats } from "./lib.mjs";

const rest = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : fallback;
};
const JOBS = Number(arg("jobs", 500));
const SECONDS = Number(arg("seconds", 60));
const LEASE = arg("lease", "5");
const ROOT = arg("root", here);

const dev = await startSampledWranglerDev({ checkout: ROOT, vars: { LEASE_SECONDS: String(LEASE), RATE_LIMIT_PER_MINUTE: "0", MAX_ACTIVE_JOBS_PER_KEY: String(JOBS) }, prefix: "edgetune-bench-idle-" });
const { base, stop, sample } = dev;

const job = QUEUED_GPU_JOB;
const body = JSON.stringify(job);
for (let i = 0; i < JOBS; i += 10) {
  await Promise.all(
    Array.from({ length: Math.min(10, JOBS - i) }, async () => {
      const res = await fetch(`${base}/v1/fine-tunes`, { method: "POST", headers: { "content-type": "application/json" }, body });
      if (res.status !== 202) throw new Error(`create answered ${res.status}: ${await res.text()}`);
    }),
  );
}
const list = async () => {
  const t = performance.now();
  const res = await fetch(`${base}/v1/fine-tunes?limit=20`);
  await res.arrayBuffer();
  return performance.now() - t;
};
const start = sample();
const early = [];
const late = [];
const end = Date.now() + SECONDS * 1000;
while (Date.now() < end) {
  const ms = await list();
  if (Date.now() - start.at < 15_000) early.push(ms);
  if (end - Date.now() < 15_000) late.push(ms);
  await new Promise((r) => setTimeout(r, 500));
}
const last = sample();
const mb = (b) => (b / 2 ** 20).toFixed(1);
const result = {
  root: ROOT,
  jobs: JOBS,
  seconds: SECONDS,
  lease_seconds: Number(LEASE),
  workerd_rss_mb: { start: mb(start.rss), end: mb(last.rss), growth: mb(last.rss - start.rss) },
  workerd_cpu_percent_of_a_core: ((100 * (last.cpu - start.cpu)) / ((last.at - start.at) / 1000)).toFixed(1),
  list_p50_ms: { first_15s: Number(stats(early).p50.toFixed(1)), last_15s: Number(stats(late).p50.toFixed(1)) },
};
console.log(JSON.stringify(result, null, 2));
process.exit(0);
