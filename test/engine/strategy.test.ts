/**
 * The automatic choices (docs/strategy.md): the range test's schedule, smoothing and stop, the
 * suggestion rule (fastai's lr_find: steep, falling back to minimum / 10), the run after the test,
 * the loss from the targets, the batch size from the memory budget, and the plan's cost.
 */
import { describe, expect, it } from "vitest";
import { train } from "../../src/node/index.js";
import { prepareRun, type PreparedRun } from "../../src/engine/prepare.js";
import { batchSizeCandidates, chooseLoss, LR_FINDER, lrRangeTest, rangeTestLr, suggestLearningRate } from "../../src/engine/strategy.js";
import type { StepOutcome, TrainingBackend } from "../../src/engine/backend.js";
import type { Table } from "../../src/formats/dataset.js";
import { decide, DEFAULT_EDGE_BUDGET, estimateCpuMs } from "../../src/api/budget.js";
import { classifierRequest, classificationData, seedRequest } from "../helpers.js";

const lrs100 = Array.from({ length: 100 }, (_, i) => rangeTestLr(i));

describe("the range test's learning rates (fastai SchedExp from 1e-7 to 10 over num_it 100)", () => {
  it("step i runs at 1e-7 * (1e8) ** (i / 100)", () => {
    expect(rangeTestLr(0)).toBe(1e-7);
    expect(rangeTestLr(50)).toBeCloseTo(1e-3, 15);
    expect(rangeTestLr(99)).toBeCloseTo(10 ** 0.92, 12);
    expect(rangeTestLr(100)).toBeCloseTo(10, 12);
    expect(LR_FINDER).toMatchObject({ startLr: 1e-7, endLr: 10, steps: 100, beta: 0.98, divergeFactor: 4 });
  });
});

describe("suggestLearningRate: steep (fastai), falling back to minimum / 10", () => {
  /** A curve that is flat, falls fastest between points 55 and 56, bottoms out at 80 and rises. */
  const curve = () => {
    const losses = lrs100.map((_, i) => (i < 40 ? 2.3 : i < 80 ? 2.3 - 0.02 * (i - 40) - (i > 55 ? 0.5 : 0) : 1.0 + 0.05 * (i - 80)));
    return { lrs: [...lrs100], losses };
  };

  it("the steepest descent of the smoothed loss against log(lr): the rate at its start", () => {
    expect(suggestLearningRate(curve())).toEqual({ lr: lrs100[55], method: "steep" });
  });

  it("ignores the first num_it // 10 points and the last 5, as lr_find's lrs[num_it//10:-5]", () => {
    const early = curve();
    early.losses[4] = -10; // a plunge from point 3 to 4: outside the window
    expect(suggestLearningRate(early)).toEqual({ lr: lrs100[55], method: "steep" });
    const late = curve();
    late.losses[97] = -10; // a plunge from 96 to 97: among the last five
    expect(suggestLearningRate(late)).toEqual({ lr: lrs100[55], method: "steep" });
    const inside = curve();
    inside.losses[12] = -10; // from 11 to 12: inside
    expect(suggestLearningRate(inside)).toEqual({ lr: lrs100[11], method: "steep" });
  });

  it("a curve that never descends in the window: a tenth of the rate at its lowest loss", () => {
    const rising = { lrs: [...lrs100], losses: lrs100.map((_, i) => 1 + i * 0.01) };
    rising.losses[3] = 0.5; // lower, but outside the window
    expect(suggestLearningRate(rising)).toEqual({ lr: lrs100[10]! / 10, method: "minimum" });
  });

  it("a test stopped before the window has two points: minimum / 10 over the whole curve; no point at all: the start rate", () => {
    const losses = [3, 2.9, 2.5, 2.2, 2.0, 1.9, 2.4, 2.6, 2.9, 3.5, 4, 5, 6, 7, 8, 9];
    // 15 points: lrs[10:-5] is empty
    expect(suggestLearningRate({ lrs: lrs100.slice(0, 15), losses: losses.slice(0, 15) })).toEqual({ lr: lrs100[5]! / 10, method: "minimum" });
    // 16 points: one, point 10, which fastai's minimum would take
    expect(suggestLearningRate({ lrs: lrs100.slice(0, 16), losses })).toEqual({ lr: lrs100[10]! / 10, method: "minimum" });
    expect(suggestLearningRate({ lrs: [], losses: [] })).toEqual({ lr: 1e-7, method: "start" });
  });
});

/** A backend whose step losses are given: what the range test's loop does with them. */
function scriptedBackend(losses: (number | null)[]): TrainingBackend & { seen: number[] } {
  const seen: number[] = [];
  const group = { lr: 0, momentum: 0 };
  return {
    group,
    kernel: "js-reference",
    threads: 1,
    seen,
    step(): StepOutcome {
      seen.push(group.lr);
      const loss = losses[seen.length - 1];
      return loss === null || loss === undefined ? { fault: { code: "diverged", what: "the loss became NaN" } } : { loss };
    },
    evaluate: () => null,
    saveBest: () => undefined,
    restoreBest: () => undefined,
    parameters: () => [],
    close: () => undefined,
  };
}

const preparedFor = (rows = 64, batch = 8): PreparedRun => prepareRun({ ...classifierRequest(rows, { batch_size: batch }) });

describe("lrRangeTest: the loop of fastai's LRFinder", () => {
  it("sets rangeTestLr(i) before step i and records AvgSmoothLoss (beta 0.98, debiased) for 100 steps", async () => {
    const raw = Array.from({ length: 120 }, (_, i) => 2 - i * 0.01);
    const backend = scriptedBackend(raw);
    const curve = await lrRangeTest(backend, preparedFor());
    expect(backend.seen).toEqual(lrs100);
    expect(curve.lrs).toEqual(lrs100);
    let avg = 0;
    // torch.lerp(loss, val, 0.98) = val - (val - loss) * (1 - 0.98), then / (1 - 0.98 ** count)
    const expected = raw.slice(0, 100).map((l, i) => ((avg = avg - (avg - l) * (1 - 0.98)), avg / (1 - 0.98 ** (i + 1))));
    expect(curve.losses).toHaveLength(100);
    curve.losses.forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 12));
    expect(curve.losses[0]).toBeCloseTo(2, 12); // debiased: the first smoothed loss is the first loss
  });

  it("stops once the smoothed loss exceeds 4x its minimum; that point is recorded", async () => {
    // smoothed (debiased) losses are 1 for five steps; a sixth loss above 18.12 takes the sixth above 4
    const curve = await lrRangeTest(scriptedBackend([1, 1, 1, 1, 1, 19, 1, 1]), preparedFor());
    expect(curve.losses).toHaveLength(6);
    expect(curve.losses[5]!).toBeGreaterThan(4);
    const below = await lrRangeTest(scriptedBackend([1, 1, 1, 1, 1, 17, 1, 1]), preparedFor());
    expect(below.losses.length).toBe(8); // 17 smooths to below 4x: on to the end of the script (a fault)
    expect(below.losses[5]!).toBeLessThan(4);
  });

  it("stops at a non-finite loss without recording it", async () => {
    const curve = await lrRangeTest(scriptedBackend([2, 1.9, 1.8, null, 1]), preparedFor());
    expect(curve.lrs).toEqual(lrs100.slice(0, 3));
  });
});

describe('a run with lr "auto"', () => {
  const base = () => classifierRequest(120, { epochs: 4, batch_size: 16, optimizer: { type: "adam", lr: "auto" } });

  it("trains from the original weights with the suggestion: the same weights as lr written in; deterministic", async () => {
    const auto = await train(base());
    expect(auto.status).toBe("succeeded");
    const finder = auto.metrics.lr_finder!;
    expect(finder.method).toBe("steep");
    expect(finder.lrs.length).toBeGreaterThan(16);
    expect(finder.lrs).toEqual(lrs100.slice(0, finder.lrs.length));
    expect(suggestLearningRate(finder)).toEqual({ lr: finder.lr, method: finder.method });
    expect(auto.metrics.history[0]!.lr).toBe(finder.lr);
    expect(auto.metrics.steps).toBe(4 * 8); // the range test's steps are not the run's
    const written = await train(classifierRequest(120, { epochs: 4, batch_size: 16, optimizer: { type: "adam", lr: finder.lr } }));
    expect(written.weights).toBe(auto.weights);
    expect(written.metrics.lr_finder).toBeUndefined();
    const again = await train(base());
    expect(again.weights).toBe(auto.weights);
    expect(again.metrics.lr_finder).toEqual(finder);
  });

  it('onecycle max_lr "auto": the cycle peaks at the suggestion', async () => {
    const request = classifierRequest(120, { epochs: 3, batch_size: 16, schedule: { type: "onecycle", max_lr: "auto" } });
    const auto = await train(request);
    const lr = auto.metrics.lr_finder!.lr;
    const written = await train(classifierRequest(120, { epochs: 3, batch_size: 16, schedule: { type: "onecycle", max_lr: lr } }));
    expect(written.weights).toBe(auto.weights);
    expect(auto.metrics.history.map((h) => h.lr)).toEqual(written.metrics.history.map((h) => h.lr));
  });

  it("the plan counts the range test: 100 more steps of FLOPs, and the edge budget's CPU estimate with them", () => {
    const fixed = prepareRun(classifierRequest(120, { epochs: 4, batch_size: 16 })).plan;
    const auto = prepareRun(base()).plan;
    expect(fixed.lr_finder_steps).toBeUndefined();
    expect(auto.lr_finder_steps).toBe(100);
    // 100 steps of full batches: forward, backward and the update
    const m = prepareRun(base()).model;
    expect(auto.flops - fixed.flops).toBe(100 * (16 * (m.forwardFlopsPerRow + m.recomputeFlopsPerRow + m.backwardFlopsPerRow) + 12 * m.trainableCount));
    expect(auto.memory_bytes).toBe(fixed.memory_bytes); // the test's copy is released before the run allocates
    expect(estimateCpuMs(auto, DEFAULT_EDGE_BUDGET)).toBeCloseTo(
      auto.flops / DEFAULT_EDGE_BUDGET.flopsPerMs +
        (auto.steps + 100) * DEFAULT_EDGE_BUDGET.stepOverheadMs +
        (auto.steps / auto.stepsPerEpoch) * DEFAULT_EDGE_BUDGET.epochOverheadMs! +
        auto.params * DEFAULT_EDGE_BUDGET.paramOverheadMs!,
      9,
    );
    // a budget the run fits without the test but not with it: not sync
    const budget = { ...DEFAULT_EDGE_BUDGET, maxCpuMs: (estimateCpuMs(fixed, DEFAULT_EDGE_BUDGET) + estimateCpuMs(auto, DEFAULT_EDGE_BUDGET)) / 2 };
    const prepared = prepareRun(base());
    expect(decide(prepareRun(classifierRequest(120, { epochs: 4, batch_size: 16 })).request, fixed, budget)).toEqual({ run: "sync" });
    expect(decide(prepared.request, prepared.plan, budget)).toEqual({ run: "async", placement: "gpu-node" });
  });
});

/** A table of given targets (values only matter to chooseLoss). */
const targets = (y: number[], perRow = 1): Table => ({ rows: y.length / perRow, features: 1, targets: perRow, x: new Float32Array(y.length / perRow), y: Float32Array.from(y), targetsWereScalar: perRow === 1 });

describe('loss "auto": from the targets and the output width', () => {
  it("integer classes and more than one output: cross_entropy", () => {
    expect(chooseLoss(targets([0, 2, 1, 2]), { positions: 1, classes: 3 })).toEqual({ type: "cross_entropy", weight: null, ignore_index: -100, label_smoothing: 0 });
    // 0/1 labels with two outputs are two classes, not BCE
    expect(chooseLoss(targets([0, 1, 1]), { positions: 1, classes: 2 }).type).toBe("cross_entropy");
    // per-token classes with ignored positions
    expect(chooseLoss(targets([1, -100, 4, 0, 2, -100], 3), { positions: 3, classes: 5 }).type).toBe("cross_entropy");
  });

  it("0/1 targets and one output: bce_with_logits", () => {
    expect(chooseLoss(targets([0, 1, 1, 0]), { positions: 1, classes: 1 })).toEqual({ type: "bce_with_logits", pos_weight: null });
  });

  it("real values, integer counts with one output, or several target columns: mse", () => {
    expect(chooseLoss(targets([0.5, 1.25, -3]), { positions: 1, classes: 1 }).type).toBe("mse");
    expect(chooseLoss(targets([0, 1, 2, 7]), { positions: 1, classes: 1 }).type).toBe("mse");
    expect(chooseLoss(targets([0.5, 1, 2.5]), { positions: 1, classes: 3 }).type).toBe("mse");
    expect(chooseLoss(targets([0, 1, 1, 0], 2), { positions: 1, classes: 2 }).type).toBe("mse");
    expect(chooseLoss(targets([-1, 1, 1]), { positions: 1, classes: 2 }).type).toBe("mse"); // -1 is no class
  });

  it("prepareRun chooses it, the plan reports it, and the run trains with it", async () => {
    const request = { ...classifierRequest(120, { epochs: 2, loss: { type: "auto" } }) };
    const prepared = prepareRun(request);
    expect(prepared.request.training.loss.type).toBe("cross_entropy");
    expect(prepared.plan.loss).toBe("cross_entropy");
    const auto = await train(request);
    const written = await train(classifierRequest(120, { epochs: 2, loss: { type: "cross_entropy" } }));
    expect(auto.plan.loss).toBe("cross_entropy");
    expect(auto.weights).toBe(written.weights);
    expect(auto.metrics.history.at(-1)!.val_accuracy).toBeUndefined(); // no validation here; accuracy comes with it
    expect(prepareRun(seedRequest(50, { training: { loss: { type: "auto" } } })).plan.loss).toBe("mse");
  });

  it("a class the output cannot hold is a 422 naming the row", () => {
    const { x, y } = classificationData(20);
    y[7] = 5;
    const request = { ...classifierRequest(20, { loss: { type: "auto" } }), data: { train: { x, y } } };
    expect(() => prepareRun(request)).toThrow(expect.objectContaining({ status: 422, errors: [expect.objectContaining({ path: expect.stringContaining("data.train") })] }));
  });
});

describe('batch_size "auto": the largest power of two (at most 256) whose plan fits the memory budget', () => {
  it("candidates: powers of two up to the rows, capped at 256", () => {
    expect(batchSizeCandidates(1437)).toEqual([256, 128, 64, 32, 16, 8, 4, 2, 1]);
    expect(batchSizeCandidates(100)).toEqual([64, 32, 16, 8, 4, 2, 1]);
    expect(batchSizeCandidates(256)).toEqual([256, 128, 64, 32, 16, 8, 4, 2, 1]);
    expect(batchSizeCandidates(1)).toEqual([1]);
  });

  it("without a tighter budget: min(256, the largest power of two <= rows), reported as plan.batch_size", () => {
    expect(prepareRun(classifierRequest(1000, { batch_size: "auto" })).plan.batch_size).toBe(256);
    expect(prepareRun(classifierRequest(100, { batch_size: "auto" })).plan.batch_size).toBe(64);
    expect(prepareRun(classifierRequest(100, { batch_size: 10 })).plan.batch_size).toBe(10);
  });

  it("a memory budget: the largest whose plan fits it, and twice that does not", () => {
    const request = () => classifierRequest(1000, { batch_size: "auto" });
    const at = (b: number) => prepareRun(classifierRequest(1000, { batch_size: b })).plan.memory_bytes;
    const budget = (at(16) + at(32)) / 2;
    const prepared = prepareRun(request(), {}, { memoryBudgetBytes: budget });
    expect(prepared.plan.batch_size).toBe(16);
    expect(prepared.request.training.batch_size).toBe(16);
    expect(prepared.plan.memory_bytes).toBeLessThanOrEqual(budget);
    // nothing fits: the largest that fits WebAssembly memory (the placement then decides)
    expect(prepareRun(request(), {}, { memoryBudgetBytes: 1 }).plan.batch_size).toBe(256);
  });

  it("skips a batch size that leaves a batch too small for BatchNorm", () => {
    const layers = [
      { type: "linear", name: "fc1", in_features: 4, out_features: 8 },
      { type: "batch_norm1d", name: "bn", num_features: 8 },
      { type: "relu" },
      { type: "linear", name: "fc2", in_features: 8, out_features: 3 },
    ] as const;
    // 66 rows: batches of 64 leave 2 (fine); 65 rows: 64, 32, ... all leave 1, until none is left
    const ok = prepareRun({ ...classifierRequest(66, { batch_size: "auto" }), model: { layers: [...layers] } });
    expect(ok.plan.batch_size).toBe(64);
    expect(() => prepareRun({ ...classifierRequest(65, { batch_size: "auto" }), model: { layers: [...layers] } })).toThrow(
      expect.objectContaining({ status: 422, errors: [expect.objectContaining({ path: "training.batch_size" })] }),
    );
  });
});
