#!/usr/bin/env node
// `npm run dev`: wrangler dev (the edge: local R2, Durable Objects, Queues under
// .wrangler/state) and one local GPU node that pulls offloaded jobs from it. Arguments go to
// wrangler dev (`npm run dev -- --port 9000`). Ctrl-C stops both.
//
// The node's claim polls are debug-level noise: wrangler dev logs every request, so its lines for
// claims that found nothing (`POST /v1/nodes/claim 204`) are left out unless EDGETUNE_LOG_LEVEL=debug
// (which also shows the node's own poll lines). wrangler's output then goes through a pipe, which
// turns off its interactive keys; with EDGETUNE_LOG_LEVEL=debug it keeps the terminal.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const args = process.argv.slice(2);
const portFlag = args.findIndex((a) => a === "--port" || a.startsWith("--port="));
const port = portFlag < 0 ? "8787" : args[portFlag].includes("=") ? args[portFlag].split("=")[1] : args[portFlag + 1];

const children = [];
const stopAll = (code) => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
  process.exitCode = code;
};

// EDGETUNE_DEV=true marks the run as local development: without keys the API is open and GPU
// nodes may use the public development token. A deployed Worker never has it (docs/security.md).
const debug = process.env.EDGETUNE_LOG_LEVEL === "debug";
const edge = spawn(process.execPath, [join(root, "node_modules/wrangler/bin/wrangler.js"), "dev", "--var", "EDGETUNE_DEV:true", ...args], {
  cwd: root,
  stdio: debug ? "inherit" : ["inherit", "pipe", "pipe"],
  // keep wrangler's colours on a terminal although its output is piped
  env: process.stdout.isTTY && !process.env.NO_COLOR ? { FORCE_COLOR: "1", ...process.env } : process.env,
});
children.push(edge);
if (!debug) {
  const EMPTY_CLAIM = /POST \/v1\/nodes\/claim 204/;
  const plain = (line) => line.replace(/\x1b\[[0-9;]*m/g, "");
  for (const [from, to] of [
    [edge.stdout, process.stdout],
    [edge.stderr, process.stderr],
  ]) {
    createInterface({ input: from, crlfDelay: Infinity }).on("line", (line) => {
      if (!EMPTY_CLAIM.test(plain(line))) to.write(`${line}\n`);
    });
  }
}
edge.on("exit", (code) => stopAll(code ?? 0));

// start the node once the edge answers
const url = `http://127.0.0.1:${port}`;
const deadline = Date.now() + 120_000;
while (Date.now() < deadline && edge.exitCode === null) {
  try {
    if ((await fetch(`${url}/healthz`)).ok) break;
  } catch {
    // not up yet
  }
  await new Promise((r) => setTimeout(r, 300));
}
if (edge.exitCode === null) {
  const node = spawn(process.execPath, [join(root, "dist/src/node/gpu-node-cli.js")], {
    cwd: root,
    stdio: "inherit",
    env: { ...process.env, EDGETUNE_URL: process.env.EDGETUNE_URL ?? url },
  });
  children.push(node);
  node.on("exit", (code) => {
    if (code) console.error(`gpu node exited with ${code}`);
  });
}
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => stopAll(0));
