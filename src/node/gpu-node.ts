/// <reference types="@webgpu/types" />
/**
 * A GPU node: a Node.js process that pulls offloaded jobs from the edge and trains them.
 * It needs only outbound HTTP to EDGETUNE_URL. It claims a job (a lease), trains it with
 * progress after every epoch (renewing the lease and hearing of cancellation), uploads the
 * weights and completes, then asks for the next. If it dies, its lease lapses and the edge
 * gives the job to another node. See docs/gpu-node.md.
 */
import type { WebGpuDevice } from "../engine/webgpu/device.js";
import { availableParallelism, hostname } from "node:os";
import { DEV_NODE_TOKEN } from "../api/auth.js";
import { NodeClient } from "../jobs/node-client.js";
import { sleep as sdkSleep } from "../sdk/core.js";
import { runClaimedJob } from "../jobs/runner.js";
import { runClaimedExplanation } from "../jobs/explain-runner.js";
import { explanationTaskOf } from "../jobs/explain-task.js";
import { loadNodeRuntime } from "./kernel-module.js";
import { ThreadPool } from "./threads.js";
import { findWebGpuDevice } from "./webgpu.js";
import { WEBGPU_MIN_FLOPS_PER_STEP } from "../engine/webgpu/select.js";

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
  /**
   * WebGPU: "auto" (default) trains jobs with large enough steps on a hardware adapter when one
   * is present; "off" never; "software" also accepts a software adapter (SwiftShader: tests only).
   */
  webgpu?: "auto" | "off" | "software" | undefined;
  /** FLOPs per step from which a job goes to the GPU (default WEBGPU_MIN_FLOPS_PER_STEP). */
  gpuMinFlopsPerStep?: number | undefined;
  /** Serve GET /healthz on this port (127.0.0.1): the node's kernels and the job in hand. */
  healthPort?: number | undefined;
  /** Stops the node: no claim after it fires (a long poll in flight is aborted); the job in hand finishes. */
  signal?: AbortSignal | undefined;
  /** "debug" also logs every claim poll; "info" (default) logs claims, jobs and trouble only. */
  logLevel?: "debug" | "info" | undefined;
  log?: ((line: string) => void) | undefined;
}

/**
 * Options from the environment: EDGETUNE_URL, EDGETUNE_NODE_TOKEN, EDGETUNE_NODE_ID, EDGETUNE_POLL_MS,
 * EDGETUNE_CLAIM_WAIT_MS, EDGETUNE_THREADS, EDGETUNE_WEBGPU (0 or off: never; software: accept
 * SwiftShader), EDGETUNE_WEBGPU_MIN_FLOPS_PER_STEP, EDGETUNE_HEALTH_PORT, EDGETUNE_LOG_LEVEL (debug: log
 * every claim poll).
 */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): GpuNodeOptions {
  return {
    url: env.EDGETUNE_URL ?? "http://127.0.0.1:8787",
    token: env.EDGETUNE_NODE_TOKEN ?? DEV_NODE_TOKEN,
    nodeId: env.EDGETUNE_NODE_ID ?? `${hostname()}-${process.pid}`,
    pollMs: Number(env.EDGETUNE_POLL_MS ?? 500),
    waitMs: Number(env.EDGETUNE_CLAIM_WAIT_MS ?? 10_000),
    threads: Number(env.EDGETUNE_THREADS ?? availableParallelism()),
    webgpu: env.EDGETUNE_WEBGPU === "0" || env.EDGETUNE_WEBGPU === "off" ? "off" : env.EDGETUNE_WEBGPU === "software" ? "software" : "auto",
    ...(env.EDGETUNE_WEBGPU_MIN_FLOPS_PER_STEP ? { gpuMinFlopsPerStep: Number(env.EDGETUNE_WEBGPU_MIN_FLOPS_PER_STEP) } : {}),
    ...(env.EDGETUNE_HEALTH_PORT ? { healthPort: Number(env.EDGETUNE_HEALTH_PORT) } : {}),
    logLevel: env.EDGETUNE_LOG_LEVEL === "debug" ? "debug" : "info",
  };
}

/**
 * Waits `ms`, or less if `signal` aborts (the node is stopping: that ends the wait, not the
 * node). The SDK's sleep, which removes its abort listener when the time is up: an idle node
 * sleeps every poll interval on its one signal (issue 21, finding 6).
 */
export const sleep = (ms: number, signal?: AbortSignal): Promise<void> => sdkSleep(ms, signal).catch(() => undefined);

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
  // a node polls for work all the time: those lines only at debug level
  const debug = options.logLevel === "debug" ? (line: string) => log(`debug: ${line}`) : () => {};
  const runtime = await loadNodeRuntime();
  const parallel = options.threads > 1 ? await ThreadPool.create(options.threads) : undefined;
  const client = new NodeClient({ baseUrl: options.url, token: options.token });
  const gpu = await openGpu(options, log);
  log(`pulling jobs from ${options.url} (kernels: ${runtime.variant}, threads: ${options.threads}${gpu.device ? ", webgpu" : ""})`);
  if (options.token === DEV_NODE_TOKEN && !/^https?:\/\/(localhost|127\.|\[::1\])/.test(options.url)) {
    log("EDGETUNE_NODE_TOKEN is not set: the development token works only against a local `npm run dev`; a deployed Worker refuses it");
  }
  // what GET /healthz reports: the kernels this node trains with, and the job in hand
  const health = {
    status: "ok",
    node: options.nodeId,
    edge: options.url,
    kernels: { wasm: runtime.variant, threads: options.threads, webgpu: gpu.device !== null },
    job: null as string | null,
    jobs_run: 0,
  };
  const server = options.healthPort === undefined ? null : await serveHealth(options.healthPort, () => health, log);
  let failures = 0;
  while (!options.signal?.aborted) {
    try {
      debug(`claiming (long poll up to ${options.waitMs} ms)`);
      const claim = await untilAborted(client.claim(options.nodeId, options.waitMs, options.signal), options.signal, (late) => {
        // a claim answered after the node began to stop: hand it straight back
        if (late) void client.release(late.job.id, late.leaseId).catch(() => undefined);
      });
      failures = 0;
      if (!claim) {
        debug("no job waiting");
        await sleep(options.pollMs, options.signal);
        continue;
      }
      if (options.signal?.aborted) {
        // told to stop while this claim came back: hand the job to another node now, untrained
        const { accepted } = await client.release(claim.job.id, claim.leaseId);
        log(`stopping: handed ${claim.job.id} back${accepted ? "" : " (its lease had already moved on)"}`);
        break;
      }
      log(`claimed ${claim.job.id} (attempt ${claim.attempt}, lease ${claim.leaseMs} ms)`);
      health.job = claim.job.id;
      // an explanation task (POST /v1/fine-tunes/{id}/explain past the in-Worker budget) or a training job
      if (explanationTaskOf(claim.job.id)) await runClaimedExplanation(client, claim, runtime, { log, gpu: gpu.device });
      else
        await runClaimedJob(client, claim, runtime, {
          placement: "gpu-node",
          log,
          ...(parallel ? { parallel } : {}),
          ...(gpu.device ? { gpu: gpu.device, gpuMinFlopsPerStep: options.gpuMinFlopsPerStep } : {}),
        });
      health.job = null;
      health.jobs_run += 1;
    } catch (e) {
      if (options.signal?.aborted) break; // the long poll was aborted: stop claiming
      // the edge is down or restarting: back off and try again
      failures += 1;
      const wait = Math.min(10_000, options.pollMs * 2 ** Math.min(failures, 5));
      log(`cannot reach the edge (${e instanceof Error ? e.message : String(e)}); retrying in ${wait} ms`);
      await sleep(wait, options.signal);
    }
  }
  if (options.signal?.aborted) {
    // the edge may not see the aborted long poll end at once (a proxy in between): make sure it
    // claims nothing more for this node
    await client.stop(options.nodeId).catch((e) => log(`could not tell the edge this node stops (${e instanceof Error ? e.message : String(e)}); a job claimed meanwhile returns to the queue after its lease`));
  }
  await parallel?.close();
  gpu.device?.destroy();
  server?.close();
  log("stopped");
}

/**
 * `work`, or a rejection as soon as `signal` aborts, whatever state `work` is in: the node's
 * loop never waits on a request that an abort left unsettled (Node's fetch can leave one pending
 * with nothing more to run, and the process would then exit with 13 instead of stopping).
 * `late` gets what `work` gives if it settles after the abort.
 *
 * @example
 * ```ts
 * const claim = await untilAborted(client.claim(node, 25_000, signal), signal, (c) => c && client.release(c.job.id, c.leaseId));
 * ```
 */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined, late: (value: T) => void): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    let aborted = false;
    const onAbort = () => {
      aborted = true;
      reject(signal.reason ?? new Error("aborted"));
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        if (aborted) late(value);
        else resolve(value);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        if (!aborted) reject(e);
      },
    );
  });
}

/** A loopback HTTP server answering GET /healthz with the node's state. */
async function serveHealth(port: number, state: () => object, log: (line: string) => void) {
  const { createServer } = await import("node:http");
  const server = createServer((req, res) => {
    const ok = req.method === "GET" && req.url === "/healthz";
    res.writeHead(ok ? 200 : 404, { "content-type": "application/json" });
    res.end(JSON.stringify(ok ? state() : { status: 404, title: "Not found" }));
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  log(`health at http://127.0.0.1:${port}/healthz`);
  return server;
}

/**
 * The node's WebGPU device, or none (then every job trains on threaded WASM). Logs which; a
 * lost device (driver reset) sends later jobs to WASM.
 */
async function openGpu(options: GpuNodeOptions, log: (line: string) => void): Promise<{ device: WebGpuDevice | null }> {
  const state: { device: WebGpuDevice | null } = { device: null };
  if (options.webgpu === "off") {
    log("WebGPU: off (EDGETUNE_WEBGPU=0); jobs train on WASM");
    return state;
  }
  const found = await findWebGpuDevice({ allowSoftware: options.webgpu === "software" });
  if (!found.device) {
    log(`WebGPU: not used (${found.description}); jobs train on WASM`);
    return state;
  }
  const device = found.device as unknown as GPUDevice; // WebGpuDevice names a subset; it is a GPUDevice
  state.device = device;
  const min = options.gpuMinFlopsPerStep ?? WEBGPU_MIN_FLOPS_PER_STEP;
  log(
    `WebGPU: ${found.description}${found.software ? " (a software adapter: for testing, never for speed)" : ""}; ` +
      `jobs of at least ${min.toExponential(1)} FLOP per step train on it, smaller ones on WASM`,
  );
  void device.lost.then((info) => {
    if (state.device !== device) return;
    state.device = null;
    if (info.reason !== "destroyed") log(`WebGPU device lost (${info.message}); jobs train on WASM from now on`);
  });
  return state;
}
