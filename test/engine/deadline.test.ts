/**
 * A run stops itself at its budget (issue 21): before the step that would take it past the
 * budget, with status "cancelled", error.code "over_budget" and the weights from before that
 * step. The step-count guard (steps run x the estimate per step) is what works where the clock
 * does not move (deployed Workers); the wall clock is the other guard.
 */
import { describe, expect, it } from "vitest";
import { wouldOverrun } from "../../src/engine/deadline.js";
import { train } from "../../src/node/index.js";
import { seedRequest } from "../helpers.js";

describe("wouldOverrun()", () => {
  it("counts the steps run times the estimate per step when the clock has not moved", () => {
    expect(wouldOverrun({ maxMs: 100, stepMs: 10 }, 0, 9, 0)).toBe(false);
    expect(wouldOverrun({ maxMs: 100, stepMs: 10 }, 0, 10, 0)).toBe(true);
  });
  it("takes the wall clock and the last step's measured time where they are more", () => {
    expect(wouldOverrun({ maxMs: 100, stepMs: 1 }, 95, 3, 8)).toBe(true);
    expect(wouldOverrun({ maxMs: 100, stepMs: 1 }, 50, 3, 8)).toBe(false);
    expect(wouldOverrun({ maxMs: 100, stepMs: 1 }, 0, 3, 101)).toBe(true);
  });
});

describe("a run with a budget", () => {
  // 5 rows in batches of 1, no shuffling: 5 steps an epoch
  const request = (epochs: number) => seedRequest(5, { training: { epochs, batch_size: 1, shuffle: false, optimizer: { type: "sgd", lr: 0.01 }, loss: { type: "mse" } } });

  it("stops before the step that would overrun, with the weights after the steps it ran", async () => {
    // 1 s a step by the estimate and 5 s in all: 5 steps run (unless the wall clock says more)
    const stopped = await train(request(3), { budget: { maxMs: 5000, stepMs: 1000 } });
    expect(stopped.status).toBe("cancelled");
    expect(stopped.error?.code).toBe("over_budget");
    expect(stopped.error?.step).toBe(5);
    expect(stopped.metrics.steps).toBe(5);
    const oneEpoch = await train(request(1));
    expect(oneEpoch.status).toBe("succeeded");
    expect(stopped.weights).toBe(oneEpoch.weights);
  });

  it("stops on the wall clock when it has moved past the budget", async () => {
    const stopped = await train(request(3), { budget: { maxMs: 0, stepMs: 0 } });
    expect(stopped.error?.code).toBe("over_budget");
    expect(stopped.metrics.steps).toBe(0);
  });

  it("runs to the end when the budget holds all its steps", async () => {
    const run = await train(request(3), { budget: { maxMs: 60_000, stepMs: 1 } });
    expect(run.status).toBe("succeeded");
    expect(run.metrics.steps).toBe(15);
  });
});
