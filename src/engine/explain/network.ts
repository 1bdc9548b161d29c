/**
 * A fine-tuned model as explain/ reads it: outputs for rows, and the gradient of one output per
 * row w.r.t. the input (features, or the token embedding's output), from the same op kernels as
 * training (model.ts over a CompiledModel compiled with `inputGradient`). Runs on any kernel
 * instance: the WASM core (SIMD or relaxed SIMD) or the TypeScript twins.
 */
import { Arena, type Region } from "../arena.js";
import type { KernelInstance } from "../kernels.js";
import { allocateModel, Model } from "../model.js";
import type { CompiledModel } from "../graph/types.js";

/** Per-row inputs besides x: the attention mask and token_type_ids of token rows ([n, T]; null: none). */
export interface RowContext {
  mask: Float32Array | null;
  types: Float32Array | null;
}

/**
 * The model under explanation.
 *
 * @example
 * ```ts
 * const net = new ExplainNetwork(instance, compiled, weights, 64);
 * const logits = net.outputs(x, rows, { mask: null, types: null });
 * ```
 */
export class ExplainNetwork {
  /** Columns of a data row: features, or token ids. */
  readonly columns: number;
  /** Elements of the differentiated value per row: `columns`, or T * D for token rows. */
  readonly pointSize: number;
  /** Outputs (logits) per row. */
  readonly outputsPerRow: number;
  readonly tokens: boolean;
  private readonly model: Model;
  private readonly arena: Arena;
  private readonly x: Region;
  private readonly mask: Region | null;
  private readonly types: Region | null;
  private readonly inject: Region | null;

  constructor(instance: KernelInstance, compiled: CompiledModel, weights: ReadonlyMap<string, Float32Array>, maxRows: number) {
    if (!compiled.inputGrad) throw new Error("ExplainNetwork: compile the model with inputGradient");
    const { memory, kernels } = instance;
    this.arena = new Arena(memory, kernels.heap_base());
    this.tokens = compiled.input.ids;
    this.columns = compiled.values[compiled.input.value]!.size;
    this.pointSize = compiled.values[compiled.inputGrad.value]!.size;
    this.outputsPerRow = compiled.values[compiled.output.value]!.size;
    this.model = new Model(compiled, kernels, memory, allocateModel(compiled, this.arena, maxRows));
    this.model.loadState(weights);
    this.x = this.arena.alloc(maxRows * this.columns);
    this.mask = compiled.mask !== null ? this.arena.alloc(maxRows * this.columns) : null;
    this.types = compiled.tokenTypes !== null ? this.arena.alloc(maxRows * this.columns) : null;
    this.inject = this.tokens ? this.arena.alloc(maxRows * this.pointSize) : null;
  }

  /** Outputs [n, outputsPerRow] of data rows x [n, columns] (eval mode). */
  outputs(x: Float32Array, n: number, context: RowContext): Float32Array {
    const out = new Float32Array(n * this.outputsPerRow);
    this.chunks(n, (start, rows) => {
      this.loadRows(x, context, start, rows);
      const ptr = this.forward(rows, false);
      out.set(this.arena.f32(ptr, rows * this.outputsPerRow), start * this.outputsPerRow);
    });
    return out;
  }

  /** The token embedding's output [n, T * D] of token rows (x itself for feature rows). */
  points(x: Float32Array, n: number, context: RowContext): Float32Array {
    if (!this.tokens) return x.slice(0, n * this.columns);
    const out = new Float32Array(n * this.pointSize);
    const value = this.model.compiled.inputGrad!.value;
    this.chunks(n, (start, rows) => {
      this.loadRows(x, context, start, rows);
      this.forward(rows, false);
      out.set(this.arena.f32(this.model.valueAt(value), rows * this.pointSize), start * this.pointSize);
    });
    return out;
  }

  /**
   * At points [n, pointSize] (feature rows, or token embeddings of the rows `ids` [n, columns]
   * with their context): the outputs [n, outputsPerRow] and, when `targets` is given, the
   * gradient of output targets[r] of row r w.r.t. the point, [n, pointSize].
   */
  at(points: Float32Array, n: number, ids: Float32Array | null, context: RowContext, targets: Int32Array | null): { outputs: Float32Array; grads: Float32Array | null } {
    const outputs = new Float32Array(n * this.outputsPerRow);
    const grads = targets ? new Float32Array(n * this.pointSize) : null;
    const O = this.outputsPerRow;
    this.chunks(n, (start, rows) => {
      if (this.tokens) {
        this.loadRows(ids!, context, start, rows);
        this.arena.f32(this.inject!.ptr, rows * this.pointSize).set(points.subarray(start * this.pointSize, (start + rows) * this.pointSize));
      } else {
        this.arena.f32(this.x.ptr, rows * this.columns).set(points.subarray(start * this.columns, (start + rows) * this.columns));
      }
      const ptr = this.forward(rows, this.tokens);
      outputs.set(this.arena.f32(ptr, rows * O), start * O);
      if (!targets) return;
      // dL/dlogits = one-hot at the target: the backward pass then gives d f_target / d input
      const seed = this.arena.f32(this.model.logitsGrad.ptr, rows * O);
      seed.fill(0);
      for (let r = 0; r < rows; r++) seed[r * O + targets[start + r]!] = 1;
      this.model.backward(rows);
      const g = this.model.inputGrad;
      if (g) grads!.set(this.arena.f32(g.ptr, rows * this.pointSize), start * this.pointSize);
    });
    return { outputs, grads };
  }

  private forward(rows: number, inject: boolean): number {
    return this.model.forward(
      { x: this.x.ptr, mask: this.mask?.ptr ?? 0, tokenTypes: this.types?.ptr ?? 0, inject: inject ? this.inject!.ptr : 0 },
      rows,
      false,
    );
  }

  private loadRows(x: Float32Array, context: RowContext, start: number, rows: number): void {
    const C = this.columns;
    const range = (a: Float32Array) => a.subarray(start * C, (start + rows) * C);
    this.arena.f32(this.x.ptr, rows * C).set(range(x));
    if (this.mask) {
      const view = this.arena.f32(this.mask.ptr, rows * C);
      if (context.mask) view.set(range(context.mask));
      else view.fill(1);
    }
    if (this.types) {
      const view = this.arena.f32(this.types.ptr, rows * C);
      if (context.types) view.set(range(context.types));
      else view.fill(0);
    }
  }

  private chunks(n: number, run: (start: number, rows: number) => void): void {
    for (let start = 0; start < n; start += this.model.maxRows) run(start, Math.min(this.model.maxRows, n - start));
  }
}
