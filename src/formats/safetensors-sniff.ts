/**
 * Telling a safetensors file from text by its first bytes, with no other import: the SDK uses it
 * to send a Uint8Array dataset as a safetensors part, the API to read an untyped part.
 */

/**
 * Whether bytes start like a safetensors file: a little-endian u64 header length that fits in
 * the bytes, followed by `{`. A CSV or JSONL file never does (its first 8 bytes read as a length
 * far beyond its size), so a part without a telling type or name can be recognised by content.
 *
 * @example
 * ```ts
 * looksLikeSafetensors(writeSafetensors([{ name: "x", shape: [1, 1], data: new Float32Array([1]) }])); // true
 * looksLikeSafetensors(new TextEncoder().encode("x0,y\n1,0\n")); // false
 * ```
 */
export function looksLikeSafetensors(bytes: Uint8Array): boolean {
  if (bytes.length < 10) return false;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getUint32(0, true);
  return view.getUint32(4, true) === 0 && headerLength >= 2 && 8 + headerLength <= bytes.length && bytes[8] === 0x7b;
}
