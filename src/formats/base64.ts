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

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** ASCII codes of the 64 output characters, indexed by sextet. */
const ENCODE_TABLE = new Uint8Array(64);
for (let i = 0; i < 64; i++) ENCODE_TABLE[i] = ALPHABET.charCodeAt(i);

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

/** Output characters per TextDecoder call: bounded memory for the intermediate ASCII bytes. */
const ENCODE_CHUNK_CHARS = 1 << 22;

const asciiDecoder = new TextDecoder();

/**
 * Encodes bytes as standard base64 with `=` padding.
 *
 * @example
 * ```ts
 * encodeBase64(new Uint8Array([104, 105])); // "aGk="
 * ```
 */
export function encodeBase64(bytes: Uint8Array): string {
  const parts: string[] = [];
  // A multiple of 3 input bytes per chunk so only the final chunk needs padding.
  const bytesPerChunk = (ENCODE_CHUNK_CHARS / 4) * 3;
  for (let start = 0; start < bytes.length; start += bytesPerChunk) {
    const end = Math.min(bytes.length, start + bytesPerChunk);
    parts.push(encodeChunk(bytes, start, end));
  }
  return parts.join("");
}

function encodeChunk(bytes: Uint8Array, start: number, end: number): string {
  const length = end - start;
  const out = new Uint8Array(Math.ceil(length / 3) * 4);
  let o = 0;
  let i = start;
  for (const wholeEnd = start + length - (length % 3); i < wholeEnd; i += 3) {
    const triple = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out[o++] = ENCODE_TABLE[triple >>> 18]!;
    out[o++] = ENCODE_TABLE[(triple >>> 12) & 63]!;
    out[o++] = ENCODE_TABLE[(triple >>> 6) & 63]!;
    out[o++] = ENCODE_TABLE[triple & 63]!;
  }
  const leftover = end - i;
  if (leftover === 1) {
    const b0 = bytes[i]!;
    out[o++] = ENCODE_TABLE[b0 >>> 2]!;
    out[o++] = ENCODE_TABLE[(b0 & 3) << 4]!;
    out[o++] = 61; // "="
    out[o++] = 61;
  } else if (leftover === 2) {
    const pair = (bytes[i]! << 8) | bytes[i + 1]!;
    out[o++] = ENCODE_TABLE[pair >>> 10]!;
    out[o++] = ENCODE_TABLE[(pair >>> 4) & 63]!;
    out[o++] = ENCODE_TABLE[(pair & 15) << 2]!;
    out[o++] = 61;
  }
  return asciiDecoder.decode(out);
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
