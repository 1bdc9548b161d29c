/**
 * Every code block of the README, docs/ and the examples' READMEs runs as written against a
 * real `wrangler dev` (and a real GPU node for the async jobs), unless the line before it marks
 * it `<!-- fragment -->` (test/docs/blocks.ts). Only the address changes: localhost:8787 becomes
 * the test's port, and EDGETUNE_URL points there.
 *
 * Each document's blocks run in order in one scratch directory, so a later block can read
 * what an earlier one wrote (result.json, tuned.safetensors). The scratch directory holds
 * links to the repository's examples/ and dist/, and a node_modules with `edgetune` linked
 * as an install would put it (so `import ... from "edgetune/sdk"` and `npx edgetune` work).
 * sh/bash run in bash -e with curl failing on HTTP errors; ts/js run as ES modules in Node (TypeScript stripped by esbuild);
 * json that is a fine-tune request is POSTed and must be accepted; python runs where PyTorch
 * is installed, and is reported skipped (with the reason) where it is not.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { transformSync } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blocksOf, docFiles, root, type DocBlock } from "../docs/blocks.js";
import { freePort, startGpuNode, startWranglerDev, stop, type Proc } from "./processes.js";
import { torchAvailable } from "../torch.js";

const work = mkdtempSync(join(tmpdir(), "edgetune-docs-"));


/** A scratch directory for one document: links to the repository's files, edgetune "installed". */
function scratchFor(file: string): string {
  const dir = join(work, file.replaceAll("/", "_"));
  mkdirSync(join(dir, "node_modules/.bin"), { recursive: true });
  // what a checkout has: a block may run wrangler (wrangler.toml, worker/, src/) or the built package
  for (const name of ["examples", "dist", "build", "package.json", "wrangler.toml", "worker", "src", "tsconfig.json"]) symlinkSync(join(root, name), join(dir, name));
  for (const bin of ["wrangler"]) symlinkSync(join(root, "node_modules/.bin", bin), join(dir, "node_modules/.bin", bin));
  symlinkSync(root, join(dir, "node_modules/edgetune"), "dir");
  writeFileSync(join(dir, "node_modules/.bin/edgetune"), `#!/bin/sh\nexec "${process.execPath}" "${join(root, "dist/src/cli/index.js")}" "$@"\n`, { mode: 0o755 });
  return dir;
}

const needsTorch = (b: DocBlock) => b.lang === "python" || /\/usr\/bin\/python3|\bpython3? /.test(b.code);

describe("the docs' code blocks run as written against wrangler dev", () => {
  let port = 0;
  let dev: Proc | undefined;
  let node: Proc | undefined;
  let env: NodeJS.ProcessEnv = {};

  beforeAll(async () => {
    port = await freePort();
    dev = await startWranglerDev(port, join(work, "state"));
    node = startGpuNode(port, "docs-node");
    const bin = join(root, "node_modules/.bin");
    env = { ...process.env, EDGETUNE_URL: `http://127.0.0.1:${port}`, PATH: `${bin}:${process.env.PATH}` };
  });
  afterAll(async () => {
    await stop(node);
    await stop(dev);
    rmSync(work, { recursive: true, force: true });
  });

  const local = (code: string) => code.replaceAll("localhost:8787", `127.0.0.1:${port}`);

  for (const file of docFiles()) {
    const runnable = blocksOf(file).filter((b) => !b.fragment && b.lang !== "text");
    if (runnable.length === 0) continue;
    describe(file, () => {
      let dir = "";
      beforeAll(() => {
        dir = scratchFor(file);
        env = { ...env, PATH: `${join(dir, "node_modules/.bin")}:${env.PATH}` };
      });
      for (const block of runnable) {
        const title = `${block.where} (${block.lang})`;
        if (needsTorch(block) && !torchAvailable) {
          it.skip(`${title}: needs PyTorch (/usr/bin/python3 with torch), not installed here`, () => {});
          continue;
        }
        it(title, async () => {
          if (block.lang === "sh" || block.lang === "bash") {
            // curl fails on an HTTP error here (a user would see the problem+json; the test must fail)
            const script = `curl() { command curl --fail-with-body "$@"; }\n${local(block.code)}`;
            execFileSync("bash", ["-euo", "pipefail", "-c", script], { cwd: dir, env, stdio: ["ignore", "pipe", "inherit"], timeout: 120_000 });
          } else if (block.lang === "ts" || block.lang === "js") {
            const js = transformSync(local(block.code), { loader: block.lang, format: "esm", target: "es2022" }).code;
            const path = join(dir, `block-${block.line}.mjs`);
            writeFileSync(path, js);
            execFileSync(process.execPath, [path], { cwd: dir, env, stdio: ["ignore", "pipe", "inherit"], timeout: 120_000 });
          } else if (block.lang === "python") {
            execFileSync("/usr/bin/python3", ["-c", block.code], { cwd: dir, env, stdio: ["ignore", "pipe", "inherit"], timeout: 120_000 });
          } else if (block.lang === "json") {
            const body = JSON.parse(block.code) as Record<string, unknown>;
            if (!("model" in body && "data" in body)) return; // a fragment of a request or a response: parsed only
            // POSTed with curl, as a user would paste it (and without reusing a kept-alive socket)
            const path = join(dir, `block-${block.line}.json`);
            writeFileSync(path, block.code);
            const out = join(dir, `block-${block.line}.out.json`);
            const status = execFileSync("curl", ["-s", "-o", out, "-w", "%{http_code}", "-H", "content-type: application/json", "--data-binary", `@${path}`, `http://127.0.0.1:${port}/v1/fine-tunes`], { encoding: "utf8", timeout: 120_000 });
            expect([200, 202], readFileSync(out, "utf8").slice(0, 2000)).toContain(Number(status));
          }
        });
      }
    });
  }
});
