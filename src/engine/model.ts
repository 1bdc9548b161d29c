/**
 * The model on the kernel core: a CompiledModel (graph/compile.ts) with its memory in the arena,
 * its forward pass (ops in order) and backward pass (the compiler's schedule) as kernel calls.
 * The same class runs the WASM builds and the TypeScript twins, and on each training thread.
 *
 * State layout: [trainable parameters | buffers | frozen parameters], so the optimizer and the
 * gradient norm cover [0, trainableCount), and the last-finite snapshot [0, trainable + buffers).
 * With `model.base_dtype` float16 or bfloat16 the frozen range holds 2-byte values: an op that
 * reads one gets it widened into the layout's `widen` scratch first (`state(i)`), so every other
 * kernel reads float32 as before; a frozen embedding table is read row by row
 * (embedding_forward_half) and never widened whole.
 */
import type { WasmMemory } from "./wasm-types.js";
import { decodeBf16, decodeF16, encodeBf16, encodeF16 } from "../formats/dtype.js";
import { transpose } from "./huggingface/checkpoint.js";
import type { Arena, Region } from "./arena.js";
import type { NamedTensor } from "./backend.js";
import type { WritableTensor } from "../formats/safetensors.js";
import { StateValues } from "./state-values.js";
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
  /** gradient slots: [maxRows, size] each, reused along the backward pass (in activation buffers where those are free) */
  gradSlots: Region[];
  /** scratch shared by every op */
  workspace: Region;
  /** f32 scratch the 16-bit frozen tensors an op reads are widened into ([widenElements]) */
  widen: Region;
}

/**
 * How the kernel core holds a state tensor: 0 float32, 1 float16, 2 bfloat16 (the frozen
 * parameters of a model compiled with a 16-bit `base_dtype`).
 *
 * @example
 * ```ts
 * stateDtype(compiled, compiled.state[0]!); // 0 for a trainable tensor
 * ```
 */
export function stateDtype(compiled: CompiledModel, t: StateTensor): 0 | 1 | 2 {
  if (t.kind !== "parameter" || t.trainable || compiled.baseDtype === "float32") return 0;
  return compiled.baseDtype === "float16" ? 1 : 2;
}

/**
 * The dtype an adapter run's stored weights file holds a state tensor in when it differs from
 * the file's (output.dtype): a frozen tensor of a 16-bit `base_dtype` stays in that dtype in a
 * float32 file, since the run holds exactly those values (docs/adapters.md, Memory). The file
 * only ever leaves through convertWeights, which writes every tensor in the trained tensors'
 * dtype, so what a client downloads does not change. null: the file's own dtype.
 *
 * @example
 * ```ts
 * storedHalfDtype(compiled, compiled.state.at(-1)!, "float32"); // "F16" for a frozen tensor of a float16 base
 * ```
 */
export function storedHalfDtype(compiled: CompiledModel, t: StateTensor, outputDtype: "float32" | "float16" | "bfloat16"): "F16" | "BF16" | null {
  if (!compiled.lora || outputDtype !== "float32") return null;
  const d = stateDtype(compiled, t);
  return d === 1 ? "F16" : d === 2 ? "BF16" : null;
}

/**
 * A state tensor's values as the run holds them: `values` itself, or for a 16-bit frozen
 * tensor a copy rounded to its dtype (to nearest even, as torch's .to(torch.float16)). The
 * WebGPU backend keeps such tensors in float32 storage, holding these rounded values, so both
 * backends train on the same numbers.
 *
 * @example
 * ```ts
 * heldValues(compiled, t, Float32Array.of(0.1)); // Float32Array [0.0999755859375] for a float16 frozen t
 * ```
 */
export function heldValues(compiled: CompiledModel, t: StateTensor, values: Float32Array): Float32Array {
  const d = stateDtype(compiled, t);
  if (d === 0) return values;
  const bits = new Uint16Array(values.length);
  const out = new Float32Array(values.length);
  if (d === 1) decodeF16((encodeF16(values, bits), bits), out);
  else decodeBf16((encodeBf16(values, bits), bits), out);
  return out;
}

/**
 * 4-byte elements of the kernel core's state block: the float32 trainable parameters and
 * buffers, then the frozen parameters at 4 or 2 bytes each.
 *
 * @example
 * ```ts
 * stateElements(compiled); // compiled.stateCount with a float32 base
 * ```
 */
export function stateElements(compiled: CompiledModel): number {
  const start = compiled.trainableCount + compiled.bufferCount;
  const frozen = compiled.stateCount - start;
  return compiled.baseDtype === "float32" ? compiled.stateCount : start + Math.ceil(frozen / 2);
}

/**
 * Byte offset of a state tensor within the kernel core's state block (a 16-bit frozen tensor:
 * 2 bytes per element of the frozen range).
 *
 * @example
 * ```ts
 * const ptr = layout.state.ptr + stateByteOffset(compiled, compiled.state[3]!);
 * ```
 */
export function stateByteOffset(compiled: CompiledModel, t: StateTensor): number {
  if (stateDtype(compiled, t) === 0) return t.offset * 4;
  const start = compiled.trainableCount + compiled.bufferCount;
  return start * 4 + (t.offset - start) * 2;
}

/**
 * f32 elements of the widening scratch: the most any op reads of 16-bit frozen tensors at
 * once (a linear op's weight and bias); 0 with a float32 base. The embedding op reads its
 * table row by row and needs none.
 *
 * @example
 * ```ts
 * widenElements(compiled); // 384 * 1536 + 1536 for a BERT-small base in float16 (its largest frozen Linear)
 * ```
 */
export function widenElements(compiled: CompiledModel): number {
  if (compiled.baseDtype === "float32") return 0;
  let most = 0;
  for (const op of compiled.ops) {
    if (op.kind === "embedding") continue;
    const fields = op as { weight?: number; bias?: number };
    let n = 0;
    for (const i of new Set([fields.weight ?? -1, fields.bias ?? -1])) {
      if (i >= 0 && stateDtype(compiled, compiled.state[i]!) !== 0) n += compiled.state[i]!.size;
    }
    most = Math.max(most, n);
  }
  return most;
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
    ...compiled.bufferSizes.map((size) => maxRows * size), // activations and gradient slots (valueRegions)
    ...compiled.saved.filter((_, i) => compiled.savedBuffers[i] === i).map((s) => maxRows * s.perRow + s.fixed),
    workspaceElements(compiled, maxRows),
    widenElements(compiled),
  ];
}

/** One region per saved allocation; a saved id that shares another's (checkpointing) maps to its region. */
function savedRegions(compiled: CompiledModel, arena: Arena, maxRows: number): Region[] {
  const own = compiled.saved.map((s, i) => (compiled.savedBuffers[i] === i ? arena.alloc(maxRows * s.perRow + s.fixed) : null));
  return compiled.savedBuffers.map((owner) => own[owner]!);
}

/**
 * One region per buffer; each value mapped to its buffer's (null for the graph's inputs), and
 * each gradient slot to its own buffer's or to an activation buffer's (graph/memory.ts).
 */
function valueRegions(compiled: CompiledModel, arena: Arena, maxRows: number): { values: (Region | null)[]; gradSlots: Region[] } {
  const buffers = compiled.bufferSizes.map((size) => arena.alloc(maxRows * size));
  return {
    values: compiled.valueBuffers.map((b, v) => (b < 0 ? null : { ptr: buffers[b]!.ptr, length: maxRows * compiled.values[v]!.size })),
    gradSlots: compiled.gradSlots.map((size, s) => ({ ptr: buffers[compiled.gradSlotBuffers[s]!]!.ptr, length: maxRows * size })),
  };
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
  const ownState = state ?? arena.alloc(stateElements(compiled));
  const grads = arena.alloc(compiled.trainableCount);
  const { values, gradSlots } = valueRegions(compiled, arena, maxRows);
  return {
    maxRows,
    state: ownState,
    grads,
    values,
    saved: savedRegions(compiled, arena, maxRows),
    gradSlots,
    workspace: arena.alloc(workspaceElements(compiled, maxRows)),
    widen: arena.alloc(widenElements(compiled)),
  };
}

/** The graph's inputs for one batch: x [rows, input size], the mask and the token_type_ids [rows, T] (0: none). */
export interface ModelInputs {
  x: Ptr;
  mask: Ptr;
  tokenTypes?: Ptr;
  /**
   * An input-gradient model over token ids: the values its token embedding's output is replaced
   * with, [rows, T * D] (integrated gradients interpolate there); 0 or absent: none.
   */
  inject?: Ptr;
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
  private readonly memory: WasmMemory;
  private readonly k: Kernels;
  /** value id -> pointer (the inputs' entries are set by each forward) */
  private readonly valuePtr: Ptr[];
  private readonly context: KernelOpContext & { training: boolean; seed: number };
  /** tensors widened for the running op: their indices and scratch pointers, and the next free byte */
  private readonly widened = { count: 0, index: [] as number[], ptr: [] as Ptr[], top: 0 };
  /** the backward schedule with its slots resolved to pointers */
  private readonly steps: { op: Op; index: number; dy: Ptr[]; dx: Ptr[]; accumulate: { into: Ptr; from: Ptr; size: number }[] }[];

  constructor(compiled: CompiledModel, kernels: Kernels, memory: WasmMemory, layout: ModelLayout) {
    this.compiled = compiled;
    this.k = kernels;
    this.memory = memory;
    this.layout = layout;
    this.maxRows = layout.maxRows;
    this.state = layout.state;
    this.grads = layout.grads;
    this.valuePtr = layout.values.map((r) => r?.ptr ?? 0);
    const statePtr = compiled.state.map((t) => layout.state.ptr + stateByteOffset(compiled, t));
    const dtype = compiled.state.map((t) => stateDtype(compiled, t));
    const gradPtr = compiled.state.map((t) => (t.trainable ? layout.grads.ptr + t.offset * 4 : 0));
    const savedPtr = layout.saved.map((r) => r.ptr);
    const values = this.valuePtr;
    // the 16-bit tensors widened for the running op (reset before each op): index -> f32 copy
    const widened = this.widened;
    const widenEnd = layout.widen.ptr + layout.widen.length * 4;
    const widen = (i: number): Ptr => {
      for (let w = 0; w < widened.count; w++) if (widened.index[w] === i) return widened.ptr[w]!;
      const t = compiled.state[i]!;
      const ptr = widened.top;
      if (ptr + t.size * 4 > widenEnd) throw new Error(`model: the widening scratch cannot hold ${t.name} (widenElements undercounts)`);
      if (dtype[i] === 1) kernels.widen_f16(ptr, statePtr[i]!, t.size);
      else kernels.widen_bf16(ptr, statePtr[i]!, t.size);
      widened.index[widened.count] = i;
      widened.ptr[widened.count++] = ptr;
      widened.top = ptr + t.size * 4;
      return ptr;
    };
    this.context = {
      k: kernels,
      value: (id) => values[id]!,
      state: (i) => (i < 0 ? 0 : dtype[i] ? widen(i) : statePtr[i]!),
      stored: (i) => (i < 0 ? 0 : statePtr[i]!),
      dtype: (i) => (i < 0 ? 0 : dtype[i]!),
      grad: (i) => (i < 0 ? 0 : gradPtr[i]!),
      saved: (id) => (id < 0 ? 0 : savedPtr[id]!),
      workspace: layout.workspace.ptr,
      training: false,
      seed: 0,
    };
    const slot = (s: number) => (s < 0 ? 0 : layout.gradSlots[s]!.ptr);
    this.steps = compiled.backward.map((s) => ({
      op: compiled.ops[s.op]!,
      index: s.op,
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
    const inject = inputs.inject ? this.compiled.inputGrad : undefined;
    const ops = this.compiled.ops;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      this.resetWiden();
      (OPS[op.kind].kernel.forward as (c: KernelOpContext, op: Op, rows: number) => void)(c, op, rows);
      // an input-gradient model over token ids: the embedding output is replaced by the given values
      if (inject && i === inject.producer) this.k.copy(this.valuePtr[inject.value]!, inputs.inject!, rows * this.compiled.values[inject.value]!.size);
    }
    return this.valuePtr[this.compiled.output.value]!;
  }

  /** Where a value's rows are after a forward pass ([rows, size] from the returned pointer). */
  valueAt(value: number): Ptr {
    return this.valuePtr[value]!;
  }

  /**
   * A model compiled for input gradients (compileModel's `inputGradient`): the buffer that holds
   * dL/d(input) after backward(), [maxRows, input size]; null when the output does not depend on it.
   */
  get inputGrad(): Region | null {
    const g = this.compiled.inputGrad;
    return g && g.slot >= 0 ? this.layout.gradSlots[g.slot]! : null;
  }

  /**
   * Backward pass of the last forward: reads dL/dlogits from `logitsGrad`, accumulates (+=)
   * parameter gradients into `grads`. Call zeroGrad() first. `beforeOp` sees each op right
   * before its backward, with the gradients of its outputs complete (privacy/ghost.ts reads the
   * per-sample gradient norms there).
   */
  backward(rows: number, beforeOp?: (op: Op, c: KernelOpContext, dy: readonly Ptr[]) => void): void {
    const c = this.context;
    const segments = this.compiled.checkpoints;
    let segment = segments ? segments.length - 1 : -1; // the last segment's activations are still there
    for (const s of this.steps) {
      if (segments) {
        // entering an earlier segment: run its forward again (same seed: the same dropout masks)
        while (segment > 0 && s.index < segments[segment]!.start) {
          segment--;
          const { start, end } = segments[segment]!;
          for (let i = start; i < end; i++) {
            const op = this.compiled.ops[i]!;
            this.resetWiden();
            (OPS[op.kind].kernel.forward as (c: KernelOpContext, op: Op, rows: number) => void)(c, op, rows);
          }
        }
      }
      this.resetWiden();
      beforeOp?.(s.op, c, s.dy);
      (OPS[s.op.kind].kernel.backward as (c: KernelOpContext, op: Op, rows: number, dy: Ptr[], dx: Ptr[]) => void)(c, s.op, rows, s.dy, s.dx);
      for (const a of s.accumulate) this.k.axpy(a.into, a.from, 1, rows * a.size);
    }
  }

  /** Frees the widening scratch for the next op. */
  private resetWiden(): void {
    this.widened.count = 0;
    this.widened.top = this.layout.widen.ptr;
  }

  /** grads = 0 */
  zeroGrad(): void {
    this.k.fill(this.grads.ptr, 0, this.grads.length);
  }

  /** Byte offset of a state tensor in the memory. */
  statePtr(t: StateTensor): Ptr {
    return this.state.ptr + stateByteOffset(this.compiled, t);
  }

  /**
   * Copies state values in from state_dict tensors (already shape-checked); a 16-bit frozen
   * tensor is rounded to its dtype here (to nearest even, as torch's .to(torch.float16)).
   */
  loadState(values: ReadonlyMap<string, Float32Array>): void {
    loadStateBlock(this.compiled, this.memory, this.state.ptr, values);
  }

  /**
   * The current parameters and buffers as an adapter run's stored file holds them
   * (storedHalfDtype): a 16-bit frozen tensor as its raw bits, a view over the kernel core's
   * memory (valid until the memory grows: write the file at once), instead of a float32 copy
   * twice its size; a transposed one (GPT-2's Conv1D) widened, transposed and stored as half
   * again (exact: it holds half values). The rest as readState.
   */
  readStoredState(outputDtype: "float32" | "float16" | "bfloat16"): WritableTensor[] {
    const full = new Map<string, NamedTensor>();
    const plain = this.compiled.state.filter((t) => storedHalfDtype(this.compiled, t, outputDtype) === null);
    if (plain.length === this.compiled.state.length) return this.readState();
    for (const t of plain) {
      const data = new Float32Array(this.memory.buffer, this.statePtr(t), t.size).slice();
      full.set(t.name, { name: t.name, shape: [...t.shape], data: t.transposed ? transpose(data, t.shape[1]!, t.shape[0]!) : data, ...(t.dtype === "I64" ? { dtype: "I64" as const } : {}) });
    }
    return this.compiled.state.map((t) => {
      const dtype = storedHalfDtype(this.compiled, t, outputDtype);
      if (dtype === null) return full.get(t.name)!;
      const bits = new Uint16Array(this.memory.buffer, this.statePtr(t), t.size);
      if (!t.transposed) return { name: t.name, shape: [...t.shape], data: bits, dtype };
      const wide = new Float32Array(t.size);
      (dtype === "F16" ? decodeF16 : decodeBf16)(bits, wide);
      return { name: t.name, shape: [...t.shape], data: transpose(wide, t.shape[1]!, t.shape[0]!), dtype };
    });
  }

  /** The current parameters and buffers, state_dict order (copies; 16-bit tensors as their f32 values). */
  readState(): NamedTensor[] {
    if (this.compiled.baseDtype === "float32") return readState(this.compiled, new Float32Array(this.memory.buffer, this.state.ptr, this.compiled.stateCount));
    return this.compiled.state.map((t) => {
      const d = stateDtype(this.compiled, t);
      let data: Float32Array;
      if (d === 0) data = new Float32Array(this.memory.buffer, this.statePtr(t), t.size).slice();
      else (d === 1 ? decodeF16 : decodeBf16)(new Uint16Array(this.memory.buffer, this.statePtr(t), t.size), (data = new Float32Array(t.size)));
      return {
        name: t.name,
        shape: [...t.shape],
        data: t.transposed ? transpose(data, t.shape[1]!, t.shape[0]!) : data,
        ...(t.dtype === "I64" ? { dtype: "I64" as const } : {}),
      };
    });
  }
}

/**
 * Copies state values into a state block at `statePtr` (Model.loadState, and a run that loads
 * its state block before it allocates the rest: staging.ts); a 16-bit frozen tensor is rounded
 * to its dtype here (to nearest even, as torch's .to(torch.float16)).
 *
 * @example
 * ```ts
 * const state = arena.alloc(stateElements(compiled));
 * loadStateBlock(compiled, memory, state.ptr, initialState);
 * ```
 */
export function loadStateBlock(compiled: CompiledModel, memory: WasmMemory, statePtr: Ptr, values: ReadonlyMap<string, Float32Array>): void {
  for (const t of compiled.state) {
    const d = stateDtype(compiled, t);
    const at = statePtr + stateByteOffset(compiled, t);
    // half bits of the tensor's own dtype (a 16-bit checkpoint): copied as they are, which is
    // what rounding their float32 values would give, without widening them first
    const half = values instanceof StateValues ? values.half(t.name) : undefined;
    if (d !== 0 && half?.dtype === d) {
      new Uint16Array(memory.buffer, at, t.size).set(half.bits);
      continue;
    }
    const v = values.get(t.name)!;
    if (d === 0) new Float32Array(memory.buffer, at, t.size).set(v);
    else (d === 1 ? encodeF16 : encodeBf16)(v, new Uint16Array(memory.buffer, at, t.size));
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
