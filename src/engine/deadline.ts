/**
 * A run's time budget, checked between steps: a sync run in the Worker stops itself before the
 * step that would take it past its budget, with the weights from before that step, instead of
 * being killed by the runtime's CPU limit after it has been billed (issue 21).
 *
 * Two clocks guard it. The wall clock (performance.now) where it moves: in workerd, Node and
 * browsers it does, and it catches a machine slower than the cost model. In deployed Workers it
 * does not move while the Worker computes (timers advance only on I/O, a Spectre mitigation:
 * developers.cloudflare.com/workers/runtime-apis/performance/), so the steps already run times
 * the cost model's estimate per step stand in for it there.
 */

/** The budget a run checks before each step. */
export interface StepBudget {
  /** The most ms the run may take, from its start (the in-Worker CPU budget). */
  maxMs: number;
  /** The cost model's estimate of one step, in ms (src/api/budget.ts, estimateCpuMs / steps). */
  stepMs: number;
}

/**
 * Whether the next step would end past the budget: the time spent so far (the wall clock, or
 * the steps run times the estimate per step when that is more) plus the next step (the last
 * step's measured time, or the estimate when that is more) exceeds maxMs.
 *
 * @example
 * ```ts
 * wouldOverrun({ maxMs: 100, stepMs: 10 }, 0, 9, 0); // false: 9 steps x 10 ms + 10 ms = 100 ms
 * wouldOverrun({ maxMs: 100, stepMs: 10 }, 0, 10, 0); // true
 * wouldOverrun({ maxMs: 100, stepMs: 1 }, 95, 3, 8); // true: the wall clock says 95 ms, the last step took 8
 * ```
 */
export function wouldOverrun(budget: StepBudget, elapsedMs: number, stepsRun: number, lastStepMs: number): boolean {
  const spent = Math.max(elapsedMs, stepsRun * budget.stepMs);
  const next = Math.max(lastStepMs, budget.stepMs);
  return spent + next > budget.maxMs;
}

/**
 * How many of the next `most` steps can run, checked at once before running them together (a
 * fused chunk, program.ts): step j of them would start at elapsedMs + j steps of the larger of
 * the last step's time and the estimate, after stepsRun + j steps, and must pass wouldOverrun
 * as it would one step at a time.
 *
 * @example
 * ```ts
 * stepsWithinBudget({ maxMs: 100, stepMs: 10 }, 0, 5, 0, 20); // 5: steps 6 to 10 end by 100 ms
 * ```
 */
export function stepsWithinBudget(budget: StepBudget, elapsedMs: number, stepsRun: number, lastStepMs: number, most: number): number {
  const per = Math.max(lastStepMs, budget.stepMs);
  let k = 0;
  while (k < most && !wouldOverrun(budget, elapsedMs + k * per, stepsRun + k, lastStepMs)) k++;
  return k;
}
