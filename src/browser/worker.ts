/**
 * The training Web Worker (built as build/public/lib/edgetune-worker.js, a module worker that
 * imports ./edgetune.js): receives one `train` message from `trainInWorker`, trains with the
 * browser engine, posts every progress event back, then the result (or the error). A
 * `cancel` message aborts the run between steps (status "cancelled"). With kernel "webgpu"
 * `train` asks the worker's own `navigator.gpu` for a device (a GPUDevice cannot be transferred).
 *
 * @example
 * ```ts
 * // what trainInWorker does:
 * const worker = new Worker("/lib/edgetune-worker.js", { type: "module" });
 * worker.onmessage = (e) => console.log(e.data.type); // "progress" ..., then "result" or "error"
 * worker.postMessage({ type: "train", request, options: {}, runtime: {} });
 * ```
 */
// everything from ./index.js, so that the bundle imports one copy (./edgetune.js): instanceof holds
import { EdgetuneError, train, type BrowserTrainOptions } from "./index.js";
import type { SerializedError, WorkerReply, WorkerRequest } from "./protocol.js";

interface WorkerScope {
  onmessage: ((ev: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(message: WorkerReply): void;
}
const scope = globalThis as unknown as WorkerScope;
const controller = new AbortController();
let started = false;

scope.onmessage = (ev) => {
  const message = ev.data;
  if (message.type === "cancel") {
    controller.abort();
    return;
  }
  if (message.type !== "train" || started) return;
  started = true;
  void run(message);
};

async function run(message: Extract<WorkerRequest, { type: "train" }>): Promise<void> {
  try {
    const options: BrowserTrainOptions = {
      ...message.options,
      // a signal also makes the engine yield every 50 ms, so that "cancel" is delivered mid-run
      signal: controller.signal,
      onProgress: (event) => scope.postMessage({ type: "progress", event }),
    };
    const result = await train(message.request, { ...options, ...message.runtime });
    scope.postMessage({ type: "result", result });
  } catch (e) {
    scope.postMessage({ type: "error", error: serialize(e) });
  }
}

function serialize(e: unknown): SerializedError {
  if (e instanceof EdgetuneError) return { name: e.name, message: e.message, status: e.status, code: e.code, errors: e.errors };
  if (e instanceof Error) return { name: e.name, message: e.message };
  return { name: "Error", message: String(e) };
}
