/**
 * /v1/nodes: the pull protocol of GPU nodes (docs/gpu-node.md). A node claims a job (a lease),
 * reads its input, reports each epoch (renewing the lease and learning of cancellation),
 * uploads the weights under its lease and completes. Every call after a lost lease is refused
 * with 409, so a node that was presumed dead cannot overwrite the work of its successor.
 */
import { createRoute, z } from "@hono/zod-openapi";
import type { RouteConfig } from "@hono/zod-openapi";
import type { Context } from "hono";
import { RequestValidationError, UnprocessableError } from "../errors.js";
import { checkWeights, expectedWeights } from "../jobs/output-check.js";
import { decodeRunInput } from "../jobs/run-input.js";
import { weightsKeyOf } from "../jobs/store.js";
import { modelFingerprint, readTrainingCheckpoint } from "../engine/checkpoint.js";
import { NODE_JSON_BODY_MAX_BYTES, type ClaimResponse } from "../schema/node.js";
import { limitedBytes } from "./body.js";
import { BINARY, jsonResponse, newRoutes, NODE_TOKEN, openapiReadingBody, problemResponses, readJsonBody as readAnyJsonBody, Schemas, TAGS } from "./openapi.js";
import { problem, problemResponse } from "./problem.js";

const leaseLost = (id: string) =>
  problemResponse(problem(409, "lease_lost", `This node no longer holds the lease of ${id}; abandon the attempt.`));

// One definition per route (see openapi.ts). The JSON bodies are read by the handlers
// (readJsonBody, with the route's schema): a node's body is JSON whatever its Content-Type.
// Every body is bounded (413 past the limit, counted as it arrives): a node is trusted with its
// token, not with the edge's memory (docs/security.md, "GPU nodes").

/** A node's JSON body, validated with its route's schema; 413 past NODE_JSON_BODY_MAX_BYTES. */
const readJsonBody = <R extends RouteConfig>(c: Context, route: R) => readAnyJsonBody(c, route, { maxBytes: NODE_JSON_BODY_MAX_BYTES });

const JobParams = z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, description: "The job's id" }) });
// a missing or stale lease is a 409 lease_lost, like any lease the node no longer holds
const LeaseQuery = z.object({ lease_id: z.string().optional().openapi({ description: "The lease_id of the claim" }) });
const common = { tags: [TAGS.nodes], security: NODE_TOKEN };

const claimRoute = createRoute({
  ...common,
  method: "post",
  path: "/claim",
  operationId: "claimJob",
  summary: "Claim the next offloaded job (long poll with wait_ms)",
  request: { body: { required: true, content: { "application/json": { schema: Schemas.ClaimRequest } } } },
  responses: { 200: jsonResponse("A job and its lease", Schemas.ClaimResponse), 204: { description: "No job is waiting" }, ...problemResponses(400, 401) },
});

const inputRoute = createRoute({
  ...common,
  method: "get",
  path: "/jobs/{id}/input",
  operationId: "readJobInput",
  summary: "The run input (safetensors with the request, initial weights and data)",
  request: { params: JobParams, query: LeaseQuery },
  responses: { 200: { description: "bytes", content: BINARY }, ...problemResponses(401, 409) },
});

const progressRoute = createRoute({
  ...common,
  method: "post",
  path: "/jobs/{id}/progress",
  operationId: "reportProgress",
  summary: "Finished epochs, in sequence; renews the lease; says whether to stop",
  request: { params: JobParams, body: { required: true, content: { "application/json": { schema: Schemas.ProgressRequest } } } },
  responses: { 200: jsonResponse("Lease status", Schemas.LeaseStatus), ...problemResponses(400, 401, 409, 413, 422) },
});

const heartbeatRoute = createRoute({
  ...common,
  method: "post",
  path: "/jobs/{id}/heartbeat",
  operationId: "heartbeat",
  summary: "Renew the lease",
  request: { params: JobParams, body: { required: true, content: { "application/json": { schema: Schemas.HeartbeatRequest } } } },
  responses: { 200: jsonResponse("Lease status", Schemas.LeaseStatus), ...problemResponses(400, 401, 409) },
});

const weightsRoute = createRoute({
  ...common,
  method: "put",
  path: "/jobs/{id}/weights",
  operationId: "uploadWeights",
  summary: "Upload the fine-tuned safetensors under the lease",
  request: { params: JobParams, query: LeaseQuery, body: { required: true, content: BINARY } },
  responses: { 200: jsonResponse("Stored", z.object({ weights_key: z.string() })), ...problemResponses(401, 409, 413, 422) },
});

const KeepQuery = LeaseQuery.extend({ keep: z.coerce.number().int().min(1).max(100).default(3).openapi({ description: "training.checkpoints.keep: the newest checkpoints kept" }) });

const saveCheckpointRoute = createRoute({
  ...common,
  method: "put",
  path: "/jobs/{id}/checkpoint",
  operationId: "uploadCheckpoint",
  summary: "Upload a checkpoint (engine/checkpoint.ts) under the lease; the job keeps the newest `keep`",
  request: { params: JobParams, query: KeepQuery, body: { required: true, content: BINARY } },
  responses: { 200: jsonResponse("Stored", z.object({ epoch: z.number().int() })), ...problemResponses(401, 409, 413, 422) },
});

const resumeCheckpointRoute = createRoute({
  ...common,
  method: "get",
  path: "/jobs/{id}/checkpoint",
  operationId: "readResumeCheckpoint",
  summary: "The job's newest checkpoint to continue from (its history becomes the attempt's first epochs); 204 when it has none",
  request: { params: JobParams, query: LeaseQuery },
  responses: { 200: { description: "bytes", content: BINARY }, 204: { description: "No checkpoint: start from epoch 1" }, ...problemResponses(401, 409) },
});

const stopRoute = createRoute({
  ...common,
  method: "post",
  path: "/stop",
  operationId: "stopNode",
  summary: "The node is shutting down: claim nothing more for it (its long poll in flight included)",
  request: { body: { required: true, content: { "application/json": { schema: Schemas.StopRequest } } } },
  responses: { 200: jsonResponse("Stopped", z.object({ stopped: z.literal(true) })), ...problemResponses(400, 401) },
});

const releaseRoute = createRoute({
  ...common,
  method: "post",
  path: "/jobs/{id}/release",
  operationId: "releaseJob",
  summary: "Hand a claimed job back untrained (a node that is stopping); the attempt is not counted",
  request: { params: JobParams, body: { required: true, content: { "application/json": { schema: Schemas.HeartbeatRequest } } } },
  responses: { 200: jsonResponse("Whether it was applied", z.object({ accepted: z.boolean() })), ...problemResponses(400, 401) },
});

const completeRoute = createRoute({
  ...common,
  method: "post",
  path: "/jobs/{id}/complete",
  operationId: "completeJob",
  summary: "Finish the job (idempotent: a repeat or a stale lease is not applied)",
  request: { params: JobParams, body: { required: true, content: { "application/json": { schema: Schemas.CompleteRequest } } } },
  responses: { 200: jsonResponse("Whether it was applied", z.object({ accepted: z.boolean() })), ...problemResponses(400, 401, 413, 422) },
});

/**
 * The GPU-node resource, mounted at /v1/nodes behind node-token auth.
 *
 * @example
 * ```ts
 * app.use("/v1/nodes/*", nodeTokenAuth((c) => c.var.deps.nodeTokens)).route("/v1/nodes", nodes);
 * ```
 */
export const nodes = newRoutes();

/** POST /v1/nodes/claim: the next job waiting for a GPU node, with a lease; 204 when none. */
openapiReadingBody(nodes, claimRoute, async (c) => {
  const { node, wait_ms } = await readJsonBody(c, claimRoute);
  const deadline = Date.now() + wait_ms;
  let claim = await c.var.deps.store.claimNext(node);
  while (!claim && Date.now() < deadline && !c.req.raw.signal.aborted) {
    await new Promise((r) => setTimeout(r, Math.min(250, c.var.deps.pollMs)));
    claim = await c.var.deps.store.claimNext(node);
  }
  if (!claim) return c.body(null, 204);
  if (c.req.raw.signal.aborted) {
    // the node went away (told to stop) while this claim was made: hand the job back at once
    // rather than leave it to its lease (needs the enable_request_signal compatibility flag)
    await c.var.deps.store.channel.release(claim.job.id, claim.leaseId);
    return c.body(null, 204);
  }
  const response: ClaimResponse = { job: claim.job, lease_id: claim.leaseId, lease_ms: claim.leaseMs, attempt: claim.attempt };
  return c.json(response);
});

/** POST /v1/nodes/stop: the node is shutting down; nothing more is claimed for it (its long poll in flight included). */
openapiReadingBody(nodes, stopRoute, async (c) => {
  const { node } = await readJsonBody(c, stopRoute);
  await c.var.deps.store.stopClaims(node);
  return c.json({ stopped: true });
});

/** GET /v1/nodes/jobs/{id}/input?lease_id=...: the run input (safetensors). */
nodes.openapi(inputRoute, async (c) => {
  const { id } = c.req.valid("param");
  const bytes = await c.var.deps.store.channel.readInput(id, c.req.valid("query").lease_id ?? "");
  if (bytes === null) return leaseLost(id);
  return new Response(bytes as BodyInit, { headers: { "content-type": "application/octet-stream" } });
});

/** POST /v1/nodes/jobs/{id}/progress: finished epochs; renews the lease; says whether to stop. */
openapiReadingBody(nodes, progressRoute, async (c) => {
  const id = c.req.param("id")!;
  const { lease_id, epochs, engine } = await readJsonBody(c, progressRoute);
  const status = await c.var.deps.store.channel.progress(id, lease_id, epochs, engine);
  if (!status.ok) return leaseLost(id);
  if (status.invalid) throw new UnprocessableError("invalid_progress", [status.invalid]);
  return c.json({ ok: status.ok, cancel: status.cancel, ...(status.pause ? { pause: true } : {}) });
});

/** POST /v1/nodes/jobs/{id}/heartbeat: renews the lease; says whether to stop. */
openapiReadingBody(nodes, heartbeatRoute, async (c) => {
  const id = c.req.param("id")!;
  const { lease_id } = await readJsonBody(c, heartbeatRoute);
  const status = await c.var.deps.store.channel.heartbeat(id, lease_id);
  return status.ok ? c.json({ ok: status.ok, cancel: status.cancel, ...(status.pause ? { pause: true } : {}) }) : leaseLost(id);
});

/**
 * PUT /v1/nodes/jobs/{id}/weights?lease_id=...: the fine-tuned safetensors, stored under the
 * lease once checked against the file the job's run writes (names, shapes, dtype, finite values:
 * jobs/output-check.ts), so that a node cannot have the owner download anything else.
 */
nodes.openapi(weightsRoute, async (c) => {
  const { id } = c.req.valid("param");
  const leaseId = c.req.valid("query").lease_id ?? "";
  const bytes = await limitedBytes(c.req.raw, c.var.deps.maxUploadBytes ?? c.var.deps.maxBodyBytes);
  const input = await c.var.deps.store.channel.readInput(id, leaseId);
  if (input === null) return leaseLost(id);
  checkWeights(bytes, expectedWeights(decodeRunInput(input)), "(body)");
  const key = await c.var.deps.store.channel.saveWeights(id, leaseId, bytes);
  return key === null ? leaseLost(id) : c.json({ weights_key: key }, 200);
});

/** POST /v1/nodes/jobs/{id}/release: hands a claimed job back untrained (a node that is stopping). */
openapiReadingBody(nodes, releaseRoute, async (c) => {
  const id = c.req.param("id")!;
  const { lease_id } = await readJsonBody(c, releaseRoute);
  return c.json(await c.var.deps.store.channel.release(id, lease_id));
});

/** POST /v1/nodes/jobs/{id}/complete: the final result; a repeat or a stale lease is answered, not applied. */
openapiReadingBody(nodes, completeRoute, async (c) => {
  const id = c.req.param("id")!;
  const { lease_id, outcome, weights_key } = await readJsonBody(c, completeRoute);
  // the weights must be this lease's own upload, never another job's file
  if (weights_key !== null && weights_key !== weightsKeyOf(id, lease_id)) {
    throw new RequestValidationError([{ path: "weights_key", message: "is not the key returned by this lease's weights upload" }]);
  }
  const { accepted, invalid } = await c.var.deps.store.channel.complete(id, lease_id, outcome, weights_key);
  if (invalid) throw new UnprocessableError("invalid_outcome", [invalid]);
  return c.json({ accepted });
});

/**
 * PUT /v1/nodes/jobs/{id}/checkpoint?lease_id=...&keep=...: a checkpoint, stored under the lease
 * once it reads as a checkpoint of the job's model (a node cannot store anything else there).
 */
nodes.openapi(saveCheckpointRoute, async (c) => {
  const { id } = c.req.valid("param");
  const { lease_id: leaseId = "", keep } = c.req.valid("query");
  const bytes = await limitedBytes(c.req.raw, c.var.deps.maxUploadBytes ?? c.var.deps.maxBodyBytes);
  const input = await c.var.deps.store.channel.readInput(id, leaseId);
  if (input === null) return leaseLost(id);
  const checkpoint = readTrainingCheckpoint(bytes, "(body)");
  if (checkpoint.state.model !== modelFingerprint(decodeRunInput(input).model.state)) {
    throw new UnprocessableError("checkpoint_mismatch", [{ path: "(body)", message: "is a checkpoint of another model than this job's" }]);
  }
  return (await c.var.deps.store.channel.saveCheckpoint(id, leaseId, bytes, keep)) ? c.json({ epoch: checkpoint.state.epoch }, 200) : leaseLost(id);
});

/** GET /v1/nodes/jobs/{id}/checkpoint?lease_id=...: the newest checkpoint to continue from; 204 when none. */
nodes.openapi(resumeCheckpointRoute, async (c) => {
  const { id } = c.req.valid("param");
  const leaseId = c.req.valid("query").lease_id ?? "";
  const bytes = await c.var.deps.store.channel.resumeFrom(id, leaseId);
  if (bytes !== null) return new Response(bytes as BodyInit, { headers: { "content-type": "application/octet-stream" } });
  return (await c.var.deps.store.channel.heartbeat(id, leaseId)).ok ? c.body(null, 204) : leaseLost(id);
});
