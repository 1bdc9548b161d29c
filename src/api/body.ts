/**
 * Reads a POST /v1/fine-tunes body: JSON, or multipart/form-data with a `request` JSON part,
 * a `weights` safetensors part, `train` / `validation` CSV, JSONL or safetensors parts (SPEC
 * section 3; a safetensors dataset is named *.safetensors or sent as application/octet-stream) and,
 * for a Hugging Face model, its `config` (config.json) and `tokenizer` (tokenizer.json) parts
 * (SPEC section 8).
 * The result is what train() takes: the request (weights as bytes) and pre-parsed tables.
 */
import { EdgetuneError, PayloadTooLargeError, RequestValidationError, UnsupportedMediaTypeError } from "../errors.js";
import { parseCsv, parseJsonl, type Table } from "../formats/dataset.js";
import { looksLikeSafetensors, tableFromSafetensors } from "../formats/dataset-safetensors.js";
import type { TrainRequest } from "../engine/prepare.js";

/** A create request as read from the wire. */
export interface CreateBody {
  request: TrainRequest;
  tables: { train?: Table; validation?: Table };
  /** Bytes of the body as it arrived: what parsing it costs the isolate (budget.ts, parsedRequestBytes). */
  bodyBytes: number;
  kind: "json" | "multipart";
}

/**
 * The deepest JSON a create body may nest: the request's own schema needs 6 levels
 * (data.train.x rows), a Hugging Face config or tokenizer.json a few more. Deeper JSON is refused
 * by a scan over the bytes before any of it is parsed (JSON.parse recurses per level).
 */
export const MAX_JSON_DEPTH = 64;

/** The hint on a 413 for a create body: how to send more data than JSON allows. */
const LARGE_DATA_HINT =
  " JSON numbers cost the isolate about 3.5 bytes of memory per byte of body; send large datasets as binary safetensors tables (a `train` part of multipart/form-data, 4 bytes a value: docs/api.md#binary-datasets-safetensors), or train them on a GPU node (mode \"async\", placement \"gpu-node\").";

const PARTS = new Set(["request", "weights", "adapter_weights", "config", "tokenizer", "train", "validation"]);

/**
 * Parses the body by its content type; 415 for anything but JSON and multipart.
 *
 * @example
 * ```ts
 * const { request, tables } = await readCreateBody(c.req.raw, 64 << 20);
 * ```
 */
export async function readCreateBody(req: Request, maxBytes: number, timeoutMs = BODY_READ_TIMEOUT_MS): Promise<CreateBody> {
  const type = (req.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  const length = Number(req.headers.get("content-length") ?? "NaN");
  if (Number.isFinite(length) && length > maxBytes) {
    throw new PayloadTooLargeError("(body)", `The body is ${length} bytes; the limit is ${maxBytes} bytes (MAX_BODY_BYTES).${LARGE_DATA_HINT}`);
  }
  try {
    if (type === "application/json" || type.endsWith("+json")) {
      const bytes = await limitedBytes(req, maxBytes, timeoutMs);
      return { request: parseJsonObject(new TextDecoder().decode(bytes), "(body)") as TrainRequest, tables: {}, bodyBytes: bytes.byteLength, kind: "json" };
    }
    if (type === "multipart/form-data") return await readMultipart(req, maxBytes, timeoutMs);
  } catch (e) {
    if (e instanceof PayloadTooLargeError && !e.message.includes(LARGE_DATA_HINT)) {
      throw new PayloadTooLargeError("(body)", `The body is larger than the limit of ${maxBytes} bytes (MAX_BODY_BYTES).${LARGE_DATA_HINT}`);
    }
    throw e;
  }
  throw new UnsupportedMediaTypeError(
    "content-type",
    `Content-Type ${type || "(none)"} is not supported: send application/json, or multipart/form-data with request, weights, train and validation parts.`,
  );
}

async function readMultipart(req: Request, maxBytes: number, timeoutMs: number): Promise<CreateBody> {
  // read the bytes under the limit first (Content-Length may be absent), then parse them
  const bytes = await limitedBytes(req, maxBytes, timeoutMs);
  const bodyBytes = bytes.byteLength;
  let form: FormData;
  try {
    form = await new Response(bytes as BodyInit, { headers: { "content-type": req.headers.get("content-type")! } }).formData();
  } catch {
    throw new RequestValidationError([{ path: "(body)", message: "is not valid multipart/form-data" }]);
  }
  for (const name of form.keys()) {
    if (!PARTS.has(name)) {
      throw new RequestValidationError([{ path: name === "" ? "(unnamed part)" : name, message: "unknown part: send request, weights, adapter_weights, config, tokenizer, train and validation" }]);
    }
  }
  const requestPart = form.get("request");
  if (requestPart === null) {
    throw new RequestValidationError([{ path: "request", message: "the multipart body needs a `request` part with the JSON request" }]);
  }
  const request = parseJsonObject(typeof requestPart === "string" ? requestPart : await requestPart.text(), "request") as TrainRequest & {
    data?: Record<string, unknown>;
  };
  const data = (request.data ?? {}) as Record<string, unknown>;
  const weightsPart = form.get("weights");
  if (weightsPart !== null) {
    if (request.weights !== undefined && request.weights !== null) {
      throw new RequestValidationError([{ path: "weights", message: "given both as a part and in the request JSON; send one" }]);
    }
    request.weights = typeof weightsPart === "string" ? weightsPart : new Uint8Array(await weightsPart.arrayBuffer());
  }
  const adapterPart = form.get("adapter_weights");
  if (adapterPart !== null) {
    if (request.adapter_weights !== undefined && request.adapter_weights !== null) {
      throw new RequestValidationError([{ path: "adapter_weights", message: "given both as a part and in the request JSON; send one" }]);
    }
    request.adapter_weights = typeof adapterPart === "string" ? adapterPart : new Uint8Array(await adapterPart.arrayBuffer());
  }
  const configPart = form.get("config");
  if (configPart !== null) attachConfig(request, parseJsonObject(typeof configPart === "string" ? configPart : await configPart.text(), "config"));
  const tokenizerPart = form.get("tokenizer");
  if (tokenizerPart !== null) {
    if (request.tokenizer !== undefined && request.tokenizer !== null) {
      throw new RequestValidationError([{ path: "tokenizer", message: "given both as a part and in the request JSON; send one" }]);
    }
    request.tokenizer = parseJsonObject(typeof tokenizerPart === "string" ? tokenizerPart : await tokenizerPart.text(), "tokenizer");
  }
  const target = (data.target ?? "y") as string | string[];
  const tables: CreateBody["tables"] = {};
  for (const name of ["train", "validation"] as const) {
    const part = form.get(name);
    if (part === null) continue;
    if (data[name] !== undefined) {
      throw new RequestValidationError([{ path: `data.${name}`, message: `given both as a part and in the request JSON; send one` }]);
    }
    const field = `data.${name}`;
    if (typeof part !== "string" && mayBeSafetensors(part)) {
      // read as bytes: a safetensors dataset becomes the table without a text pass
      const bytes = new Uint8Array(await part.arrayBuffer());
      if (isSafetensorsName(part) || looksLikeSafetensors(bytes)) {
        tables[name] = tableFromSafetensors(bytes, field);
        continue;
      }
      const text = new TextDecoder().decode(bytes);
      tables[name] = dataFormat(part, name, text) === "csv" ? parseCsv(text, { target, field }) : parseJsonl(text, { field });
      continue;
    }
    const text = typeof part === "string" ? part : await part.text();
    const format = dataFormat(part, name, text);
    tables[name] = format === "csv" ? parseCsv(text, { target, field }) : parseJsonl(text, { field });
  }
  request.data = data as TrainRequest["data"];
  return { request, tables, bodyBytes, kind: "multipart" };
}

/**
 * A `config` part (a Hub config.json) becomes model.huggingface.config; the request may give
 * the task (`model: {huggingface: {task}}`) or leave `model` out.
 */
function attachConfig(request: TrainRequest, config: Record<string, unknown>): void {
  const model = (request.model ?? {}) as Record<string, unknown>;
  if (typeof model !== "object" || Array.isArray(model)) return; // the schema names it
  if (model.layers !== undefined) {
    throw new RequestValidationError([{ path: "config", message: "is a Hugging Face config.json, but the request's model gives layers: send one of them" }]);
  }
  const hf = (model.huggingface ?? {}) as Record<string, unknown>;
  if (hf.config !== undefined) {
    throw new RequestValidationError([{ path: "model.huggingface.config", message: "given both as the config part and in the request JSON; send one" }]);
  }
  request.model = { ...model, huggingface: { ...hf, config } } as TrainRequest["model"];
}

/** A part that may hold a safetensors dataset: named *.safetensors, or typed application/octet-stream or not at all. */
function mayBeSafetensors(part: File): boolean {
  const type = (part.type ?? "").split(";")[0]!.trim().toLowerCase();
  return isSafetensorsName(part) || type === "application/octet-stream" || type === "";
}

function isSafetensorsName(part: File): boolean {
  return (part.name ?? "").toLowerCase().endsWith(".safetensors");
}

/** CSV or JSONL, from the part's content type, else its file name, else its first character. */
function dataFormat(part: string | File, name: string, text: string): "csv" | "jsonl" {
  const type = typeof part === "string" ? "" : (part.type ?? "").split(";")[0]!.trim().toLowerCase();
  const file = typeof part === "string" ? "" : (part.name ?? "").toLowerCase();
  if (type === "text/csv" || type === "application/csv") return "csv";
  if (["application/jsonl", "application/x-ndjson", "application/ndjson", "application/json-lines", "application/x-jsonlines"].includes(type)) return "jsonl";
  if (file.endsWith(".csv")) return "csv";
  if (file.endsWith(".jsonl") || file.endsWith(".ndjson")) return "jsonl";
  if (type === "" || type === "application/octet-stream" || type === "text/plain") {
    return text.trimStart().startsWith("{") ? "jsonl" : "csv";
  }
  throw new UnsupportedMediaTypeError(name, `part ${name} has content type ${type}; send text/csv or application/jsonl`);
}

/**
 * Refuses JSON nested deeper than MAX_JSON_DEPTH (400 naming `path`) with one pass over the
 * text, before it is parsed: brackets inside strings do not count.
 *
 * @example
 * ```ts
 * checkJsonDepth("[".repeat(100_000), "(body)"); // throws RequestValidationError
 * ```
 */
export function checkJsonDepth(text: string, path: string, maxDepth = MAX_JSON_DEPTH): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const b = text.charCodeAt(i);
    if (inString) {
      if (b === 0x5c) i++; // a backslash escapes the next byte
      else if (b === 0x22) inString = false;
    } else if (b === 0x22) {
      inString = true;
    } else if (b === 0x5b || b === 0x7b) {
      if (++depth > maxDepth) throw new RequestValidationError([{ path, message: `nests JSON deeper than ${maxDepth} levels; no request needs that many` }]);
    } else if (b === 0x5d || b === 0x7d) {
      depth--;
    }
  }
}

function parseJsonObject(text: string, path: string): Record<string, unknown> {
  checkJsonDepth(text, path);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new RequestValidationError([{ path, message: `is not valid JSON (${(e as Error).message})` }]);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new RequestValidationError([{ path, message: "must be a JSON object" }]);
  }
  return value as Record<string, unknown>;
}

/** Reads a text body, refusing (413) once more than maxBytes arrive, whatever Content-Length said. */
/**
 * How long a request body may take to arrive, whole: a client that trickles its upload (or
 * stops sending) holds a connection and a request's memory until then, then gets a 408
 * (issue 21, finding 6: 200 trickled uploads were held for 90 s, never closed).
 */
export const BODY_READ_TIMEOUT_MS = 30_000;

async function limitedText(req: Request, maxBytes: number, timeoutMs = BODY_READ_TIMEOUT_MS): Promise<string> {
  const bytes = await limitedBytes(req, maxBytes, timeoutMs);
  return new TextDecoder().decode(bytes);
}

/** How much of a body must arrive before its declared Content-Length is reserved in one buffer (limitedBytes). */
export const BODY_RESERVE_AFTER_BYTES = 1 << 20;

/**
 * Reads a body under maxBytes and the read deadline: a Content-Length over maxBytes is refused
 * (413) before reading, and so is a body once more than maxBytes arrive, whatever
 * Content-Length said (a chunked body has none); a body not whole within `timeoutMs` is a 408.
 *
 * @example
 * ```ts
 * const bytes = await limitedBytes(c.req.raw, NODE_JSON_BODY_MAX_BYTES);
 * ```
 */
export async function limitedBytes(req: Request, maxBytes: number, timeoutMs = BODY_READ_TIMEOUT_MS): Promise<Uint8Array> {
  if (Number(req.headers.get("content-length") ?? "0") > maxBytes) {
    throw new PayloadTooLargeError("(body)", `The body is larger than the limit of ${maxBytes} bytes.`);
  }
  if (!req.body) return new Uint8Array(0);
  const reader = req.body.getReader();
  let chunks: Uint8Array[] = [];
  let total = 0;
  // a declared length is read straight into one buffer of that size: the body is held once, not
  // as chunks and then their concatenation (a 45 MB weights upload: 45 MB less at the peak). The
  // buffer is reserved only once BODY_RESERVE_AFTER_BYTES have arrived, so that a client that
  // declares much and sends little holds no more than it sent; a body that runs past what it
  // declared goes on in chunks after what was read
  const declared = Number(req.headers.get("content-length") ?? "");
  const reserve = Number.isSafeInteger(declared) && declared > 0 ? declared : 0;
  let whole: Uint8Array | null = null;
  let spilled = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs)));
  try {
    for (;;) {
      const read = await Promise.race([reader.read(), deadline]);
      if (read === "timeout") {
        void reader.cancel().catch(() => undefined);
        throw new EdgetuneError(408, "body_timeout", `The body did not arrive within ${timeoutMs / 1000} s; send it at once, or a smaller one.`, [
          { path: "(body)", message: `not received within ${timeoutMs / 1000} s` },
        ]);
      }
      if (read.done) break;
      if (total + read.value.byteLength > maxBytes) {
        await reader.cancel();
        throw new PayloadTooLargeError("(body)", `The body is larger than the limit of ${maxBytes} bytes.`);
      }
      const end = total + read.value.byteLength;
      if (whole && end <= whole.length) whole.set(read.value, total);
      else if (whole) {
        chunks = [whole.subarray(0, total), read.value];
        whole = null;
        spilled = true;
      } else {
        chunks.push(read.value);
        if (!spilled && reserve > 0 && end <= reserve && end >= Math.min(reserve, BODY_RESERVE_AFTER_BYTES)) {
          whole = new Uint8Array(reserve);
          let at = 0;
          for (const c of chunks) {
            whole.set(c, at);
            at += c.byteLength;
          }
          chunks = [];
        }
      }
      total = end;
    }
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
  if (whole) return total === whole.length ? whole : whole.subarray(0, total);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}

/**
 * Reads a JSON object body (the explain route's) under the size limit: 415 for another content
 * type, 400 for JSON that is not an object, 413 past `maxBytes`.
 *
 * @example
 * ```ts
 * const body = await readJsonBody(c.req.raw, deps.maxBodyBytes);
 * ```
 */
export async function readJsonBody(req: Request, maxBytes: number): Promise<Record<string, unknown>> {
  const type = (req.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/json" && !type.endsWith("+json")) {
    throw new UnsupportedMediaTypeError("content-type", `Content-Type ${type || "(none)"} is not supported: send application/json.`);
  }
  return parseJsonObject(await limitedText(req, maxBytes), "(body)");
}
