/**
 * The edgetune HTTP API as one Hono app, runtime-agnostic: the entry (worker/index.ts, or a
 * Node process) injects its dependencies per request.
 *
 *   /healthz, /openapi.json, /docs      open
 *   /v1/fine-tunes/...                  bearer key (EDGETUNE_API_KEYS)
 *   /v1/nodes/...                       node token (EDGETUNE_NODE_TOKENS): the GPU-node pull protocol
 */
import { Hono, type Context } from "hono";
import { apiKeyAuth, nodeTokenAuth } from "./auth.js";
import type { AppDeps, AppEnv } from "./deps.js";
import { docsPage } from "./docs.js";
import { fineTunes } from "./fine-tunes.js";
import { nodes } from "./nodes.js";
import { openApiDocument } from "./openapi.js";
import { problem, problemResponse, toProblem } from "./problem.js";

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

  const routes = app
    .get("/healthz", (c) => {
      const { runtime, version } = c.var.deps;
      return c.json({ status: "ok", version, kernel: runtime.variant, runtime: runtime.runtime });
    })
    .get("/openapi.json", (c) => c.json(openApiDocument(new URL(c.req.url).origin, c.var.deps.version)))
    .get("/docs", (c) => c.html(docsPage()))
    .use("/v1/fine-tunes/*", apiKeyAuth<AppEnv & { Bindings: Bindings }>((c) => c.var.deps.apiKeys))
    .use("/v1/fine-tunes", apiKeyAuth<AppEnv & { Bindings: Bindings }>((c) => c.var.deps.apiKeys))
    .use("/v1/nodes/*", nodeTokenAuth<AppEnv & { Bindings: Bindings }>((c) => c.var.deps.nodeTokens))
    .route("/v1/fine-tunes", fineTunes)
    .route("/v1/nodes", nodes);
  return routes;
}

/** The app's type, for typed clients (`hc<AppType>`). */
export type AppType = ReturnType<typeof createApp>;
