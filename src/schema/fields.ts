/**
 * Field builders shared by the request schema (schema/request.ts) and the layer schemas
 * (engine/layers/*.ts): one definition of what a layer name or a positive count is.
 */
import { z } from "zod";

export const int = () => z.number().int();
export const positive = () => z.number().positive();
export const nonNegative = () => z.number().min(0);
/** A probability-like fraction in [0, 1]. */
export const unit = () => z.number().min(0).max(1);
/** A size of a layer (features, channels, heads): 1 .. 2^20. */
export const size = () => int().min(1).max(1 << 20);

/** A layer's `name` becomes its state_dict prefix (`fc1.weight`); unnamed layers use their index, as nn.Sequential does. */
export const layerName = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$/, "letters, digits and _ separated by dots");
