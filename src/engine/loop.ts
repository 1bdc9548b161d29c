/**
 * The training loop over a backend (runLoop): epochs of { backend.step: forward, loss,
 * zero_grad, backward, clip, update; schedule } -> validation, events, early stopping ->
 * the result. It does not know where the numbers live (wasm-backend.ts, webgpu/backend.ts):
 * the orchestrator (train.ts) chooses the backend, and the explanation's, and hands them here.
 */
import type { EpochMetrics, FineTuneResult, RunError } from "../schema/result.js";
import { writeSafetensors, type WritableTensor } from "../formats/safetensors.js";
import { storedHalfDtype } from "./model.js";
import type { TrainingBackend } from "./backend.js";
import type { PreparedRun } from "./prepare.js";
import { identityOrder, MT19937, mixSeed, shuffleInPlace } from "./rng.js";
import { poissonBatch, privacyReport, uniformSource } from "./privacy/index.js";
import { createScheduler } from "./schedules.js";
import { ADAPTER_METADATA_KEY, adapterConfig, fitOutputRange, loraLayout } from "./adapters/output.js";
import type { NamedTensor } from "./backend.js";
import type { Explanations } from "../schema/explain.js";
import type { LrFinderReport } from "./strategy.js";
import type { EngineRuntime, RawRunResult, TrainOptions } from "./run-types.js";
import { stepsWithinBudget, wouldOverrun } from "./deadline.js";
import { modelFingerprint, writeTrainingCheckpoint, type TrainingCheckpoint, type TrainingState } from "./checkpoint.js";
import { UnprocessableError } from "../errors.js";

/**
 * The training loop over a backend: epochs of batches in order or shuffled (or Poisson-sampled,
 * for a private run), the schedule, the per-epoch metrics and events, early stopping,
 * cancellation, and the result. The backend is closed when it returns.
 *
 * @example
 * ```ts
 * const backend = await createWasmBackend(instance, prepared, initial, { variant: "wasm-simd", parallel: null });
 * const { result, weights } = await runLoop(backend, runtime, prepared, {}, now());
 * ```
 */
export async function runLoop(
  backend: TrainingBackend,
  runtime: Pick<EngineRuntime, "runtime">,
  prepared: PreparedRun,
  options: TrainOptions,
  started: number,
  explainWith?: (parameters: NamedTensor[]) => Explanations | Promise<Explanations>,
  lrFinder: LrFinderReport | null = null,
  resume: TrainingCheckpoint | null = null,
): Promise<RawRunResult> {
  const { request, plan, train: trainTable, validation: validationTable } = prepared;
  const t = request.training;
  try {
    if ((t.checkpoints || resume) && !backend.saveTrainingState) {
      throw new UnprocessableError("unsupported", [{ path: resume ? "from_checkpoint" : "training.checkpoints", message: `the ${backend.kernel} backend cannot checkpoint; use kernel "wasm"` }]);
    }
    const scheduler = createScheduler(t.schedule, backend.group, {
      interval: plan.interval,
      totalSchedulerSteps: plan.totalSchedulerSteps,
    });
    const history: EpochMetrics[] = [];
    const order = identityOrder(trainTable.rows);
    const shuffleRng = new MT19937(mixSeed(t.seed, 0x5348_5546)); // "SHUF"
    const early = t.early_stopping;
    const earlyMode = early ? (early.mode === "auto" ? (early.monitor === "val_accuracy" ? "max" : "min") : early.mode) : "min";
    let earlyBest = earlyMode === "min" ? Infinity : -Infinity;
    let earlyBestEpoch: number | null = null;
    let wait = 0;
    let step = 0;
    let samples = 0;
    let status = "succeeded" as FineTuneResult["status"];
    let error: RunError | undefined;
    let lastYield = now();
    let lastStepMs = 0;
    let stepsSinceYield = 0;
    const yieldMs = options.yieldEvery?.ms ?? (options.signal ? 50 : Infinity);
    const yieldSteps = options.yieldEvery?.steps ?? Infinity;
    const yields = yieldMs !== Infinity || yieldSteps !== Infinity;
    const yieldDue = () => yields && (stepsSinceYield >= yieldSteps || now() - lastYield > yieldMs);
    // a turn of the event loop: an abort is delivered, other requests of the isolate are served
    let yieldedMs = 0;
    const yieldTurn = async () => {
      const turnStarted = now();
      await new Promise((resolve) => setTimeout(resolve, 0));
      const after = now();
      yieldedMs += after - turnStarted; // time other requests had: not this run's (its budget)
      lastYield = after;
      stepsSinceYield = 0;
    };
    // a private run with Poisson sampling: each step's rows drawn afresh (privacy/index.ts)
    const privacy = prepared.privacy ?? null;
    const poisson = privacy?.poisson ? { order: new Int32Array(trainTable.rows), source: uniformSource(privacy.secure, mixSeed(t.seed, 0x504f_4953)) } : null; // "POIS"
    // the backend's fused steps (program.ts), for batches of the epoch's order (not Poisson's)
    const fused = poisson ? null : (backend.fused ?? null);
    const chunkLrs = new Float64Array(fused ? fused.maxSteps : 0);

    // a causal LM reports perplexity, exp(mean next-token cross-entropy)
    const perplexity = (loss: number) => (prepared.huggingface?.task === "causal-lm" ? { val_perplexity: Math.exp(loss) } : {});
    // the starting weights' validation metrics: what fine-tuning is compared against (a resumed
    // run's are the checkpoint's: its starting weights are not the run's)
    const before = validationTable && !resume ? await backend.evaluate() : null;
    const initial = resume
      ? (resume.state.initial ?? undefined)
      : before
        ? { val_loss: before.valLoss, ...(before.valAccuracy !== undefined ? { val_accuracy: before.valAccuracy } : {}), ...perplexity(before.valLoss) }
        : undefined;

    // ---- a resumed run: counters, optimizer and early-stopping state from the checkpoint; the
    // schedule and the seeded streams re-derived and advanced as far as it says (checkpoint.ts)
    let firstEpoch = 1;
    let stoppedEarly = false;
    if (resume) {
      const r = resume.state;
      await backend.loadTrainingState!(resume.backend);
      firstEpoch = r.epoch + 1;
      step = r.step;
      samples = r.samples;
      history.push(...r.history);
      if (r.early_stopping) {
        earlyBest = r.early_stopping.best ?? earlyBest;
        earlyBestEpoch = r.early_stopping.best_epoch;
        wait = r.early_stopping.wait;
        stoppedEarly = r.early_stopping.stopped;
      }
      if (scheduler) {
        if (plan.interval === "step") for (let i = 0; i < r.scheduler.steps; i++) scheduler.step();
        else for (const metrics of r.history) stepEpochScheduler(metrics, Boolean(validationTable));
      }
      if (t.shuffle) for (let i = 0; i < r.rng.shuffles; i++) shuffleInPlace(shuffleRng, order);
      if (poisson) for (let i = 0; i < r.rng.poisson_batches; i++) poissonBatch(poisson.source, trainTable.rows, privacy!.sampleRate, poisson.order);
    }
    const stepsBefore = step; // a resumed run's budget counts only the steps this call runs
    let schedulerSteps = resume?.state.scheduler.steps ?? 0;
    let shuffles = resume?.state.rng.shuffles ?? 0;
    let poissonBatches = resume?.state.rng.poisson_batches ?? 0;
    function stepEpochScheduler(metrics: EpochMetrics, validated: boolean): void {
      if (t.schedule.type === "plateau") scheduler!.step(monitorValue(metrics, t.schedule.monitor ?? (validated ? "val_loss" : "train_loss")));
      else scheduler!.step();
    }
    const checkpoint = async (epoch: number, metrics: EpochMetrics, stopped: boolean) => {
      const state: TrainingState = {
        version: 1,
        epoch,
        step,
        samples,
        optimizer: { t: 0, initialised: false }, // the backend's, written by writeTrainingCheckpoint
        scheduler: { interval: plan.interval === "step" ? "step" : "epoch", steps: schedulerSteps },
        rng: { shuffles, poisson_batches: poissonBatches },
        early_stopping: early ? { best: Number.isFinite(earlyBest) ? earlyBest : null, best_epoch: earlyBestEpoch, wait, stopped } : null,
        initial: initial ?? null,
        history: [...history],
        model: modelFingerprint(prepared.model.state),
      };
      const bytes = writeTrainingCheckpoint({ state, weights: await backend.parameters(), backend: await backend.saveTrainingState!() });
      const delivered = options.onCheckpoint?.({ epoch, step, metrics, bytes });
      if (delivered instanceof Promise) await delivered;
    };

    epochs: for (let epoch = firstEpoch; epoch <= t.epochs && !stoppedEarly; epoch++) {
      if (t.shuffle) {
        shuffleInPlace(shuffleRng, order);
        shuffles += 1;
      }
      let lossSum = 0;
      let lossRows = 0;
      let lastLr = backend.group.lr;
      // ---- the fused path (program.ts): chunks of the epoch's steps, one kernel-core call each;
      // between chunks, the same checks as between steps below (cancellation, budget, yields)
      if (fused) {
        fused.setOrder(t.shuffle ? order : null);
        for (let b = 0; b < plan.stepsPerEpoch; ) {
          if (options.signal?.aborted) {
            status = "cancelled";
            error = { code: "cancelled", message: "cancelled by the caller", step, epoch };
            break epochs;
          }
          let count = Math.min(plan.stepsPerEpoch - b, fused.maxSteps);
          if (yields) {
            if (yieldSteps !== Infinity) count = Math.min(count, Math.max(1, yieldSteps - stepsSinceYield));
            if (yieldMs !== Infinity) count = Math.min(count, lastStepMs > 0 ? Math.max(1, Math.floor(yieldMs / lastStepMs)) : FIRST_FUSED_CHUNK);
          }
          if (options.budget) {
            count = stepsWithinBudget(options.budget, now() - started - yieldedMs, step - stepsBefore, lastStepMs, count);
            if (count === 0) {
              status = "cancelled";
              error = { code: "over_budget", message: overBudgetMessage(options.budget, step), step, epoch };
              break epochs;
            }
          }
          // each step's optimizer scalars with the lr the schedule gives it
          for (let s = 0; s < count; s++) {
            chunkLrs[s] = backend.group.lr;
            fused.prepare(s);
            if (plan.interval === "step" && scheduler) {
              scheduler.step();
              schedulerSteps += 1;
            }
          }
          const chunkStarted = now();
          const ran = fused.run(b, count);
          lastStepMs = (now() - chunkStarted) / Math.max(1, ran.done + (ran.fault ? 1 : 0));
          for (let s = 0; s < ran.done; s++) {
            const rows = Math.min(t.batch_size, trainTable.rows - (b + s) * t.batch_size);
            step += 1;
            lastLr = chunkLrs[s]!;
            const stepLoss = ran.losses[s]!;
            lossSum += stepLoss * rows;
            lossRows += rows;
            samples += rows;
            if (options.stepEvents) options.onProgress?.({ type: "step", step, epoch, loss: stepLoss, lr: lastLr });
          }
          if (ran.fault) {
            step += 1;
            status = "diverged";
            error = { code: ran.fault.code, message: `${ran.fault.what} at step ${step} (epoch ${epoch}); weights are those before this step`, step, epoch };
            break epochs;
          }
          b += count;
          stepsSinceYield += count;
          if (yieldDue()) await yieldTurn();
        }
      } else for (let b = 0; b < plan.stepsPerEpoch; b++) {
        if (options.signal?.aborted) {
          status = "cancelled";
          error = { code: "cancelled", message: "cancelled by the caller", step, epoch };
          break epochs;
        }
        if (options.budget && wouldOverrun(options.budget, now() - started - yieldedMs, step - stepsBefore, lastStepMs)) {
          status = "cancelled";
          error = { code: "over_budget", message: overBudgetMessage(options.budget, step), step, epoch };
          break epochs;
        }
        const stepStarted = now();
        let start = b * t.batch_size;
        let rows = Math.min(t.batch_size, trainTable.rows - start);
        let batchOrder = t.shuffle ? order : null;
        if (poisson) {
          start = 0;
          rows = poissonBatch(poisson.source, trainTable.rows, privacy!.sampleRate, poisson.order);
          poissonBatches += 1;
          batchOrder = poisson.order;
        }
        step += 1;
        lastLr = backend.group.lr;
        const pending = backend.step({ order: batchOrder, start, rows }, mixSeed(t.seed, step));
        const outcome = pending instanceof Promise ? await pending : pending;
        lastStepMs = now() - stepStarted;
        if ("fault" in outcome) {
          status = "diverged";
          error = {
            code: outcome.fault.code,
            message: `${outcome.fault.what} at step ${step} (epoch ${epoch}); weights are those before this step`,
            step,
            epoch,
          };
          break epochs;
        }
        if (plan.interval === "step" && scheduler) {
          scheduler.step();
          schedulerSteps += 1;
        }
        lossSum += outcome.loss * rows;
        lossRows += rows;
        samples += rows;
        if (options.stepEvents) options.onProgress?.({ type: "step", step, epoch, loss: outcome.loss, lr: lastLr });
        stepsSinceYield += 1;
        if (yieldDue()) await yieldTurn();
      }

      // ---- end of epoch: validation, metrics, schedule, early stopping
      const metrics: EpochMetrics = { epoch, train_loss: lossRows > 0 ? lossSum / lossRows : 0, lr: lastLr };
      if (privacy) metrics.epsilon = privacyReport(privacy, step).epsilon;
      const evaluation = validationTable ? await backend.evaluate() : null;
      if (evaluation) {
        metrics.val_loss = evaluation.valLoss;
        if (evaluation.valAccuracy !== undefined) metrics.val_accuracy = evaluation.valAccuracy;
        Object.assign(metrics, perplexity(evaluation.valLoss));
      }
      history.push(metrics);
      const reported = options.onProgress?.({ type: "epoch", ...metrics });
      if (reported instanceof Promise) await reported.catch(() => undefined);

      if (plan.interval === "epoch" && scheduler) {
        stepEpochScheduler(metrics, evaluation !== null);
        schedulerSteps += 1;
      }

      let stopping = false;
      if (early) {
        const current = monitorValue(metrics, early.monitor);
        const improved = earlyMode === "min" ? current < earlyBest - early.min_delta : current > earlyBest + early.min_delta;
        if (improved) {
          earlyBest = current;
          earlyBestEpoch = epoch;
          wait = 0;
          await backend.saveBest();
        } else {
          wait += 1;
          if (wait >= early.patience) stopping = true;
        }
      }
      // ---- checkpoint: every `every` epochs, and before a pause
      const pausing = !stopping && epoch < t.epochs && options.pauseRequested?.() === true;
      const canCheckpoint = backend.saveTrainingState !== undefined;
      if (canCheckpoint && ((t.checkpoints && epoch % t.checkpoints.every === 0) || pausing)) await checkpoint(epoch, metrics, stopping);
      if (pausing) {
        status = "paused";
        break;
      }
      if (stopping) break;
      if (yieldDue()) await yieldTurn();
    }

    if (early?.restore_best_weights && earlyBestEpoch !== null && status === "succeeded") await backend.restoreBest();

    // ---- result
    // an adapter run's file is its full state, with the layout that converts it to peft or merged
    // on the way out (runPrepared, and the API's downloads: convertWeights)
    const lora = prepared.model.lora
      ? { ...loraLayout(prepared.model, prepared.originalNames, request.output.format), ...(request.output.overflow === "clamp" ? { overflow: "clamp" as const } : {}) }
      : null;
    // an adapter run over a 16-bit base stores its frozen tensors in that dtype (storedHalfDtype),
    // read straight from the kernel core's memory when the backend can: no float32 copy of the base
    const halfFrozen = prepared.model.lora !== null && request.output.dtype === "float32" && prepared.model.baseDtype !== "float32";
    const parameters = !halfFrozen || request.explain || !backend.storedParameters ? await backend.parameters() : null;
    // half-precision output: a weight beyond the format's range is a 422 naming it, or clamped
    const stored: WritableTensor[] = parameters
      ? fitOutputRange(parameters, request.output.dtype, request.output.overflow).map((t) => {
          const state = halfFrozen ? prepared.model.state.find((s) => s.name === t.name) : undefined;
          const half = state ? storedHalfDtype(prepared.model, state, request.output.dtype) : null;
          return half ? { ...t, dtype: half } : t;
        })
      : await backend.storedParameters!(request.output.dtype);
    // weightsInKernelMemory: the file goes into the memory that training no longer needs (the
    // tensors it is written from are copies, or views of the state block below it)
    const into = options.weightsInKernelMemory && !request.explain && backend.spareBuffer ? backend.spareBuffer : undefined;
    const weights = writeSafetensors(stored, {
      ...(into ? { into } : {}),
      dtype: request.output.dtype,
      metadata: { format: "pt", producer: "edgetune", ...(lora ? { [ADAPTER_METADATA_KEY]: JSON.stringify(lora) } : {}) },
    });
    stored.length = 0; // the views over the kernel core's memory, not kept
    const duration = now() - started;
    const result: RawRunResult["result"] = {
      id: options.id ?? newId(),
      status,
      metrics: {
        ...(initial ? { initial } : {}),
        history,
        best_epoch: early ? earlyBestEpoch : bestEpoch(history),
        steps: step - (status === "diverged" ? 1 : 0),
        samples_per_second: duration > 0 ? (samples / duration) * 1000 : 0,
        duration_ms: duration,
        ...(lrFinder ? { lr_finder: { lr: lrFinder.lr, lrs: lrFinder.lrs, losses: lrFinder.losses, method: lrFinder.method } } : {}),
        ...(privacy ? { privacy: privacyReport(privacy, step - (status === "diverged" ? 1 : 0)) } : {}),
      },
      plan: {
        params: plan.params,
        trainable_params: plan.trainable_params,
        flops: plan.flops,
        memory_bytes: plan.memory_bytes,
        groups: plan.groups,
        steps: plan.steps,
        ...(plan.batch_size !== undefined ? { batch_size: plan.batch_size } : {}),
        ...(plan.loss !== undefined ? { loss: plan.loss } : {}),
        ...(plan.lr_finder_steps !== undefined ? { lr_finder_steps: plan.lr_finder_steps } : {}),
        placement: options.placement ?? "local",
      },
      engine: { kernel: backend.kernel, threads: backend.threads, runtime: runtime.runtime },
      ...(prepared.huggingface ? { huggingface: prepared.huggingface } : {}),
      ...(request.adapter && prepared.model.lora
        ? { adapter_config: adapterConfig(request.adapter, prepared.model, prepared.huggingface?.task ?? null, modelType(prepared)) }
        : {}),
      ...(request.adapter && request.adapter.r > WORKERS_AI_MAX_LORA_RANK
        ? { warnings: [`adapter.r is ${request.adapter.r}: Workers AI serves LoRA adapters of rank up to ${WORKERS_AI_MAX_LORA_RANK}, so it will not take this one`] }
        : {}),
      ...(error ? { error } : {}),
    };
    // request.explain: attributions of the final (or restored-best) weights of a run that succeeded
    if (explainWith && request.explain && status === "succeeded") result.explanations = await explainWith(parameters ?? (await backend.parameters()));
    return { result, weights };
  } finally {
    backend.close();
  }
}

// ------------------------------------------------------------------ pieces of the loop

function overBudgetMessage(budget: NonNullable<TrainOptions["budget"]>, stepsRun: number): string {
  return `stopped before step ${stepsRun + 1}, which would take the run past its budget of ${(budget.maxMs / 1000).toFixed(1)} s; weights are those after step ${stepsRun}. Send it with mode "async" to run it all.`;
}



/** Steps of the first fused chunk of a run that yields on a clock, before a step's time is known. */
const FIRST_FUSED_CHUNK = 8;

/** The largest LoRA rank Workers AI serves (developers.cloudflare.com/workers-ai/fine-tunes/loras). */
const WORKERS_AI_MAX_LORA_RANK = 32;

/** config.json's model_type (what Workers AI reads from adapter_config.json), for Hub models. */
function modelType(prepared: PreparedRun): string | null {
  const type = prepared.huggingface?.config.model_type;
  return typeof type === "string" ? type : null;
}

function monitorValue(m: EpochMetrics, monitor: "val_loss" | "train_loss" | "val_accuracy"): number {
  return m[monitor] ?? NaN;
}

/** The first epoch with the lowest val_loss (or train_loss without validation). */
function bestEpoch(history: EpochMetrics[]): number | null {
  let best: EpochMetrics | null = null;
  for (const h of history) {
    const v = h.val_loss ?? h.train_loss;
    if (best === null || v < (best.val_loss ?? best.train_loss)) best = h;
  }
  return best?.epoch ?? null;
}

/**
 * A new fine-tune id: "ft_" and 32 hex digits that sort in creation order: 12 of milliseconds
 * since the epoch, 4 of a sequence within that millisecond, then 16 random. Job lists rely on
 * the order (newest first, ties broken by id): two jobs created in the same millisecond — which
 * happens often on Workers, whose clock only moves on I/O — keep the order they were made in.
 *
 * @example
 * ```ts
 * newId() < newId(); // true
 * ```
 */
export function newId(): string {
  const ms = Date.now();
  if (ms > lastIdMs) {
    lastIdMs = ms;
    idSequence = 0;
  } else if (++idSequence > 0xffff) {
    lastIdMs++; // a 65,537th id in one millisecond (or a clock that stepped back) borrows the next
    idSequence = 0;
  }
  const random = crypto.randomUUID().replaceAll("-", "").slice(0, 16);
  return `ft_${lastIdMs.toString(16).padStart(12, "0")}${idSequence.toString(16).padStart(4, "0")}${random}`;
}
let lastIdMs = 0;
let idSequence = 0;

/** A monotonic clock in ms (performance.now), for durations and the loop's yields. */
export function now(): number {
  return performance.now();
}
