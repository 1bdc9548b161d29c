/**
 * The one error envelope: RFC 9457 problem+json. Every 4xx/5xx the API sends goes through
 * here, from typed engine/format errors, Hono's HTTP exceptions, bad JSON, or bugs (500,
 * without a stack trace).
 */
import type { TypedResponse } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { EdgetuneError, type FieldIssue } from "../errors.js";
import type { Problem } from "../schema/job.js";

const TITLES: Record<number, string> = {
  400: "Invalid request",
  401: "Unauthorized",
  404: "Not found",
  405: "Method not allowed",
  409: "Conflict",
  413: "Payload too large",
  415: "Unsupported media type",
  422: "Unprocessable request",
  429: "Too many requests",
  500: "Internal error",
  501: "Not implemented",
  503: "Service unavailable",
};

/** The media type of every error body. */
export const PROBLEM_JSON = "application/problem+json";

/**
 * Builds a problem body. `type` points at the code's entry in the docs page.
 *
 * @example
 * ```ts
 * problem(404, "not_found", "No fine-tune with id ft_123");
 * ```
 */
export function problem<S extends number>(status: S, code: string, detail: string, errors?: FieldIssue[]): Problem & { status: S } {
  return {
    type: `/docs#problem-${code}`,
    title: TITLES[status] ?? "Error",
    status,
    detail,
    code,
    ...(errors && errors.length > 0 ? { errors } : {}),
  };
}

/**
 * A problem+json Response.
 *
 * @example
 * ```ts
 * return problemResponse(problem(401, "unauthorized", "Missing bearer token"), { "WWW-Authenticate": "Bearer" });
 * ```
 */
export function problemResponse<S extends number>(body: Problem & { status: S }, headers: Record<string, string> = {}): ProblemResponse<S> {
  return new Response(JSON.stringify(body), {
    status: body.status,
    headers: { "content-type": PROBLEM_JSON, ...headers },
  }) as ProblemResponse<S>;
}

/**
 * A problem+json Response typed with its status, so that the handler of a route defined with
 * `createRoute` may return it for a status the route declares (with `problemResponses`).
 */
export type ProblemResponse<S extends number> = Response & TypedResponse<Problem & { status: S }, S extends ContentfulStatusCode ? S : ContentfulStatusCode, "json">;

/**
 * Maps anything thrown while handling a request to a problem. Unknown errors become a 500
 * whose detail carries no internals (the caller logs the error itself).
 *
 * @example
 * ```ts
 * app.onError((err, c) => problemResponse(toProblem(err)));
 * ```
 */
export function toProblem(err: unknown): Problem {
  if (err instanceof EdgetuneError) return problem(err.status, err.code, err.message, err.errors);
  if (err instanceof HTTPException) {
    const status = err.status;
    const code = status === 413 ? "payload_too_large" : status === 401 ? "unauthorized" : `http_${status}`;
    const detail = err.message || TITLES[status] || "HTTP error";
    return problem(status, code, detail);
  }
  return problem(500, "internal_error", "An unexpected error occurred. It has been logged; please retry or report it.");
}
