/**
 * The WASM backend: state, gradients, optimizer state and data in one arena over the kernel
 * core's memory; each step is the compiled model's ops as kernel calls, answered synchronously
 * (no await per step), optionally spread over threads (Parallelism).
 */
import type { Table } from "../formats/dataset.js";
import { Arena, type Region } from "./arena.js";
import type { BackendTrainingState, BatchRef, Evaluation, FusedSteps, StepFault, StepOutcome, TrainingBackend } from "./backend.js";
import { KEEP_MEMORY_BYTES, type KernelInstance, type KernelVariant, type Kernels } from "./kernels.js";
import { createLoss, type Loss } from "./losses.js";
import { allocateModel, loadStateBlock, Model, stateElements } from "./model.js";
import { relocateStagedState } from "./staging.js";
import { createOptimizer } from "./optimizers.js";
import type { Network, Parallelism } from "./parallel.js";
import type { PreparedRun } from "./prepare.js";
import { clipCoefficient, clipSpec } from "./step.js";
import { addGaussianNoise, clipFactor, uniformSource, type PrivacySettings } from "./privacy/index.js";
import { SampleNorms, tiedParameters } from "./privacy/ghost.js";
import { mixSeed } from "./rng.js";
import { CONTROL_WORDS, FAULT, ProgramWriter, encodeArgs, fusedArgCount, fusedKernelId } from "./program.js";
import type { OpKind } from "./ops/types.js";

/**
 * The op kinds a fused program runs (program.ts): their kernel calls depend only on the batch's
 * row count. Dropout's masks depend on the step's seed (its training forward calls
 * dropout_forward, which programs do not, so a model with active dropout is traced as unsupported).
 */
const FUSABLE_OPS: ReadonlySet<OpKind> = new Set<OpKind>(["linear", "activation", "add", "mul", "layer_norm", "dropout"]);

/** The most steps one fused call runs (its per-step tables are sized for it). */
const MAX_FUSED_STEPS = 4096;

/** A table in the arena: x [N, F], y [N, T], the mask [N, F] of token rows. */
interface TableRegions {
  x: Region;
  y: Region;
  mask: Region | null;
  types: Region | null;
}

/**
 * Builds the WASM backend of a run on a kernel instance.
 *
 * @example
 * ```ts
 * const backend = await createWasmBackend(instance, prepared, initialState, { variant: "wasm-simd" });
 * backend.step({ order: null, start: 0, rows: 32 }, seed);
 * ```
 */
export async function createWasmBackend(
  instance: KernelInstance,
  prepared: PreparedRun,
  initialState: Map<string, Float32Array>,
  options: {
    variant: KernelVariant;
    parallel?: Parallelism | null;
    diagnostics?: { memoryBytes?: number; arenaBytes?: number } | undefined;
    /** Build the fused steps when the run allows them (default true; false: step() only). */
    fused?: boolean | undefined;
  },
): Promise<TrainingBackend> {
  const { request, model: compiled, output, plan, train: trainTable, validation: validationTable } = prepared;
  const t = request.training;
  const { memory, kernels } = instance;
  const arena = new Arena(memory, kernels.heap_base());
  // the state block first: a checkpoint staged in this memory (staging.ts) is moved above it,
  // to where the activations go, loaded from there, and then overwritten by what follows
  const stateN = stateElements(compiled);
  relocateStagedState(initialState, memory, plan.memory_bytes, arena.base + stateN * 4);
  arena.reserve(plan.memory_bytes);
  const stateBlock = arena.alloc(stateN);
  loadStateBlock(compiled, memory, stateBlock.ptr, initialState);

  const F = trainTable.features;
  const TG = trainTable.targets;
  const outSize = output.positions * output.classes;
  const types = compiled.tokenTypes !== null;
  const data = loadTable(arena, trainTable, types);
  const valData = validationTable ? loadTable(arena, validationTable, types) : null;
  const valLogits = validationTable ? arena.alloc(validationTable.rows * outSize) : null; // [V, out]
  const batchX = arena.alloc(plan.maxRows * F); // [B, F]
  const batchY = arena.alloc(plan.maxRows * TG); // [B, T]
  const batchMask = trainTable.mask ? arena.alloc(plan.maxRows * F) : null; // [B, F]
  const batchTypes = data.types ? arena.alloc(plan.maxRows * F) : null; // [B, F]
  const batchIndex = arena.alloc(plan.maxRows); // [B] i32

  const model = new Model(compiled, kernels, memory, allocateModel(compiled, arena, plan.maxRows, stateBlock));
  const trainableN = compiled.trainableCount;
  // the trainable parameters and the buffers (running statistics): what a step changes
  const snapshotN = trainableN + compiled.bufferCount;
  const lastFinite = arena.alloc(snapshotN); // [S] state before the step
  const best = t.early_stopping ? arena.alloc(snapshotN) : null; // [S] best epoch's state
  const optimizer = createOptimizer(t.optimizer, kernels, arena, model.state.ptr, model.grads.ptr, trainableN);
  const loss = createLoss(t.loss, kernels, arena, output.classes);
  const clip = clipSpec(t.clip_grad_norm);
  if (options.diagnostics) {
    options.diagnostics.arenaBytes = arena.used;
    options.diagnostics.memoryBytes = memory.buffer.byteLength;
  }
  // threads get their shards' buffers after the run's own allocations
  const distributed = options.parallel ? await options.parallel.distribute(model, arena, instance) : null;
  const network: Network = distributed ?? model;
  const fault = (code: "diverged" | "non_finite_norm", what: string): StepOutcome => {
    // the state before this step: a forward in training mode may have moved the running statistics
    kernels.copy(model.state.ptr, lastFinite.ptr, snapshotN);
    return { fault: { code, what } };
  };

  const privateStep = prepared.privacy ? createPrivateStep(prepared.privacy) : null;

  /**
   * One DP-SGD step (privacy/index.ts), over chunks of at most maxRows rows (a Poisson batch can
   * be larger than batch_size): per chunk, a forward and a backward that reads each row's
   * gradient norm (privacy/ghost.ts), then the forward again and a backward of the loss
   * gradient with row i scaled by c_i·rows, whose parameter gradients are Σ_i c_i·g_i; the sums
   * add up in `clipped`. Then the noise, the division by int(N·q), the optimizer.
   */
  function createPrivateStep(settings: PrivacySettings) {
    const clipped = arena.alloc(trainableN);
    const norms = new Float64Array(plan.maxRows);
    const factors = new Float64Array(plan.maxRows);
    const view = { f32: (ptr: number, length: number) => new Float32Array(memory.buffer, ptr, length) };
    // a tied parameter's per-sample gradient sums its uses before the norm (ghost.ts)
    const sampleNorms = new SampleNorms(tiedParameters(compiled));
    // threads (Node) compute their shards' norms themselves; without them, this thread does
    const privateNetwork: Network = distributed ?? model;
    return (batch: BatchRef, seed: number): StepOutcome => {
      kernels.copy(lastFinite.ptr, model.state.ptr, snapshotN);
      kernels.fill(clipped.ptr, 0, trainableN);
      let lossSum = 0;
      for (let from = 0; from < batch.rows; from += model.maxRows) {
        const rows = Math.min(model.maxRows, batch.rows - from);
        const at = loadBatch({ order: batch.order, start: batch.start + from, rows });
        const n = rows * output.positions;
        // ---- per-sample gradient norms: g_i = rows · (row i's part of ∇ mean loss), as Opacus's "mean" reduction
        // (on threads, each its shard's rows: the norms and the clip factors are per row)
        const logits = privateNetwork.forward(at, rows, true, seed);
        const chunkLoss = loss.compute(model.logitsGrad.ptr, logits, at.y, n);
        if (!Number.isFinite(chunkLoss)) return fault("diverged", `the loss became ${chunkLoss}`);
        lossSum += chunkLoss * rows;
        norms.fill(0, 0, rows);
        if (privateNetwork.backwardSampleNorms) privateNetwork.backwardSampleNorms(rows, norms);
        else {
          model.zeroGrad();
          model.backward(rows, (op, c, dy) => sampleNorms.add(op, c, view, rows, dy, norms));
          sampleNorms.finish(rows, norms);
        }
        for (let i = 0; i < rows; i++) factors[i] = clipFactor(settings.maxGradNorm, rows * Math.sqrt(norms[i]!)) * rows;
        // ---- Σ_i c_i g_i: the same forward (same seed: same dropout masks), the loss gradient scaled per row
        const again = privateNetwork.forward(at, rows, true, seed);
        loss.compute(model.logitsGrad.ptr, again, at.y, n);
        for (let i = 0; i < rows; i++) kernels.scale(model.logitsGrad.ptr + i * outSize * 4, Math.fround(factors[i]!), outSize);
        privateNetwork.zeroGrad();
        privateNetwork.backward(rows);
        kernels.axpy(clipped.ptr, model.grads.ptr, 1, trainableN);
      }
      // ---- noise N(0, (σC)²) per coordinate, then the average over the expected batch size
      kernels.copy(model.grads.ptr, clipped.ptr, trainableN);
      const grads = new Float32Array(memory.buffer, model.grads.ptr, trainableN);
      addGaussianNoise(grads, settings.noiseMultiplier * settings.maxGradNorm, uniformSource(settings.secure, mixSeed(seed, 0x4e4f_4953))); // "NOIS"
      kernels.scale(model.grads.ptr, Math.fround(1 / settings.expectedBatchSize), trainableN);
      if (!kernels.all_finite(model.grads.ptr, trainableN)) return fault("diverged", "a gradient became non-finite");
      optimizer.step();
      if (!kernels.all_finite(model.state.ptr, trainableN)) return fault("diverged", "a weight became non-finite");
      return { loss: batch.rows > 0 ? lossSum / batch.rows : 0 };
    };
  }

  /** Pointers to a batch's rows: a view into the dataset (in order) or gathered by `order`. */
  function loadBatch(batch: BatchRef): { x: number; y: number; mask: number; tokenTypes: number } {
    const { rows, start } = batch;
    if (batch.order) {
      arena.i32(batchIndex).set(batch.order.subarray(start, start + rows));
      kernels.gather_rows(batchX.ptr, data.x.ptr, batchIndex.ptr, rows, F);
      kernels.gather_rows(batchY.ptr, data.y.ptr, batchIndex.ptr, rows, TG);
      if (batchMask) kernels.gather_rows(batchMask.ptr, data.mask!.ptr, batchIndex.ptr, rows, F);
      if (batchTypes) kernels.gather_rows(batchTypes.ptr, data.types!.ptr, batchIndex.ptr, rows, F);
      return { x: batchX.ptr, y: batchY.ptr, mask: batchMask?.ptr ?? 0, tokenTypes: batchTypes?.ptr ?? 0 };
    }
    return {
      x: data.x.ptr + start * F * 4,
      y: data.y.ptr + start * TG * 4,
      mask: data.mask ? data.mask.ptr + start * F * 4 : 0,
      tokenTypes: data.types ? data.types.ptr + start * F * 4 : 0,
    };
  }

  /**
   * The fused steps of this run (program.ts), or null when the program does not cover it: a
   * private run, threads, the TypeScript twins, an op outside FUSABLE_OPS, a kernel the
   * program cannot call (active dropout, 16-bit frozen weights), a p-norm clip.
   */
  function buildFused(): FusedSteps | null {
    if (options.fused === false || prepared.privacy || distributed || !options.variant.startsWith("wasm")) return null;
    if (!compiled.ops.every((op) => FUSABLE_OPS.has(op.kind))) return null;
    if (clip && clip.norm_type !== 2 && clip.norm_type !== "inf") return null;
    const N = trainTable.rows, B = t.batch_size, perEpoch = plan.stepsPerEpoch;
    if (perEpoch <= 0 || N <= 0) return null;
    const maxSteps = Math.min(perEpoch, MAX_FUSED_STEPS);
    const kernelId = fusedKernelId(optimizer.kernel);
    const nargs = fusedArgCount(kernelId);
    const mark = arena.mark();
    const order = arena.alloc(N); // i32: the epoch's order of rows
    const losses = arena.alloc(2 * maxSteps); // f64 per step
    const table = arena.alloc(nargs * maxSteps); // the optimizer call's arguments per step
    const ctl = arena.alloc(CONTROL_WORDS);
    // one step's calls for a batch of `rows`, as step() makes them
    const trace = (rows: number): ProgramWriter => {
      const body = new ProgramWriter();
      const rec = body.recorder();
      const traced = new Model(compiled, rec, memory, model.layout);
      rec.copy(lastFinite.ptr, model.state.ptr, snapshotN);
      // the batch's rows gathered by the epoch's order (in order: the same values step() reads in place)
      body.gather(batchX.ptr, data.x.ptr, order.ptr, B, rows, F);
      body.gather(batchY.ptr, data.y.ptr, order.ptr, B, rows, TG);
      if (batchMask) body.gather(batchMask.ptr, data.mask!.ptr, order.ptr, B, rows, F);
      if (batchTypes) body.gather(batchTypes.ptr, data.types!.ptr, order.ptr, B, rows, F);
      const logits = traced.forward({ x: batchX.ptr, mask: batchMask?.ptr ?? 0, tokenTypes: batchTypes?.ptr ?? 0 }, rows, true, 0);
      loss.compute(model.logitsGrad.ptr, logits, batchY.ptr, rows * output.positions, rec);
      body.loss(losses.ptr);
      traced.zeroGrad();
      traced.backward(rows);
      body.check(model.grads.ptr, trainableN, FAULT.GRADIENT);
      if (clip) body.clip(model.grads.ptr, model.grads.length, clip.norm_type === "inf", clip.error_if_nonfinite, clip.max_norm);
      body.callRow(optimizer.kernel, table.ptr);
      body.check(model.state.ptr, trainableN, FAULT.WEIGHT);
      return body;
    };
    const fullRows = Math.min(B, N);
    const lastRows = Math.min(B, N - (perEpoch - 1) * B);
    const tailBatch = lastRows !== fullRows ? perEpoch - 1 : -1;
    const bodies = [trace(fullRows), ...(tailBatch >= 0 ? [trace(lastRows)] : [])];
    if (bodies.some((body) => body.unsupported.size > 0)) {
      arena.release(mark);
      return null;
    }
    const regions = bodies.map((body) => {
      const region = arena.alloc(body.words.length);
      arena.i32(region).set(body.words);
      return region;
    });
    const full = regions[0]!, tail = regions[1] ?? full;
    arena.i32(ctl).set([full.ptr, full.length, tail.ptr, tail.length, tailBatch, 0, 0]);
    // optimizer.step()'s kernel call, its arguments written into row `row.s` of the table
    const row = { s: 0 };
    let tableI32 = arena.i32(table);
    let tableF32 = arena.f32(table);
    const rowRecorder = {
      [optimizer.kernel]: (...args: number[]) => {
        if (tableI32.length === 0) (tableI32 = arena.i32(table)), (tableF32 = arena.f32(table)); // the memory grew (its old buffer detached): fresh views
        encodeArgs(kernelId, args, tableI32, tableF32, row.s * nargs);
      },
    } as unknown as Kernels;
    let inOrder = false;
    return {
      maxSteps,
      setOrder(rowsOrder) {
        if (rowsOrder) {
          arena.i32(order).set(rowsOrder);
          inOrder = false;
        } else if (!inOrder) {
          const view = arena.i32(order);
          for (let i = 0; i < N; i++) view[i] = i;
          inOrder = true;
        }
        arena.i32(ctl)[9] = inOrder ? 1 : 0;
      },
      prepare(s) {
        row.s = s;
        optimizer.stepOn(rowRecorder);
      },
      run(first, count) {
        if (count > maxSteps) throw new RangeError(`fused steps: ${count} steps in one call, at most ${maxSteps}`);
        const control = arena.i32(ctl);
        control[5] = first;
        control[6] = count;
        const done = kernels.run_program(ctl.ptr);
        const code = arena.i32(ctl)[8]!;
        const stepLosses = new Float64Array(memory.buffer, losses.ptr, maxSteps);
        if (code === 0) return { done, losses: stepLosses, fault: null };
        let outcome: StepOutcome;
        if (code === FAULT.LOSS) outcome = fault("diverged", `the loss became ${stepLosses[done]}`);
        else if (code === FAULT.GRADIENT) outcome = fault("diverged", "a gradient became non-finite");
        else if (code === FAULT.NORM) {
          const total = new Float64Array(memory.buffer, ctl.ptr + 40, 1)[0];
          outcome = fault("non_finite_norm", `the total gradient norm (order ${clip!.norm_type}) is ${total} and clip_grad_norm.error_if_nonfinite is set`);
        } else if (code === FAULT.WEIGHT) outcome = fault("diverged", "a weight became non-finite");
        else throw new Error(`fused steps: the program stopped with code ${code}`);
        return { done, losses: stepLosses, fault: (outcome as { fault: StepFault }).fault };
      },
    };
  }
  const fused = buildFused();

  return {
    group: optimizer.group,
    kernel: options.variant,
    fused,
    threads: distributed ? options.parallel!.threads : 1,

    step(batch: BatchRef, seed: number): StepOutcome {
      if (privateStep) return privateStep(batch, seed);
      const { rows } = batch;
      kernels.copy(lastFinite.ptr, model.state.ptr, snapshotN);
      // ---- batch: rows in order (a view into the dataset) or gathered by the shuffled order
      const { x: xPtr, y: yPtr, mask: maskPtr, tokenTypes: typesPtr } = loadBatch(batch);
      // ---- forward, loss (fused with dL/dlogits)
      const logits = network.forward({ x: xPtr, mask: maskPtr, tokenTypes: typesPtr }, rows, true, seed);
      const batchLoss = loss.compute(model.logitsGrad.ptr, logits, yPtr, rows * output.positions);
      if (!Number.isFinite(batchLoss)) return fault("diverged", `the loss became ${batchLoss}`);
      // ---- zero_grad, backward
      network.zeroGrad();
      network.backward(rows);
      const gradsFinite = network.gradientsFinite ? network.gradientsFinite() : kernels.all_finite(model.grads.ptr, trainableN) !== 0;
      if (!gradsFinite) return fault("diverged", "a gradient became non-finite");
      // ---- clip_grad_norm_
      if (clip) {
        const total = gradNorm(kernels, model.grads, clip.norm_type);
        if (clip.error_if_nonfinite && !Number.isFinite(total)) {
          // torch raises here; a numeric fault ends the run as diverged with the last finite weights
          return fault("non_finite_norm", `the total gradient norm (order ${clip.norm_type}) is ${total} and clip_grad_norm.error_if_nonfinite is set`);
        }
        kernels.scale(model.grads.ptr, clipCoefficient(clip.max_norm, total), trainableN);
      }
      // ---- update (on threads, each thread updates and checks its share of the parameters)
      const finite = network.update ? network.update(optimizer) : (optimizer.step(), kernels.all_finite(model.state.ptr, trainableN) !== 0);
      if (!finite) return fault("diverged", "a weight became non-finite");
      return { loss: batchLoss };
    },

    evaluate(): Evaluation | null {
      if (!valData || !valLogits || !validationTable) return null;
      return evaluate(model, loss, kernels, arena, valData, valLogits, validationTable, output.positions);
    },

    saveBest() {
      kernels.copy(best!.ptr, model.state.ptr, snapshotN);
    },

    restoreBest() {
      kernels.copy(model.state.ptr, best!.ptr, snapshotN);
    },

    parameters() {
      return model.readState();
    },

    storedParameters(outputDtype) {
      return model.readStoredState(outputDtype);
    },

    spareBuffer(bytes: number): Uint8Array | null {
      // everything after the state block (allocated first): data, activations, gradients, optimizer state
      const start = Math.ceil((stateBlock.ptr + stateN * 4) / 16) * 16;
      // only in a memory too large to be kept for another run (KEEP_MEMORY_BYTES): a small one
      // goes back to the pool, which is worth more than the copy of a small file
      if (distributed || memory.buffer.byteLength <= KEEP_MEMORY_BYTES || start + bytes > memory.buffer.byteLength) return null;
      return new Uint8Array(memory.buffer, start, bytes);
    },

    close() {
      distributed?.close();
    },

    saveTrainingState(): BackendTrainingState {
      return {
        optimizer: optimizer.state.map((s) => ({ name: s.name, data: arena.f32(s.region).slice() })),
        position: { ...optimizer.position },
        best: best ? arena.f32(best).slice() : null,
      };
    },

    loadTrainingState(state: BackendTrainingState) {
      for (const s of optimizer.state) {
        const saved = state.optimizer.find((o) => o.name === s.name);
        if (!saved || saved.data.length !== s.region.length) throw new Error(`checkpoint: optimizer state ${s.name} is missing or has the wrong size`);
        arena.f32(s.region).set(saved.data);
      }
      Object.assign(optimizer.position, state.position);
      // a WebGPU checkpoint's snapshot is the whole state block: its first snapshotN floats are this one
      if (best && state.best) arena.f32(best).set(state.best.subarray(0, snapshotN));
    },
  };
}

/** The total norm of torch.nn.utils.clip_grad_norm_: ||all grads||_p (p = "inf": max |g|), as float32. */
function gradNorm(k: Kernels, grads: Region, normType: number | "inf"): number {
  if (normType === "inf") return Math.fround(k.max_abs(grads.ptr, grads.length));
  if (normType === 2) return Math.fround(Math.sqrt(k.sum_squares(grads.ptr, grads.length)));
  return Math.fround(k.sum_abs_pow(grads.ptr, normType, grads.length) ** (1 / normType));
}

/** Validation in eval mode (no dropout, running statistics), in chunks of the batch buffers, one loss over all rows. */
function evaluate(
  model: Model, loss: Loss, k: Kernels, arena: Arena,
  data: TableRegions, logits: Region, table: Table, positions: number,
): Evaluation {
  const out = model.compiled.values[model.compiled.output.value]!.size;
  const F = table.features;
  for (let start = 0; start < table.rows; start += model.maxRows) {
    const rows = Math.min(model.maxRows, table.rows - start);
    const at = start * F * 4;
    const chunk = model.forward({ x: data.x.ptr + at, mask: data.mask ? data.mask.ptr + at : 0, tokenTypes: data.types ? data.types.ptr + at : 0 }, rows, false);
    k.copy(logits.ptr + start * out * 4, chunk, rows * out);
  }
  const lossRows = table.rows * positions;
  const valLoss = loss.compute(0, logits.ptr, data.y.ptr, lossRows);
  const valAccuracy = loss.accuracy(arena.f32(logits), arena.f32(data.y), lossRows);
  return { valLoss, valAccuracy };
}

/**
 * Copies a table into the arena: x [rows, features], y [rows, targets], the mask and, when the
 * model reads them (`types`), the token_type_ids [rows, features] (zeros where the data has none).
 */
function loadTable(arena: Arena, table: Table, types: boolean): TableRegions {
  if (table.x.length !== table.rows * table.features || table.y.length !== table.rows * table.targets) throw new Error("loadTable: the table's arrays do not match its shape");
  const x = arena.allocCopy(table.x);
  const y = arena.allocCopy(table.y);
  let mask: Region | null = null;
  if (table.mask) {
    mask = arena.alloc(table.rows * table.features);
    arena.f32(mask).set(table.mask);
  }
  let tokenTypes: Region | null = null;
  if (types) {
    tokenTypes = arena.alloc(table.rows * table.features);
    if (table.tokenTypes) arena.f32(tokenTypes).set(table.tokenTypes);
    else arena.f32(tokenTypes).fill(0);
  }
  return { x, y, mask, types: tokenTypes };
}
