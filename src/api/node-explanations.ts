/**
 * POST /v1/nodes/jobs/{id}/explanation: a GPU node's result for an explanation task
 * (jobs/explain-task.ts) whose lease it holds. The edge checks it against the task before it
 * takes it: the method and target asked, one attribution row per explained row with one value
 * per feature, finite numbers throughout (422 `invalid_explanation` naming the field); then the
 * task ends `succeeded` with the explanations, as a run's completion would (jobs/state.ts).
 * A failure is reported as for any job: POST .../complete with `{failure}`.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { UnprocessableError } from "../errors.js";
import { decodeExplanationTask, explanationIssues, explanationTaskOf } from "../jobs/explain-task.js";
import { NODE_JSON_BODY_MAX_BYTES } from "../schema/node.js";
import { jsonResponse, newRoutes, NODE_TOKEN, openapiReadingBody, problemResponses, readJsonBody, Schemas, TAGS } from "./openapi.js";
import { problem, problemResponse } from "./problem.js";

const explanationUploadRoute = createRoute({
  tags: [TAGS.nodes],
  security: NODE_TOKEN,
  method: "post",
  path: "/jobs/{id}/explanation",
  operationId: "uploadExplanation",
  summary: "Finish an explanation task with its explanations (checked against the task: rows x features, finite values)",
  request: {
    params: z.object({ id: z.string().openapi({ param: { name: "id", in: "path" }, description: "The task's job id: {fine-tune id}:{explanation id}" }) }),
    body: { required: true, content: { "application/json": { schema: Schemas.ExplanationUpload } } },
  },
  responses: { 200: jsonResponse("Whether it was applied", z.object({ accepted: z.boolean() })), ...problemResponses(400, 401, 409, 413, 422) },
});

/**
 * The node routes of explanation tasks, mounted at /v1/nodes behind node-token auth.
 *
 * @example
 * ```ts
 * app.route("/v1/nodes", nodeExplanations);
 * ```
 */
export const nodeExplanations = newRoutes();

openapiReadingBody(nodeExplanations, explanationUploadRoute, async (c) => {
  const id = c.req.param("id")!;
  const { lease_id, explanations, engine, duration_ms } = await readJsonBody(c, explanationUploadRoute, { maxBytes: NODE_JSON_BODY_MAX_BYTES });
  if (!explanationTaskOf(id)) throw new UnprocessableError("not_an_explanation", [{ path: "id", message: `${id} is not an explanation task` }]);
  const { store } = c.var.deps;
  const input = await store.channel.readInput(id, lease_id);
  if (input === null) return problemResponse(problem(409, "lease_lost", `This node no longer holds the lease of ${id}; abandon the attempt.`));
  const issues = explanationIssues(decodeExplanationTask(input).header, explanations);
  if (issues.length > 0) throw new UnprocessableError("invalid_explanation", issues);
  const record = await store.get(id);
  const metrics = { history: [], best_epoch: null, steps: 0, samples_per_second: 0, duration_ms };
  const { accepted } = await store.channel.complete(id, lease_id, { status: "succeeded", metrics, plan: record!.job.plan, engine, explanations }, null);
  return c.json({ accepted });
});
