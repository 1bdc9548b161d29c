/**
 * What a layer type is: declared once, in one file of this folder, with
 *
 *   - its zod schema (PyTorch's argument names and defaults): the request's `model.layers` union,
 *     the OpenAPI document and the fuzz arbitraries derive from it;
 *   - `build`: given its input shape, it checks that shape, declares its parameters and buffers
 *     (state_dict names and shapes) with PyTorch's default init, and emits the ops it lowers to.
 *
 * Everything else follows from the ops: FLOPs, memory, the forward and backward passes on the
 * WASM kernel core and on WebGPU (ops/*.ts, webgpu/ops.ts).
 */
import type { z } from "zod";
import type { InitRecipe, Shape, TensorRef } from "../graph/types.js";
import type { Op } from "../ops/types.js";

/** What a layer's `build` may do. */
export interface LayerBuilder {
  /** Where the layer sits in the request, for messages: "model.layers[2].layers[0]". */
  readonly path: string;
  /** The module's state_dict prefix ("fc1", "encoder.0", "encoder.0.self_attn"); "" for none. */
  readonly name: string;
  /** The graph's attention mask value ([rows, T], 1 = token, 0 = padding), or null without one. */
  readonly mask: number | null;
  /** Tokens per row of the attention mask (T); 0 without one. */
  readonly maskTokens: number;
  /**
   * Declares parameter `<name>.<local>` of `shape` (state_dict order = call order); returns its
   * index. `transposed`: the state_dict holds the matrix as [in, out] (GPT-2's Conv1D) and the
   * state block as [out, in], as a linear op reads it.
   */
  parameter(local: string, shape: readonly number[], options?: { transposed?: boolean }): number;
  /** Declares a buffer (running statistics); I64 buffers are stored as I64 in safetensors. */
  buffer(local: string, shape: readonly number[], dtype?: "float" | "I64"): number;
  /** Appends a default-init step; call these in the order PyTorch's constructors run. */
  init(tensor: number, recipe: InitRecipe): void;
  /** A new activation value read as `shape`. */
  value(shape: Shape): TensorRef;
  /** A buffer kept from forward to backward: `perRow` elements per sample plus `fixed`. */
  saved(perRow: number, fixed?: number): number;
  /**
   * Declares that this layer reads the data's token ids as indices below `vocabulary` (an
   * embedding's num_embeddings): prepareRun refuses rows with larger ids, naming the row.
   */
  readsIds(vocabulary: number): void;
  /**
   * The data's token_type_ids ([T] per sample, ids below `types`; zeros when the data has none):
   * a graph input created on first use (BERT's segment embedding reads it).
   */
  tokenTypes(types: number): TensorRef;
  /**
   * Starts a layer group: the state and ops declared from here on are reported together in the
   * plan ("bert.encoder.layer.3"). The compiler starts one per top-level layer itself.
   */
  group(name: string): void;
  /** Appends an op to the graph. */
  op(op: Op): void;
  /**
   * Requires every training batch (with `evaluation`, every validation chunk too) to hold at
   * least `rows` samples; the plan refuses a run whose batches could hold fewer, saying `why`
   * (BatchNorm over [C] samples: PyTorch raises "Expected more than 1 value per channel").
   */
  requireBatchRows(rows: number, why: string, evaluation?: boolean): void;
  /** Refuses the model: a 422 at `<path>.<field>` (or at the layer when field is ""). */
  fail(field: string, message: string): never;
  /** A child module of a composite layer ("self_attn", "linear1"): names get `<name>.<local>`. */
  module(local: string): LayerBuilder;
  /** Builds a nested layer of a container: named `<name>.<spec.name ?? index>`, at `<path>.layers[index]`. */
  layer(spec: { type: string; name?: string | undefined }, x: TensorRef, index: number): TensorRef;
}

/**
 * A layer type.
 *
 * @example
 * ```ts
 * export const Tanh = defineLayer({
 *   type: "tanh",
 *   schema: z.strictObject({ type: z.literal("tanh"), name: layerName.optional() }),
 *   build: (spec, b, x) => activation(b, x, ACTIVATIONS.tanh.code),
 * });
 * ```
 */
export interface LayerDef<S extends { type: string } = { type: string }> {
  readonly type: S["type"];
  readonly schema: z.ZodType<S>;
  /** Whether the layer reads token ids (an embedding); every other layer refuses them. */
  readonly takesIds?: boolean;
  /** Checks the input, declares state and ops; returns the output. */
  build(spec: S, b: LayerBuilder, x: TensorRef): TensorRef;
}

/** Declares a layer type (an identity, for inference of `spec`'s type from the schema). */
export function defineLayer<S extends { type: string }>(def: LayerDef<S>): LayerDef<S> {
  return def;
}

/** Elements of a shape. */
export function numel(shape: Shape): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** "[1, 28, 28]" */
export function showShape(shape: Shape): string {
  return `[${shape.join(", ")}]`;
}
