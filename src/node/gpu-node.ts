/**
 * A GPU node: a Node.js process that pulls offloaded jobs from the edge and trains them.
 * It needs only outbound HTTP to EDGETUNE_URL. It claims a job (a lease), trains it with
 * progress after every epoch (renewing the lease and hearing of cancellation), uploads the
 * weights and completes, then asks for the next. If it dies, its lease lapses and the edge
 * gives the job to another node. See docs/gpu-node.md.
 */
import { availableParallelism, hostname } from "node:os";
import { DEV_NODE_TOKEN } from "../api/auth.js";
import { NodeClient } from "../jobs/node-client.js";
import { runClaimedJob } from "../jobs/runner.js";
import { loadNodeRuntime } from "./kernel-module.js";
import { ThreadPool } from "./threads.js";

export interface GpuNodeOptions {
  /** The edge, e.g. http://127.0.0.1:8787 */
  url: string;
  token: string;
  nodeId: string;
  /** Wait between claims when nothing is waiting, in ms. */
  pollMs: number;
  /** How long one claim waits at the edge for a job (long poll), in ms. */
  waitMs: number;
  /** Threads per job (data-parallel over each batch, for jobs large enough to gain). */
  threads: number;
  signal?: AbortSignal;
  log?: (line: string) => void;
}

/** Options from the environment: EDGETUNE_URL, EDGETUNE_NODE_TOKEN, EDGETUNE_NODE_ID, EDGETUNE_POLL_MS, EDGETUNE_CLAIM_WAIT_MS, EDGETUNE_THREADS. */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): GpuNodeOptions {
  return {
    url: env.EDGETUNE_URL ?? "http://127.0.0.1:8787",
    token: env.EDGETUNE_NODE_TOKEN ?? DEV_NODE_TOKEN,
    nodeId: env.EDGETUNE_NODE_ID ?? `${hostname()}-${process.pid}`,
    pollMs: Number(env.EDGETUNE_POLL_MS ?? 500),
    waitMs: Number(env.EDGETUNE_CLAIM_WAIT_MS ?? 10_000),
    threads: Number(env.EDGETUNE_THREADS ?? availableParallelism()),
  };
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });

/**
 * Runs the node until `signal` aborts.
 *
 * @example
 * ```ts
 * const controller = new AbortController();
 * await runGpuNode({ ...optionsFromEnv(), signal: controller.signal });
 * ```
 */
export async function runGpuNode(options: GpuNodeOptions): Promise<void> {
  const log = options.log ?? ((line: string) => console.log(`[gpu-node ${options.nodeId}] ${line}`));
  const runtime = await loadNodeRuntime();
  const parallel = options.threads > 1 ? await ThreadPool.create(options.threads) : undefined;
  const client = new NodeClient({ baseUrl: options.url, token: options.token });
  log(`pulling jobs from ${options.url} (kernels: ${runtime.variant}, threads: ${options.threads})`);
  let failures = 0;
  while (!options.signal?.aborted) {
    try {
      const claim = await client.claim(options.nodeId, options.waitMs);
      failures = 0;
      if (!claim) {
        await sleep(options.pollMs, options.signal);
        continue;
      }
      log(`claimed ${claim.job.id} (attempt ${claim.attempt}, lease ${claim.leaseMs} ms)`);
      await runClaimedJob(client, claim, runtime, { placement: "gpu-node", log, ...(parallel ? { parallel } : {}) });
    } catch (e) {
      // the edge is down or restarting: back off and try again
      failures += 1;
      const wait = Math.min(10_000, options.pollMs * 2 ** Math.min(failures, 5));
      log(`cannot reach the edge (${e instanceof Error ? e.message : String(e)}); retrying in ${wait} ms`);
      await sleep(wait, options.signal);
    }
  }
  await parallel?.close();
  log("stopped");
}
