/**
 * The SDK's errors: one class per HTTP status the API answers with, each carrying the RFC 9457
 * problem+json fields (`type`, `title`, `status`, `detail`, `code`, `errors[]`) and the response
 * headers, plus connection, timeout and abort errors. Every one extends `EdgetuneAPIError`.
 */
import type { Problem } from "../schema/job.js";
import type { Explanation } from "../schema/explanation.js";

/**
 * One offending field of a problem: `path` names it the way the request wrote it
 * (`training.optimizer.betas[1]`, `weights["fc1.weight"]`, `data.train`); `line`/`column`
 * locate a cell of a CSV or JSONL part.
 *
 * @example
 * ```ts
 * const issue: FieldIssue = { path: "data.train", message: 'not a number: "x"', line: 3, column: "x2" };
 * ```
 */
export type FieldIssue = NonNullable<Problem["errors"]>[number];

/**
 * Base class of every error the SDK throws. For HTTP errors `status`, `headers` and the
 * problem fields are set; for connection errors, timeouts and aborts they are undefined.
 *
 * @example
 * ```ts
 * try {
 *   await client.fineTunes.create(request);
 * } catch (err) {
 *   if (err instanceof EdgetuneAPIError) console.error(err.status, err.code, err.detail, err.errors.map((e) => e.path));
 * }
 * ```
 */
export class EdgetuneAPIError extends Error {
  /** The HTTP status, or undefined when no response arrived. */
  readonly status: number | undefined;
  /** The response headers, or undefined when no response arrived. */
  readonly headers: Headers | undefined;
  /** The problem body as received (undefined without a response). */
  readonly problem: Problem | undefined;
  /** Problem type: a URI reference to the code's entry in the API's /docs page. */
  readonly type: string | undefined;
  /** Short human summary of the status ("Invalid request"). */
  readonly title: string | undefined;
  /** What went wrong, for a human. */
  readonly detail: string | undefined;
  /** Stable machine-readable code (`invalid_request`, `weights_mismatch`, `over_budget`, ...). */
  readonly code: string | undefined;
  /** The offending fields, when the API named them (empty otherwise). */
  readonly errors: FieldIssue[];

  constructor(message: string, init: { status?: number; headers?: Headers; problem?: Problem; cause?: unknown } = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.status = init.status;
    this.headers = init.headers;
    this.problem = init.problem;
    this.type = init.problem?.type;
    this.title = init.problem?.title;
    this.detail = init.problem?.detail;
    this.code = init.problem?.code;
    this.errors = init.problem?.errors ?? [];
  }

  /**
   * The error class for an HTTP status: `BadRequestError` for 400, ..., `InternalServerError`
   * for 5xx, `EdgetuneAPIError` itself for any other status.
   *
   * @example
   * ```ts
   * const err = EdgetuneAPIError.fromResponse(404, { type: "/docs#problem-not_found", title: "Not found", status: 404, detail: "No fine-tune with id ft_1.", code: "not_found" }, new Headers());
   * err instanceof NotFoundError; // true
   * ```
   */
  static fromResponse(status: number, problem: Problem, headers: Headers): EdgetuneAPIError {
    const message = `${status} ${problem.code}: ${problem.detail}`;
    const init = { status, headers, problem };
    switch (status) {
      case 400:
        return new BadRequestError(message, init);
      case 401:
        return new AuthenticationError(message, init);
      case 404:
        return new NotFoundError(message, init);
      case 409:
        return new ConflictError(message, init);
      case 413:
        return new PayloadTooLargeError(message, init);
      case 415:
        return new UnsupportedMediaTypeError(message, init);
      case 422:
        return new UnprocessableEntityError(message, init);
      case 429:
        return new RateLimitError(message, init);
      default:
        return status >= 500 ? new InternalServerError(message, init) : new EdgetuneAPIError(message, init);
    }
  }
}

type StatusInit = { status: number; headers: Headers; problem: Problem };

/**
 * 400: the body is not JSON, not multipart, or does not match the request schema; `errors[].path`
 * names each field.
 *
 * @example
 * ```ts
 * catch (err) { if (err instanceof BadRequestError) console.error(err.errors); } // [{ path: "training.optimizer.betas[1]", ... }]
 * ```
 */
export class BadRequestError extends EdgetuneAPIError {
  declare readonly status: 400;
  constructor(message: string, init: StatusInit) {
    super(message, init);
  }
}

/**
 * 401: no API key, or one the server does not know (`Authorization: Bearer <key>`).
 *
 * @example
 * ```ts
 * catch (err) { if (err instanceof AuthenticationError) console.error("set EDGETUNE_API_KEY"); }
 * ```
 */
export class AuthenticationError extends EdgetuneAPIError {
  declare readonly status: 401;
  constructor(message: string, init: StatusInit) {
    super(message, init);
  }
}

/**
 * 404: no such fine-tune, or one that belongs to another API key.
 *
 * @example
 * ```ts
 * catch (err) { if (err instanceof NotFoundError) return null; }
 * ```
 */
export class NotFoundError extends EdgetuneAPIError {
  declare readonly status: 404;
  constructor(message: string, init: StatusInit) {
    super(message, init);
  }
}

/**
 * 409: the job is not in a state that allows the call (`weights_not_ready` while it runs,
 * `already_finished` when cancelling an ended job).
 *
 * @example
 * ```ts
 * catch (err) { if (err instanceof ConflictError && err.code === "already_finished") return; }
 * ```
 */
export class ConflictError extends EdgetuneAPIError {
  declare readonly status: 409;
  constructor(message: string, init: StatusInit) {
    super(message, init);
  }
}

/**
 * 413: the body is larger than the server's `MAX_BODY_BYTES`.
 *
 * @example
 * ```ts
 * catch (err) { if (err instanceof PayloadTooLargeError) console.error(err.detail); }
 * ```
 */
export class PayloadTooLargeError extends EdgetuneAPIError {
  declare readonly status: 413;
  constructor(message: string, init: StatusInit) {
    super(message, init);
  }
}

/**
 * 415: a body or file part of a content type the API does not read (data parts must be CSV or JSONL).
 *
 * @example
 * ```ts
 * catch (err) { if (err instanceof UnsupportedMediaTypeError) console.error(err.errors[0]?.path); } // "train"
 * ```
 */
export class UnsupportedMediaTypeError extends EdgetuneAPIError {
  declare readonly status: 415;
  constructor(message: string, init: StatusInit) {
    super(message, init);
  }
}

/**
 * 422: well-formed but cannot be trained as asked: weights that do not fit the model, labels
 * out of range, NaN in data, a sync run over the in-Worker budget (`over_budget`).
 *
 * @example
 * ```ts
 * catch (err) { if (err instanceof UnprocessableEntityError && err.code === "over_budget") await client.fineTunes.create({ ...request, mode: "async" }); }
 * ```
 */
export class UnprocessableEntityError extends EdgetuneAPIError {
  declare readonly status: 422;
  constructor(message: string, init: StatusInit) {
    super(message, init);
  }
}

/**
 * 429: too many requests; the SDK already retried, honouring `Retry-After`.
 *
 * @example
 * ```ts
 * catch (err) { if (err instanceof RateLimitError) console.error("retry after", err.headers?.get("retry-after")); }
 * ```
 */
export class RateLimitError extends EdgetuneAPIError {
  declare readonly status: 429;
  constructor(message: string, init: StatusInit) {
    super(message, init);
  }
}

/**
 * Any 5xx: a server fault, a dependency down (503), or a feature not deployed (501
 * `offload_unavailable`). 5xx other than 501 are retried before this is thrown.
 *
 * @example
 * ```ts
 * catch (err) { if (err instanceof InternalServerError) console.error(err.status, err.code); }
 * ```
 */
export class InternalServerError extends EdgetuneAPIError {
  declare readonly status: number;
  constructor(message: string, init: StatusInit) {
    super(message, init);
  }
}

/**
 * No response: DNS, refused connection, reset, or a stream that dropped (after the retries).
 * The underlying error is `cause`.
 *
 * @example
 * ```ts
 * catch (err) { if (err instanceof APIConnectionError) console.error("is the server running?", err.cause); }
 * ```
 */
export class APIConnectionError extends EdgetuneAPIError {
  declare readonly status: undefined;
  constructor(message = "Connection error.", cause?: unknown) {
    super(message, { cause });
  }
}

/**
 * The request (or `waitForCompletion`) took longer than its timeout.
 *
 * @example
 * ```ts
 * const client = new Edgetune({ baseURL, timeout: 30_000 });
 * catch (err) { if (err instanceof APITimeoutError) console.error("timed out"); }
 * ```
 */
export class APITimeoutError extends APIConnectionError {
  constructor(message = "Request timed out.", cause?: unknown) {
    super(message, cause);
  }
}

/**
 * The caller's AbortSignal fired. The signal's reason is `cause`.
 *
 * @example
 * ```ts
 * const ac = new AbortController();
 * setTimeout(() => ac.abort(), 1000);
 * try { await client.fineTunes.retrieve(id, { signal: ac.signal }); } catch (err) { err instanceof APIUserAbortError; }
 * ```
 */
export class APIUserAbortError extends EdgetuneAPIError {
  declare readonly status: undefined;
  constructor(message = "Request was aborted.", cause?: unknown) {
    super(message, { cause });
  }
}

/**
 * An explanation that ran on a GPU node ended without a result (failed, or cancelled); the
 * explanation resource, with its `error`, is `explanation`.
 *
 * @example
 * ```ts
 * try { await client.fineTunes.explain(id, spec); } catch (err) { if (err instanceof ExplanationFailedError) console.log(err.explanation.error?.message); }
 * ```
 */
export class ExplanationFailedError extends Error {
  constructor(readonly explanation: Explanation) {
    super(`Explanation ${explanation.id} of ${explanation.fine_tune} ${explanation.status}${explanation.error ? `: ${explanation.error.message}` : ""}`);
    this.name = "ExplanationFailedError";
  }
}
