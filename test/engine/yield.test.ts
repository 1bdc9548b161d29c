/**
 * The training loop's turns of the event loop (TrainOptions.yieldEvery, issue 20 finding 8):
 * another task of the same thread runs between steps when asked for, and not otherwise.
 */
import { describe, expect, it } from "vitest";
import { train } from "../../src/node/index.js";
import { syncYield, SYNC_YIELD_MS } from "../../src/api/sync-yield.js";
import { DEFAULT_EDGE_BUDGET } from "../../src/api/budget.js";
import { seedRequest } from "../helpers.js";

/** Counts the turns a chain of 0 ms timers gets while `run` runs. */
async function turnsDuring(run: () => Promise<unknown>): Promise<number> {
  let turns = 0;
  let running = true;
  const tick = () => {
    if (!running) return;
    turns++;
    setTimeout(tick, 0);
  };
  setTimeout(tick, 0);
  await run();
  running = false;
  return turns;
}

describe("yieldEvery", () => {
  // 64 rows, batch 4, 5 epochs: 80 steps
  const request = seedRequest(64, { training: { epochs: 5, batch_size: 4 } });

  it("{ steps: 1 }: a timer of the same thread runs between steps (at least once every other step)", async () => {
    const turns = await turnsDuring(() => train(request, { threads: 1, kernel: "wasm", yieldEvery: { ms: Infinity, steps: 1 } }));
    expect(turns).toBeGreaterThanOrEqual(40);
  });

  it("without it (and without a signal) the steps run without a turn between them", async () => {
    const turns = await turnsDuring(() => train(request, { threads: 1, kernel: "wasm" }));
    // the turns before the loop (loading the runtime) only: far fewer than the 80 steps
    expect(turns).toBeLessThan(10);
  });

  it("syncYield: a turn every SYNC_YIELD_MS, and every so many steps as the cost model takes that long", () => {
    const request = { training: seedRequest(8).training, model: seedRequest(8).model } as Parameters<typeof syncYield>[0];
    const budget = { ...DEFAULT_EDGE_BUDGET, flopsPerMs: 1e6, stepOverheadMs: 0, epochOverheadMs: 0, paramOverheadMs: 0 };
    // 1e6 FLOPs a step at 1e6 FLOPs/ms: 1 ms a step, so SYNC_YIELD_MS steps
    expect(syncYield(request, { flops: 100e6, steps: 100, params: 10, trainable_params: 10 }, budget)).toEqual({ ms: SYNC_YIELD_MS, steps: SYNC_YIELD_MS });
    // a step longer than SYNC_YIELD_MS: a turn after every step
    expect(syncYield(request, { flops: 100e9, steps: 100, params: 10, trainable_params: 10 }, budget).steps).toBe(1);
  });
});
