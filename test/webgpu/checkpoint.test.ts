/**
 * Checkpoints on the WebGPU backend: k epochs, then a resume for the rest, equal the
 * uninterrupted WebGPU run bit for bit (optimizer state, early-stopping snapshot, schedule and
 * the seeded streams), as on the WASM core (test/engine/checkpoint.test.ts).
 */
import { describe, expect, it } from "vitest";
import { train } from "../../src/node/index.js";
import type { CheckpointEvent } from "../../src/engine/run-types.js";
import { readTrainingCheckpoint } from "../../src/engine/checkpoint.js";
import { classificationData, classifierRequest } from "../helpers.js";
import { SKIP_REASON, device } from "./device.js";

const gpu = { kernel: "webgpu" as const, gpu: device };

function request() {
  const r = classifierRequest(96, {
    epochs: 6, batch_size: 16, shuffle: true, seed: 3,
    optimizer: { type: "adam", lr: 1e-2, amsgrad: true }, schedule: { type: "onecycle", max_lr: 3e-2 },
    early_stopping: { monitor: "val_loss", patience: 50, restore_best_weights: true },
    checkpoints: { every: 1, keep: 10 },
  });
  r.model.layers!.splice(2, 0, { type: "dropout", p: 0.25 });
  r.data.validation = classificationData(40, 4, 5);
  return r;
}

describe.skipIf(device === null)(`checkpoints on WebGPU${device === null ? ` (skipped: ${SKIP_REASON})` : ""}`, () => {
  it("a resume after epoch 2 or 5 ends with the uninterrupted run's weights and history", async () => {
    const saved: CheckpointEvent[] = [];
    const straight = await train(request(), { ...gpu, onCheckpoint: (c) => void saved.push(c) });
    expect(straight.engine.kernel).toBe("webgpu");
    expect(saved.map((c) => c.epoch)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(readTrainingCheckpoint(saved[1]!.bytes).backend.optimizer.map((o) => o.name)).toEqual(["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]);
    for (const k of [2, 5]) {
      const resumed = await train(request(), { ...gpu, resumeFrom: saved[k - 1]!.bytes });
      expect(resumed.engine.kernel).toBe("webgpu");
      expect(resumed.weights).toBe(straight.weights);
      expect(resumed.metrics.history).toEqual(straight.metrics.history);
    }
  });
});
