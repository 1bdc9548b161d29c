/**
 * The package as a consumer project type-checks it: test/consumer/*.ts compiled by tsc under
 * strict settings (exactOptionalPropertyTypes, noUncheckedIndexedAccess, skipLibCheck off)
 * against the built declarations (dist/, `npm run build:ts`), through the package's `exports`,
 * with `edgetune` linked into a scratch project's node_modules as an install would put it.
 * It fails when a .d.ts needs a global the consumer lacks (GPUDevice), when an option rejects
 * `process.env.X`, or when an `as const` model or a JSON import needs a cast.
 */
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../..", import.meta.url));
const tsc = join(root, "node_modules/typescript/bin/tsc");

function consumerProject(): string {
  const dir = mkdtempSync(join(tmpdir(), "edgetune-consumer-"));
  cpSync(join(root, "test/consumer"), dir, { recursive: true });
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  mkdirSync(join(dir, "node_modules/@types"), { recursive: true });
  symlinkSync(root, join(dir, "node_modules/edgetune"), "dir");
  symlinkSync(join(root, "node_modules/@types/node"), join(dir, "node_modules/@types/node"), "dir");
  return dir;
}

function typecheck(dir: string, project: string): { ok: boolean; output: string } {
  try {
    execFileSync(process.execPath, [tsc, "-p", join(dir, project)], { cwd: dir, encoding: "utf8", stdio: "pipe" });
    return { ok: true, output: "" };
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string };
    return { ok: false, output: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

describe("a consumer project type-checks against the built package", () => {
  it("dist/ is built", () => {
    expect(existsSync(join(root, "dist/src/node/index.d.ts")), "run `npm run build:ts` first").toBe(true);
  });
  it.each(["tsconfig.node.json", "tsconfig.browser.json"])("%s: strict, exactOptionalPropertyTypes, skipLibCheck off", (project) => {
    const dir = consumerProject();
    const { ok, output } = typecheck(dir, project);
    expect(output).toBe("");
    expect(ok).toBe(true);
  }, 120_000);
  it("the check can fail: a wrong option type is reported", () => {
    const dir = consumerProject();
    writeFileSync(join(dir, "node.ts"), 'import { train } from "edgetune";\nexport const run = () => train({ model: { layers: [] }, data: {} }, { threads: "two" });\n');
    const { ok, output } = typecheck(dir, "tsconfig.node.json");
    expect(ok).toBe(false);
    expect(output).toMatch(/^node\.ts\(2,\d+\): error TS2322/);
  }, 120_000);
});
