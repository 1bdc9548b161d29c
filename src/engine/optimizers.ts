/**
 * Optimizers: their state in the arena, their scalars computed in f64 as torch.optim's Python
 * code computes them, and one kernel call per step over all trainable parameters.
 * https://pytorch.org/docs/stable/optim.html
 */
import type { OptimizerSpec } from "../schema/request.js";
import type { Arena, Region } from "./arena.js";
import type { Kernels } from "./kernels.js";
import type { ParamGroup } from "./schedules.js";

/** One optimizer over a contiguous [n] range of parameters and gradients. */
export interface Optimizer {
  /** The param group the scheduler drives (lr, momentum / beta1). */
  readonly group: ParamGroup;
  /** optimizer.step() */
  step(): void;
}

/**
 * Creates the optimizer for `spec` over params[n] and grads[n], with its state in `arena`.
 *
 * @example
 * ```ts
 * const opt = createOptimizer({ type: "adam", lr: 1e-3, ... }, kernels, arena, model.params.ptr, model.grads.ptr, n);
 * opt.step();
 * ```
 */
export function createOptimizer(spec: OptimizerSpec, k: Kernels, arena: Arena, params: number, grads: number, n: number): Optimizer {
  const flag = (b: boolean) => (b ? 1 : 0);
  switch (spec.type) {
    case "sgd": {
      const group: ParamGroup = { lr: spec.lr, momentum: spec.momentum };
      const buf = arena.alloc(n);
      let initialised = false;
      return {
        group,
        step() {
          // torch creates momentum_buffer = clone(d_p) on the first step with momentum != 0
          const first = group.momentum !== 0 && !initialised;
          if (group.momentum !== 0) initialised = true;
          k.sgd_step(params, grads, buf.ptr, n, group.lr, group.momentum, 1 - spec.dampening, spec.weight_decay,
            flag(spec.nesterov), flag(spec.maximize), flag(first));
        },
      };
    }
    case "adam":
    case "adamw": {
      const group: ParamGroup = { lr: spec.lr, momentum: spec.betas[0] };
      const [m, v] = [arena.alloc(n), arena.alloc(n)];
      const vmax: Region | null = spec.amsgrad ? arena.alloc(n) : null;
      const beta2 = spec.betas[1];
      const decoupled = spec.type === "adamw";
      let t = 0;
      return {
        group,
        step() {
          t += 1;
          const beta1 = group.momentum;
          const biasCorrection1 = 1 - beta1 ** t;
          const biasCorrection2 = 1 - beta2 ** t;
          const stepSize = group.lr / biasCorrection1;
          k.adam_step(params, grads, m.ptr, v.ptr, vmax?.ptr ?? 0, n,
            stepSize, beta1, 1 - beta1, beta2, 1 - beta2, Math.sqrt(biasCorrection2),
            spec.eps, spec.weight_decay, 1 - group.lr * spec.weight_decay,
            flag(spec.amsgrad), flag(spec.maximize), flag(decoupled));
        },
      };
    }
    case "rmsprop": {
      const group: ParamGroup = { lr: spec.lr, momentum: spec.momentum };
      const squareAvg = arena.alloc(n);
      const gradAvg = spec.centered ? arena.alloc(n) : null;
      const buf = arena.alloc(n);
      return {
        group,
        step() {
          k.rmsprop_step(params, grads, squareAvg.ptr, gradAvg?.ptr ?? 0, buf.ptr, n,
            group.lr, spec.alpha, 1 - spec.alpha, spec.eps, spec.weight_decay, group.momentum,
            flag(spec.centered), flag(spec.maximize));
        },
      };
    }
    case "adagrad": {
      const group: ParamGroup = { lr: spec.lr, momentum: 0 };
      const sum = arena.alloc(n);
      k.fill(sum.ptr, spec.initial_accumulator_value, n);
      let t = 0;
      return {
        group,
        step() {
          t += 1;
          const clr = group.lr / (1 + (t - 1) * spec.lr_decay);
          k.adagrad_step(params, grads, sum.ptr, n, clr, spec.eps, spec.weight_decay, flag(spec.maximize));
        },
      };
    }
  }
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
