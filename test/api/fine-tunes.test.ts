/**
 * The HTTP API in Node through app.request(): every route, mode and error class.
 * (The same app runs inside workerd in test/worker/.)
 */
import { ANONYMOUS_BUCKETS, anonymousBucket } from "../../src/api/rate-limit.js";
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { encodeBase64, decodeBase64 } from "../../src/formats/base64.js";
import { parseSafetensors, writeSafetensors } from "../../src/formats/safetensors.js";
import { regressionData, seedRequest, classifierRequest } from "../helpers.js";
import { testApp } from "./app.js";
import { DEFAULT_EDGE_BUDGET } from "../../src/api/budget.js";

const json = (body: unknown, headers: Record<string, string> = {}) => ({
  method: "POST",
  headers: { "content-type": "application/json", ...headers },
  body: JSON.stringify(body),
});

async function expectProblem(res: Response, status: number, code: string, path?: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toBe("application/problem+json");
  const body = (await res.json()) as { status: number; code: string; title: string; detail: string; type: string; errors?: { path: string }[] };
  expect(body).toMatchObject({ status, code });
  expect(body.title.length).toBeGreaterThan(0);
  expect(body.detail).not.toMatch(/\n\s+at /); // no stack trace
  if (path) expect(body.errors?.map((e) => e.path)).toContain(path);
  return body;
}

const smallRequest = () => seedRequest(64, { training: { epochs: 3, batch_size: 16 } });

describe("open routes", () => {
  it("GET /healthz reports the build and the kernel variant", async () => {
    const { app } = await testApp({ apiKeys: ["k1"] });
    const res = await app.request("/healthz");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok", version: "test", kernel: "wasm-simd", runtime: "node" });
  });

  it("GET /openapi.json is OpenAPI 3.1 generated from the schemas", async () => {
    const { app } = await testApp({ apiKeys: ["k1"] });
    const doc = (await (await app.request("http://x.test/openapi.json", { headers: { host: "evil.example" } })).json()) as Record<string, any>;
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.servers).toEqual([{ url: "/" }]); // relative to the document: no Host header in it
    expect(JSON.stringify(doc)).not.toMatch(/evil\.example|x\.test/);
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/v1/fine-tunes", "/v1/fine-tunes/{id}", "/v1/fine-tunes/{id}/weights"]));
    const request = doc.components.schemas.FineTuneRequest;
    expect(request.required).toEqual(["model", "data"]);
    const optimizer = request.properties.training.properties.optimizer;
    expect(JSON.stringify(optimizer)).toContain('"amsgrad"');
    expect(doc.paths["/v1/fine-tunes"].post.responses["422"].content["application/problem+json"].schema.$ref).toBe("#/components/schemas/Problem");
  });

  it("every $ref of /openapi.json resolves in the document; the recursive layer union is the Layer component", async () => {
    const { app } = await testApp();
    const doc = (await (await app.request("http://x.test/openapi.json")).json()) as Record<string, any>;
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(0);
    for (const ref of new Set(refs)) {
      expect(ref.startsWith("#/"), ref).toBe(true);
      const target = ref.slice(2).split("/").reduce<any>((node, key) => node?.[key], doc);
      expect(target, `${ref} resolves`).toBeDefined();
    }
    expect(doc.components.schemas.FineTuneRequest.properties.model.properties.layers.items.$ref).toBe("#/components/schemas/Layer");
    // a literal is `{enum: [value]}` in @hono/zod-openapi's generator (`{const: value}` in zod's own)
    const typeOf = (s: any) => s.properties.type.const ?? s.properties.type.enum?.[0];
    const types = doc.components.schemas.Layer.oneOf.map(typeOf);
    expect(types).toEqual(expect.arrayContaining(["linear", "sequential", "residual", "flatten", "silu"]));
    const residual = doc.components.schemas.Layer.oneOf.find((s: any) => typeOf(s) === "residual");
    expect(residual.properties.layers.items.$ref).toBe("#/components/schemas/Layer");
  });

  it("GET /docs is the reference UI from this deployment's own assets over /openapi.json, and lists the problem codes", async () => {
    const { app } = await testApp();
    const html = await (await app.request("/docs")).text();
    expect(html).toContain("<title>edgetune API</title>");
    expect(html).toContain('id="problem-weights_mismatch"');
    const sources = [...html.matchAll(/<script[^>]+src="([^"]*)"/g)].map((m) => m[1]);
    expect(sources).toEqual(["/docs/assets/scalar-api-reference.js"]); // nothing from a CDN
    expect(html).toContain('"url":"/openapi.json"');
    expect(html).not.toMatch(/https?:\/\//); // no other origin (fonts, proxy, telemetry)
  });
});

describe("POST /v1/fine-tunes (sync)", () => {
  it("trains a JSON request and stores the job and weights", async () => {
    const { app } = await testApp();
    const res = await app.request("/v1/fine-tunes", json({ ...smallRequest(), mode: "sync" }));
    expect(res.status).toBe(200);
    const result = (await res.json()) as { id: string; status: string; weights: string; metrics: { history: unknown[] }; plan: { placement: string }; engine: { runtime: string } };
    expect(result).toMatchObject({ status: "succeeded", plan: { placement: "edge" }, engine: { runtime: "node" } });
    expect(result.metrics.history).toHaveLength(3);
    expect(res.headers.get("location")).toBe(`/v1/fine-tunes/${result.id}`);

    const job = (await (await app.request(`/v1/fine-tunes/${result.id}`)).json()) as Record<string, unknown>;
    expect(job).toMatchObject({ id: result.id, object: "fine_tune", status: "succeeded", mode: "sync", weights_url: `/v1/fine-tunes/${result.id}/weights` });

    const weights = await app.request(`/v1/fine-tunes/${result.id}/weights`);
    expect(weights.headers.get("content-type")).toBe("application/octet-stream");
    expect(encodeBase64(new Uint8Array(await weights.arrayBuffer()))).toBe(result.weights);
  });

  it("trains a multipart request: request JSON, safetensors weights, CSV train and JSONL validation parts", async () => {
    const { app } = await testApp();
    const initial = writeSafetensors([
      { name: "fc1.weight", shape: [10, 10], data: new Float32Array(100).fill(0.05) },
      { name: "fc1.bias", shape: [10], data: new Float32Array(10) },
      { name: "fc2.weight", shape: [1, 10], data: new Float32Array(10).fill(0.1) },
      { name: "fc2.bias", shape: [1], data: new Float32Array(1) },
    ]);
    const { x, y } = regressionData(80);
    const header = [...Array.from({ length: 10 }, (_, i) => `f${i}`), "y"].join(",");
    const csv = [header, ...x.slice(0, 60).map((r, i) => [...r, y[i]].join(","))].join("\n");
    const jsonl = x.slice(60).map((r, i) => JSON.stringify({ x: r, y: y[60 + i] })).join("\n");
    const { data: _data, ...rest } = smallRequest();
    const form = new FormData();
    form.set("request", JSON.stringify({ ...rest, data: { target: "y" } }));
    form.set("weights", new Blob([initial as BlobPart]), "weights.safetensors");
    form.set("train", new Blob([csv], { type: "text/csv" }), "train.csv");
    form.set("validation", new Blob([jsonl]), "val.jsonl");
    const res = await app.request("/v1/fine-tunes", { method: "POST", body: form });
    expect(res.status).toBe(200);
    const result = (await res.json()) as { metrics: { history: { val_loss?: number }[] }; plan: { steps: number } };
    expect(result.plan.steps).toBe(3 * 4);
    expect(result.metrics.history.every((h) => typeof h.val_loss === "number")).toBe(true);
  });

  it("a multipart CSV error names the part, the line and the column", async () => {
    const { app } = await testApp();
    const form = new FormData();
    form.set("request", JSON.stringify({ model: smallRequest().model }));
    form.set("train", new Blob(["a,b,c,d,e,f,g,h,i,j,y\n1,2,3,4,5,6,7,8,9,10,1\n1,2,x,4,5,6,7,8,9,10,1\n"], { type: "text/csv" }), "t.csv");
    const body = await expectProblem(await app.request("/v1/fine-tunes", { method: "POST", body: form }), 422, "invalid_dataset", "data.train");
    expect(body.errors![0]).toMatchObject({ line: 3, column: "c" });
  });

  it("diverged runs answer 200 with status diverged and finite weights", async () => {
    const { app } = await testApp();
    const res = await app.request("/v1/fine-tunes", json(seedRequest(128, { training: { epochs: 20, optimizer: { type: "sgd", lr: 1e6 } } })));
    const result = (await res.json()) as { status: string; error: { step: number }; weights: string };
    expect(res.status).toBe(200);
    expect(result.status).toBe("diverged");
    expect(result.error.step).toBeGreaterThan(0);
    expect(parseSafetensors(decodeBase64(result.weights)).tensors.size).toBe(4);
  });
});

describe("modes and budgets", () => {
  const tiny = { ...DEFAULT_EDGE_BUDGET, maxCpuMs: 0.001 };
  it("sync over the in-Worker budget is refused with 422 naming mode", async () => {
    const { app } = await testApp({ budget: tiny });
    const body = await expectProblem(await app.request("/v1/fine-tunes", json({ ...smallRequest(), mode: "sync" })), 422, "over_budget", "mode");
    expect(body.detail).toMatch(/s of CPU/);
  });
  it("auto over budget is offloaded: 202, queued for a GPU node", async () => {
    const { app } = await testApp({ budget: tiny });
    const res = await app.request("/v1/fine-tunes", json(smallRequest()));
    expect(res.status).toBe(202);
    const job = (await res.json()) as { id: string; status: string; mode: string; plan: { placement: string } };
    expect(job).toMatchObject({ status: "queued", mode: "async", plan: { placement: "gpu-node" } });
    expect(res.headers.get("location")).toBe(`/v1/fine-tunes/${job.id}`);
  });
  it("async within budget stays on the edge; placement edge over budget is refused", async () => {
    const { app } = await testApp();
    const res = await app.request("/v1/fine-tunes", json({ ...smallRequest(), mode: "async" }));
    expect(((await res.json()) as { plan: { placement: string } }).plan.placement).toBe("edge");
    const { app: small } = await testApp({ budget: tiny });
    await expectProblem(await small.request("/v1/fine-tunes", json({ ...smallRequest(), mode: "async", placement: "edge" })), 422, "over_budget", "placement");
  });
  it("sync on a GPU node is a contradiction (422)", async () => {
    const { app } = await testApp();
    await expectProblem(await app.request("/v1/fine-tunes", json({ ...smallRequest(), mode: "sync", placement: "gpu-node" })), 422, "sync_on_gpu_node", "placement");
  });
});

describe("errors are problem+json naming the field", () => {
  it("bad JSON -> 400", async () => {
    const { app } = await testApp();
    await expectProblem(await app.request("/v1/fine-tunes", { method: "POST", headers: { "content-type": "application/json" }, body: "{nope" }), 400, "invalid_request", "(body)");
  });
  it("a JSON array -> 400", async () => {
    const { app } = await testApp();
    await expectProblem(await app.request("/v1/fine-tunes", json([1, 2])), 400, "invalid_request", "(body)");
  });
  it("a schema violation -> 400 with the path", async () => {
    const { app } = await testApp();
    await expectProblem(await app.request("/v1/fine-tunes", json(seedRequest(10, { training: { optimizer: { type: "adam", betas: [0.9, 1.5] } } }))), 400, "invalid_request", "training.optimizer.betas[1]");
  });
  it("weights that do not fit the model -> 422 naming the tensor", async () => {
    const { app } = await testApp();
    const weights = encodeBase64(writeSafetensors([{ name: "fc1.weight", shape: [3, 3], data: new Float32Array(9) }]));
    await expectProblem(await app.request("/v1/fine-tunes", json({ ...smallRequest(), weights })), 422, "weights_mismatch", 'weights["fc1.weight"]');
  });
  it("a label out of range -> 422 naming the row", async () => {
    const { app } = await testApp();
    const r = classifierRequest(20);
    r.data.train!.y![4] = 9;
    await expectProblem(await app.request("/v1/fine-tunes", json(r)), 422, "invalid_dataset", "data.train.y[4]");
  });
  it("an unsupported content type -> 415", async () => {
    const { app } = await testApp();
    await expectProblem(await app.request("/v1/fine-tunes", { method: "POST", headers: { "content-type": "text/plain" }, body: "hi" }), 415, "unsupported_media_type", "content-type");
  });
  it("a body over the limit -> 413, with or without Content-Length", async () => {
    const { app } = await testApp({ maxBodyBytes: 1000 });
    const big = JSON.stringify({ ...smallRequest() });
    await expectProblem(await app.request("/v1/fine-tunes", { method: "POST", headers: { "content-type": "application/json", "content-length": String(big.length) }, body: big }), 413, "payload_too_large");
    const stream = new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode(big)); c.close(); } });
    await expectProblem(await app.request("/v1/fine-tunes", { method: "POST", headers: { "content-type": "application/json" }, body: stream, duplex: "half" } as RequestInit), 413, "payload_too_large");
  });
  it("an unknown multipart part -> 400 naming it", async () => {
    const { app } = await testApp();
    const form = new FormData();
    form.set("request", "{}");
    form.set("extra", "1");
    await expectProblem(await app.request("/v1/fine-tunes", { method: "POST", body: form }), 400, "invalid_request", "extra");
  });
  it("unknown routes and ids -> 404", async () => {
    const { app } = await testApp();
    await expectProblem(await app.request("/v2/nothing"), 404, "not_found");
    await expectProblem(await app.request("/v1/fine-tunes/ft_0123456789abcdef0123456789abcdef"), 404, "not_found");
    await expectProblem(await app.request("/v1/fine-tunes/../../etc/passwd"), 404, "not_found");
  });
  it("a bad listing limit -> 400", async () => {
    const { app } = await testApp();
    await expectProblem(await app.request("/v1/fine-tunes?limit=0"), 400, "invalid_request", "limit");
  });
});

describe("auth", () => {
  it("without a key, with a wrong key -> 401 with WWW-Authenticate; open routes stay open", async () => {
    const { app } = await testApp({ apiKeys: ["k1", "k2"] });
    const none = await app.request("/v1/fine-tunes");
    await expectProblem(none, 401, "unauthorized");
    expect(none.headers.get("www-authenticate")).toMatch(/^Bearer/);
    await expectProblem(await app.request("/v1/fine-tunes", { headers: { authorization: "Bearer k3" } }), 401, "unauthorized");
    expect((await app.request("/healthz")).status).toBe(200);
    expect((await app.request("/v1/fine-tunes", { headers: { authorization: "Bearer k2" } })).status).toBe(200);
  });

  it("each job belongs to its key: another key gets 404 and does not see it listed", async () => {
    const { app } = await testApp({ apiKeys: ["k1", "k2"] });
    const res = await app.request("/v1/fine-tunes", json(smallRequest(), { authorization: "Bearer k1" }));
    const { id } = (await res.json()) as { id: string };
    expect((await app.request(`/v1/fine-tunes/${id}`, { headers: { authorization: "Bearer k1" } })).status).toBe(200);
    await expectProblem(await app.request(`/v1/fine-tunes/${id}`, { headers: { authorization: "Bearer k2" } }), 404, "not_found");
    await expectProblem(await app.request(`/v1/fine-tunes/${id}/weights`, { headers: { authorization: "Bearer k2" } }), 404, "not_found");
    const list = (await (await app.request("/v1/fine-tunes", { headers: { authorization: "Bearer k2" } })).json()) as { data: unknown[] };
    expect(list.data).toEqual([]);
  });
});

describe("listing, events, cancel", () => {
  it("list items leave out the history (the epochs and the last one instead): their size does not grow with the run", async () => {
    const { app } = await testApp();
    const run = async (epochs: number) => ((await (await app.request("/v1/fine-tunes", json(seedRequest(16, { training: { epochs, batch_size: 16 } })))).json()) as { id: string }).id;
    const short = await run(2);
    const long = await run(400);
    const page = (await (await app.request("/v1/fine-tunes")).json()) as { data: { id: string; metrics: Record<string, unknown> & { last: { epoch: number } } }[] };
    const item = (id: string) => page.data.find((j) => j.id === id)!;
    expect(item(long).metrics).toMatchObject({ epochs: 400, last: { epoch: 400 } });
    expect(item(short).metrics).toMatchObject({ epochs: 2, last: { epoch: 2 } });
    expect("history" in item(long).metrics).toBe(false);
    // the same fields whatever the length: only the figures differ
    expect(Math.abs(JSON.stringify(item(long)).length - JSON.stringify(item(short)).length)).toBeLessThan(64);
    // the job keeps the last 100 epochs; GET .../metrics pages them all
    const whole = (await (await app.request(`/v1/fine-tunes/${long}`)).json()) as { metrics: { history: { epoch: number }[]; epochs: number; history_truncated: boolean } };
    expect(whole.metrics).toMatchObject({ epochs: 400, history_truncated: true });
    expect(whole.metrics.history.map((h) => h.epoch)).toEqual(Array.from({ length: 100 }, (_, i) => 301 + i));
    const epochs: number[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor === null ? "?limit=150" : `?limit=150&cursor=${cursor}`;
      const page = (await (await app.request(`/v1/fine-tunes/${long}/metrics${query}`)).json()) as { data: { epoch: number }[]; next_cursor: string | null };
      epochs.push(...page.data.map((h) => h.epoch));
      cursor = page.next_cursor;
    } while (cursor !== null);
    expect(epochs).toEqual(Array.from({ length: 400 }, (_, i) => i + 1));
    // a sync job's events: running, one epoch per entry of the whole history, status, done
    const events = (await (await app.request(`/v1/fine-tunes/${long}/events`)).text()).match(/^event: \w+$/gm)!;
    expect(events.filter((e) => e === "event: epoch")).toHaveLength(400);
    expect(events.at(-1)).toBe("event: done");
  });

  it("lists newest first with a cursor", async () => {
    const { app } = await testApp();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await app.request("/v1/fine-tunes", json(seedRequest(16, { training: { epochs: 1 } })));
      ids.push(((await res.json()) as { id: string }).id);
      await new Promise((r) => setTimeout(r, 2)); // distinct creation times
    }
    const page1 = (await (await app.request("/v1/fine-tunes?limit=2")).json()) as { data: { id: string }[]; next_cursor: string };
    const page2 = (await (await app.request(`/v1/fine-tunes?limit=2&cursor=${page1.next_cursor}`)).json()) as { data: { id: string }[]; next_cursor: string };
    const page3 = (await (await app.request(`/v1/fine-tunes?limit=2&cursor=${page2.next_cursor}`)).json()) as { data: { id: string }[]; next_cursor: string | null };
    expect([...page1.data, ...page2.data, ...page3.data].map((j) => j.id)).toEqual(ids.reverse());
    expect(page3.next_cursor).toBeNull();
  });

  it("replays a finished job's events, and resumes after Last-Event-ID", async () => {
    const { app } = await testApp();
    const { id } = (await (await app.request("/v1/fine-tunes", json(smallRequest()))).json()) as { id: string };
    const res = await app.request(`/v1/fine-tunes/${id}/events`);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const text = await res.text();
    expect([...text.matchAll(/^event: (\w+)$/gm)].map((m) => m[1])).toEqual(["status", "epoch", "epoch", "epoch", "status", "done"]);
    const resumed = await (await app.request(`/v1/fine-tunes/${id}/events`, { headers: { "last-event-id": "4" } })).text();
    expect([...resumed.matchAll(/^id: (\d+)$/gm)].map((m) => m[1])).toEqual(["5", "6"]);
  });

  it("cancelling a finished job -> 409", async () => {
    const { app } = await testApp();
    const { id } = (await (await app.request("/v1/fine-tunes", json(smallRequest()))).json()) as { id: string };
    await expectProblem(await app.request(`/v1/fine-tunes/${id}/cancel`, { method: "POST" }), 409, "already_finished");
  });
});

describe("rate limits, CORS and security headers", () => {
  it("each key has its own bucket: past the burst -> 429 with Retry-After", async () => {
    const { app } = await testApp({ apiKeys: ["k1", "k2"], rateLimit: { burst: 3, perMinute: 6 } });
    const get = (key: string) => app.request("/v1/fine-tunes", { headers: { authorization: `Bearer ${key}` } });
    for (let i = 0; i < 3; i++) expect((await get("k1")).status).toBe(200);
    const limited = await get("k1");
    const body = await expectProblem(limited, 429, "rate_limited");
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(body.detail).toMatch(/retry in \d+ s/);
    expect((await get("k2")).status).toBe(200); // another key is not affected
    expect((await app.request("/healthz")).status).toBe(200); // open routes are not limited
  });

  it("an open API: a client cannot choose its bucket with CF-Connecting-IP where the platform does not set it", async () => {
    const { app } = await testApp({ rateLimit: { burst: 3, perMinute: 6 } }); // clientAddressHeader null: wrangler dev, Node
    const get = (ip: string) => app.request("/v1/fine-tunes", { headers: { "cf-connecting-ip": ip } });
    for (let i = 0; i < 3; i++) expect((await get(`198.51.100.${i}`)).status).toBe(200);
    await expectProblem(await get("198.51.100.99"), 429, "rate_limited"); // a new "address" is the same caller
  });

  it("an open API behind Cloudflare: buckets by CF-Connecting-IP, at most ANONYMOUS_BUCKETS of them", async () => {
    const { app } = await testApp({ rateLimit: { burst: 2, perMinute: 6 }, clientAddressHeader: "cf-connecting-ip" });
    const get = (ip: string) => app.request("/v1/fine-tunes", { headers: { "cf-connecting-ip": ip } });
    for (let i = 0; i < 2; i++) expect((await get("203.0.113.7")).status).toBe(200);
    await expectProblem(await get("203.0.113.7"), 429, "rate_limited");
    const other = ["203.0.113.8", "203.0.113.9", "198.51.100.1"].find((ip) => anonymousBucket(ip) !== anonymousBucket("203.0.113.7"))!;
    expect((await get(other)).status).toBe(200); // another address, another bucket
    // a burst from 10,000 addresses creates at most 256 limiter objects
    const buckets = new Set(Array.from({ length: 10_000 }, (_, i) => anonymousBucket(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`)));
    expect(buckets.size).toBeLessThanOrEqual(ANONYMOUS_BUCKETS);
    expect(buckets.size).toBeGreaterThan(200); // and spreads them
  });

  it("CORS: an allowed origin gets the headers and a preflight answer; others get none", async () => {
    const { app } = await testApp({ corsOrigins: ["https://app.example"] });
    const preflight = await app.request("/v1/fine-tunes", {
      method: "OPTIONS",
      headers: { origin: "https://app.example", "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type" },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(preflight.headers.get("access-control-allow-headers")).toMatch(/Authorization/i);
    const other = await app.request("/v1/fine-tunes", { headers: { origin: "https://evil.example" } });
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("every response carries the security headers", async () => {
    const { app } = await testApp();
    for (const path of ["/", "/healthz", "/docs", "/v1/fine-tunes/nope"]) {
      const res = await app.request(path);
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("content-security-policy")).toMatch(/frame-ancestors 'none'/);
    }
    // the playground's shell has no inline script or style: its CSP allows none
    const page = await app.request("/");
    expect(await page.text()).toMatch(/<script type="module" src="\/playground\/app\.js"><\/script>/);
    const csp = page.headers.get("content-security-policy")!;
    expect(csp).toContain("script-src 'self' 'wasm-unsafe-eval'");
    expect(csp).toContain("style-src 'self'");
    expect(csp).not.toContain("unsafe-inline");
    expect((await app.request("/docs")).headers.get("content-security-policy")).toContain("'unsafe-inline'");
  });
});

describe("a sync job whose record cannot be stored", () => {
  it("leaves no weights behind (no orphan files without a job)", async () => {
    const { app, store } = await testApp();
    let storedId = "";
    store.put = async (record) => {
      storedId = record.job.id;
      throw new Error("the store refused the record");
    };
    const res = await app.request("/v1/fine-tunes", json({ ...smallRequest(), mode: "sync" }));
    expect(res.status).toBe(500);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(storedId).toMatch(/^ft_/);
    expect(await store.getWeights(storedId)).toBeNull();
  });
});

describe("Idempotency-Key", () => {
  const withKey = (body: unknown, key: string) => json(body, { "idempotency-key": key });

  it("a retried sync create answers the first result instead of training again", async () => {
    const { app } = await testApp();
    const first = await app.request("/v1/fine-tunes", withKey(smallRequest(), "retry-1"));
    const again = await app.request("/v1/fine-tunes", withKey(smallRequest(), "retry-1"));
    expect(again.status).toBe(200);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    const [a, b] = [(await first.json()) as Record<string, unknown>, (await again.json()) as Record<string, unknown>];
    expect(b.id).toBe(a.id);
    expect(b.weights).toBe(a.weights);
    const list = (await (await app.request("/v1/fine-tunes")).json()) as { data: unknown[] };
    expect(list.data).toHaveLength(1);
  });

  it("a retried sync create of a long run answers its whole history (the record keeps the last epochs)", async () => {
    const { app } = await testApp();
    const body = seedRequest(4, { training: { epochs: 150, batch_size: 4 } });
    const first = (await (await app.request("/v1/fine-tunes", withKey(body, "retry-long"))).json()) as { metrics: unknown };
    const again = (await (await app.request("/v1/fine-tunes", withKey(body, "retry-long"))).json()) as { metrics: unknown };
    expect(again.metrics).toEqual(first.metrics);
  });

  it("a retried async create answers 202 with the same job", async () => {
    const { app } = await testApp();
    const body = { ...smallRequest(), mode: "async" };
    const a = (await (await app.request("/v1/fine-tunes", withKey(body, "k-async"))).json()) as { id: string };
    const res = await app.request("/v1/fine-tunes", withKey(body, "k-async"));
    expect(res.status).toBe(202);
    expect(((await res.json()) as { id: string }).id).toBe(a.id);
  });

  it("the same key for a different request is refused (422); keys are per API key", async () => {
    const { app } = await testApp({ apiKeys: ["k1", "k2"] });
    const auth = (k: string) => ({ authorization: `Bearer ${k}`, "idempotency-key": "shared" });
    await app.request("/v1/fine-tunes", json(smallRequest(), auth("k1")));
    const other = seedRequest(64, { training: { epochs: 4, batch_size: 16 } });
    await expectProblem(await app.request("/v1/fine-tunes", json(other, auth("k1"))), 422, "idempotency_key_reused", "Idempotency-Key");
    expect((await app.request("/v1/fine-tunes", json(other, auth("k2")))).status).toBe(200);
  });

  it("an invalid request does not use up its key; a malformed key is refused", async () => {
    const { app } = await testApp();
    const bad = seedRequest(10, { training: { epochs: -1 } });
    await expectProblem(await app.request("/v1/fine-tunes", withKey(bad, "k-bad")), 400, "invalid_request");
    expect((await app.request("/v1/fine-tunes", withKey(smallRequest(), "k-bad"))).status).toBe(200);
    await expectProblem(await app.request("/v1/fine-tunes", withKey(smallRequest(), "has space")), 400, "invalid_request", "Idempotency-Key");
  });

  it("a retried cancel of a cancelled job answers 200 with the job", async () => {
    const { app } = await testApp();
    const { id } = (await (await app.request("/v1/fine-tunes", json({ ...smallRequest(), mode: "async", placement: "gpu-node" }))).json()) as { id: string };
    expect((await app.request(`/v1/fine-tunes/${id}/cancel`, { method: "POST" })).status).toBe(200);
    const again = await app.request(`/v1/fine-tunes/${id}/cancel`, { method: "POST" });
    expect(again.status).toBe(200);
    expect(((await again.json()) as { status: string }).status).toBe("cancelled");
  });
});

describe("keys stored hashed", () => {
  it("an EDGETUNE_API_KEYS entry sha256:<hex> accepts the key whose digest it is, and owns the same jobs", async () => {
    const digest = createHash("sha256").update("secret-key").digest("hex");
    const { app } = await testApp({ apiKeys: [`sha256:${digest}`] });
    expect((await app.request("/v1/fine-tunes", { headers: { authorization: "Bearer secret-key" } })).status).toBe(200);
    expect((await app.request("/v1/fine-tunes", { headers: { authorization: `Bearer sha256:${digest}` } })).status).toBe(401);
  });
});
