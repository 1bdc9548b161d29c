/**
 * Optimizers: their state in the arena, their scalars computed in f64 as torch.optim's Python
 * code computes them, and one kernel call per step over all trainable parameters.
 * https://pytorch.org/docs/stable/optim.html
 */
import type { OptimizerSpec } from "../schema/request.js";
import type { Arena, Region } from "./arena.js";
import type { Kernels } from "./kernels.js";
import type { ParamGroup } from "./schedules.js";

/**
 * The scalars of one optimizer.step(), as torch.optim's Python code computes them (in f64):
 * what every backend passes to its update kernel. Flags are 0/1.
 */
export type OptimizerScalars =
  | { type: "sgd"; lr: number; momentum: number; dampening1m: number; weightDecay: number; nesterov: number; maximize: number; first: number }
  | {
      type: "adam";
      /** lr / (1 - beta1^t) */
      stepSize: number;
      beta1: number;
      beta1m: number;
      beta2: number;
      beta2m: number;
      /** sqrt(1 - beta2^t) */
      biasCorrection2Sqrt: number;
      eps: number;
      weightDecay: number;
      /** AdamW's decoupled decay factor 1 - lr * weight_decay */
      decayFactor: number;
      amsgrad: number;
      maximize: number;
      decoupled: number;
    }
  | { type: "rmsprop"; lr: number; alpha: number; alpha1m: number; eps: number; weightDecay: number; momentum: number; centered: number; maximize: number }
  | { type: "adagrad"; /** lr / (1 + (t - 1) lr_decay) */ clr: number; eps: number; weightDecay: number; maximize: number };

/** An optimizer's schedule of scalars: its param group (the scheduler writes lr and momentum there) and each step's scalars. */
export interface OptimizerSteps {
  readonly group: ParamGroup;
  /** The scalars of the next optimizer.step() (counts the step). */
  next(): OptimizerScalars;
  /** The step count and SGD's "momentum buffer exists" flag: what a checkpoint keeps besides the state tensors. */
  readonly position: OptimizerPosition;
}

/**
 * What torch keeps per parameter besides tensors: `state['step']` (Adam, Adagrad) and whether
 * SGD's momentum_buffer exists yet. Mutable: a resumed run writes the checkpoint's values here.
 *
 * @example
 * ```ts
 * const steps = optimizerSteps(spec);
 * Object.assign(steps.position, { t: 120, initialised: true }); // resume after 120 steps
 * ```
 */
export interface OptimizerPosition {
  t: number;
  initialised: boolean;
}

/**
 * The per-step scalars of an optimizer spec, written once for every backend.
 *
 * @example
 * ```ts
 * const steps = optimizerSteps({ type: "adam", lr: 1e-3, betas: [0.9, 0.999], ... });
 * steps.next(); // { type: "adam", stepSize: 0.01, ... } at t = 1 (lr / (1 - 0.9))
 * ```
 */
export function optimizerSteps(spec: OptimizerSpec): OptimizerSteps {
  const flag = (b: boolean) => (b ? 1 : 0);
  switch (spec.type) {
    case "sgd": {
      const group: ParamGroup = { lr: spec.lr, momentum: spec.momentum };
      const position: OptimizerPosition = { t: 0, initialised: false };
      return {
        group,
        position,
        next() {
          position.t += 1;
          // torch creates momentum_buffer = clone(d_p) on the first step with momentum != 0
          const first = group.momentum !== 0 && !position.initialised;
          if (group.momentum !== 0) position.initialised = true;
          return {
            type: "sgd", lr: group.lr, momentum: group.momentum, dampening1m: 1 - spec.dampening, weightDecay: spec.weight_decay,
            nesterov: flag(spec.nesterov), maximize: flag(spec.maximize), first: flag(first),
          };
        },
      };
    }
    case "adam":
    case "adamw": {
      const group: ParamGroup = { lr: spec.lr, momentum: spec.betas[0] };
      const beta2 = spec.betas[1];
      const position: OptimizerPosition = { t: 0, initialised: false };
      return {
        group,
        position,
        next() {
          const t = ++position.t;
          const beta1 = group.momentum;
          const biasCorrection1 = 1 - beta1 ** t;
          const biasCorrection2 = 1 - beta2 ** t;
          return {
            type: "adam", stepSize: group.lr / biasCorrection1, beta1, beta1m: 1 - beta1, beta2, beta2m: 1 - beta2,
            biasCorrection2Sqrt: Math.sqrt(biasCorrection2), eps: spec.eps, weightDecay: spec.weight_decay,
            decayFactor: 1 - group.lr * spec.weight_decay, amsgrad: flag(spec.amsgrad), maximize: flag(spec.maximize),
            decoupled: flag(spec.type === "adamw"),
          };
        },
      };
    }
    case "rmsprop": {
      const group: ParamGroup = { lr: spec.lr, momentum: spec.momentum };
      const position: OptimizerPosition = { t: 0, initialised: false };
      return {
        group,
        position,
        next() {
          position.t += 1;
          return {
            type: "rmsprop", lr: group.lr, alpha: spec.alpha, alpha1m: 1 - spec.alpha, eps: spec.eps, weightDecay: spec.weight_decay,
            momentum: group.momentum, centered: flag(spec.centered), maximize: flag(spec.maximize),
          };
        },
      };
    }
    case "adagrad": {
      const group: ParamGroup = { lr: spec.lr, momentum: 0 };
      const position: OptimizerPosition = { t: 0, initialised: false };
      return {
        group,
        position,
        next() {
          const t = ++position.t;
          return { type: "adagrad", clr: group.lr / (1 + (t - 1) * spec.lr_decay), eps: spec.eps, weightDecay: spec.weight_decay, maximize: flag(spec.maximize) };
        },
      };
    }
  }
}

/** One optimizer over a contiguous [n] range of parameters and gradients. */
export interface Optimizer {
  /** The param group the scheduler drives (lr, momentum / beta1). */
  readonly group: ParamGroup;
  /** optimizer.step() */
  step(): void;
  /**
   * optimizer.step() with its update kernel called on `kernels` instead: a program recorder
   * (program.ts) keeps the call's arguments, this step's scalars, for the fused step to run.
   */
  stepOn(kernels: Kernels): void;
  /** The update kernel's name (adam_step, ...). */
  readonly kernel: "sgd_step" | "adam_step" | "rmsprop_step" | "adagrad_step";
  /** Its state tensors, torch's names in torch's order (a checkpoint saves and restores them). */
  readonly state: { name: string; region: Region }[];
  /** Its step count and flags (optimizerSteps). */
  readonly position: OptimizerPosition;
}

/**
 * Creates the optimizer for `spec` over params[n] and grads[n] on the kernel core, with its
 * state in `arena`.
 *
 * @example
 * ```ts
 * const opt = createOptimizer({ type: "adam", lr: 1e-3, ... }, kernels, arena, model.state.ptr, model.grads.ptr, n);
 * opt.step();
 * ```
 */
export function createOptimizer(spec: OptimizerSpec, kernels: Kernels, arena: Arena, params: number, grads: number, n: number): Optimizer {
  const steps = optimizerSteps(spec);
  // state, in torch's order: SGD momentum_buffer; Adam exp_avg, exp_avg_sq (max_exp_avg_sq);
  // RMSprop square_avg (grad_avg) momentum_buffer; Adagrad sum
  let step: (s: OptimizerScalars, k: Kernels) => void;
  let kernel: Optimizer["kernel"];
  let state: { name: string; region: Region }[];
  switch (spec.type) {
    case "sgd": {
      const buf = arena.alloc(n);
      state = [{ name: "momentum_buffer", region: buf }];
      kernel = "sgd_step";
      step = (s, k) => {
        if (s.type !== "sgd") return;
        k.sgd_step(params, grads, buf.ptr, n, s.lr, s.momentum, s.dampening1m, s.weightDecay, s.nesterov, s.maximize, s.first);
      };
      break;
    }
    case "adam":
    case "adamw": {
      const [m, v] = [arena.alloc(n), arena.alloc(n)];
      const vmax: Region | null = spec.amsgrad ? arena.alloc(n) : null;
      state = [{ name: "exp_avg", region: m }, { name: "exp_avg_sq", region: v }, ...(vmax ? [{ name: "max_exp_avg_sq", region: vmax }] : [])];
      kernel = "adam_step";
      step = (s, k) => {
        if (s.type !== "adam") return;
        k.adam_step(params, grads, m.ptr, v.ptr, vmax?.ptr ?? 0, n, s.stepSize, s.beta1, s.beta1m, s.beta2, s.beta2m,
          s.biasCorrection2Sqrt, s.eps, s.weightDecay, s.decayFactor, s.amsgrad, s.maximize, s.decoupled);
      };
      break;
    }
    case "rmsprop": {
      const squareAvg = arena.alloc(n);
      const gradAvg = spec.centered ? arena.alloc(n) : null;
      const buf = arena.alloc(n);
      state = [{ name: "square_avg", region: squareAvg }, ...(gradAvg ? [{ name: "grad_avg", region: gradAvg }] : []), { name: "momentum_buffer", region: buf }];
      kernel = "rmsprop_step";
      step = (s, k) => {
        if (s.type !== "rmsprop") return;
        k.rmsprop_step(params, grads, squareAvg.ptr, gradAvg?.ptr ?? 0, buf.ptr, n, s.lr, s.alpha, s.alpha1m, s.eps, s.weightDecay,
          s.momentum, s.centered, s.maximize);
      };
      break;
    }
    case "adagrad": {
      const sum = arena.alloc(n);
      kernels.fill(sum.ptr, spec.initial_accumulator_value, n);
      state = [{ name: "sum", region: sum }];
      kernel = "adagrad_step";
      step = (s, k) => {
        if (s.type !== "adagrad") return;
        k.adagrad_step(params, grads, sum.ptr, n, s.clr, s.eps, s.weightDecay, s.maximize);
      };
      break;
    }
  }
  return { group: steps.group, step: () => step(steps.next(), kernels), stepOn: (on) => step(steps.next(), on), kernel, state, position: steps.position };
}

/** Whether OneCycleLR can cycle this optimizer's momentum (torch: 'momentum' or 'betas' in defaults). */
export function hasMomentum(spec: OptimizerSpec): boolean {
  return spec.type !== "adagrad";
}

/** Elements of optimizer state per trainable parameter (for the memory plan). */
export function optimizerStatePerParam(spec: OptimizerSpec): number {
  switch (spec.type) {
    case "sgd":
      return 1;
    case "adam":
    case "adamw":
      return spec.amsgrad ? 3 : 2;
    case "rmsprop":
      return spec.centered ? 3 : 2;
    case "adagrad":
      return 1;
  }
}
