/**
 * Typed errors shared by the engine, the formats and the HTTP API.
 *
 * Every error a caller can cause carries an HTTP status, a stable `code`, and a list of
 * field issues whose `path` names the offending field the way a user wrote it
 * (`training.optimizer.betas[1]`, `weights["fc1.weight"]`, `data.train.x[12]`).
 * The API turns them into RFC 9457 problem+json without knowing where they came from.
 *
 * Runtime-agnostic: no Node or Workers API here.
 */

/** One offending field. `line`/`column` locate a cell of a CSV or JSONL file part. */
export interface FieldIssue {
  path: string;
  message: string;
  line?: number;
  column?: string;
}

/** HTTP statuses a caller-caused error may carry. */
export type ClientErrorStatus = 400 | 404 | 408 | 409 | 413 | 415 | 422 | 429;

/**
 * Base class of every error edgetune raises on purpose.
 *
 * @example
 * ```ts
 * try { await train(request); }
 * catch (e) { if (e instanceof EdgetuneError) console.log(e.status, e.errors); }
 * ```
 */
export class EdgetuneError extends Error {
  readonly status: ClientErrorStatus | 500 | 503;
  readonly code: string;
  readonly errors: FieldIssue[];

  constructor(
    status: EdgetuneError["status"],
    code: string,
    message: string,
    errors: FieldIssue[] = [],
  ) {
    super(message);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    this.errors = errors;
  }
}

/**
 * The request does not match the schema (wrong type, missing field, value out of range). HTTP 400.
 *
 * @example
 * ```ts
 * throw new RequestValidationError([{ path: "training.epochs", message: "must be >= 1" }]);
 * ```
 */
export class RequestValidationError extends EdgetuneError {
  constructor(errors: FieldIssue[], message = summarize("Invalid request", errors)) {
    super(400, "invalid_request", message, errors);
  }
}

/**
 * The request is well-formed but cannot be trained as asked: a shape mismatch between
 * model and weights, a label out of range, a schedule that runs past its end. HTTP 422.
 *
 * @example
 * ```ts
 * throw new UnprocessableError("shape_mismatch", [{ path: 'weights["fc1.weight"]', message: "shape [4,3], model expects [10,10]" }]);
 * ```
 */
export class UnprocessableError extends EdgetuneError {
  constructor(code: string, errors: FieldIssue[], message = summarize("Unprocessable request", errors)) {
    super(422, code, message, errors);
  }
}

/** Names of the safetensors rules the reader enforces (see formats/safetensors.ts). */
export type SafetensorsRule =
  | "file_too_small"
  | "header_too_large"
  | "header_past_eof"
  | "header_not_utf8"
  | "header_not_json"
  | "header_not_object"
  | "duplicate_key"
  | "invalid_entry"
  | "unknown_dtype"
  | "unsupported_dtype"
  | "invalid_shape"
  | "invalid_offsets"
  | "offsets_not_contiguous"
  | "byte_length_mismatch"
  | "trailing_bytes"
  | "invalid_metadata";

/**
 * A safetensors file broke one of the format's rules. HTTP 422, path `weights` or
 * `weights["<tensor>"]`.
 *
 * @example
 * ```ts
 * throw new SafetensorsError("unknown_dtype", 'dtype "Q4" is not a safetensors dtype', "fc1.weight");
 * ```
 */
export class SafetensorsError extends UnprocessableError {
  readonly rule: SafetensorsRule;
  readonly tensor: string | undefined;

  constructor(rule: SafetensorsRule, message: string, tensor?: string, field = "weights") {
    const path = tensor === undefined ? field : `${field}[${JSON.stringify(tensor)}]`;
    super(`safetensors_${rule}`, [{ path, message }], `Invalid safetensors (${rule}): ${message}`);
    this.rule = rule;
    this.tensor = tensor;
  }
}

/**
 * A dataset (inline JSON, CSV or JSONL) is malformed or does not fit the model: ragged
 * rows, non-numbers, NaN/Inf, labels out of range for the loss, no rows. HTTP 422.
 *
 * @example
 * ```ts
 * throw new DatasetError([{ path: "data.train", line: 14, column: "x3", message: 'not a number: "abc"' }]);
 * ```
 */
export class DatasetError extends UnprocessableError {
  constructor(errors: FieldIssue[], message = summarize("Invalid dataset", errors)) {
    super("invalid_dataset", errors, message);
  }
}

/** A body or file part is larger than the configured limit. HTTP 413. */
export class PayloadTooLargeError extends EdgetuneError {
  constructor(path: string, message: string) {
    super(413, "payload_too_large", message, [{ path, message }]);
  }
}

/** A body or file part has a content type edgetune cannot read. HTTP 415. */
export class UnsupportedMediaTypeError extends EdgetuneError {
  constructor(path: string, message: string) {
    super(415, "unsupported_media_type", message, [{ path, message }]);
  }
}

function summarize(prefix: string, errors: FieldIssue[]): string {
  if (errors.length === 0) return prefix;
  const first = errors[0]!;
  const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : "";
  return `${prefix}: ${first.path}: ${first.message}${more}`;
}
