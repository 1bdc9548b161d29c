/**
 * The downloaded weights, listed with the API's own safetensors reader (src/formats).
 */
import { parseSafetensors } from "../formats/safetensors.js";

/**
 * One line per tensor: name, dtype and shape, in the file's order.
 *
 * @example
 * ```ts
 * describeWeights(bytes); // "fc1.weight  F32 [32, 2]\nfc1.bias  F32 [32]\n..."
 * ```
 */
export function describeWeights(bytes: Uint8Array): string {
  const file = parseSafetensors(bytes);
  return [...file.tensors.values()].map((t) => `${t.name}  ${t.dtype} [${t.shape.join(", ")}]`).join("\n");
}
