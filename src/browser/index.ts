/// <reference types="@webgpu/types" preserve="true" />
/**
 * edgetune in the browser: fine-tune on the user's device, so private data never leaves it.
 *
 * The same engine as the Worker and Node (`createEngine` from ../engine/train.ts), with the
 * kernel core fetched from `wasmBaseUrl` and compiled in the page: the relaxed-SIMD build when
 * the browser validates relaxed SIMD (Chromium-based browsers), else the plain SIMD build.
 * `result.engine.runtime` is "browser"; the result is the same `FineTuneResult` the HTTP API
 * returns (weights as base64 safetensors).
 *
 * Built by `npm run build:browser` (scripts/build-browser.mjs) into build/public/lib/:
 * `edgetune.js` (this module, ESM, minified), `edgetune-worker.js` (a module Web Worker that
 * trains off the main thread, see `trainInWorker`), `simd.wasm` and `relaxed-simd.wasm`. The
 * Worker serves them as static files at `/lib/*`. By default the .wasm files and the worker
 * are looked up beside the module itself (`new URL(".", import.meta.url)`).
 *
 * WebGPU: `kernel: "webgpu"` trains on the engine's WebGPU backend, on the `gpu` GPUDevice given
 * or on one requested from `navigator.gpu`; `kernel: "auto"` with a `gpu` lets the engine
 * choose (WebGPU for large steps). `result.engine.kernel` says which ran.
 *
 * No Node or Workers API is used here: only fetch, WebAssembly, Worker, URL and navigator.gpu.
 *
 * @example
 * ```ts
 * import { train } from "/lib/edgetune.js";
 * const result = await train(request, { onProgress: (e) => e.type === "epoch" && console.log(e.epoch, e.train_loss) });
 * result.engine; // { kernel: "wasm-relaxed-simd", threads: 1, runtime: "browser" }
 * ```
 */
import { createEngine, type EngineRuntime, type TrainOptions, type TrainRequest } from "../engine/train.js";
import { EdgetuneError, type FieldIssue } from "../errors.js";
import { parseCsv, parseJsonl, type Table } from "../formats/dataset.js";
import type { FineTuneResult } from "../schema/result.js";
import type { WorkerReply, WorkerRequest } from "./protocol.js";

// what a page needs besides train(): the request and result schemas and types, the typed errors,
// base64, safetensors and the CSV / JSONL / inline dataset readers (each documented at its source)
export { FineTuneRequest, type FineTuneRequestInput } from "../schema/request.js";
export { FineTuneResult, type ProgressEvent, type EpochMetrics, type Plan, type EngineInfo } from "../schema/result.js";
export type { EngineRuntime, TrainOptions, TrainRequest } from "../engine/train.js";
export * from "../errors.js";
export { encodeBase64, decodeBase64 } from "../formats/base64.js";
export { parseSafetensors, readTensorF32, writeSafetensors, type SafetensorsFile, type TensorInfo } from "../formats/safetensors.js";
export { parseCsv, parseJsonl, tableFromInline, type Table } from "../formats/dataset.js";

/**
 * The two builds of the kernel core a browser can run.
 *
 * @example
 * ```ts
 * const variant: WasmVariant = browserSupport().relaxedSimd ? "wasm-relaxed-simd" : "wasm-simd";
 * ```
 */
export type WasmVariant = EngineRuntime["variant"];

/**
 * Where the kernel core comes from.
 *
 * @example
 * ```ts
 * const options: BrowserRuntimeOptions = { wasmBaseUrl: "https://cdn.example.com/edgetune/", variant: "wasm-simd" };
 * await loadBrowserRuntime(options);
 * ```
 */
export interface BrowserRuntimeOptions {
  /**
   * The URL of the directory holding `simd.wasm` and `relaxed-simd.wasm` (with or without a
   * trailing slash; relative URLs resolve against the page). Default: the directory this
   * module was loaded from, which is where `npm run build:browser` puts them (`/lib/`).
   */
  wasmBaseUrl?: string | URL | undefined;
  /**
   * Which build to run. Default: "wasm-relaxed-simd" when `WebAssembly.validate` accepts relaxed
   * SIMD, else "wasm-simd". Forcing "wasm-simd" gives weights bit-identical to Node's default
   * build (Node 20 runs simd.wasm unless started with --experimental-wasm-relaxed-simd).
   */
  variant?: WasmVariant | undefined;
}

/**
 * train()'s options in the browser: the engine's, less the Node-only ones (threads), plus the
 * kernel choice.
 *
 * @example
 * ```ts
 * const controller = new AbortController();
 * const options: BrowserTrainOptions = { kernel: "wasm", signal: controller.signal, onProgress: (e) => console.log(e) };
 * ```
 */
export interface BrowserTrainOptions
  extends Pick<TrainOptions, "signal" | "onProgress" | "stepEvents" | "id" | "tables" | "diagnostics" | "gpuMinFlopsPerStep"> {
  /**
   * "wasm" runs the WASM kernel core. "webgpu" runs the engine's WebGPU backend on `gpu`, or on a
   * device requested from `navigator.gpu` (released after the run); it rejects with
   * WebGpuUnavailableError where the browser has no WebGPU or grants no adapter. "auto" (default)
   * runs WASM, or, when a `gpu` is given, lets the engine choose (WebGPU for large steps,
   * `gpuMinFlopsPerStep`).
   */
  kernel?: "auto" | "wasm" | "webgpu" | undefined;
  /** A GPUDevice to train on (from `requestGpuDevice()` or your own `navigator.gpu` code). */
  gpu?: GPUDevice | null | undefined;
}

/**
 * An engine bound to a compiled kernel core in this page (or Web Worker).
 *
 * @example
 * ```ts
 * const engine: BrowserEngine = await loadBrowserRuntime();
 * const result = await engine.train(request);
 * ```
 */
export interface BrowserEngine {
  /** The compiled module, its variant and `runtime: "browser"`. */
  readonly runtime: EngineRuntime;
  /** Which build runs: "wasm-simd" or "wasm-relaxed-simd". */
  readonly variant: WasmVariant;
  /** Fine-tunes `request`; resolves with the result (also when it diverged or was cancelled). */
  train(request: TrainRequest, options?: BrowserTrainOptions): Promise<FineTuneResult>;
}

/**
 * WebGPU was asked for but cannot run: the browser has no `navigator.gpu`, or it granted no
 * adapter or device.
 *
 * @example
 * ```ts
 * try { await train(request, { kernel: "webgpu" }); }
 * catch (e) { if (e instanceof WebGpuUnavailableError) await train(request, { kernel: "wasm" }); }
 * ```
 */
export class WebGpuUnavailableError extends EdgetuneError {
  constructor(message: string) {
    super(503, "webgpu_unavailable", message);
  }
}

// A 40-byte module whose one function uses f32x4.relaxed_madd: validates only where relaxed SIMD does.
const RELAXED_SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 19, 1, 17, 0, 65, 0, 253, 17, 65, 0, 253, 17, 65, 0, 253, 17, 253, 133, 2, 11,
]);
// The same with i32x4.splat only: validates where fixed-width SIMD does.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 8, 1, 6, 0, 65, 0, 253, 17, 11]);

/**
 * What this JavaScript engine can run: WebAssembly SIMD (required), relaxed SIMD (the faster
 * build) and WebGPU (`navigator.gpu`, for the WebGPU backend).
 *
 * @example
 * ```ts
 * const { simd, relaxedSimd, webgpu } = browserSupport();
 * if (!simd) showMessage("This browser cannot run edgetune (no WebAssembly SIMD).");
 * ```
 */
export function browserSupport(): { simd: boolean; relaxedSimd: boolean; webgpu: boolean } {
  const wasm = typeof WebAssembly === "object" && typeof WebAssembly.validate === "function";
  return {
    simd: wasm && WebAssembly.validate(SIMD_PROBE),
    relaxedSimd: wasm && WebAssembly.validate(RELAXED_SIMD_PROBE),
    webgpu: gpuApi() !== null,
  };
}

const runtimes = new Map<string, Promise<EngineRuntime>>();

/**
 * Fetches and compiles the kernel core (once per URL and variant; later calls share it) and
 * returns an engine bound to it. The relaxed-SIMD build is chosen when `WebAssembly.validate`
 * accepts relaxed SIMD, else the plain SIMD build; `variant` forces one.
 *
 * @example
 * ```ts
 * const engine = await loadBrowserRuntime({ wasmBaseUrl: "/lib/" });
 * engine.variant; // "wasm-relaxed-simd" in Chromium
 * const result = await engine.train(request, { onProgress: plot });
 * ```
 */
export async function loadBrowserRuntime(options: BrowserRuntimeOptions = {}): Promise<BrowserEngine> {
  const base = wasmBase(options.wasmBaseUrl);
  const support = browserSupport();
  if (!support.simd) {
    throw new EdgetuneError(503, "wasm_simd_unavailable", "edgetune needs WebAssembly SIMD (Chrome 91+, Firefox 89+, Safari 16.4+); this browser does not validate it");
  }
  const variant = options.variant ?? (support.relaxedSimd ? "wasm-relaxed-simd" : "wasm-simd");
  if (variant === "wasm-relaxed-simd" && !support.relaxedSimd) {
    throw new EdgetuneError(503, "wasm_relaxed_simd_unavailable", 'this browser does not validate WebAssembly relaxed SIMD; use variant "wasm-simd"');
  }
  const key = `${variant} ${base}`;
  let loading = runtimes.get(key);
  if (!loading) {
    loading = compileKernels(new URL(variant === "wasm-relaxed-simd" ? "relaxed-simd.wasm" : "simd.wasm", base), variant);
    runtimes.set(key, loading);
    loading.catch(() => runtimes.delete(key)); // a failed fetch may be retried
  }
  const runtime = await loading;
  const engine = createEngine(runtime);
  return {
    runtime,
    variant,
    train: (request, trainOptions = {}) => trainWith(engine, request, trainOptions),
  };
}

/**
 * Fine-tunes `request` in this page (or Web Worker) and resolves with the result. Loads the
 * kernel core on first use (see `loadBrowserRuntime`; `wasmBaseUrl` and `variant` are passed
 * to it). Training runs on the calling thread: from a page, prefer `trainInWorker`, which
 * keeps the UI responsive. Bad input rejects with an EdgetuneError (status 400/422 and the
 * offending field paths), exactly as the HTTP API would answer.
 *
 * @example
 * ```ts
 * import { train, decodeBase64 } from "/lib/edgetune.js";
 * const result = await train({ model, weights, data: { train: { x, y } }, training: { epochs: 20 } });
 * const safetensors = decodeBase64(result.weights); // Uint8Array, loads with safetensors.torch.load_file
 * ```
 */
export async function train(request: TrainRequest, options: BrowserTrainOptions & BrowserRuntimeOptions = {}): Promise<FineTuneResult> {
  const { wasmBaseUrl, variant, ...trainOptions } = options;
  const engine = await loadBrowserRuntime({ wasmBaseUrl, variant });
  return engine.train(request, trainOptions);
}

/**
 * Options of `trainInWorker`: those of `train`, less what cannot cross to a Web Worker.
 *
 * @example
 * ```ts
 * const options: WorkerTrainOptions = { workerUrl: "/static/edgetune-worker.js", wasmBaseUrl: "/static/", onProgress: plot };
 * ```
 */
export interface WorkerTrainOptions extends Omit<BrowserTrainOptions, "gpu" | "diagnostics">, BrowserRuntimeOptions {
  /**
   * The module worker script. Default: `edgetune-worker.js` beside this module (`/lib/`). A
   * GPUDevice cannot be sent to a worker; with kernel "webgpu" the worker requests its own.
   */
  workerUrl?: string | URL | undefined;
}

/**
 * Fine-tunes `request` in a dedicated module Web Worker (`edgetune-worker.js`), so the page
 * stays responsive; `onProgress` receives every event as `train`'s would, `signal` cancels
 * (the result then has status "cancelled"). Data tables, weights bytes and the result cross
 * by structured clone; nothing leaves the device. Errors reject as EdgetuneError with the
 * worker's status, code and field issues.
 *
 * @example
 * ```ts
 * import { trainInWorker, parseCsv } from "/lib/edgetune.js";
 * const train = parseCsv(await file.text(), { target: "y", field: "data.train" });
 * const result = await trainInWorker(request, { tables: { train }, onProgress: (e) => plot(e) });
 * ```
 */
export function trainInWorker(request: TrainRequest, options: WorkerTrainOptions = {}): Promise<FineTuneResult> {
  const { workerUrl, onProgress, signal, wasmBaseUrl, variant, ...rest } = options;
  const url = workerUrl === undefined ? new URL("./edgetune-worker.js", import.meta.url) : new URL(workerUrl, documentBase());
  return new Promise<FineTuneResult>((resolve, reject) => {
    let worker: Worker;
    try {
      worker = new Worker(url, { type: "module", name: "edgetune" });
    } catch (e) {
      return reject(e);
    }
    const done = () => {
      signal?.removeEventListener("abort", cancel);
      worker.terminate();
    };
    const cancel = () => worker.postMessage({ type: "cancel" } satisfies WorkerRequest);
    signal?.addEventListener("abort", cancel, { once: true });
    worker.onmessage = (ev: MessageEvent<WorkerReply>) => {
      const reply = ev.data;
      if (reply.type === "progress") {
        try {
          void onProgress?.(reply.event);
        } catch {
          // a throwing callback must not stop the run
        }
      } else if (reply.type === "result") {
        done();
        resolve(reply.result);
      } else if (reply.type === "error") {
        done();
        reject(reviveError(reply.error));
      }
    };
    worker.onerror = (ev) => {
      done();
      ev.preventDefault();
      reject(new Error(`edgetune: the training worker (${url.href}) failed: ${ev.message || "it could not be loaded"}`));
    };
    worker.postMessage({
      type: "train",
      request,
      options: { ...rest, stepEvents: rest.stepEvents ?? false },
      runtime: {
        ...(wasmBaseUrl !== undefined ? { wasmBaseUrl: new URL(String(wasmBaseUrl), documentBase()).href } : {}),
        ...(variant ? { variant } : {}),
      },
    } satisfies WorkerRequest);
    if (signal?.aborted) cancel(); // as train() does: the run ends at once, status "cancelled"
  });
}

/**
 * Reads a CSV or JSONL file's text into a data table (JSONL when `name` ends in .jsonl/.ndjson
 * or the text starts with "{"), for `options.tables`.
 *
 * @example
 * ```ts
 * const table = readDataset(await file.text(), { name: file.name, target: "y", field: "data.train" });
 * await train(request, { tables: { train: table } });
 * ```
 */
export function readDataset(text: string, options: { target?: string | string[]; field: string; name?: string }): Table {
  const name = (options.name ?? "").toLowerCase();
  const jsonl = name.endsWith(".jsonl") || name.endsWith(".ndjson") || (!name.endsWith(".csv") && text.trimStart().startsWith("{"));
  return jsonl ? parseJsonl(text, { field: options.field }) : parseCsv(text, { target: options.target ?? "y", field: options.field });
}

/**
 * A GPUDevice from `navigator.gpu` (in a page or a Web Worker) with the adapter's own limits
 * (the backend binds up to 8 storage buffers per stage), or null where the browser has no
 * WebGPU or grants no adapter. Pass it as `train(request, { kernel: "webgpu", gpu })`; the
 * device is yours to `destroy()`.
 *
 * @example
 * ```ts
 * const gpu = await requestGpuDevice();
 * const result = await train(request, gpu ? { kernel: "webgpu", gpu } : {});
 * ```
 */
export async function requestGpuDevice(): Promise<GPUDevice | null> {
  const api = gpuApi();
  if (!api) return null;
  const adapter = await api.requestAdapter({ powerPreference: "high-performance" }).catch(() => null);
  if (!adapter) return null;
  const limits: Record<string, number> = {};
  for (const name of ["maxStorageBuffersPerShaderStage", "maxStorageBufferBindingSize", "maxBufferSize", "maxComputeWorkgroupStorageSize", "maxComputeInvocationsPerWorkgroup"] as const) {
    limits[name] = adapter.limits[name];
  }
  return adapter.requestDevice({ requiredLimits: limits }).catch(() => adapter.requestDevice().catch(() => null));
}

// ------------------------------------------------------------------ internals

function gpuApi(): GPU | null {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  return nav?.gpu && typeof nav.gpu.requestAdapter === "function" ? nav.gpu : null;
}

/**
 * Runs the engine with the kernel choice mapped: "webgpu" without a device gets one from
 * `navigator.gpu` for this run (destroyed after it), or rejects with WebGpuUnavailableError.
 */
async function trainWith(engine: ReturnType<typeof createEngine>, request: TrainRequest, options: BrowserTrainOptions): Promise<FineTuneResult> {
  const { kernel = "auto", gpu, ...rest } = options;
  if (kernel !== "webgpu") return engine.train(request, { ...rest, kernel, gpu: gpu ?? null });
  if (gpu) return engine.train(request, { ...rest, kernel, gpu });
  if (!gpuApi()) throw new WebGpuUnavailableError('this browser has no WebGPU (navigator.gpu); use kernel "wasm"');
  const device = await requestGpuDevice();
  if (!device) throw new WebGpuUnavailableError('the browser granted no WebGPU adapter or device; use kernel "wasm"');
  try {
    return await engine.train(request, { ...rest, kernel, gpu: device });
  } finally {
    device.destroy();
  }
}

/** The kernel core, compiled from a streamed response (falls back to bytes when the server's MIME type is not application/wasm). */
async function compileKernels(url: URL, variant: WasmVariant): Promise<EngineRuntime> {
  const fetchIt = async () => {
    const res = await fetch(url, { credentials: "same-origin" });
    if (!res.ok) throw new EdgetuneError(503, "kernels_unavailable", `edgetune: ${url.href} answered ${res.status}; is wasmBaseUrl right?`);
    return res;
  };
  let module: WebAssembly.Module;
  if (typeof WebAssembly.compileStreaming === "function") {
    const res = await fetchIt();
    const streamable = (res.headers.get("content-type") ?? "").split(";")[0]!.trim() === "application/wasm";
    module = streamable ? await WebAssembly.compileStreaming(res) : await WebAssembly.compile(await res.arrayBuffer());
  } else {
    module = await WebAssembly.compile(await (await fetchIt()).arrayBuffer());
  }
  return { module, variant, runtime: "browser" };
}

/** The directory URL of the kernel files, ending in "/". */
function wasmBase(given: string | URL | undefined): URL {
  const url = given === undefined ? new URL(".", import.meta.url) : new URL(String(given), documentBase());
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  return url;
}

function documentBase(): string {
  const loc = (globalThis as { location?: { href: string } }).location;
  return loc?.href ?? import.meta.url;
}

/** An error as the worker sent it, back as an EdgetuneError (or Error) with the same fields. */
function reviveError(e: { name: string; message: string; status?: number; code?: string; errors?: FieldIssue[] }): Error {
  if (typeof e.status === "number" && typeof e.code === "string") {
    const error = new EdgetuneError(e.status as EdgetuneError["status"], e.code, e.message, e.errors ?? []);
    Object.defineProperty(error, "name", { value: e.name });
    return error;
  }
  const error = new Error(e.message);
  error.name = e.name;
  return error;
}
