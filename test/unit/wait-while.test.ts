/**
 * waitWhile (src/node/threads.ts), the wait of the training threads' control block: it returns
 * once the slot's value changes, never merely because a notify woke it. A notify can arrive
 * late (the main thread descheduled between adding to GEN and notifying); a helper that took
 * such a wake-up as the next command ran its last command twice.
 */
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { waitWhile } from "../../src/node/threads.js";

/** A thread that notifies slot 0 without changing it, then changes it to 1 and notifies again; slot 1 counts the waiters the bare notify woke. */
const NOTIFIER = `
const { workerData } = require("node:worker_threads");
const ctl = new Int32Array(workerData);
const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
sleep(100);
Atomics.store(ctl, 1, Atomics.notify(ctl, 0));
sleep(100);
Atomics.store(ctl, 0, 1);
Atomics.notify(ctl, 0);
`;

describe("waitWhile", () => {
  it("returns only once the value changes: a notify without a change does not end the wait", async () => {
    const ctl = new Int32Array(new SharedArrayBuffer(8));
    const worker = new Worker(NOTIFIER, { eval: true, workerData: ctl.buffer });
    const exited = new Promise((resolve) => worker.once("exit", resolve));
    waitWhile(ctl, 0, 0, 0); // no spinning: asleep in Atomics.wait when the bare notify comes
    expect(Atomics.load(ctl, 0)).toBe(1);
    await exited;
    // 1 when the bare notify found this thread waiting (the case the wait must survive)
    console.log(`[waitWhile] the notify without a change woke ${Atomics.load(ctl, 1)} waiter(s)`);
  });

  it("with a sleep limit, returns after it without a change (the caller checks for errors, then waits again)", () => {
    const ctl = new Int32Array(new SharedArrayBuffer(8));
    waitWhile(ctl, 0, 0, 0, 20);
    expect(Atomics.load(ctl, 0)).toBe(0);
  });
});
