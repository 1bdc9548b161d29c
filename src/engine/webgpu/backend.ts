/// <reference types="@webgpu/types" />
/**
 * The WebGPU backend: parameters, gradients, optimizer state and the dataset live in GPU
 * buffers for the whole run. One step is one command buffer:
 *
 *   clear status and grads; copy the buffers (running statistics) aside; batch rows (a buffer
 *   copy in order, or a gather by the shuffled order); forward; loss fused with dL/dlogits,
 *   reduced on the GPU; backward; all-finite check of the gradients; clip_grad_norm_ (norm
 *   reduced and coefficient computed on the GPU); optimizer update (skipped on the GPU when a
 *   check failed; keeps the last finite parameters); all-finite check of the parameters and
 *   restore; the buffers restored on any fault; 32 status bytes copied out.
 *
 * and one readback (mapAsync of those 32 bytes: loss, fault bits, norm). The only data written
 * per step is the 256-byte scalar block (lr, momentum/beta1, bias corrections, the dropout seed)
 * and, when shuffling, the batch's row indices. Validation is one command buffer and one
 * readback per epoch (loss and accuracy counts); the weights are read back once, at the end.
 *
 * The maths and its order are those of wasm-backend.ts and the WASM kernels; see wgsl.ts for
 * where f32-only WGSL differs. Runtime-agnostic: the GPUDevice is injected.
 */
import type { BatchRef, Evaluation, NamedTensor, StepOutcome, TrainingBackend } from "../backend.js";
import { heldValues, readState } from "../model.js";
import type { Op } from "../ops/types.js";
import type { PreparedRun } from "../prepare.js";
import { optimizerSteps } from "../optimizers.js";
import type { BackendTrainingState } from "../backend.js";
import type { ParamGroup } from "../schedules.js";
import { clipSpec } from "../step.js";
import { BufferSet, MAP_READ, Program, USAGE, checked, gridGroups, type DispatchSpec } from "./context.js";
import { backwardStepSpecs, GPU_OPS, unsupportedOnGpu, type GpuOp, type GpuOpContext } from "./ops.js";
import { FAULT, LOSS, NORM, STATUS, STATUS_BYTES, STEP_BYTES } from "./wgsl.js";
import { addGaussianNoise, clipFactor, opParameters, uniformSource, type PrivacySettings } from "../privacy/index.js";
import { SampleNorms, tiedParameters } from "../privacy/ghost.js";
import type { KernelOpContext } from "../ops/types.js";
import { mixSeed } from "../rng.js";

export { gemmSpec, SMALL_GEMM_MACS } from "./ops.js";

/** A run has an op without WGSL: WebGPU cannot train it (kernel "auto" falls back to WASM). */
export class WebGpuUnsupportedError extends Error {
  override name = "WebGpuUnsupportedError";
}

const f = (v: number) => ({ f: v });
const i32 = (v: number) => ({ i: v });
const fr = Math.fround;

export interface WebGpuBackendOptions {
  /** Filled in: bytes of GPU buffers the run allocated. */
  diagnostics?: { gpuBytes?: number } | undefined;
}

/**
 * Builds the WebGPU backend of a run on a device.
 *
 * @example
 * ```ts
 * const backend = await createWebGpuBackend(device, prepared, initialState);
 * const outcome = await backend.step({ order: null, start: 0, rows: 32 }, seed);
 * ```
 */
export async function createWebGpuBackend(
  device: GPUDevice,
  prepared: PreparedRun,
  initialState: Map<string, Float32Array>,
  options: WebGpuBackendOptions = {},
): Promise<TrainingBackend> {
  const { request, model: compiled, output, plan, train: trainTable, validation: validationTable } = prepared;
  const t = request.training;
  const missing = unsupportedOnGpu(compiled.ops.map((op) => op.kind));
  if (missing.length > 0) throw new WebGpuUnsupportedError(`no WebGPU kernels yet for ${missing.join(", ")}: this model trains on WASM`);
  const queue = device.queue;
  const buffers = new BufferSet(device);
  const programs: Program[] = [];
  const program = (specs: DispatchSpec[]) => {
    const p = new Program(device, specs);
    programs.push(p);
    return p;
  };
  const T = compiled.trainableCount;
  const out = output.classes;
  const outSize = output.positions * output.classes;
  const F = trainTable.features;
  const TG = trainTable.targets;
  const maxRows = plan.maxRows;
  const V = validationTable?.rows ?? 0;
  let gpuBytes = 0;
  const storage = (label: string, elements: number, data?: Float32Array | Uint32Array) => {
    gpuBytes += elements * 4;
    return buffers.storage(label, elements, data);
  };

  try {
    return await checked(device, "setup", () => {
      // ---- buffers: data, parameters, state, activations
      const dataX = storage("train.x", trainTable.rows * F, trainTable.x);
      const dataY = storage("train.y", trainTable.rows * TG, trainTable.y);
      const valX = validationTable ? storage("validation.x", V * F, validationTable.x) : null;
      const valY = validationTable ? storage("validation.y", V * TG, validationTable.y) : null;
      const valLogits = validationTable ? storage("validation logits", V * outSize) : null;
      const valMask = validationTable?.mask ? storage("validation.attention_mask", V * F, validationTable.mask) : null;
      const dataMask = trainTable.mask ? storage("train.attention_mask", trainTable.rows * F, trainTable.mask) : null;
      const batchX = storage("batch.x", maxRows * F);
      const batchY = storage("batch.y", maxRows * TG);
      const batchMask = dataMask ? storage("batch.attention_mask", maxRows * F) : null;
      // token_type_ids when the model reads them (BERT), zeros where the data has none
      const typesOf = (table: typeof trainTable) => table.tokenTypes ?? new Float32Array(table.rows * F);
      const reads = compiled.tokenTypes !== null;
      const dataTypes = reads ? storage("train.token_type_ids", trainTable.rows * F, typesOf(trainTable)) : null;
      const valTypes = reads && validationTable ? storage("validation.token_type_ids", V * F, typesOf(validationTable)) : null;
      const batchTypes = reads ? storage("batch.token_type_ids", maxRows * F) : null;
      const batchIdx = storage("batch indices", maxRows);

      const initial = new Float32Array(compiled.stateCount);
      // frozen parameters stay float32 on the GPU, holding the values model.base_dtype rounds them to
      for (const p of compiled.state) initial.set(heldValues(compiled, p, initialState.get(p.name)!), p.offset);
      const params = storage("state", compiled.stateCount, initial);
      const grads = storage("grads", T);
      const last = storage("last finite params", T);
      // the buffers (running statistics) at the step's start: a training forward moves them, and
      // a step that faults must leave them as they were (the WASM backend's snapshot covers both)
      const bufferCount = compiled.bufferCount;
      const lastBuffers = bufferCount > 0 ? storage("last finite buffers", bufferCount) : null;
      const best = t.early_stopping ? storage("best params", compiled.stateCount) : null;
      const values = compiled.values.map((v, i) => (v.input ? null : storage(`value ${i}`, maxRows * v.size)));
      const saved = compiled.saved.map((sv, i) => storage(`saved ${i}`, maxRows * sv.perRow + sv.fixed));
      const gradSlots = compiled.gradSlots.map((size, i) => storage(`gradient slot ${i}`, maxRows * size));
      const logitsGrad = gradSlots[compiled.outputGradSlot]!;
      const logitsOf = () => (values[compiled.output.value] ?? batchX);
      const terms = storage("loss terms", Math.max(maxRows, V) * output.positions * Math.max(out, 3));
      const status = buffers.raw("status", STATUS_BYTES, USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST);
      const readback = buffers.raw("status readback", STATUS_BYTES, USAGE.MAP_READ | USAGE.COPY_DST);
      const stepBuf = buffers.raw("step scalars", STEP_BYTES, USAGE.UNIFORM | USAGE.COPY_DST);
      const dummy = (label: string) => buffers.raw(label, 16, USAGE.STORAGE);
      const normGroups = Math.max(1, Math.min(Math.ceil(T / 256), 256));
      const partials = storage("norm partials", normGroups);

      // ---- the loss
      const loss = t.loss;
      const lossVector = (values: readonly number[] | null) => {
        if (values === null) return null;
        const v = new Float32Array(out);
        for (let c = 0; c < out; c++) v[c] = values.length === 1 ? values[0]! : values[c]!;
        return storage("loss weights", out, v);
      };
      const classWeight = loss.type === "cross_entropy" || loss.type === "multi_margin" ? lossVector(loss.weight) : null;
      const posWeight =
        loss.type === "bce_with_logits"
          ? lossVector(loss.pos_weight === null ? null : typeof loss.pos_weight === "number" ? [loss.pos_weight] : loss.pos_weight)
          : null;
      const vectorBuf = classWeight ?? posWeight ?? dummy("no loss weights");
      const noGrad = dummy("no gradient");

      /** The loss over `rows` rows of logits: terms, reduction into status[slot], CE's 1/W scaling. */
      const lossSpecs = (logits: GPUBuffer, target: GPUBuffer, rows: number, training: boolean): DispatchSpec[] => {
        const grad = training ? logitsGrad : noGrad;
        const slot = training ? STATUS.loss : STATUS.valLoss;
        const faultBit = training ? FAULT.loss : 0;
        const n = rows * out;
        const elementwise = (kind: number, a: number, b = 0): DispatchSpec[] => [
          {
            kernel: "loss_elementwise",
            constants: { LOSS: kind, WRITE_GRAD: training },
            buffers: [grad, logits, target, vectorBuf, terms],
            params: [n, f(a), f(b), out, posWeight ? 1 : 0, 0, 0, 0],
            x: gridGroups(n),
          },
          { kernel: "loss_reduce", constants: { MODE: 0 }, buffers: [terms, status], params: [n, f(n), slot, faultBit, 0, 0, 0, 0], x: 1 },
        ];
        switch (loss.type) {
          case "mse":
            return elementwise(LOSS.mse, 2 / n);
          case "l1":
            return elementwise(LOSS.l1, 1 / n);
          case "huber":
            return elementwise(LOSS.huber, 1 / n, loss.delta);
          case "smooth_l1":
            return fr(loss.beta) === 0 ? elementwise(LOSS.l1, 1 / n) : elementwise(LOSS.smooth_l1, 1 / n, loss.beta);
          case "hinge":
            return elementwise(LOSS.hinge, 1 / n);
          case "bce_with_logits":
            return elementwise(LOSS.bce, 1 / n);
          case "cross_entropy": {
            const eps = fr(loss.label_smoothing);
            let sumW = 0;
            for (let c = 0; c < out; c++) sumW += loss.weight ? fr(loss.weight[c]!) : 1;
            const specs: DispatchSpec[] = [
              {
                kernel: "cross_entropy",
                constants: { WRITE_GRAD: training },
                buffers: [grad, logits, target, vectorBuf, terms],
                params: [rows, out, i32(loss.ignore_index), classWeight ? 1 : 0, f(eps), f(1 - eps), f(eps / out), f(sumW)],
                x: gridGroups(rows),
              },
              {
                kernel: "loss_reduce",
                constants: { MODE: 1 },
                buffers: [terms, status],
                params: [rows, f(0), slot, faultBit, f(1 - eps), f(eps / out), 0, 0],
                x: 1,
              },
            ];
            if (training) specs.push({ kernel: "ce_scale", buffers: [logitsGrad, status], params: [n, 0, 0, 0], x: gridGroups(n) });
            return specs;
          }
          case "multi_margin":
            return [
              {
                kernel: "multi_margin",
                constants: { P_EXP: loss.p, WRITE_GRAD: training },
                buffers: [grad, logits, target, vectorBuf, terms],
                params: [rows, out, classWeight ? 1 : 0, f(loss.margin), f(1 / (rows * out)), 0, 0, 0],
                x: gridGroups(rows),
              },
              { kernel: "loss_reduce", constants: { MODE: 0 }, buffers: [terms, status], params: [rows, f(rows), slot, faultBit, 0, 0, 0, 0], x: 1 },
            ];
        }
      };
      const accuracySpec = (rows: number): DispatchSpec | null => {
        if (!valLogits || !valY) return null;
        const base = { kernel: "accuracy" as const, buffers: [valLogits, valY, status], x: 1 };
        switch (loss.type) {
          case "cross_entropy":
            return { ...base, constants: { KIND: 0 }, params: [rows, out, 1, i32(loss.ignore_index)] };
          case "multi_margin":
            return { ...base, constants: { KIND: 0 }, params: [rows, out, 0, i32(0)] };
          case "bce_with_logits":
            return { ...base, constants: { KIND: 1 }, params: [rows, out, 0, i32(0)] };
          case "hinge":
            return { ...base, constants: { KIND: 2 }, params: [rows, out, 0, i32(0)] };
          default:
            return null;
        }
      };

      // ---- forward and backward of the model: the compiled ops (model.ts Model.forward / Model.backward)
      const context: GpuOpContext = {
        value: (id) => values[id] ?? (id === compiled.input.value ? batchX : id === compiled.tokenTypes ? batchTypes! : batchMask!),
        state: params,
        grads,
        offset: (i) => compiled.state[i]!.offset,
        trainable: (i) => compiled.state[i]!.trainable,
        saved: (id) => saved[id]!,
        step: stepBuf,
        none: dummy("unused binding"),
        upload: (buffer, data) => queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength),
      };
      const gpuOp = (op: Op) => GPU_OPS[op.kind] as GpuOp<Op>;
      const forwardSpecs = (rows: number, training: boolean): DispatchSpec[] =>
        compiled.ops.flatMap((op) => gpuOp(op).forward(context, op, rows, training));
      /** The dispatches of backward step `k` over `rows`: the op's kernels, then its gradient sums. */
      const backwardStep = (k: number, rows: number): DispatchSpec[] => {
        const step = compiled.backward[k]!;
        return backwardStepSpecs(context, compiled.ops[step.op]!, step, rows, gradSlots);
      };
      const backwardSpecs = (rows: number): DispatchSpec[] => compiled.backward.flatMap((_, k) => backwardStep(k, rows));

      // ---- clip_grad_norm_
      const clip = clipSpec(t.clip_grad_norm);
      const clipSpecs = (): DispatchSpec[] => {
        if (!clip) return [];
        const p = clip.norm_type;
        const kind = p === "inf" ? NORM.maxAbs : p === 2 ? NORM.sumSquares : p === 1 ? NORM.sumAbs : NORM.sumAbsPow;
        const pw = typeof p === "number" ? p : 1;
        return [
          { kernel: "norm_partial", constants: { NORM: kind }, buffers: [grads, partials], params: [T, f(pw), 0, 0], x: normGroups },
          {
            kernel: "norm_final",
            constants: { NORM: kind },
            buffers: [partials, status],
            params: [normGroups, f(clip.max_norm), f(1 / pw), clip.error_if_nonfinite ? 1 : 0],
            x: 1,
          },
        ];
      };

      // ---- the optimizer: its state, and each step's scalars (optimizers.ts, shared with the kernel core)
      const o = t.optimizer;
      const stepBytes = new ArrayBuffer(STEP_BYTES);
      const stepView = new DataView(stepBytes);
      const setU = (k: number, v: number) => stepView.setUint32(8 + 4 * k, v >>> 0, true); // u0..u3
      const setA = (k: number, v: number) => stepView.setFloat32(32 + 4 * k, v, true); // a0..a11
      const steps = optimizerSteps(o);
      const group: ParamGroup = steps.group;
      let optimizerSpec: DispatchSpec;
      const optimizerGroups = gridGroups(T);
      // its state tensors under torch's names, for a checkpoint (checkpoint.ts; the WASM backend's order)
      let optimizerState: { name: string; buffer: GPUBuffer }[];
      switch (o.type) {
        case "sgd": {
          const buf = storage("sgd momentum", T);
          optimizerState = [{ name: "momentum_buffer", buffer: buf }];
          optimizerSpec = { kernel: "sgd", buffers: [params, grads, buf, last, status], params: [T, 0, 0, 0], x: optimizerGroups };
          break;
        }
        case "adam":
        case "adamw": {
          const m = storage("adam m", T);
          const v = storage("adam v", T);
          const vmax = o.amsgrad ? storage("adam vmax", T) : dummy("no vmax");
          optimizerState = [{ name: "exp_avg", buffer: m }, { name: "exp_avg_sq", buffer: v }, ...(o.amsgrad ? [{ name: "max_exp_avg_sq", buffer: vmax }] : [])];
          optimizerSpec = { kernel: "adam", buffers: [params, grads, m, v, vmax, last, status], params: [T, 0, 0, 0], x: optimizerGroups };
          break;
        }
        case "rmsprop": {
          const squareAvg = storage("rmsprop square_avg", T);
          const gradAvg = o.centered ? storage("rmsprop grad_avg", T) : dummy("no grad_avg");
          const buf = storage("rmsprop momentum", T);
          optimizerState = [{ name: "square_avg", buffer: squareAvg }, ...(o.centered ? [{ name: "grad_avg", buffer: gradAvg }] : []), { name: "momentum_buffer", buffer: buf }];
          optimizerSpec = { kernel: "rmsprop", buffers: [params, grads, squareAvg, gradAvg, buf, last, status], params: [T, 0, 0, 0], x: optimizerGroups };
          break;
        }
        case "adagrad": {
          const sum = storage("adagrad sum", T);
          optimizerState = [{ name: "sum", buffer: sum }];
          if (o.initial_accumulator_value !== 0) {
            const fill = program([{ kernel: "fill", buffers: [sum], params: [T, f(o.initial_accumulator_value), 0, 0], x: gridGroups(T) }]);
            const enc = device.createCommandEncoder();
            const pass = enc.beginComputePass();
            fill.encode(pass);
            pass.end();
            queue.submit([enc.finish()]);
          }
          optimizerSpec = { kernel: "adagrad", buffers: [params, grads, sum, last, status], params: [T, 0, 0, 0], x: optimizerGroups };
          break;
        }
      }
      /** Writes the next step's scalars into the step block (the layout the WGSL optimizers read). */
      const writeScalars = () => {
        const s = steps.next();
        switch (s.type) {
          case "sgd":
            setA(0, s.lr), setA(1, s.momentum), setA(2, s.dampening1m), setA(3, s.weightDecay);
            setU(0, s.nesterov), setU(1, s.maximize), setU(2, s.first);
            return;
          case "adam":
            setA(0, s.stepSize), setA(1, s.beta1), setA(2, s.beta1m), setA(3, s.beta2), setA(4, s.beta2m);
            setA(5, s.biasCorrection2Sqrt), setA(6, s.eps), setA(7, s.weightDecay), setA(8, s.decayFactor);
            setU(0, s.amsgrad), setU(1, s.maximize), setU(2, s.decoupled);
            return;
          case "rmsprop":
            setA(0, s.lr), setA(1, s.alpha), setA(2, s.alpha1m), setA(3, s.eps), setA(4, s.weightDecay), setA(5, s.momentum);
            setU(0, s.centered), setU(1, s.maximize);
            return;
          case "adagrad":
            setA(0, s.clr), setA(1, s.eps), setA(2, s.weightDecay);
            setU(1, s.maximize);
            return;
        }
      };
      optimizerSpec.step = stepBuf;
      stepView.setUint32(4, clip ? 1 : 0, true);

      // ---- programs, one per distinct batch size (at most two: the batch and the last partial one)
      const trainPrograms = new Map<string, Program>();
      const trainProgram = (rows: number, shuffled: boolean): Program => {
        const key = `${rows}:${shuffled}`;
        let p = trainPrograms.get(key);
        if (!p) {
          const specs: DispatchSpec[] = [];
          if (shuffled) {
            specs.push({ kernel: "gather", buffers: [batchX, dataX, batchIdx], params: [rows * F, F, 0, 0], x: gridGroups(rows * F) });
            specs.push({ kernel: "gather", buffers: [batchY, dataY, batchIdx], params: [rows * TG, TG, 0, 0], x: gridGroups(rows * TG) });
            if (batchMask) specs.push({ kernel: "gather", buffers: [batchMask, dataMask!, batchIdx], params: [rows * F, F, 0, 0], x: gridGroups(rows * F) });
            if (batchTypes) specs.push({ kernel: "gather", buffers: [batchTypes, dataTypes!, batchIdx], params: [rows * F, F, 0, 0], x: gridGroups(rows * F) });
          }
          specs.push(...forwardSpecs(rows, true));
          specs.push(...lossSpecs(logitsOf(), batchY, rows * output.positions, true));
          specs.push(...backwardSpecs(rows));
          specs.push({ kernel: "all_finite", buffers: [grads, status], params: [T, FAULT.grad, 0, 0], x: gridGroups(T) });
          specs.push(...clipSpecs());
          specs.push(optimizerSpec);
          specs.push({ kernel: "all_finite", buffers: [params, status], params: [T, FAULT.weight, 0, 0], x: gridGroups(T) });
          specs.push({ kernel: "restore", buffers: [params, last, status], params: [T, FAULT.weight, 0, 0], x: gridGroups(T) });
          if (lastBuffers) {
            const anyFault = FAULT.loss | FAULT.grad | FAULT.norm | FAULT.weight;
            specs.push({ kernel: "restore", buffers: [params, lastBuffers, status], params: [bufferCount, anyFault, T, 0], x: gridGroups(bufferCount) });
          }
          trainPrograms.set(key, (p = program(specs)));
        }
        return p;
      };
      const evalForward = new Map<number, Program>();
      const evalForwardProgram = (rows: number): Program => {
        let p = evalForward.get(rows);
        if (!p) evalForward.set(rows, (p = program(forwardSpecs(rows, false))));
        return p;
      };
      let evalTail: Program | null = null;
      const evalTailProgram = (): Program => {
        if (!evalTail) {
          const acc = accuracySpec(V * output.positions);
          evalTail = program([...lossSpecs(valLogits!, valY!, V * output.positions, false), ...(acc ? [acc] : [])]);
        }
        return evalTail;
      };
      const hasAccuracy = accuracySpec(V * output.positions) !== null;

      /** Copies the status words out and reads them (the one readback of a step). */
      const readStatus = async (enc: GPUCommandEncoder): Promise<{ f32: Float32Array; u32: Uint32Array }> => {
        enc.copyBufferToBuffer(status, 0, readback, 0, STATUS_BYTES);
        queue.submit([enc.finish()]);
        await readback.mapAsync(MAP_READ, 0, STATUS_BYTES);
        const bytes = readback.getMappedRange(0, STATUS_BYTES).slice(0);
        readback.unmap();
        return { f32: new Float32Array(bytes), u32: new Uint32Array(bytes) };
      };
      let firstStep = true;
      let firstEvaluation = true;
      const fault = (code: "diverged" | "non_finite_norm", what: string): StepOutcome => ({ fault: { code, what } });
      if (options.diagnostics) options.diagnostics.gpuBytes = gpuBytes;

      const runStep = async (batch: BatchRef, seed: number): Promise<StepOutcome> => {
        const { rows, start } = batch;
        const shuffled = batch.order !== null;
        if (batch.order) queue.writeBuffer(batchIdx, 0, batch.order as Int32Array<ArrayBuffer>, start, rows);
        stepView.setUint32(0, seed >>> 0, true);
        // the scalars count this step even if it faults: a faulted step ends the run
        writeScalars();
        queue.writeBuffer(stepBuf, 0, stepBytes);
        const enc = device.createCommandEncoder();
        enc.clearBuffer(status);
        enc.clearBuffer(grads);
        if (lastBuffers) enc.copyBufferToBuffer(params, T * 4, lastBuffers, 0, bufferCount * 4);
        if (!shuffled) {
          enc.copyBufferToBuffer(dataX, start * F * 4, batchX, 0, rows * F * 4);
          enc.copyBufferToBuffer(dataY, start * TG * 4, batchY, 0, rows * TG * 4);
          if (batchMask) enc.copyBufferToBuffer(dataMask!, start * F * 4, batchMask, 0, rows * F * 4);
          if (batchTypes) enc.copyBufferToBuffer(dataTypes!, start * F * 4, batchTypes, 0, rows * F * 4);
        }
        const pass = enc.beginComputePass();
        trainProgram(rows, shuffled).encode(pass);
        pass.end();
        const { f32, u32 } = await readStatus(enc);
        const bits = u32[STATUS.fault]!;
        const batchLoss = f32[STATUS.loss]!;
        if (bits & FAULT.loss) return fault("diverged", `the loss became ${batchLoss}`);
        if (bits & FAULT.grad) return fault("diverged", "a gradient became non-finite");
        if (bits & FAULT.norm) {
          // torch raises here; a numeric fault ends the run as diverged with the last finite weights
          return fault("non_finite_norm", `the total gradient norm (order ${clip!.norm_type}) is ${f32[STATUS.norm]} and clip_grad_norm.error_if_nonfinite is set`);
        }
        if (bits & FAULT.weight) return fault("diverged", "a weight became non-finite");
        return { loss: batchLoss };
      };

      // ---- DP-SGD (request `privacy`, privacy/index.ts): the forward, the loss and both backward
      // passes run on the device; each row's gradient norm (privacy/ghost.ts, from the op inputs
      // and output gradients copied out right before each parametrised op's backward), the clip
      // factors, the noise and the average over int(N·q) on the CPU, as the WASM backend does
      const privacy = prepared.privacy ?? null;
      const privateStep = privacy ? createPrivateStep(privacy) : null;

      function createPrivateStep(settings: PrivacySettings) {
        const clipped = storage("clipped gradient sum", T);
        /** The backward steps whose op has trainable parameters, with what their norms read: [buffer, elements per row]. */
        const normSteps = compiled.backward.flatMap((step, k) => {
          const op = compiled.ops[step.op]!;
          if (!opParameters(op).some((i) => compiled.state[i]!.trainable)) return [];
          const reads: { key: string; buffer: GPUBuffer; perRow: number }[] = [{ key: "dy", buffer: gradSlots[step.dy[0]!]!, perRow: compiled.values[op.outputs[0]!]!.size }];
          if (op.kind !== "add_position") reads.push({ key: "x", buffer: context.value(op.inputs[0]!), perRow: compiled.values[op.inputs[0]!]!.size });
          if (op.kind === "layer_norm") {
            if (op.center) reads.push({ key: "mean", buffer: saved[op.mean]!, perRow: compiled.saved[op.mean]!.perRow });
            reads.push({ key: "rstd", buffer: saved[op.rstd]!, perRow: compiled.saved[op.rstd]!.perRow });
          }
          return [{ k, op, reads }];
        });
        const readElements = maxRows * (outSize + normSteps.reduce((a, n) => a + n.reads.reduce((b, r) => b + r.perRow, 0), 0));
        const staging = buffers.raw("privacy readback", STATUS_BYTES + readElements * 4, USAGE.MAP_READ | USAGE.COPY_DST);
        const sumReadback = buffers.raw("clipped sum readback", T * 4, USAGE.MAP_READ | USAGE.COPY_DST);
        const cache = new Map<string, Program>();
        const cached = (key: string, specs: () => DispatchSpec[]) => {
          let p = cache.get(key);
          if (!p) cache.set(key, (p = program(specs())));
          return p;
        };
        const gathers = (rows: number): DispatchSpec[] => [
          { kernel: "gather", buffers: [batchX, dataX, batchIdx], params: [rows * F, F, 0, 0], x: gridGroups(rows * F) },
          { kernel: "gather", buffers: [batchY, dataY, batchIdx], params: [rows * TG, TG, 0, 0], x: gridGroups(rows * TG) },
          ...(batchMask ? [{ kernel: "gather" as const, buffers: [batchMask, dataMask!, batchIdx], params: [rows * F, F, 0, 0], x: gridGroups(rows * F) }] : []),
          ...(batchTypes ? [{ kernel: "gather" as const, buffers: [batchTypes, dataTypes!, batchIdx], params: [rows * F, F, 0, 0], x: gridGroups(rows * F) }] : []),
        ];
        const encode = (enc: GPUCommandEncoder, p: Program) => {
          const pass = enc.beginComputePass();
          p.encode(pass);
          pass.end();
        };
        const chunk = async (order: Int32Array | null, start: number, rows: number, seed: number): Promise<{ loss: number } | StepOutcome> => {
          const shuffled = order !== null;
          if (order) queue.writeBuffer(batchIdx, 0, order as Int32Array<ArrayBuffer>, start, rows);
          stepView.setUint32(0, seed >>> 0, true);
          queue.writeBuffer(stepBuf, 0, stepBytes);
          // ---- forward, loss, and the backward with each parametrised op's reads copied out
          const enc = device.createCommandEncoder();
          enc.clearBuffer(status);
          if (!shuffled) {
            enc.copyBufferToBuffer(dataX, start * F * 4, batchX, 0, rows * F * 4);
            enc.copyBufferToBuffer(dataY, start * TG * 4, batchY, 0, rows * TG * 4);
            if (batchMask) enc.copyBufferToBuffer(dataMask!, start * F * 4, batchMask, 0, rows * F * 4);
            if (batchTypes) enc.copyBufferToBuffer(dataTypes!, start * F * 4, batchTypes, 0, rows * F * 4);
          }
          encode(enc, cached(`forward-loss:${rows}:${shuffled}`, () => [...(shuffled ? gathers(rows) : []), ...forwardSpecs(rows, true), ...lossSpecs(logitsOf(), batchY, rows * output.positions, true)]));
          let at = STATUS_BYTES;
          const copy = (buffer: GPUBuffer, elements: number) => {
            const where = at;
            enc.copyBufferToBuffer(buffer, 0, staging, where, elements * 4);
            at += elements * 4;
            return where;
          };
          const dlogitsAt = copy(logitsGrad, rows * outSize);
          const readsAt = new Map<number, Map<string, number>>();
          for (let k = 0; k < compiled.backward.length; k++) {
            const norm = normSteps.find((n) => n.k === k);
            if (norm) readsAt.set(k, new Map(norm.reads.map((r) => [r.key, copy(r.buffer, rows * r.perRow)])));
            encode(enc, cached(`backward:${k}:${rows}`, () => backwardStep(k, rows)));
          }
          enc.copyBufferToBuffer(status, 0, staging, 0, STATUS_BYTES);
          queue.submit([enc.finish()]);
          await staging.mapAsync(MAP_READ, 0, at);
          const bytes = staging.getMappedRange(0, at).slice(0);
          staging.unmap();
          const u32 = new Uint32Array(bytes, 0, STATUS_BYTES / 4);
          const chunkLoss = new Float32Array(bytes, 0, STATUS_BYTES / 4)[STATUS.loss]!;
          if (u32[STATUS.fault]! & FAULT.loss) return fault("diverged", `the loss became ${chunkLoss}`);
          // ---- the norms on the CPU, from the copies (ghost.ts reads them through fake pointers)
          const norms = new Float64Array(rows);
          const sampleNorms = new SampleNorms(tiedParameters(compiled));
          for (const n of normSteps) {
            const arrays = new Map<number, Float32Array>();
            const pointer = new Map<string, number>();
            for (const r of n.reads) {
              const ptr = 16 * (arrays.size + 1);
              arrays.set(ptr, new Float32Array(bytes, readsAt.get(n.k)!.get(r.key)!, rows * r.perRow));
              pointer.set(r.key, ptr);
            }
            const op = n.op;
            const c = {
              value: (id: number) => (id === op.inputs[0] ? pointer.get("x") ?? 0 : 0),
              grad: (i: number) => (i >= 0 && compiled.state[i]!.trainable ? 1 : 0),
              saved: (id: number) => (op.kind === "layer_norm" && id === op.mean ? pointer.get("mean") ?? 0 : op.kind === "layer_norm" && id === op.rstd ? pointer.get("rstd")! : 0),
            } as unknown as KernelOpContext;
            sampleNorms.add(op, c, { f32: (ptr, length) => arrays.get(ptr)!.subarray(0, length) }, rows, [pointer.get("dy")!], norms);
          }
          sampleNorms.finish(rows, norms);
          // ---- the loss gradient with row i scaled by c_i·rows, then the same forward and the backward
          const dlogits = new Float32Array(bytes, dlogitsAt, rows * outSize).slice();
          for (let i = 0; i < rows; i++) {
            const factor = Math.fround(clipFactor(settings.maxGradNorm, rows * Math.sqrt(norms[i]!)) * rows);
            for (let j = i * outSize; j < (i + 1) * outSize; j++) dlogits[j] = Math.fround(dlogits[j]! * factor);
          }
          const again = device.createCommandEncoder();
          encode(again, cached(`forward:${rows}`, () => forwardSpecs(rows, true)));
          queue.submit([again.finish()]);
          queue.writeBuffer(logitsGrad, 0, dlogits);
          const sum = device.createCommandEncoder();
          sum.clearBuffer(grads);
          encode(sum, cached(`backward:${rows}`, () => [...backwardSpecs(rows), { kernel: "accumulate", buffers: [clipped, grads], params: [T, 0, 0, 0], x: gridGroups(T) }]));
          queue.submit([sum.finish()]);
          return { loss: chunkLoss };
        };

        return async (batch: BatchRef, seed: number): Promise<StepOutcome> => {
          writeScalars();
          stepView.setUint32(0, seed >>> 0, true);
          queue.writeBuffer(stepBuf, 0, stepBytes); // an empty batch still updates with these scalars
          const first = device.createCommandEncoder();
          first.clearBuffer(clipped);
          if (lastBuffers) first.copyBufferToBuffer(params, T * 4, lastBuffers, 0, bufferCount * 4);
          queue.submit([first.finish()]);
          let lossSum = 0;
          for (let from = 0; from < batch.rows; from += maxRows) {
            const rows = Math.min(maxRows, batch.rows - from);
            const outcome = await chunk(batch.order, batch.start + from, rows, seed);
            if ("fault" in outcome) return outcome;
            lossSum += outcome.loss * rows;
          }
          // ---- noise N(0, (σC)²) per coordinate and the average over int(N·q), on the CPU
          const enc = device.createCommandEncoder();
          enc.copyBufferToBuffer(clipped, 0, sumReadback, 0, T * 4);
          queue.submit([enc.finish()]);
          await sumReadback.mapAsync(MAP_READ, 0, T * 4);
          const g = new Float32Array(sumReadback.getMappedRange(0, T * 4).slice(0));
          sumReadback.unmap();
          addGaussianNoise(g, settings.noiseMultiplier * settings.maxGradNorm, uniformSource(settings.secure, mixSeed(seed, 0x4e4f_4953))); // "NOIS", as the WASM backend
          const scale = Math.fround(1 / settings.expectedBatchSize);
          for (let i = 0; i < T; i++) g[i] = Math.fround(g[i]! * scale);
          queue.writeBuffer(grads, 0, g);
          // ---- the update, with the same checks as a plain step
          const update = device.createCommandEncoder();
          update.clearBuffer(status);
          encode(update, cached("update", () => {
            const specs: DispatchSpec[] = [
              { kernel: "all_finite", buffers: [grads, status], params: [T, FAULT.grad, 0, 0], x: gridGroups(T) },
              optimizerSpec,
              { kernel: "all_finite", buffers: [params, status], params: [T, FAULT.weight, 0, 0], x: gridGroups(T) },
              { kernel: "restore", buffers: [params, last, status], params: [T, FAULT.weight, 0, 0], x: gridGroups(T) },
            ];
            if (lastBuffers) specs.push({ kernel: "restore", buffers: [params, lastBuffers, status], params: [bufferCount, FAULT.grad | FAULT.weight, T, 0], x: gridGroups(bufferCount) });
            return specs;
          }));
          const { u32 } = await readStatus(update);
          const bits = u32[STATUS.fault]!;
          if (bits & FAULT.grad) return fault("diverged", "a gradient became non-finite");
          if (bits & FAULT.weight) return fault("diverged", "a weight became non-finite");
          return { loss: batch.rows > 0 ? lossSum / batch.rows : 0 };
        };
      }

      const copyParams = (from: GPUBuffer, to: GPUBuffer) => {
        const enc = device.createCommandEncoder();
        enc.copyBufferToBuffer(from, 0, to, 0, compiled.stateCount * 4);
        queue.submit([enc.finish()]);
      };

      /** A buffer's first `elements` floats, read back (for a checkpoint). */
      const readFloats = async (from: GPUBuffer, elements: number): Promise<Float32Array> => {
        const bytes = elements * 4;
        const staging = buffers.raw("checkpoint readback", bytes, USAGE.MAP_READ | USAGE.COPY_DST);
        const enc = device.createCommandEncoder();
        enc.copyBufferToBuffer(from, 0, staging, 0, bytes);
        queue.submit([enc.finish()]);
        await staging.mapAsync(MAP_READ, 0, bytes);
        const data = new Float32Array(staging.getMappedRange(0, bytes).slice(0));
        staging.unmap();
        staging.destroy();
        return data;
      };

      const backend: TrainingBackend = {
        group,
        kernel: "webgpu",
        threads: 1,

        step(batch: BatchRef, seed: number): Promise<StepOutcome> {
          const run = privateStep ?? runStep;
          if (!firstStep) return run(batch, seed);
          firstStep = false;
          return checked(device, "training step", () => run(batch, seed));
        },

        async evaluate(): Promise<Evaluation | null> {
          if (!validationTable || !valX || !valLogits) return null;
          const run = async () => {
            const enc = device.createCommandEncoder();
            enc.clearBuffer(status);
            for (let start = 0; start < V; start += maxRows) {
              const rows = Math.min(maxRows, V - start);
              enc.copyBufferToBuffer(valX, start * F * 4, batchX, 0, rows * F * 4);
              if (valMask) enc.copyBufferToBuffer(valMask, start * F * 4, batchMask!, 0, rows * F * 4);
              if (valTypes) enc.copyBufferToBuffer(valTypes, start * F * 4, batchTypes!, 0, rows * F * 4);
              const pass = enc.beginComputePass();
              evalForwardProgram(rows).encode(pass);
              pass.end();
              enc.copyBufferToBuffer(logitsOf(), 0, valLogits, start * outSize * 4, rows * outSize * 4);
            }
            const pass = enc.beginComputePass();
            evalTailProgram().encode(pass);
            pass.end();
            const { f32, u32 } = await readStatus(enc);
            const counted = u32[STATUS.counted]!;
            return {
              valLoss: f32[STATUS.valLoss]!,
              valAccuracy: hasAccuracy ? (counted === 0 ? 0 : u32[STATUS.correct]! / counted) : undefined,
            };
          };
          if (!firstEvaluation) return run();
          firstEvaluation = false;
          return checked(device, "validation", run);
        },

        saveBest() {
          copyParams(params, best!);
        },

        restoreBest() {
          copyParams(best!, params);
        },

        async parameters(): Promise<NamedTensor[]> {
          const bytes = compiled.stateCount * 4;
          const staging = buffers.raw("params readback", bytes, USAGE.MAP_READ | USAGE.COPY_DST);
          const enc = device.createCommandEncoder();
          enc.copyBufferToBuffer(params, 0, staging, 0, Math.ceil(bytes / 4) * 4);
          queue.submit([enc.finish()]);
          await staging.mapAsync(MAP_READ, 0, bytes);
          const all = new Float32Array(staging.getMappedRange(0, bytes).slice(0));
          staging.unmap();
          staging.destroy();
          return readState(compiled, all);
        },

        close() {
          for (const p of programs) p.destroy();
          buffers.destroy();
        },

        async saveTrainingState(): Promise<BackendTrainingState> {
          const optimizer = [];
          for (const s of optimizerState) optimizer.push({ name: s.name, data: await readFloats(s.buffer, T) });
          return { optimizer, position: { ...steps.position }, best: best ? await readFloats(best, compiled.stateCount) : null };
        },

        loadTrainingState(state: BackendTrainingState) {
          for (const s of optimizerState) {
            const saved = state.optimizer.find((o) => o.name === s.name);
            if (!saved || saved.data.length !== T) throw new Error(`checkpoint: optimizer state ${s.name} is missing or has the wrong size`);
            queue.writeBuffer(s.buffer, 0, saved.data as Float32Array<ArrayBuffer>);
          }
          Object.assign(steps.position, state.position);
          if (best && state.best) {
            // the best snapshot is a prefix of the state block (the WASM backend keeps the trainable
            // parameters and buffers; frozen ones never change): the rest comes from the weights
            copyParams(params, best);
            queue.writeBuffer(best, 0, state.best.subarray(0, Math.min(state.best.length, compiled.stateCount)) as Float32Array<ArrayBuffer>);
          }
        },
      };
      return backend;
    });
  } catch (e) {
    for (const p of programs) p.destroy();
    buffers.destroy();
    throw e;
  }
}
