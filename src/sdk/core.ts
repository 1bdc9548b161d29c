/**
 * The HTTP machinery under the SDK's resources: URLs, headers, per-attempt timeouts linked to
 * the caller's AbortSignal, problem+json to error classes, and retries with exponential
 * backoff, jitter and Retry-After. Only fetch, AbortController and Headers: it runs in Node,
 * browsers and Workers.
 */
import type { Problem } from "../schema/job.js";
import { APIConnectionError, APITimeoutError, APIUserAbortError, EdgetuneAPIError } from "./errors.js";

/**
 * The fetch the SDK calls. Defaults to the global `fetch`; inject one for tests, proxies or a
 * Hono app (`(url, init) => app.request(url, init)`).
 *
 * @example
 * ```ts
 * const logged: Fetch = async (url, init) => { console.log(init?.method, url); return fetch(url, init); };
 * ```
 */
export type Fetch = (url: string, init?: RequestInit) => Promise<Response>;

/**
 * Options of `new Edgetune(...)`.
 *
 * @example
 * ```ts
 * const options: ClientOptions = { baseURL: "http://localhost:8787", apiKey: "k1", maxRetries: 2, timeout: 600_000 };
 * ```
 */
export interface ClientOptions {
  /** The API's origin (and path prefix, if any). Default: `EDGETUNE_URL` where `process.env` exists, else http://localhost:8787. */
  baseURL?: string | undefined;
  /** Sent as `Authorization: Bearer <apiKey>`. Default: `EDGETUNE_API_KEY` where `process.env` exists; none for an open API. */
  apiKey?: string | null | undefined;
  /** The fetch to call (default: the global one). */
  fetch?: Fetch | undefined;
  /** Retries after a retryable failure (connection error, timeout, 408, 429, 409 request_in_progress, 5xx other than 501). Default 2. */
  maxRetries?: number | undefined;
  /** Milliseconds each attempt may take before it is aborted (for event streams: until the response starts). Default 10 minutes. */
  timeout?: number | undefined;
  /** Headers sent with every request. */
  defaultHeaders?: Record<string, string> | undefined;
}

/**
 * Per-call options, the last argument of every method.
 *
 * @example
 * ```ts
 * await client.fineTunes.retrieve(id, { signal: AbortSignal.timeout(5000), maxRetries: 0, headers: { "x-trace": "1" } });
 * ```
 */
export interface RequestOptions {
  /** Aborts the call (and any retry wait); the call rejects with `APIUserAbortError`. */
  signal?: AbortSignal | undefined;
  /** Overrides the client's timeout for this call (ms, per attempt). */
  timeout?: number | undefined;
  /** Overrides the client's maxRetries for this call. */
  maxRetries?: number | undefined;
  /** Extra headers; `null` removes a default one. */
  headers?: Record<string, string | null | undefined>;
}

/**
 * A request as the resources describe it (internal to the SDK; not exported from edgetune/sdk).
 *
 * @example
 * ```ts
 * const req: APIRequest = { method: "GET", path: "/v1/fine-tunes", query: { limit: 10 }, retryable: true };
 * ```
 */
export interface APIRequest {
  method: "GET" | "POST" | "DELETE";
  path: string;
  query?: Record<string, string | number | undefined>;
  /** A JSON body (sent as application/json). */
  json?: unknown | undefined;
  /** A FormData body (multipart; fetch sets the boundary). */
  form?: FormData | undefined;
  /** Whether failures may be retried: true for idempotent calls and for creates carrying an Idempotency-Key. */
  retryable: boolean;
  headers?: Record<string, string | null | undefined>;
  accept?: string | undefined;
}

/**
 * An open streaming response; `close()` aborts its request.
 *
 * @example
 * ```ts
 * const stream: OpenStream = await client.openStream({ method: "GET", path: `/v1/fine-tunes/${id}/events`, retryable: true });
 * stream.close();
 * ```
 */
export interface OpenStream {
  response: Response;
  close(): void;
}

const DEFAULT_BASE_URL = "http://localhost:8787";
const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;
const DEFAULT_MAX_RETRIES = 2;
const INITIAL_RETRY_DELAY_MS = 500;
const MAX_RETRY_DELAY_MS = 8000;
/** A Retry-After longer than this is not waited for: the error is thrown for the caller to decide. */
const MAX_RETRY_AFTER_MS = 60_000;

/** `process.env[name]` where a `process` global exists (Node, Bun, Deno's compat); undefined elsewhere. */
function env(name: string): string | undefined {
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  const value = proc?.env?.[name];
  return value === undefined || value === "" ? undefined : value;
}

/**
 * The transport shared by the resources. `Edgetune` extends it; use `Edgetune` instead.
 *
 * @example
 * ```ts
 * const client = new Edgetune({ baseURL: "http://localhost:8787" }); // an APIClient
 * client.baseURL; // "http://localhost:8787"
 * ```
 */
export class APIClient {
  /** The base URL, without a trailing slash. */
  readonly baseURL: string;
  readonly apiKey: string | null;
  readonly maxRetries: number;
  readonly timeout: number;
  protected readonly defaultHeaders: Record<string, string>;
  private readonly fetchImpl: Fetch;

  constructor(options: ClientOptions = {}) {
    this.baseURL = (options.baseURL ?? env("EDGETUNE_URL") ?? DEFAULT_BASE_URL).replace(/\/+$/, "");
    this.apiKey = options.apiKey === undefined ? (env("EDGETUNE_API_KEY") ?? null) : options.apiKey;
    this.maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    this.timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isInteger(this.maxRetries) || this.maxRetries < 0) throw new TypeError(`maxRetries must be a non-negative integer, got ${options.maxRetries}`);
    if (!(this.timeout > 0)) throw new TypeError(`timeout must be a positive number of milliseconds, got ${options.timeout}`);
    this.defaultHeaders = { ...options.defaultHeaders };
    const custom = options.fetch;
    // Calling the global fetch unbound (`this.fetch = fetch`) throws "Illegal invocation" on Workers and in browsers.
    this.fetchImpl = custom ?? ((url, init) => fetch(url, init));
  }

  /** Sends a request and parses the JSON answer. */
  async requestJSON<T>(req: APIRequest, options: RequestOptions = {}): Promise<{ data: T; response: Response }> {
    return this.send(req, options, async (response) => ({ data: (await response.json()) as T, response }));
  }

  /** Sends a request and reads the answer as bytes. */
  async requestBytes(req: APIRequest, options: RequestOptions = {}): Promise<Uint8Array> {
    return this.send(req, options, async (response) => new Uint8Array(await response.arrayBuffer()));
  }

  /**
   * Opens a streaming response. The timeout covers the wait for the response head only; the
   * body stays linked to `options.signal` until `close()`.
   */
  async openStream(req: APIRequest, options: RequestOptions = {}): Promise<OpenStream> {
    return this.send<OpenStream>(req, options, null);
  }

  /** The retry loop around attempts. `read` null: answer an OpenStream (typed by the caller). */
  private async send<T>(req: APIRequest, options: RequestOptions, read: ((response: Response) => Promise<T>) | null): Promise<T> {
    const maxRetries = options.maxRetries ?? this.maxRetries;
    for (let attempt = 0; ; attempt++) {
      try {
        return (await this.attempt(req, options, read)) as T;
      } catch (err) {
        const delay = req.retryable && attempt < maxRetries ? retryDelay(err, attempt) : null;
        if (delay === null) throw err;
        await sleep(delay, options.signal);
      }
    }
  }

  /** One attempt: fetch under a timeout linked to the caller's signal, map failures to errors. */
  private async attempt<T>(req: APIRequest, options: RequestOptions, read: ((response: Response) => Promise<T>) | null): Promise<unknown> {
    const { signal } = options;
    if (signal?.aborted) throw new APIUserAbortError(undefined, signal.reason);
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    let timedOut = false;
    const timeoutMs = options.timeout ?? this.timeout;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    let streaming = false;
    try {
      const response = await this.fetchImpl(this.url(req), this.init(req, options, controller.signal));
      if (!response.ok) throw await errorFromResponse(response);
      if (read === null) {
        clearTimeout(timer);
        streaming = true;
        return {
          response,
          close: () => {
            signal?.removeEventListener("abort", onAbort);
            controller.abort();
          },
        } satisfies OpenStream;
      }
      return await read(response);
    } catch (err) {
      if (err instanceof EdgetuneAPIError) throw err;
      if (signal?.aborted) throw new APIUserAbortError(undefined, signal.reason);
      if (timedOut) throw new APITimeoutError(`Request timed out after ${timeoutMs} ms: ${req.method} ${req.path}`, err);
      throw new APIConnectionError(`Connection error: ${req.method} ${this.baseURL}${req.path}: ${describe(err)}`, err);
    } finally {
      clearTimeout(timer);
      if (!streaming) signal?.removeEventListener("abort", onAbort);
    }
  }

  private url(req: APIRequest): string {
    const url = `${this.baseURL}${req.path}`;
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) params.set(k, String(v));
    const qs = params.toString();
    return qs ? `${url}?${qs}` : url;
  }

  private init(req: APIRequest, options: RequestOptions, signal: AbortSignal): RequestInit {
    const headers: Record<string, string> = { accept: req.accept ?? "application/json" };
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    if (req.json !== undefined) headers["content-type"] = "application/json";
    const merge = (extra: Record<string, string | null | undefined> | undefined) => {
      for (const [k, v] of Object.entries(extra ?? {})) {
        const key = k.toLowerCase();
        if (v === null) delete headers[key];
        else if (v !== undefined) headers[key] = v;
      }
    };
    merge(this.defaultHeaders);
    merge(req.headers);
    merge(options.headers);
    const body = req.json !== undefined ? JSON.stringify(req.json) : req.form;
    return { method: req.method, headers, signal, ...(body !== undefined ? { body } : {}) };
  }
}

/** The error for a non-2xx response: its problem+json body, or one made from whatever came. */
async function errorFromResponse(response: Response): Promise<EdgetuneAPIError> {
  const text = await response.text().catch(() => "");
  let problem: Problem | undefined;
  try {
    const body = JSON.parse(text) as Partial<Problem>;
    if (body && typeof body === "object" && typeof body.detail === "string") {
      problem = {
        type: typeof body.type === "string" ? body.type : "about:blank",
        title: typeof body.title === "string" ? body.title : response.statusText,
        status: typeof body.status === "number" ? body.status : response.status,
        detail: body.detail,
        code: typeof body.code === "string" ? body.code : `http_${response.status}`,
        ...(typeof body.instance === "string" ? { instance: body.instance } : {}),
        ...(Array.isArray(body.errors) ? { errors: body.errors } : {}),
      };
    }
  } catch {
    // not JSON: a proxy's HTML page, a plain-text 502
  }
  problem ??= {
    type: "about:blank",
    title: response.statusText || `HTTP ${response.status}`,
    status: response.status,
    detail: text.trim().slice(0, 500) || response.statusText || `HTTP ${response.status}`,
    code: `http_${response.status}`,
  };
  return EdgetuneAPIError.fromResponse(response.status, problem, response.headers);
}

/**
 * How long to wait before retrying after `err`, or null when it must not be retried.
 * Retried: connection errors and timeouts, 408, 429, 5xx other than 501 (not deployed), and
 * 409 `request_in_progress` (the first create with this Idempotency-Key is still running).
 * Other 409s are not retried: they are job-state conflicts that waiting does not fix.
 * `Retry-After` (seconds or an HTTP date, or `retry-after-ms`) is honoured up to 60 s; a longer
 * one throws the error for the caller to decide.
 */
function retryDelay(err: unknown, attempt: number): number | null {
  if (err instanceof APIUserAbortError) return null;
  if (!(err instanceof APIConnectionError)) {
    if (!(err instanceof EdgetuneAPIError) || err.status === undefined) return null;
    const s = err.status;
    const inProgress = s === 409 && err.code === "request_in_progress";
    if (!(s === 408 || s === 429 || inProgress || (s >= 500 && s !== 501))) return null;
    const after = retryAfterMs(err.headers);
    if (after !== null) return after <= MAX_RETRY_AFTER_MS ? after : null;
  }
  return backoffMs(attempt);
}

/**
 * Exponential backoff with jitter: 0.5 s, 1 s, 2 s, ... up to 8 s, each reduced by up to 25 %.
 *
 * @example
 * ```ts
 * backoffMs(0); // between 375 and 500
 * ```
 */
export function backoffMs(attempt: number): number {
  const base = Math.min(INITIAL_RETRY_DELAY_MS * 2 ** attempt, MAX_RETRY_DELAY_MS);
  return base * (1 - Math.random() * 0.25);
}

/**
 * Milliseconds from `retry-after-ms` or `Retry-After` (delta-seconds or an HTTP date); null when
 * absent or unreadable.
 *
 * @example
 * ```ts
 * retryAfterMs(new Headers({ "retry-after": "2" })); // 2000
 * ```
 */
export function retryAfterMs(headers: Headers | undefined, now = Date.now()): number | null {
  const ms = headers?.get("retry-after-ms");
  if (ms != null && ms.trim() !== "" && Number.isFinite(Number(ms)) && Number(ms) >= 0) return Number(ms);
  const value = headers?.get("retry-after")?.trim();
  if (!value) return null;
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

/**
 * Waits `ms`, rejecting with `APIUserAbortError` if `signal` fires first.
 *
 * @example
 * ```ts
 * await sleep(500, options.signal);
 * ```
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new APIUserAbortError(undefined, signal.reason));
    const onAbort = () => {
      clearTimeout(timer);
      reject(new APIUserAbortError(undefined, signal?.reason));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error ? `${err.message} (${cause.message})` : err.message;
  }
  return String(err);
}
