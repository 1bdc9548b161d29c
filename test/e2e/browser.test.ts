/**
 * Fine-tuning on the user's device: the browser library (build/public/lib, served by
 * `wrangler dev` as static assets at /lib/*) in a real headless Chromium, driven with
 * playwright-core. (a) A page imports /lib/edgetune.js and trains the seed MLP in the page and
 * in the library's Web Worker; the weights equal a Node train() of the same request on the
 * same build (bit for bit with the same kernel variant, within the PyTorch parity tolerance
 * across variants). (b) The playground's "this device" runs: every epoch plotted from
 * onProgress, the weights downloaded from a Blob, and not one request to /v1/. (c) kernel
 * "webgpu" on Chromium's SwiftShader WebGPU adapter, within parity of the WASM run. Needs Debian's
 * chromium at /usr/bin/chromium (.ci/run installs it) and `npm run build` (the bundle).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEngine, type TrainRequest } from "../../src/engine/train.js";
import { decodeBase64 } from "../../src/formats/base64.js";
import { parseCsv } from "../../src/formats/dataset.js";
import { parseSafetensors, readTensorF32 } from "../../src/formats/safetensors.js";
import { loadNodeRuntime } from "../../src/node/kernel-module.js";
import type { FineTuneResult } from "../../src/schema/result.js";
import { freePort, root, startWranglerDev, stop, type Proc, CHROMIUM, launchChromium, openRecordedPage } from "./processes.js";

const hasChromium = existsSync(CHROMIUM);
const seed = join(root, "examples/seed-mlp");
const lib = join(root, "build/public/lib");

/** The seed MLP's request with its weights (base64) and its CSV, as the page gets them. */
function seedRequest(epochs: number): { request: TrainRequest & { data: { target?: string } }; csv: string } {
  const request = JSON.parse(readFileSync(join(seed, "request.json"), "utf8")) as TrainRequest & { data: { target?: string } };
  request.training = { ...request.training, epochs };
  request.weights = readFileSync(join(seed, "weights.safetensors")).toString("base64");
  return { request, csv: readFileSync(join(seed, "train.csv"), "utf8") };
}

/** The same request trained by Node on the same build (build/wasm/simd.wasm: Node 20 has no relaxed SIMD without a flag). */
async function trainInNode(request: TrainRequest, csv: string): Promise<FineTuneResult> {
  const engine = createEngine(await loadNodeRuntime({ variant: "wasm-simd" }));
  return engine.train(request, { tables: { train: parseCsv(csv, { target: "y", field: "data.train" }) } });
}

/** Every tensor of `a` within the PyTorch parity tolerance of `b`: |a-b| <= 1e-5 + 1e-4*|b| (SPEC section 4). */
function expectWithinParity(a: Uint8Array, b: Uint8Array) {
  const fa = parseSafetensors(a);
  const fb = parseSafetensors(b);
  expect([...fa.tensors.keys()]).toEqual([...fb.tensors.keys()]);
  let worst = 0;
  for (const name of fb.tensors.keys()) {
    const x = readTensorF32(fa, name);
    const y = readTensorF32(fb, name);
    for (let i = 0; i < y.length; i++) {
      const diff = Math.abs(x[i]! - y[i]!);
      worst = Math.max(worst, diff);
      expect(diff, `${name}[${i}]: ${x[i]} vs ${y[i]}`).toBeLessThanOrEqual(1e-5 + 1e-4 * Math.abs(y[i]!));
    }
  }
  return worst;
}

/**
 * What the page runs (a string: vitest rewrites import() in functions of this file, and the
 * page must load the library as any page would): the forced simd build, the default build and
 * the Web Worker.
 */
const IN_PAGE = `async ({ full, short }) => {
  const lib = await import("/lib/edgetune.js");
  const tables = (csv) => ({ train: lib.readDataset(csv, { target: "y", field: "data.train" }) });
  const epochs = [];
  const simd = await lib.train(full.request, { variant: "wasm-simd", tables: tables(full.csv), onProgress: (e) => e.type === "epoch" && epochs.push(e.epoch) });
  const auto = await lib.train(short.request, { tables: tables(short.csv) });
  const inWorker = await lib.trainInWorker(full.request, { variant: "wasm-simd", tables: tables(full.csv) });
  return { support: lib.browserSupport(), epochs, simd, auto, inWorker };
}`;

/** (c): the same on SwiftShader WebGPU, in the page and in the worker (which asks for its own device). */
const IN_PAGE_WEBGPU = `async ({ short }) => {
  const lib = await import("/lib/edgetune.js");
  const tables = () => ({ train: lib.readDataset(short.csv, { target: "y", field: "data.train" }) });
  const gpu = await lib.requestGpuDevice();
  if (!gpu) return { support: lib.browserSupport(), gpu: false };
  const page = await lib.train(short.request, { kernel: "webgpu", gpu, tables: tables() });
  const inWorker = await lib.trainInWorker(short.request, { kernel: "webgpu", tables: tables() });
  return { support: lib.browserSupport(), gpu: true, page, inWorker };
}`;

/** Chromium's software WebGPU: Dawn on SwiftShader's Vulkan (../shared/REFERENCE.md, "WebGPU without a GPU"). */

const work = mkdtempSync(join(tmpdir(), "edgetune-browser-"));
const persist = join(work, "state");

describe("fine-tuning on the user's device: the browser library in headless Chromium", () => {
  let port = 0;
  let base = "";
  let dev: Proc | undefined;
  let browser: Browser | undefined;

  beforeAll(async () => {
    if (!hasChromium) return;
    if (!existsSync(join(lib, "edgetune.js"))) throw new Error("build/public/lib/edgetune.js is missing: run `npm run build` first");
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    [dev, browser] = await Promise.all([
      startWranglerDev(port, persist, { RATE_LIMIT_PER_MINUTE: "0" }),
      launchChromium(),
    ]);
  });
  afterAll(async () => {
    await browser?.close();
    await stop(dev);
    rmSync(work, { recursive: true, force: true });
  });

  /** A fresh page at `/` (the playground: the Worker's CSP applies) that records every URL it asks for. */
  const open = () => openRecordedPage(browser!, `${base}/`);

  it.skipIf(!hasChromium)("the SDK in a page: /lib/sdk.js creates a fine-tune, retrieves it, downloads its weights and throws typed errors (needs /usr/bin/chromium)", async () => {
    const { page, errors, close } = await open();
    const { request, csv } = seedRequest(2);
    const out = (await page.evaluate(`(async (request, csv) => {
      const { Edgetune, NotFoundError } = await import("/lib/sdk.js");
      const client = new Edgetune({ baseURL: location.origin, maxRetries: 0 });
      // the CSV as text: the SDK sends it as a multipart part
      const result = await client.fineTunes.create({ ...request, data: { ...request.data, train: csv }, mode: "sync" });
      const job = await client.fineTunes.retrieve(result.id);
      const weights = await client.fineTunes.weights(result.id);
      let notFound = false;
      try { await client.fineTunes.retrieve("ft_0123456789abcdef0123456789abcdef"); } catch (e) { notFound = e instanceof NotFoundError; }
      return { status: job.status, bytes: weights.byteLength, notFound };
    })(${JSON.stringify(request)}, ${JSON.stringify(csv)})`)) as { status: string; bytes: number; notFound: boolean };
    expect(out).toMatchObject({ status: "succeeded", notFound: true });
    expect(out.bytes).toBeGreaterThan(500);
    expect(errors).toEqual([]);
    await close();
  });

  it.skipIf(!hasChromium)("the static assets: /lib/edgetune.js, its worker and both kernel builds are served as files, the API routes still run the Worker (needs /usr/bin/chromium)", async () => {
    for (const [path, type] of [
      ["/lib/edgetune.js", /javascript/],
      ["/lib/edgetune-worker.js", /javascript/],
      ["/lib/simd.wasm", /^application\/wasm/],
      ["/lib/relaxed-simd.wasm", /^application\/wasm/],
    ] as const) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-type"), path).toMatch(type);
      expect(res.headers.get("x-content-type-options"), path).toBe("nosniff");
      const body = new Uint8Array(await res.arrayBuffer());
      expect(body, path).toEqual(new Uint8Array(readFileSync(join(lib, path.slice("/lib/".length)))));
    }
    // the same build the Node engine runs
    expect(readFileSync(join(lib, "simd.wasm"))).toEqual(readFileSync(join(root, "build/wasm/simd.wasm")));
    expect(readFileSync(join(lib, "relaxed-simd.wasm"))).toEqual(readFileSync(join(root, "build/wasm/relaxed-simd.wasm")));
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/v1/fine-tunes`)).status).toBe(200);
    const page = await fetch(`${base}/`);
    expect(page.headers.get("content-security-policy")).toContain("'wasm-unsafe-eval'");
    expect((await fetch(`${base}/lib/missing.js`)).status).toBe(404);
  });

  it.skipIf(!hasChromium)("a page imports /lib/edgetune.js and trains the seed MLP: runtime browser, the loss falls, weights bit-identical to Node on the same kernel build, within parity across builds (needs /usr/bin/chromium)", async () => {
    const { page, requested, errors, close } = await open();
    const full = seedRequest(20);
    // <= 200 optimizer steps (900 rows / 32 = 29 a epoch) for the cross-build comparison: SPEC's parity bound
    const short = seedRequest(6);
    const out = (await page.evaluate(`(${IN_PAGE})(${JSON.stringify({ full, short })})`)) as {
      support: { simd: boolean; relaxedSimd: boolean; webgpu: boolean };
      epochs: number[];
      simd: FineTuneResult;
      auto: FineTuneResult;
      inWorker: FineTuneResult;
    };

    // (1) the forced simd build: the same build and variant as Node's default, so bit for bit
    expect(out.simd.status).toBe("succeeded");
    expect(out.simd.engine).toEqual({ kernel: "wasm-simd", threads: 1, runtime: "browser" });
    expect(out.epochs).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    const history = out.simd.metrics.history;
    expect(history.at(-1)!.train_loss).toBeLessThan(history[0]!.train_loss);
    expect(history.at(-1)!.val_loss!).toBeLessThan(history[0]!.val_loss!);
    const node = await trainInNode(full.request, full.csv);
    expect(node.engine).toEqual({ kernel: "wasm-simd", threads: 1, runtime: "node" });
    expect(out.simd.metrics.history).toEqual(node.metrics.history);
    expect(decodeBase64(out.simd.weights)).toEqual(decodeBase64(node.weights));
    // the Web Worker runs the same engine: the same bytes
    expect(out.inWorker.engine).toEqual({ kernel: "wasm-simd", threads: 1, runtime: "browser" });
    expect(out.inWorker.weights).toBe(out.simd.weights);

    // (2) the default: relaxed SIMD where the browser validates it (Chromium does), within parity of Node's simd build
    expect(out.support.simd).toBe(true);
    expect(out.auto.engine).toEqual({ kernel: out.support.relaxedSimd ? "wasm-relaxed-simd" : "wasm-simd", threads: 1, runtime: "browser" });
    expect(out.auto.metrics.steps).toBeLessThanOrEqual(200);
    const nodeShort = await trainInNode(short.request, short.csv);
    const worst = expectWithinParity(decodeBase64(out.auto.weights), decodeBase64(nodeShort.weights));
    console.log(`[e2e] browser ${out.auto.engine.kernel} vs node wasm-simd after ${out.auto.metrics.steps} steps: max |diff| ${worst.toExponential(2)}`);

    // nothing but the page (its own script, style and icon aside), the bundle, its worker and the kernels was fetched
    const paths = [...new Set(requested.map((u) => u.replace(base, "")))].filter((p) => !/^\/(playground\/|favicon\.)/.test(p)).sort();
    expect(paths).toEqual(["/", "/lib/edgetune-worker.js", "/lib/edgetune.js", "/lib/relaxed-simd.wasm", "/lib/simd.wasm"].filter((p) => out.support.relaxedSimd || p !== "/lib/relaxed-simd.wasm"));
    expect(errors).toEqual([]);
    await close();
  });

  it.skipIf(!hasChromium)("text rows with a tokenizer.json train in the page and in its worker as in Node: Tokenizers.js runs in the browser, fetching nothing (needs /usr/bin/chromium)", async () => {
    const { page, requested, errors, close } = await open();
    const tokenizer = JSON.parse(readFileSync(join(root, "test/fixtures/tokenizers/tiny-wordpiece.json"), "utf8")) as { model: { vocab: object } };
    const request = {
      model: {
        layers: [
          { type: "embedding", name: "emb", num_embeddings: Object.keys(tokenizer.model.vocab).length, embedding_dim: 8, padding_idx: 0 },
          { type: "pool", mode: "mean" },
          { type: "linear", name: "head", in_features: 8, out_features: 2 },
        ],
      },
      tokenizer,
      data: {
        train: { text: ["Good movie!", "a great, great film", "bad film.", "it was awful", "i love this movie", "i hate it"], label: [1, 1, 0, 0, 1, 0] },
        validation: { text: ["great movie", "awful film"], label: [1, 0] },
        tokenization: { truncation: true, max_length: 8 },
      },
      training: { epochs: 4, batch_size: 2, shuffle: false, loss: { type: "cross_entropy" }, optimizer: { type: "adam", lr: 0.01 } },
    } as TrainRequest;
    const before = requested.length;
    const out = (await page.evaluate(`(async (request) => {
      const lib = await import("/lib/edgetune.js");
      const inPage = await lib.train(request, { variant: "wasm-simd" });
      const inWorker = await lib.trainInWorker(request, { variant: "wasm-simd" });
      return { inPage, inWorker };
    })(${JSON.stringify(request)})`)) as { inPage: FineTuneResult; inWorker: FineTuneResult };
    const node = await createEngine(await loadNodeRuntime({ variant: "wasm-simd" })).train(request);
    expect(out.inPage.status).toBe("succeeded");
    expect(out.inPage.engine.runtime).toBe("browser");
    expect(out.inPage.metrics.history).toEqual(node.metrics.history);
    expect(decodeBase64(out.inPage.weights)).toEqual(decodeBase64(node.weights));
    expect(out.inWorker.weights).toBe(out.inPage.weights);
    // the page's own favicon may be asked for at any time; nothing else than /lib/ may be fetched
    expect(requested.slice(before).filter((u) => !u.startsWith(`${base}/lib/`) && !u.startsWith(`${base}/favicon.`))).toEqual([]);
    expect(errors).toEqual([]);
    await close();
  });

  /** What the playground keeps in window.__edgetune. */
  interface Hooks {
    status: string;
    final: boolean;
    where: string;
    jobId: string | null;
    epochsPlotted: number;
    points: { epoch: number; train: number; val?: number }[];
    lastJob: (Omit<FineTuneResult, "weights"> & { weights?: string }) | null;
    kernel: string | null;
    weightsUrl: string | null;
    weightsBytes: number;
    transport: string | null;
    error: string | null;
  }
  const hooks = (page: Page) => page.evaluate(() => (window as unknown as { __edgetune: Hooks }).__edgetune);

  /** Chooses "this device", presses Start and waits for a final status; returns the hooks and the requests made meanwhile. */
  async function runOnDevice(page: Page, requested: string[]) {
    await page.selectOption("#where", "device");
    expect(await page.isVisible("#placement")).toBe(false);
    const before = requested.length;
    await page.click("#start");
    await page.waitForSelector('#status[data-final="true"]', { timeout: 60_000 });
    return { h: await hooks(page), during: requested.slice(before) };
  }

  async function download(page: Page): Promise<Uint8Array> {
    await page.waitForSelector("#download:not([hidden])");
    const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
    expect(dl.suggestedFilename()).toMatch(/^ft_[0-9a-f]{32}\.safetensors$/);
    return new Uint8Array(readFileSync((await dl.path())!));
  }

  it.skipIf(!hasChromium)("the playground on this device (two moons): every epoch plotted from onProgress, the kernel shown, the weights from a Blob, no request to /v1/ (needs /usr/bin/chromium)", async () => {
    const { page, requested, errors, close } = await open();
    await page.selectOption("#demo", "moons");
    await page.fill("#epochs", "15");
    const { h, during } = await runOnDevice(page, requested);

    expect(h.error).toBeNull();
    expect(h.status).toBe("succeeded");
    expect(h.where).toBe("device");
    expect(h.transport).toBe("worker");
    expect(h.lastJob!.engine.runtime).toBe("browser");
    expect(h.kernel).toMatch(/^wasm-(relaxed-)?simd$/);
    expect(h.kernel).toBe(h.lastJob!.engine.kernel);
    const history = h.lastJob!.metrics.history;
    expect(history).toHaveLength(15);
    expect(h.epochsPlotted).toBe(15);
    expect(h.points.map((p) => p.epoch)).toEqual(history.map((e) => e.epoch));
    expect(h.points.map((p) => p.train)).toEqual(history.map((e) => e.train_loss));
    expect(h.points.map((p) => p.val)).toEqual(history.map((e) => e.val_loss));
    expect(await page.locator("#history tr").count()).toBe(15);
    expect(h.points.at(-1)!.train).toBeLessThan(h.points[0]!.train * 0.8);
    expect(h.points.at(-1)!.val!).toBeLessThan(h.points[0]!.val!);
    const summary = await page.textContent("#summary");
    expect(summary).toContain("this device (browser)");
    expect(summary).toContain(`${h.kernel} on browser`);
    expect(await page.textContent("#status")).toContain(`on this device (${h.kernel})`);

    const bytes = await download(page);
    expect(h.weightsUrl).toMatch(/^blob:/);
    expect(bytes.length).toBe(h.weightsBytes);
    const tensors = parseSafetensors(bytes).tensors;
    expect([...tensors.keys()]).toEqual(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]);
    expect(tensors.get("fc3.weight")!.shape).toEqual([2, 32]);

    // private data never left: during the run the page fetched only the library (never /v1/)
    expect(during.filter((u) => u.includes("/v1/"))).toEqual([]);
    expect(during.filter((u) => !u.startsWith(`${base}/lib/`) && !u.startsWith("blob:"))).toEqual([]);
    expect(errors).toEqual([]);
    await close();
  });

  it.skipIf(!hasChromium)("the playground on this device with uploads: the seed MLP's CSV, weights and request JSON are read in the page and train as in Node (needs /usr/bin/chromium)", async () => {
    const { page, requested, errors, close } = await open();
    await page.selectOption("#demo", "upload");
    await page.setInputFiles("#csv", join(seed, "train.csv"));
    await page.setInputFiles("#model-file", join(seed, "request.json"));
    await page.setInputFiles("#weights", join(seed, "weights.safetensors"));
    await page.waitForFunction(() => document.getElementById("data-summary")!.textContent!.includes("rows"));
    // 6 epochs: 174 steps, within the parity bound across kernel builds
    await page.fill("#epochs", "6");
    const { h, during } = await runOnDevice(page, requested);

    expect(h.error).toBeNull();
    expect(h.status).toBe("succeeded");
    expect(h.epochsPlotted).toBe(6);
    expect(h.points.at(-1)!.train).toBeLessThan(h.points[0]!.train);
    const tuned = await download(page);
    // the same request in Node: the page's (its "Request sent" box) with the uploaded weights and CSV
    const sent = JSON.parse((await page.textContent("#request-preview"))!) as TrainRequest;
    expect(sent.training).toMatchObject({ epochs: 6, batch_size: 32, loss: { type: "mse" }, optimizer: { type: "adam", lr: 0.001 } });
    const { request, csv } = seedRequest(6);
    const node = await trainInNode({ ...request, model: sent.model, training: sent.training, data: sent.data }, csv);
    expect(h.lastJob!.metrics.history.map((e) => e.epoch)).toEqual(node.metrics.history.map((e) => e.epoch));
    const worst = expectWithinParity(tuned, decodeBase64(node.weights));
    console.log(`[e2e] playground on-device upload (${h.kernel}) vs node wasm-simd: max |diff| ${worst.toExponential(2)}`);
    expect(during.filter((u) => u.includes("/v1/"))).toEqual([]);
    expect(errors).toEqual([]);
    await close();
  });

  it.skipIf(!hasChromium)('kernel "webgpu" on SwiftShader WebGPU in Chromium, in the page and in the worker, matches Node\'s WASM run within the parity tolerance; the playground runs it on this device (needs /usr/bin/chromium)', async () => {
    const gpuBrowser = await launchChromium({ webgpu: true });
    try {
      const page = await (await gpuBrowser.newContext({ acceptDownloads: true })).newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      await page.goto(`${base}/`);
      const short = seedRequest(6);
      const out = (await page.evaluate(`(${IN_PAGE_WEBGPU})(${JSON.stringify({ short })})`)) as {
        support: { webgpu: boolean };
        gpu: boolean;
        page?: FineTuneResult;
        inWorker?: FineTuneResult;
      };
      expect(out.support.webgpu).toBe(true);
      expect(out.gpu).toBe(true);
      const node = await trainInNode(short.request, short.csv);
      for (const result of [out.page!, out.inWorker!]) {
        expect(result.status).toBe("succeeded");
        expect(result.engine).toEqual({ kernel: "webgpu", threads: 1, runtime: "browser" });
        const worst = expectWithinParity(decodeBase64(result.weights), decodeBase64(node.weights));
        console.log(`[e2e] browser webgpu (SwiftShader) vs node wasm-simd after ${result.metrics.steps} steps: max |diff| ${worst.toExponential(2)}`);
      }

      // the playground: "this device" with the WebGPU kernels
      const requested: string[] = [];
      page.on("request", (r) => requested.push(r.url()));
      await page.goto(`${base}/`);
      await page.selectOption("#demo", "moons");
      await page.fill("#epochs", "5");
      await page.selectOption("#where", "device");
      await page.selectOption("#device-kernel", "webgpu");
      const { h, during } = await runOnDevice(page, requested);
      expect(h.error).toBeNull();
      expect(h.status).toBe("succeeded");
      expect(h.kernel).toBe("webgpu");
      expect(h.epochsPlotted).toBe(5);
      expect(h.points.map((p) => p.train)).toEqual(h.lastJob!.metrics.history.map((e) => e.train_loss));
      expect(await page.textContent("#summary")).toContain("webgpu on browser");
      expect([...parseSafetensors(await download(page)).tensors.keys()]).toEqual(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]);
      expect(during.filter((u) => u.includes("/v1/"))).toEqual([]);
      expect(errors).toEqual([]);
    } finally {
      await gpuBrowser.close();
    }
  });
});
