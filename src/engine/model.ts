/**
 * The model on the kernel core: a CompiledModel (graph/compile.ts) with its memory in the arena,
 * its forward pass (ops in order) and backward pass (the compiler's schedule) as kernel calls.
 * The same class runs the WASM builds and the TypeScript twins, and on each training thread.
 *
 * State layout: [trainable parameters | buffers | frozen parameters], so the optimizer and the
 * gradient norm cover [0, trainableCount), and the last-finite snapshot [0, trainable + buffers).
 */
import { transpose } from "./huggingface/checkpoint.js";
import type { Arena, Region } from "./arena.js";
import type { NamedTensor } from "./backend.js";
import type { CompiledModel, StateTensor } from "./graph/types.js";
import type { Kernels, Ptr } from "./kernels.js";
import { OPS } from "./ops/index.js";
import type { KernelOpContext, Op } from "./ops/types.js";

/**
 * Where a model's buffers sit in the arena. Plain data (pointers and lengths), so another
 * thread sharing the memory can run the same model over the same state.
 */
export interface ModelLayout {
  maxRows: number;
  /** [stateCount] parameters and buffers */
  state: Region;
  /** [trainableCount] gradients of the trainable parameters */
  grads: Region;
  /** values[v]: [maxRows, size_v], null for the graph's inputs (they point into the batch) */
  values: (Region | null)[];
  /** saved[s]: [maxRows * perRow + fixed] */
  saved: Region[];
  /** gradient slots: [maxRows, size] each, reused along the backward pass */
  gradSlots: Region[];
  /** scratch shared by every op */
  workspace: Region;
}

/** Workspace elements the ops of a model need for `rows` samples. */
export function workspaceElements(compiled: CompiledModel, rows: number): number {
  let most = 0;
  for (const op of compiled.ops) {
    const def = OPS[op.kind] as { workspace?: (op: Op, rows: number) => number };
    if (def.workspace) most = Math.max(most, def.workspace(op, rows));
  }
  return most;
}

/**
 * Elements a model allocates for `maxRows` samples, per allocation (each rounded up to 16 bytes
 * by the arena), without the state (which a shard shares).
 */
export function modelAllocations(compiled: CompiledModel, maxRows: number): number[] {
  return [
    compiled.trainableCount,
    ...compiled.bufferSizes.map((size) => maxRows * size),
    ...compiled.saved.map((s) => maxRows * s.perRow + s.fixed),
    ...compiled.gradSlots.map((size) => maxRows * size),
    workspaceElements(compiled, maxRows),
  ];
}

/** One region per activation buffer, each value mapped to its buffer's (null for the graph's inputs). */
function valueRegions(compiled: CompiledModel, arena: Arena, maxRows: number): (Region | null)[] {
  const buffers = compiled.bufferSizes.map((size) => arena.alloc(maxRows * size));
  return compiled.valueBuffers.map((b, v) => (b < 0 ? null : { ptr: buffers[b]!.ptr, length: maxRows * compiled.values[v]!.size }));
}

/**
 * Allocates a model's buffers for up to `maxRows` rows; `state` shares existing parameters
 * (a data-parallel shard) instead of allocating them.
 *
 * @example
 * ```ts
 * const layout = allocateModel(compiled, arena, 64);
 * const shard = allocateModel(compiled, arena, 32, layout.state);
 * ```
 */
export function allocateModel(compiled: CompiledModel, arena: Arena, maxRows: number, state?: Region): ModelLayout {
  return {
    maxRows,
    state: state ?? arena.alloc(compiled.stateCount),
    grads: arena.alloc(compiled.trainableCount),
    values: valueRegions(compiled, arena, maxRows),
    saved: compiled.saved.map((s) => arena.alloc(maxRows * s.perRow + s.fixed)),
    gradSlots: compiled.gradSlots.map((size) => arena.alloc(maxRows * size)),
    workspace: arena.alloc(workspaceElements(compiled, maxRows)),
  };
}

/** The graph's inputs for one batch: x [rows, input size], the mask and the token_type_ids [rows, T] (0: none). */
export interface ModelInputs {
  x: Ptr;
  mask: Ptr;
  tokenTypes?: Ptr;
}

/**
 * A model with memory: its forward and backward passes as kernel calls over a layout.
 *
 * @example
 * ```ts
 * const model = new Model(compiled, kernels, memory, allocateModel(compiled, arena, batchSize));
 * const logits = model.forward({ x: xPtr, mask: 0 }, rows, true, seed);
 * model.zeroGrad();
 * model.backward(rows);
 * ```
 */
export class Model {
  readonly compiled: CompiledModel;
  readonly layout: ModelLayout;
  /** [stateCount] parameters and buffers */
  readonly state: Region;
  /** [trainableCount] gradients of the trainable parameters */
  readonly grads: Region;
  readonly maxRows: number;
  private readonly memory: WebAssembly.Memory;
  private readonly k: Kernels;
  /** value id -> pointer (the inputs' entries are set by each forward) */
  private readonly valuePtr: Ptr[];
  private readonly context: KernelOpContext & { training: boolean; seed: number };
  /** the backward schedule with its slots resolved to pointers */
  private readonly steps: { op: Op; dy: Ptr[]; dx: Ptr[]; accumulate: { into: Ptr; from: Ptr; size: number }[] }[];

  constructor(compiled: CompiledModel, kernels: Kernels, memory: WebAssembly.Memory, layout: ModelLayout) {
    this.compiled = compiled;
    this.k = kernels;
    this.memory = memory;
    this.layout = layout;
    this.maxRows = layout.maxRows;
    this.state = layout.state;
    this.grads = layout.grads;
    this.valuePtr = layout.values.map((r) => r?.ptr ?? 0);
    const statePtr = compiled.state.map((t) => layout.state.ptr + t.offset * 4);
    const gradPtr = compiled.state.map((t) => (t.trainable ? layout.grads.ptr + t.offset * 4 : 0));
    const savedPtr = layout.saved.map((r) => r.ptr);
    const values = this.valuePtr;
    this.context = {
      k: kernels,
      value: (id) => values[id]!,
      state: (i) => (i < 0 ? 0 : statePtr[i]!),
      grad: (i) => (i < 0 ? 0 : gradPtr[i]!),
      saved: (id) => (id < 0 ? 0 : savedPtr[id]!),
      workspace: layout.workspace.ptr,
      training: false,
      seed: 0,
    };
    const slot = (s: number) => (s < 0 ? 0 : layout.gradSlots[s]!.ptr);
    this.steps = compiled.backward.map((s) => ({
      op: compiled.ops[s.op]!,
      dy: s.dy.map(slot),
      dx: s.dx.map(slot),
      accumulate: s.accumulate.map((a) => ({ into: slot(a.into), from: slot(a.from), size: a.size })),
    }));
  }

  /** The gradient buffer the loss writes dL/dlogits into: [maxRows, outputs]. */
  get logitsGrad(): Region {
    return this.layout.gradSlots[this.compiled.outputGradSlot]!;
  }

  /** The output buffer: [maxRows, outputs]. */
  get logits(): Region {
    const v = this.compiled.output.value;
    return this.layout.values[v] ?? { ptr: this.valuePtr[v]!, length: this.maxRows * this.compiled.values[v]!.size };
  }

  /**
   * Forward pass over `rows` samples; returns the logits pointer ([rows, outputs]). `training`
   * enables dropout (masks derived from `seed`) and batch statistics.
   */
  forward(inputs: ModelInputs, rows: number, training: boolean, seed = 0): Ptr {
    this.valuePtr[this.compiled.input.value] = inputs.x;
    if (this.compiled.mask !== null) this.valuePtr[this.compiled.mask] = inputs.mask;
    if (this.compiled.tokenTypes !== null) this.valuePtr[this.compiled.tokenTypes] = inputs.tokenTypes ?? 0;
    const c = this.context;
    c.training = training;
    c.seed = seed;
    for (const op of this.compiled.ops) (OPS[op.kind].kernel.forward as (c: KernelOpContext, op: Op, rows: number) => void)(c, op, rows);
    return this.valuePtr[this.compiled.output.value]!;
  }

  /**
   * Backward pass of the last forward: reads dL/dlogits from `logitsGrad`, accumulates (+=)
   * parameter gradients into `grads`. Call zeroGrad() first.
   */
  backward(rows: number): void {
    const c = this.context;
    for (const s of this.steps) {
      (OPS[s.op.kind].kernel.backward as (c: KernelOpContext, op: Op, rows: number, dy: Ptr[], dx: Ptr[]) => void)(c, s.op, rows, s.dy, s.dx);
      for (const a of s.accumulate) this.k.axpy(a.into, a.from, 1, rows * a.size);
    }
  }

  /** grads = 0 */
  zeroGrad(): void {
    this.k.fill(this.grads.ptr, 0, this.grads.length);
  }

  /** Byte offset of a state tensor. */
  statePtr(t: StateTensor): Ptr {
    return this.state.ptr + t.offset * 4;
  }

  /** Copies state values in from state_dict tensors (already shape-checked). */
  loadState(values: ReadonlyMap<string, Float32Array>): void {
    for (const t of this.compiled.state) new Float32Array(this.memory.buffer, this.statePtr(t), t.size).set(values.get(t.name)!);
  }

  /** The current parameters and buffers, state_dict order (copies). */
  readState(): NamedTensor[] {
    return readState(this.compiled, new Float32Array(this.memory.buffer, this.state.ptr, this.compiled.stateCount));
  }
}

/**
 * The state_dict of a model from its state block (any backend's copy of it).
 *
 * @example
 * ```ts
 * const tensors = readState(compiled, stateBlock); // [{ name: "fc1.weight", shape: [10, 10], data }, ...]
 * ```
 */
export function readState(compiled: CompiledModel, block: Float32Array): NamedTensor[] {
  return compiled.state.map((t) => ({
    name: t.name,
    shape: [...t.shape],
    // a transposed tensor (GPT-2's Conv1D) goes back to the state_dict's [in, out]
    data: t.transposed ? transpose(block.subarray(t.offset, t.offset + t.size), t.shape[1]!, t.shape[0]!) : block.slice(t.offset, t.offset + t.size),
    ...(t.dtype === "I64" ? { dtype: "I64" as const } : {}),
  }));
}
