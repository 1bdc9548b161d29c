/**
 * The edgetune HTTP API as one Hono app, runtime-agnostic: the entry (worker/index.ts, or a
 * Node process) injects its dependencies per request.
 *
 *   /healthz, /openapi.json, /docs      open
 *   /v1/fine-tunes/...                  bearer key (EDGETUNE_API_KEYS)
 *   /v1/nodes/...                       node token (EDGETUNE_NODE_TOKENS): the GPU-node pull protocol
 */
import { Hono, type Context } from "hono";
import { cors } from "hono/cors";
import { secureHeaders } from "hono/secure-headers";
import { apiKeyAuth, nodeTokenAuth } from "./auth.js";
import type { AppDeps, AppEnv } from "./deps.js";
import { docsPage } from "./docs.js";
import { fineTunes } from "./fine-tunes.js";
import { nodes } from "./nodes.js";
import { openApiDocument } from "./openapi.js";
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
export function createApp<Bindings extends object = object>(deps: (c: Context<AppEnv & { Bindings: Bindings }>) => AppDeps) {
  const app = new Hono<AppEnv & { Bindings: Bindings }>();

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
  // nosniff, frame and referrer policies, HSTS...; /docs keeps its inline script under a strict CSP;
  // 'wasm-unsafe-eval' lets the playground compile the kernel core (/lib/*.wasm) to train on the device
  app.use(
    secureHeaders({
      contentSecurityPolicy: { defaultSrc: ["'self'"], scriptSrc: ["'self'", "'unsafe-inline'", "'wasm-unsafe-eval'"], styleSrc: ["'self'", "'unsafe-inline'"], frameAncestors: ["'none'"] },
      crossOriginResourcePolicy: "cross-origin",
    }),
  );
  app.use("/v1/fine-tunes/*", (c, next) => corsFor(c.var.deps.corsOrigins)(c, next));

  const routes = app
    .get("/healthz", (c) => {
      const { runtime, version } = c.var.deps;
      return c.json({ status: "ok", version, kernel: runtime.variant, runtime: runtime.runtime });
    })
    .get("/openapi.json", (c) => c.json(openApiDocument(new URL(c.req.url).origin, c.var.deps.version)))
    .get("/docs", (c) => c.html(docsPage()))
    .get("/", (c) => c.html(playgroundPage()))
    // "/v1/fine-tunes/*" also matches "/v1/fine-tunes" itself
    .use("/v1/fine-tunes/*", apiKeyAuth<AppEnv & { Bindings: Bindings }>((c) => c.var.deps.apiKeys, (c) => c.var.deps.allowOpen ?? true))
    .use("/v1/fine-tunes/*", rateLimit<AppEnv & { Bindings: Bindings }>((c) => c.var.deps.rateLimiter))
    .use("/v1/nodes/*", nodeTokenAuth<AppEnv & { Bindings: Bindings }>((c) => c.var.deps.nodeTokens))
    .route("/v1/fine-tunes", fineTunes)
    .route("/v1/nodes", nodes);
  return routes;
}

const corsCache = new Map<string, ReturnType<typeof cors>>();
/** CORS for the allowed origins (none: no CORS headers, so browsers on other origins are refused). */
function corsFor(origins: string[]) {
  const key = origins.join(",");
  let handler = corsCache.get(key);
  if (!handler) {
    handler = cors({
      origin: origins.includes("*") ? "*" : (origin) => (origins.includes(origin) ? origin : null),
      allowHeaders: ["Authorization", "Content-Type", "Last-Event-ID", "Idempotency-Key"],
      allowMethods: ["GET", "POST", "OPTIONS"],
      exposeHeaders: ["Location", "Retry-After", "RateLimit-Remaining"],
      maxAge: 600,
    });
    corsCache.set(key, handler);
  }
  return handler;
}

/** The app's type, for typed clients (`hc<AppType>`). */
export type AppType = ReturnType<typeof createApp>;
