/**
 * Property tests of base64: exact round trips in every accepted spelling, and for arbitrary
 * strings, the decoder accepts exactly what an independent grammar accepts, decodes it as
 * Node's Buffer does, and otherwise throws RequestValidationError naming the field.
 */
import { afterAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { decodeBase64, encodeBase64 } from "../../src/formats/base64.js";
import { RequestValidationError } from "../../src/errors.js";
import { anyString, checkProperty, expectTyped, meterAllocations, printReports, tokenString } from "./fuzz.js";

afterAll(() => printReports("base64"));

/** The grammar: base64 characters of either alphabet, ASCII whitespace anywhere, and `=` padding only at the end, completing the last quantum. */
function grammarAccepts(text: string): boolean {
  const compact = text.replace(/[ \t\n\r\f\v]/g, "");
  const match = /^([A-Za-z0-9+/_-]*)(=*)$/.exec(compact);
  if (!match) return false;
  const tail = match[1]!.length % 4;
  const padding = match[2]!.length;
  if (tail === 1) return false;
  return padding === 0 || (tail !== 0 && padding === 4 - tail);
}

describe("base64", () => {
  it("decodeBase64(encodeBase64(b)) === b, also line-wrapped, URL-safe and unpadded", async () => {
    await checkProperty(
      "base64: round trip",
      fc.property(fc.uint8Array({ maxLength: 2048 }), fc.constantFrom("plain", "wrapped", "urlsafe", "unpadded", "spaced"), (bytes, spelling) => {
        let text = encodeBase64(bytes);
        expect(text).toBe(Buffer.from(bytes).toString("base64"));
        if (spelling === "wrapped") text = text.replace(/.{1,76}/g, "$&\r\n");
        if (spelling === "urlsafe") text = text.replaceAll("+", "-").replaceAll("/", "_");
        if (spelling === "unpadded") text = text.replace(/=+$/, "");
        if (spelling === "spaced") text = ` \t${text.split("").join(" ")}\n`;
        const decoded = decodeBase64(text);
        expect(decoded).toEqual(bytes);
        // the output is never much larger than the bytes it holds
        expect(decoded.buffer.byteLength).toBeLessThanOrEqual(2 * decoded.length + 8);
      }),
      2000,
    );
  });

  it("arbitrary strings: accepted exactly by the grammar, decoded as Buffer does, else RequestValidationError", async () => {
    const BASE64_TOKENS = ["A", "Q", "w", "/", "+", "-", "_", "=", "==", "===", " ", "\n", "\r\n", "\t", "\u000b", "\u000c", "\u00a0", "aGk", "aGk=", "AAAA", "$", "é", "\u0000", "\u{1f600}"];
    await checkProperty(
      "base64: arbitrary strings",
      fc.property(fc.oneof(tokenString(BASE64_TOKENS, 40), anyString, fc.base64String({ maxLength: 40 })), fc.constantFrom("weights", "data.x"), (text, field) => {
        const { value, error, report } = meterAllocations(() => decodeBase64(text, field));
        expect(report.totalBytes).toBeLessThanOrEqual(text.length + 16);
        const expected = grammarAccepts(text);
        if (error !== undefined) {
          const typed = expectTyped(error, [RequestValidationError]);
          expect(typed.status).toBe(400);
          expect(typed.errors[0]!.path).toBe(field);
          expect(expected, `grammar accepts ${JSON.stringify(text)} but the decoder said: ${typed.message}`).toBe(false);
        } else {
          expect(expected, `grammar rejects ${JSON.stringify(text)} but the decoder accepted it`).toBe(true);
          expect(value).toEqual(new Uint8Array(Buffer.from(text, "base64")));
        }
      }),
      5000,
    );
  });
});
