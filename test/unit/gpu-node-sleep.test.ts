/**
 * The GPU node's idle wait leaves nothing on its signal (issue 21, finding 6: an abort listener
 * leaked every poll), and a stop never waits on a claim that the abort left unsettled.
 */
import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { sleep, untilAborted } from "../../src/node/gpu-node.js";

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

describe("untilAborted: the node's claim as it stops", () => {
  it("a claim that never settles: the abort ends the wait", async () => {
    const controller = new AbortController();
    const waiting = untilAborted(new Promise<never>(() => {}), controller.signal, () => {});
    controller.abort(new Error("stopping"));
    await expect(waiting).rejects.toThrow("stopping");
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  });
  it("a claim answered after the abort goes to `late` (to be handed back); one answered before is the result", async () => {
    const controller = new AbortController();
    let answer!: (v: string) => void;
    const late: string[] = [];
    const waiting = untilAborted(new Promise<string>((r) => (answer = r)), controller.signal, (v) => late.push(v));
    controller.abort();
    await expect(waiting).rejects.toBeDefined();
    answer("job-2");
    await new Promise((r) => setTimeout(r, 0));
    expect(late).toEqual(["job-2"]);
    const other = new AbortController();
    expect(await untilAborted(Promise.resolve("job-1"), other.signal, (v) => late.push(v))).toBe("job-1");
    expect(getEventListeners(other.signal, "abort")).toHaveLength(0);
    expect(late).toEqual(["job-2"]);
  });
});
