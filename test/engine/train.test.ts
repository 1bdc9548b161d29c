import { describe, expect, it } from "vitest";
import { train } from "../../src/node/index.js";
import { decodeBase64 } from "../../src/formats/base64.js";
import { parseSafetensors, readTensorF32 } from "../../src/formats/safetensors.js";

/** The seed example of SPEC: Linear(10,10)-ReLU-Linear(10,1), MSE, Adam 1e-3, batch 32, 1,000 rows. */
function seedRequest(rows = 1000) {
  let s = 12345;
  const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  const x = Array.from({ length: rows }, () => Array.from({ length: 10 }, rand));
  const y = x.map((r) => r.reduce((a, v, i) => a + v * (i % 3 === 0 ? 0.5 : -0.25), 0.1));
  return {
    model: {
      layers: [
        { type: "linear" as const, name: "fc1", in_features: 10, out_features: 10 },
        { type: "relu" as const },
        { type: "linear" as const, name: "fc2", in_features: 10, out_features: 1 },
      ],
    },
    data: { train: { x, y } },
    training: { epochs: 20, batch_size: 32, optimizer: { type: "adam" as const, lr: 1e-3 }, loss: { type: "mse" as const } },
  };
}

describe("train() on the seed example", () => {
  it("trains, the loss falls, and the weights come back as safetensors with state_dict names", async () => {
    const result = await train(seedRequest());
    expect(result.status).toBe("succeeded");
    const h = result.metrics.history;
    expect(h).toHaveLength(20);
    expect(h.at(-1)!.train_loss).toBeLessThan(h[0]!.train_loss * 0.7);
    expect(result.metrics.steps).toBe(20 * 32);
    const file = parseSafetensors(decodeBase64(result.weights));
    expect([...file.tensors.keys()]).toEqual(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
    expect(readTensorF32(file, "fc1.weight").every(Number.isFinite)).toBe(true);
    expect(result.engine).toMatchObject({ kernel: "wasm-simd", runtime: "node", threads: 1 });
    expect(result.plan).toMatchObject({ params: 121, trainable_params: 121, steps: 640, placement: "local" });
  });
});
