/**
 * Data-parallel training on worker_threads: each batch's rows are split into one contiguous
 * shard per thread; every thread runs forward and backward of its shard with the kernel core
 * (the -threads build) over one shared WebAssembly.Memory, on the same parameters; the main
 * thread computes the loss over the whole batch (so every loss normalises exactly as on one
 * thread). The threads then sum the gradients and apply the update each over its own range of
 * the parameters (both elementwise, so the result is one thread's bit for bit). Steps are
 * synchronised with Atomics on a control block in the shared memory, not with messages; a
 * waiting thread spins briefly before it sleeps, since a step's phases are a millisecond or less
 * apart and waking a sleeping thread costs tens of microseconds.
 */
import { existsSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import type { Arena } from "../engine/arena.js";
import { instantiateKernels, type KernelInstance, type Kernels, type Ptr } from "../engine/kernels.js";
import { allocateModel, type Model, type ModelLayout } from "../engine/model.js";
import type { Network, Parallelism } from "../engine/parallel.js";
import type { Optimizer } from "../engine/optimizers.js";
import { mixSeed } from "../engine/rng.js";
import { SampleNorms, tiedParameters } from "../engine/privacy/ghost.js";
import { wasmDirectory } from "./kernel-module.js";

/** Control block (Int32 slots in shared memory). */
export const CTL = {
  GEN: 0, CMD: 1, DONE: 2, ERROR: 3, X: 4, ROWS: 5, SEED: 6, TRAINING: 7, MASK: 8, TYPES: 9, NORMS: 10,
  /** UPDATE: the update kernel's index in UPDATE_KERNELS, and the pointer of its arguments (f64) */
  KERNEL: 11, ARGS: 12,
  /** UPDATE: set to 1 by a thread whose updated parameters are not all finite; REDUCE: whose summed gradients are not */
  NONFINITE: 13,
  /** BACKWARD: 1 when the helper's gradients are already zero (the last UPDATE zeroed them) */
  ZEROED: 14,
  SHARDS: 15,
} as const;
/**
 * BACKWARD_NORMS: DP-SGD's first backward pass, each shard's per-sample gradient norms into the
 * shared norms block. REDUCE: each thread adds its range of every helper's gradients into the
 * model's. UPDATE: each thread runs the optimizer's kernel over its range of the parameters and
 * checks them.
 */
export const CMD = { FORWARD: 1, BACKWARD: 2, BACKWARD_NORMS: 3, REDUCE: 4, UPDATE: 5, END_RUN: 9 } as const;

/** The optimizers' update kernels (optimizers.ts): elementwise, `n` their first i32 argument after the pointers. */
export const UPDATE_KERNELS = ["sgd_step", "adam_step", "rmsprop_step", "adagrad_step"] as const;
/** Pointer arguments that lead each update kernel's argument list (program.ts's signatures). */
export const UPDATE_POINTERS: Record<(typeof UPDATE_KERNELS)[number], number> = { sgd_step: 3, adam_step: 5, rmsprop_step: 5, adagrad_step: 3 };
/** The most arguments an update kernel takes (adam_step); a shorter list leaves the rest unused. */
export const UPDATE_MAX_ARGS = 18;

/**
 * Thread `t`'s range [start, end) of n elements shared out over T threads, in whole 64-byte
 * lines so that no two threads write the same cache line.
 */
export function elementRange(n: number, T: number, t: number): [number, number] {
  const chunk = Math.ceil(n / T / 16) * 16;
  return [Math.min(n, t * chunk), Math.min(n, (t + 1) * chunk)];
}

/**
 * Calls an update kernel on range [start, end) of its parameters: its pointers (0 = absent)
 * advanced by `start` elements, its count set to end - start.
 */
export function callUpdateRange(kernels: Kernels, kernel: (typeof UPDATE_KERNELS)[number], args: ArrayLike<number>, start: number, end: number): void {
  const pointers = UPDATE_POINTERS[kernel];
  const call = Array.from(args);
  for (let i = 0; i < pointers; i++) if (call[i] !== 0) call[i]! += start * 4;
  call[pointers] = end - start;
  (kernels[kernel] as (...a: number[]) => void)(...call);
}

/**
 * Thread t's share of REDUCE: its range of every helper's gradients added into the model's, in
 * helper order (the order one thread would sum them in); returns whether the sums are finite.
 */
export function reduceShare(grads: Ptr, helperGrads: readonly Ptr[], n: number, T: number, t: number, kernels: Kernels): boolean {
  const [start, end] = elementRange(n, T, t);
  if (end <= start) return true;
  for (const g of helperGrads) kernels.axpy(grads + start * 4, g + start * 4, 1, end - start);
  return kernels.all_finite(grads + start * 4, end - start) !== 0;
}

/**
 * Thread t's share of UPDATE: the update kernel over its range of the parameters, then the
 * gradients of that range zeroed (the model's and every helper's: the update has read them);
 * returns whether the updated parameters are finite.
 */
export function updateShare(
  kernels: Kernels, kernel: (typeof UPDATE_KERNELS)[number], args: ArrayLike<number>, params: Ptr, grads: Ptr, helperGrads: readonly Ptr[], T: number, t: number,
): boolean {
  const n = args[UPDATE_POINTERS[kernel]]!;
  const [start, end] = elementRange(n, T, t);
  if (end <= start) return true;
  callUpdateRange(kernels, kernel, args, start, end);
  const finite = kernels.all_finite(params + start * 4, end - start) !== 0;
  zeroRange(grads, helperGrads, n, T, t, kernels);
  return finite;
}

/** Zeroes thread t's range of the model's gradients and of every helper's (UPDATE, once the update has read them). */
export function zeroRange(grads: Ptr, helperGrads: readonly Ptr[], n: number, T: number, t: number, kernels: Kernels): void {
  const [start, end] = elementRange(n, T, t);
  if (end <= start) return;
  kernels.fill(grads + start * 4, 0, end - start);
  for (const g of helperGrads) kernels.fill(g + start * 4, 0, end - start);
}

/**
 * Spins on `slot` of `ctl` while it equals `value`, for about `spinMs`, then sleeps on it
 * (Atomics.wait) until it changes, or until `sleepMs` pass without a change.
 *
 * A wake-up does not mean the value changed: a notify can arrive late. dispatch() adds to GEN, then notifies; a
 * helper that saw the new GEN while spinning, ran the command and went back to waiting can be
 * woken by that same notify if the main thread was descheduled between the two. Returning
 * then made the helper run the command a second time (an UPDATE applied twice to its range:
 * 2-thread parity runs off by 15-290x the tolerance in 7 of 50 runs on a loaded machine),
 * so the value is read again after every wake-up.
 *
 * @example
 * ```ts
 * waitWhile(ctl, CTL.GEN, generation); // returns once the main thread dispatched the next command
 * ```
 */
export function waitWhile(ctl: Int32Array, slot: number, value: number, spinMs = 0.2, sleepMs = Infinity): void {
  const until = performance.now() + spinMs;
  let polls = 0;
  while (Atomics.load(ctl, slot) === value) {
    // the clock is read every 64 polls: a poll is a few nanoseconds, the clock tens
    if ((++polls & 63) === 0 && performance.now() > until) {
      if (Atomics.wait(ctl, slot, value, sleepMs) === "timed-out") return;
    }
  }
}

/** What a helper thread needs for one run (plain data: it is posted). */
export interface RunMessage {
  type: "run";
  compiled: Model["compiled"];
  layout: ModelLayout;
  ctl: Ptr;
  threads: number;
  /** The main model's logits buffer [batch, out]: helpers write their rows of it. */
  logits: Ptr;
  /** REDUCE: the model's gradients [n] and every helper's, in helper order (the sum's order). */
  grads: Ptr;
  helperGrads: Ptr[];
  gradCount: number;
  /** UPDATE: the model's parameters [n] (checked after the update). */
  params: Ptr;
}

/** Below this many FLOPs per step, synchronising threads costs more than it saves (measured: bench). */
const MIN_FLOPS_PER_STEP = 4e6;

function workerScript(): string {
  // the compiled worker sits beside this module in dist/ (tests run on sources: use the build)
  const here = new URL("./train-worker.js", import.meta.url);
  if (here.protocol === "file:" && existsSync(here)) return here.pathname;
  const built = join(wasmDirectory(), "..", "..", "dist", "src", "node", "train-worker.js");
  if (existsSync(built)) return built;
  throw new Error("edgetune: dist/src/node/train-worker.js not found; run `npm run build`");
}

/**
 * A pool of helper threads over one shared memory. One run uses it at a time; a concurrent run
 * gets null from acquire() and trains on one thread.
 *
 * @example
 * ```ts
 * const pool = await ThreadPool.create(2);
 * const result = await train(request, { parallel: pool });
 * await pool.close();
 * ```
 */
export class ThreadPool implements Parallelism {
  private busy = false;
  private constructor(
    readonly threads: number,
    private readonly instance: KernelInstance,
    private readonly workers: Worker[],
    readonly variant: "wasm-simd" | "wasm-relaxed-simd",
    private readonly minFlopsPerStep: number,
  ) {}

  /**
   * Starts `threads - 1` helper threads (the caller's thread is the first). Runs whose steps
   * are smaller than `minFlopsPerStep` keep to one thread.
   */
  static async create(threads = availableParallelism(), options: { minFlopsPerStep?: number } = {}): Promise<ThreadPool> {
    const dir = wasmDirectory();
    const relaxedBytes = readFileSync(join(dir, "relaxed-simd-threads.wasm"));
    const relaxed = WebAssembly.validate(relaxedBytes);
    const module = await WebAssembly.compile(relaxed ? relaxedBytes : readFileSync(join(dir, "simd-threads.wasm")));
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
    const instance = { memory, kernels: await instantiateKernels(module, memory) };
    const script = workerScript();
    const workers = await Promise.all(
      Array.from({ length: Math.max(0, threads - 1) }, (_, i) => {
        // V8 flags (such as --experimental-wasm-relaxed-simd) are process-wide: workers share them
        const worker = new Worker(script, { workerData: { index: i + 1 } });
        worker.unref();
        return new Promise<Worker>((resolve, reject) => {
          worker.once("message", () => resolve(worker));
          worker.once("error", reject);
          worker.postMessage({ type: "init", module, memory });
        });
      }),
    );
    return new ThreadPool(threads, instance, workers, relaxed ? "wasm-relaxed-simd" : "wasm-simd", options.minFlopsPerStep ?? MIN_FLOPS_PER_STEP);
  }

  worthIt(flopsPerStep: number): boolean {
    return flopsPerStep >= this.minFlopsPerStep;
  }

  async acquire(): Promise<KernelInstance | null> {
    if (this.busy) return null;
    this.busy = true;
    return this.instance;
  }

  release(): void {
    this.busy = false;
  }

  async distribute(model: Model, arena: Arena, instance: KernelInstance): Promise<Network & { close(): void }> {
    const T = this.threads;
    const k = instance.kernels;
    const ctlRegion = arena.alloc(CTL.SHARDS + 2 * T);
    const argsRegion = arena.alloc(2 * UPDATE_MAX_ARGS); // [UPDATE_MAX_ARGS] f64: the update kernel's arguments
    const shardMax = Math.ceil(model.maxRows / T);
    // per-sample squared norms of a private step (float64, one per batch row; the arena aligns to 16 bytes)
    const normsRegion = arena.alloc(2 * model.maxRows);
    const layouts = this.workers.map(() => allocateModel(model.compiled, arena, shardMax, model.state));
    // a fresh (zeroed) control block: every helper starts waiting for generation 1
    const ctl = () => new Int32Array(instance.memory.buffer, ctlRegion.ptr, ctlRegion.length);
    await Promise.all(
      this.workers.map(
        (w, i) =>
          new Promise<void>((resolve) => {
            w.once("message", () => resolve());
            const message: RunMessage = {
              type: "run", compiled: model.compiled, layout: layouts[i]!, ctl: ctlRegion.ptr, threads: T,
              logits: model.logits.ptr,
              grads: model.grads.ptr, helperGrads: layouts.map((l) => l.grads.ptr), gradCount: model.grads.length,
              params: model.state.ptr,
            };
            w.postMessage(message);
          }),
      ),
    );

    const sampleNorms = new SampleNorms(tiedParameters(model.compiled));

    /** Splits `rows` into T contiguous shards; writes the starts and sizes into the control block. */
    const split = (c: Int32Array, rows: number) => {
      const base = Math.floor(rows / T);
      const extra = rows % T;
      let start = 0;
      for (let t = 0; t < T; t++) {
        const n = base + (t < extra ? 1 : 0);
        c[CTL.SHARDS + 2 * t] = start;
        c[CTL.SHARDS + 2 * t + 1] = n;
        start += n;
      }
    };
    // whether the last UPDATE left every gradient zero (each thread zeroes its range once the
    // update has read it, while it is in that thread's cache): the next zero_grad is then done
    let gradsZeroed = false;
    const dispatch = (c: Int32Array, cmd: number) => {
      c[CTL.ZEROED] = cmd === CMD.BACKWARD && gradsZeroed ? 1 : 0;
      // the commands that write gradients use up the zeroing
      if (cmd === CMD.BACKWARD || cmd === CMD.BACKWARD_NORMS) gradsZeroed = false;
      Atomics.store(c, CTL.CMD, cmd);
      Atomics.store(c, CTL.DONE, 0);
      Atomics.add(c, CTL.GEN, 1);
      Atomics.notify(c, CTL.GEN);
    };
    const join = (c: Int32Array) => {
      for (;;) {
        const done = Atomics.load(c, CTL.DONE);
        if (Atomics.load(c, CTL.ERROR) !== 0) throw new Error("a training thread failed; see its error above");
        if (done >= T - 1) return;
        waitWhile(c, CTL.DONE, done, 0.2, 1000);
      }
    };
    let gradsFinite = true;
    const helperGradPtrs = layouts.map((l) => l.grads.ptr);
    let captured: { kernel: (typeof UPDATE_KERNELS)[number]; args: number[] } | null = null;
    // a Kernels whose update kernels record their call instead of running it (optimizer.stepOn)
    const recorder = Object.fromEntries(
      UPDATE_KERNELS.map((name) => [name, (...args: number[]) => { captured = { kernel: name, args }; }]),
    ) as unknown as Kernels;

    return {
      forward(inputs, rows, training, seed) {
        const c = ctl();
        split(c, rows);
        c[CTL.X] = inputs.x;
        c[CTL.MASK] = inputs.mask;
        c[CTL.TYPES] = inputs.tokenTypes ?? 0;
        c[CTL.ROWS] = rows;
        c[CTL.SEED] = seed | 0;
        c[CTL.TRAINING] = training ? 1 : 0;
        dispatch(c, CMD.FORWARD);
        // shard 0 on this thread, straight into the model's logits buffer
        const n0 = c[CTL.SHARDS + 1]!;
        if (n0 > 0) model.forward(inputs, n0, training, seed);
        join(c);
        return model.logits.ptr;
      },
      backward() {
        const c = ctl();
        // hand each helper its rows of dL/dlogits first: this thread's backward reuses that buffer
        const out = model.compiled.values[model.compiled.output.value]!.size;
        const slot = model.compiled.outputGradSlot;
        layouts.forEach((layout, i) => {
          const start = c[CTL.SHARDS + 2 * (i + 1)]!;
          const rows = c[CTL.SHARDS + 2 * (i + 1) + 1]!;
          if (rows > 0) k.copy(layout.gradSlots[slot]!.ptr, model.logitsGrad.ptr + start * out * 4, rows * out);
        });
        dispatch(c, CMD.BACKWARD);
        const n0 = c[CTL.SHARDS + 1]!;
        if (n0 > 0) model.backward(n0);
        join(c);
        // the shards' gradients summed into the model's, each thread its own range, and checked
        c[CTL.NONFINITE] = 0;
        dispatch(c, CMD.REDUCE);
        const mine = reduceShare(model.grads.ptr, helperGradPtrs, model.grads.length, T, 0, k);
        join(c);
        gradsFinite = mine && Atomics.load(c, CTL.NONFINITE) === 0;
      },
      gradientsFinite: () => gradsFinite,
      update(optimizer: Optimizer): boolean {
        captured = null;
        optimizer.stepOn(recorder);
        const call = captured as { kernel: (typeof UPDATE_KERNELS)[number]; args: number[] } | null;
        if (!call) throw new Error(`threads: the optimizer's kernel ${optimizer.kernel} is not an update kernel`);
        const c = ctl();
        new Float64Array(instance.memory.buffer, argsRegion.ptr, UPDATE_MAX_ARGS).set(call.args);
        c[CTL.KERNEL] = UPDATE_KERNELS.indexOf(call.kernel);
        c[CTL.ARGS] = argsRegion.ptr;
        c[CTL.NONFINITE] = 0;
        dispatch(c, CMD.UPDATE);
        const finite = updateShare(k, call.kernel, call.args, model.state.ptr, model.grads.ptr, helperGradPtrs, T, 0);
        join(c);
        gradsZeroed = true;
        return finite && Atomics.load(c, CTL.NONFINITE) === 0;
      },
      zeroGrad() {
        // after an update the threads have zeroed every gradient already (dispatch() clears
        // the flag for the helpers once BACKWARD has told them)
        if (!gradsZeroed) model.zeroGrad();
      },
      backwardSampleNorms(rows, norms) {
        const c = ctl();
        const out = model.compiled.values[model.compiled.output.value]!.size;
        const slot = model.compiled.outputGradSlot;
        layouts.forEach((layout, i) => {
          const start = c[CTL.SHARDS + 2 * (i + 1)]!;
          const n = c[CTL.SHARDS + 2 * (i + 1) + 1]!;
          if (n > 0) k.copy(layout.gradSlots[slot]!.ptr, model.logitsGrad.ptr + start * out * 4, n * out);
        });
        c[CTL.NORMS] = normsRegion.ptr;
        new Float64Array(instance.memory.buffer, normsRegion.ptr, rows).fill(0);
        dispatch(c, CMD.BACKWARD_NORMS);
        const n0 = c[CTL.SHARDS + 1]!;
        const shared = () => new Float64Array(instance.memory.buffer, normsRegion.ptr, rows);
        if (n0 > 0) {
          const view = { f32: (ptr: number, length: number) => new Float32Array(instance.memory.buffer, ptr, length) };
          const mine = shared().subarray(0, n0);
          model.zeroGrad();
          model.backward(n0, (op, context, dy) => sampleNorms.add(op, context, view, n0, dy, mine));
          sampleNorms.finish(n0, mine);
        }
        join(c);
        const all = shared();
        for (let i = 0; i < rows; i++) norms[i]! += all[i]!;
      },
      close() {
        const c = ctl();
        dispatch(c, CMD.END_RUN);
        join(c);
      },
    };
  }

  /** Stops the helper threads. */
  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** The per-shard dropout seed: shard 0 keeps the step's seed, so one thread equals no threads. */
export function shardSeed(seed: number, shard: number): number {
  return shard === 0 ? seed : mixSeed(seed, shard);
}
