/**
 * `npm run dev` (scripts/dev.mjs, after its build): wrangler dev marked as local development
 * (EDGETUNE_DEV: open API, the development node token) with a GPU node beside it, and the node's
 * empty claim polls kept out of the log (debug level).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { classificationData } from "../helpers.js";
import { eventually, freePort, root, stop, type Proc } from "./processes.js";

const work = mkdtempSync(join(tmpdir(), "edgetune-dev-script-"));

describe("npm run dev (scripts/dev.mjs)", () => {
  let base = "";
  let dev: Proc | undefined;
  const output = () => dev!.output();

  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const child = spawn(process.execPath, [join(root, "scripts/dev.mjs"), "--port", String(port), "--ip", "127.0.0.1", "--persist-to", join(work, "state")], {
      cwd: root,
      // short claim polls, so that many of them come back empty
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1", EDGETUNE_CLAIM_WAIT_MS: "200", EDGETUNE_POLL_MS: "50", EDGETUNE_LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let text = "";
    child.stdout!.on("data", (d) => (text += d));
    child.stderr!.on("data", (d) => (text += d));
    dev = { child, output: () => text };
    await eventually("the GPU node to pull jobs", 90_000, async () => (/pulling jobs from/.test(text) ? true : undefined));
  });
  afterAll(async () => {
    await stop(dev);
    rmSync(work, { recursive: true, force: true });
  });

  it("runs as local development: no key needed, and its node (with the development token) trains a GPU job", async () => {
    expect(output()).toMatch(/EDGETUNE_DEV/);
    const body = { mode: "async", placement: "gpu-node", model: { layers: [{ type: "linear", in_features: 4, out_features: 3 }] }, data: { train: classificationData(32) }, training: { epochs: 2, batch_size: 16, loss: { type: "cross_entropy" } } };
    const res = await fetch(`${base}/v1/fine-tunes`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const done = await eventually(`${id} to succeed`, 60_000, async () => {
      const job = (await (await fetch(`${base}/v1/fine-tunes/${id}`)).json()) as { status: string };
      return job.status === "succeeded" ? job : undefined;
    });
    expect(done.status).toBe("succeeded");
  });

  it("logs requests, but not the claim polls that found nothing", async () => {
    // one more empty claim of our own, then a request whose log line must come after it
    const probe = await fetch(`${base}/v1/nodes/claim`, { method: "POST", headers: { authorization: "Bearer edgetune-dev-node-token", "content-type": "application/json" }, body: JSON.stringify({ node: "probe" }) });
    expect(probe.status).toBe(204);
    await fetch(`${base}/healthz?after-probe`);
    await eventually("the request after the probe in the log", 20_000, async () => (/GET \/healthz/.test(output().split("POST /v1/fine-tunes 202").at(-1)!) ? true : undefined));
    expect(output()).toMatch(/POST \/v1\/fine-tunes 202/);
    expect(output()).toMatch(/POST \/v1\/nodes\/claim 200/);
    expect(output()).not.toMatch(/POST \/v1\/nodes\/claim 204/);
    expect(output()).not.toMatch(/debug: claiming/);
  });
});
