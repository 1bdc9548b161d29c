#!/usr/bin/env node
// `npm run gpu-node`: a GPU node (dist/src/node/gpu-node-cli.js), built first only where its
// outputs are stale (scripts/build-if-stale.mjs): a rebuild of build/wasm or build/public under a
// running `wrangler dev` reloads it and cuts every open SSE stream.
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { staleBuilds } from "./build-if-stale.mjs";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const stale = staleBuilds(root);
for (const script of stale) {
  console.log(`[gpu-node] ${script}: outputs are stale, building`);
  const r = spawnSync("npm", ["run", script], { cwd: root, stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
if (stale.length === 0) console.log("[gpu-node] dist/ and build/wasm/ are up to date: no build");
await import(pathToFileURL(join(root, "dist/src/node/gpu-node-cli.js")).href);
