/**
 * Reading a Hub checkpoint (model.safetensors) into an architecture's state, as transformers'
 * from_pretrained does, narrowed to what a user would expect of a fine-tuning API:
 *
 *   - keys may lack the base model's prefix ("h.0.attn.c_attn.weight" for "transformer.h.0...");
 *     the result then keeps the file's naming
 *   - buffers of older files (position_ids, GPT-2's attn.bias / masked_bias, rotary inv_freq)
 *     and a tied lm_head.weight are skipped
 *   - keys of another head of the same backbone (BERT's pre-training `cls.*`) are dropped and
 *     reported; a missing task head (classifier, pooler) is initialised and reported
 *   - any other unknown or missing key is a 422 listing the keys
 *   - GPT-2's Conv1D weights are [in, out] in the file and transposed into the state
 *   - LayerNorm's `gamma` / `beta` (older BERT files) are `weight` / `bias`, as _fix_key renames them
 */
import { UnprocessableError, type FieldIssue } from "../../errors.js";
import { readTensorF32, readTensorHalfBits, type SafetensorsFile } from "../../formats/safetensors.js";
import { decodeBf16, decodeF16 } from "../../formats/dtype.js";
import { StateValues } from "../state-values.js";
import type { CheckpointRules, StateTensor } from "../graph/types.js";

/**
 * What reading a checkpoint found.
 *
 * @example
 * ```ts
 * const { values, dropped } = readCheckpoint(file, state, rules);
 * ```
 */
export interface CheckpointRead {
  /** Tensors by state name, in the state block's layout (transposed where the state says). */
  values: StateValues;
  /** The file's keys lack the base prefix: the result is named that way too. */
  prefixless: boolean;
  /** File keys of other heads, skipped. */
  dropped: string[];
  /** State tensors of the task head missing from the file, to be initialised. */
  initialized: string[];
}

/**
 * Maps a checkpoint's keys onto the state and reads the tensors.
 *
 * @example
 * ```ts
 * const read = readCheckpoint(parseSafetensors(bytes, { field: "weights" }), compiled.state, compiled.checkpoint!);
 * read.initialized; // ["classifier.weight", "classifier.bias"] for a bert-base-uncased file
 * ```
 */
export function readCheckpoint(
  file: SafetensorsFile, state: readonly StateTensor[], rules: CheckpointRules, options: { holdHalf?: (t: StateTensor) => 0 | 1 | 2 } = {},
): CheckpointRead {
  const names = new Map(state.map((t) => [t.name, t]));
  const ignore = rules.ignore.map((r) => new RegExp(r));
  const drop = rules.drop.map((r) => new RegExp(r));
  const keys = [...file.tensors.keys()];
  const prefix = rules.basePrefix;
  // prefixless: no key carries the prefix, and some key names a state tensor once prefixed
  const prefixless = prefix !== "" && !keys.some((k) => k.startsWith(prefix)) && keys.some((k) => names.has(prefix + k));
  const issues: FieldIssue[] = [];
  const dropped: string[] = [];
  const values = new StateValues();
  const tiedHead = !names.has("lm_head.weight");
  for (const key of keys) {
    if (ignore.some((r) => r.test(key)) || (tiedHead && key === "lm_head.weight")) continue;
    if (drop.some((r) => r.test(key))) {
      dropped.push(key);
      continue;
    }
    let name = prefixless && names.has(prefix + key) ? prefix + key : key;
    // older BERT files (bert-base-uncased) name LayerNorm's parameters gamma and beta;
    // transformers renames them on load (PreTrainedModel._fix_key), and so does this
    const legacy = name.replace(/\.gamma$/, ".weight").replace(/\.beta$/, ".bias");
    if (!names.has(name) && names.has(legacy)) name = legacy;
    const t = names.get(name);
    if (!t) {
      issues.push({ path: `weights[${JSON.stringify(key)}]`, message: "is not a tensor of this architecture (check config.json against the checkpoint)" });
      continue;
    }
    const info = file.tensors.get(key)!;
    if (info.shape.length !== t.shape.length || info.shape.some((d, i) => d !== t.shape[i])) {
      issues.push({ path: `weights[${JSON.stringify(key)}]`, message: `has shape [${info.shape.join(", ")}] but config.json gives [${t.shape.join(", ")}]` });
      continue;
    }
    // a frozen tensor the run holds in the file's own 16-bit dtype: its bits, not widened (a view
    // into the file; options.holdHalf says which), checked finite by their exponent
    const half = t.transposed ? 0 : (options.holdHalf?.(t) ?? 0);
    if (half !== 0 && info.dtype === (half === 1 ? "F16" : "BF16")) {
      const bits = readTensorHalfBits(file, key, "weights");
      const exponent = half === 1 ? 0x7c00 : 0x7f80;
      const bad = bits.findIndex((b) => (b & exponent) === exponent);
      if (bad >= 0) {
        const one = new Float32Array(1);
        (half === 1 ? decodeF16 : decodeBf16)(bits.subarray(bad, bad + 1), one);
        issues.push({ path: `weights[${JSON.stringify(key)}]`, message: `element ${bad} is ${one[0]}: weights must be finite` });
        continue;
      }
      values.setHalf(name, half, bits);
      continue;
    }
    const data = readTensorF32(file, key, "weights");
    const bad = data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      issues.push({ path: `weights[${JSON.stringify(key)}]`, message: `element ${bad} is ${data[bad]}: weights must be finite` });
      continue;
    }
    values.set(name, t.transposed ? transpose(data, t.shape[0]!, t.shape[1]!) : data);
  }
  const initialized: string[] = [];
  const missing: string[] = [];
  for (const t of state) {
    if (values.has(t.name)) continue;
    if (rules.newHead.some((p) => t.name.startsWith(p))) initialized.push(t.name);
    else missing.push(t.name);
  }
  if (missing.length > 0) {
    const show = (n: string) => (prefixless && n.startsWith(prefix) ? n.slice(prefix.length) : n);
    issues.push({ path: "weights", message: `is missing ${missing.length} tensor(s) of this architecture: ${missing.slice(0, 20).map(show).join(", ")}${missing.length > 20 ? ", ..." : ""}` });
  }
  if (issues.length > 0) throw new UnprocessableError("weights_mismatch", issues);
  return { values, prefixless, dropped, initialized };
}

/**
 * [rows, cols] -> [cols, rows].
 *
 * @example
 * ```ts
 * transpose(new Float32Array([1, 2, 3, 4, 5, 6]), 2, 3); // [1, 4, 2, 5, 3, 6]
 * ```
 */
export function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}
