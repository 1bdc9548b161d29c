/**
 * The OpenAPI documents against the routes the app answers: every route (Hono's app.routes) is
 * in /openapi.json or /openapi.nodes.json, every operation of those documents is answered, and
 * the node protocol stays out of the public document.
 */
import { describe, expect, it } from "vitest";
import { NODE_TOKEN, testApp } from "./app.js";

/** Routes that are not API operations: the pages and the documents themselves. */
const NOT_OPERATIONS = new Set(["GET /", "GET /docs", "GET /openapi.json", "GET /openapi.nodes.json"]);
// Static assets (/lib/*, /docs/assets/*) are served by Workers Static Assets, not by app routes.

type Doc = { paths: Record<string, Record<string, { tags?: string[]; operationId?: string }>>; components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> }; tags: { name: string }[] };

async function documents() {
  const { app } = await testApp({ apiKeys: ["k1"] });
  const get = async (path: string) => (await (await app.request(`http://x.test${path}`)).json()) as Doc;
  return { app, pub: await get("/openapi.json"), nodes: await get("/openapi.nodes.json") };
}

const operations = (doc: Doc) => Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`));

describe("the OpenAPI documents and the routes", () => {
  it("every route the app answers is an operation of a document, and every operation is a route", async () => {
    const { app, pub, nodes } = await documents();
    // middleware (auth, CORS, rate limits) is registered as method ALL; {id} is :id in Hono
    const answered = new Set(app.routes.filter((r) => r.method !== "ALL").map((r) => `${r.method} ${r.path.replace(/:([^/]+)/g, "{$1}")}`));
    for (const excluded of NOT_OPERATIONS) expect(answered.has(excluded), `${excluded} is a route of the app`).toBe(true);
    const routes = [...answered].filter((r) => !NOT_OPERATIONS.has(r)).sort();
    const documented = [...operations(pub), ...operations(nodes)].sort();
    expect(new Set(documented).size).toBe(documented.length); // no operation in both documents
    expect(documented).toEqual(routes);
    expect(routes).toEqual(expect.arrayContaining(["POST /v1/fine-tunes", "GET /v1/fine-tunes/{id}/events", "POST /v1/nodes/claim", "GET /healthz"]));
  });

  it("every documented operation is answered by its route (not the 404 of an unknown path)", async () => {
    const { app, pub, nodes } = await documents();
    for (const op of [...operations(pub), ...operations(nodes)]) {
      const [method, path] = op.split(" ") as [string, string];
      const url = `http://x.test${path.replace("{id}", "ft_00000000000000000000000000000000")}`;
      const res = await app.request(url, { method, headers: { authorization: `Bearer ${path.startsWith("/v1/nodes") ? NODE_TOKEN : "k1"}` } });
      const body = res.headers.get("content-type")?.includes("json") ? ((await res.json()) as { code?: string; detail?: string }) : {};
      expect(body.detail ?? "", op).not.toMatch(/^No route for/);
    }
  });

  it("/openapi.json is the public API: fine-tunes and service tags, no node protocol, no node token", async () => {
    const { pub } = await documents();
    expect(pub.tags.map((t) => t.name)).toEqual(["Fine-tunes", "Service"]);
    for (const [path, item] of Object.entries(pub.paths)) {
      expect(path.startsWith("/v1/nodes"), path).toBe(false);
      for (const op of Object.values(item)) expect(op.tags?.length, path).toBe(1);
    }
    expect(Object.keys(pub.components.securitySchemes)).toEqual(["bearer"]);
    expect(pub.components.schemas.ClaimRequest).toBeUndefined();
    expect(pub.components.schemas.FineTuneRequest).toBeDefined();
  });

  it("/openapi.nodes.json is the node protocol alone, each $ref resolving in it", async () => {
    const { nodes } = await documents();
    expect(nodes.tags.map((t) => t.name)).toEqual(["Node protocol"]);
    expect(Object.keys(nodes.paths).every((p) => p.startsWith("/v1/nodes/"))).toBe(true);
    expect(Object.keys(nodes.paths)).toHaveLength(10); // with POST /jobs/{id}/explanation (explanation tasks) and /jobs/{id}/checkpoint (PUT and GET)
    expect(Object.keys(nodes.components.securitySchemes)).toEqual(["nodeToken"]);
    for (const ref of new Set([...JSON.stringify(nodes).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]!))) {
      expect(nodes.components.schemas[ref], ref).toBeDefined();
    }
    expect(nodes.components.schemas.FineTuneRequest).toBeUndefined();
  });

  it("a parameter the route's schema refuses is a problem+json naming the field", async () => {
    const { app } = await testApp();
    const res = await app.request("/v1/fine-tunes?limit=0&colour=red");
    expect(res.status).toBe(400);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    const body = (await res.json()) as { code: string; errors: { path: string }[] };
    expect(body.code).toBe("invalid_request");
    expect(body.errors.map((e) => e.path).sort()).toEqual(["colour", "limit"]);
  });

  it("a node body is read as JSON whatever its Content-Type; one that is not JSON is a 400 at (body)", async () => {
    const { app } = await testApp();
    const auth = { authorization: `Bearer ${NODE_TOKEN}` };
    const plain = await app.request("/v1/nodes/claim", { method: "POST", headers: { ...auth, "content-type": "text/plain" }, body: JSON.stringify({ node: "n" }) });
    expect(plain.status).toBe(204);
    const bad = await app.request("/v1/nodes/claim", { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: "{" });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ code: "invalid_request", errors: [{ path: "(body)", message: "is not valid JSON" }] });
  });
});
