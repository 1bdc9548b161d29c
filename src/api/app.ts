/**
 * The edgetune HTTP API as one Hono app, runtime-agnostic: the entry (worker/index.ts, or a
 * Node process) injects its dependencies per request.
 *
 *   /healthz, /openapi.json, /docs      open
 *   /openapi.nodes.json                 open: the node protocol's own document (kept out of /docs)
 *   /v1/fine-tunes/...                  bearer key (EDGETUNE_API_KEYS)
 *   /v1/nodes/...                       node token (EDGETUNE_NODE_TOKENS): the GPU-node pull protocol
 *
 * Every API route is defined once with `createRoute` (see openapi.ts for the pattern of a new
 * one): its validation and its entry in the OpenAPI documents come from that definition.
 */
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { cors } from "hono/cors";
import { secureHeaders } from "hono/secure-headers";
import { apiKeyAuth, nodeTokenAuth } from "./auth.js";
import type { AppDeps, AppEnv } from "./deps.js";
import { docsPage } from "./docs.js";
import { checkpointRoutes } from "./checkpoints.js";
import { explainRoutes } from "./explain.js";
import { nodeExplanations } from "./node-explanations.js";
import { fineTunes } from "./fine-tunes.js";
import { nodes } from "./nodes.js";
import { jsonResponse, newRoutes, openApiDocument, TAGS } from "./openapi.js";
import { playgroundPage } from "./playground.js";
import { problem, problemResponse, toProblem } from "./problem.js";
import { rateLimit } from "./rate-limit.js";

/**
 * Creates the app. `deps` is called once per request with the Hono context (its `env`
 * holds the Worker's bindings).
 *
 * @example
 * ```ts
 * const app = createApp(() => ({ runtime, store: new MemoryJobStore(), apiKeys: [], budget: DEFAULT_EDGE_BUDGET, maxBodyBytes: 64 << 20, version: "dev" }));
 * const res = await app.request("/healthz");
 * ```
 */
export function createApp<Bindings extends object = object>(deps: (c: Context<AppEnv & { Bindings: Bindings }>) => AppDeps): OpenAPIHono<AppEnv & { Bindings: Bindings }> {
  const app = newRoutes<AppEnv & { Bindings: Bindings }>();

  app.onError((err, c) => {
    const body = toProblem(err);
    if (body.status >= 500) console.error(`edgetune: ${c.req.method} ${new URL(c.req.url).pathname} failed:`, err);
    return problemResponse(body);
  });
  app.notFound((c) => problemResponse(problem(404, "not_found", `No route for ${c.req.method} ${new URL(c.req.url).pathname}.`)));

  app.use(async (c, next) => {
    c.set("deps", deps(c));
    await next();
  });
  // nosniff, frame and referrer policies, HSTS...; /docs loads its reference UI from /docs/assets/
  // (inline styles, data: icons) and starts it with an inline script;
  // the playground (GET /) has no inline script or style at all: its CSP allows only its own
  // origin's files, and 'wasm-unsafe-eval' to compile the kernel core (/lib/*.wasm) for on-device runs
  const pageHeaders = secureHeaders({ contentSecurityPolicy: PLAYGROUND_CSP, crossOriginResourcePolicy: "cross-origin" });
  const otherHeaders = secureHeaders({
    contentSecurityPolicy: { defaultSrc: ["'self'"], scriptSrc: ["'self'", "'unsafe-inline'", "'wasm-unsafe-eval'"], styleSrc: ["'self'", "'unsafe-inline'"], imgSrc: ["'self'", "data:"], frameAncestors: ["'none'"] },
    crossOriginResourcePolicy: "cross-origin",
  });
  app.use((c, next) => (c.req.path === "/" ? pageHeaders(c, next) : otherHeaders(c, next)));
  app.use("/v1/fine-tunes/*", (c, next) => corsFor(c.var.deps.corsOrigins)(c, next));

  app
    .openapi(healthRoute, (c) => {
      const { runtime, version } = c.var.deps;
      return c.json({ status: "ok" as const, version, kernel: runtime.variant, runtime: runtime.runtime }, 200);
    })
    // the documents and pages themselves are not in the documents (test/api/openapi.test.ts lists them)
    // servers: "/", the origin that served the document: never the request's Host header, which a
    // client chooses (a cached or proxied document would send its readers elsewhere; issue 21)
    .get("/openapi.json", (c) => c.json(openApiDocument(app, "public", "/", c.var.deps.version)))
    .get("/openapi.nodes.json", (c) => c.json(openApiDocument(app, "nodes", "/", c.var.deps.version)))
    .get("/docs", (c) => c.html(docsPage()))
    .get("/", (c) => c.html(playgroundPage()))
    // "/v1/fine-tunes/*" also matches "/v1/fine-tunes" itself
    .use("/v1/fine-tunes/*", apiKeyAuth<AppEnv & { Bindings: Bindings }>((c) => c.var.deps.apiKeys, (c) => c.var.deps.allowOpen ?? true))
    .use("/v1/fine-tunes/*", rateLimit<AppEnv & { Bindings: Bindings }>((c) => c.var.deps.rateLimiter, (c) => c.var.deps.clientAddressHeader ?? null))
    .use("/v1/nodes/*", nodeTokenAuth<AppEnv & { Bindings: Bindings }>((c) => c.var.deps.nodeTokens))
    .route("/v1/fine-tunes", fineTunes)
    .route("/v1/fine-tunes", explainRoutes)
    .route("/v1/fine-tunes", checkpointRoutes)
    .route("/v1/nodes", nodes)
    .route("/v1/nodes", nodeExplanations);
  return app;
}

/**
 * The playground's Content Security Policy: scripts, styles, the Web Worker, fetches and images
 * from its own origin only; 'wasm-unsafe-eval' for WebAssembly.compile of /lib/*.wasm; blob: for
 * the weights' download link; no inline script or style, no plugins, no framing.
 */
const PLAYGROUND_CSP = {
  defaultSrc: ["'self'"],
  scriptSrc: ["'self'", "'wasm-unsafe-eval'"],
  styleSrc: ["'self'"],
  workerSrc: ["'self'"],
  connectSrc: ["'self'"],
  imgSrc: ["'self'", "data:", "blob:"],
  objectSrc: ["'none'"],
  baseUri: ["'none'"],
  formAction: ["'none'"],
  frameAncestors: ["'none'"],
};
const healthRoute = createRoute({
  method: "get",
  path: "/healthz",
  tags: [TAGS.service],
  security: [],
  operationId: "health",
  summary: "Liveness, build and kernel variant",
  responses: {
    200: jsonResponse(
      "OK",
      z.object({
        status: z.literal("ok"),
        version: z.string(),
        kernel: z.string().openapi({ description: "The kernel build: wasm-relaxed-simd in the Worker" }),
        runtime: z.string(),
      }),
    ),
  },
});

const corsCache = new Map<string, ReturnType<typeof cors>>();
/** CORS for the allowed origins (none: no CORS headers, so browsers on other origins are refused). */
function corsFor(origins: string[]) {
  const key = origins.join(",");
  let handler = corsCache.get(key);
  if (!handler) {
    handler = cors({
      origin: origins.includes("*") ? "*" : (origin) => (origins.includes(origin) ? origin : null),
      allowHeaders: ["Authorization", "Content-Type", "Last-Event-ID", "Idempotency-Key"],
      allowMethods: ["GET", "POST", "DELETE", "OPTIONS"],
      exposeHeaders: ["Location", "Retry-After", "RateLimit-Remaining"],
      maxAge: 600,
    });
    corsCache.set(key, handler);
  }
  return handler;
}

/**
 * The app's type. Its routes' request and response types are not part of it (their inferred
 * type is beyond what declaration files can hold); typed clients use the SDK (src/sdk).
 */
export type AppType = ReturnType<typeof createApp>;
