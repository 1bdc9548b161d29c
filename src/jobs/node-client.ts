/**
 * The GPU node's side of /v1/nodes: claim a job and serve as its WorkerChannel over HTTP.
 * Uses only fetch (injectable), so tests can drive it against app.request().
 */
import type { EpochMetrics } from "../schema/result.js";
import type { Job } from "../schema/job.js";
import type { ClaimResponse } from "../schema/node.js";
import type { ExplanationUpload } from "../schema/explanation.js";
import type { Claim, LeaseStatus, RunOutcome, WorkerChannel } from "./store.js";

export interface NodeClientOptions {
  /** The edge's base URL, e.g. http://127.0.0.1:8787 */
  baseUrl: string;
  token: string;
  fetch?: (input: string, init?: RequestInit) => Promise<Response>;
}

/** An answer the protocol does not expect (not a lost lease): the node logs it and retries later. */
export class NodeProtocolError extends Error {}

/**
 * A client of the GPU-node protocol.
 *
 * @example
 * ```ts
 * const client = new NodeClient({ baseUrl: "http://127.0.0.1:8787", token });
 * const claim = await client.claim("node-1");
 * if (claim) await runClaimedJob(client, claim, runtime, { placement: "gpu-node" });
 * ```
 */
export class NodeClient implements WorkerChannel {
  private readonly base: string;
  private readonly doFetch: NonNullable<NodeClientOptions["fetch"]>;

  constructor(private readonly options: NodeClientOptions) {
    this.base = options.baseUrl.replace(/\/+$/, "");
    this.doFetch = options.fetch ?? ((input, init) => fetch(input, init));
  }

  private async call(method: string, path: string, body?: unknown, raw?: Uint8Array, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.options.token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (raw !== undefined) headers["content-type"] = "application/octet-stream";
    // `signal` aborts the request until its answer's headers arrive, not the reading of its body:
    // a claim answered as the node stops is read whole and handed back, never left half read (an
    // aborted body read could stay pending with nothing left to run, and the node exit with 13)
    const untilHeaders = new AbortController();
    const onAbort = () => untilHeaders.abort(signal?.reason);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener("abort", onAbort, { once: true });
    let res: Response;
    try {
      res = await this.doFetch(`${this.base}${path}`, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : raw !== undefined ? { body: raw as BodyInit } : {}),
        ...(signal ? { signal: untilHeaders.signal } : {}),
      });
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
    if (res.status >= 400 && res.status !== 409) {
      throw new NodeProtocolError(`${method} ${path}: ${res.status} ${await res.text()}`);
    }
    return res;
  }

  /**
   * Asks for the next job waiting for a GPU node, waiting up to `waitMs`; null when none came.
   * `signal` aborts the long poll (a node told to stop claims nothing more): the promise rejects.
   */
  async claim(node: string, waitMs = 0, signal?: AbortSignal): Promise<Claim | null> {
    const res = await this.call("POST", "/v1/nodes/claim", { node, wait_ms: waitMs }, undefined, signal);
    if (res.status === 204) return null;
    const c = (await res.json()) as ClaimResponse;
    return { job: c.job as Job, leaseId: c.lease_id, leaseMs: c.lease_ms, attempt: c.attempt };
  }

  async readInput(id: string, leaseId: string): Promise<Uint8Array | null> {
    const res = await this.call("GET", `/v1/nodes/jobs/${id}/input?lease_id=${encodeURIComponent(leaseId)}`);
    return res.status === 409 ? null : new Uint8Array(await res.arrayBuffer());
  }

  async progress(id: string, leaseId: string, epochs: EpochMetrics[], engine?: Job["engine"]): Promise<LeaseStatus> {
    const res = await this.call("POST", `/v1/nodes/jobs/${id}/progress`, { lease_id: leaseId, epochs, ...(engine ? { engine } : {}) });
    return res.status === 409 ? { ok: false, cancel: false } : ((await res.json()) as LeaseStatus);
  }

  async heartbeat(id: string, leaseId: string): Promise<LeaseStatus> {
    const res = await this.call("POST", `/v1/nodes/jobs/${id}/heartbeat`, { lease_id: leaseId });
    return res.status === 409 ? { ok: false, cancel: false } : ((await res.json()) as LeaseStatus);
  }

  async saveWeights(id: string, leaseId: string, bytes: Uint8Array): Promise<string | null> {
    const res = await this.call("PUT", `/v1/nodes/jobs/${id}/weights?lease_id=${encodeURIComponent(leaseId)}`, undefined, bytes);
    return res.status === 409 ? null : ((await res.json()) as { weights_key: string }).weights_key;
  }

  /** Tells the edge this node is shutting down: no claim is made for it any more, a long poll in flight included. */
  async stop(node: string): Promise<void> {
    await this.call("POST", "/v1/nodes/stop", { node });
  }

  async release(id: string, leaseId: string): Promise<{ accepted: boolean }> {
    const res = await this.call("POST", `/v1/nodes/jobs/${id}/release`, { lease_id: leaseId });
    return res.status === 409 ? { accepted: false } : ((await res.json()) as { accepted: boolean });
  }

  /** Finishes an explanation task with its explanations (POST .../explanation); false when not applied. */
  async submitExplanation(id: string, leaseId: string, body: Omit<ExplanationUpload, "lease_id">): Promise<{ accepted: boolean }> {
    const res = await this.call("POST", `/v1/nodes/jobs/${id}/explanation`, { lease_id: leaseId, ...body });
    return res.status === 409 ? { accepted: false } : ((await res.json()) as { accepted: boolean });
  }

  async saveCheckpoint(id: string, leaseId: string, bytes: Uint8Array, keep: number): Promise<boolean> {
    const res = await this.call("PUT", `/v1/nodes/jobs/${id}/checkpoint?lease_id=${encodeURIComponent(leaseId)}&keep=${keep}`, undefined, bytes);
    return res.status !== 409;
  }

  async resumeFrom(id: string, leaseId: string): Promise<Uint8Array | null> {
    const res = await this.call("GET", `/v1/nodes/jobs/${id}/checkpoint?lease_id=${encodeURIComponent(leaseId)}`);
    return res.status === 200 ? new Uint8Array(await res.arrayBuffer()) : null;
  }

  async complete(id: string, leaseId: string, outcome: RunOutcome, weightsKey: string | null): Promise<{ accepted: boolean }> {
    const res = await this.call("POST", `/v1/nodes/jobs/${id}/complete`, { lease_id: leaseId, outcome, weights_key: weightsKey });
    return (await res.json()) as { accepted: boolean };
  }
}
