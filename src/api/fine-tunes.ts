/**
 * /v1/fine-tunes: create (sync runs in the Worker), retrieve, list, weights, events, cancel.
 */
import { Hono, type Context } from "hono";
import { z } from "zod";
import { EdgetuneError, RequestValidationError } from "../errors.js";
import { convertWeights } from "../engine/adapters/output.js";
import { encodeBase64 } from "../formats/base64.js";
import { newId, prepareRun, runPreparedRaw } from "../engine/train.js";
import { eventsOfFinishedJob, isFinal, jobFromResult } from "../jobs/job.js";
import type { JobRecord, JobStore } from "../jobs/store.js";
import { createQueued } from "../jobs/state.js";
import { encodeRunInput } from "../jobs/run-input.js";
import type { RunPlan } from "../engine/plan.js";
import { jobSummary, type Job, type JobList } from "../schema/job.js";
import type { FineTuneResult, Plan } from "../schema/result.js";
import { zodIssues } from "../schema/issues.js";
import { readCreateBody } from "./body.js";
import { decide } from "./budget.js";
import type { AppEnv } from "./deps.js";
import { problem, problemResponse } from "./problem.js";
import { resumeAfter, sseText, SSE_HEADERS } from "./sse.js";

const JOB_ID = /^ft_[0-9a-f]{32}$/;

const ListQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(200).optional(),
});

/** The caller's job, or a 404 (also for another key's job: its existence is not revealed). */
async function ownJob(c: { var: AppEnv["Variables"] }, id: string): Promise<JobRecord> {
  const record = JOB_ID.test(id) ? await c.var.deps.store.get(id) : null;
  if (!record || record.owner !== c.var.owner) {
    throw new EdgetuneError(404, "not_found", `No fine-tune with id ${id}.`, [{ path: "id", message: "not found" }]);
  }
  return record;
}

const cursorOut = (key: string) => encodeBase64(new TextEncoder().encode(key)).replace(/=+$/, "").replaceAll("+", "-").replaceAll("/", "_");
const cursorIn = (cursor: string) => {
  try {
    return atob(cursor.replaceAll("-", "+").replaceAll("_", "/"));
  } catch {
    throw new RequestValidationError([{ path: "cursor", message: "is not a cursor returned by this API" }]);
  }
};

/**
 * The fine-tunes resource, mounted at /v1/fine-tunes.
 *
 * @example
 * ```ts
 * app.route("/v1/fine-tunes", fineTunes);
 * ```
 */
export const fineTunes = new Hono<AppEnv>()
  /** POST /v1/fine-tunes: validate, plan, run in the Worker when it fits (sync), store, answer the result. */
  .post("/", async (c) => {
    const { deps } = c.var;
    const createdAt = new Date().toISOString();
    const idempotencyKey = idempotencyKeyOf(c.req.header("idempotency-key"));
    const { request, tables } = await readCreateBody(c.req.raw, deps.maxBodyBytes);
    const prepared = prepareRun(request, tables);
    const decision = decide(prepared.request, prepared.plan, deps.budget);
    const id = newId();
    const input = decision.run === "async" || idempotencyKey ? encodeRunInput(prepared) : null;
    if (idempotencyKey) {
      // a retried create gets the first one's answer instead of a second job
      const fingerprint = await sha256Hex(input!);
      const first = await deps.store.reserveIdempotencyKey(c.var.owner, idempotencyKey, id, fingerprint);
      if (first) return replay(c, first.id, first.fingerprint === fingerprint);
    }
    if (decision.run === "async") {
      // accepted = stored and dispatched: from here the job reaches a final state whatever happens
      const job: Job = {
        id,
        object: "fine_tune",
        status: "queued",
        mode: "async",
        created_at: createdAt,
        started_at: null,
        finished_at: null,
        plan: planOf(prepared.plan, decision.placement),
        metrics: null,
        engine: null,
        error: null,
        ...(prepared.huggingface ? { huggingface: prepared.huggingface } : {}),
        weights_url: null,
      };
      const { state } = createQueued(job, c.var.owner, decision.placement, `inputs/${id}.safetensors`, Date.now(), deps.lease);
      await deps.store.submit(state, input!);
      c.header("Location", `/v1/fine-tunes/${id}`);
      return c.json(state.job, 202);
    }
    const startedAt = new Date().toISOString();
    let run;
    try {
      run = await runPreparedRaw(deps.runtime, prepared, { id, placement: "edge" });
      const job = jobFromResult(run.result, { mode: "sync", createdAt, startedAt, finishedAt: new Date().toISOString() });
      await deps.store.putWeights(id, run.weights);
      await deps.store.put({ job, owner: c.var.owner });
    } catch (e) {
      if (idempotencyKey) await deps.store.releaseIdempotencyKey(c.var.owner, idempotencyKey, id);
      throw e;
    }
    const { result, weights } = run;
    c.header("Location", `/v1/fine-tunes/${id}`);
    return c.json({ ...result, weights: encodeBase64(convertWeights(weights)) }, 200);
  })

  /** GET /v1/fine-tunes: the caller's jobs, newest first. */
  .get("/", async (c) => {
    const parsed = ListQuery.safeParse(c.req.query());
    if (!parsed.success) throw new RequestValidationError(zodIssues(parsed.error));
    const { limit, cursor } = parsed.data;
    const page = await c.var.deps.store.list(c.var.owner, { limit, cursor: cursor === undefined ? undefined : cursorIn(cursor) });
    const body: JobList = {
      object: "list",
      data: page.records.map((r) => jobSummary(r.job)),
      next_cursor: page.nextCursor === null ? null : cursorOut(page.nextCursor),
    };
    return c.json(body);
  })

  /** GET /v1/fine-tunes/{id}: the job. */
  .get("/:id", async (c) => {
    const { job } = await ownJob(c, c.req.param("id"));
    return c.json(job);
  })

  /** GET /v1/fine-tunes/{id}/weights: the fine-tuned safetensors file. */
  .get("/:id/weights", async (c) => {
    const { job } = await ownJob(c, c.req.param("id"));
    if (!isFinal(job.status) || job.status === "failed") {
      return problemResponse(
        problem(409, "weights_not_ready", `Fine-tune ${job.id} is ${job.status}; weights exist once it has ended with weights.`),
      );
    }
    const stored = await c.var.deps.store.getWeights(job.id);
    if (!stored) return problemResponse(problem(404, "not_found", `Fine-tune ${job.id} has no stored weights.`));
    // an adapter run's file is converted to ?format (default: its request's output.format)
    const format = c.req.query("format");
    const weights = job.adapter_config || format !== undefined ? convertWeights(await bytesOf(stored), format) : stored;
    return new Response(weights as BodyInit, {
      headers: {
        "content-type": "application/octet-stream",
        "content-disposition": `attachment; filename="${job.id}.safetensors"`,
      },
    });
  })

  /** GET /v1/fine-tunes/{id}/adapter_config.json: an adapter run's adapter_config.json (with adapter_model.safetensors, ?format=peft, PEFT's folder). */
  .get("/:id/adapter_config.json", async (c) => {
    const { job } = await ownJob(c, c.req.param("id"));
    if (!job.adapter_config) {
      if (!isFinal(job.status)) return problemResponse(problem(409, "weights_not_ready", `Fine-tune ${job.id} is ${job.status}; its adapter_config.json exists once it has ended with weights.`));
      return problemResponse(problem(404, "not_found", `Fine-tune ${job.id} trained no adapter.`));
    }
    return c.json(job.adapter_config);
  })

  /** GET /v1/fine-tunes/{id}/events: Server-Sent Events, replayed from the start or after Last-Event-ID, then live. */
  .get("/:id/events", async (c) => {
    const { job } = await ownJob(c, c.req.param("id"));
    const after = resumeAfter(c.req.header("last-event-id"), c.req.query("last_event_id"));
    if (job.mode === "sync") {
      return new Response(sseText(eventsOfFinishedJob(job).filter((e) => e.id > after)), { headers: SSE_HEADERS });
    }
    return new Response(followEvents(c.var.deps.store, job.id, after, c.var.deps.pollMs, c.req.raw.signal), { headers: SSE_HEADERS });
  })

  /** POST /v1/fine-tunes/{id}/cancel: a queued job ends at once; a running one stops within an epoch. */
  .post("/:id/cancel", async (c) => {
    const { job } = await ownJob(c, c.req.param("id"));
    if (job.status === "cancelled") return c.json(job); // a retried cancel
    if (isFinal(job.status)) {
      return problemResponse(problem(409, "already_finished", `Fine-tune ${job.id} has already ended (${job.status}).`));
    }
    return c.json((await c.var.deps.store.cancel(job.id)) ?? job);
  });

/** An Idempotency-Key header, checked: 1-255 visible ASCII characters. */
function idempotencyKeyOf(header: string | undefined): string | null {
  if (header === undefined) return null;
  if (!/^[\x21-\x7e]{1,255}$/.test(header)) {
    throw new RequestValidationError([{ path: "Idempotency-Key", message: "must be 1 to 255 visible ASCII characters" }]);
  }
  return header;
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The answer of the create that first used an Idempotency-Key. */
async function replay(c: Context<AppEnv>, id: string, sameRequest: boolean): Promise<Response> {
  if (!sameRequest) {
    return problemResponse(
      problem(422, "idempotency_key_reused", "This Idempotency-Key was used for a different request; use a new key.", [
        { path: "Idempotency-Key", message: "already used for a different request" },
      ]),
    );
  }
  const record = await c.var.deps.store.get(id);
  if (!record) {
    return problemResponse(problem(409, "request_in_progress", "A request with this Idempotency-Key is still running; retry shortly."), { "Retry-After": "1" });
  }
  const { job } = record;
  c.header("Location", `/v1/fine-tunes/${id}`);
  c.header("Idempotent-Replayed", "true");
  if (job.mode === "async") return c.json(job, 202);
  const weights = await c.var.deps.store.getWeights(id);
  const bytes = weights ? convertWeights(await bytesOf(weights)) : new Uint8Array(0);
  const result: FineTuneResult = {
    id: job.id,
    status: job.status as FineTuneResult["status"],
    metrics: job.metrics!,
    plan: job.plan,
    engine: job.engine!,
    weights: encodeBase64(bytes),
    ...(job.huggingface ? { huggingface: job.huggingface } : {}),
    ...(job.adapter_config ? { adapter_config: job.adapter_config } : {}),
    ...(job.warnings ? { warnings: job.warnings } : {}),
    ...(job.error ? { error: job.error } : {}),
  };
  return c.json(result, 200);
}

/** A stored object's bytes (R2 gives a stream). */
async function bytesOf(stored: Uint8Array | ReadableStream | Blob | ArrayBuffer): Promise<Uint8Array> {
  return stored instanceof Uint8Array ? stored : new Uint8Array(await new Response(stored as BodyInit).arrayBuffer());
}

/** The plan as the job reports it. */
function planOf(plan: RunPlan, placement: Plan["placement"]): Plan {
  return { params: plan.params, trainable_params: plan.trainable_params, flops: plan.flops, memory_bytes: plan.memory_bytes, steps: plan.steps, placement, groups: plan.groups };
}

/**
 * An SSE body that replays the job's events after `after`, then polls for new ones until the
 * final event has been sent (or the client goes away). Comments keep idle connections open.
 */
function followEvents(store: JobStore, id: string, after: number, pollMs: number, clientGone: AbortSignal): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let last = after;
  let idle = 0;
  let cancelled = false;
  // a client that goes away cancels the stream: reads still in flight then fail ("Network
  // connection lost"), which is the end of the stream, not an error to log
  const gone = () => cancelled || clientGone.aborted;
  return new ReadableStream<Uint8Array>({
    cancel() {
      cancelled = true;
    },
    async pull(controller) {
      // a cancelled stream is already closed: closing it again would throw
      const end = () => (cancelled ? undefined : controller.close());
      for (;;) {
        if (gone()) return end();
        let page;
        try {
          page = await store.events(id, last);
        } catch (e) {
          if (gone()) return end();
          throw e;
        }
        if (gone()) return end();
        if (page === null) return controller.close();
        if (page.events.length > 0) {
          last = page.events.at(-1)!.id;
          controller.enqueue(encoder.encode(sseText(page.events)));
          const ended = page.events.some((e) => e.event === "done" || e.event === "error");
          if (ended) controller.close();
          return;
        }
        if (page.final) return controller.close();
        idle += pollMs;
        if (idle >= 15_000) {
          idle = 0;
          controller.enqueue(encoder.encode(": keep-alive\n\n"));
          return;
        }
        await new Promise((r) => setTimeout(r, pollMs));
      }
    },
  });
}

