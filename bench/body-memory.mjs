// Parsed-body memory (issue 21, finding 4): POSTs an inline JSON request of about MB megabytes
// (rows of 100 numbers, an async GPU-node job so nothing trains) to a running `wrangler dev` and
// samples the largest workerd process's RSS meanwhile. Usage, with `npm run dev:edge` on PORT:
//   node bench/body-memory.mjs PORT MB
import { execSync } from "node:child_process";
const port = Number(process.argv[2]), mb = Number(process.argv[3]);
const F = 100, rows = Math.round((mb * 1e6) / (F * 9));
const x = Array.from({ length: rows }, (_, i) => Array.from({ length: F }, (_, j) => +(Math.sin(i + j)).toFixed(6)));
const y = Array.from({ length: rows }, (_, i) => Math.cos(i));
const body = JSON.stringify({ model: { layers: [{ type: "linear", in_features: F, out_features: 1 }] }, data: { train: { x, y } }, training: { epochs: 1, batch_size: 256 }, mode: "async", placement: "gpu-node" });
const rss = () => { try { return Number(execSync("ps -C workerd -o rss= | sort -n | tail -1").toString().trim()) / 1024; } catch { return 0; } };
const before = rss(); let peak = before;
const timer = setInterval(() => { peak = Math.max(peak, rss()); }, 50);
const t0 = Date.now();
const res = await fetch(`http://127.0.0.1:${port}/v1/fine-tunes`, { method: "POST", headers: { "content-type": "application/json" }, body });
const text = await res.text();
clearInterval(timer); peak = Math.max(peak, rss());
console.log(`body ${(body.length / 1e6).toFixed(1)} MB: ${res.status} in ${Date.now() - t0} ms; workerd RSS ${before.toFixed(0)} -> peak ${peak.toFixed(0)} MiB; ${text.slice(0, 120)}`);
