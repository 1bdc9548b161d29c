/**
 * Loads the compiled kernel core on Node: the relaxed-SIMD build when this V8 validates it
 * (Node 20 only with --experimental-wasm-relaxed-simd), else the plain SIMD build.
 * Compiled once per process.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { EngineRuntime } from "../engine/run-types.js";

let cached: Promise<EngineRuntime> | null = null;

/** The directory holding simd.wasm and relaxed-simd.wasm (build/wasm of the package). */
export function wasmDirectory(): string {
  // src/node (tests, tsx) and dist/src/node (the built package) sit at different depths
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, "build", "wasm");
    if (existsSync(join(candidate, "simd.wasm"))) return candidate;
    dir = dirname(dir);
  }
  throw new Error("edgetune: build/wasm/simd.wasm not found; run `npm run build:wasm`");
}

/**
 * The kernel module for this Node process.
 *
 * @example
 * ```ts
 * const runtime = await loadNodeRuntime();
 * runtime.variant; // "wasm-simd" on Node 20 without flags
 * ```
 */
export function loadNodeRuntime(options: { variant?: EngineRuntime["variant"] } = {}): Promise<EngineRuntime> {
  if (options.variant) return compile(options.variant);
  cached ??= (async () => {
    const relaxed = readFileSync(join(wasmDirectory(), "relaxed-simd.wasm"));
    return compile(WebAssembly.validate(relaxed) ? "wasm-relaxed-simd" : "wasm-simd");
  })();
  return cached;
}

async function compile(variant: EngineRuntime["variant"]): Promise<EngineRuntime> {
  const file = variant === "wasm-relaxed-simd" ? "relaxed-simd.wasm" : "simd.wasm";
  const module = await WebAssembly.compile(readFileSync(join(wasmDirectory(), file)));
  return { module, variant, runtime: "node" };
}
