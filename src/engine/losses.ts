/**
 * Loss functions: the request's loss spec bound to its kernel, its constant vectors (class
 * weights, pos_weight) in the arena, and the validation accuracy rule of its task.
 * https://pytorch.org/docs/stable/nn.html#loss-functions
 */
import type { LossSpec } from "../schema/request.js";
import { UnprocessableError, type FieldIssue } from "../errors.js";
import type { Arena } from "./arena.js";
import type { Kernels, Ptr } from "./kernels.js";

export interface Loss {
  /**
   * Mean loss over `rows` rows of logits [rows, outputs]; writes dL/dlogits into grad unless grad
   * is 0. `on`: the kernels to call instead of the loss's own (a program recorder, program.ts).
   */
  compute(grad: Ptr, logits: Ptr, target: Ptr, rows: number, on?: Kernels): number;
  /** Fraction of correct predictions (classification losses), or undefined. */
  accuracy(logits: Float32Array, target: Float32Array, rows: number): number | undefined;
  /** Elements of the target per row. */
  readonly targetWidth: number;
}

/** Loss types whose target is one class index per row. */
export function isClassIndexLoss(spec: LossSpec): boolean {
  return spec.type === "cross_entropy" || spec.type === "multi_margin";
}

/**
 * Checks the loss's vectors against the model's output width (class weight: one per class;
 * pos_weight: one per output) and the output width against the loss (class losses need >= 2 classes
 * to be meaningful, but PyTorch accepts 1, so we do too).
 *
 * @example
 * ```ts
 * checkLossSpec({ type: "cross_entropy", weight: [1, 2], ... }, 3); // throws: training.loss.weight
 * ```
 */
export function checkLossSpec(spec: LossSpec, outputs: number): void {
  const issues: FieldIssue[] = [];
  if ((spec.type === "cross_entropy" || spec.type === "multi_margin") && spec.weight !== null && spec.weight.length !== outputs) {
    issues.push({
      path: "training.loss.weight",
      message: `has ${spec.weight.length} values but the model has ${outputs} classes (out_features of the last linear layer)`,
    });
  }
  if (spec.type === "bce_with_logits" && Array.isArray(spec.pos_weight) && spec.pos_weight.length !== outputs && spec.pos_weight.length !== 1) {
    issues.push({
      path: "training.loss.pos_weight",
      message: `has ${spec.pos_weight.length} values but the model has ${outputs} outputs`,
    });
  }
  if (issues.length > 0) throw new UnprocessableError("loss_mismatch", issues);
}

/**
 * Binds a loss spec to the kernels.
 *
 * @example
 * ```ts
 * const loss = createLoss(request.training.loss, kernels, arena, prepared.output.classes);
 * const value = loss.compute(model.logitsGrad.ptr, logits, yPtr, rows);
 * ```
 */
export function createLoss(spec: LossSpec, k: Kernels, arena: Arena, outputs: number): Loss {
  const vector = (values: readonly number[] | null): Ptr => {
    if (values === null) return 0;
    const region = arena.alloc(outputs);
    const view = arena.f32(region);
    for (let c = 0; c < outputs; c++) view[c] = values.length === 1 ? values[0]! : values[c]!;
    return region.ptr;
  };
  const perElement = { targetWidth: outputs, accuracy: () => undefined };
  switch (spec.type) {
    case "mse":
      return { ...perElement, compute: (g, x, y, rows, on = k) => on.mse_loss(g, x, y, rows * outputs) };
    case "l1":
      return { ...perElement, compute: (g, x, y, rows, on = k) => on.l1_loss(g, x, y, rows * outputs) };
    case "huber":
      return { ...perElement, compute: (g, x, y, rows, on = k) => on.huber_loss(g, x, y, spec.delta, rows * outputs) };
    case "smooth_l1":
      return { ...perElement, compute: (g, x, y, rows, on = k) => on.smooth_l1_loss(g, x, y, spec.beta, rows * outputs) };
    case "cross_entropy": {
      const weight = vector(spec.weight);
      return {
        targetWidth: 1,
        compute: (g, x, y, rows, on = k) => on.cross_entropy_loss(g, x, y, weight, rows, outputs, spec.ignore_index, spec.label_smoothing),
        accuracy: (x, y, rows) => argmaxAccuracy(x, y, rows, outputs, spec.ignore_index),
      };
    }
    case "multi_margin": {
      const weight = vector(spec.weight);
      return {
        targetWidth: 1,
        compute: (g, x, y, rows, on = k) => on.multi_margin_loss(g, x, y, weight, rows, outputs, spec.p, spec.margin),
        accuracy: (x, y, rows) => argmaxAccuracy(x, y, rows, outputs, null),
      };
    }
    case "bce_with_logits": {
      const posWeight = vector(spec.pos_weight === null ? null : typeof spec.pos_weight === "number" ? [spec.pos_weight] : spec.pos_weight);
      return {
        targetWidth: outputs,
        compute: (g, x, y, rows, on = k) => on.bce_with_logits_loss(g, x, y, posWeight, rows, outputs),
        accuracy: (x, y, rows) => signAccuracy(x, y, rows * outputs, (t) => t > 0.5),
      };
    }
    case "hinge":
      return {
        targetWidth: outputs,
        compute: (g, x, y, rows, on = k) => on.hinge_loss(g, x, y, rows * outputs),
        accuracy: (x, y, rows) => signAccuracy(x, y, rows * outputs, (t) => t === 1),
      };
  }
}

/** mean(argmax(x_i) == y_i) over rows whose target is not ignored. */
function argmaxAccuracy(x: Float32Array, y: Float32Array, rows: number, classes: number, ignoreIndex: number | null): number {
  let correct = 0;
  let counted = 0;
  for (let i = 0; i < rows; i++) {
    const target = y[i]!;
    if (ignoreIndex !== null && target === ignoreIndex) continue;
    let best = 0;
    for (let c = 1; c < classes; c++) if (x[i * classes + c]! > x[i * classes + best]!) best = c;
    counted++;
    if (best === target) correct++;
  }
  return counted === 0 ? 0 : correct / counted;
}

/** mean((x > 0) == positive(y)) over every element. */
function signAccuracy(x: Float32Array, y: Float32Array, n: number, positive: (t: number) => boolean): number {
  let correct = 0;
  for (let i = 0; i < n; i++) if (x[i]! > 0 === positive(y[i]!)) correct++;
  return n === 0 ? 0 : correct / n;
}
