/**
 * PyTorch's default initialisation: `torch.manual_seed(seed)`, then the model's modules built
 * in order, each drawing from the one CPU generator (rng.ts). The compiler lists the draws in
 * construction order (CompiledModel.init); replaying them gives the same weights as PyTorch
 * bit for bit: uniform draws (Linear, Conv, attention's xavier_uniform_) and normal_ (nn.Embedding,
 * position_embedding) as torch's AVX2 CPU kernel computes it (rng.ts fillNormal).
 */
import type { CompiledModel, InitRecipe } from "./graph/types.js";
import { MT19937, fillNormal, fillUniform } from "./rng.js";

/**
 * The initial state of a model without given weights: every parameter and buffer by name; with
 * `keep`, only those tensors (state indices), the others' draws still taken from the generator
 * (into one scratch) so that the kept ones get the same values: a checkpoint's missing task head,
 * a new adapter, without a copy of the whole model.
 *
 * @example
 * ```ts
 * const values = defaultInit(compiled, 0); // as torch.manual_seed(0); nn.Sequential(...)
 * values.get("fc1.weight"); // Float32Array [out * in]
 * ```
 */
export function defaultInit(compiled: CompiledModel, seed: number, keep?: ReadonlySet<number>): Map<string, Float32Array> {
  const rng = new MT19937(seed);
  const values = new Map<string, Float32Array>();
  compiled.state.forEach((t, i) => {
    if (!keep || keep.has(i)) values.set(t.name, new Float32Array(t.size));
  });
  let scratch = new Float32Array(0);
  for (const step of compiled.init) {
    const t = compiled.state[step.tensor]!;
    let out = values.get(t.name);
    if (!out) {
      if (scratch.length < t.size) scratch = new Float32Array(t.size);
      out = scratch.subarray(0, t.size);
    }
    apply(rng, out, step.recipe);
  }
  return values;
}

function apply(rng: MT19937, out: Float32Array, recipe: InitRecipe): void {
  switch (recipe.kind) {
    case "kaiming_uniform": {
      // torch.nn.init.kaiming_uniform_(a=sqrt(5)): gain = calculate_gain('leaky_relu', sqrt(5)),
      // std = gain / sqrt(fan_in), bound = sqrt(3) * std (Python floats, in this order)
      const gain = Math.sqrt(2.0 / (1 + Math.sqrt(5) ** 2));
      const bound = Math.sqrt(3.0) * (gain / Math.sqrt(recipe.fanIn));
      fillUniform(rng, out, -bound, bound);
      return;
    }
    case "uniform":
      fillUniform(rng, out, -recipe.bound, recipe.bound);
      return;
    case "xavier_uniform": {
      // torch.nn.init.xavier_uniform_(gain=1): std = gain * sqrt(2 / (fan_in + fan_out)), a = sqrt(3) * std
      const std = 1.0 * Math.sqrt(2.0 / (recipe.fanIn + recipe.fanOut));
      const a = Math.sqrt(3.0) * std;
      fillUniform(rng, out, -a, a);
      return;
    }
    case "normal":
      fillNormal(rng, out, recipe.mean, recipe.std);
      return;
    case "fill":
      out.fill(recipe.value);
      return;
    case "zero_row":
      out.fill(0, recipe.row * recipe.width, (recipe.row + 1) * recipe.width);
      return;
  }
}
