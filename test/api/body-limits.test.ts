/**
 * Memory-aware admission (issue 21): what a body costs the isolate once parsed. A body past the
 * limit is a 413 naming it, with the hint to send binary datasets; JSON nested deeper than any
 * request needs is refused before it is parsed; a sync run is admitted only when its parsed
 * request and its WebAssembly memory fit the budget together.
 */
import { describe, expect, it } from "vitest";
import { checkJsonDepth, MAX_JSON_DEPTH } from "../../src/api/body.js";
import { decide, DEFAULT_EDGE_BUDGET, parsedRequestBytes, PARSED_BYTES_PER_BODY_BYTE } from "../../src/api/budget.js";
import { RequestValidationError, UnprocessableError } from "../../src/errors.js";
import { prepareRun } from "../../src/engine/prepare.js";
import type { FineTuneRequest } from "../../src/schema/request.js";
import { seedRequest } from "../helpers.js";
import { testApp } from "./app.js";

const post = (body: string) => ({ method: "POST", headers: { "content-type": "application/json" }, body });

describe("the JSON depth scan", () => {
  it("passes a request's own depth and refuses one level past the limit, counting no brackets inside strings", () => {
    expect(() => checkJsonDepth(JSON.stringify(seedRequest(4)), "(body)")).not.toThrow();
    expect(() => checkJsonDepth("[".repeat(MAX_JSON_DEPTH) + "]".repeat(MAX_JSON_DEPTH), "(body)")).not.toThrow();
    expect(() => checkJsonDepth("[".repeat(MAX_JSON_DEPTH + 1), "(body)")).toThrow(RequestValidationError);
    expect(() => checkJsonDepth(JSON.stringify({ a: "[[[[".repeat(100), b: '\\"[[[' }), "(body)", 2)).not.toThrow();
  });

  it("a deeply nested body is a 400 naming the body, not a stack overflow", async () => {
    const { app } = await testApp();
    const res = await app.request("/v1/fine-tunes", post(`{"model":${"[".repeat(200_000)}${"]".repeat(200_000)}}`));
    expect(res.status).toBe(400);
    const problem = (await res.json()) as { errors: { path: string; message: string }[] };
    expect(problem.errors[0]).toMatchObject({ path: "(body)" });
    expect(problem.errors[0]!.message).toMatch(/deeper than 64 levels/);
  });
});

describe("the body limit", () => {
  it("a JSON body past maxBodyBytes is a 413 naming the body, with the binary-dataset hint", async () => {
    const { app } = await testApp({ maxBodyBytes: 1000 });
    const body = JSON.stringify(seedRequest(100));
    expect(body.length).toBeGreaterThan(1000);
    // without Content-Length (counted as it streams) and with it (refused before reading)
    for (const headers of [{}, { "content-length": String(body.length) }] as Record<string, string>[]) {
      const res = await app.request("/v1/fine-tunes", { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
      expect(res.status).toBe(413);
      const problem = (await res.json()) as { code: string; detail: string; errors: { path: string }[] };
      expect(problem.code).toBe("payload_too_large");
      expect(problem.errors[0]!.path).toBe("(body)");
      expect(problem.detail).toMatch(/binary safetensors/);
    }
  });
});

describe("admission counts the parsed request", () => {
  it("prices a JSON body at 3.5 bytes of isolate memory per byte, a multipart one at 2", () => {
    expect(PARSED_BYTES_PER_BODY_BYTE).toBe(3.5);
    expect(parsedRequestBytes(16 << 20, "json")).toBe(56 << 20);
    expect(parsedRequestBytes(16 << 20, "multipart")).toBe(32 << 20);
  });

  it("a run that fits alone does not fit beside a large parsed request: offloaded (auto), refused naming mode (sync)", () => {
    const prepared = prepareRun(seedRequest(64));
    const request = prepared.request as FineTuneRequest;
    expect(decide(request, prepared.plan, DEFAULT_EDGE_BUDGET, 0)).toEqual({ run: "sync" });
    const parsed = parsedRequestBytes(30 << 20, "json"); // 105 MiB
    expect(decide(request, prepared.plan, DEFAULT_EDGE_BUDGET, parsed)).toEqual({ run: "async", placement: "gpu-node" });
    try {
      decide({ ...request, mode: "sync" }, prepared.plan, DEFAULT_EDGE_BUDGET, parsed);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(UnprocessableError);
      expect((e as UnprocessableError).errors[0]!.path).toBe("mode");
      expect((e as UnprocessableError).errors[0]!.message).toMatch(/for the parsed request/);
    }
  });

  it("over HTTP: a sync request whose body would not fit beside its run is refused (422 over_budget naming mode)", async () => {
    // a budget of 2 MiB of isolate memory: the seed MLP's run fits, but not beside a 1 MB body parsed
    const { app } = await testApp({ budget: { ...DEFAULT_EDGE_BUDGET, maxMemoryBytes: 2 << 20 } });
    const small = await app.request("/v1/fine-tunes", post(JSON.stringify({ ...seedRequest(64, { training: { epochs: 1, batch_size: 16 } }), mode: "sync" })));
    expect(small.status).toBe(200);
    const big = JSON.stringify({ ...seedRequest(4000, { training: { epochs: 1, batch_size: 16 } }), mode: "sync" });
    expect(big.length * PARSED_BYTES_PER_BODY_BYTE).toBeGreaterThan(2 << 20);
    const res = await app.request("/v1/fine-tunes", post(big));
    expect(res.status).toBe(422);
    const problem = (await res.json()) as { code: string; errors: { path: string }[] };
    expect(problem.code).toBe("over_budget");
    expect(problem.errors[0]!.path).toBe("mode");
  });
});
