/**
 * Secure defaults inside workerd: the real Worker called with production-like vars (no
 * EDGETUNE_DEV, as a deployed Worker has), beside the local-development vars the other worker
 * tests run with (test/worker/vitest.config.ts).
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../worker/index.js";
import { DEV_NODE_TOKEN } from "../../src/api/auth.js";

const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;

/** The Worker's env as deployed: wrangler.toml's vars and bindings, plus `vars`, without EDGETUNE_DEV or secrets. */
function productionEnv(vars: Partial<Record<"EDGETUNE_API_KEYS" | "EDGETUNE_NODE_TOKENS" | "EDGETUNE_ALLOW_OPEN", string>> = {}): Env {
  const { EDGETUNE_DEV: _dev, EDGETUNE_API_KEYS: _keys, EDGETUNE_NODE_TOKENS: _tokens, ...deployed } = env;
  return { ...deployed, ...vars } as Env;
}

const call = (path: string, e: Env, init: RequestInit = {}) => worker.fetch(new Request(`https://edgetune.example.workers.dev${path}`, init), e, ctx);
const claim = (token: string, e: Env) =>
  call("/v1/nodes/claim", e, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify({ node: "n", wait_ms: 0 }) });

describe("secure defaults with production-like vars (no EDGETUNE_DEV)", () => {
  it("the test env really is local development, and the production env really is not", () => {
    expect(env.EDGETUNE_DEV).toBe("true");
    expect(productionEnv().EDGETUNE_DEV).toBeUndefined();
    expect(productionEnv().BLOBS).toBe(env.BLOBS);
  });

  it("without EDGETUNE_API_KEYS the API answers 503 problem+json saying how to configure keys", async () => {
    for (const [path, init] of [["/v1/fine-tunes", {}], ["/v1/fine-tunes", { method: "POST", body: "{}" }], ["/v1/fine-tunes/ft_00000000000000000000000000000000", {}]] as const) {
      const res = await call(path, productionEnv(), init);
      expect(res.status, path).toBe(503);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      const body = (await res.json()) as { code: string; detail: string; status: number };
      expect(body).toMatchObject({ status: 503, code: "api_keys_not_configured" });
      expect(body.detail).toMatch(/wrangler secret put EDGETUNE_API_KEYS/);
      expect(body.detail).toMatch(/EDGETUNE_ALLOW_OPEN=true/);
    }
    // what needs no key still answers
    expect((await call("/healthz", productionEnv())).status).toBe(200);
  });

  it("EDGETUNE_ALLOW_OPEN=true serves an open API on purpose", async () => {
    const res = await call("/v1/fine-tunes?limit=1", productionEnv({ EDGETUNE_ALLOW_OPEN: "true" }));
    expect(res.status).toBe(200);
    expect(((await res.json()) as { object: string }).object).toBe("list");
    // only the exact "true": anything else keeps the API closed
    expect((await call("/v1/fine-tunes?limit=1", productionEnv({ EDGETUNE_ALLOW_OPEN: "1" }))).status).toBe(503);
  });

  it("with EDGETUNE_API_KEYS set, keys are required as before", async () => {
    const e = productionEnv({ EDGETUNE_API_KEYS: "prod-key" });
    expect((await call("/v1/fine-tunes?limit=1", e)).status).toBe(401);
    expect((await call("/v1/fine-tunes?limit=1", e, { headers: { authorization: "Bearer prod-key" } })).status).toBe(200);
  });

  it("the development node token is never accepted: 503 without EDGETUNE_NODE_TOKENS, 401 with them", async () => {
    const none = await claim(DEV_NODE_TOKEN, productionEnv({ EDGETUNE_API_KEYS: "prod-key" }));
    expect(none.status).toBe(503);
    expect(none.headers.get("content-type")).toBe("application/problem+json");
    expect((await none.json()) as object).toMatchObject({ code: "node_tokens_not_configured", detail: expect.stringMatching(/EDGETUNE_NODE_TOKENS/) });
    // EDGETUNE_ALLOW_OPEN opens the API, never the node protocol
    expect((await claim(DEV_NODE_TOKEN, productionEnv({ EDGETUNE_ALLOW_OPEN: "true" }))).status).toBe(503);

    const configured = productionEnv({ EDGETUNE_NODE_TOKENS: "prod-node-token" });
    expect((await claim(DEV_NODE_TOKEN, configured)).status).toBe(401);
    expect((await claim("prod-node-token", configured)).status).toBe(204);
  });

  it("in local development (EDGETUNE_DEV=true) the development token is accepted, unless tokens are configured", async () => {
    expect((await claim(DEV_NODE_TOKEN, env)).status).toBe(204);
    expect((await claim(DEV_NODE_TOKEN, { ...env, EDGETUNE_NODE_TOKENS: "dev-configured" })).status).toBe(401);
  });
});
