/**
 * lr "auto" on the WebGPU backend: the range test runs on the device, as the run does, and its
 * curve is the WASM core's to float32 rounding (docs/strategy.md).
 */
import { describe, expect, it } from "vitest";
import { train } from "../../src/node/index.js";
import { classifierRequest } from "../helpers.js";
import { SKIP_REASON, device } from "./device.js";

describe.skipIf(!device)(`lr "auto" on WebGPU${device ? "" : ` (skipped: ${SKIP_REASON})`}`, () => {
  it("the range test on the device: the WASM core's rates and curve, the same suggestion, then training on the device", async () => {
    const request = classifierRequest(96, { epochs: 2, batch_size: 16, shuffle: false, optimizer: { type: "adam", lr: "auto" } });
    const onGpu = await train(request, { kernel: "webgpu", gpu: device });
    const onWasm = await train(request, { kernel: "wasm" });
    expect(onGpu.engine.kernel).toBe("webgpu");
    const g = onGpu.metrics.lr_finder!;
    const w = onWasm.metrics.lr_finder!;
    expect(g.lrs).toEqual(w.lrs);
    g.losses.forEach((l, i) => expect(Math.abs(l - w.losses[i]!) / Math.abs(w.losses[i]!)).toBeLessThan(1e-3));
    expect({ lr: g.lr, method: g.method }).toEqual({ lr: w.lr, method: w.method });
    expect(onGpu.metrics.history[0]!.lr).toBe(g.lr);
  });
});
