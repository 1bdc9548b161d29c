/**
 * The docs' code blocks, checked without a server: each names its language, is runnable or
 * marked a fragment, JSON parses, and TS/JS compiles (esbuild, the syntax only). Running them
 * against a real `wrangler dev` is test/e2e/docs.test.ts.
 */
import { transformSync } from "esbuild";
import { describe, expect, it } from "vitest";
import { allBlocks, OUTPUT, RUNNABLE } from "../docs/blocks.js";

const blocks = allBlocks();

describe("the docs' code blocks", () => {
  it("there are blocks to check", () => {
    expect(blocks.length).toBeGreaterThan(30);
  });
  it.each(blocks.map((b) => [b.where, b] as const))("%s names a language that runs, or is output", (_, block) => {
    expect([...RUNNABLE, ...OUTPUT] as string[]).toContain(block.lang);
  });
  it.each(blocks.filter((b) => b.lang === "json").map((b) => [b.where, b] as const))("%s is JSON", (_, block) => {
    expect(() => JSON.parse(block.code)).not.toThrow();
  });
  it.each(blocks.filter((b) => b.lang === "ts" || b.lang === "js").map((b) => [b.where, b] as const))("%s compiles", (_, block) => {
    expect(() => transformSync(block.code, { loader: block.lang as "ts" | "js", format: "esm", target: "es2022" })).not.toThrow();
  });
  it("a fragment marker says why when it is not an excerpt", () => {
    // every marked block is either an excerpt of code (ts/js/python/json) or gives its reason
    const unexplained = blocks.filter((b) => b.fragment && (b.lang === "sh" || b.lang === "bash") && !b.fragmentReason).map((b) => b.where);
    expect(unexplained).toEqual([]);
  });
});
