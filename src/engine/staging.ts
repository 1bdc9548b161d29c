/**
 * A checkpoint staged in the kernel core's memory (docs/adapters.md, Memory): the API writes a
 * multipart `weights` part straight into a kernel instance's memory as it arrives
 * (stageInKernelMemory), the run's starting state holds views of it (a frozen 16-bit base's
 * bits, StateValues), and the run on that instance moves those bytes to the top of its planned
 * memory before it allocates anything (relocateStagedState), then loads its state block from
 * them. The checkpoint is never held in the JavaScript heap, and costs no memory beyond the
 * run's own: its bytes sit where the activations go, until the state block has been loaded.
 *
 * Growing a WebAssembly.Memory detaches every view of it, so the views are derived again
 * after the one growth here, from offsets taken before it.
 */
import type { KernelInstance } from "./kernels.js";
import { WASM_PAGE } from "./kernels.js";
import type { WasmMemory } from "./wasm-types.js";
import { StateValues } from "./state-values.js";
import { stateElements } from "./model.js";
import type { PreparedRun } from "./prepare.js";

const ALIGN = 16;
const alignUp = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

/**
 * A buffer of `bytes` in a kernel instance's memory, above the module's static data, placed so
 * that byte `dataStart` of it (a safetensors file's first tensor byte) is 16-byte aligned: the
 * tensors' views are then aligned as the kernels read them. The memory grows to hold it; the
 * view stays valid until the memory grows again (the run's reservation).
 *
 * @example
 * ```ts
 * const instance = await acquireKernels(runtime.module);
 * const file = stageInKernelMemory(instance, 45_000_000, 20_488); // the weights part is written here
 * ```
 */
export function stageInKernelMemory(instance: KernelInstance, bytes: number, dataStart: number): Uint8Array {
  const base = alignUp(Math.max(instance.kernels.heap_base(), ALIGN));
  const start = alignUp(base + dataStart) - dataStart;
  const end = start + bytes;
  const memory = instance.memory;
  if (end > memory.buffer.byteLength) memory.grow(Math.ceil((end - memory.buffer.byteLength) / WASM_PAGE));
  return new Uint8Array(memory.buffer, start, bytes);
}

/**
 * Moves the starting state's views of `memory` (a staged checkpoint's half tensors) to the top
 * of the memory the run reserves, above `keepBelow` (the end of the state block, which the run
 * allocates first and loads from them), growing the memory to `reserveBytes` (or more when the
 * run's memory above its state block cannot hold them), and points the views at their new
 * place. Returns the bytes moved (0: nothing of `memory` was held).
 *
 * @example
 * ```ts
 * relocateStagedState(initialState, instance.memory, plan.memory_bytes, arena.base + stateBytes);
 * ```
 */
export function relocateStagedState(values: ReadonlyMap<string, Float32Array>, memory: WasmMemory, reserveBytes: number, keepBelow: number): number {
  if (!(values instanceof StateValues)) return 0;
  const staged: { name: string; dtype: 1 | 2; offset: number; length: number }[] = [];
  for (const [name, half] of values.halfEntries()) {
    if (half.bits.buffer === memory.buffer) staged.push({ name, dtype: half.dtype, offset: half.bits.byteOffset, length: half.bits.length });
  }
  if (staged.length === 0) return 0;
  const lo = Math.min(...staged.map((s) => s.offset));
  const hi = Math.max(...staged.map((s) => s.offset + s.length * 2));
  // the destination keeps the views' 2-byte alignment (lo is even), and the kernels' 16 when lo had it
  const shift = lo % ALIGN;
  const top = Math.max(reserveBytes, alignUp(keepBelow) + (hi - lo) + ALIGN);
  const dest = Math.floor((top - (hi - lo) - shift) / ALIGN) * ALIGN + shift;
  if (top > memory.buffer.byteLength) memory.grow(Math.ceil((top - memory.buffer.byteLength) / WASM_PAGE));
  new Uint8Array(memory.buffer).copyWithin(dest, lo, hi);
  for (const s of staged) values.setHalf(s.name, s.dtype, new Uint16Array(memory.buffer, dest + (s.offset - lo), s.length));
  return hi - lo;
}

/**
 * Bytes a staged checkpoint adds to a run's memory beyond its plan: none when the memory above
 * the state block (activations, gradients, optimizer state) holds the staged bytes, which are
 * moved there until the state block is loaded (relocateStagedState), else the difference.
 *
 * @example
 * ```ts
 * const extra = stagedBeyondPlan(45_000_000, prepared); // 0 for the MiniLM LoRA row at batch 8
 * ```
 */
export function stagedBeyondPlan(stagedBytes: number, prepared: Pick<PreparedRun, "model" | "plan">): number {
  if (stagedBytes === 0) return 0;
  const above = prepared.plan.memory_bytes - stateElements(prepared.model) * 4;
  return Math.max(0, stagedBytes + 2 * ALIGN - above);
}
