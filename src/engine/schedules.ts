/**
 * Learning-rate schedules, written as torch.optim.lr_scheduler (1.13) writes them: the same
 * recursive ("chainable") forms, the same closed forms for SequentialLR's restarts, the same
 * constructor side effects (the initial step, `initial_lr`), all in f64 like Python floats.
 * https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate
 */
import type { ClosedFormScheduleSpec, ScheduleSpec } from "../schema/request.js";

/**
 * The optimizer's parameter group, as PyTorch keeps it: schedulers write `lr` (and, for
 * OneCycleLR, `momentum` = SGD/RMSprop momentum or Adam's beta1); the optimizer reads them.
 */
export interface ParamGroup {
  lr: number;
  initial_lr?: number;
  momentum: number;
}

/** Something stepped after optimizer.step(): per epoch or per batch. */
export interface LrScheduler {
  /** scheduler.step() (plateau: scheduler.step(metric)) */
  step(metric?: number): void;
}

/** _LRScheduler: last_epoch, base_lr, step(epoch?) with the closed form when an epoch is given. */
abstract class ChainableScheduler implements LrScheduler {
  protected readonly group: ParamGroup;
  lastEpoch = -1;
  stepCount = 0;
  readonly baseLr: number;

  constructor(group: ParamGroup) {
    this.group = group;
    group.initial_lr ??= group.lr; // group.setdefault('initial_lr', group['lr'])
    this.baseLr = group.initial_lr;
  }

  /** _initial_step(): called at the end of every subclass constructor, as in torch, and by SequentialLR. */
  initialStep(): void {
    this.stepCount = 0;
    this.step();
  }

  /** The chainable form: the next lr from the current one. */
  protected abstract getLr(): number;
  /** The closed form at lastEpoch (used by SequentialLR's step(0)). */
  protected closedForm(): number {
    return this.getLr();
  }

  step(_metric?: number, epoch?: number): void {
    this.stepCount += 1;
    if (epoch === undefined) {
      this.lastEpoch += 1;
      this.group.lr = this.getLr();
    } else {
      this.lastEpoch = epoch;
      this.group.lr = this.closedForm();
    }
  }
}

/** ConstantLR(factor, total_iters) */
class ConstantLR extends ChainableScheduler {
  constructor(group: ParamGroup, private readonly factor: number, private readonly totalIters: number) {
    super(group);
    this.initialStep();
  }
  protected getLr(): number {
    const lr = this.group.lr;
    if (this.lastEpoch === 0) return lr * this.factor;
    if (this.lastEpoch > this.totalIters || this.lastEpoch !== this.totalIters) return lr;
    return lr * (1.0 / this.factor);
  }
  protected override closedForm(): number {
    return this.baseLr * (this.factor + (this.lastEpoch >= this.totalIters ? 1 : 0) * (1 - this.factor));
  }
}

/** StepLR(step_size, gamma): lr * gamma every step_size */
class StepLR extends ChainableScheduler {
  constructor(group: ParamGroup, private readonly stepSize: number, private readonly gamma: number) {
    super(group);
    this.initialStep();
  }
  protected getLr(): number {
    if (this.lastEpoch === 0 || this.lastEpoch % this.stepSize !== 0) return this.group.lr;
    return this.group.lr * this.gamma;
  }
  protected override closedForm(): number {
    return this.baseLr * this.gamma ** Math.floor(this.lastEpoch / this.stepSize);
  }
}

/** MultiStepLR(milestones, gamma): lr * gamma^(count of this epoch in milestones) */
class MultiStepLR extends ChainableScheduler {
  private readonly counts = new Map<number, number>();
  private readonly sorted: number[];
  constructor(group: ParamGroup, milestones: readonly number[], private readonly gamma: number) {
    super(group);
    for (const m of milestones) this.counts.set(m, (this.counts.get(m) ?? 0) + 1);
    this.sorted = [...milestones].sort((a, b) => a - b);
    this.initialStep();
  }
  protected getLr(): number {
    const c = this.counts.get(this.lastEpoch);
    return c === undefined ? this.group.lr : this.group.lr * this.gamma ** c;
  }
  protected override closedForm(): number {
    return this.baseLr * this.gamma ** bisectRight(this.sorted, this.lastEpoch);
  }
}

/** ExponentialLR(gamma) */
class ExponentialLR extends ChainableScheduler {
  constructor(group: ParamGroup, private readonly gamma: number) {
    super(group);
    this.initialStep();
  }
  protected getLr(): number {
    return this.lastEpoch === 0 ? this.group.lr : this.group.lr * this.gamma;
  }
  protected override closedForm(): number {
    return this.baseLr * this.gamma ** this.lastEpoch;
  }
}

/** CosineAnnealingLR(T_max, eta_min), PyTorch's recursive form (not clamped past T_max). */
class CosineAnnealingLR extends ChainableScheduler {
  constructor(group: ParamGroup, private readonly tMax: number, private readonly etaMin: number) {
    super(group);
    this.initialStep();
  }
  protected getLr(): number {
    const { lastEpoch: e, tMax: T, etaMin, baseLr } = this;
    const lr = this.group.lr;
    if (e === 0) return lr;
    if (this.stepCount === 1 && e > 0) return etaMin + ((baseLr - etaMin) * (1 + Math.cos((e * Math.PI) / T))) / 2;
    if (pyMod(e - 1 - T, 2 * T) === 0) return lr + ((baseLr - etaMin) * (1 - Math.cos(Math.PI / T))) / 2;
    return ((1 + Math.cos((Math.PI * e) / T)) / (1 + Math.cos((Math.PI * (e - 1)) / T))) * (lr - etaMin) + etaMin;
  }
  protected override closedForm(): number {
    return this.etaMin + ((this.baseLr - this.etaMin) * (1 + Math.cos((Math.PI * this.lastEpoch) / this.tMax))) / 2;
  }
}

/** LinearLR(start_factor, end_factor, total_iters) */
class LinearLR extends ChainableScheduler {
  constructor(
    group: ParamGroup,
    private readonly startFactor: number,
    private readonly endFactor: number,
    private readonly totalIters: number,
  ) {
    super(group);
    this.initialStep();
  }
  protected getLr(): number {
    const lr = this.group.lr;
    const { startFactor: s, endFactor: f, totalIters: T, lastEpoch: e } = this;
    if (e === 0) return lr * s;
    if (e > T) return lr;
    return lr * (1 + (f - s) / (T * s + (e - 1) * (f - s)));
  }
  protected override closedForm(): number {
    const { startFactor: s, endFactor: f, totalIters: T, lastEpoch: e } = this;
    return this.baseLr * (s + ((f - s) * Math.min(T, e)) / T);
  }
}

/** OneCycleLR: lr (and momentum / beta1) annealed through two or three phases, per batch. */
class OneCycleLR extends ChainableScheduler {
  private readonly phases: { endStep: number; startLr: number; endLr: number; startMomentum: number; endMomentum: number }[];
  private readonly anneal: (start: number, end: number, pct: number) => number;

  constructor(
    group: ParamGroup,
    private readonly spec: Extract<ScheduleSpec, { type: "onecycle" }>,
    maxLr: number,
    readonly totalSteps: number,
  ) {
    // torch sets initial_lr unconditionally before _LRScheduler.__init__
    const initialLr = maxLr / spec.div_factor;
    group.initial_lr = initialLr;
    const minLr = initialLr / spec.final_div_factor;
    if (spec.cycle_momentum) group.momentum = spec.max_momentum;
    super(group);
    const { pct_start: pct, max_momentum: maxM, base_momentum: baseM } = spec;
    this.phases = spec.three_phase
      ? [
          { endStep: pct * totalSteps - 1, startLr: initialLr, endLr: maxLr, startMomentum: maxM, endMomentum: baseM },
          { endStep: 2 * pct * totalSteps - 2, startLr: maxLr, endLr: initialLr, startMomentum: baseM, endMomentum: maxM },
          { endStep: totalSteps - 1, startLr: initialLr, endLr: minLr, startMomentum: maxM, endMomentum: maxM },
        ]
      : [
          { endStep: pct * totalSteps - 1, startLr: initialLr, endLr: maxLr, startMomentum: maxM, endMomentum: baseM },
          { endStep: totalSteps - 1, startLr: maxLr, endLr: minLr, startMomentum: baseM, endMomentum: maxM },
        ];
    this.anneal =
      spec.anneal_strategy === "cos"
        ? (start, end, p) => end + ((start - end) / 2.0) * (Math.cos(Math.PI * p) + 1)
        : (start, end, p) => (end - start) * p + start;
    this.initialStep();
  }

  protected getLr(): number {
    const stepNum = this.lastEpoch;
    if (stepNum > this.totalSteps) {
      // unreachable: the plan checks total_steps against the run's scheduler steps
      throw new RangeError(`OneCycleLR stepped ${stepNum + 1} times; total_steps is ${this.totalSteps}`);
    }
    let startStep = 0;
    for (let i = 0; i < this.phases.length; i++) {
      const phase = this.phases[i]!;
      if (stepNum <= phase.endStep || i === this.phases.length - 1) {
        const pct = (stepNum - startStep) / (phase.endStep - startStep);
        if (this.spec.cycle_momentum) this.group.momentum = this.anneal(phase.startMomentum, phase.endMomentum, pct);
        return this.anneal(phase.startLr, phase.endLr, pct);
      }
      startStep = phase.endStep;
    }
    return this.group.lr;
  }
}

/** ReduceLROnPlateau: multiplies lr by factor after `patience` epochs without improvement. */
class ReduceLROnPlateau implements LrScheduler {
  private best: number;
  private numBadEpochs = 0;
  private cooldownCounter = 0;

  constructor(private readonly group: ParamGroup, private readonly spec: Extract<ScheduleSpec, { type: "plateau" }>) {
    this.best = spec.mode === "min" ? Infinity : -Infinity;
  }

  private isBetter(a: number, best: number): boolean {
    const { mode, threshold_mode: tm, threshold } = this.spec;
    if (mode === "min" && tm === "rel") return a < best * (1 - threshold);
    if (mode === "min" && tm === "abs") return a < best - threshold;
    if (mode === "max" && tm === "rel") return a > best * (threshold + 1);
    return a > best + threshold;
  }

  step(metric?: number): void {
    const current = metric ?? NaN;
    if (this.isBetter(current, this.best)) {
      this.best = current;
      this.numBadEpochs = 0;
    } else {
      this.numBadEpochs += 1;
    }
    if (this.cooldownCounter > 0) {
      this.cooldownCounter -= 1;
      this.numBadEpochs = 0;
    }
    if (this.numBadEpochs > this.spec.patience) {
      const oldLr = this.group.lr;
      const newLr = Math.max(oldLr * this.spec.factor, this.spec.min_lr);
      if (oldLr - newLr > this.spec.eps) this.group.lr = newLr;
      this.cooldownCounter = this.spec.cooldown;
      this.numBadEpochs = 0;
    }
  }
}

/** SequentialLR: each sub-scheduler in turn; at a milestone the next one restarts from its closed form at 0. */
class SequentialLR implements LrScheduler {
  private lastEpoch = 0;
  constructor(
    group: ParamGroup,
    private readonly schedulers: ChainableScheduler[],
    private readonly milestones: readonly number[],
  ) {
    group.lr = group.initial_lr!;
    for (const s of schedulers) s.lastEpoch -= 1;
    schedulers[0]!.initialStep();
  }

  step(): void {
    this.lastEpoch += 1;
    const idx = bisectRight(this.milestones, this.lastEpoch);
    const scheduler = this.schedulers[idx]!;
    if (idx > 0 && this.milestones[idx - 1] === this.lastEpoch) scheduler.step(undefined, 0);
    else scheduler.step();
  }
}

/** When and how often the scheduler steps, resolved from the spec. */
export interface ScheduleTiming {
  interval: "epoch" | "step";
  /** scheduler.step() calls in the whole run (epochs, or epochs * steps per epoch) */
  totalSchedulerSteps: number;
}

/** Resolves `interval` (onecycle defaults to per step; plateau is per epoch). */
export function scheduleInterval(spec: ScheduleSpec): "epoch" | "step" {
  if (spec.type === "plateau") return "epoch";
  return spec.interval ?? (spec.type === "onecycle" ? "step" : "epoch");
}

/**
 * Builds the scheduler for `spec` over `group`, applying its initial step as torch's
 * constructor does. Returns null for a plain constant schedule (factor 1).
 *
 * @example
 * ```ts
 * const group = { lr: 0.1, momentum: 0 };
 * const s = createScheduler({ type: "step", step_size: 2, gamma: 0.5 }, group, { interval: "epoch", totalSchedulerSteps: 10 });
 * s?.step(); s?.step(); group.lr; // 0.05
 * ```
 */
export function createScheduler(spec: ScheduleSpec, group: ParamGroup, timing: ScheduleTiming): LrScheduler | null {
  switch (spec.type) {
    case "onecycle":
      return new OneCycleLR(group, spec, spec.max_lr ?? group.lr, spec.total_steps ?? timing.totalSchedulerSteps);
    case "plateau":
      return new ReduceLROnPlateau(group, spec);
    case "sequential": {
      // a sub-scheduler's own length (cosine's default T_max) is the span up to the next milestone
      const bounds = [0, ...spec.milestones, timing.totalSchedulerSteps];
      return new SequentialLR(
        group,
        spec.schedulers.map((s, i) =>
          createClosedForm(s, group, { ...timing, totalSchedulerSteps: Math.max(1, bounds[i + 1]! - bounds[i]!) }),
        ),
        spec.milestones,
      );
    }
    case "constant":
      if (spec.factor === 1) return null;
      return createClosedForm(spec, group, timing);
    default:
      return createClosedForm(spec, group, timing);
  }
}

function createClosedForm(spec: ClosedFormScheduleSpec, group: ParamGroup, timing: ScheduleTiming): ChainableScheduler {
  switch (spec.type) {
    case "constant":
      return new ConstantLR(group, spec.factor, spec.total_iters);
    case "step":
      return new StepLR(group, spec.step_size, spec.gamma);
    case "multistep":
      return new MultiStepLR(group, spec.milestones, spec.gamma);
    case "exponential":
      return new ExponentialLR(group, spec.gamma);
    case "cosine":
      return new CosineAnnealingLR(group, spec.T_max ?? timing.totalSchedulerSteps, spec.eta_min);
    case "linear":
      return new LinearLR(group, spec.start_factor, spec.end_factor, spec.total_iters);
  }
}

function bisectRight(sorted: readonly number[], x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x < sorted[mid]!) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Python's % (result has the sign of the divisor). */
function pyMod(a: number, b: number): number {
  return ((a % b) + b) % b;
}
