/**
 * Data-parallel training on worker_threads: each batch's rows are split into one contiguous
 * shard per thread; every thread runs forward and backward of its shard with the kernel core
 * (the -threads build) over one shared WebAssembly.Memory, on the same parameters; the main
 * thread computes the loss over the whole batch (so every loss normalises exactly as on one
 * thread), sums the threads' gradients and applies the update. Steps are synchronised with
 * Atomics on a control block in the shared memory, not with messages.
 */
import { existsSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import type { Arena } from "../engine/arena.js";
import { instantiateKernels, type KernelInstance, type Ptr } from "../engine/kernels.js";
import { allocateModel, type Model, type ModelLayout } from "../engine/model.js";
import type { Network, Parallelism } from "../engine/parallel.js";
import { mixSeed } from "../engine/rng.js";
import { SampleNorms, tiedParameters } from "../engine/privacy/ghost.js";
import { wasmDirectory } from "./kernel-module.js";

/** Control block (Int32 slots in shared memory). */
export const CTL = { GEN: 0, CMD: 1, DONE: 2, ERROR: 3, X: 4, ROWS: 5, SEED: 6, TRAINING: 7, MASK: 8, TYPES: 9, NORMS: 10, SHARDS: 11 } as const;
/** BACKWARD_NORMS: DP-SGD's first backward pass, each shard's per-sample gradient norms into the shared norms block. */
export const CMD = { FORWARD: 1, BACKWARD: 2, BACKWARD_NORMS: 3, END_RUN: 9 } as const;

/** What a helper thread needs for one run (plain data: it is posted). */
export interface RunMessage {
  type: "run";
  compiled: Model["compiled"];
  layout: ModelLayout;
  ctl: Ptr;
  threads: number;
  /** The main model's logits buffer [batch, out]: helpers write their rows of it. */
  logits: Ptr;
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
    const dispatch = (c: Int32Array, cmd: number) => {
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
        Atomics.wait(c, CTL.DONE, done, 1000);
      }
    };

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
        for (const layout of layouts) k.axpy(model.grads.ptr, layout.grads.ptr, 1, model.grads.length);
      },
      zeroGrad() {
        model.zeroGrad();
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
