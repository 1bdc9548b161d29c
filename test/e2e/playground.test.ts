/**
 * The playground page (GET /) in a real headless Chromium, driven with playwright-core, against
 * a real `wrangler dev`: a fine-tune started from the page runs as an async edge job in the
 * Worker's queue consumer, the chart gets every epoch from SSE, and the downloaded weights are
 * valid safetensors. Needs Debian's chromium at /usr/bin/chromium (.ci/run installs it).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSafetensors, readTensorF32 } from "../../src/formats/safetensors.js";
import { freePort, root, startWranglerDev, stop, type Proc, CHROMIUM, launchChromium, openRecordedPage } from "./processes.js";

const hasChromium = existsSync(CHROMIUM);
const API_KEY = "sk-playground-test";

/** What the page keeps in window.__edgetune. */
interface Hooks {
  status: string;
  final: boolean;
  jobId: string | null;
  epochsPlotted: number;
  points: { epoch: number; train: number; val?: number }[];
  lastJob: { id: string; status: string; metrics: { history: { epoch: number; train_loss: number; val_loss?: number }[] } | null } | null;
  weightsUrl: string | null;
  weightsBytes: number;
  transport: "eventsource" | "fetch" | null;
  error: string | null;
}

const work = mkdtempSync(join(tmpdir(), "edgetune-playground-"));
const persist = join(work, "state");
// SSE polls every 50 ms; RATE_LIMIT off so that the page's requests are never throttled
const VARS = { SSE_POLL_MS: "50", RATE_LIMIT_PER_MINUTE: "0" };

describe("the playground page in headless Chromium", () => {
  let port = 0;
  let base = "";
  let dev: Proc | undefined;
  let browser: Browser | undefined;

  beforeAll(async () => {
    if (!hasChromium) return;
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    [dev, browser] = await Promise.all([
      startWranglerDev(port, persist, VARS),
      launchChromium(),
    ]);
  });
  afterAll(async () => {
    await browser?.close();
    await stop(dev);
    rmSync(work, { recursive: true, force: true });
  });

  /** A fresh page on the playground that records every URL it asks for. */
  async function openPlayground() {
    const opened = await openRecordedPage(browser!, `${base}/`);
    expect(opened.response!.headers()["content-type"]).toMatch(/text\/html/);
    return opened;
  }

  const hooks = (page: Page) => page.evaluate(() => (window as unknown as { __edgetune: Hooks }).__edgetune);

  /** Presses Start and waits for the page to show a final status. */
  async function runToEnd(page: Page): Promise<Hooks> {
    await page.click("#start");
    await page.waitForSelector('#status[data-final="true"]', { timeout: 60_000 });
    return hooks(page);
  }

  /** The weights through the page's own download link: a real browser download. */
  async function download(page: Page): Promise<Uint8Array> {
    await page.waitForSelector("#download:not([hidden])");
    const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
    expect(dl.suggestedFilename()).toMatch(/^ft_[0-9a-f]{32}\.safetensors$/);
    return new Uint8Array(readFileSync((await dl.path())!));
  }

  const api = async (path: string, key?: string) => {
    const res = await fetch(`${base}${path}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
    expect(res.status, path).toBe(200);
    return res;
  };

  it.skipIf(!hasChromium)("two moons: the chart gets every epoch from SSE, the loss falls, the weights download as safetensors (needs /usr/bin/chromium)", async () => {
    const { page, requested, errors, close } = await openPlayground();
    await page.selectOption("#demo", "moons");
    await page.fill("#epochs", "15");
    const h = await runToEnd(page);

    expect(h.error).toBeNull();
    expect(h.status).toBe("succeeded");
    expect(h.transport).toBe("eventsource");
    const job = (await (await api(`/v1/fine-tunes/${h.jobId}`)).json()) as NonNullable<Hooks["lastJob"]> & { plan: { placement: string }; mode: string };
    expect(job).toMatchObject({ status: "succeeded", mode: "async", plan: { placement: "edge" } });
    const history = job.metrics!.history;
    expect(history).toHaveLength(15);
    // the chart received every epoch, with the values the API reports
    expect(h.epochsPlotted).toBe(15);
    expect(h.points.map((p) => p.epoch)).toEqual(history.map((e) => e.epoch));
    expect(h.points.map((p) => p.train)).toEqual(history.map((e) => e.train_loss));
    expect(h.points.map((p) => p.val)).toEqual(history.map((e) => e.val_loss));
    expect(await page.locator("#history tr").count()).toBe(15);
    // the loss fell
    expect(h.points.at(-1)!.train).toBeLessThan(h.points[0]!.train * 0.8);
    expect(h.points.at(-1)!.val!).toBeLessThan(h.points[0]!.val!);
    // something was drawn: both series' colours are on the canvas
    const colours = await page.evaluate(() => {
      const cv = document.getElementById("chart") as HTMLCanvasElement;
      const px = cv.getContext("2d")!.getImageData(0, 0, cv.width, cv.height).data;
      let blue = 0;
      let orange = 0;
      for (let i = 0; i < px.length; i += 4) {
        if (px[i]! < 60 && px[i + 1]! > 90 && px[i + 1]! < 140 && px[i + 2]! > 200) blue++;
        if (px[i]! > 200 && px[i + 1]! > 60 && px[i + 1]! < 120 && px[i + 2]! < 40) orange++;
      }
      return { blue, orange };
    });
    expect(colours.blue).toBeGreaterThan(100);
    expect(colours.orange).toBeGreaterThan(100);

    const bytes = await download(page);
    const tensors = parseSafetensors(bytes).tensors;
    expect([...tensors.keys()]).toEqual(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]);
    expect(tensors.get("fc3.weight")!.shape).toEqual([2, 32]);
    expect(bytes).toEqual(new Uint8Array(await (await api(`/v1/fine-tunes/${h.jobId}/weights`)).arrayBuffer()));
    expect(h.weightsUrl).toBe(`${base}/v1/fine-tunes/${h.jobId}/weights`);
    expect(await page.textContent("#summary")).toContain("succeeded");

    // self-contained: every request went to the page's own origin
    expect(requested.filter((u) => !u.startsWith(`${base}/`) && !u.startsWith("blob:"))).toEqual([]);
    expect(errors).toEqual([]);
    await close();
  });

  it.skipIf(!hasChromium)("upload: the seed MLP's CSV, weights and request JSON go up as multipart and train from those weights (needs /usr/bin/chromium)", async () => {
    const { page, errors, close } = await openPlayground();
    const seed = join(root, "examples/seed-mlp");
    await page.selectOption("#demo", "upload");
    await page.setInputFiles("#csv", join(seed, "train.csv"));
    await page.setInputFiles("#model-file", join(seed, "request.json"));
    await page.setInputFiles("#weights", join(seed, "weights.safetensors"));
    await page.waitForFunction(() => document.getElementById("data-summary")!.textContent!.includes("rows"));
    expect(await page.textContent("#data-summary")).toContain("1000 rows, 10 features");
    // request.json set the training options; fewer epochs keep the test short
    expect(await page.inputValue("#loss")).toBe("mse");
    expect(await page.inputValue("#batch")).toBe("32");
    await page.fill("#epochs", "8");
    const h = await runToEnd(page);

    expect(h.error).toBeNull();
    expect(h.status).toBe("succeeded");
    const history = h.lastJob!.metrics!.history;
    expect(history).toHaveLength(8);
    expect(h.epochsPlotted).toBe(8);
    expect(h.points.at(-1)!.train).toBeLessThan(h.points[0]!.train);
    const tuned = parseSafetensors(await download(page));
    expect([...tuned.tensors.keys()]).toEqual(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
    // it started from the uploaded weights: 8 epochs of Adam at lr 1e-3 move them a little, a fresh init would be far off
    const before = readTensorF32(parseSafetensors(new Uint8Array(readFileSync(join(seed, "weights.safetensors")))), "fc1.weight");
    const after = readTensorF32(tuned, "fc1.weight");
    const meanShift = before.reduce((s, v, i) => s + Math.abs(v - after[i]!), 0) / before.length;
    console.log(`[e2e] playground upload: mean |change| of fc1.weight ${meanShift.toFixed(4)}`);
    expect(meanShift).toBeGreaterThan(0);
    expect(meanShift).toBeLessThan(0.05);
    expect(errors).toEqual([]);
    await close();
  });

  it.skipIf(!hasChromium)("upload: the digits CNN (model.input.shape, conv2d, max_pool2d) trains from the page from its PyTorch weights (needs /usr/bin/chromium)", async () => {
    const { page, errors, close } = await openPlayground();
    const digits = join(root, "examples/digits-cnn");
    await page.selectOption("#demo", "upload");
    await page.setInputFiles("#csv", join(digits, "train.csv"));
    await page.setInputFiles("#model-file", join(digits, "request.json"));
    await page.setInputFiles("#weights", join(digits, "weights.safetensors"));
    await page.waitForFunction(() => document.getElementById("data-summary")!.textContent!.includes("rows"));
    expect(await page.textContent("#data-summary")).toContain("400 rows, 64 features");
    const model = JSON.parse(await page.inputValue("#model")) as { input: { shape: number[] }; layers: { type: string }[] };
    expect(model.input.shape).toEqual([1, 8, 8]);
    expect(model.layers.map((l) => l.type)).toContain("conv2d");
    await page.fill("#epochs", "3");
    const h = await runToEnd(page);

    expect(h.error).toBeNull();
    expect(h.status).toBe("succeeded");
    expect(h.lastJob!.metrics!.history).toHaveLength(3);
    expect(h.points.at(-1)!.train).toBeLessThan(h.points[0]!.train);
    const tuned = parseSafetensors(await download(page));
    expect([...tuned.tensors.keys()]).toEqual(["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "head.weight", "head.bias"]);
    expect(tuned.tensors.get("conv2.weight")!.shape).toEqual([16, 8, 3, 3]);
    expect(errors).toEqual([]);
    await close();
  });

  it.skipIf(!hasChromium)("with API keys configured: 401 shown until a key is typed, then the events stream over fetch with the key (needs /usr/bin/chromium)", async () => {
    await stop(dev);
    dev = await startWranglerDev(port, persist, { ...VARS, EDGETUNE_API_KEYS: API_KEY });
    const { page, errors, close } = await openPlayground();
    await page.selectOption("#demo", "xor");
    await page.fill("#epochs", "40");

    const refused = await runToEnd(page);
    expect(refused.status).toBe("error");
    expect(refused.error).toMatch(/401/);
    expect(await page.textContent("#status")).toContain("API key");

    await page.fill("#api-key", API_KEY);
    const h = await runToEnd(page);
    expect(h.error).toBeNull();
    expect(h.status).toBe("succeeded");
    expect(h.transport).toBe("fetch");
    const job = (await (await api(`/v1/fine-tunes/${h.jobId}`, API_KEY)).json()) as NonNullable<Hooks["lastJob"]>;
    expect(h.epochsPlotted).toBe(40);
    expect(job.metrics!.history).toHaveLength(40);
    expect(h.points.at(-1)!.train).toBeLessThan(h.points[0]!.train);
    const tensors = parseSafetensors(await download(page)).tensors;
    expect([...tensors.keys()]).toEqual(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
    expect(errors).toEqual([]);
    await close();
  });
});
