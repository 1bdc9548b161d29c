// `npm run soak`: jobs created, run and expired through a real `wrangler dev`, for many rounds,
// reporting workerd's memory (RSS) and what is stored on disk as it goes (issue 16 item 5,
// issue 20). Each round creates --batch jobs (a quarter async on the edge, the rest sync), waits
// until they have ended and then until the expiry (JOB_TTL_SECONDS=--ttl) has deleted them all.
// What is stored is read from wrangler's local state: R2 objects, and Durable Objects' rows.
//   node bench/soak.mjs [--jobs 1000] [--batch 50] [--ttl 1] [--idle 90] [--no-build]
// (--idle: seconds to wait at the end, measuring workerd's RSS every 5 s)
// Prints one line a round and a JSON summary; writes bench/results/soak.json.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, haveDist, root, startWranglerDev, stopProcess, waitReady } from "./lib.mjs";

const rest = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : fallback;
};
const JOBS = Number(arg("jobs", 1000));
const BATCH = Number(arg("batch", 50));
const TTL_S = Number(arg("ttl", 1));
const IDLE_S = Number(arg("idle", 90));
const KEY = "soak-key";
const say = (s) => process.stderr.write(`${s}\n`);

if (!rest.includes("--no-build") || !haveDist()) {
  say("soak: npm run build:wasm && npm run build:browser");
  execFileSync("npm", ["run", "build:wasm"], { cwd: root, stdio: "ignore" });
  execFileSync("npm", ["run", "build:browser"], { cwd: root, stdio: "ignore" });
}

const work = mkdtempSync(join(tmpdir(), "edgetune-soak-"));
const persist = join(work, "state");
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const dev = await startWranglerDev(port, persist, { EDGETUNE_API_KEYS: KEY, RATE_LIMIT_PER_MINUTE: "0", JOB_TTL_SECONDS: String(TTL_S) });

async function stop() {
  await stopProcess(dev);
  if (process.env.SOAK_KEEP) say(`soak: state kept in ${persist}`);
  else rmSync(work, { recursive: true, force: true });
}
for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, () => stop().then(() => process.exit(130)));
const watchdog = setTimeout(() => {
  say("soak: gave up after 30 minutes");
  stop().then(() => process.exit(1));
}, 30 * 60_000);
watchdog.unref();

const headers = { "content-type": "application/json", authorization: `Bearer ${KEY}` };

/** A small job: 3 -> 4 -> 1 on 16 rows, 3 epochs. */
function request(i, mode) {
  const x = Array.from({ length: 16 }, (_, r) => [Math.sin(r + i), Math.cos(r), (r % 4) / 4]);
  const y = x.map((row) => [row[0] - row[1] + row[2]]);
  return {
    model: { layers: [{ type: "linear", name: "fc1", in_features: 3, out_features: 4 }, { type: "relu" }, { type: "linear", name: "fc2", in_features: 4, out_features: 1 }] },
    data: { train: { x, y } },
    training: { epochs: 3, batch_size: 8, optimizer: { type: "adam", lr: 1e-2 }, loss: { type: "mse" }, seed: i },
    mode,
    ...(mode === "async" ? { placement: "edge" } : {}),
  };
}

async function create(i) {
  const mode = i % 4 === 3 ? "async" : "sync";
  for (;;) {
    let res;
    try {
      res = await fetch(`${base}/v1/fine-tunes`, { method: "POST", headers, body: JSON.stringify(request(i, mode)) });
    } catch (e) {
      throw new Error(`create ${i} got no answer (${e.cause?.message ?? e.message}); wrangler dev said:\n${dev.output().slice(-4000)}`);
    }
    const body = await res.json();
    if (res.status === 429 && body.code === "too_many_active_jobs") {
      await new Promise((r) => setTimeout(r, 200));
      continue;
    }
    if (res.status !== 200 && res.status !== 202) throw new Error(`create answered ${res.status}: ${JSON.stringify(body).slice(0, 300)}\n${dev.output().slice(-2000)}`);
    return body.id;
  }
}

async function listed(status) {
  let n = 0;
  let cursor = null;
  do {
    const q = new URLSearchParams({ limit: "100", ...(status ? { status } : {}), ...(cursor ? { cursor } : {}) });
    const page = await (await fetch(`${base}/v1/fine-tunes?${q}`, { headers })).json();
    n += page.data.length;
    cursor = page.next_cursor;
  } while (cursor);
  return n;
}

async function until(what, ms, done) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await done()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`soak: timed out waiting for ${what}\n${dev.output().slice(-2000)}`);
}

/** Bytes and files under a directory. */
function du(dir) {
  let bytes = 0;
  let files = 0;
  if (!existsSync(dir)) return { bytes, files };
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    try {
      bytes += statSync(join(entry.parentPath ?? entry.path, entry.name)).size;
      files++;
    } catch {
      // deleted meanwhile (an expiry)
    }
  }
  return { bytes, files };
}

/**
 * Rows in the local SQLite databases under `dir` (Durable Objects' storage, R2's object index),
 * by table, read with Python's sqlite3 (read-only, beside the running wrangler dev). Miniflare's
 * own bookkeeping (`__miniflare_do_name`) is left out.
 */
function sqliteRows(dir) {
  const files = existsSync(dir) ? readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith(".sqlite")).map((f) => join(dir, f)) : [];
  if (files.length === 0) return {};
  const script = [
    "import sqlite3, sys, json, time",
    "def count(f, uri):",
    "    c = sqlite3.connect(uri, uri=True)",
    "    try:",
    "        return [(n, c.execute('select count(*) from \"' + n + '\"').fetchone()[0]) for (n,) in c.execute(\"select name from sqlite_master where type = 'table'\")]",
    "    finally:",
    "        c.close()",
    "rows = {}",
    "for f in sys.argv[1:]:",
    // read-only first; a database in the middle of a write-ahead-log checkpoint can refuse a
    // read-only reader for a moment, so retry, then read it as an ordinary reader
    "    for attempt in range(6):",
    "        try:",
    "            found = count(f, 'file:' + f + ('?mode=ro' if attempt < 5 else ''))",
    "            break",
    "        except sqlite3.OperationalError:",
    "            if attempt == 5: raise",
    "            time.sleep(0.1)",
    "    for n, k in found:",
    "        if n != '__miniflare_do_name': rows[n] = rows.get(n, 0) + k",
    "print(json.dumps(rows))",
  ].join("\n");
  try {
    return JSON.parse(execFileSync("/usr/bin/python3", ["-c", script, ...files], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }));
  } catch (e) {
    throw new Error(`soak: reading the local SQLite files failed: ${String(e.stderr ?? e).trim().split("\n").at(-1)}`);
  }
}

/**
 * What is stored, logically: R2 objects and their blob files, and the rows of every Durable
 * Object (the jobs' events and history, their records and states, the keys' indexes); and on
 * disk (SQLite files keep their size and write-ahead logs after rows are deleted, and miniflare
 * keeps an empty database file per object that ever stored something, so disk bytes are not the
 * measure of what is stored).
 */
function stored() {
  const v3 = join(persist, "v3");
  const r2 = sqliteRows(join(v3, "r2"));
  const dos = sqliteRows(join(v3, "do"));
  return {
    r2_objects: r2._mf_objects ?? 0,
    r2_blob_files: du(join(v3, "r2/edgetune-blobs/blobs")).files,
    do_rows: Object.values(dos).reduce((a, b) => a + b, 0),
    do_rows_by_table: dos,
    disk_bytes: du(v3).bytes,
    do_files: du(join(v3, "do")).files,
  };
}

/** RSS (bytes) of the workerd processes under wrangler dev. */
function workerdRss() {
  const parents = new Map();
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      parents.set(pid, { ppid: /PPid:\s+(\d+)/.exec(status)[1], name: /Name:\s+(\S+)/.exec(status)[1], rss: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024 });
    } catch {
      // gone meanwhile
    }
  }
  const under = (pid) => {
    for (let p = pid; p && p !== "0" && p !== "1"; p = parents.get(p)?.ppid) if (p === String(dev.child.pid)) return true;
    return false;
  };
  let rss = 0;
  for (const [pid, info] of parents) if (info.name.startsWith("workerd") && under(pid)) rss += info.rss;
  return rss;
}

const rounds = [];
try {
  await waitReady(dev, base, "wrangler dev");
  const before = stored();
  let created = 0;
  for (let round = 0; created < JOBS; round++) {
    const n = Math.min(BATCH, JOBS - created);
    const ids = [];
    // 4 at a time: the quota of active jobs is 8
    for (let i = 0; i < n; i += 4) ids.push(...(await Promise.all(Array.from({ length: Math.min(4, n - i) }, (_, k) => create(created + i + k)))));
    created += n;
    await until("the round's jobs to end", 120_000, async () => (await listed("queued,running")) === 0);
    const live = stored();
    const rssLive = workerdRss();
    await until("the round's jobs to expire", 60_000 + TTL_S * 1000, async () => (await listed()) === 0);
    const expired = stored();
    const row = {
      round,
      created,
      live: { r2_objects: live.r2_objects, do_rows: live.do_rows },
      expired: { r2_objects: expired.r2_objects, r2_blob_files: expired.r2_blob_files, do_rows: expired.do_rows, disk_bytes: expired.disk_bytes, do_files: expired.do_files },
      workerd_rss_mib: Math.round(rssLive / 2 ** 20),
    };
    rounds.push(row);
    say(`soak: ${JSON.stringify(row)}`);
  }
  // sampled every 5 s: when memory comes back says what held it (idle objects are evicted
  // some seconds after their last call, and V8 collects their garbage after that)
  say(`soak: idle ${IDLE_S} s`);
  const idleCurve = [];
  for (let s = 0; s < IDLE_S; s += 5) {
    await new Promise((r) => setTimeout(r, Math.min(5, IDLE_S - s) * 1000));
    idleCurve.push({ s: Math.min(s + 5, IDLE_S), workerd_rss_mib: Math.round(workerdRss() / 2 ** 20) });
  }
  const idleRss = idleCurve.at(-1)?.workerd_rss_mib ?? Math.round(workerdRss() / 2 ** 20);
  const first = rounds[0];
  const last = rounds.at(-1);
  const summary = {
    jobs: created,
    batch: BATCH,
    ttl_s: TTL_S,
    before,
    after: stored(),
    // flat: after every round's expiry, what is stored is what was stored after the first's
    // (R2 objects, not blob files: miniflare removes a deleted object's blob file in the background)
    storage_flat: rounds.every((r) => r.expired.r2_objects === first.expired.r2_objects && r.expired.do_rows === first.expired.do_rows),
    r2_blob_files_max: Math.max(...rounds.map((r) => r.expired.r2_blob_files)),
    workerd_rss_mib: { first: first.workerd_rss_mib, last: last.workerd_rss_mib, max: Math.max(...rounds.map((r) => r.workerd_rss_mib)), after_idle: idleRss, idle_s: IDLE_S, idle_curve: idleCurve },
    disk_bytes: { first: first.expired.disk_bytes, last: last.expired.disk_bytes },
    rounds,
  };
  console.log(JSON.stringify(summary, null, 2));
  mkdirSync(join(root, "bench/results"), { recursive: true });
  writeFileSync(join(root, "bench/results/soak.json"), JSON.stringify({ at: new Date().toISOString(), ...summary }, null, 2) + "\n");
  if (!summary.storage_flat) process.exitCode = 1;
} finally {
  await stop();
}
