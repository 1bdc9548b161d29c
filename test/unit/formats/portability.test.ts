import { describe, it, expect } from "vitest";
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

const formatsDir = fileURLToPath(new URL("../../../src/formats/", import.meta.url));
const sources = readdirSync(formatsDir)
  .filter((name) => name.endsWith(".ts"))
  .map((name) => ({ name, text: readFileSync(formatsDir + name, "utf8") }));

/** Source without comments, so prose like "no Buffer here" does not count. */
const stripComments = (text: string) => text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");

describe("src/formats stays runtime-agnostic and documented", () => {
  it("has the expected modules", () => {
    expect(sources.map((s) => s.name).sort()).toEqual(expect.arrayContaining(["base64.ts", "dataset.ts", "dtype.ts", "safetensors.ts"]));
  });

  for (const { name, text } of sources) {
    it(`${name} uses no Node- or Workers-only API`, () => {
      const code = stripComments(text);
      for (const forbidden of [/["']node:/, /["']cloudflare:/, /\bBuffer\b/, /\bprocess\b/, /\brequire\(/, /\bglobalThis\.(process|Buffer)\b/]) {
        expect(code).not.toMatch(forbidden);
      }
      // Relative imports only, each ending in .js (NodeNext ESM), and no packages.
      for (const [, specifier] of code.matchAll(/from\s+["']([^"']+)["']/g)) {
        expect(specifier).toMatch(/^\.\.?\/.*\.js$/);
      }
    });

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
