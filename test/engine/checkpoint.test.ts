import { describe, expect, it } from "vitest";
import { afterAll } from "vitest";
import { ThreadPool, train } from "../../src/node/index.js";
import type { CheckpointEvent } from "../../src/engine/run-types.js";
import { BEST_TENSOR, OPTIMIZER_PREFIX, checkpointWeights, readTrainingCheckpoint } from "../../src/engine/checkpoint.js";
import { parseSafetensors } from "../../src/formats/safetensors.js";
import { EdgetuneError } from "../../src/errors.js";
import { classificationData, classifierRequest, seedRequest, type RowsRequest } from "../helpers.js";

/** A classifier with dropout, shuffling, validation, early stopping and the given optimizer and schedule. */
function resumableRequest(training: RowsRequest["training"]): RowsRequest {
  const request = classifierRequest(96, {
    epochs: 8,
    batch_size: 16,
    shuffle: true,
    seed: 5,
    early_stopping: { monitor: "val_loss", patience: 50, restore_best_weights: true },
    checkpoints: { every: 1, keep: 100 },
    ...training,
  });
  request.model.layers!.splice(2, 0, { type: "dropout", p: 0.25 });
  request.data.validation = classificationData(40, 4, 99);
  return request;
}

async function checkpointsOf(request: RowsRequest, options: Parameters<typeof train>[1] = {}) {
  const saved: CheckpointEvent[] = [];
  const result = await train(request, { ...options, onCheckpoint: (c) => void saved.push(c) });
  return { result, saved };
}

const cases: [string, RowsRequest["training"]][] = [
  ["AdamW with OneCycle (per step)", { optimizer: { type: "adamw", lr: 1e-2, weight_decay: 0.05 }, schedule: { type: "onecycle", max_lr: 5e-2 } }],
  [
    "Adam (amsgrad) with a linear warm-up then cosine",
    {
      optimizer: { type: "adam", lr: 1e-2, amsgrad: true },
      schedule: { type: "sequential", schedulers: [{ type: "linear", start_factor: 0.1, total_iters: 2 }, { type: "cosine", T_max: 6 }], milestones: [2] },
    },
  ],
  ["SGD with momentum and ReduceLROnPlateau", { optimizer: { type: "sgd", lr: 5e-2, momentum: 0.9 }, schedule: { type: "plateau", patience: 0, factor: 0.5 } }],
];

describe("checkpoints: k epochs, then a resume for the rest, equal the uninterrupted run bit for bit", () => {
  for (const [name, training] of cases) {
    it(name, async () => {
      const request = resumableRequest(training);
      const { result: straight, saved } = await checkpointsOf(request);
      expect(straight.status).toBe("succeeded");
      expect(saved.map((c) => c.epoch)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      for (const k of [1, 3, 7]) {
        const resumed = await train(request, { resumeFrom: saved[k - 1]!.bytes });
        expect(resumed.status).toBe("succeeded");
        expect(resumed.weights).toBe(straight.weights);
        expect(resumed.metrics.history).toEqual(straight.metrics.history);
        expect(resumed.metrics.steps).toBe(straight.metrics.steps);
        expect(resumed.metrics.best_epoch).toBe(straight.metrics.best_epoch);
        expect(resumed.metrics.initial).toEqual(straight.metrics.initial);
      }
    });
  }

  it("a resume from a checkpoint of the resumed run is still identical (checkpoints of checkpoints)", async () => {
    const request = resumableRequest(cases[0]![1]);
    const { result: straight, saved } = await checkpointsOf(request);
    const { saved: second } = await checkpointsOf(request, { resumeFrom: saved[1]!.bytes });
    expect(second.map((c) => c.epoch)).toEqual([3, 4, 5, 6, 7, 8]);
    expect(second[2]!.bytes).toEqual(saved[4]!.bytes);
    const third = await train(request, { resumeFrom: second[2]!.bytes });
    expect(third.weights).toBe(straight.weights);
  });

  it("early stopping that stopped before the checkpoint's epoch stays stopped, with the best weights restored", async () => {
    const request = resumableRequest({ early_stopping: { monitor: "train_loss", patience: 0, min_delta: 10, restore_best_weights: true }, epochs: 6 });
    const { result: straight, saved } = await checkpointsOf(request);
    expect(straight.metrics.history).toHaveLength(2); // epoch 1 improves on Infinity, epoch 2 cannot improve by 10
    const last = saved.at(-1)!;
    expect(readTrainingCheckpoint(last.bytes).state.early_stopping).toMatchObject({ stopped: true, best_epoch: 1 });
    const resumed = await train(request, { resumeFrom: last.bytes });
    expect(resumed.weights).toBe(straight.weights);
    expect(resumed.metrics.history).toEqual(straight.metrics.history);
  });

  it("Poisson-sampled DP-SGD resumes identically (the sampling stream is advanced as far as the checkpoint)", async () => {
    const request = seedRequest(128, {
      training: { epochs: 4, batch_size: 16, optimizer: { type: "sgd", lr: 0.05 }, loss: { type: "mse" }, seed: 3, checkpoints: { every: 2, keep: 2 } },
      privacy: { type: "dp-sgd", max_grad_norm: 1, noise_multiplier: 0.5 },
    });
    const { result: straight, saved } = await checkpointsOf(request);
    expect(saved.map((c) => c.epoch)).toEqual([2, 4]);
    const resumed = await train(request, { resumeFrom: saved[0]!.bytes });
    expect(resumed.weights).toBe(straight.weights);
    expect(resumed.metrics.privacy).toEqual(straight.metrics.privacy);
  });

  it("a request without training.checkpoints resumes from a checkpoint too, and checkpointing does not change the run", async () => {
    const request = resumableRequest(cases[0]![1]);
    const { saved } = await checkpointsOf(request);
    const fromScratch = await train({ ...request, training: { ...request.training, checkpoints: null } });
    const resumed = await train({ ...request, training: { ...request.training, checkpoints: null } }, { resumeFrom: saved[3]!.bytes });
    expect(resumed.metrics.history.slice(0, 4)).toEqual(fromScratch.metrics.history.slice(0, 4)); // the checkpoint's history
    expect(resumed.weights).toBe(fromScratch.weights); // and the same end: checkpoints do not change the run
  });
});

describe("the checkpoint file", () => {
  it("holds the state_dict under its names, the optimizer under __optimizer__., the best snapshot and the JSON state", async () => {
    const { saved } = await checkpointsOf(resumableRequest(cases[0]![1]));
    const file = parseSafetensors(saved[2]!.bytes);
    expect([...file.tensors.keys()]).toEqual([
      "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
      `${OPTIMIZER_PREFIX}exp_avg`, `${OPTIMIZER_PREFIX}exp_avg_sq`, BEST_TENSOR,
    ]);
    const { state } = readTrainingCheckpoint(saved[2]!.bytes);
    expect(state).toMatchObject({ version: 1, epoch: 3, step: 18, optimizer: { t: 18 }, scheduler: { interval: "step", steps: 18 }, rng: { shuffles: 3 } });
    expect(state.history.map((h) => h.epoch)).toEqual([1, 2, 3]);
    expect(saved[2]!.metrics).toEqual(state.history[2]);
    // the weights route's file: only the state_dict
    expect([...parseSafetensors(checkpointWeights(saved[2]!.bytes)).tensors.keys()]).toEqual(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
  });

  it("a checkpoint of another model is a 422 naming from_checkpoint", async () => {
    const { saved } = await checkpointsOf(resumableRequest(cases[0]![1]));
    const other = seedRequest(64, { training: { epochs: 2 } });
    const error = await train(other, { resumeFrom: saved[0]!.bytes }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EdgetuneError);
    expect((error as EdgetuneError).status).toBe(422);
    expect(JSON.stringify((error as EdgetuneError).errors)).toContain("from_checkpoint");
  });

  it("pauseRequested checkpoints the epoch and ends the run as paused; resuming finishes it identically", async () => {
    const request = resumableRequest({ ...cases[1]![1], checkpoints: null });
    const straight = await train(request);
    let epochs = 0;
    const { result: paused, saved } = await checkpointsOf(request, { pauseRequested: () => ++epochs === 3 });
    expect(paused.status).toBe("paused");
    expect(saved.map((c) => c.epoch)).toEqual([3]);
    expect(paused.metrics.history).toHaveLength(3);
    const resumed = await train(request, { resumeFrom: saved[0]!.bytes });
    expect(resumed.weights).toBe(straight.weights);
    expect(resumed.metrics.history).toEqual(straight.metrics.history);
  });
});

describe("checkpoints on 2 threads", () => {
  let pool: ThreadPool | null = null;
  afterAll(async () => {
    await pool?.close();
  });

  it("a resume on the same number of threads ends with the uninterrupted run's weights", async () => {
    pool = await ThreadPool.create(2, { minFlopsPerStep: 0 }); // every run uses the threads
    const request = resumableRequest(cases[0]![1]);
    const { result: straight, saved } = await checkpointsOf(request, { parallel: pool });
    expect(straight.engine.threads).toBe(2);
    const resumed = await train(request, { parallel: pool, resumeFrom: saved[3]!.bytes });
    expect(resumed.engine.threads).toBe(2);
    expect(resumed.weights).toBe(straight.weights);
    expect(resumed.metrics.history).toEqual(straight.metrics.history);
  });
});
