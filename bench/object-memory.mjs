// What each Durable Object that workerd has run costs it in memory (issue 20, the soak's RSS
// growth): a real `wrangler dev` gets N requests, 4 at a time, that each call one job's Durable
// Object, and every 100 it prints the RSS of wrangler's workerd processes and the Worker
// isolate's JavaScript heap (Runtime.getHeapUsage over the inspector), then the same 30 and 90 s
// later. Modes: `distinct` GETs a different unknown job id each time (a new object that stores
// nothing), `same` GETs one id over and over, `sync` creates tiny sync jobs (an object each, as
// the soak does; JOB_TTL_SECONDS=1 expires them).
//   node bench/object-memory.mjs [--requests 2000] [--mode distinct|same|sync]
// The inspector is spoken to with `ws`, the WebSocket client wrangler itself installs (Node 20's
// experimental WebSocket is refused by wrangler's inspector proxy).
import { freePort, startSampledWranglerDev } from "./lib.mjs";

const rest = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : fallback;
};
const N = Number(arg("requests", 2000));
const MODE = arg("mode", "distinct");
const { default: WebSocket } = await import("ws");

const inspectorPort = await freePort();
const dev = await startSampledWranglerDev({ vars: { RATE_LIMIT_PER_MINUTE: "0", JOB_TTL_SECONDS: "1" }, args: ["--inspector-port", String(inspectorPort)], prefix: "edgetune-bench-objects-" });
const { base, stop } = dev;

/** RSS (MiB) of each workerd process in wrangler's process group, largest first. */
const workerdRss = () => dev.sample().each.map((bytes) => Math.round(bytes / 2 ** 20));

// the Worker's isolate over the inspector (Chrome DevTools Protocol)
const [target] = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json();
const socket = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((resolve, reject) => {
  socket.once("open", resolve);
  socket.once("error", reject);
});
let nextId = 1;
const pending = new Map();
socket.on("message", (m) => {
  const d = JSON.parse(String(m));
  pending.get(d.id)?.(d);
  pending.delete(d.id);
});
const cdp = (method) => new Promise((resolve) => {
  const id = nextId++;
  pending.set(id, resolve);
  socket.send(JSON.stringify({ id, method }));
});
const heapMiB = async () => {
  const { result } = await cdp("Runtime.getHeapUsage");
  return Math.round(result.usedSize / 2 ** 20);
};

const syncJob = (i) => ({
  mode: "sync",
  model: { layers: [{ type: "linear", in_features: 3, out_features: 1 }] },
  data: { train: { x: Array.from({ length: 8 }, (_, r) => [Math.sin(r + i), 1, r / 8]), y: Array.from({ length: 8 }, (_, r) => r / 8) } },
  training: { epochs: 2, batch_size: 4, loss: { type: "mse" }, seed: i },
});
const call = (i) => {
  if (MODE === "sync") return fetch(`${base}/v1/fine-tunes`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(syncJob(i)) });
  const id = MODE === "same" ? "0".repeat(32) : crypto.randomUUID().replaceAll("-", "");
  return fetch(`${base}/v1/fine-tunes/ft_${id}`);
};

const rows = [{ requests: 0, workerd_rss_mib: workerdRss(), js_heap_mib: await heapMiB() }];
for (let i = 0; i < N; i += 4) {
  await Promise.all([0, 1, 2, 3].map(async (k) => (await call(i + k)).arrayBuffer()));
  if ((i + 4) % 100 === 0 || i + 4 >= N) rows.push({ requests: Math.min(i + 4, N), workerd_rss_mib: workerdRss(), js_heap_mib: await heapMiB() });
}
for (const wait of [30, 60]) {
  await new Promise((r) => setTimeout(r, wait * 1000));
  rows.push({ idle_s: wait === 30 ? 30 : 90, workerd_rss_mib: workerdRss(), js_heap_mib: await heapMiB() });
}
for (const row of rows) process.stderr.write(`${JSON.stringify(row)}\n`);
const first = rows[0];
const loaded = rows.find((r) => r.requests === N);
const idle = rows.at(-1);
console.log(JSON.stringify({ mode: MODE, requests: N, workerd_rss_mib: { start: first.workerd_rss_mib, after: loaded.workerd_rss_mib, idle_90s: idle.workerd_rss_mib }, js_heap_mib: { start: first.js_heap_mib, after: loaded.js_heap_mib, idle_90s: idle.js_heap_mib } }, null, 2));
process.exit(0);
