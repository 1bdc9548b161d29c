/**
 * The browser entry (src/browser) without a browser: it uses no Node or Workers API, every
 * export is documented with an example, its relaxed-SIMD probe agrees with the real build, and
 * `loadBrowserRuntime` fetching the kernels over HTTP trains bit for bit as Node's engine does.
 * The real-browser runs are test/e2e/browser.test.ts (headless Chromium).
 */
import { readFileSync, readdirSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { browserSupport, loadBrowserRuntime, readDataset, train, WebGpuUnavailableError } from "../../src/browser/index.js";
import { createEngine } from "../../src/engine/train.js";
import { parseCsv } from "../../src/formats/dataset.js";
import { loadNodeRuntime, wasmDirectory } from "../../src/node/kernel-module.js";

const dir = new URL("../../src/browser/", import.meta.url);
const sources = readdirSync(dir)
  .filter((name) => name.endsWith(".ts"))
  .map((name) => ({ name, text: readFileSync(new URL(name, dir), "utf8") }));
const stripComments = (text: string) => text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");

describe("src/browser: the browser entry", () => {
  for (const { name, text } of sources) {
    it(`${name} uses no Node- or Workers-only API and imports only the runtime-agnostic core`, () => {
      const code = stripComments(text);
      for (const forbidden of [/["']node:/, /["']cloudflare:/, /\bBuffer\b/, /\bprocess\b/, /\brequire\(/]) expect(code).not.toMatch(forbidden);
      for (const [, specifier] of code.matchAll(/from\s+["']([^"']+)["']/g)) {
        expect(specifier).toMatch(/^\.\/[\w-]+\.js$|^\.\.\/(engine|formats|schema)\/[\w-]+\.js$|^\.\.\/errors\.js$/);
      }
    });
    it(`${name}: every exported function, class, interface and type has JSDoc with an @example`, () => {
      for (const match of text.matchAll(/^export (?:async )?(?:function|interface|type|class) (\w+)/gm)) {
        const before = text.slice(0, match.index);
        const doc = before.slice(before.lastIndexOf("/**"));
        expect({ name: match[1], documented: before.trimEnd().endsWith("*/") && doc.includes("@example") }).toEqual({ name: match[1], documented: true });
      }
    });
  }

  it("the relaxed-SIMD probe validates exactly where build/wasm/relaxed-simd.wasm does", () => {
    const support = browserSupport();
    expect(support.simd).toBe(true);
    expect(support.relaxedSimd).toBe(WebAssembly.validate(readFileSync(join(wasmDirectory(), "relaxed-simd.wasm"))));
  });

  it("readDataset reads CSV, and JSONL by name or by its first character", () => {
    expect(readDataset("a,b,y\n1,2,0\n3,4,1\n", { field: "data.train" })).toMatchObject({ rows: 2, features: 2, targets: 1 });
    const jsonl = '{"x":[1,2],"y":0}\n{"x":[3,4],"y":1}\n';
    expect(readDataset(jsonl, { field: "data.train" })).toMatchObject({ rows: 2, features: 2 });
    expect(readDataset(jsonl, { field: "data.train", name: "rows.JSONL" })).toMatchObject({ rows: 2, features: 2 });
  });

  describe("over HTTP, as a page loads it", () => {
    let server: Server;
    let base = "";
    const served: string[] = [];
    beforeAll(async () => {
      server = createServer((req, res) => {
        served.push(req.url!);
        const file = req.url!.replace(/^\/lib\//, "");
        if (!/^(relaxed-)?simd\.wasm$/.test(file)) return void res.writeHead(404).end();
        res.writeHead(200, { "content-type": "application/wasm" }).end(readFileSync(join(wasmDirectory(), file)));
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      base = `http://127.0.0.1:${(server.address() as { port: number }).port}/lib`;
    });
    afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

    const seed = new URL("../../examples/seed-mlp/", import.meta.url);
    const request = () => ({
      ...JSON.parse(readFileSync(new URL("request.json", seed), "utf8")),
      weights: new Uint8Array(readFileSync(new URL("weights.safetensors", seed))),
    });
    const tables = () => ({ train: parseCsv(readFileSync(new URL("train.csv", seed), "utf8"), { target: "y", field: "data.train" }) });

    it("loadBrowserRuntime fetches simd.wasm from wasmBaseUrl and trains bit for bit as Node's engine (runtime browser)", async () => {
      const engine = await loadBrowserRuntime({ wasmBaseUrl: base, variant: "wasm-simd" });
      expect(engine.variant).toBe("wasm-simd");
      expect(served).toContain("/lib/simd.wasm");
      const epochs: number[] = [];
      const result = await engine.train(request(), { tables: tables(), onProgress: (e) => void (e.type === "epoch" && epochs.push(e.epoch)) });
      expect(result.engine).toEqual({ kernel: "wasm-simd", threads: 1, runtime: "browser" });
      expect(epochs).toHaveLength(20);
      const node = await createEngine(await loadNodeRuntime({ variant: "wasm-simd" })).train(request(), { tables: tables() });
      expect(result.weights).toBe(node.weights);
      expect(result.metrics.history).toEqual(node.metrics.history);
      // compiled once: a second load reuses it
      const before = served.length;
      await train(request(), { wasmBaseUrl: `${base}/`, variant: "wasm-simd", tables: tables() });
      expect(served.length).toBe(before);
    });

    it("the default variant follows WebAssembly.validate; a missing file is a clear error", async () => {
      const engine = await loadBrowserRuntime({ wasmBaseUrl: base });
      expect(engine.variant).toBe(browserSupport().relaxedSimd ? "wasm-relaxed-simd" : "wasm-simd");
      await expect(loadBrowserRuntime({ wasmBaseUrl: `${base}/nowhere/`, variant: "wasm-simd" })).rejects.toMatchObject({ code: "kernels_unavailable" });
    });

    it('kernel "webgpu" where there is no navigator.gpu rejects with WebGpuUnavailableError', async () => {
      const error = await train(request(), { wasmBaseUrl: base, variant: "wasm-simd", tables: tables(), kernel: "webgpu" }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WebGpuUnavailableError);
      expect(error).toMatchObject({ status: 503, code: "webgpu_unavailable" });
    });

    it("bad input rejects as the API answers it: 400 naming the field", async () => {
      const error = await train({ ...request(), training: { epochs: 0 } }, { wasmBaseUrl: base, variant: "wasm-simd", tables: tables() }).catch((e: unknown) => e);
      expect(error).toMatchObject({ status: 400, code: "invalid_request" });
      expect((error as { errors: { path: string }[] }).errors.map((e) => e.path)).toContain("training.epochs");
    });
  });
});
