/**
 * Errors mapped from the real app's problem+json responses, and the retry / timeout / abort
 * machinery against fake fetches.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { writeSafetensors } from "../../src/formats/safetensors.js";
import {
  APIConnectionError,
  APITimeoutError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  Edgetune,
  EdgetuneAPIError,
  InternalServerError,
  NotFoundError,
  PayloadTooLargeError,
  RateLimitError,
  UnprocessableEntityError,
  UnsupportedMediaTypeError,
  backoffMs,
  retryAfterMs,
  type Fetch,
} from "../../src/sdk/index.js";
import { seedRequest } from "../helpers.js";
import { header, sdkSetup, type Call } from "./helpers.js";

const small = () => seedRequest(64, { training: { epochs: 2, batch_size: 16 } });
const failure = async <T>(p: Promise<T>): Promise<EdgetuneAPIError> => {
  const err = await p.then(
    () => {
      throw new Error("expected a rejection");
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EdgetuneAPIError);
  return err as EdgetuneAPIError;
};

describe("every error class from the real app's problem+json", () => {
  it("400 BadRequestError names the field; the request is not retried", async () => {
    const { client, calls } = await sdkSetup();
    const err = await failure(client.fineTunes.create({ ...seedRequest(10), training: { optimizer: { type: "adam", betas: [0.9, 1.5] } } }));
    expect(err).toBeInstanceOf(BadRequestError);
    expect(err).toMatchObject({ status: 400, code: "invalid_request", title: "Invalid request", type: "/docs#problem-invalid_request" });
    expect(err.errors.map((e) => e.path)).toContain("training.optimizer.betas[1]");
    expect(err.detail).toMatch(/betas\[1\]/);
    expect(err.message).toMatch(/^400 invalid_request: /);
    expect(err.headers!.get("content-type")).toBe("application/problem+json");
    expect(calls).toHaveLength(1);
  });

  it("401 AuthenticationError with the WWW-Authenticate header; the right key passes", async () => {
    const { client } = await sdkSetup({ app: { apiKeys: ["k1"] }, client: { apiKey: "wrong" } });
    const err = await failure(client.fineTunes.list());
    expect(err).toBeInstanceOf(AuthenticationError);
    expect(err).toMatchObject({ status: 401, code: "unauthorized" });
    expect(err.headers!.get("www-authenticate")).toMatch(/^Bearer/);
    const { client: ok, calls } = await sdkSetup({ app: { apiKeys: ["k1"] }, client: { apiKey: "k1" } });
    expect((await ok.fineTunes.list()).data).toEqual([]);
    expect(header(calls[0]!, "authorization")).toBe("Bearer k1");
  });

  it("404 NotFoundError", async () => {
    const { client } = await sdkSetup();
    const err = await failure(client.fineTunes.retrieve("ft_0123456789abcdef0123456789abcdef"));
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err).toMatchObject({ status: 404, code: "not_found" });
    expect(err.errors).toEqual([{ path: "id", message: "not found" }]);
  });

  it("409 ConflictError: weights of a queued job", async () => {
    const { client } = await sdkSetup();
    const job = await client.fineTunes.create({ ...small(), mode: "async" });
    const err = await failure(client.fineTunes.weights(job.id));
    expect(err).toBeInstanceOf(ConflictError);
    expect(err).toMatchObject({ status: 409, code: "weights_not_ready" });
  });

  it("413 PayloadTooLargeError", async () => {
    const { client } = await sdkSetup({ app: { maxBodyBytes: 1000 } });
    const err = await failure(client.fineTunes.create(small()));
    expect(err).toBeInstanceOf(PayloadTooLargeError);
    expect(err).toMatchObject({ status: 413, code: "payload_too_large" });
  });

  it("415 UnsupportedMediaTypeError: a data part of another media type", async () => {
    const { client } = await sdkSetup();
    const err = await failure(client.fineTunes.create({ model: small().model, data: { train: new Blob(["%PDF-1.4"], { type: "application/pdf" }) } }));
    expect(err).toBeInstanceOf(UnsupportedMediaTypeError);
    expect(err).toMatchObject({ status: 415, code: "unsupported_media_type" });
    expect(err.errors[0]!.path).toBe("train");
  });

  it("422 UnprocessableEntityError: weights that do not fit the model, with the tensor path; CSV errors carry line and column", async () => {
    const { client } = await sdkSetup();
    const weights = writeSafetensors([{ name: "fc1.weight", shape: [3, 3], data: new Float32Array(9) }]);
    const err = await failure(client.fineTunes.create({ ...small(), weights }));
    expect(err).toBeInstanceOf(UnprocessableEntityError);
    expect(err).toMatchObject({ status: 422, code: "weights_mismatch" });
    expect(err.errors.map((e) => e.path)).toContain('weights["fc1.weight"]');

    const csv = "a,b,c,d,e,f,g,h,i,j,y\n1,2,3,4,5,6,7,8,9,10,1\n1,2,x,4,5,6,7,8,9,10,1\n";
    const bad = await failure(client.fineTunes.create({ model: small().model, data: { train: csv } }));
    expect(bad).toMatchObject({ status: 422, code: "invalid_dataset" });
    expect(bad.errors[0]).toMatchObject({ path: "data.train", line: 3, column: "c" });
  });

  it("429 RateLimitError from the app's rate limiter; a retry waits its Retry-After and passes", async () => {
    const { client, calls } = await sdkSetup({ app: { rateLimit: { burst: 1, perMinute: 60 } }, client: { maxRetries: 0 } });
    await client.fineTunes.list();
    const err = await failure(client.fineTunes.list());
    expect(err).toBeInstanceOf(RateLimitError);
    expect(err).toMatchObject({ status: 429 });
    expect(Number(err.headers!.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(calls).toHaveLength(2);

    const patient = await sdkSetup({ app: { rateLimit: { burst: 1, perMinute: 60 } } });
    await patient.client.fineTunes.list();
    const started = Date.now();
    expect((await patient.client.fineTunes.list()).object).toBe("list");
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(patient.calls).toHaveLength(3);
  });

  it("a non-problem error body still becomes a typed error", async () => {
    const client = new Edgetune({ baseURL: "http://edge.test", maxRetries: 0, fetch: async () => new Response("<html>bad gateway</html>", { status: 502, statusText: "Bad Gateway" }) });
    const err = await failure(client.fineTunes.retrieve("ft_x"));
    expect(err).toBeInstanceOf(InternalServerError);
    expect(err).toMatchObject({ status: 502, code: "http_502", detail: "<html>bad gateway</html>" });
  });
});

/** A fetch answering from a script of responses (or thrown errors), recording each call. */
function scripted(steps: (Response | Error | ((init: RequestInit) => Promise<Response>))[]) {
  const calls: (Call & { at: number })[] = [];
  const fetch: Fetch = async (url, init = {}) => {
    calls.push({ url, init, at: Date.now() });
    const step = steps[Math.min(calls.length - 1, steps.length - 1)]!;
    if (step instanceof Error) throw step;
    if (typeof step === "function") return step(init);
    return step.clone();
  };
  return { fetch, calls };
}

const problemResponse = (status: number, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify({ type: "about:blank", title: "x", status, detail: `status ${status}`, code: `c${status}` }), {
    status,
    headers: { "content-type": "application/problem+json", ...headers },
  });
const jobJson = () => new Response(JSON.stringify({ id: "ft_1", object: "fine_tune", status: "running" }), { headers: { "content-type": "application/json" } });

describe("retries", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("GET: two 503s with Retry-After, then success; the waits honour Retry-After", async () => {
    vi.useFakeTimers();
    const { fetch, calls } = scripted([problemResponse(503, { "retry-after": "2" }), problemResponse(503, { "retry-after": "1" }), jobJson()]);
    const client = new Edgetune({ baseURL: "http://edge.test", fetch });
    const job = client.fineTunes.retrieve("ft_1");
    await vi.advanceTimersByTimeAsync(1999);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(999);
    expect(calls).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toHaveLength(3);
    expect((await job).status).toBe("running");
  });

  it("Retry-After as an HTTP date, and retry-after-ms", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(retryAfterMs(new Headers({ "retry-after": "Thu, 01 Jan 2026 00:00:03 GMT" }), now)).toBe(3000);
    expect(retryAfterMs(new Headers({ "retry-after": "Wed, 31 Dec 2025 00:00:00 GMT" }), now)).toBe(0);
    expect(retryAfterMs(new Headers({ "retry-after-ms": "250", "retry-after": "9" }))).toBe(250);
    expect(retryAfterMs(new Headers({ "retry-after": "soon" }))).toBeNull();
    expect(retryAfterMs(new Headers())).toBeNull();
  });

  it("without Retry-After: exponential backoff (0.5 s, 1 s, ...) less up to 25 % jitter", async () => {
    expect(backoffMs(0)).toBeGreaterThanOrEqual(375);
    expect(backoffMs(0)).toBeLessThanOrEqual(500);
    expect(backoffMs(10)).toBeLessThanOrEqual(8000);
    vi.useFakeTimers();
    const random = vi.spyOn(Math, "random").mockReturnValue(0.4); // 10 % off: 450 ms, then 900 ms
    try {
      const { fetch, calls } = scripted([problemResponse(500), problemResponse(500), jobJson()]);
      const client = new Edgetune({ baseURL: "http://edge.test", fetch });
      const job = client.fineTunes.retrieve("ft_1");
      await vi.advanceTimersByTimeAsync(449);
      expect(calls).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(1);
      expect(calls).toHaveLength(2);
      await vi.advanceTimersByTimeAsync(899);
      expect(calls).toHaveLength(2);
      await vi.advanceTimersByTimeAsync(1);
      expect(calls).toHaveLength(3);
      await job;
    } finally {
      random.mockRestore();
    }
  });

  it("create is retried with the same Idempotency-Key; with idempotencyKey null it is not retried", async () => {
    const created = () => new Response(JSON.stringify({ id: "ft_1", status: "succeeded" }), { status: 200, headers: { "content-type": "application/json" } });
    const a = scripted([problemResponse(503, { "retry-after": "0" }), problemResponse(429, { "retry-after": "0" }), created()]);
    const client = new Edgetune({ baseURL: "http://edge.test", fetch: a.fetch });
    expect(await client.fineTunes.create(small())).toMatchObject({ id: "ft_1" });
    expect(a.calls).toHaveLength(3);
    const keys = a.calls.map((c) => header(c, "idempotency-key"));
    expect(new Set(keys).size).toBe(1);
    expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/);

    const again = scripted([created()]);
    await new Edgetune({ baseURL: "http://edge.test", fetch: again.fetch }).fineTunes.create(small());
    expect(header(again.calls[0]!, "idempotency-key")).not.toBe(keys[0]); // a new key per create call

    const custom = scripted([problemResponse(503, { "retry-after": "0" }), created()]);
    await new Edgetune({ baseURL: "http://edge.test", fetch: custom.fetch }).fineTunes.create(small(), { idempotencyKey: "user-7-day-3" });
    expect(custom.calls.map((c) => header(c, "idempotency-key"))).toEqual(["user-7-day-3", "user-7-day-3"]);

    const b = scripted([problemResponse(503, { "retry-after": "0" }), created()]);
    const err = await failure(new Edgetune({ baseURL: "http://edge.test", fetch: b.fetch }).fineTunes.create(small(), { idempotencyKey: null }));
    expect(err).toBeInstanceOf(InternalServerError);
    expect(err.status).toBe(503);
    expect(b.calls).toHaveLength(1);
    expect(header(b.calls[0]!, "idempotency-key")).toBeNull();
  });

  it("429 after maxRetries is a RateLimitError; 4xx, 409 and 501 are never retried", async () => {
    const limited = scripted([problemResponse(429, { "retry-after": "0" })]);
    const err = await failure(new Edgetune({ baseURL: "http://edge.test", fetch: limited.fetch, maxRetries: 3 }).fineTunes.list());
    expect(err).toBeInstanceOf(RateLimitError);
    expect(limited.calls).toHaveLength(4);

    for (const status of [400, 404, 409, 422, 501]) {
      const s = scripted([problemResponse(status)]);
      await failure(new Edgetune({ baseURL: "http://edge.test", fetch: s.fetch }).fineTunes.retrieve("ft_1"));
      expect({ status, calls: s.calls.length }).toEqual({ status, calls: 1 });
    }
  });

  it("a Retry-After over 60 s is not waited for", async () => {
    const s = scripted([problemResponse(503, { "retry-after": "3600" }), jobJson()]);
    const err = await failure(new Edgetune({ baseURL: "http://edge.test", fetch: s.fetch }).fineTunes.retrieve("ft_1"));
    expect(err.status).toBe(503);
    expect(s.calls).toHaveLength(1);
  });

  it("connection errors are retried for GET and cancel, then thrown as APIConnectionError", async () => {
    vi.useFakeTimers();
    const refused = new TypeError("fetch failed", { cause: new Error("connect ECONNREFUSED 127.0.0.1:8787") });
    const s = scripted([refused, jobJson()]);
    const client = new Edgetune({ baseURL: "http://edge.test", fetch: s.fetch });
    const cancelled = client.fineTunes.cancel("ft_1");
    await vi.advanceTimersByTimeAsync(600);
    expect((await cancelled).id).toBe("ft_1");
    expect(s.calls.map((c) => c.init.method)).toEqual(["POST", "POST"]);

    const down = scripted([refused]);
    const failing = new Edgetune({ baseURL: "http://edge.test", fetch: down.fetch, maxRetries: 1 }).fineTunes.retrieve("ft_1");
    const caught = failing.catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(1000);
    const err = await caught;
    expect(err).toBeInstanceOf(APIConnectionError);
    expect((err as Error).message).toMatch(/ECONNREFUSED/);
    expect(down.calls).toHaveLength(2);
  });
});

describe("timeouts and aborts", () => {
  const hanging = (calls: RequestInit[]) => async (_url: string, init: RequestInit = {}) => {
    calls.push(init);
    return new Promise<Response>((_, reject) => init.signal!.addEventListener("abort", () => reject(init.signal!.reason)));
  };

  it("an attempt past the client timeout is an APITimeoutError (retried for idempotent calls)", async () => {
    const calls: RequestInit[] = [];
    const client = new Edgetune({ baseURL: "http://edge.test", fetch: hanging(calls), timeout: 20, maxRetries: 0 });
    // the fetch never answers: only the client's timeout can end the call
    const err = await failure(client.fineTunes.retrieve("ft_1"));
    expect(err).toBeInstanceOf(APITimeoutError);
    expect(err).toBeInstanceOf(APIConnectionError);
    expect(calls[0]!.signal!.aborted).toBe(true);

    const retried: RequestInit[] = [];
    const err2 = await failure(new Edgetune({ baseURL: "http://edge.test", fetch: hanging(retried), timeout: 10, maxRetries: 1 }).fineTunes.retrieve("ft_1", { timeout: 15 }));
    expect(err2).toBeInstanceOf(APITimeoutError);
    expect(retried).toHaveLength(2);
  });

  it("the caller's AbortSignal aborts the request and is not retried", async () => {
    const calls: RequestInit[] = [];
    const client = new Edgetune({ baseURL: "http://edge.test", fetch: hanging(calls) });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 10);
    const err = await failure(client.fineTunes.retrieve("ft_1", { signal: controller.signal }));
    expect(err).toBeInstanceOf(APIUserAbortError);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.signal!.aborted).toBe(true);
    // an already-aborted signal sends nothing
    await failure(client.fineTunes.retrieve("ft_1", { signal: AbortSignal.abort() }));
    expect(calls).toHaveLength(1);
  });

  it("an abort during a retry wait stops the wait", async () => {
    vi.useFakeTimers();
    try {
      const s = scripted([problemResponse(503, { "retry-after": "30" })]);
      const controller = new AbortController();
      const settled = failure(new Edgetune({ baseURL: "http://edge.test", fetch: s.fetch }).fineTunes.retrieve("ft_1", { signal: controller.signal }));
      await vi.advanceTimersByTimeAsync(20); // into the 30 s Retry-After wait
      controller.abort();
      // settles without the clock moving on: the abort, not the end of the wait, ended it
      expect(await settled).toBeInstanceOf(APIUserAbortError);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("client options", () => {
  it("defaults, headers and validation", async () => {
    const s = scripted([jobJson()]);
    const client = new Edgetune({ baseURL: "http://edge.test/prefix/", apiKey: "k", fetch: s.fetch, defaultHeaders: { "x-team": "a", accept: "application/json" } });
    expect(client.baseURL).toBe("http://edge.test/prefix");
    expect(client.maxRetries).toBe(2);
    expect(client.timeout).toBe(600_000);
    await client.fineTunes.retrieve("ft_1", { headers: { "x-team": null, "x-call": "1" } });
    expect(s.calls[0]!.url).toBe("http://edge.test/prefix/v1/fine-tunes/ft_1");
    expect(header(s.calls[0]!, "authorization")).toBe("Bearer k");
    expect(header(s.calls[0]!, "x-team")).toBeNull();
    expect(header(s.calls[0]!, "x-call")).toBe("1");
    await client.fineTunes.list({ limit: 5, cursor: "abc" });
    expect(s.calls[1]!.url).toBe("http://edge.test/prefix/v1/fine-tunes?limit=5&cursor=abc");
    expect(() => new Edgetune({ maxRetries: -1 })).toThrow(TypeError);
    expect(() => new Edgetune({ timeout: 0 })).toThrow(TypeError);
  });
});
