/**
 * scripts/gpu-check.sh and bench/gpu.mjs where there is no GPU (this machine, CI): they say so
 * and exit non-zero, and a software adapter never passes for a GPU. (Their GPU path runs on a
 * machine with an NVIDIA GPU: `npm run bench:gpu`.)
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { SWIFTSHADER_ICD } from "../../src/node/webgpu.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const run = (cmd: string, args: string[], env: Record<string, string>) => {
  const { VK_ADD_DRIVER_FILES: _a, VK_ICD_FILENAMES: _b, ...rest } = process.env;
  const r = spawnSync(cmd, args, { cwd: root, encoding: "utf8", env: { ...rest, ...env }, timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
};

describe("the GPU check without a GPU", () => {
  it("no adapter at all: exits 2 and says why", () => {
    const r = run("bash", ["scripts/gpu-check.sh", "--no-install", "--no-build", "--no-tests"], { VK_ICD_FILENAMES: "/nonexistent/icd.json" });
    expect(r.status).toBe(2);
    expect(r.output).toMatch(/no WebGPU adapter found/);
    expect(r.output).toMatch(/FAILED: no hardware WebGPU adapter on this machine/);
  });

  it.skipIf(!existsSync(SWIFTSHADER_ICD))("a software adapter (SwiftShader) is refused, never measured", () => {
    const r = run("bash", ["scripts/gpu-check.sh", "--no-install", "--no-build", "--no-tests"], { VK_ICD_FILENAMES: SWIFTSHADER_ICD });
    expect(r.status).toBe(2);
    expect(r.output).toMatch(/architecture=swiftshader/);
    expect(r.output).toMatch(/software adapter .* not a GPU: refusing/);
    expect(r.output).not.toMatch(/== gpu-check: benchmark/);
  });

  it.skipIf(!existsSync(`${root}/dist/src/node/index.js`))("bench/gpu.mjs exits 2 without a hardware adapter", () => {
    const r = run(process.execPath, ["bench/gpu.mjs"], { VK_ICD_FILENAMES: existsSync(SWIFTSHADER_ICD) ? SWIFTSHADER_ICD : "/nonexistent/icd.json" });
    expect(r.status).toBe(2);
    expect(r.output).toMatch(/bench:gpu: no GPU adapter/);
  });

  it("unknown options are refused", () => {
    const r = run("bash", ["scripts/gpu-check.sh", "--fast"], {});
    expect(r.status).toBe(64);
  });
});
