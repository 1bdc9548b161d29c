/**
 * The page's two ways to train: the server, through the SDK (src/sdk: create, the SSE event
 * stream as an async iterator that resumes with Last-Event-ID, cancel, weights, typed errors),
 * and this device, through the browser library served at /lib/edgetune.js.
 */
import type * as BrowserLibrary from "../browser/index.js";
import { Edgetune } from "../sdk/client.js";
import { EdgetuneAPIError } from "../sdk/errors.js";
import { FormError } from "./form.js";

/** The browser library's module type (it is loaded at run time from /lib/, not bundled). */
export type EdgetuneLibrary = typeof BrowserLibrary;

/**
 * An SDK client for the API of the origin that served the page; `apiKey` empty: none (an open API).
 *
 * @example
 * ```ts
 * const job = await apiClient("").fineTunes.retrieve(id);
 * ```
 */
export function apiClient(apiKey: string): Edgetune {
  return new Edgetune({ baseURL: location.origin, apiKey: apiKey.trim() || null, maxRetries: 2 });
}

let library: Promise<EdgetuneLibrary> | null = null;

/**
 * Imports /lib/edgetune.js once (a URL import: the library stays its own static asset, shared
 * with its Web Worker, instead of a second copy inside this bundle).
 *
 * @example
 * ```ts
 * const lib = await loadLibrary();
 * const result = await lib.trainInWorker(request, { tables });
 * ```
 */
export function loadLibrary(): Promise<EdgetuneLibrary> {
  const url: string = new URL("/lib/edgetune.js", location.href).href;
  library ??= (import(url) as Promise<EdgetuneLibrary>).catch((e: unknown) => {
    library = null;
    throw new Error(`The browser library /lib/edgetune.js did not load (${(e as Error)?.message ?? e}); build it with npm run build.`);
  });
  return library;
}

/**
 * One line for the status box from anything a run can throw: an SDK error (status, code, detail,
 * the fields the API named; 401 adds a hint about the API key), the browser library's
 * EdgetuneError (the same fields, from another bundle), a FormError or any Error.
 *
 * @example
 * ```ts
 * describeError(new FormError("lr", "The learning rate must be a number")); // "The learning rate must be a number"
 * ```
 */
export function describeError(e: unknown): string {
  if (e instanceof FormError) return e.message;
  if (e instanceof EdgetuneAPIError && e.status !== undefined) {
    let text = `${e.status} ${e.code ?? ""}: ${e.detail ?? e.message}`;
    if (e.status === 401) text += " Type an API key in the Run box.";
    return text + fieldIssues(e.errors, e.detail ?? "");
  }
  const lib = e as { status?: unknown; code?: unknown; message?: unknown; errors?: unknown };
  if (lib && typeof lib.status === "number" && typeof lib.code === "string") {
    const message = String(lib.message ?? "");
    return `${lib.status} ${lib.code}: ${message}${Array.isArray(lib.errors) ? fieldIssues(lib.errors, message) : ""}`;
  }
  return e instanceof Error ? e.message : String(e);
}

function fieldIssues(errors: readonly { path: string; message: string; line?: number | undefined }[], detail: string): string {
  const more = errors.map((i) => `${i.path}${i.line ? ` line ${i.line}` : ""}: ${i.message}`).filter((line) => !detail.includes(line));
  return more.length ? ` [${more.slice(0, 5).join("; ")}${more.length > 5 ? "; …" : ""}]` : "";
}
