/**
 * A streaming multipart/form-data reader (RFC 7578 over RFC 2046 section 5.1.1): parts are found
 * as the body's chunks arrive, and each part's bytes go to a sink of its own as they come, so
 * that a large part (a 45 MB safetensors `weights` part) can be written where it will be used
 * (the kernel core's memory) instead of being held whole in the JavaScript heap, then copied.
 * A boundary may be split across chunks anywhere; only the bytes that could still be the start
 * of a delimiter (at most its length) are carried from one chunk to the next.
 *
 * Runtime-agnostic: it reads from anything with a `read()` like a ReadableStream's reader.
 */
import { RequestValidationError } from "../errors.js";

/**
 * A part's headers, as its Content-Disposition and Content-Type give them.
 *
 * @example
 * ```ts
 * const headers: MultipartPartHeaders = { name: "weights", filename: "model.safetensors", contentType: "application/octet-stream" };
 * ```
 */
export interface MultipartPartHeaders {
  /** The form field's name (Content-Disposition `name`). */
  name: string;
  /** Content-Disposition `filename`, or null when the part is not a file. */
  filename: string | null;
  /** Content-Type, or null when the part has none. */
  contentType: string | null;
}

/**
 * Where one part's bytes go. `write` may keep a chunk only until it returns (the reader reuses
 * nothing, but a chunk may be a view into a larger one): copy what must outlive the call.
 *
 * @example
 * ```ts
 * const chunks: Uint8Array[] = [];
 * const sink: MultipartSink = { write: (c) => void chunks.push(c.slice()), end: () => undefined };
 * ```
 */
export interface MultipartSink {
  write(chunk: Uint8Array): void | Promise<void>;
  /** The part's last byte has been written. */
  end(): void | Promise<void>;
}

/**
 * Something read like a ReadableStream's default reader. A chunk may be a view of a buffer the
 * reader fills again on its next read (a BYOB reader's one buffer): whoever keeps a chunk's bytes
 * past the next read() copies them.
 *
 * @example
 * ```ts
 * const reader: ChunkReader = request.body!.getReader();
 * ```
 */
export interface ChunkReader {
  read(): Promise<{ done: true; value?: undefined } | { done: false; value: Uint8Array }>;
}

/**
 * Options of {@link readMultipartStream}.
 *
 * @example
 * ```ts
 * const options: MultipartReadOptions = { maxHeaderBytes: 8192, field: "(body)" };
 * ```
 */
export interface MultipartReadOptions {
  /** The most bytes one part's header block may have (default 16 KiB): more is a 400. */
  maxHeaderBytes?: number;
  /** The field named by errors about the body's framing (default "(body)"). */
  field?: string;
}

/**
 * The boundary of a multipart/form-data Content-Type header, or a 400 naming `content-type`.
 *
 * @example
 * ```ts
 * multipartBoundary('multipart/form-data; boundary="----x"'); // "----x"
 * ```
 */
export function multipartBoundary(contentType: string): string {
  const match = /;\s*boundary\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/i.exec(contentType);
  const boundary = match ? (match[1] !== undefined ? match[1].replace(/\\(.)/g, "$1") : match[2]!) : "";
  // RFC 2046: 1 to 70 characters
  if (boundary.length < 1 || boundary.length > 70) {
    throw new RequestValidationError([{ path: "content-type", message: "multipart/form-data needs a boundary parameter of 1 to 70 characters" }]);
  }
  return boundary;
}

const CR = 13;
const LF = 10;
const DASH = 45;

/**
 * Reads a multipart/form-data body from `reader`, calling `onPart` with each part's headers as
 * the part starts and writing its content to the sink it returns. Resolves once the closing
 * delimiter has been read (the epilogue after it is not read); a body that is not multipart
 * with this boundary, or that ends inside a part, is a 400 naming `(body)`.
 *
 * @example
 * ```ts
 * await readMultipartStream(request.body!.getReader(), multipartBoundary(type), (headers) => {
 *   const chunks: Uint8Array[] = [];
 *   return { write: (c) => void chunks.push(c.slice()), end: () => console.log(headers.name, chunks.length) };
 * });
 * ```
 */
export async function readMultipartStream(
  reader: ChunkReader,
  boundary: string,
  onPart: (headers: MultipartPartHeaders) => MultipartSink | Promise<MultipartSink>,
  options: MultipartReadOptions = {},
): Promise<void> {
  const field = options.field ?? "(body)";
  const maxHeaderBytes = options.maxHeaderBytes ?? 16 * 1024;
  const invalid = (why: string): never => {
    throw new RequestValidationError([{ path: field, message: `is not valid multipart/form-data: ${why}` }]);
  };
  // "\r\n--boundary": what ends a part's content (RFC 2046: the CRLF belongs to the delimiter)
  const delimiter = new TextEncoder().encode(`\r\n--${boundary}`);
  let carry: Uint8Array = new Uint8Array(0);
  let ended = false;
  /** The unread bytes: what was carried, then the next chunk (null at the end of the body). */
  const more = async (): Promise<boolean> => {
    if (ended) return false;
    // the reader may fill the carried chunk's buffer again (ChunkReader): what is left of it is copied
    if (carry.byteLength > 0) carry = carry.slice();
    const next = await reader.read();
    if (next.done) {
      ended = true;
      return false;
    }
    if (next.value.byteLength === 0) return true;
    carry = carry.byteLength === 0 ? next.value : concat(carry, next.value);
    return true;
  };

  // ---- the preamble: the first delimiter may open the body without its CRLF
  let dropped = false;
  for (;;) {
    const at = findDelimiter(carry, delimiter, 0, !dropped);
    if (at >= 0) {
      carry = carry.subarray(at);
      break;
    }
    // keep only what could still begin the delimiter
    if (carry.byteLength > delimiter.byteLength) {
      carry = carry.subarray(carry.byteLength - delimiter.byteLength);
      dropped = true;
    }
    if (!(await more())) invalid(`no delimiter --${boundary} (the Content-Type's boundary)`);
  }
  for (;;) {
    // ---- after a delimiter ("--boundary" or "\r\n--boundary"): "--" closes the body, else
    // optional transport padding (spaces, tabs) and CRLF open a part
    const skip = carry[0] === CR ? delimiter.byteLength : delimiter.byteLength - 2;
    while (carry.byteLength < skip + 2) if (!(await more())) invalid("the body ends inside a delimiter");
    if (carry[skip] === DASH && carry[skip + 1] === DASH) return;
    let lineEnd = -1;
    for (;;) {
      lineEnd = indexOfCrlf(carry, skip);
      if (lineEnd >= 0) break;
      if (carry.byteLength - skip > 256) invalid("a delimiter is followed by more than padding before its line ends");
      if (!(await more())) invalid("the body ends inside a delimiter");
    }
    for (let i = skip; i < lineEnd; i++) if (carry[i] !== 0x20 && carry[i] !== 0x09) invalid("a delimiter is followed by more than padding before its line ends");
    carry = carry.subarray(lineEnd + 2);

    // ---- the part's headers, up to the empty line
    let headerEnd = -1;
    for (;;) {
      headerEnd = carry[0] === CR && carry[1] === LF ? 0 : indexOfSequence(carry, HEADER_END, 0);
      if (headerEnd > maxHeaderBytes || (headerEnd < 0 && carry.byteLength > maxHeaderBytes + 4)) invalid(`a part's headers are longer than ${maxHeaderBytes} bytes`);
      if (headerEnd >= 0) break;
      if (!(await more())) invalid("the body ends inside a part's headers");
    }
    const headerText = new TextDecoder().decode(carry.subarray(0, headerEnd));
    carry = carry.subarray(headerEnd === 0 ? 2 : headerEnd + 4);
    const headers = parsePartHeaders(headerText, invalid);
    const sink = await onPart(headers);

    // ---- its content, up to the next delimiter
    for (;;) {
      const at = findDelimiter(carry, delimiter, 0, false);
      if (at >= 0) {
        if (at > 0) await sink.write(carry.subarray(0, at));
        carry = carry.subarray(at);
        await sink.end();
        break;
      }
      // all but the tail that could still begin the delimiter is content
      const keep = partialDelimiterTail(carry, delimiter);
      if (carry.byteLength > keep) {
        await sink.write(carry.subarray(0, carry.byteLength - keep));
        carry = carry.subarray(carry.byteLength - keep);
      }
      if (!(await more())) invalid(`the body ends inside part ${JSON.stringify(headers.name)} (no closing delimiter --${boundary}--)`);
    }
  }
}

const HEADER_END = new Uint8Array([CR, LF, CR, LF]);

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}

function indexOfCrlf(bytes: Uint8Array, from: number): number {
  for (let i = bytes.indexOf(CR, from); i >= 0 && i + 1 < bytes.byteLength; i = bytes.indexOf(CR, i + 1)) if (bytes[i + 1] === LF) return i;
  return -1;
}

function indexOfSequence(bytes: Uint8Array, sequence: Uint8Array, from: number): number {
  const first = sequence[0]!;
  for (let i = bytes.indexOf(first, from); i >= 0 && i + sequence.byteLength <= bytes.byteLength; i = bytes.indexOf(first, i + 1)) {
    let j = 1;
    while (j < sequence.byteLength && bytes[i + j] === sequence[j]) j++;
    if (j === sequence.byteLength) return i;
  }
  return -1;
}

/**
 * Where the delimiter starts in `bytes` (its CRLF), or -1; `atStart` also accepts it without
 * the CRLF at offset 0 (the body's first delimiter, RFC 2046).
 */
function findDelimiter(bytes: Uint8Array, delimiter: Uint8Array, from: number, atStart: boolean): number {
  if (atStart && bytes.byteLength >= delimiter.byteLength - 2) {
    let j = 2;
    while (j < delimiter.byteLength && bytes[j - 2] === delimiter[j]) j++;
    if (j === delimiter.byteLength) return 0;
  }
  return indexOfSequence(bytes, delimiter, from);
}

/** How many of the last bytes of `bytes` are a proper prefix of the delimiter (may continue it in the next chunk). */
function partialDelimiterTail(bytes: Uint8Array, delimiter: Uint8Array): number {
  const n = bytes.byteLength;
  for (let keep = Math.min(n, delimiter.byteLength - 1); keep > 0; keep--) {
    let j = 0;
    while (j < keep && bytes[n - keep + j] === delimiter[j]) j++;
    if (j === keep) return keep;
  }
  return 0;
}

/** Content-Disposition (form-data, name, filename) and Content-Type of a part's header block. */
function parsePartHeaders(text: string, invalid: (why: string) => never): MultipartPartHeaders {
  let disposition: string | null = null;
  let contentType: string | null = null;
  for (const line of text.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) invalid(`a part header line has no name: ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "content-disposition") disposition = value;
    else if (name === "content-type") contentType = value;
  }
  if (disposition === null) invalid("a part has no Content-Disposition header");
  const [kind, ...params] = splitParameters(disposition!);
  if (kind!.trim().toLowerCase() !== "form-data") invalid(`a part's Content-Disposition is ${JSON.stringify(kind)}, not form-data`);
  let name: string | null = null;
  let filename: string | null = null;
  for (const p of params) {
    const eq = p.indexOf("=");
    if (eq < 0) continue;
    const key = p.slice(0, eq).trim().toLowerCase();
    let value = p.slice(eq + 1).trim();
    if (value.startsWith('"')) value = value.slice(1, value.endsWith('"') && value.length > 1 ? -1 : undefined).replace(/\\(.)/g, "$1");
    if (key === "name") name = value;
    else if (key === "filename") filename = value;
  }
  if (name === null) invalid("a part's Content-Disposition has no name");
  return { name: name!, filename, contentType };
}

/** `a; b="x;y"; c` -> ["a", ' b="x;y"', " c"]: semicolons inside quoted strings do not split. */
function splitParameters(value: string): string[] {
  const out: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (quoted && ch === "\\") i++;
    else if (ch === '"') quoted = !quoted;
    else if (ch === ";" && !quoted) {
      out.push(value.slice(start, i));
      start = i + 1;
    }
  }
  out.push(value.slice(start));
  return out;
}
