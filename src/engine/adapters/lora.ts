/**
 * LoRA adapters, as PEFT defines them (peft/tuners/lora/layer.py): a targeted nn.Linear (or
 * GPT-2's Conv1D, or nn.Embedding) keeps its frozen base weight W0 and gains a low-rank update,
 *
 *   y = base(x) + lora_B(lora_A(dropout(x))) * scaling,   scaling = lora_alpha / r
 *                                                          (use_rslora: lora_alpha / sqrt(r))
 *   Linear / Conv1D  lora_A.weight [r, in]   kaiming_uniform_(a=sqrt(5));  lora_B.weight [out, r] zeros
 *   Embedding        lora_embedding_A [r, num] zeros;  lora_embedding_B [dim, r] normal_(0, 1)
 *                    y += (F.embedding(ids, A^T, padding_idx) @ B^T) * scaling
 *
 * Here that is a rewrite of the graph while it is built: the base op writes a fresh value, and
 * the LoRA ops (dropout, two linear ops or an embedding and a linear, and an `add` with scale)
 * write the value the base op used to. Everything but the adapter, `modules_to_save` and the
 * biases `bias` names is frozen.
 * https://github.com/huggingface/peft/blob/main/src/peft/tuners/lora/layer.py
 */
import { z } from "zod";
import { int, unit } from "../../schema/fields.js";
import type { InitRecipe } from "../graph/types.js";

/**
 * `adapter: {type: "lora", ...}`: LoraConfig's fields and defaults.
 *
 * @example
 * ```json
 * { "type": "lora", "r": 8, "lora_alpha": 16, "target_modules": ["query", "value"] }
 * ```
 */
export const LoraAdapter = z
  .strictObject({
    type: z.literal("lora"),
    r: int().min(1).max(1 << 16).default(8),
    lora_alpha: z.number().positive().default(8),
    lora_dropout: unit().default(0),
    /**
     * Modules that get an adapter: a list (a module's full name, or a name it ends with after a
     * dot), one string (a regular expression the full name must match whole), or "all-linear";
     * null: PEFT's default for the Hugging Face architecture (BERT: query, value; GPT-2: c_attn;
     * Llama: q_proj, v_proj; DistilBERT has none: give them).
     */
    target_modules: z.union([z.array(z.string().min(1)).min(1), z.string().min(1)]).nullable().default(null),
    use_rslora: z.boolean().default(false),
    /** Modules trained in full (matched as target_modules' list entries). */
    modules_to_save: z.array(z.string().min(1)).nullable().default(null),
    bias: z.enum(["none", "all", "lora_only"]).default("none"),
  })
  .meta({ id: "LoraAdapter", description: "A LoRA adapter with PEFT's names, init and scaling." });
export type LoraAdapter = z.output<typeof LoraAdapter>;

/**
 * The adapter a request trains.
 *
 * @example
 * ```ts
 * Adapter.parse({ type: "lora", r: 8, target_modules: ["q_proj", "v_proj"] });
 * ```
 */
export const Adapter = z.discriminatedUnion("type", [LoraAdapter]);
export type AdapterSpec = z.output<typeof Adapter>;

/**
 * scaling = lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA (as a Python float, rounded to
 * float32 where it multiplies).
 *
 * @example
 * ```ts
 * loraScaling({ r: 4, lora_alpha: 16, use_rslora: true }); // 8
 * ```
 */
export function loraScaling(a: Pick<LoraAdapter, "r" | "lora_alpha" | "use_rslora">): number {
  return a.use_rslora ? a.lora_alpha / Math.sqrt(a.r) : a.lora_alpha / a.r;
}

/**
 * Whether a module is a target: PEFT's check_target_module_exists. A list entry matches the full
 * name or a suffix after a dot; a string is a regular expression that must match the whole name.
 *
 * @example
 * ```ts
 * moduleMatches("bert.encoder.layer.0.attention.self.query", ["query", "value"]); // true
 * moduleMatches("model.layers.0.self_attn.q_proj", ".*\\.(q|v)_proj"); // true
 * ```
 */
export function moduleMatches(name: string, targets: readonly string[] | string): boolean {
  if (typeof targets === "string") {
    try {
      return new RegExp(`^(?:${targets})$`).test(name);
    } catch {
      return false;
    }
  }
  return targets.some((t) => name === t || name.endsWith(`.${t}`));
}

/**
 * One module that got an adapter: what merging and PEFT's file need.
 *
 * @example
 * ```ts
 * const { module, a, b, scaling } = compiled.lora!.modules[0]!;
 * ```
 */
export interface LoraModule {
  /** The module's name in the base model ("bert.encoder.layer.0.attention.self.query"). */
  readonly module: string;
  readonly kind: "linear" | "embedding";
  /** State indices: the base weight, lora A and B (PEFT's lora_A/lora_B, or lora_embedding_A/B). */
  readonly base: number;
  readonly a: number;
  readonly b: number;
  readonly scaling: number;
}

/**
 * The init of A and B as PEFT draws it, in order (one generator for every adapted module, in
 * module order): update_layer builds lora_A = nn.Linear(in, r) and lora_B = nn.Linear(r, out)
 * (each constructor draws its kaiming_uniform_), then reset_lora_parameters redraws A and zeroes
 * B. An embedding's update_layer draws randn for A and B, then A is zeroed and B redrawn normal_.
 *
 * @example
 * ```ts
 * loraInit("linear", 768, 8); // [A kaiming, B kaiming (fan_in r), A kaiming, B zeros]
 * ```
 */
export function loraInit(kind: "linear" | "embedding", fanIn: number, r: number): { tensor: "a" | "b"; recipe: InitRecipe }[] {
  if (kind === "linear") {
    return [
      { tensor: "a", recipe: { kind: "kaiming_uniform", fanIn } },
      { tensor: "b", recipe: { kind: "kaiming_uniform", fanIn: r } },
      { tensor: "a", recipe: { kind: "kaiming_uniform", fanIn } },
      { tensor: "b", recipe: { kind: "fill", value: 0 } },
    ];
  }
  const normal: InitRecipe = { kind: "normal", mean: 0, std: 1 };
  return [
    { tensor: "a", recipe: normal },
    { tensor: "b", recipe: normal },
    { tensor: "a", recipe: { kind: "fill", value: 0 } },
    { tensor: "b", recipe: normal },
  ];
}
