/**
 * The code blocks of the README, docs/ and the examples' READMEs, as the docs tests read them
 * (not a test file). A block runs as written unless the line before its fence marks it:
 *
 *   <!-- fragment -->           an excerpt that needs surrounding code (not run; its syntax is checked)
 *   <!-- fragment: why -->      the same, with the reason (e.g. "starts a server", "needs a Cloudflare account")
 *
 * `text` blocks are output and are not run. Every other block must name its language, and
 * the language decides how it runs (test/e2e/docs.test.ts): sh/bash in bash, ts/js as an ES
 * module in Node, json parsed (and POSTed when it is a fine-tune request), python with PyTorch.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

export const root = fileURLToPath(new URL("../..", import.meta.url));

export interface DocBlock {
  /** e.g. "docs/sdk.md:25" (the fence's line). */
  where: string;
  file: string;
  line: number;
  lang: string;
  code: string;
  /** Marked `<!-- fragment -->`: not run. */
  fragment: boolean;
  fragmentReason?: string;
}

/** Languages that run, and those that are output. */
export const RUNNABLE = ["sh", "bash", "ts", "js", "json", "python"] as const;
export const OUTPUT = ["text"] as const;

/** README.md, docs/*.md and examples/&#42;/README.md, relative to the repository root. */
export function docFiles(): string[] {
  const docs = readdirSync(join(root, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`);
  const examples = readdirSync(join(root, "examples"), { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => `examples/${d.name}/README.md`)
    .filter((f) => {
      try {
        readFileSync(join(root, f));
        return true;
      } catch {
        return false;
      }
    });
  return ["README.md", ...docs.sort(), ...examples.sort()];
}

/** Every fenced block of a Markdown file, in order. */
export function blocksOf(file: string): DocBlock[] {
  const lines = readFileSync(join(root, file), "utf8").split("\n");
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,})(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const [, indent, fence, info] = open;
    let end = i + 1;
    while (end < lines.length && !new RegExp(`^\\s*${fence}\\s*$`).test(lines[end]!)) end++;
    const marker = /^\s*<!--\s*fragment(?::\s*(.*?))?\s*-->\s*$/.exec(lines[i - 1] ?? "");
    blocks.push({
      where: `${relative(root, join(root, file))}:${i + 1}`,
      file,
      line: i + 1,
      lang: info!.trim().split(/\s+/)[0] ?? "",
      code: lines.slice(i + 1, end).map((l) => (l.startsWith(indent!) ? l.slice(indent!.length) : l)).join("\n"),
      fragment: marker !== null,
      ...(marker?.[1] ? { fragmentReason: marker[1] } : {}),
    });
    i = end;
  }
  return blocks;
}

/** Every block of every documented file. */
export function allBlocks(): DocBlock[] {
  return docFiles().flatMap(blocksOf);
}
