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
