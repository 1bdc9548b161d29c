/**
 * Short, safe descriptions of untrusted values for error messages: never recursive (a value
 * nested ten thousand deep must not overflow the stack) and never long.
 */

/**
 * A value as an error message shows it: a short JSON form for primitives, a kind for the rest.
 *
 * @example
 * ```ts
 * describeValue("abc");        // '"abc"'
 * describeValue([[[1]]]);      // "a list"
 * describeValue({ a: 1 });     // "an object"
 * describeValue(new Float32Array(3)); // "a Float32Array (a typed array, not a list)"
 * describeValue(undefined);    // "missing"
 * ```
 */
export function describeValue(value: unknown, max = 40): string {
  if (value === undefined) return "missing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  // (train() callers pass typed arrays; JSON never holds one)
  if (ArrayBuffer.isView(value)) return `a ${Object.prototype.toString.call(value).slice(8, -1)} (a typed array, not a list)`;
  if (typeof value === "object") return "an object";
  const text = typeof value === "string" ? JSON.stringify(value.length > max ? `${value.slice(0, max)}...` : value) : String(value);
  return text.length > max + 8 ? `${text.slice(0, max + 5)}...` : text;
}

/**
 * A list of names for a message, at most `max` of them.
 *
 * @example
 * ```ts
 * listNames(["a", "b", "c"], 2); // '"a", "b" and 1 more'
 * ```
 */
export function listNames(names: readonly string[], max = 20): string {
  const shown = names.slice(0, max).map((n) => describeValue(n, 60));
  return names.length > max ? `${shown.join(", ")} and ${names.length - max} more` : shown.join(", ");
}
