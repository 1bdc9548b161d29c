import { describe, it, expect } from "vitest";
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The runtime-agnostic folders: the runtime entries (worker/, src/node/) inject what is runtime-specific. */
const AGNOSTIC = ["engine", "engine/webgpu", "formats", "schema"];
const sources = AGNOSTIC.flatMap((dir) => {
  const path = fileURLToPath(new URL(`../../src/${dir}/`, import.meta.url));
  return readdirSync(path)
    .filter((name) => name.endsWith(".ts"))
    .map((name) => ({ dir, name: `${dir}/${name}`, text: readFileSync(path + name, "utf8") }));
});

/** Source without comments, so prose like "no Buffer here" does not count. */
const stripComments = (text: string) => text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");

describe("src/engine, src/formats and src/schema stay runtime-agnostic", () => {
  it("has the expected modules", () => {
    expect(sources.map((s) => s.name).sort()).toEqual(
      expect.arrayContaining(["formats/base64.ts", "formats/dataset.ts", "formats/safetensors.ts", "engine/train.ts", "schema/request.ts"]),
    );
  });

  for (const { dir, name, text } of sources) {
    it(`${name} uses no Node- or Workers-only API`, () => {
      const code = stripComments(text);
      for (const forbidden of [/["']node:/, /["']cloudflare:/, /\bBuffer\b/, /\bprocess\b/, /\brequire\(/, /\bglobalThis\.(process|Buffer)\b/]) {
        expect(code).not.toMatch(forbidden);
      }
      // Relative imports ending in .js (NodeNext ESM); the packages are zod (the shared schemas) and
      // @huggingface/tokenizers (formats/text.ts: pure JS, no dependencies, no network, no Node or Workers API).
      for (const [, specifier] of code.matchAll(/from\s+["']([^"']+)["']/g)) {
        expect(specifier).toMatch(/^(\.\.?\/.*\.js|zod|@huggingface\/tokenizers)$/);
      }
    });

    if (dir !== "formats") continue;
    it(`${name}: every exported function and type has JSDoc with an @example`, () => {
      const exported = [...text.matchAll(/^export (?:function|interface|type|class) (\w+)/gm)];
      expect(exported.length).toBeGreaterThan(0);
      for (const match of exported) {
        const before = text.slice(0, match.index);
        const doc = before.slice(before.lastIndexOf("/**"));
        const documented = before.trimEnd().endsWith("*/") && doc.includes("@example");
        expect({ name: match[1], documented }).toEqual({ name: match[1], documented: true });
      }
    });
  }
});

describe("the engine's layering (issue 19): the orchestrator is imported by the entries, never by the engine", () => {
  const engineFiles = (dir: string): { name: string; text: string }[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? engineFiles(`${dir}${e.name}/`) : e.name.endsWith(".ts") ? [{ name: `${dir}${e.name}`, text: readFileSync(`${dir}${e.name}`, "utf8") }] : [],
    );
  const root = fileURLToPath(new URL("../../src/engine/", import.meta.url));
  it("only what runs a request imports train.ts: the entries, the API's create and the job runner", () => {
    const src = fileURLToPath(new URL("../../src/", import.meta.url));
    const importers = engineFiles(src)
      .filter((f) => /from\s+["'](\.\/|\.\.\/)+(engine\/)?train\.js["']/.test(stripComments(f.text)))
      .map((f) => f.name.slice(src.length))
      .sort();
    // backends, the loop, preparation, formats and the types' users (deps, kernel-module, body,
    // protocol) name run-types.ts or prepare.ts instead
    expect(importers).toEqual(["api/fine-tunes.ts", "browser/index.ts", "index.ts", "jobs/runner.ts", "node/index.ts"]);
  });
  it("the loop and the run types import neither the orchestrator nor preparation's side effects", () => {
    for (const name of ["loop.ts", "run-types.ts"]) {
      const code = stripComments(readFileSync(`${root}${name}`, "utf8"));
      expect(code).not.toMatch(/from\s+["']\.\/train\.js["']/);
    }
    expect(stripComments(readFileSync(`${root}run-types.ts`, "utf8"))).not.toMatch(/^import (?!type)/m); // types only
  });
});

describe("test helpers shared with the Worker tests", () => {
  it("test/helpers.ts imports no node: module (test/worker/* load it inside workerd, which crashed at start-up on node:child_process)", () => {
    const text = stripComments(readFileSync(fileURLToPath(new URL("../helpers.ts", import.meta.url)), "utf8"));
    expect(text).not.toMatch(/from\s+["']node:/);
  });
});

describe("@huggingface/tokenizers (imported by formats/text.ts) runs anywhere", () => {
  const pkg = fileURLToPath(new URL("../../node_modules/@huggingface/tokenizers/", import.meta.url));
  const manifest = JSON.parse(readFileSync(`${pkg}package.json`, "utf8")) as { version: string; dependencies?: object; exports: Record<string, unknown> };

  it("is the pinned version, with no dependencies", () => {
    const ours = JSON.parse(readFileSync(fileURLToPath(new URL("../../package.json", import.meta.url)), "utf8")) as { dependencies: Record<string, string> };
    expect(ours.dependencies["@huggingface/tokenizers"]).toBe(manifest.version);
    expect(manifest.dependencies ?? {}).toEqual({});
  });

  for (const file of ["dist/tokenizers.mjs", "dist/tokenizers.cjs"]) {
    it(`${file} imports nothing, fetches nothing and evaluates no code`, () => {
      const code = stripComments(readFileSync(pkg + file, "utf8"));
      expect(code.length).toBeGreaterThan(10_000);
      for (const forbidden of [/\bfetch\s*\(/, /\bimport\s*\(/, /^\s*import\s/m, /\brequire\(/, /\bXMLHttpRequest\b/, /\bWebSocket\b/, /\bnew Function\b/, /\beval\s*\(/, /["']node:/, /\bBuffer\b/, /\bprocess\./]) {
        expect(code, String(forbidden)).not.toMatch(forbidden);
      }
    });
  }
});
