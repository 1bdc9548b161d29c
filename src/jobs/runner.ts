/**
 * Runs a claimed job: read its input, train with progress reported after every epoch (which
 * also renews the lease and carries cancellation back), keep the lease alive with heartbeats,
 * store the weights, complete. The same function runs in the Worker's queue consumer (channel =
 * the store) and on GPU nodes (channel = the /v1/nodes HTTP API).
 */
import type { WebGpuDevice } from "../engine/webgpu/device.js";
import { EdgetuneError } from "../errors.js";
import { runPreparedRaw, type CheckpointEvent, type EngineRuntime } from "../engine/train.js";
import { checkpointSummary } from "../engine/checkpoint.js";
import { useWebGpu } from "../engine/webgpu/select.js";
import type { Parallelism } from "../engine/parallel.js";
import type { EpochMetrics, ProgressEvent } from "../schema/result.js";
import { decodeRunInput } from "./run-input.js";
import type { Claim, WorkerChannel } from "./store.js";

/**
 * Progress reports are coalesced to about one every REPORT_INTERVAL_MS (the first epoch's at
 * once), so that a run of short epochs costs a few writes a second instead of one per epoch
 * (issue 16, item 3). Epochs not yet reported when the run ends go with its completion.
 *
 * Deployed Workers advance Date.now() only after I/O (a Spectre mitigation), so "250 ms since
 * the last report" cannot be seen between two reports there. The reports are the I/O: the time
 * between two answers over the epochs between them gives the epoch's duration, and the next
 * report goes after the number of epochs that takes REPORT_INTERVAL_MS (at most
 * REPORT_MAX_EPOCHS). Where the clock does advance (Node, wrangler dev) the interval also sends one.
 */
export const REPORT_INTERVAL_MS = 250;
export const REPORT_MAX_EPOCHS = 10_000;

/** How a run on a worker ended. */
export type RunReport = "completed" | "lease_lost" | "failed";

/**
 * Runs one claimed job to completion (or until its lease is lost).
 *
 * @example
 * ```ts
 * const claim = await store.claimNext("node-1");
 * if (claim) await runClaimedJob(store.channel, claim, runtime, { placement: "gpu-node" });
 * ```
 */
export async function runClaimedJob(
  channel: WorkerChannel,
  claim: Claim,
  runtime: EngineRuntime,
  options: {
    placement: "edge" | "gpu-node";
    log?: (line: string) => void;
    parallel?: Parallelism;
    /** A WebGPU device (GPU nodes): jobs with large enough steps train on it (see engine/webgpu/select.ts). */
    gpu?: WebGpuDevice | null;
    gpuMinFlopsPerStep?: number;
    /**
     * The job's stored run input, already in memory (the Worker's request that accepted the job
     * and starts it at once): not read back from storage.
     */
    input?: Uint8Array;
  },
): Promise<RunReport> {
  const { job, leaseId } = claim;
  const log = options.log ?? (() => {});
  const controller = new AbortController();
  let leaseLost = false;
  let pauseAsked = false;
  const onLease = (status: { ok: boolean; cancel: boolean; pause?: boolean }) => {
    if (!status.ok) leaseLost = true;
    if (status.pause) pauseAsked = true;
    if (!status.ok || status.cancel) controller.abort();
  };
  // heartbeats keep the lease while an epoch takes longer than a third of it
  const beat = setInterval(() => {
    channel.heartbeat(job.id, leaseId).then(onLease, (e) => log(`heartbeat failed: ${String(e)}`));
  }, Math.max(250, claim.leaseMs / 3));

  try {
    const bytes = options.input ?? (await channel.readInput(job.id, leaseId));
    if (bytes === null) return "lease_lost";
    let prepared;
    try {
      prepared = decodeRunInput(bytes);
    } catch (e) {
      const reason = e instanceof EdgetuneError ? e.message : `the stored input could not be read: ${String(e)}`;
      await channel.complete(job.id, leaseId, { failure: reason }, null);
      return "failed";
    }
    const onGpu = useWebGpu(prepared, options);
    const engine = onGpu
      ? { kernel: "webgpu" as const, threads: 1, runtime: runtime.runtime }
      : { kernel: runtime.variant, threads: options.parallel?.threads ?? 1, runtime: runtime.runtime };
    // a report is awaited before training goes on: its answer renews the lease and carries a
    // cancel, so a cancelled run stops within an epoch or REPORT_INTERVAL_MS, whichever is longer
    let unreported: EpochMetrics[] = [];
    let reportedAt = -Infinity;
    let answeredAt = Date.now();
    let answeredAtPerf = performance.now();
    let every = 1; // epochs per report, from the measured epoch duration
    const onProgress = (event: ProgressEvent): Promise<void> | undefined => {
      if (event.type !== "epoch") return undefined;
      const { type: _type, ...metrics } = event;
      unreported.push(metrics);
      if (unreported.length < every && Date.now() - reportedAt < REPORT_INTERVAL_MS) return undefined;
      reportedAt = Date.now();
      // the epochs' own time, from the last answer to this report, where the clock moves while
      // code runs (Node, wrangler dev); 0 where it stands still (a deployed Worker)
      const trainedMs = performance.now() - answeredAtPerf;
      const epochs = unreported;
      unreported = [];
      return channel.progress(job.id, leaseId, epochs, engine).then(
        (status) => {
          const now = Date.now(); // fresh: the report was I/O
          answeredAtPerf = performance.now();
          // without the epochs' own time, answer to answer: training plus the report's round trip,
          // which overstates short epochs and makes the reports sparser only over a few rounds
          const msPerEpoch = Math.max(1e-3, (trainedMs > 0 ? trainedMs : now - answeredAt) / epochs.length);
          every = Math.max(1, Math.min(REPORT_MAX_EPOCHS, Math.floor(REPORT_INTERVAL_MS / msPerEpoch)));
          answeredAt = now;
          onLease(status);
        },
        (e) => {
          // sent again with the next report: the edge takes epochs only in sequence (a gap is a 422)
          unreported = [...epochs, ...unreported];
          log(`progress report failed: ${String(e)}`);
        },
      );
    };
    // a retry, a resumed pause or from_checkpoint continues from the job's newest checkpoint
    // (whose history the edge has recorded as this attempt's first epochs); a first run has none
    const resumeFrom = claim.fresh ? null : await channel.resumeFrom(job.id, leaseId);
    const keep = prepared.request.training.checkpoints?.keep ?? 1;
    const onCheckpoint = async (checkpoint: CheckpointEvent) => {
      let saved: boolean;
      try {
        saved = await channel.saveCheckpoint(job.id, leaseId, checkpoint.bytes, keep);
      } catch (e) {
        // a refused upload (past MAX_UPLOAD_BYTES) or a failed call: training goes on without
        // this checkpoint; a retry then continues from an earlier one, or from the start
        log(`job ${job.id}: checkpoint of epoch ${checkpoint.epoch} not stored: ${String(e)}`);
        return;
      }
      if (!saved) onLease({ ok: false, cancel: false });
    };
    log(
      `job ${job.id}: training (attempt ${claim.attempt}) on ${engine.kernel}${engine.threads > 1 ? ` x${engine.threads} threads` : ""}` +
        (resumeFrom ? `, from the checkpoint of epoch ${checkpointSummary(resumeFrom).epoch}` : ""),
    );
    let run;
    try {
      run = await runPreparedRaw(runtime, prepared, {
        ...(resumeFrom ? { resumeFrom } : {}),
        onCheckpoint,
        pauseRequested: () => pauseAsked,
        id: job.id,
        placement: options.placement,
        signal: controller.signal,
        onProgress,
        ...(options.parallel ? { parallel: options.parallel } : {}),
        ...(onGpu ? { gpu: options.gpu, gpuMinFlopsPerStep: options.gpuMinFlopsPerStep } : {}),
      });
    } catch (e) {
      // a refusal of the run itself (a half-precision output out of range, issue 20 finding 7)
      // ends the job with its reason: another attempt would meet it again
      if (!(e instanceof EdgetuneError) || leaseLost) throw e;
      await channel.complete(job.id, leaseId, { failure: e.message }, null);
      return "failed";
    }
    const { result, weights } = run;
    if (leaseLost) {
      log(`job ${job.id}: lease lost; abandoning this attempt`);
      return "lease_lost";
    }
    // a paused run's state is its checkpoint: it has no weights of its own
    const weightsKey = result.status === "paused" ? null : await channel.saveWeights(job.id, leaseId, weights);
    if (weightsKey === null && result.status !== "paused") return "lease_lost";
    const { id: _id, ...outcome } = result;
    const { accepted } = await channel.complete(job.id, leaseId, outcome, weightsKey);
    log(`job ${job.id}: ${result.status}${accepted ? "" : " (completion ignored: the job had moved on)"}`);
    return accepted ? "completed" : "lease_lost";
  } finally {
    clearInterval(beat);
  }
}
