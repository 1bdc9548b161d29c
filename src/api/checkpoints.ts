/**
 * Checkpoints, pause and resume (SPEC section 8; docs/api.md "Checkpoints, pause and resume"):
 *
 *   GET  /v1/fine-tunes/{id}/checkpoints                  the job's stored checkpoints
 *   GET  /v1/fine-tunes/{id}/checkpoints/{epoch}/weights  one checkpoint's weights (safetensors)
 *   POST /v1/fine-tunes/{id}/pause                        checkpoint at the epoch's end and stop
 *   POST /v1/fine-tunes/{id}/resume                       continue a paused job
 *
 * and what a create with `from_checkpoint` needs (resolveFromCheckpoint). The files are
 * engine/checkpoint.ts's; jobs store them under `checkpoints/{id}/{epoch}.safetensors`.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { EdgetuneError, UnprocessableError } from "../errors.js";
import { checkpointWeights, modelFingerprint, readTrainingCheckpoint } from "../engine/checkpoint.js";
import type { PreparedRun } from "../engine/prepare.js";
import { optimizerStatePerParam } from "../engine/optimizers.js";
import { isFinal } from "../jobs/job.js";
import { DEFAULT_QUOTAS, storedBytes, type JobStore } from "../jobs/store.js";
import type { CheckpointList } from "../schema/checkpoint.js";
import type { AppEnv } from "./deps.js";
import { ownJob, quotaProblem } from "./fine-tunes.js";
import { BEARER, BINARY, IdParams, jsonResponse, newRoutes, problemResponses, Schemas, TAGS } from "./openapi.js";
import { problem, problemResponse } from "./problem.js";

/**
 * The checkpoint, pause and resume routes, mounted next to the fine-tunes resource.
 *
 * @example
 * ```ts
 * app.route("/v1/fine-tunes", checkpointRoutes);
 * ```
 */
export const checkpointRoutes = newRoutes();

const EpochParams = IdParams.extend({
  epoch: z.string().openapi({ param: { name: "epoch", in: "path" }, description: "The checkpoint's epoch", example: "4" }),
});

const listRoute = createRoute({
  method: "get",
  path: "/{id}/checkpoints",
  tags: [TAGS.fineTunes],
  security: BEARER,
  operationId: "listFineTuneCheckpoints",
  summary: "The job's stored checkpoints, oldest first",
  description: "Checkpoints are saved every `training.checkpoints.every` epochs (and when a job is paused); the newest `keep` are kept.",
  request: { params: IdParams },
  responses: { 200: jsonResponse("The checkpoints", Schemas.CheckpointList), ...problemResponses(401, 404, 429) },
});

const weightsRoute = createRoute({
  method: "get",
  path: "/{id}/checkpoints/{epoch}/weights",
  tags: [TAGS.fineTunes],
  security: BEARER,
  operationId: "getFineTuneCheckpointWeights",
  summary: "One checkpoint's weights (safetensors, the model's state_dict names, float32)",
  request: { params: EpochParams },
  responses: { 200: { description: "The weights after that epoch", content: BINARY }, ...problemResponses(401, 404, 429) },
});

const pauseRoute = createRoute({
  method: "post",
  path: "/{id}/pause",
  tags: [TAGS.fineTunes],
  security: BEARER,
  operationId: "pauseFineTune",
  summary: "Pause an async fine-tune: it checkpoints at the end of its epoch and stops",
  description: "A queued job is paused at once; a running one when its current epoch ends (status stays running until then). POST .../resume continues it from that checkpoint. A paused job does not count toward MAX_ACTIVE_JOBS_PER_KEY, and is deleted JOB_TTL_DAYS after it was paused unless resumed or cancelled.",
  request: { params: IdParams },
  responses: { 200: jsonResponse("The job", Schemas.Job), ...problemResponses(401, 404, 409, 429) },
});

const resumeRoute = createRoute({
  method: "post",
  path: "/{id}/resume",
  tags: [TAGS.fineTunes],
  security: BEARER,
  operationId: "resumeFineTune",
  summary: "Resume a paused fine-tune from its last checkpoint",
  description: "A paused job does not count toward MAX_ACTIVE_JOBS_PER_KEY; resuming it does again: 429 too_many_active_jobs (with Retry-After) when the key has no active slot left.",
  request: { params: IdParams },
  responses: { 200: jsonResponse("The job, queued again", Schemas.Job), ...problemResponses(401, 404, 409, 429) },
});

checkpointRoutes
  /** GET /v1/fine-tunes/{id}/checkpoints */
  .openapi(listRoute, async (c) => {
    const { job } = await ownJob(c, c.req.valid("param").id);
    const body: CheckpointList = { object: "list", data: await c.var.deps.store.listCheckpoints(job.id) };
    return c.json(body, 200);
  })

  /** GET /v1/fine-tunes/{id}/checkpoints/{epoch}/weights */
  .openapi(weightsRoute, async (c) => {
    const { id, epoch } = c.req.valid("param");
    const { job } = await ownJob(c, id);
    const stored = /^[1-9]\d{0,8}$/.test(epoch) ? await c.var.deps.store.getCheckpoint(job.id, Number(epoch)) : null;
    if (!stored) {
      throw new EdgetuneError(404, "not_found", `Fine-tune ${job.id} has no checkpoint of epoch ${epoch}.`, [{ path: "epoch", message: "no such checkpoint" }]);
    }
    return new Response(checkpointWeights(await storedBytes(stored)) as BodyInit, {
      headers: { "content-type": "application/octet-stream", "content-disposition": `attachment; filename="${job.id}-epoch-${epoch}.safetensors"` },
    });
  })

  /** POST /v1/fine-tunes/{id}/pause */
  .openapi(pauseRoute, async (c) => {
    const { job } = await ownJob(c, c.req.valid("param").id);
    if (job.status === "paused") return c.json(job, 200); // a retried pause
    if (job.mode !== "async" || (job.status !== "queued" && job.status !== "running")) {
      return problemResponse(problem(409, "not_pausable", `Fine-tune ${job.id} is ${job.mode === "async" ? "an async" : "a sync"} job that is ${job.status}; only queued or running async jobs can be paused.`));
    }
    if (job.search) {
      // a search trains nothing itself: its trials are jobs of their own, each pausable
      return problemResponse(problem(409, "not_pausable", `Fine-tune ${job.id} is a search; pause its trials (GET /v1/fine-tunes/${job.id} lists them) or cancel it.`));
    }
    return c.json((await c.var.deps.store.pause(job.id)) ?? job, 200);
  })

  /** POST /v1/fine-tunes/{id}/resume */
  .openapi(resumeRoute, async (c) => {
    const { job } = await ownJob(c, c.req.valid("param").id);
    if (job.status !== "paused") {
      const why = isFinal(job.status) ? "has ended" : "is not paused";
      return problemResponse(problem(409, "not_paused", `Fine-tune ${job.id} ${why} (${job.status}); only a paused job can be resumed.`));
    }
    // a paused job does not count toward MAX_ACTIVE_JOBS_PER_KEY; resumed, it does again (a
    // search's trial runs in one of its search's slots)
    if (job.parent === undefined) {
      const limits = c.var.deps.quotas ?? DEFAULT_QUOTAS;
      const admission = await c.var.deps.store.reactivate(c.var.owner, job.id, limits);
      if (!admission.ok) return quotaProblem(admission, limits);
    }
    return c.json((await c.var.deps.store.resume(job.id)) ?? job, 200);
  });

/**
 * The checkpoint a create's `from_checkpoint: {job, epoch}` names: the caller's own job (404
 * otherwise, as for any job of another key), a stored epoch (422 naming from_checkpoint.epoch),
 * and the same model as the new request (422 naming from_checkpoint).
 *
 * @example
 * ```ts
 * const bytes = await resolveFromCheckpoint(c.var, prepared); // null without from_checkpoint
 * ```
 */
export async function resolveFromCheckpoint(vars: AppEnv["Variables"], prepared: PreparedRun): Promise<Uint8Array | null> {
  const from = prepared.request.from_checkpoint;
  if (!from) return null;
  const { job } = await ownJob({ var: vars }, from.job).catch(() => {
    throw new EdgetuneError(404, "not_found", `No fine-tune with id ${from.job}.`, [{ path: "from_checkpoint.job", message: "not found" }]);
  });
  const stored = await vars.deps.store.getCheckpoint(job.id, from.epoch);
  if (!stored) {
    const kept = (await vars.deps.store.listCheckpoints(job.id)).map((k) => k.epoch);
    throw new UnprocessableError("checkpoint_not_found", [
      { path: "from_checkpoint.epoch", message: `fine-tune ${job.id} has no checkpoint of epoch ${from.epoch} (it keeps ${kept.length > 0 ? `epochs ${kept.join(", ")}` : "none"})` },
    ]);
  }
  const bytes = await storedBytes(stored);
  const saved = readTrainingCheckpoint(bytes, "from_checkpoint").state;
  if (saved.model !== modelFingerprint(prepared.model.state)) {
    throw new UnprocessableError("checkpoint_mismatch", [{ path: "from_checkpoint", message: `fine-tune ${job.id}'s checkpoint is of another model than this request's` }]);
  }
  return bytes;
}

/**
 * Stores what a run hands out (TrainOptions.onCheckpoint) as the job's checkpoint.
 *
 * @example
 * ```ts
 * await runPreparedRaw(runtime, prepared, { onCheckpoint: storeCheckpoints(store, id, prepared) });
 * ```
 */
export function storeCheckpoints(store: JobStore, id: string, prepared: PreparedRun) {
  const keep = prepared.request.training.checkpoints?.keep ?? 1;
  return async ({ bytes }: { bytes: Uint8Array }) => {
    await store.putCheckpoint(id, bytes, keep);
  };
}

/**
 * The bytes a job's checkpoints are charged against MAX_STORED_BYTES_PER_KEY: `keep` files of
 * float32 weights (4 bytes a parameter), the optimizer's state (per trainable parameter) and, with
 * early stopping, the best weights; a from_checkpoint job keeps at least the one it starts from.
 *
 * @example
 * ```ts
 * const bytes = chargedBytes(input.byteLength, plan.params) + checkpointBytes(prepared);
 * ```
 */
export function checkpointBytes(prepared: PreparedRun): number {
  const t = prepared.request.training;
  const files = t.checkpoints?.keep ?? (prepared.request.from_checkpoint ? 1 : 0);
  const { params, trainable_params: trainable } = prepared.plan;
  return files * 4 * (params + optimizerStatePerParam(t.optimizer) * trainable + (t.early_stopping ? params : 0));
}
