/**
 * The fused step's program: a compact Int32 op list in the kernel core's memory that
 * wasm/assembly/program.ts (`run_program`) runs, so a chunk of training steps is one WASM call.
 *
 * A program is written by tracing: the model's forward and backward passes (model.ts), the loss
 * (losses.ts) and the optimizer (optimizers.ts) run once over a `ProgramRecorder` in place of
 * the kernels, which writes each kernel call as an instruction (op code, kernel id, buffer
 * offsets, sizes, f32 scalars as their bits) instead of running it. What varies per step is an
 * instruction of its own: the batch's rows (GATHER from the epoch's order), the loss kept and
 * checked (LOSS), the all-finite checks (CHECK), clip_grad_norm_ (CLIP), and the optimizer's
 * scalars (CALLROW: a row per step, recorded by the host as the schedule sets lr). So the
 * program makes the same kernel calls with the same arguments in the same order as the
 * JS-driven step, and its floats are the same.
 *
 * `runProgramReference` is the plain TypeScript twin of `run_program`: the same program over
 * any Kernels (the reference kernels use it as their `run_program`).
 */
import { KERNEL_NAMES, type Kernels, type Ptr } from "./kernels.js";
import type { WasmMemory } from "./wasm-types.js";

/**
 * Instructions (wasm/assembly/program.ts has the same numbers).
 *
 * @example
 * ```ts
 * words.push(OP.CHECK, grads, n, FAULT.GRADIENT); // what ProgramWriter.check writes
 * ```
 */
export const OP = { CALL: 1, GATHER: 2, LOSS: 3, CHECK: 4, CLIP: 5, CALLROW: 6 } as const;

/**
 * Why a program stopped at a step (0: it did not), control block word 8.
 *
 * @example
 * ```ts
 * if (new Int32Array(memory.buffer, ctl, CONTROL_WORDS)[8] === FAULT.LOSS) stop("the loss became NaN");
 * ```
 */
export const FAULT = { LOSS: 1, GRADIENT: 2, NORM: 3, WEIGHT: 4 } as const;

/**
 * The kernels a program can call, in kernel-id order (the switch of wasm/assembly/program.ts),
 * with their argument kinds: p a pointer, i an i32, f an f32 (written as its bits).
 */
export const FUSED_KERNELS = [
  ["matmul_nt", "pppppiii"],
  ["matmul_nn", "pppiiiip"],
  ["matmul_tn", "pppiiiip"],
  ["bias_grad", "ppii"],
  ["activation_forward", "ppifi"],
  ["activation_backward", "ppppifi"],
  ["mul", "pppi"],
  ["add", "pppi"],
  ["scale", "pfi"],
  ["fill", "pfi"],
  ["copy", "ppi"],
  ["axpy", "ppfi"],
  ["gather_rows", "pppii"],
  ["mse_loss", "pppi"],
  ["l1_loss", "pppi"],
  ["huber_loss", "pppfi"],
  ["smooth_l1_loss", "pppfi"],
  ["cross_entropy_loss", "ppppiiif"],
  ["bce_with_logits_loss", "ppppii"],
  ["hinge_loss", "pppi"],
  ["multi_margin_loss", "ppppiiif"],
  ["sgd_step", "pppiffffiii"],
  ["adam_step", "pppppifffffffffiii"],
  ["rmsprop_step", "pppppiffffffii"],
  ["adagrad_step", "pppifffi"],
  ["layer_norm_forward", "ppppppiifi"],
  ["layer_norm_backward", "ppppppppiii"],
] as const satisfies readonly (readonly [keyof Kernels, string])[];

/** A kernel a program can call. */
export type FusedKernel = (typeof FUSED_KERNELS)[number][0];

/** Scratch for one argument list while a body is written (the longest kernel takes 18). */
const SCRATCH_I32 = new Int32Array(32);
const SCRATCH_F32 = new Float32Array(SCRATCH_I32.buffer);

const KERNEL_NAME_SET: ReadonlySet<string> = new Set(KERNEL_NAMES);
const ANSWER_ONE = () => 1;
const ANSWER_ZERO = () => 0;
const KERNEL_ID = new Map<string, number>(FUSED_KERNELS.map(([name], id) => [name, id]));
const KINDS: readonly string[] = FUSED_KERNELS.map(([, kinds]) => kinds);

/**
 * Control block words (run_program's `ctl`): 16 i32, 16-byte aligned. 0-6 are written by the
 * caller (bodies, tail batch, first batch, steps), 9 the in-order flag; 7-8 and 10-11 by the run.
 *
 * @example
 * ```ts
 * const ctl = arena.alloc(CONTROL_WORDS);
 * arena.i32(ctl).set([full.ptr, full.length, tail.ptr, tail.length, -1, 0, 32]);
 * ```
 */
export const CONTROL_WORDS = 16;

const bits = new DataView(new ArrayBuffer(8));
/** An f32 argument as the i32 word that holds its bits (rounded to nearest, as a call rounds it). */
function f32Word(x: number): number {
  bits.setFloat32(0, x, true);
  return bits.getInt32(0, true);
}

/** Per kernel: 1 where an argument is an f32, 0 where it is an i32 or a pointer. */
const FLOAT_ARGS: readonly Uint8Array[] = KINDS.map((kinds) => Uint8Array.from(kinds, (c) => (c === "f" ? 1 : 0)));

/**
 * Writes one argument list (the kinds of kernel `id`) at word `at`: i32 and pointers through
 * `i32`, f32 arguments through `f32`, a Float32Array over the same words (a store rounds to
 * nearest, as a call rounds a number to an f32 parameter).
 *
 * @example
 * ```ts
 * const words = new Int32Array(18);
 * encodeArgs(fusedKernelId("adam_step"), args, words, new Float32Array(words.buffer), 0);
 * ```
 */
export function encodeArgs(id: number, args: ArrayLike<number>, i32: Int32Array, f32: Float32Array, at: number): void {
  const floats = FLOAT_ARGS[id]!;
  if (args.length !== floats.length) throw new Error(`program: ${FUSED_KERNELS[id]![0]} takes ${floats.length} arguments, got ${args.length}`);
  for (let k = 0; k < floats.length; k++) {
    if (floats[k]) f32[at + k] = args[k]!;
    else i32[at + k] = args[k]!;
  }
}

/**
 * The kernel id of a name, or -1 when programs cannot call it.
 *
 * @example
 * ```ts
 * fusedKernelId("adam_step"); // 22
 * fusedKernelId("dropout_forward"); // -1
 * ```
 */
export function fusedKernelId(name: string): number {
  return KERNEL_ID.get(name) ?? -1;
}

/**
 * Arguments a kernel takes.
 *
 * @example
 * ```ts
 * fusedArgCount(fusedKernelId("adam_step")); // 18
 * ```
 */
export function fusedArgCount(id: number): number {
  return KINDS[id]!.length;
}

/**
 * A program body being written.
 *
 * @example
 * ```ts
 * const body = new ProgramWriter();
 * body.call("copy", [snapshot, state, n]);
 * body.check(grads, n, FAULT.GRADIENT);
 * body.words; // [1, 10, 3, snapshot, state, n, 4, grads, n, 2]
 * ```
 */
export class ProgramWriter {
  readonly words: number[] = [];
  /** Kernels the traced code called that programs cannot: the program is unusable when any. */
  readonly unsupported = new Set<string>();

  /** CALL: kernel `name` with `args`. */
  call(name: string, args: ArrayLike<number>): void {
    const id = fusedKernelId(name);
    if (id < 0) {
      this.unsupported.add(name);
      return;
    }
    encodeArgs(id, args, SCRATCH_I32, SCRATCH_F32, 0);
    this.words.push(OP.CALL, id, args.length);
    for (let k = 0; k < args.length; k++) this.words.push(SCRATCH_I32[k]!);
  }

  /** GATHER: rows [b*batch, b*batch + rows) of `order` from src into dst, rows of `cols`. */
  gather(dst: Ptr, src: Ptr, order: Ptr, batch: number, rows: number, cols: number): void {
    this.words.push(OP.GATHER, dst, src, order, batch, rows, cols);
  }

  /** LOSS: the last call's result to losses[s] (f64), a fault when it is not finite. */
  loss(losses: Ptr): void {
    this.words.push(OP.LOSS, losses);
  }

  /** CHECK: all_finite(ptr, n), else fault `code`. */
  check(ptr: Ptr, n: number, code: number): void {
    this.words.push(OP.CHECK, ptr, n, code);
  }

  /** CLIP: clip_grad_norm_ of grads[n], L2 (`inf` false) or inf-norm. */
  clip(grads: Ptr, n: number, inf: boolean, errorIfNonfinite: boolean, maxNorm: number): void {
    bits.setFloat64(0, maxNorm, true);
    this.words.push(OP.CLIP, grads, n, inf ? 0 : 2, errorIfNonfinite ? 1 : 0, bits.getInt32(0, true), bits.getInt32(4, true));
  }

  /** CALLROW: kernel `name` with row s of `table` (rows of its argument count). */
  callRow(name: string, table: Ptr): void {
    const id = fusedKernelId(name);
    if (id < 0) {
      this.unsupported.add(name);
      return;
    }
    this.words.push(OP.CALLROW, id, fusedArgCount(id), table);
  }

  /** A Kernels whose calls are written into this body instead of run (value-returning kernels answer 0, all_finite 1). */
  recorder(): Kernels {
    // a kernel's recording function is made when the trace first calls it (a step calls about
    // fifteen of the eighty kernels, and a backend traces two bodies per run)
    const made = new Map<string, (...args: number[]) => number>();
    return new Proxy({} as Kernels, {
      get: (_, name) => {
        if (name === "heap_base") return ANSWER_ZERO;
        if (typeof name !== "string" || !KERNEL_NAME_SET.has(name)) return undefined;
        if (name === "all_finite") return ANSWER_ONE;
        let record = made.get(name);
        if (!record) {
          record = (...args: number[]) => {
            this.call(name, args);
            return 0;
          };
          made.set(name, record);
        }
        return record;
      },
    });
  }
}

/**
 * The plain TypeScript twin of run_program (wasm/assembly/program.ts): runs the control
 * block's steps over `kernels`, stops at the first fault; returns the steps done.
 *
 * @example
 * ```ts
 * const done = runProgramReference(kernels, memory, ctl); // kernels: createReferenceKernels(memory)
 * ```
 */
export function runProgramReference(kernels: Kernels, memory: WasmMemory, ctl: Ptr): number {
  const word = (p: Ptr) => new Int32Array(memory.buffer, p, 1)[0]!;
  const at = (k: number) => word(ctl + 4 * k);
  const [full, fullWords, tail, tailWords, tailBatch, b0, count, inOrder] = [at(0), at(1), at(2), at(3), at(4), at(5), at(6), at(9) !== 0];
  const setWord = (k: number, v: number) => (new Int32Array(memory.buffer, ctl, CONTROL_WORDS)[k] = v);
  setWord(7, 0);
  setWord(8, 0);
  const fault = (s: number, code: number) => (setWord(7, s), setWord(8, code), s);
  const call = (id: number, args: Ptr): number => {
    const kinds = KINDS[id]!;
    const i32 = new Int32Array(memory.buffer, args, kinds.length);
    const f32 = new Float32Array(memory.buffer, args, kinds.length);
    const values: number[] = [];
    for (let k = 0; k < kinds.length; k++) {
      const c = kinds[k];
      values.push(c === "f" ? f32[k]! : c === "p" ? i32[k]! >>> 0 : i32[k]!);
    }
    const fn = kernels[FUSED_KERNELS[id]![0]] as (...a: number[]) => number | void;
    return Number(fn(...values) ?? 0);
  };
  for (let s = 0; s < count; s++) {
    const b = b0 + s;
    const body = b === tailBatch ? tail : full;
    const end = body + 4 * (b === tailBatch ? tailWords : fullWords);
    let pc = body;
    let last = 0;
    while (pc < end) {
      const w = (k: number) => word(pc + 4 * k);
      const op = w(0);
      if (op === OP.CALL) {
        last = call(w(1), pc + 12);
        pc += 4 * (3 + w(2));
      } else if (op === OP.CALLROW) {
        last = call(w(1), (w(3) >>> 0) + 4 * s * w(2));
        pc += 16;
      } else if (op === OP.GATHER) {
        if (inOrder) kernels.copy(w(1) >>> 0, (w(2) >>> 0) + 4 * b * w(4) * w(6), w(5) * w(6));
        else kernels.gather_rows(w(1) >>> 0, w(2) >>> 0, (w(3) >>> 0) + 4 * b * w(4), w(5), w(6));
        pc += 28;
      } else if (op === OP.LOSS) {
        new Float64Array(memory.buffer, (w(1) >>> 0) + 8 * s, 1)[0] = last;
        if (!Number.isFinite(last)) return fault(s, FAULT.LOSS);
        pc += 8;
      } else if (op === OP.CHECK) {
        if (!kernels.all_finite(w(1) >>> 0, w(2))) return fault(s, w(3));
        pc += 16;
      } else if (op === OP.CLIP) {
        // torch.nn.utils.clip_grad_norm_ as step.ts computes it
        const grads = w(1) >>> 0, n = w(2);
        const total = w(3) === 0 ? Math.fround(kernels.max_abs(grads, n)) : Math.fround(Math.sqrt(kernels.sum_squares(grads, n)));
        if (w(4) !== 0 && !Number.isFinite(total)) {
          new Float64Array(memory.buffer, ctl + 40, 1)[0] = total;
          return fault(s, FAULT.NORM);
        }
        bits.setInt32(0, w(5), true);
        bits.setInt32(4, w(6), true);
        const maxNorm = bits.getFloat64(0, true);
        kernels.scale(grads, Math.min(Math.fround(maxNorm / Math.fround(total + 1e-6)), 1), n);
        pc += 28;
      } else {
        return fault(s, -1);
      }
    }
    setWord(7, s + 1);
  }
  return count;
}
