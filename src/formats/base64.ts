/**
 * Base64 (RFC 4648) for weights carried inside JSON bodies.
 *
 * Encoding writes the standard alphabet with `=` padding. Decoding is lenient where users
 * differ and strict where bytes would be lost: it accepts the standard and the URL-safe
 * alphabets (even mixed), missing padding, and ASCII whitespace anywhere (line-wrapped
 * output of `base64` CLI tools), but rejects any other character, padding in the middle,
 * and lengths no encoder produces, naming the offset in the text.
 *
 * Table-driven and chunked so tens of MB stay fast: no per-byte string concatenation.
 * Runtime-agnostic: no Buffer, no atob/btoa (which work on Latin-1 strings and are slow).
 */
import { RequestValidationError } from "../errors.js";
import { LITTLE_ENDIAN_HOST } from "./dtype.js";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** ASCII codes of the 64 output characters, indexed by sextet. */
const ENCODE_TABLE = new Uint8Array(64);
for (let i = 0; i < 64; i++) ENCODE_TABLE[i] = ALPHABET.charCodeAt(i);


/**
 * The two output characters of every 12-bit value, as the one Uint16 that writes them in order
 * into a Uint16Array view of the output bytes: one table load and one store per character pair
 * instead of two of each. The first character goes in the low byte on a little-endian host and
 * in the high byte on a big-endian one, so the single encoding loop is correct on both.
 */
const PAIR_TABLE = new Uint16Array(4096);
for (let v = 0; v < 4096; v++) {
  const first = ALPHABET.charCodeAt(v >>> 6);
  const second = ALPHABET.charCodeAt(v & 63);
  PAIR_TABLE[v] = LITTLE_ENDIAN_HOST ? first | (second << 8) : (first << 8) | second;
}

/** Sextet of each ASCII code; the markers below for the rest. */
const INVALID = -1;
const WHITESPACE = -2;
const PAD = -3;
const DECODE_TABLE = new Int8Array(128).fill(INVALID);
for (let i = 0; i < 64; i++) DECODE_TABLE[ALPHABET.charCodeAt(i)] = i;
DECODE_TABLE["-".charCodeAt(0)] = 62; // URL-safe alphabet
DECODE_TABLE["_".charCodeAt(0)] = 63;
DECODE_TABLE["=".charCodeAt(0)] = PAD;
for (const c of [" ", "\t", "\n", "\r", "\f", "\v"]) DECODE_TABLE[c.charCodeAt(0)] = WHITESPACE;

/**
 * Output characters per TextDecoder call, a multiple of 16 (whole 12-byte groups per chunk). Small
 * on purpose: the ASCII bytes go to one reused 32 KB scratch that stays in cache, and each
 * chunk's string is an ordinary young-generation string. The former 4M-character chunks wrote
 * a fresh output-sized buffer and decoded it into a large-object string, which on a 0.8 MB
 * input cost more CPU than the encoding loop; now the final join is the only output-sized
 * allocation (about half of what is left: V8 allocating a megabyte string).
 */
const ENCODE_CHUNK_CHARS = 1 << 15;

const asciiDecoder = new TextDecoder();

/** The chunks' ASCII bytes (made on first use, reused: encodeBase64 is synchronous, so never shared by two calls). */
let encodeScratch: Uint16Array | null = null;

/**
 * Encodes bytes as standard base64 with `=` padding.
 *
 * @example
 * ```ts
 * encodeBase64(new Uint8Array([104, 105])); // "aGk="
 * ```
 */
export function encodeBase64(bytes: Uint8Array): string {
  if (bytes.length === 0) return "";
  encodeScratch ??= new Uint16Array(ENCODE_CHUNK_CHARS / 2);
  const scratch = encodeScratch;
  const ascii = new Uint8Array(scratch.buffer);
  // big-endian 32-bit reads whatever the host's byte order and the view's alignment
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // A multiple of 12 input bytes per chunk: only the final chunk has a partial group or padding.
  const bytesPerChunk = (ENCODE_CHUNK_CHARS / 4) * 3;
  const parts: string[] = [];
  for (let start = 0; start < bytes.length; start += bytesPerChunk) {
    const end = Math.min(bytes.length, start + bytesPerChunk);
    const chars = encodeChunk(bytes, view, start, end, scratch);
    parts.push(asciiDecoder.decode(ascii.subarray(0, chars)));
  }
  return parts.join("");
}

/**
 * Writes the base64 of bytes[start, end) into `out` (pairs of ASCII codes, host order) and
 * returns the number of characters. Twelve input bytes per iteration as three big-endian
 * DataView reads (V8 inlines them as a load and a byte swap) instead of twelve byte loads,
 * each 3-byte group then split into two 12-bit halves looked up in PAIR_TABLE: about twice
 * as fast as per-byte loads and per-character stores. The last 1 to 11 bytes go byte by byte.
 */
function encodeChunk(bytes: Uint8Array, view: DataView, start: number, end: number, out: Uint16Array): number {
  const pairs = PAIR_TABLE;
  let o = 0;
  let i = start;
  for (const groupsEnd = end - 11; i < groupsEnd; i += 12) {
    const w0 = view.getUint32(i);
    const w1 = view.getUint32(i + 4);
    const w2 = view.getUint32(i + 8);
    const t0 = w0 >>> 8;
    const t1 = ((w0 & 0xff) << 16) | (w1 >>> 16);
    const t2 = ((w1 & 0xffff) << 8) | (w2 >>> 24);
    const t3 = w2 & 0xffffff;
    out[o] = pairs[t0 >>> 12]!;
    out[o + 1] = pairs[t0 & 4095]!;
    out[o + 2] = pairs[t1 >>> 12]!;
    out[o + 3] = pairs[t1 & 4095]!;
    out[o + 4] = pairs[t2 >>> 12]!;
    out[o + 5] = pairs[t2 & 4095]!;
    out[o + 6] = pairs[t3 >>> 12]!;
    out[o + 7] = pairs[t3 & 4095]!;
    o += 8;
  }
  for (const wholeEnd = end - ((end - i) % 3); i < wholeEnd; i += 3) {
    const triple = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out[o++] = pairs[triple >>> 12]!;
    out[o++] = pairs[triple & 4095]!;
  }
  const leftover = end - i;
  if (leftover === 0) return o * 2;
  // the padded quantum: through the byte view, in output order whatever the host's byte order
  const ascii = new Uint8Array(out.buffer, out.byteOffset + o * 2, 4);
  if (leftover === 1) {
    const b0 = bytes[i]!;
    ascii[0] = ENCODE_TABLE[b0 >>> 2]!;
    ascii[1] = ENCODE_TABLE[(b0 & 3) << 4]!;
    ascii[2] = 61; // "="
    ascii[3] = 61;
  } else {
    const pair = (bytes[i]! << 8) | bytes[i + 1]!;
    ascii[0] = ENCODE_TABLE[pair >>> 10]!;
    ascii[1] = ENCODE_TABLE[(pair >>> 4) & 63]!;
    ascii[2] = ENCODE_TABLE[(pair & 15) << 2]!;
    ascii[3] = 61;
  }
  return o * 2 + 4;
}

/**
 * Decodes base64 (standard or URL-safe alphabet, padding optional, ASCII whitespace ignored).
 * Throws RequestValidationError with `path: field` on an invalid character or an impossible length.
 *
 * @example
 * ```ts
 * decodeBase64("aGk=");          // Uint8Array [104, 105]
 * decodeBase64("aGk");           // same, padding optional
 * decodeBase64("a$k=", "weights"); // throws: weights: invalid base64 character "$" at offset 1
 * ```
 */
export function decodeBase64(text: string, field = "weights"): Uint8Array {
  // Upper bound; whitespace and padding make the real output shorter.
  const out = new Uint8Array(Math.floor((text.length * 3) / 4) + 3);
  let o = 0;
  let accumulator = 0;
  let sextets = 0; // data characters seen
  let padding = 0;
  let firstPadOffset = -1;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const value = code < 128 ? DECODE_TABLE[code]! : INVALID;
    if (value >= 0) {
      if (padding > 0) fail(field, `data character after padding "=" at offset ${i}`);
      accumulator = (accumulator << 6) | value;
      sextets++;
      if ((sextets & 3) === 0) {
        out[o++] = (accumulator >>> 16) & 255;
        out[o++] = (accumulator >>> 8) & 255;
        out[o++] = accumulator & 255;
        accumulator = 0;
      }
    } else if (value === WHITESPACE) {
      continue;
    } else if (value === PAD) {
      if (padding === 0) firstPadOffset = i;
      padding++;
    } else {
      fail(field, `invalid base64 character ${describeChar(text, i)} at offset ${i}`);
    }
  }
  const tail = sextets & 3;
  if (tail === 1) {
    fail(field, `invalid base64 length: ${sextets} data characters leave 6 dangling bits (a character is missing or extra)`);
  }
  if (padding > 0) {
    // Padding, when present, must complete the last quantum exactly.
    const expected = tail === 0 ? 0 : 4 - tail;
    if (padding !== expected) {
      fail(field, `invalid base64 padding: ${padding} "=" at offset ${firstPadOffset}, expected ${expected}`);
    }
  }
  if (tail === 2) {
    out[o++] = (accumulator >>> 4) & 255;
  } else if (tail === 3) {
    out[o++] = (accumulator >>> 10) & 255;
    out[o++] = (accumulator >>> 2) & 255;
  }
  // Keep the result's backing buffer tight when whitespace made the guess much too large.
  return o * 2 < out.length ? out.slice(0, o) : out.subarray(0, o);
}

function describeChar(text: string, offset: number): string {
  const codePoint = text.codePointAt(offset)!;
  const printable = codePoint >= 0x20 && codePoint !== 0x7f;
  const hex = `U+${codePoint.toString(16).toUpperCase().padStart(4, "0")}`;
  return printable ? `${JSON.stringify(String.fromCodePoint(codePoint))} (${hex})` : hex;
}

function fail(field: string, message: string): never {
  throw new RequestValidationError([{ path: field, message }]);
}
