/** Real processes for end-to-end tests: wrangler dev and GPU nodes, on free ports, killed afterwards. */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, expect } from "vitest";
import { classificationData, lcg } from "../helpers.js";

export const root = fileURLToPath(new URL("../..", import.meta.url));

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

/** A child process with its combined output kept for failure messages. */
export interface Proc {
  child: ChildProcess;
  output: () => string;
}

function start(args: string[], env: Record<string, string> = {}, options: { group?: boolean } = {}): Proc {
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    // its own process group, so that killGroup reaches workerd (wrangler's child) as well
    detached: options.group === true,
  });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  return { child, output: () => output };
}

/**
 * Starts `wrangler dev` (state persisted under `persist`) and resolves once /healthz answers.
 * It runs as local development (EDGETUNE_DEV=true, as `npm run dev` does) unless `production`:
 * then it has only wrangler.toml's vars and `vars`, as a deployed Worker would.
 */
export async function startWranglerDev(
  port: number,
  persist: string,
  vars: Record<string, string> = {},
  options: { production?: boolean; /** its own process group, for killGroup */ group?: boolean } = {},
): Promise<Proc> {
  const all = options.production ? vars : { EDGETUNE_DEV: "true", ...vars };
  const varArgs = Object.entries(all).flatMap(([k, v]) => ["--var", `${k}:${v}`]);
  const proc = start([join(root, "node_modules/wrangler/bin/wrangler.js"), "dev", "--port", String(port), "--ip", "127.0.0.1", "--persist-to", persist, ...varArgs], {}, { group: options.group === true });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (proc.child.exitCode !== null) throw new Error(`wrangler dev exited early:\n${proc.output()}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return proc;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  proc.child.kill("SIGKILL");
  throw new Error(`wrangler dev did not become ready:\n${proc.output()}`);
}

/** Starts a GPU node process (dist/src/node/gpu-node-cli.js) against the edge at `port`. */
export function startGpuNode(port: number, nodeId: string, env: Record<string, string> = {}): Proc {
  return start([join(root, "dist/src/node/gpu-node-cli.js")], {
    EDGETUNE_URL: `http://127.0.0.1:${port}`,
    EDGETUNE_NODE_ID: nodeId,
    EDGETUNE_POLL_MS: "100",
    EDGETUNE_CLAIM_WAIT_MS: "2000",
    ...env,
  });
}

export async function stop(proc: Proc | undefined, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (!proc || proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  const exited = new Promise((r) => proc.child.once("exit", r));
  proc.child.kill(signal);
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill("SIGKILL");
}

/**
 * Sends `signal` to the whole process group of a process started with `group: true` (wrangler
 * dev and the workerd it runs: a SIGKILL of wrangler alone would leave workerd serving), and
 * waits until the leader has exited.
 */
export async function killGroup(proc: Proc, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  const exited = new Promise((r) => proc.child.once("exit", r));
  process.kill(-proc.child.pid!, signal);
  await exited;
}

/**
 * `send()`, sent once more if wrangler dev's own proxy answered it with its "Your worker restarted
 * mid-request" 503 (Retry-After: 0). The proxy answers so when its fetch to the Worker fails, and
 * retries only GETs itself (wrangler's templates/startDevWorker/ProxyWorker.ts); under load that
 * has happened around 16 MiB bodies that the Worker answers 413 without reading them to the end.
 * The request did not reach the Worker's code, so one retry is what Retry-After asks for. For
 * tests of what follows an oversized body only: every other request is taken as it comes.
 */
export async function pastWranglerProxy503(send: () => Promise<Response>): Promise<Response> {
  const res = await send();
  if (res.status !== 503 || !/Your worker restarted mid-request/.test(await res.clone().text())) return res;
  return send();
}

/** Polls until `check` returns a value (not undefined), or fails after `ms`. */
export async function eventually<T>(what: string, ms: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Debian's Chromium, installed by .ci/run; the browser tests skip (with the reason in their names) without it. */
export const CHROMIUM = "/usr/bin/chromium";

/** As root no sandbox; the rest keeps Chromium from calling out of this closed network. */
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

/** WebGPU on SwiftShader in headless Chromium (REFERENCE: "WebGPU without a GPU"). */
export const SWIFTSHADER_WEBGPU = [
  "--enable-unsafe-webgpu",
  "--enable-unsafe-swiftshader",
  "--use-webgpu-adapter=swiftshader",
  "--enable-features=Vulkan",
  "--use-angle=swiftshader",
];

/**
 * Launches headless Chromium through playwright-core; `webgpu` gives it a SwiftShader WebGPU
 * adapter, otherwise the GPU is off.
 */
export async function launchChromium(options: { webgpu?: boolean } = {}) {
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [...CHROMIUM_ARGS, ...(options.webgpu ? SWIFTSHADER_WEBGPU : ["--disable-gpu"])],
  });
}

/**
 * A fresh browser context on `url` (1280 x 900 unless `viewport` says otherwise) that records
 * every URL the page asks for, every page error, every console error and every response of
 * status 400 or more; fails unless the page answers 200.
 */
export async function openRecordedPage(browser: import("playwright-core").Browser, url: string, options: { viewport?: { width: number; height: number } } = {}) {
  const context = await browser.newContext({ acceptDownloads: true, viewport: options.viewport ?? { width: 1280, height: 900 } });
  const page = await context.newPage();
  const requested: string[] = [];
  const errors: string[] = [];
  const consoleErrors: string[] = [];
  const failed: string[] = [];
  page.on("request", (r) => requested.push(r.url()));
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(`${m.text()} (${m.location().url})`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400) failed.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
  const response = await page.goto(url);
  if (response?.status() !== 200) throw new Error(`${url} answered ${response?.status()}`);
  return { page, requested, errors, consoleErrors, failed, response, close: () => context.close() };
}

// ---------------------------------------------------------------- GPU-node jobs and the API, for the node tests

/** A small async GPU-node job: 64 rows, 3 classes, 3 epochs. */
export function smallGpuJob() {
  return {
    mode: "async",
    placement: "gpu-node",
    model: { layers: [{ type: "linear", in_features: 4, out_features: 8 }, { type: "relu" }, { type: "linear", in_features: 8, out_features: 3 }] },
    data: { train: classificationData(64) },
    training: { epochs: 3, batch_size: 16, loss: { type: "cross_entropy" } },
  };
}

/** An async GPU-node job that trains for a few seconds: 64-256-10 on 2,000 seeded rows. */
export function slowGpuJob(epochs: number, seed = 99) {
  const rand = lcg(seed);
  const x = Array.from({ length: 2000 }, () => Array.from({ length: 64 }, () => Math.round(rand() * 256) / 256));
  const y = x.map((r) => (r[0]! > 0 ? 1 : 0) + (r[1]! > 0 ? 2 : 0) + (r[2]! > 0 ? 4 : 0));
  return {
    mode: "async",
    placement: "gpu-node",
    model: {
      layers: [
        { type: "linear", name: "fc1", in_features: 64, out_features: 256 },
        { type: "relu" },
        { type: "linear", name: "fc2", in_features: 256, out_features: 10 },
      ],
    },
    data: { train: { x, y } },
    training: { epochs, batch_size: 32, loss: { type: "cross_entropy" }, optimizer: { type: "adam", lr: 1e-3 } },
  };
}

/** The edge's API at `base()` (read on each call: the port is known in beforeAll): an async create (202) and a job GET. */
export function edgeApi(base: () => string) {
  return {
    async submit(body: unknown): Promise<string> {
      const res = await fetch(`${base()}/v1/fine-tunes`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      expect(res.status).toBe(202);
      expect(res.headers.get("location")).toMatch(/^\/v1\/fine-tunes\/ft_/);
      return ((await res.json()) as { id: string }).id;
    },
    async job(id: string): Promise<Record<string, any>> {
      return (await (await fetch(`${base()}/v1/fine-tunes/${id}`)).json()) as Record<string, any>;
    },
  };
}

/**
 * The set-up shared by the GPU-node e2e files, registered on the enclosing `describe`: one
 * `wrangler dev` with `vars` (state in a temporary folder, removed afterwards), GPU nodes
 * started by `node()` (with `nodeEnv`) and SIGKILLed after each test, and the edge's API.
 *
 * @example
 * const bed = gpuNodeTestbed("edgetune-x-e2e-", { LEASE_SECONDS: "2" });
 * it("runs", async () => { bed.node("n1"); await bed.finished(await bed.submit(smallGpuJob())); });
 */
export function gpuNodeTestbed(prefix: string, vars: Record<string, string>, nodeEnv: Record<string, string> = {}) {
  const work = mkdtempSync(join(tmpdir(), prefix));
  const persist = join(work, "state");
  const nodes: Proc[] = [];
  const at = { port: 0, base: "", edge: undefined as Proc | undefined };
  const api = edgeApi(() => at.base);
  beforeAll(async () => {
    at.port = await freePort();
    at.base = `http://127.0.0.1:${at.port}`;
    at.edge = await startWranglerDev(at.port, persist, vars);
  });
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((n) => stop(n, "SIGKILL")));
  });
  afterAll(async () => {
    await stop(at.edge);
    rmSync(work, { recursive: true, force: true });
  });
  return {
    ...api,
    /** The edge's URL (set once wrangler dev is up, in beforeAll). */
    get base(): string {
      return at.base;
    },
    /** A GPU node process polling this edge, stopped (SIGKILL) after the test. */
    node(name: string, env: Record<string, string> = {}): Proc {
      const proc = startGpuNode(at.port, name, { ...nodeEnv, ...env });
      nodes.push(proc);
      return proc;
    },
    /** The job once it has reached a final state. */
    finished(id: string, ms = 60_000) {
      return eventually(`${id} to finish`, ms, async () => {
        const j = await api.job(id);
        return ["succeeded", "failed", "cancelled", "diverged"].includes(j.status) ? j : undefined;
      });
    },
    /** Stops wrangler dev and starts it again on the same port and state. */
    async restartEdge(): Promise<void> {
      await stop(at.edge);
      at.edge = await startWranglerDev(at.port, persist, vars);
    },
  };
}
