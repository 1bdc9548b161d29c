/**
 * POST /v1/fine-tunes/{id}/explain (issue 18, docs/explain.md): explanations of a stored job
 * that succeeded, from its stored run input (model and data, jobs/run-input.ts) and its final
 * weights. It runs where its plan says: in the Worker (200) when the explanation's estimated CPU
 * time and the model's memory fit the in-Worker budget (api/budget.ts), else on a GPU node
 * (202): an explanation task of the job machinery (jobs/explain-task.ts) that a node claims,
 * computes and uploads (api/node-explanations.ts). GET /v1/fine-tunes/{id}/explanations/{eid}
 * polls it, .../events streams its status and .../cancel stops it.
 *
 * A queued explanation is a job of its key: it counts against MAX_ACTIVE_JOBS_PER_KEY while it
 * is queued or running, and its stored task (model, data and weights) against
 * MAX_STORED_BYTES_PER_KEY until it expires. An Idempotency-Key makes a retried POST answer the
 * first one's explanation instead of queueing a second; an explanation computed in the Worker
 * (200) is not recorded under the key (a retry computes the same numbers again).
 */
import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { EdgetuneError, RequestValidationError, UnprocessableError } from "../errors.js";
import { acquireKernels, releaseKernels } from "../engine/kernels.js";
import { checkExplain, compileForExplanation, explainFlops, explainRun, explainRows, featureNames } from "../engine/explain/index.js";
import { decodeRunInput } from "../jobs/run-input.js";
import { DEFAULT_QUOTAS, EVENTS_PAGE, storedBytes, type JobStore } from "../jobs/store.js";
import { isFinal, type JobEvent } from "../jobs/job.js";

import {
  encodeExplanationTask,
  EXPLANATION_ID,
  explanationResource,
  explanationTaskId,
  newExplanationId,
  newExplanationTask,
  readStoredParameters,
} from "../jobs/explain-task.js";
import { ExplainRequest } from "../schema/explain.js";
import type { Job } from "../schema/job.js";
import { zodIssues } from "../schema/issues.js";
import { readJsonBody } from "./body.js";
import { requestBudgetMs } from "./budget.js";
import { idempotencyKeyOf, idempotencyKeyReused, idempotentRequestInProgress, quotaProblem, sha256Hex } from "./fine-tunes.js";
import { problem, problemResponse } from "./problem.js";
import type { AppEnv } from "./deps.js";
import { BEARER, IdParams, jsonResponse, newRoutes, openapiReadingBody, problemResponses, Schemas, TAGS } from "./openapi.js";
import { resumeAfter, sseText, SSE_HEADERS } from "./sse.js";

const JOB_ID = /^ft_[0-9a-f]{32}$/;

/**
 * The explain routes, mounted next to the fine-tunes resource.
 *
 * @example
 * ```ts
 * app.route("/v1/fine-tunes", explainRoutes);
 * ```
 */
export const explainRoutes = newRoutes();

const EXPLANATION_LOCATION = { Location: { description: "The explanation: /v1/fine-tunes/{id}/explanations/{eid}", schema: { type: "string" as const } } };

const explainRoute = createRoute({
  method: "post",
  path: "/{id}/explain",
  tags: [TAGS.fineTunes],
  security: BEARER,
  operationId: "explainFineTune",
  summary: "Explain a fine-tune's predictions",
  description:
    "Integrated gradients or KernelSHAP attributions of a stored fine-tune that succeeded, on its final weights (docs/explain.md). " +
    "Runs in the Worker (200) when it fits the in-Worker budget, else on a GPU node (202 with the explanation to poll at Location). " +
    "`placement` \"edge\" refuses to leave the Worker (422 `over_budget`); \"gpu-node\" always goes to a node.",
  request: {
    params: IdParams,
    headers: z.object({
      "idempotency-key": z
        .string()
        .optional()
        .openapi({ description: "Makes a retried POST that queues an explanation (202) answer the first one's explanation instead of queueing another; 1-255 visible ASCII characters" }),
    }),
    body: { required: true, content: { "application/json": { schema: Schemas.ExplainRequest } } },
  },
  responses: {
    200: jsonResponse("The explanations, computed in the Worker", Schemas.Explanations),
    202: jsonResponse("Queued for a GPU node: poll it at Location (or stream its events) until it has ended", Schemas.Explanation, EXPLANATION_LOCATION),
    ...problemResponses(400, 401, 404, 409, 413, 415, 422, 429),
  },
});

const ExplanationParams = IdParams.extend({
  eid: z.string().openapi({ param: { name: "eid", in: "path" }, description: "The explanation's id: ex_ and 32 hex digits", pattern: "^ex_[0-9a-f]{32}$" }),
});

const explanationRoute = createRoute({
  method: "get",
  path: "/{id}/explanations/{eid}",
  tags: [TAGS.fineTunes],
  security: BEARER,
  operationId: "retrieveExplanation",
  summary: "An explanation running on a GPU node: its status, and its result once succeeded",
  request: { params: ExplanationParams },
  responses: { 200: jsonResponse("The explanation", Schemas.Explanation), ...problemResponses(401, 404, 429) },
});

const cancelExplanationRoute = createRoute({
  method: "post",
  path: "/{id}/explanations/{eid}/cancel",
  tags: [TAGS.fineTunes],
  security: BEARER,
  operationId: "cancelExplanation",
  summary: "Cancel an explanation that is queued or running on a GPU node",
  request: { params: ExplanationParams },
  responses: { 200: jsonResponse("The explanation, cancelled", Schemas.Explanation), ...problemResponses(401, 404, 409, 429) },
});

const explanationEventsRoute = createRoute({
  method: "get",
  path: "/{id}/explanations/{eid}/events",
  tags: [TAGS.fineTunes],
  security: BEARER,
  operationId: "streamExplanationEvents",
  summary: "Server-Sent Events of an explanation on a GPU node: `status`, then `done` (or `error`) with the explanation",
  request: { params: ExplanationParams },
  responses: {
    200: { description: "text/event-stream", content: { "text/event-stream": { schema: z.string() } } },
    ...problemResponses(400, 401, 404, 429),
  },
});

openapiReadingBody(explainRoutes, explainRoute, async (c) => {
  const { deps } = c.var;
  const id = c.req.param("id") ?? "";
  const record = JOB_ID.test(id) ? await deps.store.get(id) : null;
  if (!record || record.owner !== c.var.owner) {
    throw new EdgetuneError(404, "not_found", `No fine-tune with id ${id}.`, [{ path: "id", message: "not found" }]);
  }
  const { job } = record;
  if (job.status !== "succeeded") {
    throw new UnprocessableError("job_not_succeeded", [
      { path: "id", message: `fine-tune ${id} is ${job.status}; explanations are made of the weights of a fine-tune that succeeded` },
    ]);
  }
  const parsed = ExplainRequest.safeParse(await readJsonBody(c.req.raw, deps.maxBodyBytes));
  if (!parsed.success) throw new RequestValidationError(zodIssues(parsed.error));
  const { placement, ...spec } = parsed.data;
  const idempotencyKey = idempotencyKeyOf(c.req.header("idempotency-key"));

  const input = await deps.store.getInput(id);
  const weights = await deps.store.getWeights(id);
  if (!input || !weights) {
    throw new EdgetuneError(409, "explain_unavailable", `Fine-tune ${id} has no stored ${input ? "weights" : "model and data"} to explain (jobs created before explanations existed keep none).`);
  }
  const inputBytes = await storedBytes(input);
  const weightsBytes = await storedBytes(weights);
  const prepared = decodeRunInput(inputBytes);
  checkExplain(spec, prepared.model, prepared.output, prepared.train, "");
  // the explanation's cost against the in-Worker budget, before any of it runs
  const compiled = compileForExplanation(prepared);
  const rows = explainRows(spec, prepared.validation ?? prepared.train).count;
  const flops = explainFlops(spec, compiled, rows, prepared.train.rows);
  const cpuMs = flops / deps.budget.flopsPerMs;
  // the run's planned memory bounds the explanation's (the same model, without gradients and optimizer state)
  const overMemory = prepared.plan.memory_bytes > deps.budget.maxMemoryBytes;
  const overCpu = cpuMs > deps.budget.maxCpuMs;
  if (placement === "gpu-node" || (placement === "auto" && (overMemory || overCpu))) {
    const explanationId = newExplanationId();
    const { state } = newExplanationTask({ fineTune: job, owner: record.owner, explanationId, createdAt: new Date().toISOString(), now: Date.now(), policy: deps.lease });
    const header = { fine_tune: id, spec, expected: { rows, feature_names: featureNames(prepared.train, prepared.train.features) } };
    const task = encodeExplanationTask(header, inputBytes, weightsBytes);
    if (idempotencyKey) {
      // the same fine-tune and the same explain object (as parsed, defaults filled) is the same request
      const fingerprint = await sha256Hex(JSON.stringify({ explain: id, placement, spec }));
      const first = await deps.store.reserveIdempotencyKey(c.var.owner, idempotencyKey, state.job.id, fingerprint, requestBudgetMs(deps.budget));
      if (first) return replayExplanation(c, id, first.id, first.fingerprint === fingerprint);
    }
    const limits = deps.quotas ?? DEFAULT_QUOTAS;
    const admission = await deps.store.admit(c.var.owner, state.job.id, { active: true, bytes: task.byteLength }, limits);
    if (!admission.ok) {
      if (idempotencyKey) await deps.store.releaseIdempotencyKey(c.var.owner, idempotencyKey, state.job.id);
      return quotaProblem(admission, limits);
    }
    try {
      await deps.store.submit(state, task, { listed: false });
    } catch (e) {
      await deps.store.cancelAdmission(c.var.owner, state.job.id);
      throw e;
    }
    const location = `/v1/fine-tunes/${id}/explanations/${explanationId}`;
    return c.json(explanationResource(state.job), 202, { Location: location });
  }
  if (overMemory) {
    throw new UnprocessableError("over_budget", [
      {
        path: "placement",
        message:
          `fine-tune ${id}'s model needs about ${(prepared.plan.memory_bytes / 2 ** 20).toFixed(1)} MiB, more than the in-Worker budget of ` +
          `${(deps.budget.maxMemoryBytes / 2 ** 20).toFixed(1)} MiB: leave \`placement\` "auto" (or ask for "gpu-node") to explain it on a GPU node`,
      },
    ]);
  }
  if (overCpu) {
    throw new UnprocessableError("over_budget", [
      {
        path: spec.method === "integrated_gradients" ? "steps" : "samples",
        message:
          `this explanation needs about ${(cpuMs / 1000).toFixed(1)} s of CPU (${flops.toExponential(2)} FLOPs for ${rows} rows); the in-Worker budget is ` +
          `${(deps.budget.maxCpuMs / 1000).toFixed(1)} s. Explain fewer rows, with fewer ${spec.method === "integrated_gradients" ? "steps" : "samples or background rows"}, ` +
          'or leave `placement` "auto" (or ask for "gpu-node") to explain it on a GPU node',
      },
    ]);
  }
  const instance = await acquireKernels(deps.runtime.module);
  try {
    return c.json(await explainRun(instance, prepared, readStoredParameters(weightsBytes), spec));
  } finally {
    releaseKernels(deps.runtime.module, instance);
  }
});

/** The answer of the explain POST that first used an Idempotency-Key: its queued explanation, as it stands now. */
async function replayExplanation(c: Context<AppEnv>, fineTuneId: string, taskId: string, sameRequest: boolean): Promise<Response> {
  if (!sameRequest) return idempotencyKeyReused();
  const record = await c.var.deps.store.get(taskId);
  if (!record) return idempotentRequestInProgress();
  const resource = explanationResource(record.job);
  return c.json(resource, 202, { Location: `/v1/fine-tunes/${fineTuneId}/explanations/${resource.id}`, "Idempotent-Replayed": "true" });
}

/** The caller's explanation task of fine-tune `id`, or a 404 (also once the fine-tune is deleted: the task's input went with it). */
async function ownTask(c: Context<AppEnv>, id: string, eid: string): Promise<Job> {
  const { store } = c.var.deps;
  const valid = JOB_ID.test(id) && EXPLANATION_ID.test(eid);
  const [fineTune, record] = valid ? await Promise.all([store.get(id), store.get(explanationTaskId(id, eid))]) : [null, null];
  if (!fineTune || !record || record.owner !== c.var.owner) {
    throw new EdgetuneError(404, "not_found", `No explanation ${eid} of fine-tune ${id}.`, [{ path: "eid", message: "not found" }]);
  }
  return record.job;
}

/** GET /v1/fine-tunes/{id}/explanations/{eid}: the task's status, with its result once it has succeeded. */
explainRoutes.openapi(explanationRoute, async (c) => {
  const { id, eid } = c.req.valid("param");
  return c.json(explanationResource(await ownTask(c, id, eid)), 200);
});

/** POST /v1/fine-tunes/{id}/explanations/{eid}/cancel: a queued task ends at once; a running one is flagged and ends `cancelled` whatever its node reports. */
explainRoutes.openapi(cancelExplanationRoute, async (c) => {
  const { id, eid } = c.req.valid("param");
  const job = await ownTask(c, id, eid);
  if (job.status === "cancelled") return c.json(explanationResource(job), 200); // a retried cancel
  if (isFinal(job.status)) {
    return problemResponse(problem(409, "already_finished", `Explanation ${eid} has already ended (${job.status}).`)) as never;
  }
  return c.json(explanationResource((await c.var.deps.store.cancel(job.id)) ?? job), 200);
});

/** GET /v1/fine-tunes/{id}/explanations/{eid}/events: `status` events, then `done` or `error` carrying the explanation. */
explainRoutes.openapi(explanationEventsRoute, async (c) => {
  const { id, eid } = c.req.valid("param");
  const job = await ownTask(c, id, eid);
  const after = resumeAfter(c.req.header("last-event-id"), c.req.query("last_event_id"));
  return new Response(followTask(c.var.deps.store, job.id, after, c.var.deps.pollMs, c.req.raw.signal), { headers: SSE_HEADERS }) as never;
});

/**
 * The task's events after `after`, followed until its final event: the job's `status` events
 * as they are, its `done` / `error` with the explanation resource in place of the task's job.
 * Each read waits up to `pollMs` for the task's next write.
 */
function followTask(store: JobStore, taskId: string, after: number, pollMs: number, clientGone: AbortSignal): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let last = after;
  let idle = 0;
  let cancelled = false;
  const gone = () => cancelled || clientGone.aborted;
  const asResource = (e: JobEvent): JobEvent => (e.event === "done" || e.event === "error" ? { ...e, data: explanationResource(e.data as Job) } : e);
  return new ReadableStream<Uint8Array>({
    cancel() {
      cancelled = true;
    },
    async pull(controller) {
      for (;;) {
        if (gone()) return cancelled ? undefined : controller.close();
        let page;
        try {
          page = await store.events(taskId, last, EVENTS_PAGE, pollMs);
        } catch (e) {
          if (gone()) return cancelled ? undefined : controller.close();
          throw e;
        }
        if (page === null) return controller.close();
        if (page.events.length > 0) {
          last = page.events.at(-1)!.id;
          controller.enqueue(encoder.encode(sseText(page.events.map(asResource))));
          if (page.events.some((e) => e.event === "done" || e.event === "error")) controller.close();
          return;
        }
        if (page.final) return controller.close();
        idle += pollMs;
        if (idle >= 15_000) {
          idle = 0;
          controller.enqueue(encoder.encode(": keep-alive\n\n"));
          return;
        }
      }
    },
  });
}
