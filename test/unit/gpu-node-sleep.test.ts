/** The GPU node's idle wait leaves nothing on its signal (issue 21, finding 6: an abort listener leaked every poll). */
import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { sleep } from "../../src/node/gpu-node.js";

describe("the GPU node's sleep between claim polls", () => {
  it("removes its abort listener when the time is up", async () => {
    const controller = new AbortController();
    for (let i = 0; i < 20; i++) await sleep(1, controller.signal);
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  });
  it("ends at once when the signal aborts, and at once when it already has", async () => {
    const controller = new AbortController();
    const started = performance.now();
    const waiting = sleep(60_000, controller.signal);
    controller.abort();
    await waiting;
    await sleep(60_000, controller.signal);
    expect(performance.now() - started).toBeLessThan(30_000); // not a timing: the 60 s waits did not run
  });
});
