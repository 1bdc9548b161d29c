#!/usr/bin/env node
// Load test (issue 7, item 6): autocannon on loopback against the Node server
// (bench/load/node-server.mjs, the built app behind node:http) and against a real `wrangler dev`
// (local Durable Objects, R2 and Queues under a temporary --persist-to directory), with mixed
// traffic: tiny sync fine-tunes of the seed MLP, invalid requests (bad JSON, schema errors,
// weights that do not fit the model, an unsupported content type), GET /healthz, GET of a job,
// and 404s. Reports throughput, p50/p99 latency, the status of every kind of request, every
// unexpected answer (a 5xx, a status the kind should not get, a connection error or timeout:
// there must be none) and the server's resident memory before and after; writes
// docs/load-test.md and bench/load/results/latest.json.
//
//   npm run load                         (builds first; about 2 minutes)
//   node bench/load/run.mjs --duration 25 --connections 8 [--only node|wrangler] [--no-write]
//
// The wrangler runs: one with rate limits off (throughput), then a short one with the shipped
// limits (RATE_LIMIT_BURST 60, RATE_LIMIT_PER_MINUTE 600), where 429 is an expected answer.
import autocannon from "autocannon";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, startProcess, startWranglerDev, stopProcess as stop, waitReady } from "../lib.mjs";
import { encodeBase64 } from "../../dist/src/formats/base64.js";
import { writeSafetensors } from "../../dist/src/formats/safetensors.js";

const root = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
const argv = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
};
const DURATION = Number(flag("duration", "25"));
const LIMITS_DURATION = Number(flag("limits-duration", "10"));
const CONNECTIONS = Number(flag("connections", "8"));
const ONLY = flag("only", "all");
const WRITE = !argv.includes("--no-write");

// ---------------------------------------------------------------- request mix

const seed = join(root, "examples/seed-mlp");
const csv = readFileSync(join(seed, "train.csv"), "utf8").trim().split("\n");
const rows = csv.slice(1, 101).map((line) => line.split(",").map(Number));
const layers = [
  { type: "linear", name: "fc1", in_features: 10, out_features: 10 },
  { type: "relu" },
  { type: "linear", name: "fc2", in_features: 10, out_features: 1 },
];
const weights = encodeBase64(new Uint8Array(readFileSync(join(seed, "weights.safetensors"))));
const data = { train: { x: rows.map((r) => r.slice(0, 10)), y: rows.map((r) => r[10]) } };
const training = { epochs: 3, batch_size: 32, loss: { type: "mse" }, optimizer: { type: "adam", lr: 1e-3 } };
const fineTune = JSON.stringify({ model: { layers }, weights, data, training, mode: "sync" });
const wrongWeights = encodeBase64(writeSafetensors([{ name: "fc1.weight", shape: [5, 5], data: new Float32Array(25) }]));
const json = { "content-type": "application/json" };

/** Each kind: the request and the statuses it may get (`limited`: also 429 when rate limits are on). */
const KINDS = {
  "fine-tune (sync, 100 rows x 3 epochs)": { method: "POST", path: "/v1/fine-tunes", headers: json, body: fineTune, expect: [200], limited: true },
  "bad JSON": { method: "POST", path: "/v1/fine-tunes", headers: json, body: '{"model": {"layers": [', expect: [400], limited: true },
  "schema error": { method: "POST", path: "/v1/fine-tunes", headers: json, body: JSON.stringify({ model: { layers }, data, training: { ...training, epochs: -1, momentum: 0.9 } }), expect: [400], limited: true },
  "weights mismatch": { method: "POST", path: "/v1/fine-tunes", headers: json, body: JSON.stringify({ model: { layers }, weights: wrongWeights, data, training }), expect: [422], limited: true },
  "unsupported media type": { method: "POST", path: "/v1/fine-tunes", headers: { "content-type": "text/plain" }, body: "hello", expect: [415], limited: true },
  "GET /healthz": { method: "GET", path: "/healthz", expect: [200] },
  "GET a job": { method: "GET", path: "/v1/fine-tunes/{id}", expect: [200], limited: true },
  "GET a missing job (404)": { method: "GET", path: "/v1/fine-tunes/ft_00000000000000000000000000000000", expect: [404], limited: true },
  "unknown route (404)": { method: "GET", path: "/v2/nothing-here", expect: [404] },
};
/** One connection's cycle: 2 fine-tunes, 2 health checks, one of everything else. */
const CYCLE = [
  "fine-tune (sync, 100 rows x 3 epochs)",
  "GET /healthz",
  "bad JSON",
  "schema error",
  "GET a job",
  "fine-tune (sync, 100 rows x 3 epochs)",
  "weights mismatch",
  "GET a missing job (404)",
  "GET /healthz",
  "unsupported media type",
  "unknown route (404)",
];

// ---------------------------------------------------------------- processes

/** Resident memory (MiB) of a process and of its whole tree (wrangler runs workerd as a child). */
function rss(pid) {
  const table = execFileSync("ps", ["-e", "-o", "pid=,ppid=,rss=,comm="], { encoding: "utf8" })
    .trim()
    .split("\n")
    .map((line) => {
      const [p, pp, kb, ...comm] = line.trim().split(/\s+/);
      return { pid: Number(p), ppid: Number(pp), kb: Number(kb), comm: comm.join(" ") };
    });
  const tree = new Set([pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of table) if (tree.has(p.ppid) && !tree.has(p.pid)) (tree.add(p.pid), (grew = true));
  }
  const members = table.filter((p) => tree.has(p.pid));
  const mib = (kb) => Math.round((kb / 1024) * 10) / 10;
  const workerd = members.filter((p) => p.comm.includes("workerd"));
  return {
    process: mib(members.find((p) => p.pid === pid)?.kb ?? 0),
    tree: mib(members.reduce((s, p) => s + p.kb, 0)),
    workerd: workerd.length > 0 ? mib(workerd.reduce((s, p) => s + p.kb, 0)) : null,
  };
}

// ---------------------------------------------------------------- one run

/** A response header from autocannon's headers (an object whose key case follows the server, or a flat array). */
function header(headers, name) {
  if (!headers) return "";
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) if (String(headers[i]).toLowerCase() === name) return String(headers[i + 1]);
    return "";
  }
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() === name) return String(value);
  return "";
}

async function prepare(url) {
  // a job to GET, and one of each kind sent once: the warm-up, and a check of the expectations
  const created = await fetch(`${url}/v1/fine-tunes`, { method: "POST", headers: json, body: fineTune });
  if (created.status !== 200) throw new Error(`setup fine-tune answered ${created.status}: ${await created.text()}`);
  const { id } = await created.json();
  for (const [name, kind] of Object.entries(KINDS)) {
    const response = await fetch(`${url}${kind.path.replace("{id}", id)}`, { method: kind.method, headers: kind.headers, body: kind.body });
    await response.arrayBuffer();
    if (!kind.expect.includes(response.status)) throw new Error(`warm-up: ${name} answered ${response.status}, expected ${kind.expect}`);
  }
  return id;
}

async function load(label, url, pid, id, { duration, rateLimited }) {
  const tally = Object.fromEntries(Object.keys(KINDS).map((k) => [k, {}]));
  const unexpected = [];
  const requests = CYCLE.map((name) => {
    const kind = KINDS[name];
    const allowed = rateLimited && kind.limited ? [...kind.expect, 429] : kind.expect;
    return {
      method: kind.method,
      path: kind.path.replace("{id}", id),
      headers: kind.headers,
      body: kind.body,
      onResponse: (status, body, _context, headers) => {
        tally[name][status] = (tally[name][status] ?? 0) + 1;
        const type = header(headers, "content-type");
        if (!allowed.includes(status) || (status >= 400 && !type.startsWith("application/problem+json"))) {
          if (unexpected.length < 20) unexpected.push({ kind: name, status, type, body: String(body).slice(0, 200) });
          else unexpected.push(null);
        }
        if (status === 429 && !header(headers, "retry-after")) unexpected.push({ kind: name, status, problem: "429 without Retry-After" });
      },
    };
  });
  const before = rss(pid);
  const load1 = Math.round(loadavg()[0] * 100) / 100;
  const result = await autocannon({ url, connections: CONNECTIONS, duration, requests, timeout: 30 });
  const after = rss(pid);
  const healthy = (await fetch(`${url}/healthz`)).ok;
  const failures = unexpected.length + result.errors + result.timeouts;
  const run = {
    label,
    rate_limited: rateLimited,
    duration_s: duration,
    connections: CONNECTIONS,
    requests: result.requests.total,
    rps: Math.round(result.requests.average),
    latency_ms: { p50: result.latency.p50, p90: result.latency.p90, p99: result.latency.p99, max: result.latency.max },
    statuses: Object.fromEntries(Object.entries(result.statusCodeStats).map(([k, v]) => [k, v.count])),
    kinds: tally,
    errors: result.errors,
    timeouts: result.timeouts,
    unexpected: unexpected.length,
    unexpected_examples: unexpected.filter(Boolean).slice(0, 10),
    fine_tunes_per_s: Math.round(((tally["fine-tune (sync, 100 rows x 3 epochs)"][200] ?? 0) / duration) * 10) / 10,
    load_average_1m_before: load1,
    rss_mib: { before, after },
    healthy_after: healthy,
    ok: failures === 0 && healthy,
  };
  console.log(`${label}: ${run.requests} requests, ${run.rps} req/s, p50 ${run.latency_ms.p50} ms, p99 ${run.latency_ms.p99} ms, ` +
    `statuses ${JSON.stringify(run.statuses)}, unexpected ${run.unexpected}, errors ${run.errors}, timeouts ${run.timeouts}, ` +
    `RSS ${before.tree} -> ${after.tree} MiB${after.workerd !== null ? ` (workerd ${before.workerd} -> ${after.workerd})` : ""}`);
  for (const u of run.unexpected_examples) console.log("  unexpected:", JSON.stringify(u));
  return run;
}

async function nodeTarget() {
  const port = await freePort();
  const proc = await startProcess([join(root, "bench/load/node-server.mjs"), String(port)]);
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitReady(proc, url, "node server");
    const id = await prepare(url);
    return [await load("Node (node:http + app.fetch)", url, proc.child.pid, id, { duration: DURATION, rateLimited: false })];
  } finally {
    await stop(proc);
  }
}

async function wranglerTarget(rateLimited, attempt = 1) {
  try {
    return await wranglerRun(rateLimited);
  } catch (error) {
    // wrangler dev occasionally fails to start (a port race, a rebuild of build/wasm under it): once more
    if (attempt >= 2 || !String(error.message).includes("wrangler dev")) throw error;
    console.error(`wrangler dev did not start (${String(error.message).split("\n")[0]}); retrying`);
    return wranglerTarget(rateLimited, attempt + 1);
  }
}

async function wranglerRun(rateLimited) {
  const port = await freePort();
  const persist = mkdtempSync(join(tmpdir(), "edgetune-load-"));
  const proc = await startWranglerDev(port, persist, rateLimited ? {} : { RATE_LIMIT_PER_MINUTE: "0" });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitReady(proc, url, "wrangler dev");
    const id = await prepare(url);
    const label = rateLimited ? "wrangler dev, shipped rate limits (429 expected)" : "wrangler dev (workerd), rate limits off";
    return [await load(label, url, proc.child.pid, id, { duration: rateLimited ? LIMITS_DURATION : DURATION, rateLimited })];
  } finally {
    await stop(proc);
    rmSync(persist, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- main

const runs = [];
if (argv.includes("--render")) {
  // rewrite docs/load-test.md from the last results, without running anything
  const last = JSON.parse(readFileSync(join(root, "bench/load/results/latest.json"), "utf8"));
  writeFileSync(join(root, "docs/load-test.md"), markdown(last));
  console.log("rewrote docs/load-test.md from bench/load/results/latest.json");
  process.exit(0);
}
if (ONLY === "all" || ONLY === "node") runs.push(...(await nodeTarget()));
if (ONLY === "all" || ONLY === "wrangler") {
  runs.push(...(await wranglerTarget(false)));
  runs.push(...(await wranglerTarget(true)));
}

const cpuModel = (readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.+)/) ?? [])[1] ?? cpus()[0]?.model ?? "unknown";
const machine = { cpu: cpuModel.trim(), cores: cpus().length, memory_gib: Math.round(totalmem() / 2 ** 30), node: process.version, wrangler: JSON.parse(readFileSync(join(root, "node_modules/wrangler/package.json"), "utf8")).version };
const date = new Date().toISOString().slice(0, 10);
const command = `npm run load  (node bench/load/run.mjs --duration ${DURATION} --connections ${CONNECTIONS}${ONLY === "all" ? "" : ` --only ${ONLY}`})`;

if (WRITE) {
  mkdirSync(join(root, "bench/load/results"), { recursive: true });
  writeFileSync(join(root, "bench/load/results/latest.json"), `${JSON.stringify({ date, command, machine, cycle: CYCLE, runs }, null, 2)}\n`);
  writeFileSync(join(root, "docs/load-test.md"), markdown({ date, command, machine, runs }));
  console.log("wrote docs/load-test.md and bench/load/results/latest.json");
}
const failed = runs.filter((r) => !r.ok);
if (failed.length > 0) {
  console.error(`load test FAILED: unexpected answers in ${failed.map((r) => r.label).join("; ")}`);
  process.exitCode = 1;
}

function markdown({ date, command, machine, runs }) {
  const mib = (m) => `${m.tree}${m.workerd !== null ? ` (workerd ${m.workerd})` : ""}`;
  const rowsOf = runs.map(
    (r) =>
      `| ${r.label} | ${r.duration_s} s × ${r.connections} | ${r.requests} | ${r.rps} | ${r.fine_tunes_per_s} | ${r.latency_ms.p50} | ${r.latency_ms.p99} | ` +
      `${Object.entries(r.statuses).map(([s, n]) => `${s}: ${n}`).join(", ")} | ${r.unexpected + r.errors + r.timeouts} | ${mib(r.rss_mib.before)} → ${mib(r.rss_mib.after)} |`,
  );
  const kinds = Object.keys(KINDS);
  const kindRows = kinds.map((k) => `| ${k} | ${KINDS[k].expect.join(", ")} | ${runs.map((r) => Object.entries(r.kinds[k]).map(([s, n]) => `${s}: ${n}`).join(", ") || "–").join(" | ")} |`);
  return `# Load test

Issue 7, item 6: mixed valid and invalid traffic on loopback against the Node server and a real
\`wrangler dev\`, with [autocannon](https://github.com/mcollina/autocannon). Produced by
\`bench/load/run.mjs\`; rerun it to refresh this page.

- **Command:** \`${command}\`
- **Date:** ${date}
- **Machine:** ${machine.cpu}, ${machine.cores} cores, ${machine.memory_gib} GiB; Node ${machine.node}; wrangler ${machine.wrangler}.
  autocannon runs on the same cores as the server, so the figures are a floor, not a capacity plan.

## Targets

- **Node**: \`bench/load/node-server.mjs\`, the built app (\`dist/\`) with the real engine and WASM
  kernels and an in-memory job store, behind a small \`node:http\` → \`app.fetch\` adapter; no rate
  limits.
- **wrangler dev**: the Worker in workerd with local Durable Objects, R2 and Queues persisted in a
  fresh temporary directory (\`--persist-to\`), first with rate limits off
  (\`--var RATE_LIMIT_PER_MINUTE:0\`) to measure throughput, then ${runs.find((r) => r.label.includes("shipped")) ? `for ${LIMITS_DURATION} s` : ""} with the
  limits \`wrangler.toml\` ships (a burst of 60, 600 per minute per caller), where 429 with
  \`Retry-After\` is an expected answer to \`/v1/fine-tunes\` requests.

## Traffic

Each of the ${CONNECTIONS} connections cycles through ${CYCLE.length} requests: ${CYCLE.map((k) => k).join("; ")}.
The fine-tune is the seed MLP of \`examples/seed-mlp\` (Linear(10,10)-ReLU-Linear(10,1), its
weights as base64 safetensors) on 100 inline rows for 3 epochs of batch 32, \`mode: "sync"\`: it
trains in the request and stores the job and its weights. Before each run, one request of each
kind is sent and its status checked (the warm-up), and one job is created for \`GET a job\`.

An answer is **unexpected** if its status is not the one listed for its kind below (or 429 where
limits are on), or if a 4xx is not \`application/problem+json\`, or if it is a connection error
or a timeout. There must be none.

## Results

| target | duration × connections | requests | req/s | fine-tunes/s | p50 ms | p99 ms | statuses | unexpected | RSS MiB before → after |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${rowsOf.join("\n")}

Latency is over the whole mix (a health check takes well under a millisecond, a fine-tune
several). RSS is of the server's process tree (for wrangler dev: the wrangler process, workerd
and their children; workerd alone in parentheses), read from \`ps\` right before and right after
the run. The machine's 1-minute load average just before each run (other work on its 2
cores skews the figures): ${runs.map((r) => `${r.label}: ${r.load_average_1m_before}`).join("; ")}.

Memory grows with the jobs a run creates, as designed: the Node server keeps every job and its
weights in its in-memory store (\`MemoryJobStore\`, a test and single-process store with no
eviction), and wrangler dev's local Durable Objects and R2 hold every job created in the run.
RSS after the run is therefore not a leak figure; a soak test with a bounded store would be.
${runs
  .map((r) => {
    const jobs = r.kinds["fine-tune (sync, 100 rows x 3 epochs)"][200] ?? 0;
    const grew = (r.rss_mib.after.workerd ?? r.rss_mib.after.tree) - (r.rss_mib.before.workerd ?? r.rss_mib.before.tree);
    if (r.rate_limited ?? r.label.includes("rate limits (429")) return "";
    return jobs > 0 ? `${r.label}: ${Math.round(grew)} MiB more for ${jobs} stored jobs (${Math.round((grew * 1024) / jobs)} KiB per job).` : "";
  })
  .filter(Boolean)
  .map((line) => `- ${line}`)
  .join("\n")}

The workerd figure includes wrangler dev's local emulation of Durable Objects (one per job, and
one rate-limit bucket per caller) and R2 in the same process, so it overstates what a deployed
Worker isolate holds; it is still the number to watch in a soak test.

### Answers by kind

| kind | expected | ${runs.map((r) => r.label).join(" | ")} |
| --- | --- | ${runs.map(() => "---").join(" | ")} |
${kindRows.join("\n")}
`;
}
