/**
 * Building job resources and their event streams from runs.
 */
import type { Job } from "../schema/job.js";
import type { FineTuneResult } from "../schema/result.js";

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
  event: "status" | "epoch" | "step" | "done" | "error";
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
    metrics: result.metrics,
    engine: result.engine,
    error: result.error ?? null,
    ...(result.huggingface ? { huggingface: result.huggingface } : {}),
    ...(result.adapter_config ? { adapter_config: result.adapter_config } : {}),
    ...(result.warnings ? { warnings: result.warnings } : {}),
    ...(result.explanations ? { explanations: result.explanations } : {}),
    weights_url: `/v1/fine-tunes/${result.id}/weights`,
  };
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
 * The event history of a job that ran synchronously: running, one `epoch` per history entry,
 * then the final event.
 *
 * @example
 * ```ts
 * eventsOfFinishedJob(job).map((e) => e.event); // ["status", "epoch", ..., "done"]
 * ```
 */
export function eventsOfFinishedJob(job: Job): JobEvent[] {
  const events: Omit<JobEvent, "id">[] = [{ event: "status", data: { status: "running" } }];
  for (const h of job.metrics?.history ?? []) events.push({ event: "epoch", data: h });
  events.push({ event: "status", data: { status: job.status } });
  events.push(finalEvent(job));
  return events.map((e, i) => ({ id: i + 1, ...e }));
}
