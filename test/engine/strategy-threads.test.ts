/**
 * lr "auto" with data-parallel threads (src/node/threads.ts): the range test runs on one
 * thread, so its curve and suggestion are the single-threaded run's exactly; the training after
 * it uses the threads. The helper threads run the compiled dist/ modules (npm test builds first).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ThreadPool, train } from "../../src/node/index.js";
import { classifierRequest } from "../helpers.js";

let pool: ThreadPool;
beforeAll(async () => {
  pool = await ThreadPool.create(2, { minFlopsPerStep: 0 }); // every run uses the threads
});
afterAll(async () => {
  await pool.close();
});

describe('lr "auto" on 2 threads', () => {
  it("the range test's curve and suggestion do not depend on the threads; training uses them", async () => {
    const request = classifierRequest(200, { epochs: 2, batch_size: 20, optimizer: { type: "adam", lr: "auto" } });
    const threaded = await train(request, { parallel: pool });
    const single = await train(request);
    expect(threaded.engine.threads).toBe(2);
    expect(single.engine.threads).toBe(1);
    expect(threaded.metrics.lr_finder).toEqual(single.metrics.lr_finder);
    expect(threaded.metrics.history[0]!.lr).toBe(single.metrics.lr_finder!.lr);
  });
});
