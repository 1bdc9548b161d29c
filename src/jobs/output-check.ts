/**
 * What a worker may upload as a job's weights: exactly the file the job's run would write
 * (src/engine/train.ts), so that a node, trusted with a token but not with the result, cannot
 * serve the owner anything else (issue 20, finding 3; docs/security.md). The run writes its
 * model's state_dict (CompiledModel.state): every tensor by name, with its shape, in the
 * request's output.dtype (I64 for integer buffers), all values finite (a diverged run keeps its
 * last finite weights, and half-precision overflow is refused or clamped before writing).
 *
 * Runtime-agnostic: typed arrays only.
 */
import { UnprocessableError, type FieldIssue } from "../errors.js";
import { storedHalfDtype } from "../engine/model.js";
import { parseSafetensors, readTensorF32, type SafetensorsDtype } from "../formats/safetensors.js";
import type { PreparedRun } from "../engine/prepare.js";

const STORED: Record<"float32" | "float16" | "bfloat16", SafetensorsDtype> = { float32: "F32", float16: "F16", bfloat16: "BF16" };

/** One tensor the run writes. */
export interface ExpectedTensor {
  name: string;
  shape: readonly number[];
  dtype: SafetensorsDtype;
}

/**
 * The tensors a prepared run's weights file holds, in order.
 *
 * @example
 * ```ts
 * expectedWeights(decodeRunInput(input)); // [{ name: "fc1.weight", shape: [8, 4], dtype: "F32" }, ...]
 * ```
 */
export function expectedWeights(prepared: PreparedRun): ExpectedTensor[] {
  const float = STORED[prepared.request.output.dtype];
  return prepared.model.state.map((t) => ({
    name: t.name, shape: t.shape, dtype: t.dtype === "I64" ? "I64" : (storedHalfDtype(prepared.model, t, prepared.request.output.dtype) ?? float),
  }));
}

/** Issues beyond this many are not listed: one bad file is enough to refuse. */
const MAX_ISSUES = 20;

/**
 * Checks an uploaded weights file against the tensors its run writes: names (none missing, none
 * extra), shapes, dtypes and finite values. Throws UnprocessableError `invalid_weights` (422)
 * whose issues name each offending tensor at `field`; a file that is not safetensors is the
 * parser's 422.
 *
 * @example
 * ```ts
 * checkWeights(bytes, expectedWeights(decodeRunInput(input)), "(body)");
 * ```
 */
export function checkWeights(bytes: Uint8Array, expected: readonly ExpectedTensor[], field: string): void {
  const file = parseSafetensors(bytes, { field });
  const issues: FieldIssue[] = [];
  const issue = (tensor: string, message: string) => issues.push({ path: field, message: `tensor ${JSON.stringify(tensor)} ${message}` });
  const wanted = new Map(expected.map((t) => [t.name, t]));
  for (const t of expected) if (!file.tensors.has(t.name)) issue(t.name, `is missing: this run writes ${expected.length} tensors`);
  for (const [name, info] of file.tensors) {
    const want = wanted.get(name);
    if (!want) {
      issue(name, "is not one of the tensors this run writes");
      continue;
    }
    if (info.shape.length !== want.shape.length || info.shape.some((d, i) => d !== want.shape[i])) {
      issue(name, `has shape ${JSON.stringify(info.shape)}; this run writes ${JSON.stringify(want.shape)}`);
      continue;
    }
    if (info.dtype !== want.dtype) {
      issue(name, `is ${info.dtype}; this run writes ${want.dtype} (the request's output.dtype)`);
      continue;
    }
    if (info.dtype === "I64") continue;
    const values = readTensorF32(file, name, field);
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) issue(name, `holds a value that is not finite (${values[bad]}) at index ${bad}`);
  }
  if (issues.length > 0) {
    const shown = issues.slice(0, MAX_ISSUES);
    if (issues.length > MAX_ISSUES) shown.push({ path: field, message: `and ${issues.length - MAX_ISSUES} more` });
    throw new UnprocessableError("invalid_weights", shown);
  }
}
