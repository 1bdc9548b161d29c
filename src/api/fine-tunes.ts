/**
 * /v1/fine-tunes: create (sync runs in the Worker), retrieve, list, weights, events, cancel.
 */
import { Hono } from "hono";
import { z } from "zod";
import { EdgetuneError, RequestValidationError } from "../errors.js";
import { encodeBase64 } from "../formats/base64.js";
import { newId, prepareRun, runPreparedRaw } from "../engine/train.js";
import { eventsOfFinishedJob, isFinal, jobFromResult } from "../jobs/job.js";
import type { JobRecord } from "../jobs/store.js";
import type { JobList } from "../schema/job.js";
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
    const { request, tables } = await readCreateBody(c.req.raw, deps.maxBodyBytes);
    const prepared = prepareRun(request, tables);
    const decision = decide(prepared.request, prepared.plan, deps.budget);
    if (decision.run === "async") {
      return problemResponse(
        problem(
          501,
          "offload_unavailable",
          `This job would run asynchronously on ${decision.placement === "gpu-node" ? "a GPU node" : "the edge"}, ` +
            `but this deployment has no job queue yet. Send a job that fits the in-Worker budget with mode "sync".`,
          [{ path: "mode", message: "async jobs are not available in this deployment" }],
        ),
      );
    }
    const id = newId();
    const startedAt = new Date().toISOString();
    const { result, weights } = await runPreparedRaw(deps.runtime, prepared, { id, placement: "edge" });
    const job = jobFromResult(result, { mode: "sync", createdAt, startedAt, finishedAt: new Date().toISOString() });
    await deps.store.putWeights(id, weights);
    await deps.store.put({ job, owner: c.var.owner });
    c.header("Location", `/v1/fine-tunes/${id}`);
    return c.json({ ...result, weights: encodeBase64(weights) }, 200);
  })

  /** GET /v1/fine-tunes: the caller's jobs, newest first. */
  .get("/", async (c) => {
    const parsed = ListQuery.safeParse(c.req.query());
    if (!parsed.success) throw new RequestValidationError(zodIssues(parsed.error));
    const { limit, cursor } = parsed.data;
    const page = await c.var.deps.store.list(c.var.owner, { limit, cursor: cursor === undefined ? undefined : cursorIn(cursor) });
    const body: JobList = {
      object: "list",
      data: page.records.map((r) => r.job),
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
    const weights = await c.var.deps.store.getWeights(job.id);
    if (!weights) return problemResponse(problem(404, "not_found", `Fine-tune ${job.id} has no stored weights.`));
    return new Response(weights as BodyInit, {
      headers: {
        "content-type": "application/octet-stream",
        "content-disposition": `attachment; filename="${job.id}.safetensors"`,
      },
    });
  })

  /** GET /v1/fine-tunes/{id}/events: Server-Sent Events, replayed from the start or after Last-Event-ID. */
  .get("/:id/events", async (c) => {
    const { job } = await ownJob(c, c.req.param("id"));
    const after = resumeAfter(c.req.header("last-event-id"), c.req.query("last_event_id"));
    const events = eventsOfFinishedJob(job).filter((e) => e.id > after);
    return new Response(sseText(events), { headers: SSE_HEADERS });
  })

  /** POST /v1/fine-tunes/{id}/cancel: cancel a queued or running job. */
  .post("/:id/cancel", async (c) => {
    const { job } = await ownJob(c, c.req.param("id"));
    if (isFinal(job.status)) {
      return problemResponse(problem(409, "already_finished", `Fine-tune ${job.id} has already ended (${job.status}).`));
    }
    return c.json(job);
  });

