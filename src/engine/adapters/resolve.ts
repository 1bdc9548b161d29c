/**
 * An adapter request made concrete before the model is compiled with it: the target modules
 * (PEFT's default for the architecture, "all-linear", a list or a regular expression) checked
 * against the modules the model has, modules_to_save as PEFT completes it, and the adapter
 * weights a run continues from (adapter_model.safetensors, PEFT's names).
 */
import { UnprocessableError, type FieldIssue } from "../../errors.js";
import { readTensorF32, type SafetensorsFile } from "../../formats/safetensors.js";
import type { LoraBuild } from "../graph/compile.js";
import type { CompiledModel } from "../graph/types.js";
import type { ResolvedArchitecture } from "../huggingface/index.js";
import { transpose } from "../huggingface/checkpoint.js";
import { moduleMatches, type LoraAdapter } from "./lora.js";

/**
 * PEFT's prefix of every key of adapter_model.safetensors (PeftModel.base_model.model).
 *
 * @example
 * ```ts
 * PEFT_PREFIX + "fc1.lora_A.weight"; // "base_model.model.fc1.lora_A.weight"
 * ```
 */
export const PEFT_PREFIX = "base_model.model.";

/** A sequence classifier's head, which PEFT trains in full (PeftModelForSequenceClassification). */
const SEQ_CLS_HEADS = ["classifier", "score"];

/**
 * The Linear and Embedding modules of a compiled model (no adapter), in op order, and the output
 * head (the linear module that writes the logits), for target_modules and its messages.
 *
 * @example
 * ```ts
 * adaptableModules(compileModel(model, null, data)); // { linear: ["fc1", "fc2"], embedding: [], head: "fc2" }
 * ```
 */
export function adaptableModules(plain: CompiledModel): { linear: string[]; embedding: string[]; head: string | null } {
  const linear: string[] = [];
  const embedding: string[] = [];
  const embeddingWeights = new Set<number>();
  let head: string | null = null;
  for (const op of plain.ops) {
    if (op.kind !== "linear" && op.kind !== "embedding") continue;
    const name = plain.state[op.weight]!.name;
    if (!name.endsWith(".weight")) continue;
    const module = name.slice(0, -".weight".length);
    if (op.kind === "embedding") {
      embeddingWeights.add(op.weight);
      if (!embedding.includes(module)) embedding.push(module);
      continue;
    }
    if (embeddingWeights.has(op.weight)) continue; // a tied output head reads the embedding's table
    if (!linear.includes(module)) linear.push(module);
    if (op.outputs[0] === plain.output.value) head = module;
  }
  return { linear, embedding, head };
}

/**
 * Resolves target_modules and modules_to_save; a 422 at `adapter.target_modules` listing the
 * model's modules when nothing matches.
 *
 * @example
 * ```ts
 * const lora = resolveLora(request.adapter, compileModel(request.model, null, data), arch);
 * const model = compileModel(request.model, null, data, lora);
 * ```
 */
export function resolveLora(spec: LoraAdapter, plain: CompiledModel, arch: ResolvedArchitecture | null): LoraBuild {
  const { linear, embedding, head } = adaptableModules(plain);
  let targets: readonly string[] | string;
  if (spec.target_modules === null) {
    if (!arch || arch.def.loraTargets.length === 0) {
      throw new UnprocessableError("invalid_adapter", [
        {
          path: "adapter.target_modules",
          message: `is required for ${arch ? `${arch.def.name} (PEFT has no default for it)` : "a model.layers model"}: name the modules to adapt (its Linear and Embedding modules: ${[...linear, ...embedding].join(", ")})`,
        },
      ]);
    }
    targets = arch.def.loraTargets;
  } else if (spec.target_modules === "all-linear") {
    // PEFT's _maybe_include_all_linear_layers: every Linear / Conv1D but the output layer
    targets = linear.filter((m) => m !== head);
  } else {
    targets = spec.target_modules;
  }
  const matched = [...linear, ...embedding].filter((m) => moduleMatches(m, targets));
  if (matched.length === 0) {
    throw new UnprocessableError("invalid_adapter", [
      {
        path: "adapter.target_modules",
        message: `${JSON.stringify(spec.target_modules)} matches no Linear or Embedding module; the model has ${[...linear, ...embedding].join(", ")}`,
      },
    ]);
  }
  // PeftModelForSequenceClassification appends its head names, even when already listed
  const modulesToSave = [...(spec.modules_to_save ?? []), ...(arch?.task === "sequence-classification" ? SEQ_CLS_HEADS : [])];
  return { spec, targets, modulesToSave };
}

/**
 * PEFT's key of a state tensor in adapter_model.safetensors: the model's name under
 * base_model.model (the adapter name, "default", left out as save_pretrained does).
 *
 * @example
 * ```ts
 * peftKey("bert.encoder.layer.0.attention.self.query.lora_A.weight"); // "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"
 * ```
 */
export function peftKey(name: string): string {
  return PEFT_PREFIX + name;
}

/**
 * Reads adapter weights to continue from (PEFT's names) onto the state: a 422 naming the key when
 * it is not a tensor of this adapter or its shape does not fit the base.
 *
 * @example
 * ```ts
 * const tensors = readAdapterWeights(parseSafetensors(bytes, { field: "adapter_weights" }), compiled);
 * ```
 */
export function readAdapterWeights(file: SafetensorsFile, model: CompiledModel): Map<string, Float32Array> {
  const byName = new Map(model.state.map((t) => [t.name, t]));
  const issues: FieldIssue[] = [];
  const out = new Map<string, Float32Array>();
  for (const key of file.tensors.keys()) {
    const name = (key.startsWith(PEFT_PREFIX) ? key.slice(PEFT_PREFIX.length) : key)
      .replace(".modules_to_save.", ".")
      .replace(".base_layer.", ".")
      .replace(/\.default(?=\.|$)/, "");
    const t = byName.get(name);
    if (!t || !t.trainable) {
      issues.push({ path: `adapter_weights[${JSON.stringify(key)}]`, message: "is not a tensor of this adapter (check adapter.target_modules, r and modules_to_save against adapter_config.json)" });
      continue;
    }
    const info = file.tensors.get(key)!;
    if (info.shape.length !== t.shape.length || info.shape.some((d, i) => d !== t.shape[i])) {
      issues.push({ path: `adapter_weights[${JSON.stringify(key)}]`, message: `has shape [${info.shape.join(", ")}] but the base and the adapter give [${t.shape.join(", ")}]` });
      continue;
    }
    const data = readTensorF32(file, key, "adapter_weights");
    const bad = data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      issues.push({ path: `adapter_weights[${JSON.stringify(key)}]`, message: `element ${bad} is ${data[bad]}: weights must be finite` });
      continue;
    }
    out.set(name, t.transposed ? transpose(data, t.shape[0]!, t.shape[1]!) : data);
  }
  if (issues.length > 0) throw new UnprocessableError("weights_mismatch", issues);
  return out;
}
