/**
 * A helper thread of ThreadPool (threads.ts): runs the forward and backward passes of its
 * shard of each batch over the shared memory, as the control block commands.
 */
import { parentPort, workerData } from "node:worker_threads";
import { instantiateKernels, type Kernels } from "../engine/kernels.js";
import { Model } from "../engine/model.js";
import { CMD, CTL, UPDATE_KERNELS, UPDATE_MAX_ARGS, reduceShare, shardSeed, updateShare, waitWhile, type RunMessage } from "./threads.js";
import { SampleNorms, tiedParameters } from "../engine/privacy/ghost.js";

const index = (workerData as { index: number }).index;
let memory: WebAssembly.Memory;
let kernels: Kernels;

function run(message: RunMessage): void {
  const compiled = message.compiled;
  const model = new Model(compiled, kernels, memory, message.layout);
  const out = compiled.values[compiled.output.value]!.size;
  const inp = compiled.values[compiled.input.value]!.size;
  const maskWidth = compiled.mask === null ? 0 : compiled.values[compiled.mask]!.size;
  // DP-SGD: per-sample gradient norms of this thread's rows (privacy/ghost.ts)
  const sampleNorms = new SampleNorms(tiedParameters(compiled));
  const view = { f32: (ptr: number, length: number) => new Float32Array(memory.buffer, ptr, length) };
  let generation = 0; // the control block is fresh: the first command is generation 1
  for (;;) {
    const ctl = new Int32Array(memory.buffer, message.ctl, CTL.SHARDS + 2 * message.threads);
    waitWhile(ctl, CTL.GEN, generation);
    generation = Atomics.load(ctl, CTL.GEN);
    const cmd = Atomics.load(ctl, CTL.CMD);
    try {
      const start = ctl[CTL.SHARDS + 2 * index]!;
      const rows = ctl[CTL.SHARDS + 2 * index + 1]!;
      if (cmd === CMD.FORWARD && rows > 0) {
        const inputs = {
          x: ctl[CTL.X]! + start * inp * 4,
          mask: maskWidth ? ctl[CTL.MASK]! + start * maskWidth * 4 : 0,
          tokenTypes: compiled.tokenTypes !== null ? ctl[CTL.TYPES]! + start * inp * 4 : 0,
        };
        const logits = model.forward(inputs, rows, ctl[CTL.TRAINING] === 1, shardSeed(ctl[CTL.SEED]! >>> 0, index));
        kernels.copy(message.logits + start * out * 4, logits, rows * out);
      } else if (cmd === CMD.BACKWARD_NORMS) {
        model.zeroGrad();
        if (rows > 0) {
          const norms = new Float64Array(memory.buffer, ctl[CTL.NORMS]! + start * 8, rows);
          model.backward(rows, (op, c, dy) => sampleNorms.add(op, c, view, rows, dy, norms));
          sampleNorms.finish(rows, norms);
        }
      } else if (cmd === CMD.BACKWARD) {
        // dL/dlogits of this shard was copied into model.logitsGrad by the main thread; the
        // gradients are zero already when the last UPDATE zeroed them
        if (ctl[CTL.ZEROED] !== 1) model.zeroGrad();
        if (rows > 0) model.backward(rows);
      } else if (cmd === CMD.REDUCE) {
        if (!reduceShare(message.grads, message.helperGrads, message.gradCount, message.threads, index, kernels)) Atomics.store(ctl, CTL.NONFINITE, 1);
      } else if (cmd === CMD.UPDATE) {
        const kernel = UPDATE_KERNELS[ctl[CTL.KERNEL]!]!;
        // the kernel's arguments (a WASM function ignores the unused entries past its own)
        const args = new Float64Array(memory.buffer, ctl[CTL.ARGS]!, UPDATE_MAX_ARGS);
        if (!updateShare(kernels, kernel, args, message.params, message.grads, message.helperGrads, message.threads, index)) Atomics.store(ctl, CTL.NONFINITE, 1);
      }
    } catch (e) {
      console.error(`edgetune training thread ${index}:`, e);
      Atomics.store(ctl, CTL.ERROR, 1);
    }
    Atomics.add(ctl, CTL.DONE, 1);
    Atomics.notify(ctl, CTL.DONE);
    if (cmd === CMD.END_RUN) return;
  }
}

parentPort!.on("message", async (message: { type: "init"; module: WebAssembly.Module; memory: WebAssembly.Memory } | RunMessage) => {
  if (message.type === "init") {
    memory = message.memory;
    kernels = await instantiateKernels(message.module, memory);
    parentPort!.postMessage("ready");
    return;
  }
  parentPort!.postMessage("running");
  run(message);
});
