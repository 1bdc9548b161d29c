/**
 * POST /v1/fine-tunes/{id}/explain (issue 18, docs/explain.md): explanations of a stored job
 * that succeeded, from its stored run input (model and data, jobs/run-input.ts) and its final
 * weights. It runs in the Worker when the explanation's estimated CPU time fits the in-Worker
 * budget (api/budget.ts); a larger one is a 422 `over_budget` that says to give `explain` in the
 * fine-tune request instead (which runs where the job runs, a GPU node included).
 */
import { createRoute } from "@hono/zod-openapi";
import { EdgetuneError, RequestValidationError, UnprocessableError } from "../errors.js";
import { acquireKernels, releaseKernels } from "../engine/kernels.js";
import { checkExplain, compileForExplanation, explainFlops, explainRun, explainRows } from "../engine/explain/index.js";
import type { NamedTensor } from "../engine/backend.js";
import { parseSafetensors, readTensorF32 } from "../formats/safetensors.js";
import { decodeRunInput } from "../jobs/run-input.js";
import { storedBytes } from "../jobs/store.js";
import { ExplainSpec } from "../schema/explain.js";
import { zodIssues } from "../schema/issues.js";
import { readJsonBody } from "./body.js";
import { BEARER, IdParams, jsonResponse, newRoutes, openapiReadingBody, problemResponses, Schemas, TAGS } from "./openapi.js";

const JOB_ID = /^ft_[0-9a-f]{32}$/;

/**
 * The explain route, mounted next to the fine-tunes resource.
 *
 * @example
 * ```ts
 * app.route("/v1/fine-tunes", explainRoutes);
 * ```
 */
export const explainRoutes = newRoutes();

const explainRoute = createRoute({
  method: "post",
  path: "/{id}/explain",
  tags: [TAGS.fineTunes],
  security: BEARER,
  operationId: "explainFineTune",
  summary: "Explain a fine-tune's predictions",
  description:
    "Integrated gradients or KernelSHAP attributions of a stored fine-tune that succeeded, on its final weights (docs/explain.md). " +
    "Runs in the Worker when it fits the in-Worker budget; a larger one is a 422 `over_budget` (give `explain` in the create request instead).",
  request: { params: IdParams, body: { required: true, content: { "application/json": { schema: Schemas.ExplainSpec } } } },
  responses: {
    200: jsonResponse("The explanations", Schemas.Explanations),
    ...problemResponses(400, 401, 404, 409, 413, 415, 422, 429),
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
  const parsed = ExplainSpec.safeParse(await readJsonBody(c.req.raw, deps.maxBodyBytes));
  if (!parsed.success) throw new RequestValidationError(zodIssues(parsed.error));
  const spec = parsed.data;

  const input = await deps.store.getInput(id);
  const weights = await deps.store.getWeights(id);
  if (!input || !weights) {
    throw new EdgetuneError(409, "explain_unavailable", `Fine-tune ${id} has no stored ${input ? "weights" : "model and data"} to explain (jobs created before explanations existed keep none).`);
  }
  const prepared = decodeRunInput(await storedBytes(input));
  checkExplain(spec, prepared.model, prepared.output, prepared.train, "");
  // the explanation's cost against the in-Worker budget, before any of it runs
  const compiled = compileForExplanation(prepared);
  const rows = explainRows(spec, prepared.validation ?? prepared.train).count;
  const flops = explainFlops(spec, compiled, rows, prepared.train.rows);
  const cpuMs = flops / deps.budget.flopsPerMs;
  // the run's planned memory bounds the explanation's (the same model, without gradients and optimizer state)
  if (prepared.plan.memory_bytes > deps.budget.maxMemoryBytes) {
    throw new UnprocessableError("over_budget", [
      {
        path: "id",
        message:
          `fine-tune ${id}'s model needs about ${(prepared.plan.memory_bytes / 2 ** 20).toFixed(1)} MiB, more than the in-Worker budget of ` +
          `${(deps.budget.maxMemoryBytes / 2 ** 20).toFixed(1)} MiB: give \`explain\` in the fine-tune request, where it runs with the job (on a GPU node)`,
      },
    ]);
  }
  if (cpuMs > deps.budget.maxCpuMs) {
    throw new UnprocessableError("over_budget", [
      {
        path: spec.method === "integrated_gradients" ? "steps" : "samples",
        message:
          `this explanation needs about ${(cpuMs / 1000).toFixed(1)} s of CPU (${flops.toExponential(2)} FLOPs for ${rows} rows); the in-Worker budget is ` +
          `${(deps.budget.maxCpuMs / 1000).toFixed(1)} s. Explain fewer rows, with fewer ${spec.method === "integrated_gradients" ? "steps" : "samples or background rows"}, ` +
          "or give `explain` in the fine-tune request, where it runs with the job (on a GPU node for a large one)",
      },
    ]);
  }
  const instance = await acquireKernels(deps.runtime.module);
  try {
    return c.json(await explainRun(instance, prepared, readParameters(await storedBytes(weights)), spec));
  } finally {
    releaseKernels(deps.runtime.module, instance);
  }
});

/** The stored weights file's tensors as float32 (any output dtype; an adapter run's file holds its full state). */
function readParameters(bytes: Uint8Array): NamedTensor[] {
  const file = parseSafetensors(bytes, { field: "weights" });
  return [...file.tensors].map(([name, info]) => ({ name, shape: [...info.shape], data: readTensorF32(file, name, "weights", { integers: info.dtype === "I64" }) }));
}
