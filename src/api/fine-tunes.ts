/**
 * /v1/fine-tunes: create (sync runs in the Worker), retrieve, list, weights, events, cancel.
 */
import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { EdgetuneError, RequestValidationError } from "../errors.js";
import { convertWeights } from "../engine/adapters/output.js";
import { encodeBase64 } from "../formats/base64.js";
import { newId, prepareRun, runPreparedRaw } from "../engine/train.js";
import { eventsOfFinishedJob, isFinal, jobFromResult, queuedJob, reportedPlan, type JobEvent } from "../jobs/job.js";
import { chargedBytes, DEFAULT_QUOTAS, EVENTS_PAGE, inputKeyOf, storedBytes, type Admission, type JobRecord, type JobStore } from "../jobs/store.js";
import { createQueued } from "../jobs/state.js";
import { encodeRunInput } from "../jobs/run-input.js";
import { webhookUrlProblem } from "../jobs/webhook.js";
import type { RunPlan } from "../engine/plan.js";
import { jobSummary, type Job, type JobList, type MetricsPage } from "../schema/job.js";
import { FineTuneStatus, type FineTuneResult, type Plan } from "../schema/result.js";
import { readCreateBody } from "./body.js";
import { acquireKernels, type KernelInstance } from "../engine/kernels.js";
import { stageInKernelMemory, stagedBeyondPlan } from "../engine/staging.js";
import { createSearchJob, searchOf } from "./search.js";
import { decide, DIRECT_START_WORKER, jobCpuMs, parsedRequestBytes, requestBudgetMs, syncStepBudget } from "./budget.js";
import { syncYield } from "./sync-yield.js";
import type { AppEnv } from "./deps.js";
import { BEARER, BINARY, IdParams, jsonResponse, newRoutes, openapiReadingBody, problemResponses, Schemas, TAGS } from "./openapi.js";
import { problem, problemResponse, type ProblemResponse } from "./problem.js";
import { resumeAfter, sseText, SSE_HEADERS, streamSlot } from "./sse.js";
import { checkpointBytes, resolveFromCheckpoint, storeCheckpoints } from "./checkpoints.js";
import { DEFAULT_STREAM_LIMITS } from "../jobs/streams.js";

const JOB_ID = /^ft_[0-9a-f]{32}$/;

const STATUSES = FineTuneStatus.options;

const ListQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(200).optional().openapi({ description: "next_cursor of the previous page" }),
  status: z
    .string()
    .max(200)
    .optional()
    .openapi({
      description: `Only jobs in these states, comma-separated (${STATUSES.join(", ")}), e.g. queued,running. A filtered page may hold fewer than limit jobs while next_cursor is not null.`,
      example: "queued,running",
    }),
});

/** The list's `status` filter: comma-separated states, each one of FineTuneStatus. */
function statusFilterOf(value: string | undefined): FineTuneStatus[] | undefined {
  if (value === undefined) return undefined;
  const states = value.split(",").map((s) => s.trim());
  const unknown = states.filter((s) => !(STATUSES as readonly string[]).includes(s));
  if (unknown.length > 0 || states.length === 0) {
    throw new RequestValidationError([{ path: "status", message: `must be comma-separated states among ${STATUSES.join(", ")}; got ${JSON.stringify(unknown[0] ?? value)}` }]);
  }
  return [...new Set(states)] as FineTuneStatus[];
}

/** Seconds a client refused for too many active jobs waits before trying again. */
export const ACTIVE_JOBS_RETRY_AFTER_S = 30;

/** The 429 of a create that a quota refuses. */
export function quotaProblem(refusal: Exclude<Admission, { ok: true }>, limits: typeof DEFAULT_QUOTAS) {
  if (refusal.code === "too_many_active_jobs") {
    return problemResponse(
      problem(
        429,
        "too_many_active_jobs",
        `This key has ${refusal.activeJobs} queued or running jobs, the most it may have (MAX_ACTIVE_JOBS_PER_KEY=${limits.maxActiveJobs}). Retry when one has ended, or cancel one.`,
      ),
      { "Retry-After": String(ACTIVE_JOBS_RETRY_AFTER_S) },
    );
  }
  return problemResponse(
    problem(
      429,
      "storage_quota_exceeded",
      `This key stores ${refusal.storedBytes} bytes of inputs and weights; this job would pass its limit (MAX_STORED_BYTES_PER_KEY=${limits.maxStoredBytes}). Delete ended jobs (DELETE /v1/fine-tunes/{id}) or wait for them to expire.`,
    ),
  );
}

/**
 * The caller's job, or a 404 (also for another key's job: its existence is not revealed).
 *
 * @example
 * ```ts
 * const { job } = await ownJob(c, c.req.valid("param").id);
 * ```
 */
export async function ownJob(c: { var: AppEnv["Variables"] }, id: string): Promise<JobRecord> {
  const record = JOB_ID.test(id) ? await c.var.deps.store.get(id) : null;
  if (!record || record.owner !== c.var.owner) {
    throw new EdgetuneError(404, "not_found", `No fine-tune with id ${id}.`, [{ path: "id", message: "not found" }]);
  }
  return record;
}

const MetricsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(100).openapi({ description: "Epochs per page, 1 to 1000" }),
  cursor: z.string().max(20).optional().openapi({ description: "next_cursor of the previous page" }),
});

/** A metrics cursor is the offset of the next entry; opaque to clients. */
const historyOffsetIn = (cursor: string) => {
  if (!/^\d{1,15}$/.test(cursor)) throw new RequestValidationError([{ path: "cursor", message: "is not a cursor returned by this API" }]);
  return Number(cursor);
};

const cursorOut = (key: string) => encodeBase64(new TextEncoder().encode(key)).replace(/=+$/, "").replaceAll("+", "-").replaceAll("/", "_");
const cursorIn = (cursor: string) => {
  try {
    return atob(cursor.replaceAll("-", "+").replaceAll("_", "/"));
  } catch {
    throw new RequestValidationError([{ path: "cursor", message: "is not a cursor returned by this API" }]);
  }
};

// One definition per route: method, path, parameters, body and responses. The handlers below
// take them; the document (/openapi.json) is generated from them. See openapi.ts for the pattern.

const LOCATION = { Location: { description: "The job: /v1/fine-tunes/{id}", schema: { type: "string" as const } } };

const createRouteDef = createRoute({
  method: "post",
  path: "/",
  tags: [TAGS.fineTunes],
  security: BEARER,
  operationId: "createFineTune",
  summary: "Create a fine-tune",
  description:
    'mode "sync" trains now and answers 200 with the result; "async" answers 202 with the queued job (it runs in the Worker\'s queue consumer, or on a GPU node with placement "gpu-node"); "auto" (default) runs sync when the plan fits the in-Worker budget and offloads to a GPU node otherwise.',
  request: {
    headers: z.object({
      "idempotency-key": z.string().optional().openapi({ description: "1 to 255 visible ASCII characters: a retried create with the same key and body answers the first one's result." }),
    }),
    body: {
      required: true,
      content: {
        "application/json": { schema: Schemas.FineTuneRequest },
        "multipart/form-data": {
          schema: {
            type: "object",
            required: ["request"],
            properties: {
              request: { type: "string", description: "The request JSON, without weights and without data.train / data.validation when those are parts." },
              weights: { type: "string", format: "binary", description: "safetensors with state_dict names (a Hub model.safetensors as it is, for model.huggingface)" },
              adapter_weights: { type: "string", format: "binary", description: "an adapter_model.safetensors (PEFT's names) to continue a LoRA adapter" },
              config: { type: "string", format: "binary", description: "A Hugging Face config.json: becomes model.huggingface.config" },
              tokenizer: { type: "string", format: "binary", description: "a Hugging Face tokenizer.json, for text rows (text, text_pair)" },
              train: {
                type: "string",
                format: "binary",
                description: 'CSV (header row; target column data.target, default y) or JSONL ({"x":[...],"y":...} per line); text rows: a text column (and text_pair), or {"text": ...} lines; or a safetensors dataset (a *.safetensors name or application/octet-stream): tensors x (F32 [N, ...]) or input_ids (I64/I32 [N, T]) with optional attention_mask and token_type_ids, and y (F32/I64/I32, [N] or [N, K])',
              },
              validation: { type: "string", format: "binary", description: "as train" },
            },
          },
        },
      },
    },
  },
  responses: {
    200: jsonResponse("The finished run (sync). Location points at the stored job.", Schemas.FineTuneResult, LOCATION),
    202: jsonResponse("Accepted (async): the queued job; follow it at Location, its events, or poll it.", Schemas.Job, LOCATION),
    ...problemResponses(400, 401, 413, 415, 422, 429, 503),
  },
});

const listRoute = createRoute({
  method: "get",
  path: "/",
  tags: [TAGS.fineTunes],
  security: BEARER,
  operationId: "listFineTunes",
  summary: "List your fine-tunes, newest first",
  description: "`status` filters by state (comma-separated). Jobs are deleted JOB_TTL_DAYS (default 30) after they end.",
  request: { query: ListQuery },
  responses: { 200: jsonResponse("A page of jobs", Schemas.JobList), ...problemResponses(400, 401, 429) },
});

const retrieveRoute = createRoute({
  method: "get",
  path: "/{id}",
  tags: [TAGS.fineTunes],
  security: BEARER,
  operationId: "retrieveFineTune",
  summary: "Retrieve a fine-tune",
  request: { params: IdParams },
  responses: { 200: jsonResponse("The job", Schemas.Job), ...problemResponses(401, 404, 429) },
});

const weightsRoute = createRoute({
  method: "get",
  path: "/{id}/weights",
  tags: [TAGS.fineTunes],
  security: BEARER,
  operationId: "downloadFineTuneWeights",
  summary: "Download the fine-tuned weights (safetensors)",
  request: {
    params: IdParams,
    query: z.object({
      // refused by the conversion (422 naming `format`), so documented here rather than validated
      format: z
        .string()
        .optional()
        .openapi({ enum: ["full", "peft", "merged"], description: "Adapter runs: full, peft (adapter_model.safetensors) or merged; default: the request's output.format" }),
    }),
  },
  responses: { 200: { description: "safetensors bytes", content: BINARY }, ...problemResponses(401, 404, 409, 422, 429) },
});

const adapterConfigRoute = createRoute({
  method: "get",
  path: "/{id}/adapter_config.json",
  tags: [TAGS.fineTunes],
  security: BEARER,
  operationId: "downloadAdapterConfig",
  summary: "An adapter run's adapter_config.json, as PEFT writes it",
  request: { params: IdParams },
  responses: { 200: jsonResponse("adapter_config.json", z.record(z.string(), z.unknown())), ...problemResponses(401, 404, 409, 429) },
});

const eventsRoute = createRoute({
  method: "get",
  path: "/{id}/events",
  tags: [TAGS.fineTunes],
  security: BEARER,
  operationId: "streamFineTuneEvents",
  summary: "Server-Sent Events: status, epoch, then done or error",
  description: "A new connection replays the job's events from the start, or after Last-Event-ID (header) / last_event_id (query), then follows live events.",
  request: {
    params: IdParams,
    // checked by resumeAfter (400 naming the field), so documented here rather than validated
    headers: z.object({ "last-event-id": z.string().optional().openapi({ description: "Resume after this event id" }) }),
    query: z.object({ last_event_id: z.string().optional().openapi({ description: "As Last-Event-ID, for clients that cannot set headers" }) }),
  },
  responses: { 200: { description: "An event stream", content: { "text/event-stream": { schema: z.string() } } }, ...problemResponses(400, 401, 404, 429) },
});

const metricsRoute = createRoute({
  method: "get",
  path: "/{id}/metrics",
  tags: [TAGS.fineTunes],
  security: BEARER,
  operationId: "listFineTuneMetrics",
  summary: "The per-epoch history, a page at a time, oldest first",
  description: "A job keeps its last 100 epochs in metrics.history; this pages through all of them (docs/api.md, Long runs).",
  request: { params: IdParams, query: MetricsQuery },
  responses: { 200: jsonResponse("A page of epoch metrics", Schemas.MetricsPage), ...problemResponses(400, 401, 404, 429) },
});

const deleteRoute = createRoute({
  method: "delete",
  path: "/{id}",
  tags: [TAGS.fineTunes],
  security: BEARER,
  operationId: "deleteFineTune",
  summary: "Delete an ended fine-tune now",
  description: "Deletes the job, its events and history, its input, weights and checkpoints, as its expiry (JOB_TTL_DAYS after it ended) would; its bytes stop counting against MAX_STORED_BYTES_PER_KEY. A queued or running job is refused: cancel it first.",
  request: { params: IdParams },
  responses: { 204: { description: "Deleted" }, ...problemResponses(401, 404, 409, 429) },
});

const cancelRoute = createRoute({
  method: "post",
  path: "/{id}/cancel",
  tags: [TAGS.fineTunes],
  security: BEARER,
  operationId: "cancelFineTune",
  summary: "Cancel a queued or running fine-tune",
  request: { params: IdParams },
  responses: { 200: jsonResponse("The job", Schemas.Job), ...problemResponses(401, 404, 409, 429) },
});

/**
 * The fine-tunes resource, mounted at /v1/fine-tunes.
 *
 * @example
 * ```ts
 * app.route("/v1/fine-tunes", fineTunes);
 * ```
 */
export const fineTunes = newRoutes();

/** POST /v1/fine-tunes: validate, plan, run in the Worker when it fits (sync), store, answer the result. */
openapiReadingBody(fineTunes, createRouteDef, async (c) => {
  const { deps } = c.var;
  const createdAt = new Date().toISOString();
  const idempotencyKey = idempotencyKeyOf(c.req.header("idempotency-key"));
  // a weights file part goes straight into a kernel instance's memory, which the run then uses
  // (engine/staging.ts): the isolate never holds the checkpoint in its JavaScript heap
  let staged: KernelInstance | undefined;
  const { request, tables, bodyBytes, stagedBytes, kind } = await readCreateBody(c.req.raw, deps.maxBodyBytes, undefined, {
    weightsBuffer: async (bytes, dataStart) => stageInKernelMemory((staged ??= await acquireKernels(deps.runtime.module)), bytes, dataStart),
  });
  // the parsed body shares the isolate with the run's memory (issue 21, memory-aware admission)
  // (a staged weights part is not in the heap: it becomes the run's state block, which the plan counts)
  const requestBytes = parsedRequestBytes(bodyBytes - stagedBytes, kind);
  // "batch_size": "auto" fits the in-Worker memory budget unless the job asks for a GPU node
  const memoryBudgetBytes = isGpuNodeRequest(request) ? undefined : Math.max(0, deps.budget.maxMemoryBytes - requestBytes);
  const prepared = prepareRun(request, tables, { memoryBudgetBytes });
  const webhook = prepared.request.webhook ?? null;
  if (webhook) {
    if (!deps.webhooks) {
      return problemResponse(
        problem(503, "webhooks_not_configured", "This deployment sends no webhooks: set the secret EDGETUNE_WEBHOOK_SECRET (whsec_ and at least 24 base64 bytes; `wrangler secret put EDGETUNE_WEBHOOK_SECRET`)."),
      );
    }
    const why = webhookUrlProblem(webhook.url, { allowLocal: deps.webhooks.allowLocal });
    if (why) throw new RequestValidationError([{ path: "webhook.url", message: why }]);
  }
  const search = searchOf(request);
  if (search) {
    // a retried create answers the first search job (the base request's input covers `search`)
    const fingerprint = idempotencyKey ? await sha256Hex(encodeRunInput(prepared)) : "";
    return createSearchJob(c, { request, tables, bodyBytes, stagedBytes, kind }, search, memoryBudgetBytes, {
      refuse: quotaProblem,
      reserve: async (id) => {
        const first = idempotencyKey ? await deps.store.reserveIdempotencyKey(c.var.owner, idempotencyKey, id, fingerprint, requestBudgetMs(deps.budget)) : null;
        return first ? replay(c, first.id, first.fingerprint === fingerprint) : null;
      },
      release: async (id) => {
        if (idempotencyKey) await deps.store.releaseIdempotencyKey(c.var.owner, idempotencyKey, id);
      },
    });
  }
  const decision = decide(prepared.request, prepared.plan, deps.budget, requestBytes + stagedBeyondPlan(stagedBytes, prepared));
  // from_checkpoint: the caller's own job's checkpoint of the same model (404 / 422 otherwise)
  const fromCheckpoint = await resolveFromCheckpoint(c.var, prepared);
  // the id an earlier answer made, its object already started (warmNextId), when there is one
  const id = takeWarmedId() ?? newId();
  // every job stores its input: async jobs run from it, and explain reads it later (a sync
  // job's without the starting state: explanations read the trained weights, stored apart)
  const input = encodeRunInput(prepared, { state: decision.run === "async" });
  if (idempotencyKey) {
    // a retried create gets the first one's answer instead of a second job (a sync input
    // leaves out the checkpoints: their bytes are hashed where they are)
    const fingerprint = decision.run === "async" ? await sha256Hex(input) : await sha256Hex(input, request.weights, request.adapter_weights);
    // a request that dies (a killed server) frees its key once its budget has run out
    const first = await deps.store.reserveIdempotencyKey(c.var.owner, idempotencyKey, id, fingerprint, requestBudgetMs(deps.budget));
    if (first) return replay(c, first.id, first.fingerprint === fingerprint);
  }
  const limits = deps.quotas ?? DEFAULT_QUOTAS;
  const admission = await deps.store.admit(c.var.owner, id, { active: decision.run === "async", bytes: chargedBytes(input.byteLength, prepared.plan.params) + checkpointBytes(prepared) }, limits);
  if (!admission.ok) {
    if (idempotencyKey) await deps.store.releaseIdempotencyKey(c.var.owner, idempotencyKey, id);
    return quotaProblem(admission, limits);
  }
  try {
    return await createAdmitted(c, { id, createdAt, input, prepared, decision, idempotencyKey, fromCheckpoint, staged });
  } catch (e) {
    await deps.store.cancelAdmission(c.var.owner, id);
    await deps.store.deleteCheckpoints(id).catch(() => undefined); // no checkpoints without a job
    throw e;
  }
});

/** Creates an admitted job: queues it (async), or trains it and stores the result (sync). */
async function createAdmitted(
  c: Context<AppEnv>,
  args: {
    id: string; createdAt: string; input: Uint8Array; prepared: ReturnType<typeof prepareRun>; decision: ReturnType<typeof decide>; idempotencyKey: string | null;
    fromCheckpoint: Uint8Array | null; staged: KernelInstance | undefined;
  },
) {
  const { deps } = c.var;
  const { id, createdAt, input, prepared, decision, idempotencyKey, fromCheckpoint, staged } = args;
  const keepCheckpoints = prepared.request.training.checkpoints?.keep ?? 1;
  if (decision.run === "async") {
    // accepted = stored and dispatched: from here the job reaches a final state whatever happens
    const job = queuedJob(id, createdAt, reportedPlan(prepared.plan, decision.placement), {
      ...(prepared.huggingface ? { huggingface: prepared.huggingface } : {}),
      ...(prepared.request.webhook ? { webhook: { url: prepared.request.webhook.url } } : {}),
    });
    const queued = createQueued(job, c.var.owner, decision.placement, inputKeyOf(id), Date.now(), deps.lease, prepared.request.training.epochs).state;
    // from_checkpoint: the job starts with that checkpoint as its own, which every run of it
    // continues from; without one its first run has no checkpoint to look for
    const state = fromCheckpoint ? queued : { ...queued, startsFresh: true };
    if (fromCheckpoint) await deps.store.putCheckpoint(id, fromCheckpoint, keepCheckpoints);
    // a short edge job is claimed as it is stored and dispatched, and starts here rather than
    // after the Queue's delivery
    const direct = deps.directStart;
    const starts = direct && decision.placement === "edge" && jobCpuMs(prepared.request, prepared.plan, deps.budget) <= direct.maxCpuMs;
    const claim = await deps.store.submit(state, input, starts ? { claimAs: DIRECT_START_WORKER } : {});
    if (direct && claim) direct.start(claim, input);
    // the next create's object starts after this answer, unless this job trains in this isolate
    // now (under wrangler dev the object would start on the thread the training holds)
    else warmNextId(c);
    c.header("Location", `/v1/fine-tunes/${id}`);
    return c.json(state.job, 202);
  }
  const startedAt = new Date().toISOString();
  let run;
  try {
    // it stops itself at the budget (over_budget) rather than overrun it
    run = await runPreparedRaw(deps.runtime, prepared, {
      id,
      placement: "edge",
      budget: syncStepBudget(prepared.request, prepared.plan, deps.budget),
      // the isolate answers other requests while this one trains (issue 20, finding 8)
      yieldEvery: syncYield(prepared.request, prepared.plan, deps.budget),
      onCheckpoint: storeCheckpoints(deps.store, id, prepared),
      ...(fromCheckpoint ? { resumeFrom: fromCheckpoint } : {}),
      // the staged checkpoint's instance; the weights file is written into its memory after training
      ...(staged ? { instance: staged } : {}),
      weightsInKernelMemory: true,
    });
    const finished = jobFromResult(run.result, { mode: "sync", createdAt, startedAt, finishedAt: new Date().toISOString() });
    const job: Job = prepared.request.webhook ? { ...finished, webhook: { url: prepared.request.webhook.url } } : finished;
    // one write before the answer: the record (its last epochs; the whole history apart), the
    // weights and the run input (the model and data, for POST /v1/fine-tunes/{id}/explain later),
    // so that a GET right after the answer finds all of them (docs/api.md, "When a sync job is stored")
    await deps.store.put({ job, owner: c.var.owner }, run.result.metrics.history, { weights: run.weights, input });
  } catch (e) {
    if (idempotencyKey) await deps.store.releaseIdempotencyKey(c.var.owner, idempotencyKey, id);
    throw e;
  }
  const { result, weights } = run;
  warmNextId(c);
  c.header("Location", `/v1/fine-tunes/${id}`);
  return c.json({ ...result, weights: encodeBase64(convertWeights(weights)) }, 200);
}

/**
 * The id the isolate's next create takes, made when the last one answered (a sync answer, or an
 * async one whose job does not train in this isolate), and its Durable Object started meanwhile
 * (JobStore.warm): a new object's start-up is most of the one storage call a sync create makes
 * before it answers, and of an async create's dispatch (BENCHMARKS.md, the edge paragraph). Taken only
 * within WARMED_ID_MS of being made, so that an id's time (ids sort by it) stays that of its job.
 */
let warmed: { id: string; at: number } | null = null;
const WARMED_ID_MS = 5_000;

/** The warmed id, once; null when there is none or it is older than WARMED_ID_MS. */
function takeWarmedId(): string | null {
  const taken = warmed;
  warmed = null;
  return taken && Date.now() - taken.at <= WARMED_ID_MS ? taken.id : null;
}

/** Makes the next id and starts its object after the answer (ctx.waitUntil); nothing where the store or the runtime has no use for it. */
function warmNextId(c: Context<AppEnv>): void {
  const { store } = c.var.deps;
  if (!store.warm) return;
  let ctx: { waitUntil(p: Promise<unknown>): void };
  try {
    ctx = c.executionCtx;
  } catch {
    return; // no execution context (Node): nothing outlives the request
  }
  const id = newId();
  warmed = { id, at: Date.now() };
  // a timer turn first: the answer leaves before the object starts (under wrangler dev it starts in this isolate)
  ctx.waitUntil(new Promise((resolve) => setTimeout(resolve, 1)).then(() => store.warm!(id)).catch(() => undefined));
}

fineTunes
  /** GET /v1/fine-tunes: the caller's jobs, newest first. */
  .openapi(listRoute, async (c) => {
    const { limit, cursor, status } = c.req.valid("query");
    const page = await c.var.deps.store.list(c.var.owner, { limit, cursor: cursor === undefined ? undefined : cursorIn(cursor), status: statusFilterOf(status) });
    const body: JobList = {
      object: "list",
      data: page.records.map((r) => jobSummary(r.job)),
      next_cursor: page.nextCursor === null ? null : cursorOut(page.nextCursor),
    };
    return c.json(body, 200);
  })

  /** GET /v1/fine-tunes/{id}: the job. */
  .openapi(retrieveRoute, async (c) => {
    const { job } = await ownJob(c, c.req.valid("param").id);
    return c.json(job, 200);
  })

  /** GET /v1/fine-tunes/{id}/metrics: the per-epoch history, a page at a time, oldest first. */
  .openapi(metricsRoute, async (c) => {
    const { job } = await ownJob(c, c.req.valid("param").id);
    const { limit, cursor } = c.req.valid("query");
    const offset = cursor === undefined ? 0 : historyOffsetIn(cursor);
    const page = (await c.var.deps.store.history(job.id, offset, limit)) ?? { entries: [], total: 0 };
    const end = offset + page.entries.length;
    const body: MetricsPage = { object: "list", data: page.entries, next_cursor: end < page.total ? String(end) : null };
    return c.json(body, 200);
  })

  /** GET /v1/fine-tunes/{id}/weights: the fine-tuned safetensors file. */
  .openapi(weightsRoute, async (c) => {
    const { job } = await ownJob(c, c.req.valid("param").id);
    if (!isFinal(job.status) || job.status === "failed") {
      return problemResponse(problem(409, "weights_not_ready", `Fine-tune ${job.id} is ${job.status}; weights exist once it has ended with weights.`),
      );
    }
    const stored = await c.var.deps.store.getWeights(job.id);
    if (!stored) return problemResponse(problem(404, "not_found", `Fine-tune ${job.id} has no stored weights.`));
    // an adapter run's file is converted to ?format (default: its request's output.format)
    const format = c.req.query("format");
    const weights = job.adapter_config || format !== undefined ? convertWeights(await storedBytes(stored), format) : stored;
    return new Response(weights as BodyInit, {
      headers: {
        "content-type": "application/octet-stream",
        "content-disposition": `attachment; filename="${job.id}.safetensors"`,
      },
    });
  })

  /** GET /v1/fine-tunes/{id}/adapter_config.json: an adapter run's adapter_config.json (with adapter_model.safetensors, ?format=peft, PEFT's folder). */
  .openapi(adapterConfigRoute, async (c) => {
    const { job } = await ownJob(c, c.req.valid("param").id);
    if (!job.adapter_config) {
      if (!isFinal(job.status)) return problemResponse(problem(409, "weights_not_ready", `Fine-tune ${job.id} is ${job.status}; its adapter_config.json exists once it has ended with weights.`));
      return problemResponse(problem(404, "not_found", `Fine-tune ${job.id} trained no adapter.`));
    }
    return c.json(job.adapter_config as Record<string, unknown>, 200);
  })

  /** GET /v1/fine-tunes/{id}/events: Server-Sent Events, replayed from the start or after Last-Event-ID, then live. */
  .openapi(eventsRoute, async (c) => {
    const { job } = await ownJob(c, c.req.valid("param").id);
    const after = resumeAfter(c.req.header("last-event-id"), c.req.query("last_event_id"));
    const store = c.var.deps.store;
    const opened = await openStreamSlot(c);
    if (!opened.ok) return opened.refusal;
    if (job.mode === "sync") {
      const pages = eventsOfFinishedJob(job, after, async (offset, limit) => (await store.history(job.id, offset, limit))?.entries ?? []);
      return new Response(streamOf(pages, opened.slot), { headers: SSE_HEADERS });
    }
    return new Response(followEvents(store, job.id, after, c.var.deps.pollMs, c.req.raw.signal, opened.slot), { headers: SSE_HEADERS });
  })

  /** DELETE /v1/fine-tunes/{id}: an ended job and everything stored for it. */
  .openapi(deleteRoute, async (c) => {
    const { job } = await ownJob(c, c.req.valid("param").id);
    if (!isFinal(job.status) || !(await c.var.deps.store.delete(job.id))) {
      return problemResponse(problem(409, "job_active", `Fine-tune ${job.id} is ${job.status}; cancel it, then delete it once it has ended.`));
    }
    return c.body(null, 204);
  })

  /** POST /v1/fine-tunes/{id}/cancel: a queued job ends at once; a running one stops within an epoch. */
  .openapi(cancelRoute, async (c) => {
    const { job } = await ownJob(c, c.req.valid("param").id);
    if (job.status === "cancelled") return c.json(job, 200); // a retried cancel
    if (isFinal(job.status)) {
      return problemResponse(problem(409, "already_finished", `Fine-tune ${job.id} has already ended (${job.status}).`));
    }
    return c.json((await c.var.deps.store.cancel(job.id)) ?? job, 200);
  });

/** An Idempotency-Key header, checked: 1-255 visible ASCII characters. */
export function idempotencyKeyOf(header: string | undefined): string | null {
  if (header === undefined) return null;
  if (!/^[\x21-\x7e]{1,255}$/.test(header)) {
    throw new RequestValidationError([{ path: "Idempotency-Key", message: "must be 1 to 255 visible ASCII characters" }]);
  }
  return header;
}

/** SHA-256 of each given value in hex, joined by ":" (a string is hashed as its UTF-8). */
export async function sha256Hex(...values: (Uint8Array | string | null | undefined)[]): Promise<string> {
  const out: string[] = [];
  for (const v of values) {
    const bytes = typeof v === "string" ? new TextEncoder().encode(v) : (v ?? new Uint8Array(0));
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource));
    out.push(Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""));
  }
  return out.join(":");
}

/** The 422 of an Idempotency-Key first used for a different request. */
export function idempotencyKeyReused(): Response {
  return problemResponse(
    problem(422, "idempotency_key_reused", "This Idempotency-Key was used for a different request; use a new key.", [{ path: "Idempotency-Key", message: "already used for a different request" }]),
  );
}

/** The 409 of a retry that arrives while the first request with its Idempotency-Key is still running. */
export function idempotentRequestInProgress(): Response {
  return problemResponse(problem(409, "request_in_progress", "A request with this Idempotency-Key is still running; retry shortly."), { "Retry-After": "1" });
}

/** The answer of the create that first used an Idempotency-Key. */
async function replay(c: Context<AppEnv>, id: string, sameRequest: boolean): Promise<Response> {
  if (!sameRequest) return idempotencyKeyReused();
  const record = await c.var.deps.store.get(id);
  if (!record) return idempotentRequestInProgress();
  const { job } = record;
  c.header("Location", `/v1/fine-tunes/${id}`);
  c.header("Idempotent-Replayed", "true");
  if (job.mode === "async") return c.json(job, 202);
  const weights = await c.var.deps.store.getWeights(id);
  const bytes = weights ? convertWeights(await storedBytes(weights)) : new Uint8Array(0);
  // the first answer had the whole history; the record keeps its last epochs, the store the rest
  const { epochs, history_truncated, ...metrics } = job.metrics!;
  if (history_truncated) metrics.history = (await c.var.deps.store.history(id, 0, epochs))?.entries ?? metrics.history;
  const result: FineTuneResult = {
    id: job.id,
    status: job.status as FineTuneResult["status"],
    metrics,
    plan: job.plan,
    engine: job.engine!,
    weights: encodeBase64(bytes),
    ...(job.huggingface ? { huggingface: job.huggingface } : {}),
    ...(job.adapter_config ? { adapter_config: job.adapter_config } : {}),
    ...(job.warnings ? { warnings: job.warnings } : {}),
    ...(job.explanations ? { explanations: job.explanations } : {}),
    ...(job.error ? { error: job.error } : {}),
  };
  return c.json(result, 200);
}

type StreamSlot = ReturnType<typeof streamSlot>;

/**
 * Takes one of the owner's stream slots (MAX_STREAMS_PER_KEY), or the 429 `too_many_streams`
 * when they are all held (issue 20, finding 6).
 */
async function openStreamSlot(c: Context<AppEnv>): Promise<{ ok: true; slot: StreamSlot } | { ok: false; refusal: ProblemResponse<429> }> {
  const { store, streams = DEFAULT_STREAM_LIMITS } = c.var.deps;
  const streamId = crypto.randomUUID();
  const admission = await store.openStream(c.var.owner, streamId, streams);
  if (!admission.ok) {
    const detail = `This key has ${admission.open} event streams open, the most it may have (MAX_STREAMS_PER_KEY=${streams.maxPerKey}). Close one, or retry later.`;
    return { ok: false, refusal: problemResponse(problem(429, "too_many_streams", detail), { "Retry-After": String(Math.ceil(admission.retryAfterMs / 1000)) }) };
  }
  // the slot's close may run after the response ends: waitUntil keeps the isolate for it where there is one
  let waitUntil: ((p: Promise<unknown>) => void) | undefined;
  try {
    const ctx = c.executionCtx;
    waitUntil = (p) => ctx.waitUntil(p);
  } catch {
    // no execution context (Node): the promise runs on anyway
  }
  return { ok: true, slot: streamSlot(store, c.var.owner, streamId, streams, Date.now(), waitUntil) };
}

/** An SSE body of event batches; its stream slot is given back when it ends. */
function streamOf(batches: AsyncGenerator<JobEvent[]>, slot: StreamSlot): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let next;
      try {
        next = await batches.next();
      } catch (e) {
        slot.close();
        throw e;
      }
      if (next.done) {
        slot.close();
        return controller.close();
      }
      controller.enqueue(encoder.encode(sseText(next.value)));
    },
    async cancel() {
      slot.close();
      await batches.return(undefined);
    },
  });
}

/**
 * An SSE body that replays the job's events after `after` (a page at a time), then follows new
 * ones until the final event has been sent (or the client goes away): each read waits up to
 * `pollMs` for the job's next write, so epochs arrive as they are stored. Comments keep idle
 * connections open.
 */
function followEvents(store: JobStore, id: string, after: number, pollMs: number, clientGone: AbortSignal, slot: StreamSlot): ReadableStream<Uint8Array> {
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
      slot.close();
    },
    async pull(controller) {
      // a cancelled stream is already closed: closing it again would throw
      const end = () => {
        slot.close();
        if (!cancelled) controller.close();
      };
      for (;;) {
        if (gone()) return end();
        let page;
        try {
          await slot.renewIfDue(Date.now());
          // waits up to pollMs for the job's next write: epochs arrive as they are stored
          page = await store.events(id, last, EVENTS_PAGE, pollMs);
        } catch (e) {
          if (gone()) return end();
          slot.close();
          throw e;
        }
        if (gone()) return end();
        if (page === null) return end();
        if (page.events.length > 0) {
          last = page.events.at(-1)!.id;
          controller.enqueue(encoder.encode(sseText(page.events)));
          const ended = page.events.some((e) => e.event === "done" || e.event === "error");
          if (ended) end();
          return;
        }
        if (page.final) return end();
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


/** placement "gpu-node" as the body asks (before validation: it decides the budget prepareRun fits "auto" to). */
function isGpuNodeRequest(request: unknown): boolean {
  return typeof request === "object" && request !== null && (request as { placement?: unknown }).placement === "gpu-node";
}
