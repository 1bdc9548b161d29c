/**
 * The SDK runs in Node, browsers and Workers: it uses only fetch, streams, TextDecoder,
 * AbortController, FormData and Blob, imports no package at run time, and documents every
 * public export with an example.
 */
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const dir = fileURLToPath(new URL("../../src/sdk/", import.meta.url));
const sources = readdirSync(dir)
  .filter((name) => name.endsWith(".ts"))
  .map((name) => ({ name, text: readFileSync(dir + name, "utf8") }));
const stripComments = (text: string) => text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");

describe("src/sdk is portable and documented", () => {
  it("has its modules", () => {
    expect(sources.map((s) => s.name).sort()).toEqual(expect.arrayContaining(["index.ts", "client.ts", "core.ts", "errors.ts", "fine-tunes.ts", "sse.ts", "events.ts"]));
  });

  for (const { name, text } of sources) {
    it(`${name}: no Node- or Workers-only API, no runtime package import`, () => {
      const code = stripComments(text);
      for (const forbidden of [/["']node:/, /["']cloudflare:/, /\bBuffer\b/, /\brequire\(/, /(?<!\.)\bprocess\.env\b/]) {
        expect(code).not.toMatch(forbidden);
      }
      for (const m of code.matchAll(/^(import|export)\s+(type\s+)?[^;]*?from\s+["']([^"']+)["']/gm)) {
        const [, , typeOnly, specifier] = m;
        expect(specifier).toMatch(/^\.\.?\/.*\.js$/);
        // runtime imports stay inside the SDK, plus the dependency-free base64 codec and safetensors
        // sniffer; the schemas are types only
        if (!typeOnly && specifier!.startsWith("../")) expect(["../formats/base64.js", "../formats/safetensors-sniff.js"]).toContain(specifier);
      }
    });

    it(`${name}: every export has JSDoc with an @example`, () => {
      const exported = [...text.matchAll(/^export (?:default )?(?:async )?(?:function\*? |interface |type |class |const )(\w+)/gm)];
      for (const match of exported) {
        const before = text.slice(0, match.index);
        const doc = before.slice(before.lastIndexOf("/**"));
        const documented = before.trimEnd().endsWith("*/") && doc.includes("@example");
        expect({ name: match[1], documented }).toEqual({ name: match[1], documented: true });
      }
    });
  }
});
