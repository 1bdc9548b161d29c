/**
 * The Hugging Face architectures: `model.huggingface: {config, task}` builds the one named by
 * config.architectures[0], with the Hub's state_dict names (SPEC section 8).
 *
 *   request.model.huggingface --(ARCHITECTURES[name].config, .build)--> CompiledModel (graph/compile.ts)
 */
import { z } from "zod";
import { UnprocessableError } from "../../errors.js";
import { zodIssues } from "../../schema/issues.js";
import { bertForSequenceClassification } from "./bert.js";
import { distilBertForSequenceClassification } from "./distilbert.js";
import { gpt2LMHeadModel } from "./gpt2.js";
import { llamaForCausalLM } from "./llama.js";
import { HF_TASKS, type ArchitectureDef, type HfTask } from "./define.js";

export { HF_TASKS, type ArchitectureDef, type HfTask };

/**
 * Every supported architecture, by config.architectures[0].
 *
 * @example
 * ```ts
 * ARCHITECTURES.map((a) => a.name); // ["BertForSequenceClassification", ...]
 * ```
 */
export const ARCHITECTURES: readonly ArchitectureDef<never>[] = [
  bertForSequenceClassification, distilBertForSequenceClassification, gpt2LMHeadModel, llamaForCausalLM,
] as unknown as readonly ArchitectureDef<never>[];

/**
 * `model.huggingface`: the Hub's config.json as it is, and the task (implied by the architecture
 * when left out).
 *
 * @example
 * ```ts
 * HuggingFaceModel.parse({ config: { architectures: ["GPT2LMHeadModel"], n_layer: 2 }, task: "causal-lm" });
 * ```
 */
export const HuggingFaceModel = z
  .strictObject({
    /** config.json as on the Hub (its `architectures[0]` names the architecture). */
    config: z.record(z.string(), z.unknown()),
    task: z.enum(HF_TASKS).optional(),
  })
  .meta({ id: "HuggingFaceModel", description: "A Hugging Face architecture built from its config.json, with the Hub's state_dict names." });
export type HuggingFaceModel = z.infer<typeof HuggingFaceModel>;

/**
 * An architecture with its parsed config.
 *
 * @example
 * ```ts
 * const { def, config, task } = resolveArchitecture(request.model.huggingface);
 * ```
 */
export interface ResolvedArchitecture {
  def: ArchitectureDef<unknown>;
  config: unknown;
  task: HfTask;
}

/**
 * Finds the architecture of a config.json and parses the fields it reads; a 422 naming the
 * field (and, for an unknown architecture, the supported ones) otherwise.
 *
 * @example
 * ```ts
 * const { def, config } = resolveArchitecture({ config: { architectures: ["BertForSequenceClassification"] } });
 * def.vocabSize(config); // 30522
 * ```
 */
export function resolveArchitecture(spec: HuggingFaceModel): ResolvedArchitecture {
  const at = "model.huggingface.config";
  const names = spec.config.architectures;
  const supported = ARCHITECTURES.map((a) => a.name).join(", ");
  if (!Array.isArray(names) || typeof names[0] !== "string") {
    throw new UnprocessableError("unsupported_architecture", [{ path: `${at}.architectures`, message: `must list the architecture, e.g. ["BertForSequenceClassification"] (supported: ${supported})` }]);
  }
  const def = ARCHITECTURES.find((a) => a.name === names[0]) as ArchitectureDef<unknown> | undefined;
  if (!def) {
    throw new UnprocessableError("unsupported_architecture", [{ path: `${at}.architectures[0]`, message: `"${names[0]}" is not supported (supported: ${supported})` }]);
  }
  if (spec.task !== undefined && spec.task !== def.task) {
    throw new UnprocessableError("unsupported_architecture", [{ path: "model.huggingface.task", message: `is "${spec.task}" but ${def.name} is a ${def.task} model` }]);
  }
  const parsed = def.config.safeParse(spec.config);
  if (!parsed.success) {
    throw new UnprocessableError("invalid_model", zodIssues(parsed.error, at));
  }
  return { def, config: parsed.data, task: def.task };
}
