#!/usr/bin/env node
// `npm run deploy:setup`: everything a first (or any later) deploy to Cloudflare needs, with
// wrangler, idempotently: run it again and it changes nothing that is already there.
//
//   1. the Queues of wrangler.toml (the dispatch queue and its dead-letter queue) and its R2 bucket,
//      created when missing (`wrangler deploy` fails until both queues exist);
//   2. the build (WASM kernels, browser library) when missing, then `wrangler deploy`, which also
//      applies the Durable Object migrations ([[migrations]] in wrangler.toml);
//   3. the secrets EDGETUNE_API_KEYS and EDGETUNE_NODE_TOKENS, when the Worker does not have them yet:
//      taken from the environment variables of the same names, or generated (printed once: keep them).
//      Until they are set the deployed Worker refuses requests (503), it is never open.
//
// Flags: --dry-run (print the wrangler commands, run none), --no-deploy (resources and secrets only),
// --rotate (put the secrets again even when set). WRANGLER=<path to wrangler.js> runs another wrangler.
// Names come from wrangler.toml (read with wrangler's own config reader), so they never drift.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const args = new Set(process.argv.slice(2));
const dryRun = args.has("--dry-run");
const deploy = !args.has("--no-deploy");
const rotate = args.has("--rotate");
const wranglerJs = process.env.WRANGLER ?? join(root, "node_modules/wrangler/bin/wrangler.js");
const SECRETS = ["EDGETUNE_API_KEYS", "EDGETUNE_NODE_TOKENS"];

const log = (line) => console.log(`[deploy:setup] ${line}`);

/** Runs wrangler; returns its exit status and output (never throws). In --dry-run, only prints. */
function wrangler(argv, input) {
  const shown = `wrangler ${argv.join(" ")}`;
  if (dryRun) {
    log(`would run: ${shown}`);
    return { status: 0, output: "", dry: true };
  }
  const r = spawnSync(process.execPath, [wranglerJs, ...argv], {
    cwd: root,
    input,
    encoding: "utf8",
    env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
  });
  return { status: r.status ?? 1, output: `${r.stdout ?? ""}${r.stderr ?? ""}`, dry: false };
}

function fail(what, r) {
  console.error(`[deploy:setup] ${what} failed:\n${r.output}`);
  process.exit(1);
}

/** Creates a resource unless `info` finds it; "already exists" from create also counts as there. */
function ensure(kind, infoArgs, createArgs) {
  if (dryRun) {
    wrangler(infoArgs);
    log(`(${kind} missing) would run: wrangler ${createArgs.join(" ")}`);
    return;
  }
  if (wrangler(infoArgs).status === 0) return log(`${kind}: exists`);
  const created = wrangler(createArgs);
  if (created.status === 0) return log(`${kind}: created`);
  if (/already exists|already taken|already owned/i.test(created.output)) return log(`${kind}: exists`);
  fail(`creating ${kind}`, created);
}

const { unstable_readConfig } = await import("wrangler");
const config = unstable_readConfig({ config: join(root, "wrangler.toml") });
const queues = [
  ...new Set([
    ...(config.queues.producers ?? []).map((p) => p.queue),
    ...(config.queues.consumers ?? []).flatMap((c) => [c.queue, c.dead_letter_queue].filter(Boolean)),
  ]),
];
const buckets = config.r2_buckets.map((b) => b.bucket_name);
log(`Worker "${config.name}": queues ${queues.join(", ")}; R2 bucket ${buckets.join(", ")}${dryRun ? " (dry run: nothing is changed)" : ""}`);

// 1. resources
for (const queue of queues) ensure(`queue ${queue}`, ["queues", "info", queue], ["queues", "create", queue]);
for (const bucket of buckets) ensure(`R2 bucket ${bucket}`, ["r2", "bucket", "info", bucket], ["r2", "bucket", "create", bucket]);

// 2. build when missing, deploy (Durable Object migrations included)
if (deploy) {
  const built = existsSync(join(root, "build/wasm/relaxed-simd.wasm")) && existsSync(join(root, "build/public/lib"));
  if (!built) {
    for (const script of ["build:wasm", "build:browser"]) {
      if (dryRun) log(`would run: npm run ${script}`);
      else if (spawnSync("npm", ["run", script], { cwd: root, stdio: "inherit" }).status !== 0) process.exit(1);
    }
  }
  const deployed = wrangler(["deploy"]);
  if (deployed.status !== 0) fail("wrangler deploy", deployed);
  if (!deployed.dry) log(`deployed:\n${deployed.output.trim()}`);
}

// 3. secrets the Worker does not have yet
const listed = wrangler(["secret", "list", "--format", "json"]);
let present = [];
if (!listed.dry && listed.status === 0) {
  try {
    present = JSON.parse(listed.output.slice(listed.output.indexOf("["))).map((s) => s.name);
  } catch {
    present = []; // not JSON: treat every secret as missing
  }
}
for (const name of SECRETS) {
  if (present.includes(name) && !rotate) {
    log(`secret ${name}: set (kept; --rotate to replace)`);
    continue;
  }
  const given = process.env[name];
  const value = given ?? randomBytes(32).toString("base64url");
  const put = wrangler(["secret", "put", name], value);
  if (put.status !== 0) fail(`wrangler secret put ${name}`, put);
  if (put.dry) continue;
  if (given) log(`secret ${name}: set from the environment`);
  else log(`secret ${name}: generated and set. Keep it, it is not shown again: ${name}=${value}`);
}
log(dryRun ? "dry run done" : "done");
