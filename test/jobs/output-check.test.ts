/**
 * What a node may upload (issue 20, finding 3): the file each kind of run really writes passes
 * checkWeights against expectedWeights of its stored input (plain, float16, BatchNorm's I64
 * buffer, LoRA adapters), so honest nodes are never refused; changed files are.
 */
import { describe, expect, it } from "vitest";
import { runPreparedRaw } from "../../src/engine/train.js";
import { prepareRun } from "../../src/engine/prepare.js";
import { checkWeights, expectedWeights } from "../../src/jobs/output-check.js";
import { decodeRunInput, encodeRunInput } from "../../src/jobs/run-input.js";
import { parseSafetensors, readTensorF32, writeSafetensors } from "../../src/formats/safetensors.js";
import { loadNodeRuntime } from "../../src/node/kernel-module.js";
import { classificationData, seedRequest } from "../helpers.js";

const requests: [string, Record<string, unknown>][] = [
  ["a layer list", seedRequest(32, { training: { epochs: 1, batch_size: 16 } })],
  ["float16 output", { ...seedRequest(32, { training: { epochs: 1, batch_size: 16 } }), output: { dtype: "float16" } }],
  [
    "BatchNorm (an I64 buffer)",
    {
      model: { layers: [{ type: "linear", in_features: 4, out_features: 8 }, { type: "batch_norm1d", num_features: 8 }, { type: "relu" }, { type: "linear", in_features: 8, out_features: 3 }] },
      data: { train: classificationData(32) },
      training: { epochs: 1, batch_size: 16, loss: { type: "cross_entropy" } },
    },
  ],
  ["a LoRA adapter", { ...seedRequest(32, { training: { epochs: 1, batch_size: 16 } }), adapter: { type: "lora", r: 2, target_modules: ["fc1"] }, output: { format: "peft" } }],
];

describe("checkWeights", () => {
  for (const [what, request] of requests) {
    it(`${what}: the run's own file passes; the same file with a NaN does not`, async () => {
      const prepared = decodeRunInput(encodeRunInput(prepareRun(request as Parameters<typeof prepareRun>[0])));
      const { weights } = await runPreparedRaw(await loadNodeRuntime(), prepared, {});
      const expected = expectedWeights(prepared);
      expect(() => checkWeights(weights, expected, "(body)")).not.toThrow();

      const file = parseSafetensors(weights);
      const [name, info] = [...file.tensors].find(([, i]) => i.dtype !== "I64")!;
      const tensors = [...file.tensors].map(([n, i]) => ({ name: n, shape: [...i.shape], data: readTensorF32(file, n, "w", { integers: i.dtype === "I64" }), ...(i.dtype === "I64" ? { dtype: "I64" as const } : {}) }));
      tensors.find((t) => t.name === name)!.data[0] = NaN;
      const dtype = info.dtype === "F16" ? "float16" : info.dtype === "BF16" ? "bfloat16" : "float32";
      expect(() => checkWeights(writeSafetensors(tensors, { dtype, ...(file.metadata ? { metadata: file.metadata } : {}) }), expected, "(body)")).toThrow(
        new RegExp(`${name.replace(/\./g, "\\.")}.*not finite`),
      );
    });
  }
});
