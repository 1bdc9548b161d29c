// Which builds are out of date: an output missing, or a source newer than the oldest output.
// `npm run gpu-node` (scripts/gpu-node.mjs) builds only those, so starting a node beside a running
// `wrangler dev` does not rewrite build/wasm or build/public, which would reload wrangler dev and
// cut every open SSE stream.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

/**
 * What each build reads and writes, relative to the package root. A GPU node needs the compiled
 * TypeScript (dist/) and the WASM kernels (build/wasm/); never the browser library.
 */
export const NODE_BUILDS = [
  {
    script: "build:wasm",
    inputs: ["wasm/assembly", "wasm/build.mjs"],
    outputs: ["build/wasm/simd.wasm", "build/wasm/relaxed-simd.wasm", "build/wasm/simd-threads.wasm", "build/wasm/relaxed-simd-threads.wasm"],
  },
  {
    script: "build:ts",
    inputs: ["src", "tsconfig.json", "tsconfig.build.json"],
    // tsc rewrites every output on each build, so these stand for all of dist/
    outputs: ["dist/src/node/gpu-node-cli.js", "dist/src/node/gpu-node.js", "dist/src/jobs/runner.js"],
  },
];

/** The newest modification time (ms) of a file, or of any file under a directory. */
function newest(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let max = 0;
  for (const entry of readdirSync(path)) max = Math.max(max, newest(join(path, entry)));
  return max;
}

/**
 * The npm scripts whose outputs are missing or older than their sources, in build order.
 *
 * @example
 * staleBuilds(root); // [] when dist/ and build/wasm/ are up to date, else e.g. ["build:ts"]
 */
export function staleBuilds(root, builds = NODE_BUILDS) {
  const stale = [];
  for (const build of builds) {
    const outputs = build.outputs.map((o) => join(root, o));
    if (outputs.some((o) => !existsSync(o))) {
      stale.push(build.script);
      continue;
    }
    const built = Math.min(...outputs.map((o) => statSync(o).mtimeMs));
    const changed = Math.max(...build.inputs.map((i) => join(root, i)).filter(existsSync).map(newest));
    if (changed > built) stale.push(build.script);
  }
  return stale;
}
