/**
 * Building job resources and their event streams from runs.
 */
import { JOB_HISTORY_TAIL, type Job, type JobMetrics } from "../schema/job.js";
import type { EpochMetrics, FineTuneResult, Metrics, Plan } from "../schema/result.js";
import type { RunPlan } from "../engine/plan.js";

/**
 * One job event as stored: sequence number (the SSE id), event name, JSON payload.
 *
 * @example
 * ```ts
 * const e: JobEvent = { id: 3, event: "epoch", data: { epoch: 2, train_loss: 0.4, lr: 0.001 } };
 * ```
 */
export interface JobEvent {
  id: number;
  /** `trial`: a search job's trial changed (status, or an epoch with its metric). */
  event: "status" | "epoch" | "step" | "done" | "error" | "trial";
  data: unknown;
}

/**
 * The job resource of a finished run.
 *
 * @example
 * ```ts
 * const job = jobFromResult(result, { mode: "sync", createdAt, startedAt, finishedAt });
 * ```
 */
export function jobFromResult(
  result: Omit<FineTuneResult, "weights">,
  times: { mode: Job["mode"]; createdAt: string; startedAt: string; finishedAt: string },
): Job {
  return {
    id: result.id,
    object: "fine_tune",
    status: result.status,
    mode: times.mode,
    created_at: times.createdAt,
    started_at: times.startedAt,
    finished_at: times.finishedAt,
    plan: result.plan,
    metrics: boundedMetrics(result.metrics),
    engine: result.engine,
    error: result.error ?? null,
    ...(result.huggingface ? { huggingface: result.huggingface } : {}),
    ...(result.adapter_config ? { adapter_config: result.adapter_config } : {}),
    ...(result.warnings ? { warnings: result.warnings } : {}),
    ...(result.explanations ? { explanations: result.explanations } : {}),
    weights_url: `/v1/fine-tunes/${result.id}/weights`,
  };
}

/**
 * A new async job resource, queued: nothing run, no weights yet. `extra` adds the fields of its
 * kind (a search's trials, a trial's parent, a webhook, what reading a Hub checkpoint did).
 *
 * @example
 * ```ts
 * const job = queuedJob(newId(), new Date().toISOString(), reportedPlan(prepared.plan, "edge"), { parent: "ft_..." });
 * ```
 */
export function queuedJob(id: string, createdAt: string, plan: Plan, extra: Partial<Job> = {}): Job {
  return {
    id,
    object: "fine_tune",
    status: "queued",
    mode: "async",
    created_at: createdAt,
    started_at: null,
    finished_at: null,
    plan,
    metrics: null,
    engine: null,
    error: null,
    weights_url: null,
    ...extra,
  };
}

/**
 * The plan as a job reports it: the run's plan with the placement chosen for it.
 *
 * @example
 * ```ts
 * reportedPlan(prepared.plan, decision.placement).placement; // "gpu-node"
 * ```
 */
export function reportedPlan(plan: RunPlan, placement: Plan["placement"]): Plan {
  return {
    params: plan.params,
    trainable_params: plan.trainable_params,
    flops: plan.flops,
    memory_bytes: plan.memory_bytes,
    steps: plan.steps,
    ...(plan.batch_size !== undefined ? { batch_size: plan.batch_size } : {}),
    ...(plan.loss !== undefined ? { loss: plan.loss } : {}),
    ...(plan.lr_finder_steps !== undefined ? { lr_finder_steps: plan.lr_finder_steps } : {}),
    placement,
    groups: plan.groups,
  };
}

/**
 * A job's metrics from a run's (or a job's) metrics: the last JOB_HISTORY_TAIL epochs of the
 * history, with the count of all of them (`epochs`, default: the history's length).
 *
 * @example
 * ```ts
 * boundedMetrics(result.metrics).history.length <= JOB_HISTORY_TAIL; // true
 * ```
 */
export function boundedMetrics(metrics: Metrics & { epochs?: number }, epochs = metrics.epochs ?? metrics.history.length): JobMetrics {
  const history = metrics.history.length > JOB_HISTORY_TAIL ? metrics.history.slice(-JOB_HISTORY_TAIL) : metrics.history;
  return { ...metrics, history, epochs, history_truncated: epochs > history.length };
}

/** Whether a job has reached one of its final states. */
export function isFinal(status: Job["status"]): boolean {
  return status === "succeeded" || status === "failed" || status === "cancelled" || status === "diverged";
}

/**
 * The final event of a job: `done` when it succeeded, `error` otherwise; both carry the job.
 *
 * @example
 * ```ts
 * finalEvent(job); // { event: "done", data: job }
 * ```
 */
export function finalEvent(job: Job): Pick<JobEvent, "event" | "data"> {
  return { event: job.status === "succeeded" ? "done" : "error", data: job };
}

/**
 * The events of a job that ran synchronously, with ids from `first`: `status` running (id 1),
 * one `epoch` per history entry (entry i has id i + 2), `status`, then the final event. `page`
 * reads `limit` history entries from an offset, so that a long history is sent page by page.
 *
 * @example
 * ```ts
 * for await (const batch of eventsOfFinishedJob(job, 0, (offset, limit) => history.slice(offset, offset + limit)))
 *   console.log(batch.map((e) => e.event)); // ["status", "epoch", ...], ..., [..., "status", "done"]
 * ```
 */
export async function* eventsOfFinishedJob(
  job: Job,
  after: number,
  page: (offset: number, limit: number) => Promise<readonly EpochMetrics[]> | readonly EpochMetrics[],
  pageSize = 1000,
): AsyncGenerator<JobEvent[]> {
  const epochs = job.metrics?.epochs ?? 0;
  let next = Math.max(1, after + 1);
  if (next === 1) {
    yield [{ id: 1, event: "status", data: { status: "running" } }];
    next = 2;
  }
  while (next <= epochs + 1) {
    const entries = await page(next - 2, Math.min(pageSize, epochs + 2 - next));
    if (entries.length === 0) break;
    yield entries.map((data, i) => ({ id: next + i, event: "epoch", data }));
    next += entries.length;
  }
  const tail: JobEvent[] = [
    { id: epochs + 2, event: "status", data: { status: job.status } },
    { id: epochs + 3, ...finalEvent(job) },
  ];
  yield tail.filter((e) => e.id >= next);
}
