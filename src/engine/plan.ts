/**
 * The plan of a run, computed before any memory is touched: steps, FLOPs and the bytes of
 * WebAssembly memory it will need. The API uses it to decide whether a job fits the in-Worker
 * budget; the engine uses the same numbers to reserve memory once.
 */
import type { FineTuneRequest } from "../schema/request.js";
import type { Plan } from "../schema/result.js";
import { UnprocessableError, type FieldIssue } from "../errors.js";
import type { CompiledModel } from "./graph/types.js";
import { modelAllocations, stateElements } from "./model.js";
import type { OutputLayout } from "./prepare.js";
import { optimizerStatePerParam, hasMomentum } from "./optimizers.js";
import { scheduleInterval } from "./schedules.js";

/** What the plan needs to know about the data (no values). */
export interface DataShape {
  trainRows: number;
  validationRows: number;
  features: number;
  targets: number;
  /** Token rows come with an attention mask ([rows, features]). */
  mask?: boolean;
}

/** The full plan: the public fields of `Plan` plus what the engine needs to run. */
export interface RunPlan extends Omit<Plan, "placement" | "groups"> {
  groups: NonNullable<Plan["groups"]>;
  stepsPerEpoch: number;
  /** Rows per batch buffer: min(batch_size, train rows). */
  maxRows: number;
  interval: "epoch" | "step";
  totalSchedulerSteps: number;
}

/**
 * What the run does besides its epochs.
 *
 * @example
 * ```ts
 * planRun(request, model, output, data, { lrFinderSteps: 100 }).lr_finder_steps; // 100
 * ```
 */
export interface PlanOptions {
  /**
   * Steps of the learning-rate range test before training (lr "auto": LR_FINDER.steps, an upper
   * bound; docs/strategy.md): their FLOPs are in the plan's, so a job is not admitted in the
   * Worker when the test takes it over the budget. Its memory is the run's (the test's copy of
   * the model is released before training allocates again).
   */
  lrFinderSteps?: number | undefined;
}

/** Optimizer steps per epoch, as a DataLoader with this batch_size and drop_last yields batches. */
export function stepsPerEpoch(rows: number, batchSize: number, dropLast: boolean): number {
  return dropLast ? Math.floor(rows / batchSize) : Math.ceil(rows / batchSize);
}

/**
 * Plans a run: checks what can only be checked with the data's shape (batches per epoch,
 * schedule lengths) and estimates FLOPs and memory.
 *
 * @example
 * ```ts
 * const compiled = compileModel(request.model, request.trainable, { features: 10 });
 * const plan = planRun(request, compiled, { positions: 1, classes: 1 }, { trainRows: 1000, validationRows: 0, features: 10, targets: 1 });
 * plan.steps; // 640 for 20 epochs of batch 32
 * ```
 */
export function planRun(request: FineTuneRequest, model: CompiledModel, output: OutputLayout, data: DataShape, options: PlanOptions = {}): RunPlan {
  const t = request.training;
  const issues: FieldIssue[] = [];
  const perEpoch = stepsPerEpoch(data.trainRows, t.batch_size, t.drop_last);
  if (perEpoch === 0) {
    issues.push({
      path: "training.batch_size",
      message: `is ${t.batch_size} but there are only ${data.trainRows} training rows and drop_last is true: no batch would run`,
    });
  }
  const interval = scheduleInterval(t.schedule);
  if (t.schedule.type === "plateau" && t.schedule.interval === "step") {
    issues.push({ path: "training.schedule.interval", message: "plateau steps once per epoch on a metric; use \"epoch\"" });
  }
  const totalSchedulerSteps = interval === "epoch" ? t.epochs : t.epochs * perEpoch;
  const s = t.schedule;
  if (s.type === "onecycle") {
    // torch raises once the scheduler steps past total_steps; the last step of a run is allowed
    if (s.total_steps !== undefined && s.total_steps < totalSchedulerSteps) {
      issues.push({
        path: "training.schedule.total_steps",
        message: `is ${s.total_steps} but the run takes ${totalSchedulerSteps} scheduler steps (${interval === "step" ? `${t.epochs} epochs x ${perEpoch} batches` : `${t.epochs} epochs`})`,
      });
    }
    if (s.cycle_momentum && !hasMomentum(t.optimizer)) {
      issues.push({
        path: "training.schedule.cycle_momentum",
        message: `${t.optimizer.type} has no momentum or beta1 to cycle; set cycle_momentum to false`,
      });
    }
  }
  if (s.type === "sequential") {
    if (s.milestones.length !== s.schedulers.length - 1) {
      issues.push({
        path: "training.schedule.milestones",
        message: `needs ${s.schedulers.length - 1} milestones for ${s.schedulers.length} schedulers, got ${s.milestones.length}`,
      });
    }
    s.milestones.forEach((m, i) => {
      if (i > 0 && m <= s.milestones[i - 1]!) issues.push({ path: `training.schedule.milestones[${i}]`, message: "milestones must increase" });
    });
  }
  const needsValidation = (metric: string | undefined) => metric === "val_loss" || metric === "val_accuracy";
  if (t.early_stopping && needsValidation(t.early_stopping.monitor) && data.validationRows === 0) {
    issues.push({
      path: "training.early_stopping.monitor",
      message: `is ${t.early_stopping.monitor} but there is no validation data (give data.validation or data.validation_split, or monitor train_loss)`,
    });
  }
  if (s.type === "plateau" && needsValidation(s.monitor) && data.validationRows === 0) {
    issues.push({ path: "training.schedule.monitor", message: `is ${s.monitor} but there is no validation data` });
  }
  const maxRows = Math.min(t.batch_size, data.trainRows);
  issues.push(...batchRowIssues(model, t.batch_size, t.drop_last, data, maxRows));
  if (issues.length > 0) throw new UnprocessableError("invalid_plan", issues);

  const rowsPerEpoch = t.drop_last ? perEpoch * t.batch_size : data.trainRows;
  const steps = t.epochs * perEpoch;
  const flops =
    t.epochs * (rowsPerEpoch * (model.forwardFlopsPerRow + model.recomputeFlopsPerRow + model.backwardFlopsPerRow) + data.validationRows * model.forwardFlopsPerRow) +
    data.validationRows * model.forwardFlopsPerRow + // the starting weights' validation (metrics.initial)
    steps * 12 * model.trainableCount;
  // the range test: full batches of training steps (forward, backward, update), no validation
  const lrFinderSteps = options.lrFinderSteps ?? 0;
  const lrFinderFlops = lrFinderSteps * (maxRows * (model.forwardFlopsPerRow + model.recomputeFlopsPerRow + model.backwardFlopsPerRow) + 12 * model.trainableCount);
  const perTrainable = 2 + optimizerStatePerParam(t.optimizer) + (t.early_stopping ? 1 : 0); // grad, last finite, state, best
  const frozenBytes = model.baseDtype === "float32" ? 4 : 2; // model.base_dtype
  const groups = model.groups.map((g) => ({
    name: g.name,
    params: g.params,
    trainable_params: g.trainableParams,
    flops:
      t.epochs * (rowsPerEpoch * (g.forwardFlopsPerRow + g.backwardFlopsPerRow) + data.validationRows * g.forwardFlopsPerRow) +
      data.validationRows * g.forwardFlopsPerRow +
      steps * 12 * g.trainableParams,
    memory_bytes: 4 * (g.trainableParams + perTrainable * g.trainableParams + maxRows * g.activationsPerRow + g.fixedElements) + frozenBytes * (g.params - g.trainableParams),
  }));
  return {
    params: model.paramCount,
    trainable_params: model.trainableCount,
    flops: flops + lrFinderFlops,
    groups,
    memory_bytes: estimateMemoryBytes(request, model, output, data, maxRows),
    steps,
    batch_size: t.batch_size,
    loss: t.loss.type,
    ...(lrFinderSteps > 0 ? { lr_finder_steps: lrFinderSteps } : {}),
    stepsPerEpoch: perEpoch,
    maxRows,
    interval,
    totalSchedulerSteps,
  };
}

/**
 * The run's batches against the layers' least rows per batch (BatchNorm over [C] samples needs
 * 2): the smallest training batch (a last partial batch, or all rows when there are fewer than
 * batch_size) and, for layers with batch statistics in evaluation, the smallest validation chunk.
 */
function batchRowIssues(model: CompiledModel, batchSize: number, dropLast: boolean, data: DataShape, maxRows: number): FieldIssue[] {
  const issues: FieldIssue[] = [];
  const smallest = (rows: number, size: number) => (rows < size ? rows : rows % size === 0 ? size : rows % size);
  // drop_last keeps full batches only (none at all is reported above)
  const train = dropLast ? (data.trainRows >= batchSize ? batchSize : 0) : smallest(data.trainRows, batchSize);
  const validation = data.validationRows > 0 ? smallest(data.validationRows, maxRows) : Infinity;
  for (const need of model.batchRows) {
    if (train > 0 && train < need.rows) {
      const how = data.trainRows < batchSize ? `all ${data.trainRows} training rows make one batch` : `${data.trainRows} training rows in batches of ${batchSize} leave a last batch of ${train}`;
      issues.push({
        path: "training.batch_size",
        message: `is ${batchSize}: ${how}, but ${need.path} needs at least ${need.rows} rows per batch (${need.why}); choose a batch_size that leaves no such batch, or set drop_last`,
      });
    }
    if (need.evaluation && validation < need.rows) {
      issues.push({
        path: "training.batch_size",
        message: `is ${batchSize}: validation runs in chunks of ${maxRows} rows and its ${data.validationRows} rows leave a chunk of ${validation}, but ${need.path} uses batch statistics in evaluation too and needs at least ${need.rows} rows (${need.why})`,
      });
    }
  }
  return issues;
}

/**
 * Bytes of WebAssembly memory a run allocates (mirrors the allocations of wasm-backend.ts and
 * model.ts, each rounded up to 16 bytes), plus the kernel module's static data.
 */
export function estimateMemoryBytes(request: FineTuneRequest, model: CompiledModel, output: OutputLayout, data: DataShape, maxRows: number): number {
  const t = request.training;
  const trainable = model.trainableCount;
  const snapshot = trainable + model.bufferCount;
  const masks = data.mask ? 1 : 0;
  const types = model.tokenTypes !== null ? 1 : 0;
  const elements = [
    data.trainRows * data.features, // dataset x
    data.trainRows * data.targets, // dataset y
    masks * data.trainRows * data.features, // dataset mask
    data.validationRows * data.features,
    data.validationRows * data.targets,
    masks * data.validationRows * data.features,
    data.validationRows * output.positions * output.classes, // validation logits
    maxRows * data.features, // batch x
    maxRows * data.targets, // batch y
    masks * maxRows * data.features, // batch mask
    types * (data.trainRows + data.validationRows) * data.features, // token_type_ids of both tables
    types * maxRows * data.features, // batch token_type_ids
    maxRows, // batch indices (i32)
    stateElements(model), // parameters and buffers (frozen parameters at 2 bytes with a 16-bit base_dtype)
    ...modelAllocations(model, maxRows), // gradients, activations, saved, gradient slots, workspace, widening scratch
    snapshot, // last finite state (divergence)
    t.early_stopping ? snapshot : 0, // best state
    trainable * optimizerStatePerParam(t.optimizer),
    output.classes, // class weight or pos_weight, at most one
  ];
  const bytes = elements.reduce((s, n) => s + Math.ceil((n * 4) / 16) * 16, 0);
  return bytes + 64 * 1024; // the module's static data and stack live below the arena's base
}
