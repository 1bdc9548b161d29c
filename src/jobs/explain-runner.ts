/**
 * Runs a claimed explanation task (jobs/explain-task.ts) on a GPU node: reads the task (the
 * explain object, the fine-tune's run input and final weights) under the lease, keeps the lease
 * with heartbeats, computes the explanation with the engine code the Worker runs (on the node's
 * WebGPU device when it has one and the model's ops have WGSL, else the WASM core), and uploads
 * it; the edge checks it before the task ends succeeded. A refusal (an EdgetuneError) ends the
 * task failed with its reason.
 */
import type { WebGpuDevice } from "../engine/webgpu/device.js";
import { EdgetuneError } from "../errors.js";
import { acquireKernels, releaseKernels } from "../engine/kernels.js";
import { compileForExplanation, explain, EXPLAIN_BATCH_ROWS, explainRows, explainRun, explainWeights } from "../engine/explain/index.js";
import type { EngineRuntime } from "../engine/run-types.js";
import type { EngineInfo } from "../schema/result.js";
import type { Explanations } from "../schema/explain.js";
import type { ExplanationUpload } from "../schema/explanation.js";
import { decodeExplanationTask, readStoredParameters } from "./explain-task.js";
import { decodeRunInput } from "./run-input.js";
import type { RunReport } from "./runner.js";
import type { Claim, WorkerChannel } from "./store.js";

/** What running a task needs of the edge: the job channel plus the explanation upload. */
export interface ExplanationChannel extends Pick<WorkerChannel, "readInput" | "heartbeat" | "complete"> {
  submitExplanation(id: string, leaseId: string, body: Omit<ExplanationUpload, "lease_id">): Promise<{ accepted: boolean }>;
}

/**
 * Runs one claimed explanation task to its upload (or until its lease is lost).
 *
 * @example
 * ```ts
 * if (explanationTaskOf(claim.job.id)) await runClaimedExplanation(client, claim, runtime, { log });
 * ```
 */
export async function runClaimedExplanation(
  channel: ExplanationChannel,
  claim: Claim,
  runtime: EngineRuntime,
  options: { log?: (line: string) => void; gpu?: WebGpuDevice | null } = {},
): Promise<RunReport> {
  const { job, leaseId } = claim;
  const log = options.log ?? (() => {});
  let leaseLost = false;
  // heartbeats keep the lease while the explanation runs (it reports no epochs)
  const beat = setInterval(() => {
    channel.heartbeat(job.id, leaseId).then(
      (s) => {
        if (!s.ok) leaseLost = true;
      },
      (e) => log(`heartbeat failed: ${String(e)}`),
    );
  }, Math.max(250, claim.leaseMs / 3));
  try {
    const bytes = await channel.readInput(job.id, leaseId);
    if (bytes === null) return "lease_lost";
    const started = Date.now();
    let explanations: Explanations;
    let engine: EngineInfo;
    try {
      const { header, runInput, weights } = decodeExplanationTask(bytes);
      const prepared = decodeRunInput(runInput);
      const parameters = readStoredParameters(weights);
      ({ explanations, engine } = await computeExplanation(prepared, parameters, header.spec, runtime, options.gpu ?? null));
    } catch (e) {
      if (!(e instanceof EdgetuneError)) throw e;
      await channel.complete(job.id, leaseId, { failure: e.message }, null);
      return "failed";
    }
    if (leaseLost) {
      log(`explanation ${job.id}: lease lost; abandoning this attempt`);
      return "lease_lost";
    }
    const { accepted } = await channel.submitExplanation(job.id, leaseId, { explanations, engine, duration_ms: Date.now() - started });
    log(`explanation ${job.id}: ${accepted ? "uploaded" : "upload ignored (the task had moved on)"} on ${engine.kernel}`);
    return accepted ? "completed" : "lease_lost";
  } finally {
    clearInterval(beat);
  }
}

/**
 * The explanation on the node's WebGPU device (WGSL kernels of webgpu/explain.ts) when it has
 * one and the model can be explained there, else on the WASM core: what a job's own `explain`
 * does after training (engine/train.ts). One kernel instance: an explanation's batches are not
 * split over threads.
 */
async function computeExplanation(
  prepared: ReturnType<typeof decodeRunInput>,
  parameters: ReturnType<typeof readStoredParameters>,
  spec: Parameters<typeof explainRun>[3],
  runtime: EngineRuntime,
  gpu: WebGpuDevice | null,
): Promise<{ explanations: Explanations; engine: EngineInfo }> {
  if (gpu) {
    const compiled = compileForExplanation(prepared);
    const { createWebGpuExplainModel } = await import("../engine/webgpu/explain.js");
    const net = await createWebGpuExplainModel(gpu as unknown as GPUDevice, compiled, explainWeights(prepared, compiled, parameters), EXPLAIN_BATCH_ROWS).catch(() => null);
    if (net) {
      try {
        const explanations = await explain(net, spec, explainRows(spec, prepared.validation ?? prepared.train), prepared.train);
        return { explanations, engine: { kernel: "webgpu", threads: 1, runtime: runtime.runtime } };
      } finally {
        net.close();
      }
    }
  }
  const instance = await acquireKernels(runtime.module);
  try {
    return { explanations: await explainRun(instance, prepared, parameters, spec), engine: { kernel: runtime.variant, threads: 1, runtime: runtime.runtime } };
  } finally {
    releaseKernels(runtime.module, instance);
  }
}
