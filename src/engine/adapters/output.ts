/**
 * What an adapter run returns (`output.format`):
 *
 *   full    every tensor of the run: the base's state_dict names and the adapter's
 *           `<module>.lora_A.weight` / `.lora_B.weight` (`lora_embedding_A` / `_B` for embeddings)
 *   peft    adapter_model.safetensors as PEFT's save_pretrained writes it: the trained tensors
 *           under base_model.model.<name>, and adapter_config.json (result.adapter_config)
 *   merged  the base's names, each adapted weight W0 + scaling * B @ A (merge_and_unload):
 *           transposed for GPT-2's Conv1D, (B @ A)^T for an embedding
 *
 * https://github.com/huggingface/peft/blob/main/src/peft/utils/save_and_load.py
 */
import { UnprocessableError } from "../../errors.js";
import { clampToHalfRange, firstHalfOverflow, HALF_MAX } from "../../formats/dtype.js";
import { parseSafetensors, readTensorF32, writeSafetensors } from "../../formats/safetensors.js";
import type { NamedTensor } from "../backend.js";
import type { CompiledModel } from "../graph/types.js";
import type { HfTask } from "../huggingface/define.js";
import type { LoraAdapter } from "./lora.js";
import { PEFT_PREFIX } from "./resolve.js";

/**
 * Where an adapter run's tensors are, by name: what converting its full output needs. It travels
 * in the full file's metadata (ADAPTER_METADATA_KEY), so a stored file converts on download.
  *
 * @example
 * ```ts
 * const layout = JSON.parse(file.metadata![ADAPTER_METADATA_KEY]!) as LoraLayout;
 * ```
 */
export interface LoraLayout {
  /** The format the request asked for: what a download gives by default. */
  readonly format: "full" | "peft" | "merged";
  readonly modules: readonly {
    readonly base: string;
    readonly a: string;
    readonly b: string;
    readonly kind: "linear" | "embedding";
    readonly scaling: number;
    /** The base weight is [in, out] in the file (GPT-2's Conv1D). */
    readonly transposedBase: boolean;
  }[];
  /** The trained tensors (adapter, modules_to_save, biases): PEFT's file. */
  readonly trained: readonly string[];
  /** The model's own name of a tensor renamed after its checkpoint (a base file without its prefix). */
  readonly original: Readonly<Record<string, string>>;
  /** The request's output.overflow, for a merged download in half precision (absent: "error"). */
  readonly overflow?: "error" | "clamp";
}

/**
 * The safetensors metadata key of a full adapter output's LoraLayout (JSON).
 *
 * @example
 * ```ts
 * parseSafetensors(bytes).metadata?.[ADAPTER_METADATA_KEY]; // the LoraLayout of an adapter run, as JSON
 * ```
 */
export const ADAPTER_METADATA_KEY = "edgetune.lora";

/**
 * The layout of a compiled adapter model.
 *
 * @example
 * ```ts
 * const layout = loraLayout(prepared.model, prepared.originalNames, request.output.format);
 * ```
 */
export function loraLayout(model: CompiledModel, originalNames: ReadonlyMap<string, string> | null, format: LoraLayout["format"]): LoraLayout {
  const name = (i: number) => model.state[i]!.name;
  return {
    format,
    modules: model.lora!.modules.map((m) => ({
      base: name(m.base), a: name(m.a), b: name(m.b), kind: m.kind, scaling: m.scaling, transposedBase: model.state[m.base]!.transposed === true,
    })),
    trained: model.state.filter((t) => t.trainable).map((t) => t.name),
    original: Object.fromEntries(originalNames ?? []),
  };
}

/**
 * The tensors of an adapter run in a format (from the full output).
 *
 * @example
 * ```ts
 * const peft = adapterOutput(await backend.parameters(), loraLayout(model, null, "peft"), "peft");
 * ```
 */
export function adapterOutput(tensors: readonly NamedTensor[], layout: LoraLayout, format: "full" | "peft" | "merged"): NamedTensor[] {
  if (format === "full") return [...tensors];
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const adapterNames = new Set(layout.modules.flatMap((m) => [m.a, m.b]));
  if (format === "peft") {
    // PEFT wraps an adapted module's base: its bias is saved as <module>.base_layer.bias
    const adapted = new Set(layout.modules.map((m) => m.base.slice(0, -".weight".length)));
    const peftName = (name: string) => {
      const own = layout.original[name] ?? name;
      const module = name.slice(0, name.lastIndexOf("."));
      return PEFT_PREFIX + (adapted.has(module) && name.endsWith(".bias") ? `${own.slice(0, -".bias".length)}.base_layer.bias` : own);
    };
    return layout.trained.map((name) => ({ ...byName.get(name)!, name: peftName(name) }));
  }
  // merged
  const merged = new Map<string, Float32Array>();
  for (const m of layout.modules) {
    const base = byName.get(m.base)!;
    const A = byName.get(m.a)!; // [r, in] (embedding: [r, num])
    const B = byName.get(m.b)!; // [out, r] (embedding: [dim, r])
    const r = A.shape[0]!, cols = A.shape[1]!, rowsB = B.shape[0]!;
    // delta[i, j] = scaling * sum_k B[i, k] A[k, j]: [out, in] (embedding: [dim, num])
    const w = Float32Array.from(base.data);
    const transposed = m.kind === "embedding" || m.transposedBase;
    for (let i = 0; i < rowsB; i++) {
      for (let j = 0; j < cols; j++) {
        let sum = 0;
        for (let k = 0; k < r; k++) sum += B.data[i * r + k]! * A.data[k * cols + j]!;
        const at = transposed ? j * rowsB + i : i * cols + j;
        w[at] = Math.fround(w[at]! + Math.fround(Math.fround(sum) * m.scaling));
      }
    }
    merged.set(base.name, w);
  }
  return tensors.filter((t) => !adapterNames.has(t.name)).map((t) => (merged.has(t.name) ? { ...t, data: merged.get(t.name)! } : t));
}

/**
 * A stored weights file as a download: an adapter run's full file in `format` (default: the
 * one its request asked for); any other file as it is. A format for a file without an adapter
 * is a 422 at `format`.
 *
 * @example
 * ```ts
 * const bytes = convertWeights(stored, c.req.query("format"));
 * ```
 */
export function convertWeights(bytes: Uint8Array, format?: string): Uint8Array {
  const file = parseSafetensors(bytes, { field: "weights" });
  const json = file.metadata?.[ADAPTER_METADATA_KEY];
  if (json === undefined) {
    if (format !== undefined && format !== "full") {
      throw new UnprocessableError("invalid_adapter", [{ path: "format", message: `is "${format}", which is for adapter runs; this fine-tune trained no adapter` }]);
    }
    return bytes;
  }
  const layout = JSON.parse(json) as LoraLayout;
  const target = format ?? layout.format;
  if (target !== "full" && target !== "peft" && target !== "merged") {
    throw new UnprocessableError("invalid_adapter", [{ path: "format", message: `is "${target}"; use full, peft or merged` }]);
  }
  const dtypes = new Map([...file.tensors].map(([name, info]) => [name, info.dtype]));
  // peft needs only the trained tensors: the frozen base is not read (nor copied) at all
  const wanted = target === "peft" ? new Set(layout.trained) : null;
  const tensors: NamedTensor[] = [...file.tensors].filter(([name]) => !wanted || wanted.has(name)).map(([name, info]) => ({
    name, shape: [...info.shape], data: readTensorF32(file, name, "weights", { integers: info.dtype === "I64" }), ...(info.dtype === "I64" ? { dtype: "I64" as const } : {}),
  }));
  // the file's dtype is its trained tensors' (output.dtype): a frozen 16-bit base may be stored
  // in its own dtype inside a float32 file (model.ts storedHalfDtype)
  const floatType = layout.trained.map((name) => dtypes.get(name)).find((d) => d !== undefined && d !== "I64") ?? [...dtypes.values()].find((d) => d !== "I64");
  const dtype = floatType === "F16" ? "float16" : floatType === "BF16" ? "bfloat16" : "float32";
  // PEFT's adapter_model.safetensors carries {"format": "pt"} and nothing else
  const metadata: Record<string, string> = target === "peft" ? { format: "pt" } : { format: "pt", producer: "edgetune" };
  if (target === "full") metadata[ADAPTER_METADATA_KEY] = json;
  // a merged weight W0 + s * B @ A can leave the half range that its parts were in
  const out = dtype === "float32" ? adapterOutput(tensors, layout, target) : fitOutputRange(adapterOutput(tensors, layout, target), dtype, layout.overflow ?? "error", "format");
  return writeSafetensors(out, { dtype, metadata });
}

/** The config.json model types whose adapters Workers AI serves: their adapter_config carries model_type. */
const WORKERS_AI_MODEL_TYPES = new Set(["llama", "mistral", "gemma", "gemma2", "gemma3"]);

/**
 * adapter_config.json as PEFT 0.20.0's save_pretrained writes it (LoraConfig's fields, keys
 * sorted), plus `model_type` for a base Workers AI serves. PEFT writes target_modules from a
 * set: here they are sorted; "all-linear" is written as the modules it chose.
 *
 * @example
 * ```ts
 * adapterConfig(request.adapter, model, "causal-lm", "llama"); // { ..., peft_type: "LORA", r: 8, task_type: "CAUSAL_LM", ... }
 * ```
 */
export function adapterConfig(spec: LoraAdapter, model: CompiledModel, task: HfTask | null, modelType: string | null): Record<string, unknown> {
  const lora = model.lora!;
  const fanInFanOut = lora.modules.some((m) => model.state[m.base]!.transposed === true && m.kind === "linear");
  const targets = typeof lora.targets === "string" ? lora.targets : [...new Set(lora.targets)].sort();
  const config: Record<string, unknown> = {
    alora_invocation_tokens: null,
    alpha_pattern: {},
    arrow_config: null,
    // a base that is not a transformers model (a model.layers nn.Sequential) is recorded by class
    auto_mapping: task === null ? { base_model_class: "Sequential", parent_library: "torch.nn.modules.container" } : null,
    base_model_name_or_path: null,
    bias: spec.bias,
    corda_config: null,
    ensure_weight_tying: false,
    eva_config: null,
    exclude_modules: null,
    fan_in_fan_out: fanInFanOut,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: spec.lora_alpha,
    lora_bias: false,
    lora_dropout: spec.lora_dropout,
    lora_ga_config: null,
    megatron_config: null,
    megatron_core: "megatron.core",
    modules_to_save: lora.modulesToSave.length > 0 ? [...lora.modulesToSave] : null,
    monteclora_config: null,
    peft_type: "LORA",
    peft_version: "0.20.0",
    qalora_group_size: 16,
    r: spec.r,
    rank_pattern: {},
    revision: null,
    target_modules: targets,
    target_parameters: null,
    task_type: task === "causal-lm" ? "CAUSAL_LM" : task === "sequence-classification" ? "SEQ_CLS" : null,
    trainable_token_indices: null,
    use_bdlora: null,
    use_dora: false,
    use_qalora: false,
    use_rslora: spec.use_rslora,
    velora_config: null,
  };
  if (modelType && WORKERS_AI_MODEL_TYPES.has(modelType)) config.model_type = modelType;
  return Object.fromEntries(Object.entries(config).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * Fits a run's output tensors to a half-precision output dtype before they are written, where
 * rounding a weight beyond the format's range (float16: 65504) would store +Inf or -Inf
 * (issue 20, finding 7): `overflow` "error" throws UnprocessableError `output_overflow` (422) at
 * `path` naming the first such tensor and value; "clamp" returns copies of those tensors with
 * each such value at the format's largest finite value of its sign. float32 output, integer
 * buffers and tensors within range are returned as they are (never modified).
 *
 * @example
 * ```ts
 * const fitted = fitOutputRange(parameters, request.output.dtype, request.output.overflow);
 * writeSafetensors(fitted, { dtype: request.output.dtype });
 * ```
 */
export function fitOutputRange<T extends { name: string; data: Float32Array; dtype?: "I64" }>(
  tensors: readonly T[],
  dtype: "float32" | "float16" | "bfloat16",
  overflow: "error" | "clamp",
  path = "output.dtype",
): T[] {
  if (dtype === "float32") return [...tensors];
  return tensors.map((t) => {
    if (t.dtype === "I64") return t;
    const at = firstHalfOverflow(t.data, dtype);
    if (at < 0) return t;
    if (overflow === "error") {
      throw new UnprocessableError("output_overflow", [
        {
          path,
          message:
            `is ${dtype}, but tensor ${JSON.stringify(t.name)} holds ${t.data[at]} (at index ${at}), beyond ${dtype}'s largest finite value ` +
            `${HALF_MAX[dtype]}: it would be stored as ${t.data[at]! > 0 ? "+" : "-"}Inf. Ask for output.overflow "clamp" to store the largest finite value instead, or for float32`,
        },
      ]);
    }
    const data = t.data.slice();
    clampToHalfRange(data, dtype);
    return { ...t, data };
  });
}
