/**
 * The layer registry: every layer type, declared once in its own file. The request's
 * `model.layers` union, the compiler, the OpenAPI document and the fuzz arbitraries all derive
 * from LAYERS; add a layer by adding its definition here.
 */
import { z } from "zod";
import { ACTIVATION_LAYERS } from "./activations.js";
import { multiheadAttention } from "./attention.js";
import { residual, sequential, type ResidualSpec, type SequentialSpec } from "./containers.js";
import { conv1d, conv2d } from "./conv.js";
import type { LayerDef } from "./define.js";
import { dropout } from "./dropout.js";
import { flatten } from "./flatten.js";
import { linear } from "./linear.js";
import { NORM_LAYERS } from "./norm.js";
import { POOL_LAYERS } from "./pool.js";
import { TOKEN_LAYERS } from "./tokens.js";
import { transformerEncoderLayer } from "./transformer.js";

/** Every layer type without children. */
export const LEAF_LAYERS = [
  linear, ...ACTIVATION_LAYERS, dropout, flatten, conv1d, conv2d, ...POOL_LAYERS, ...NORM_LAYERS, ...TOKEN_LAYERS, multiheadAttention,
  transformerEncoderLayer,
] as const;

/** Every layer type. */
export const LAYERS = [...LEAF_LAYERS, sequential, residual] as const;

type LeafSpec = (typeof LEAF_LAYERS)[number] extends infer D ? (D extends LayerDef<infer S> ? S : never) : never;
/** One layer of `model.layers`, after validation (defaults filled in). */
export type LayerSpec = LeafSpec | SequentialSpec | ResidualSpec;

/** The zod union of every layer type (recursive through the containers; "Layer" in the OpenAPI document). */
export const Layer: z.ZodType<LayerSpec> = z
  .lazy(() => z.discriminatedUnion("type", LAYERS.map((d) => d.schema) as unknown as [z.ZodObject, ...z.ZodObject[]]))
  .meta({ id: "Layer", description: "One layer of an nn.Sequential: PyTorch's module, argument names and defaults." }) as unknown as z.ZodType<LayerSpec>;

const byType = new Map<string, LayerDef>(LAYERS.map((d) => [d.type, d as unknown as LayerDef]));

/** The definition of a layer type. */
export function layerDef(type: string): LayerDef {
  const def = byType.get(type);
  if (!def) throw new Error(`no layer type "${type}"`);
  return def;
}
