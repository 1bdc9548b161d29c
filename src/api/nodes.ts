/**
 * /v1/nodes: the pull protocol of GPU nodes (docs/gpu-node.md). A node claims a job (a lease),
 * reads its input, reports each epoch (renewing the lease and learning of cancellation),
 * uploads the weights under its lease and completes. Every call after a lost lease is refused
 * with 409, so a node that was presumed dead cannot overwrite the work of its successor.
 */
import { Hono } from "hono";
import type { z } from "zod";
import { PayloadTooLargeError, RequestValidationError } from "../errors.js";
import { parseSafetensors } from "../formats/safetensors.js";
import { weightsKeyOf } from "../jobs/store.js";
import { zodIssues } from "../schema/issues.js";
import { ClaimRequest, CompleteRequest, HeartbeatRequest, ProgressRequest, StopRequest, type ClaimResponse } from "../schema/node.js";
import type { AppEnv } from "./deps.js";
import { problem, problemResponse } from "./problem.js";

async function body<T extends z.ZodType>(req: Request, schema: T): Promise<z.output<T>> {
  let value: unknown;
  try {
    value = await req.json();
  } catch {
    throw new RequestValidationError([{ path: "(body)", message: "is not valid JSON" }]);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new RequestValidationError(zodIssues(parsed.error));
  return parsed.data;
}

const leaseLost = (id: string) =>
  problemResponse(problem(409, "lease_lost", `This node no longer holds the lease of ${id}; abandon the attempt.`));

/**
 * The GPU-node resource, mounted at /v1/nodes behind node-token auth.
 *
 * @example
 * ```ts
 * app.use("/v1/nodes/*", nodeTokenAuth((c) => c.var.deps.nodeTokens)).route("/v1/nodes", nodes);
 * ```
 */
export const nodes = new Hono<AppEnv>()
  /** POST /v1/nodes/claim: the next job waiting for a GPU node, with a lease; 204 when none. */
  .post("/claim", async (c) => {
    const { node, wait_ms } = await body(c.req.raw, ClaimRequest);
    const deadline = Date.now() + wait_ms;
    let claim = await c.var.deps.store.claimNext(node);
    while (!claim && Date.now() < deadline && !c.req.raw.signal.aborted) {
      await new Promise((r) => setTimeout(r, Math.min(250, c.var.deps.pollMs)));
      claim = await c.var.deps.store.claimNext(node);
    }
    if (!claim) return c.body(null, 204);
    if (c.req.raw.signal.aborted) {
      // the node went away (told to stop) while this claim was made: hand the job back at once
      // rather than leave it to its lease (needs the enable_request_signal compatibility flag)
      await c.var.deps.store.channel.release(claim.job.id, claim.leaseId);
      return c.body(null, 204);
    }
    const response: ClaimResponse = { job: claim.job, lease_id: claim.leaseId, lease_ms: claim.leaseMs, attempt: claim.attempt };
    return c.json(response);
  })

  /** POST /v1/nodes/stop: the node is shutting down; nothing more is claimed for it (its long poll in flight included). */
  .post("/stop", async (c) => {
    const { node } = await body(c.req.raw, StopRequest);
    await c.var.deps.store.stopClaims(node);
    return c.json({ stopped: true });
  })

  /** GET /v1/nodes/jobs/{id}/input?lease_id=...: the run input (safetensors). */
  .get("/jobs/:id/input", async (c) => {
    const id = c.req.param("id");
    const bytes = await c.var.deps.store.channel.readInput(id, c.req.query("lease_id") ?? "");
    if (bytes === null) return leaseLost(id);
    return new Response(bytes as BodyInit, { headers: { "content-type": "application/octet-stream" } });
  })

  /** POST /v1/nodes/jobs/{id}/progress: finished epochs; renews the lease; says whether to stop. */
  .post("/jobs/:id/progress", async (c) => {
    const id = c.req.param("id");
    const { lease_id, epochs, engine } = await body(c.req.raw, ProgressRequest);
    const status = await c.var.deps.store.channel.progress(id, lease_id, epochs, engine);
    return status.ok ? c.json(status) : leaseLost(id);
  })

  /** POST /v1/nodes/jobs/{id}/heartbeat: renews the lease; says whether to stop. */
  .post("/jobs/:id/heartbeat", async (c) => {
    const id = c.req.param("id");
    const { lease_id } = await body(c.req.raw, HeartbeatRequest);
    const status = await c.var.deps.store.channel.heartbeat(id, lease_id);
    return status.ok ? c.json(status) : leaseLost(id);
  })

  /** PUT /v1/nodes/jobs/{id}/weights?lease_id=...: the fine-tuned safetensors (checked), stored under the lease. */
  .put("/jobs/:id/weights", async (c) => {
    const id = c.req.param("id");
    const length = Number(c.req.header("content-length") ?? "0");
    if (length > c.var.deps.maxBodyBytes) throw new PayloadTooLargeError("(body)", `weights over ${c.var.deps.maxBodyBytes} bytes`);
    const bytes = new Uint8Array(await c.req.arrayBuffer());
    if (bytes.byteLength > c.var.deps.maxBodyBytes) throw new PayloadTooLargeError("(body)", `weights over ${c.var.deps.maxBodyBytes} bytes`);
    parseSafetensors(bytes, { field: "(body)" }); // a node must upload a valid file
    const key = await c.var.deps.store.channel.saveWeights(id, c.req.query("lease_id") ?? "", bytes);
    return key === null ? leaseLost(id) : c.json({ weights_key: key });
  })

  /** POST /v1/nodes/jobs/{id}/release: hands a claimed job back untrained (a node that is stopping). */
  .post("/jobs/:id/release", async (c) => {
    const id = c.req.param("id");
    const { lease_id } = await body(c.req.raw, HeartbeatRequest);
    return c.json(await c.var.deps.store.channel.release(id, lease_id));
  })

  /** POST /v1/nodes/jobs/{id}/complete: the final result; a repeat or a stale lease is answered, not applied. */
  .post("/jobs/:id/complete", async (c) => {
    const id = c.req.param("id");
    const { lease_id, outcome, weights_key } = await body(c.req.raw, CompleteRequest);
    // the weights must be this lease's own upload, never another job's file
    if (weights_key !== null && weights_key !== weightsKeyOf(id, lease_id)) {
      throw new RequestValidationError([{ path: "weights_key", message: "is not the key returned by this lease's weights upload" }]);
    }
    const { accepted } = await c.var.deps.store.channel.complete(id, lease_id, outcome, weights_key);
    return c.json({ accepted });
  });
