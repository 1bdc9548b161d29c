/**
 * Secure by default with real processes: `wrangler dev` without the local-development mark
 * (EDGETUNE_DEV, which `npm run dev` sets) behaves as a deployed Worker without secrets: the API
 * answers 503 until keys are configured, and a GPU node with the public development token is
 * refused. (test/worker/security.test.ts covers the same inside workerd, var by var.)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, freePort, startGpuNode, startWranglerDev, stop, type Proc } from "./processes.js";

const work = mkdtempSync(join(tmpdir(), "edgetune-secure-"));

describe("wrangler dev with production-like vars (no EDGETUNE_DEV, no secrets)", () => {
  let port = 0;
  let edge: Proc | undefined;
  let node: Proc | undefined;

  beforeAll(async () => {
    port = await freePort();
    edge = await startWranglerDev(port, join(work, "state"), {}, { production: true });
  });
  afterAll(async () => {
    await stop(node);
    await stop(edge);
    rmSync(work, { recursive: true, force: true });
  });

  it("says at start-up that it refuses requests, instead of warning that it is open", () => {
    expect(edge!.output()).toMatch(/EDGETUNE_API_KEYS is not set, so \/v1\/fine-tunes answers 503/);
    expect(edge!.output()).toMatch(/EDGETUNE_NODE_TOKENS is not set, so \/v1\/nodes answers 503/);
    expect(edge!.output()).not.toMatch(/open to anyone|development token "edgetune-dev-node-token"/);
  });

  it("the API answers 503 problem+json saying how to configure keys", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/v1/fine-tunes`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(res.status).toBe(503);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(await res.json()).toMatchObject({ code: "api_keys_not_configured", detail: expect.stringMatching(/wrangler secret put EDGETUNE_API_KEYS/) });
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
  });

  it("a GPU node with the development token is refused and says why", async () => {
    node = startGpuNode(port, "node-with-dev-token");
    await eventually("the node to report the refusal", 30_000, async () => (/node_tokens_not_configured/.test(node!.output()) ? true : undefined));
    expect(node.output()).not.toMatch(/claimed/);
  });
});
