/**
 * `npm run gpu-node` builds only what is stale (scripts/build-if-stale.mjs), so that starting a node
 * beside `wrangler dev` does not rewrite build/ and reload it.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { NODE_BUILDS, staleBuilds } from "../../scripts/build-if-stale.mjs";

const root = mkdtempSync(join(tmpdir(), "edgetune-stale-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Writes `path` with modification time `seconds` (since the epoch). */
function file(path: string, seconds: number) {
  const full = join(root, path);
  mkdirSync(dirname(full), { recursive: true });
  writeFileSync(full, path);
  utimesSync(full, seconds, seconds);
}

describe("staleBuilds", () => {
  it("names every build whose outputs are missing", () => {
    expect(staleBuilds(root)).toEqual(["build:wasm", "build:ts"]);
  });

  it("nothing when every output is newer than every source", () => {
    for (const build of NODE_BUILDS) for (const input of build.inputs) file(input.includes(".") ? input : `${input}/deep/a.ts`, 1000);
    for (const build of NODE_BUILDS) for (const output of build.outputs) file(output, 2000);
    expect(staleBuilds(root)).toEqual([]);
  });

  it("a source edited after the build makes only its own build stale, however deep it is", () => {
    file("src/deep/a.ts", 3000);
    expect(staleBuilds(root)).toEqual(["build:ts"]);
    file("wasm/assembly/deep/a.ts", 3000);
    expect(staleBuilds(root)).toEqual(["build:wasm", "build:ts"]);
  });

  it("a rebuild makes it fresh again; one output older than the sources is enough to rebuild", () => {
    for (const build of NODE_BUILDS) for (const output of build.outputs) file(output, 4000);
    expect(staleBuilds(root)).toEqual([]);
    file("build/wasm/simd-threads.wasm", 2500);
    expect(staleBuilds(root)).toEqual(["build:wasm"]);
  });

  it("the real package: every listed input and output path exists after a build", () => {
    const repo = join(import.meta.dirname, "../..");
    const missing = NODE_BUILDS.flatMap((b) => [...b.inputs, ...b.outputs]).filter((p) => !existsSync(join(repo, p)));
    expect(missing).toEqual([]);
  });
});
