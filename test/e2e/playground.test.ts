/**
 * The playground page (GET /) in a real headless Chromium, driven with playwright-core, against
 * a real `wrangler dev`: a fine-tune started from the page runs as an async edge job in the
 * Worker's queue consumer, the chart gets every epoch from SSE (the SDK's event stream), and the
 * downloaded weights are valid safetensors. The layout at 1280 and 390 px wide (no horizontal
 * overflow, no console error, no 404, the favicon), the form's reset between loads, the
 * restore-best toggle and the explanations panel are checked too; screenshots go to
 * $TMPDIR/edgetune-playground-screenshots (printed). Needs Debian's chromium at /usr/bin/chromium
 * (.ci/run installs it).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
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
  transport: "fetch" | "worker" | "main-thread" | null;
  error: string | null;
  explanations: boolean;
}

const work = mkdtempSync(join(tmpdir(), "edgetune-playground-"));
const persist = join(work, "state");
// SSE polls every 50 ms; RATE_LIMIT off so that the page's requests are never throttled
const VARS = { SSE_POLL_MS: "50", RATE_LIMIT_PER_MINUTE: "0" };
const SCREENSHOTS = join(tmpdir(), "edgetune-playground-screenshots");

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

  /** A fresh page on the playground that records every URL it asks for, its errors and failed responses. */
  async function openPlayground(viewport?: { width: number; height: number }) {
    const opened = await openRecordedPage(browser!, `${base}/`, viewport ? { viewport } : {});
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

  it.skipIf(!hasChromium)("a private run (privacy in the other request fields): the history table shows ε per epoch, the summary the privacy spent", async () => {
    const { page, close } = await openPlayground();
    await page.selectOption("#demo", "moons");
    await page.fill("#epochs", "4");
    await page.click("summary:has-text('More options')");
    await page.fill("#request-extra", JSON.stringify({ privacy: { type: "dp-sgd", max_grad_norm: 1, noise_multiplier: 1.1 } }));
    const h = await runToEnd(page);
    expect(h.error).toBeNull();
    expect(h.status).toBe("succeeded");
    const job = (await (await api(`/v1/fine-tunes/${h.jobId}`)).json()) as { metrics: { history: { epsilon: number }[]; privacy: { epsilon: number } } };
    const shown = await page.locator("#history tr td:nth-child(6)").allTextContents();
    expect(shown).toEqual(job.metrics.history.map((e) => e.epsilon.toFixed(3)));
    expect(Number(shown[3])).toBeGreaterThan(Number(shown[0]));
    expect(await page.locator("#summary").textContent()).toContain(`ε = ${job.metrics.privacy.epsilon.toFixed(3)}`);
    await close();
  });

  it.skipIf(!hasChromium)("two moons: the chart gets every epoch from SSE, the loss falls, the weights download as safetensors (needs /usr/bin/chromium)", async () => {
    const { page, requested, errors, close } = await openPlayground();
    await page.selectOption("#demo", "moons");
    await page.fill("#epochs", "15");
    const h = await runToEnd(page);

    expect(h.error).toBeNull();
    expect(h.status).toBe("succeeded");
    expect(h.transport).toBe("fetch");
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

  it.skipIf(!hasChromium)('lr and batch size "auto" from the form: the range test runs, the summary names the rate and the page plots the curve (needs /usr/bin/chromium)', async () => {
    const { page, errors, close } = await openPlayground();
    const dir = join(root, "examples/digits-mlp-auto-lr");
    await page.selectOption("#demo", "upload");
    await page.setInputFiles("#csv", join(dir, "train.csv"));
    await page.setInputFiles("#model-file", join(dir, "request.json"));
    await page.waitForFunction(() => document.getElementById("data-summary")!.textContent!.includes("rows"));
    expect(await page.inputValue("#lr")).toBe("auto");
    expect(await page.inputValue("#loss")).toBe("auto");
    await page.fill("#batch", "auto");
    await page.fill("#epochs", "2");
    const h = await runToEnd(page);
    expect(h.error).toBeNull();
    expect(h.status).toBe("succeeded");
    const job = h.lastJob as unknown as { metrics: { lr_finder: { lr: number; method: string } }; plan: { batch_size: number; loss: string } };
    expect(job.metrics.lr_finder.method).toBe("steep");
    expect(job.plan).toMatchObject({ batch_size: 256, loss: "cross_entropy" });
    expect(await page.textContent("#summary")).toContain("(auto: range test, steep, 100 steps)");
    expect(await page.isVisible("#lr-finder")).toBe(true);
    // the curve is drawn: the canvas is not blank
    const inked = await page.evaluate(() => {
      const c = document.getElementById("lr-finder") as HTMLCanvasElement;
      const d = c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i]! < 128 && d[i + 2]! > 150) n++; // the blue series
      return n;
    });
    expect(inked).toBeGreaterThan(100);
    expect(errors).toEqual([]);
    await close();
  });

  /** Every field of the form, as the inputs hold it. */
  const formValues = (page: Page) =>
    page.evaluate(() => {
      const ids = ["loss", "loss-params", "optimizer", "lr", "optimizer-params", "schedule", "schedule-params", "batch", "epochs", "val-split", "seed", "patience", "monitor", "training-extra", "request-extra", "target"];
      const out: Record<string, string | boolean> = {};
      for (const id of ids) out[id] = (document.getElementById(id) as HTMLInputElement).value;
      out["restore-best"] = (document.getElementById("restore-best") as HTMLInputElement).checked;
      return out;
    });

  it.skipIf(!hasChromium)("the form resets on every load: request.json sets every field from the file or the defaults, not the demo's cosine schedule or the user's edits (needs /usr/bin/chromium)", async () => {
    const { page, errors, consoleErrors, failed, close } = await openPlayground();
    const seed = join(root, "examples/seed-mlp");
    expect(await formValues(page)).toMatchObject({ schedule: "cosine", lr: "0.01", epochs: "30", loss: "cross_entropy" }); // the moons demo
    // the user edits fields the file does not mention
    await page.fill("#seed", "5");
    await page.check("#restore-best");
    await page.fill("#patience", "4");
    await page.locator("summary", { hasText: "More options" }).click();
    await page.fill("#optimizer-params", '{"weight_decay": 0.1}');
    await page.selectOption("#demo", "upload");
    await page.setInputFiles("#csv", join(seed, "train.csv"));
    await page.setInputFiles("#model-file", join(seed, "request.json"));
    await page.waitForFunction(() => document.getElementById("data-summary")!.textContent!.includes("1000 rows"));
    await page.waitForFunction(() => (document.getElementById("model") as HTMLTextAreaElement).value.includes('"fc2"'));
    const fromFile = {
      loss: "mse", "loss-params": "{}", optimizer: "adam", lr: "0.001", "optimizer-params": "{}", schedule: "constant", "schedule-params": "{}",
      batch: "32", epochs: "20", "val-split": "0.1", seed: "0", patience: "", monitor: "auto", "training-extra": "{}", "request-extra": "{}", target: "y", "restore-best": false,
    };
    expect(await formValues(page)).toEqual(fromFile);
    // Start with an empty field: the form names it and focuses it, and nothing is sent
    await page.fill("#epochs", "");
    await page.click("#start");
    await page.waitForSelector('#status[data-final="true"]');
    expect(await page.textContent("#status")).toContain("Epochs must be a number");
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("epochs");
    // back to a demo: the demo's values; back to the upload: the file's again
    await page.selectOption("#demo", "moons");
    expect(await formValues(page)).toMatchObject({ schedule: "cosine", "schedule-params": '{"eta_min":0}', lr: "0.01", seed: "0", "restore-best": false, "val-split": "0.2" });
    await page.selectOption("#demo", "upload");
    expect(await formValues(page)).toEqual(fromFile);
    // another request.json replaces the first one's values entirely
    await page.setInputFiles("#model-file", join(root, "examples/digits-cnn/request.json"));
    await page.waitForFunction(() => (document.getElementById("model") as HTMLTextAreaElement).value.includes("conv2d"));
    expect(await formValues(page)).toEqual({ ...fromFile, loss: "cross_entropy", lr: "0.003", epochs: "10", "val-split": "0" });
    expect(errors).toEqual([]);
    expect(consoleErrors).toEqual([]);
    expect(failed).toEqual([]);
    await close();
  });

  /** The explanations a result of issue 18 carries, for the moons rows (2 features) or as tokens. */
  const syntheticExplanations = (tokens: boolean) => ({
    method: "integrated_gradients",
    target: 1,
    feature_names: tokens ? ["[CLS]", "a", "great", "film", "[SEP]"] : ["x0", "x1"],
    attributions: tokens
      ? [[0.01, 0.05, 0.9, 0.2, -0.02], [0.0, -0.3, -0.8, 0.1, 0.02]]
      : Array.from({ length: 6 }, (_, r) => [((r % 3) - 1) * 0.4, 0.8 - r * 0.25]),
    feature_importance: tokens ? [0.005, 0.175, 0.85, 0.15, 0.02] : [0.27, 0.51],
    convergence_delta: [0.001, -0.002],
    ...(tokens ? { tokens: [["[CLS]", "a", "great", "film", "[SEP]"], ["[CLS]", "not", "good", "at", "[SEP]"]] } : {}),
  });

  /**
   * Serves the job's event stream as the Worker sends it, with `explanations` added to the final
   * `done` event's job (the server does not compute them yet: issue 18).
   */
  async function injectExplanations(page: Page, explanations: object) {
    await page.route(/\/v1\/fine-tunes\/ft_[0-9a-f]+\/events/, async (route) => {
      const response = await route.fetch(); // the stream ends after the final event
      const body = (await response.text()).replace(/event: done\ndata: (.*)\n/, (_, data: string) => `event: done\ndata: ${JSON.stringify({ ...JSON.parse(data), explanations })}\n`);
      expect(body).toContain('"explanations"');
      await route.fulfill({ response, body });
    });
  }

  for (const [width, height] of [[390, 844], [1280, 900]] as const) {
    it.skipIf(!hasChromium)(`at ${width} px: no horizontal overflow, no console error or 404, the favicon, restore-best reaching the request, the chart on a log axis, the explanations panel; screenshots (needs /usr/bin/chromium)`, async () => {
      mkdirSync(SCREENSHOTS, { recursive: true });
      const { page, errors, consoleErrors, failed, requested, response, close } = await openPlayground({ width, height });
      const overflow = () => page.evaluate(() => ({ scroll: document.scrollingElement!.scrollWidth, inner: window.innerWidth }));
      /** The whole page, and the same in parts of 1000 px (a tall page scaled to fit a screen is unreadable). */
      const shot = async (name: string) => {
        const path = join(SCREENSHOTS, `${width}-${name}.png`);
        await page.screenshot({ path, fullPage: true });
        const total = await page.evaluate(() => document.scrollingElement!.scrollHeight);
        for (let y = 0, part = 1; y < total; y += 1000, part++) {
          await page.screenshot({ path: join(SCREENSHOTS, `${width}-${name}-part${part}.png`), fullPage: true, clip: { x: 0, y, width, height: Math.min(1000, total - y) } });
        }
        console.log(`[e2e] playground screenshot: ${path} (and ${width}-${name}-part*.png)`);
      };
      // the page's CSP: its own origin only, no inline script or style
      const csp = response!.headers()["content-security-policy"]!;
      expect(csp).toContain("script-src 'self' 'wasm-unsafe-eval'");
      expect(csp).not.toContain("unsafe-inline");
      // the favicon: the SVG the page links, and /favicon.ico for browsers that ask for it anyway
      expect(await page.getAttribute('link[rel="icon"]', "href")).toBe("/favicon.svg");
      for (const [path, type] of [["/favicon.svg", /^image\/svg\+xml/], ["/favicon.ico", /^image\/(x-icon|vnd\.microsoft\.icon)/]] as const) {
        const res = await fetch(`${base}${path}`);
        expect(res.status, path).toBe(200);
        expect(res.headers.get("content-type"), path).toMatch(type);
        const bytes = new Uint8Array(await res.arrayBuffer());
        expect(bytes, path).toEqual(new Uint8Array(readFileSync(join(root, "build/public", path.slice(1)))));
      }
      const ico = new Uint8Array(readFileSync(join(root, "build/public/favicon.ico")));
      expect([...ico.subarray(0, 6)]).toEqual([0, 0, 1, 0, 1, 0]); // an ICO with one image
      let o = await overflow();
      expect(o.scroll).toBeLessThanOrEqual(o.inner);
      await shot("empty");

      // two moons, 12 epochs, keeping the best epoch's weights
      await injectExplanations(page, syntheticExplanations(width >= 1000));
      await page.selectOption("#demo", "moons");
      await page.fill("#epochs", "12");
      await page.check("#restore-best");
      const posted = page.waitForRequest((r) => r.method() === "POST" && r.url() === `${base}/v1/fine-tunes`);
      const h = await runToEnd(page);
      const sent = (await posted).postDataJSON() as { training: { early_stopping?: unknown; schedule: unknown; epochs: number } };
      expect(sent.training.early_stopping).toEqual({ monitor: "val_loss", patience: 12, restore_best_weights: true });
      expect(sent.training.schedule).toEqual({ type: "cosine", eta_min: 0 });
      expect(h.error).toBeNull();
      expect(h.status).toBe("succeeded");
      expect(h.epochsPlotted).toBe(12);
      const job = (await (await api(`/v1/fine-tunes/${h.jobId}`)).json()) as { metrics: { best_epoch: number; history: unknown[] } };
      expect(job.metrics.history).toHaveLength(12); // patience = epochs: it never stops early
      expect(await page.textContent("#summary")).toContain(`epoch ${job.metrics.best_epoch} (the best, restored)`);

      // the explanations panel
      expect(h.explanations).toBe(true);
      expect(await page.isVisible("#explanations")).toBe(true);
      const bars = await page.$$eval("#explanations .bar-row", (rows) => rows.map((r) => [r.querySelector(".bar-name")!.textContent, (r.querySelector(".bar") as HTMLElement).style.width]));
      if (width >= 1000) {
        expect(bars[0]).toEqual(["great", "100%"]);
        expect(await page.locator("#explanations .token-row").count()).toBe(2);
        expect(await page.locator("#explanations .token").count()).toBe(10);
        expect(await page.getAttribute("#explanations .token-row:nth-child(2) .token:nth-child(3)", "title")).toBe("good: -0.8");
      } else {
        expect(bars.map(([name]) => name)).toEqual(["x1", "x0"]);
        expect(bars.map(([, w]) => Number.parseFloat(w!))).toEqual([100, expect.closeTo((0.27 / 0.51) * 100, 3)]);
        expect(await page.locator("#explanations table.heat tbody tr").count()).toBe(6);
        expect(await page.locator("#explanations table.heat thead th").allTextContents()).toEqual(["row", "x0", "x1"]);
      }

      // the chart on a log axis
      await page.check("#logy");
      const chart = page.locator("#chart");
      await chart.scrollIntoViewIfNeeded();
      await chart.screenshot({ path: join(SCREENSHOTS, `${width}-chart-log.png`) });
      console.log(`[e2e] playground screenshot: ${join(SCREENSHOTS, `${width}-chart-log.png`)}`);
      o = await overflow();
      expect(o.scroll).toBeLessThanOrEqual(o.inner);
      await page.locator("summary", { hasText: "More options" }).click();
      await page.locator("summary", { hasText: "Request sent" }).click();
      o = await overflow();
      expect(o.scroll).toBeLessThanOrEqual(o.inner);
      await shot("after-run");

      expect(requested.filter((u) => !u.startsWith(`${base}/`) && !u.startsWith("blob:"))).toEqual([]);
      expect(errors).toEqual([]);
      expect(consoleErrors).toEqual([]);
      expect(failed).toEqual([]);
      await close();
    });
  }

  it.skipIf(!hasChromium)("with API keys configured: 401 shown until a key is typed, then the events stream over fetch with the key (needs /usr/bin/chromium)", async () => {
    await stop(dev);
    dev = await startWranglerDev(port, persist, { ...VARS, EDGETUNE_API_KEYS: API_KEY });
    const { page, errors, failed, close } = await openPlayground();
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
    expect(failed).toEqual([`401 POST ${base}/v1/fine-tunes`]); // the create before the key was typed, not retried
    await close();
  });
});
