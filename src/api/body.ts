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
import { Data } from "../schema/request.js";
import { zodIssues } from "../schema/issues.js";
import { multipartBoundary, readMultipartStream, type ChunkReader, type MultipartSink } from "../formats/multipart.js";

/** A create request as read from the wire. */
export interface CreateBody {
  request: TrainRequest;
  tables: { train?: Table; validation?: Table };
  /** Bytes of the body as it arrived: what parsing it costs the isolate (budget.ts, parsedRequestBytes). */
  bodyBytes: number;
  /**
   * Bytes of the body written into CreateBodyOptions.weightsBuffer (a staged weights part), not
   * held in the JavaScript heap; 0 when none was.
   */
  stagedBytes: number;
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
export async function readCreateBody(req: Request, maxBytes: number, timeoutMs = BODY_READ_TIMEOUT_MS, options: CreateBodyOptions = {}): Promise<CreateBody> {
  const type = (req.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  const length = Number(req.headers.get("content-length") ?? "NaN");
  if (Number.isFinite(length) && length > maxBytes) {
    throw new PayloadTooLargeError("(body)", `The body is ${length} bytes; the limit is ${maxBytes} bytes (MAX_BODY_BYTES).${LARGE_DATA_HINT}`);
  }
  try {
    if (type === "application/json" || type.endsWith("+json")) {
      const bytes = await limitedBytes(req, maxBytes, timeoutMs);
      return { request: parseJsonObject(new TextDecoder().decode(bytes), "(body)") as TrainRequest, tables: {}, bodyBytes: bytes.byteLength, stagedBytes: 0, kind: "json" };
    }
    if (type === "multipart/form-data") return await readMultipart(req, maxBytes, timeoutMs, options);
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

/**
 * Options of {@link readCreateBody}.
 *
 * @example
 * ```ts
 * const body = await readCreateBody(c.req.raw, 64 << 20, BODY_READ_TIMEOUT_MS, { weightsBuffer: (bytes) => new Uint8Array(bytes) });
 * ```
 */
export interface CreateBodyOptions {
  /**
   * Where a multipart `weights` file part goes: called once the part's safetensors header has
   * arrived, with the whole file's length in bytes (8 + header + the data its offsets
   * describe) and where its data starts; the part's bytes are written into the buffer it returns
   * as they arrive (the API hands a view of the kernel core's memory, so that the JavaScript heap
   * never holds the checkpoint: docs/adapters.md, Memory). Absent, or a part whose header cannot
   * be read: the part is held in the heap and validated as before.
   */
  weightsBuffer?: (bytes: number, dataStart: number) => Uint8Array | Promise<Uint8Array>;
}

/** A multipart part as read: a field's text, or a file's name, type and bytes. */
type FormValue = string | FilePart;
interface FilePart {
  name: string;
  type: string;
  bytes: Uint8Array;
  /** written into CreateBodyOptions.weightsBuffer */
  staged?: boolean;
}

/** Headers longer than this are not staged (the part is held whole, and parseSafetensors judges it). */
const STAGED_HEADER_MAX_BYTES = 16 << 20;

async function readMultipart(req: Request, maxBytes: number, timeoutMs: number, options: CreateBodyOptions): Promise<CreateBody> {
  const input = limitedReader(req, maxBytes, timeoutMs);
  const form = new Map<string, FormValue>();
  try {
    await readMultipartStream(input.reader, multipartBoundary(req.headers.get("content-type") ?? ""), (headers) => {
      const { name, filename } = headers;
      if (!PARTS.has(name)) {
        throw new RequestValidationError([{ path: name === "" ? "(unnamed part)" : name, message: "unknown part: send request, weights, adapter_weights, config, tokenizer, train and validation" }]);
      }
      if (form.has(name)) throw new RequestValidationError([{ path: name, message: "sent twice: send each part once" }]);
      const done = (bytes: Uint8Array, staged = false) => {
        form.set(name, filename === null ? new TextDecoder().decode(bytes) : { name: filename, type: headers.contentType ?? "", bytes, staged });
      };
      if (name === "weights" && filename !== null && options.weightsBuffer) return stagedSafetensorsSink(options.weightsBuffer, done);
      return collectingSink(done);
    });
  } finally {
    input.close();
  }
  const bodyBytes = input.bytes();
  const text = (v: FormValue) => (typeof v === "string" ? v : new TextDecoder().decode(v.bytes));
  const requestPart = form.get("request");
  if (requestPart === undefined) {
    throw new RequestValidationError([{ path: "request", message: "the multipart body needs a `request` part with the JSON request" }]);
  }
  const request = parseJsonObject(text(requestPart), "request") as TrainRequest & {
    data?: Record<string, unknown>;
  };
  const data = (request.data ?? {}) as Record<string, unknown>;
  const weightsPart = form.get("weights");
  if (weightsPart !== undefined) {
    if (request.weights !== undefined && request.weights !== null) {
      throw new RequestValidationError([{ path: "weights", message: "given both as a part and in the request JSON; send one" }]);
    }
    request.weights = typeof weightsPart === "string" ? weightsPart : weightsPart.bytes;
  }
  const adapterPart = form.get("adapter_weights");
  if (adapterPart !== undefined) {
    if (request.adapter_weights !== undefined && request.adapter_weights !== null) {
      throw new RequestValidationError([{ path: "adapter_weights", message: "given both as a part and in the request JSON; send one" }]);
    }
    request.adapter_weights = typeof adapterPart === "string" ? adapterPart : adapterPart.bytes;
  }
  const configPart = form.get("config");
  if (configPart !== undefined) attachConfig(request, parseJsonObject(text(configPart), "config"));
  const tokenizerPart = form.get("tokenizer");
  if (tokenizerPart !== undefined) {
    if (request.tokenizer !== undefined && request.tokenizer !== null) {
      throw new RequestValidationError([{ path: "tokenizer", message: "given both as a part and in the request JSON; send one" }]);
    }
    request.tokenizer = parseJsonObject(text(tokenizerPart), "tokenizer");
  }
  // the CSV parts are read before the request is validated: their target column(s) first
  const targetSpec = Data.shape.target.safeParse(data.target);
  if (!targetSpec.success) throw new RequestValidationError(zodIssues(targetSpec.error, "data.target"));
  const target = targetSpec.data;
  const tables: CreateBody["tables"] = {};
  for (const name of ["train", "validation"] as const) {
    const part = form.get(name);
    if (part === undefined) continue;
    if (data[name] !== undefined) {
      throw new RequestValidationError([{ path: `data.${name}`, message: `given both as a part and in the request JSON; send one` }]);
    }
    const field = `data.${name}`;
    if (typeof part !== "string" && mayBeSafetensors(part)) {
      // read as bytes: a safetensors dataset becomes the table without a text pass
      if (isSafetensorsName(part) || looksLikeSafetensors(part.bytes)) {
        tables[name] = tableFromSafetensors(part.bytes, field);
        continue;
      }
    }
    const partText = text(part);
    tables[name] = dataFormat(part, name, partText) === "csv" ? parseCsv(partText, { target, field }) : parseJsonl(partText, { field });
  }
  request.data = data as TrainRequest["data"];
  const weights = form.get("weights");
  const stagedBytes = typeof weights === "object" && weights.staged ? weights.bytes.byteLength : 0;
  return { request, tables, bodyBytes, stagedBytes, kind: "multipart" };
}

/** A sink that holds a part's bytes in the heap, then hands them over whole. */
function collectingSink(done: (bytes: Uint8Array) => void): MultipartSink {
  const chunks: Uint8Array[] = [];
  return {
    write: (chunk) => void chunks.push(chunk.slice()),
    end: () => done(joinChunks(chunks)),
  };
}

function joinChunks(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * A sink for a safetensors file part that holds only its header in the heap: once the 8-byte
 * length and the header have arrived, the file's length is known from the header's
 * data_offsets and the bytes go into the buffer `allocate` returns, as they arrive. The header is
 * read only for its sizes: parseSafetensors validates the file afterwards as it would any
 * other. A header that cannot be read so, or a part longer than its header describes, is held
 * in the heap instead (and parseSafetensors then reports what is wrong with it).
 */
function stagedSafetensorsSink(allocate: NonNullable<CreateBodyOptions["weightsBuffer"]>, done: (bytes: Uint8Array, staged?: boolean) => void): MultipartSink {
  let head: Uint8Array[] = [];
  let headBytes = 0;
  let target: Uint8Array | null = null;
  let written = 0;
  let heap: Uint8Array[] | null = null; // the fallback: held in the heap
  const intoHeap = (chunk: Uint8Array) => void heap!.push(chunk.slice());
  return {
    async write(chunk) {
      if (heap) return intoHeap(chunk);
      if (target) {
        if (written + chunk.byteLength > target.byteLength) {
          // longer than its header says: the heap holds it, and the parser names the fault
          heap = [target.slice(0, written)];
          target = null;
          return intoHeap(chunk);
        }
        target.set(chunk, written);
        written += chunk.byteLength;
        return;
      }
      head.push(chunk.slice());
      headBytes += chunk.byteLength;
      const size = safetensorsSize(head, headBytes);
      if (size === "more") return;
      if (size === null) {
        heap = head;
        return;
      }
      target = await allocate(size.bytes, size.dataStart);
      const bytes = joinChunks(head);
      head = [];
      if (bytes.byteLength > target.byteLength) {
        heap = [bytes];
        target = null;
        return;
      }
      target.set(bytes, 0);
      written = bytes.byteLength;
    },
    end() {
      if (heap) return done(joinChunks(heap));
      if (target) return done(target.subarray(0, written), true);
      done(joinChunks(head));
    },
  };
}

/**
 * A safetensors file's length from its first bytes: "more" until the header has arrived, null
 * when the header cannot give it (too long, not JSON, entries without offsets).
 */
function safetensorsSize(head: Uint8Array[], headBytes: number): { bytes: number; dataStart: number } | "more" | null {
  if (headBytes < 8) return "more";
  const first = joinChunks(head);
  const view = new DataView(first.buffer, first.byteOffset, first.byteLength);
  const headerLength = view.getUint32(0, true);
  if (view.getUint32(4, true) !== 0 || headerLength > STAGED_HEADER_MAX_BYTES) return null;
  const dataStart = 8 + headerLength;
  if (headBytes < dataStart) {
    // keep one chunk, not a list of them, while the header arrives
    head.length = 0;
    head.push(first);
    return "more";
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(first.subarray(8, dataStart)));
  } catch {
    return null;
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) return null;
  let end = 0;
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") continue;
    const offsets = (entry as { data_offsets?: unknown } | null)?.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !Number.isSafeInteger(offsets[1]) || (offsets[1] as number) < 0) return null;
    end = Math.max(end, offsets[1] as number);
  }
  return { bytes: dataStart + end, dataStart };
}

/** The one buffer a multipart body is read into, chunk after chunk, where the body is a byte stream. */
const BODY_READ_BYTES = 256 * 1024;

/**
 * A reader of a byte stream that reads every chunk into one buffer (a BYOB reader), so that a
 * large body leaves no garbage behind: a default reader's chunks are new ArrayBuffers, which
 * stay allocated until V8 next collects, after the weights part has been copied into kernel
 * memory (45 MiB of them in the MiniLM LoRA row, through the whole run: BENCHMARKS.md). Each
 * chunk is valid until the next read (ChunkReader). Null when the stream is not a byte stream.
 */
function bufferReusingReader(body: ReadableStream<Uint8Array>): { read: () => Promise<ReadableStreamReadResult<Uint8Array>>; cancel: () => Promise<void> } | null {
  let byob: ReadableStreamBYOBReader;
  try {
    byob = body.getReader({ mode: "byob" });
  } catch {
    return null; // not a byte stream
  }
  let buffer = new ArrayBuffer(BODY_READ_BYTES);
  return {
    async read() {
      const read = await byob.read(new Uint8Array(buffer, 0, BODY_READ_BYTES));
      // the read hands the buffer back, moved into the view it answers
      if (read.value) buffer = read.value.buffer as ArrayBuffer;
      return read.done ? { done: true, value: undefined } : { done: false, value: read.value };
    },
    cancel: () => byob.cancel(),
  };
}

/**
 * The body as chunks, under maxBytes and the read deadline (as limitedBytes): a 413 once more
 * than maxBytes arrive, a 408 when it is not whole within `timeoutMs`.
 */
function limitedReader(req: Request, maxBytes: number, timeoutMs: number): { reader: ChunkReader; bytes: () => number; close: () => void } {
  const body = req.body ? (bufferReusingReader(req.body) ?? req.body.getReader()) : null;
  let total = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs)));
  const reader: ChunkReader = {
    async read() {
      if (!body) return { done: true };
      const read = await Promise.race([body.read(), deadline]);
      if (read === "timeout") {
        void body.cancel().catch(() => undefined);
        throw new EdgetuneError(408, "body_timeout", `The body did not arrive within ${timeoutMs / 1000} s; send it at once, or a smaller one.`, [
          { path: "(body)", message: `not received within ${timeoutMs / 1000} s` },
        ]);
      }
      if (read.done) return { done: true };
      total += read.value.byteLength;
      if (total > maxBytes) {
        void body.cancel().catch(() => undefined);
        throw new PayloadTooLargeError("(body)", `The body is larger than the limit of ${maxBytes} bytes.`);
      }
      return { done: false, value: read.value };
    },
  };
  return {
    reader,
    bytes: () => total,
    close: () => {
      if (timer !== undefined) clearTimeout(timer);
      // the epilogue (or the rest of a refused body) is not read
      void body?.cancel().catch(() => undefined);
    },
  };
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
function mayBeSafetensors(part: FilePart): boolean {
  const type = (part.type ?? "").split(";")[0]!.trim().toLowerCase();
  return isSafetensorsName(part) || type === "application/octet-stream" || type === "";
}

function isSafetensorsName(part: FilePart): boolean {
  return (part.name ?? "").toLowerCase().endsWith(".safetensors");
}

/** CSV or JSONL, from the part's content type, else its file name, else its first character. */
function dataFormat(part: FormValue, name: string, text: string): "csv" | "jsonl" {
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
