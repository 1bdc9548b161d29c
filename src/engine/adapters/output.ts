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
import type { NamedTensor } from "../backend.js";
import type { CompiledModel } from "../graph/types.js";
import type { HfTask } from "../huggingface/define.js";
import type { LoraAdapter } from "./lora.js";
import { PEFT_PREFIX } from "./resolve.js";

/** The run an adapter output is made from. */
export interface AdapterRun {
  model: CompiledModel;
  /** State names as the model names them, when the base file's prefix was left out (GPT-2 without "transformer."). */
  originalNames: ReadonlyMap<string, string> | null;
}

/**
 * The tensors of an adapter run in the requested format.
 *
 * @example
 * ```ts
 * const tensors = adapterOutput(await backend.parameters(), { model, originalNames: null }, "peft");
 * ```
 */
export function adapterOutput(tensors: readonly NamedTensor[], run: AdapterRun, format: "full" | "peft" | "merged"): NamedTensor[] {
  const { model } = run;
  const lora = model.lora!;
  if (format === "full") return [...tensors];
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const nameOf = (index: number) => model.state[index]!.name;
  const adapterNames = new Set(lora.modules.flatMap((m) => [nameOf(m.a), nameOf(m.b)]));
  if (format === "peft") {
    const original = (name: string) => run.originalNames?.get(name) ?? name;
    const trained = model.state.filter((t) => t.trainable).map((t) => t.name);
    return trained.map((name) => ({ ...byName.get(name)!, name: PEFT_PREFIX + original(name) }));
  }
  // merged
  const merged = new Map<string, Float32Array>();
  for (const m of lora.modules) {
    const base = byName.get(nameOf(m.base))!;
    const A = byName.get(nameOf(m.a))!; // [r, in] (embedding: [r, num])
    const B = byName.get(nameOf(m.b))!; // [out, r] (embedding: [dim, r])
    const r = A.shape[0]!, cols = A.shape[1]!, rowsB = B.shape[0]!;
    // delta[i, j] = scaling * sum_k B[i, k] A[k, j]: [out, in] (embedding: [dim, num])
    const w = Float32Array.from(base.data);
    const transposed = m.kind === "embedding" || model.state[m.base]!.transposed === true;
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
 * adapter_config.json as PEFT writes it for this adapter.
 *
 * @example
 * ```ts
 * adapterConfig(request.adapter, model, "causal-lm", "llama"); // { peft_type: "LORA", task_type: "CAUSAL_LM", r: 8, ... }
 * ```
 */
export function adapterConfig(spec: LoraAdapter, model: CompiledModel, task: HfTask | null, modelType: string | null): Record<string, unknown> {
  const lora = model.lora!;
  const fanInFanOut = lora.modules.some((m) => model.state[m.base]!.transposed === true && m.kind === "linear");
  const targets = typeof lora.targets === "string" ? lora.targets : [...new Set(lora.targets)].sort();
  return {
    peft_type: "LORA",
    task_type: task === "causal-lm" ? "CAUSAL_LM" : task === "sequence-classification" ? "SEQ_CLS" : null,
    base_model_name_or_path: null,
    revision: null,
    inference_mode: true,
    r: spec.r,
    lora_alpha: spec.lora_alpha,
    lora_dropout: spec.lora_dropout,
    target_modules: targets,
    bias: spec.bias,
    use_rslora: spec.use_rslora,
    use_dora: false,
    fan_in_fan_out: fanInFanOut,
    modules_to_save: lora.modulesToSave.length > 0 ? [...lora.modulesToSave] : null,
    init_lora_weights: true,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    ...(modelType ? { model_type: modelType } : {}),
  };
}
