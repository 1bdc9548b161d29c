/**
 * The OpenAPI side of the routes. Each route is defined once with `createRoute` (method, path,
 * parameters, body, responses) beside its handler in fine-tunes.ts / nodes.ts; @hono/zod-openapi
 * validates its parameters with the route's zod schemas and generates the document from the same
 * definition (OpenAPI 3.1, whose dialect is JSON Schema draft 2020-12).
 *
 * Adding a route (e.g. `GET /v1/fine-tunes/{id}/metrics` in its own module; docs/api.md has it whole):
 *
 * ```ts
 * const metricsRoute = createRoute({
 *   method: "get", path: "/{id}/metrics", tags: [TAGS.fineTunes], security: BEARER,
 *   operationId: "getFineTuneMetrics", summary: "The metrics of a fine-tune",
 *   request: { params: IdParams },
 *   responses: { 200: jsonResponse("The metrics", Metrics.nullable()), ...problemResponses(401, 404, 429) },
 * });
 * export const metrics = newRoutes().openapi(metricsRoute, async (c) => c.json((await ownJob(c, c.req.valid("param").id)).job.metrics, 200));
 * // app.ts: .route("/v1/fine-tunes", metrics)   (auth, rate limits and CORS come from the prefix)
 * ```
 *
 * A body the handler must read itself (multipart, size limits, JSON whatever its Content-Type)
 * goes through `openapiReadingBody` instead of `.openapi`, and `readJsonBody` validates it
 * with the route's own schema. test/api/openapi.test.ts fails when a route the app answers is
 * missing from the documents, or the documents list one it does not answer.
 */
import { OpenAPIHono, z, type RouteConfig } from "@hono/zod-openapi";
import type { Context, Env, Handler } from "hono";
import { RequestValidationError } from "../errors.js";
import { zodIssues } from "../schema/issues.js";
import { FineTuneRequest } from "../schema/request.js";
import { FineTuneResult } from "../schema/result.js";
import { ExplainRequest, ExplainSpec, Explanations } from "../schema/explain.js";
import { Explanation, ExplanationUpload } from "../schema/explanation.js";
import { Job, JobList, MetricsPage, Problem } from "../schema/job.js";
import { CheckpointList } from "../schema/checkpoint.js";
import { ClaimRequest, ClaimResponse, CompleteRequest, HeartbeatRequest, LeaseStatus, ProgressRequest, StopRequest } from "../schema/node.js";
import { limitedBytes } from "./body.js";
import type { AppEnv } from "./deps.js";

/**
 * The tags of the documents. The public reference (/openapi.json, /docs) has the first two; the
 * GPU-node protocol is internal to a deployment and has its own document, /openapi.nodes.json.
 */
export const TAGS = { fineTunes: "Fine-tunes", service: "Service", nodes: "Node protocol" } as const;

/**
 * The schemas of src/schema (shared with the SDK, which never imports the router) under the
 * names of their components: `.meta({ id })` returns a named copy, so src/schema stays as it is.
 */
export const Schemas = {
  FineTuneRequest: FineTuneRequest.meta({ id: "FineTuneRequest" }),
  FineTuneResult: FineTuneResult.meta({ id: "FineTuneResult" }),
  Job: Job.meta({ id: "Job" }),
  JobList: JobList.meta({ id: "JobList" }),
  Problem: Problem.meta({ id: "Problem" }),
  ClaimRequest: ClaimRequest.meta({ id: "ClaimRequest" }),
  ClaimResponse: ClaimResponse.meta({ id: "ClaimResponse" }),
  ProgressRequest: ProgressRequest.meta({ id: "ProgressRequest" }),
  HeartbeatRequest: HeartbeatRequest.meta({ id: "HeartbeatRequest" }),
  LeaseStatus: LeaseStatus.meta({ id: "LeaseStatus" }),
  CompleteRequest: CompleteRequest.meta({ id: "CompleteRequest" }),
  StopRequest: StopRequest.meta({ id: "StopRequest" }),
  ExplainSpec: ExplainSpec.meta({ id: "ExplainSpec" }),
  Explanations: Explanations.meta({ id: "Explanations" }),
  ExplainRequest: ExplainRequest.meta({ id: "ExplainRequest" }),
  Explanation: Explanation.meta({ id: "Explanation" }),
  ExplanationUpload: ExplanationUpload.meta({ id: "ExplanationUpload" }),
  MetricsPage: MetricsPage.meta({ id: "MetricsPage" }),
  CheckpointList: CheckpointList.meta({ id: "CheckpointList" }),
};

/** Security of the public routes (an API key) and of the node protocol (a node token). */
export const BEARER = [{ bearer: [] }];
export const NODE_TOKEN = [{ nodeToken: [] }];

/**
 * `{id}` of a fine-tune. Documented with its pattern but not refused by it: an id that cannot
 * exist is a 404 like any other unknown id (see ownJob).
 */
export const IdParams = z.object({
  id: z.string().openapi({
    param: { name: "id", in: "path" },
    description: "The fine-tune's id: ft_ and 32 hex digits",
    pattern: "^ft_[0-9a-f]{32}$",
    example: "ft_0123456789abcdef0123456789abcdef",
  }),
});

const PROBLEM_DESCRIPTIONS: Record<number, string> = {
  400: "The request does not match the schema; `errors[].path` names each field.",
  401: "No API key, or an unknown one.",
  404: "No such fine-tune (or not yours).",
  409: "The job is not in a state that allows this.",
  413: "The body is larger than the limit.",
  415: "The body's content type is not JSON or multipart.",
  422: "Well-formed but cannot be trained as asked (shapes, labels, budget).",
  429: "Over the key's rate limit; retry after Retry-After seconds.",
  503: "Not configured: a deployment without EDGETUNE_API_KEYS (api_keys_not_configured) or EDGETUNE_NODE_TOKENS (node_tokens_not_configured).",
};

/**
 * Problem+json responses (RFC 9457) for these statuses, for a route's `responses`.
 *
 * @example
 * ```ts
 * responses: { 200: jsonResponse("The job", Schemas.Job), ...problemResponses(401, 404) }
 * ```
 */
export function problemResponses<const S extends number[]>(...statuses: S) {
  return Object.fromEntries(
    statuses.map((s) => [s, { description: PROBLEM_DESCRIPTIONS[s] ?? "Error", content: { "application/problem+json": { schema: Schemas.Problem } } }]),
  ) as { [K in S[number]]: { description: string; content: { "application/problem+json": { schema: typeof Schemas.Problem } } } };
}

/**
 * A JSON response of a zod schema.
 *
 * @example
 * ```ts
 * responses: { 200: jsonResponse("The job", Schemas.Job) }
 * ```
 */
export function jsonResponse<T extends z.ZodType>(description: string, schema: T, headers?: Record<string, { description: string; schema: { type: "string" } }>) {
  return { description, content: { "application/json": { schema } }, ...(headers ? { headers } : {}) };
}

/** A safetensors (binary) body or response. */
export const BINARY = { "application/octet-stream": { schema: { type: "string" as const, format: "binary" } } };

/**
 * Turns a failed validation of the library into the one problem+json envelope: 400
 * invalid_request, each field named at its path (the same issues as every other validation).
 *
 * @example
 * ```ts
 * new OpenAPIHono<AppEnv>({ defaultHook: problemOnInvalid });
 * ```
 */
export function problemOnInvalid(result: { success: true } | { success: false; error: z.ZodError }): void {
  if (!result.success) throw new RequestValidationError(zodIssues(result.error));
}

/**
 * A router for a group of routes: validation failures become problems.
 *
 * @example
 * ```ts
 * export const metrics = newRoutes().openapi(metricsRoute, handler);
 * ```
 */
export function newRoutes<E extends Env = AppEnv>() {
  return new OpenAPIHono<E>({ defaultHook: problemOnInvalid as never });
}

/**
 * Adds a route whose body the handler reads itself: the document shows the body as declared,
 * while the library (which would refuse a body by its Content-Type and read it whole, without a
 * limit) validates only the parameters.
 *
 * @example
 * ```ts
 * openapiReadingBody(nodes, claimRoute, async (c) => c.json(await claim(await readJsonBody(c, claimRoute))));
 * ```
 */
export function openapiReadingBody<E extends Env, R extends RouteConfig>(app: OpenAPIHono<E>, route: R, handler: Handler<E>): void {
  app.openAPIRegistry.registerPath(route);
  const { body: _documentedOnly, ...parameters } = route.request ?? {};
  app.openapi({ ...route, hide: true, request: parameters } as RouteConfig, handler as never);
}

type JsonBodyOf<R extends RouteConfig> = R extends { request: { body: { content: { "application/json": { schema: infer S extends z.ZodType } } } } } ? z.output<S> : never;

/**
 * The JSON body of a request, validated with the schema its route declares. Read as JSON
 * whatever the Content-Type says; not JSON: 400 at `(body)`; not the schema: 400 naming fields;
 * with `maxBytes`, a body larger than that is a 413 (counted as it arrives).
 *
 * @example
 * ```ts
 * const { node, wait_ms } = await readJsonBody(c, claimRoute);
 * ```
 */
export async function readJsonBody<R extends RouteConfig>(c: Context, route: R, options: { maxBytes?: number } = {}): Promise<JsonBodyOf<R>> {
  const content = route.request?.body?.content as Record<string, { schema?: unknown }> | undefined;
  const schema = (content?.["application/json"]?.schema ?? null) as z.ZodType | null;
  if (schema === null || typeof (schema as { safeParse?: unknown }).safeParse !== "function") {
    throw new Error(`${route.method.toUpperCase()} ${route.path} declares no zod application/json body`);
  }
  const text = options.maxBytes === undefined ? await c.req.raw.text() : new TextDecoder().decode(await limitedBytes(c.req.raw, options.maxBytes));
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new RequestValidationError([{ path: "(body)", message: "is not valid JSON" }]);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new RequestValidationError(zodIssues(parsed.error));
  return parsed.data as JsonBodyOf<R>;
}

type OpenApiDocument = ReturnType<OpenAPIHono["getOpenAPI31Document"]>;
type Operation = { tags?: string[] };

const DESCRIPTION =
  "Serverless edge fine-tuning with PyTorch semantics. POST a model, weights (safetensors) and data; get the fine-tuned weights and metrics. " +
  "Authenticate with `Authorization: Bearer <key>`. Errors are RFC 9457 `application/problem+json`; their `type` links to the problem codes on /docs.";

const fullDocuments = new WeakMap<object, Map<string, OpenApiDocument>>();

/**
 * The document of `app` for a server URL: `"public"` (every route but the node protocol: what
 * /openapi.json serves and /docs shows) or `"nodes"` (the GPU-node protocol alone:
 * /openapi.nodes.json). Components neither references are left out.
 *
 * @example
 * ```ts
 * const doc = openApiDocument(app, "public", "http://localhost:8787", "0.1.0");
 * doc.paths["/v1/fine-tunes"].post.operationId; // "createFineTune"
 * ```
 */
export function openApiDocument(app: OpenAPIHono<any, any, any>, which: "public" | "nodes", serverUrl: string, version: string): OpenApiDocument {
  let byVersion = fullDocuments.get(app);
  if (!byVersion) fullDocuments.set(app, (byVersion = new Map()));
  let full = byVersion.get(version);
  if (!full) {
    // generated once per app (the schemas do not change while it runs)
    full = app.getOpenAPI31Document({
      openapi: "3.1.0",
      info: { title: "edgetune", version, description: DESCRIPTION },
      tags: [
        { name: TAGS.fineTunes, description: "Create, follow, cancel fine-tunes and download their weights." },
        { name: TAGS.service, description: "Liveness and build." },
        { name: TAGS.nodes, description: "The pull protocol of GPU nodes (docs/gpu-node.md): internal to a deployment, with node tokens." },
      ],
    });
    full.components = {
      ...full.components,
      securitySchemes: {
        bearer: { type: "http", scheme: "bearer", description: "A key from EDGETUNE_API_KEYS" },
        nodeToken: { type: "http", scheme: "bearer", description: "A GPU-node token from EDGETUNE_NODE_TOKENS" },
      },
    };
    byVersion.set(version, full);
  }
  const isNodes = (op: Operation) => (op.tags ?? []).includes(TAGS.nodes);
  const paths: Record<string, Record<string, Operation>> = {};
  for (const [path, item] of Object.entries(full.paths ?? {}) as [string, Record<string, Operation>][]) {
    const kept = Object.fromEntries(Object.entries(item).filter(([, op]) => isNodes(op) === (which === "nodes")));
    if (Object.keys(kept).length > 0) paths[path] = kept;
  }
  const schemas = reachableSchemas(paths, (full.components?.schemas ?? {}) as Record<string, unknown>);
  const securitySchemes = Object.fromEntries(
    Object.entries(full.components?.securitySchemes ?? {}).filter(([name]) => name === (which === "nodes" ? "nodeToken" : "bearer")),
  );
  return {
    ...full,
    info: which === "nodes" ? { ...full.info, title: "edgetune GPU-node protocol" } : full.info,
    servers: [{ url: serverUrl }],
    security: which === "nodes" ? NODE_TOKEN : BEARER,
    tags: (full.tags ?? []).filter((t) => (t.name === TAGS.nodes) === (which === "nodes")),
    paths: paths as OpenApiDocument["paths"],
    components: { ...full.components, schemas: schemas as never, securitySchemes: securitySchemes as never },
  };
}

/** The component schemas that `root` references, directly or through other components. */
function reachableSchemas(root: unknown, schemas: Record<string, unknown>): Record<string, unknown> {
  const seen = new Set<string>();
  const pending = [root];
  while (pending.length > 0) {
    const node = pending.pop();
    for (const match of JSON.stringify(node).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)) {
      const name = match[1]!;
      if (!seen.has(name) && schemas[name] !== undefined) {
        seen.add(name);
        pending.push(schemas[name]);
      }
    }
  }
  return Object.fromEntries(Object.entries(schemas).filter(([name]) => seen.has(name)));
}
