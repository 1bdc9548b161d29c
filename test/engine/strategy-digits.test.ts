/**
 * The acceptance run of docs/strategy.md (issue 15): on scikit-learn's digits, a 64-32-10 MLP
 * from PyTorch's default init with lr "auto" reaches a held-out accuracy of at least 0.88 in 8
 * epochs. examples/digits-mlp-auto-lr has the data and the request; this trains it in-process
 * (test/e2e/wrangler-dev.test.ts runs the example through the API).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { train } from "../../src/node/index.js";
import { parseCsv } from "../../src/formats/dataset.js";
import { suggestLearningRate } from "../../src/engine/strategy.js";

const dir = new URL("../../examples/digits-mlp-auto-lr/", import.meta.url);
const read = (name: string) => readFileSync(new URL(name, dir), "utf8");

describe("examples/digits-mlp-auto-lr: lr \"auto\" on the digits", () => {
  it("a 64-32-10 MLP from default init reaches >= 0.88 held-out accuracy in 8 epochs", async () => {
    const request = JSON.parse(read("request.json"));
    const tables = { train: parseCsv(read("train.csv"), { target: "y", field: "data.train" }), validation: parseCsv(read("holdout.csv"), { target: "y", field: "data.validation" }) };
    expect([tables.train.rows, tables.validation.rows]).toEqual([1437, 360]);
    const result = await train(request, { tables });
    expect(result.status).toBe("succeeded");
    expect(request.training).toMatchObject({ epochs: 8, optimizer: { lr: "auto" } });
    expect(request.weights).toBeUndefined(); // PyTorch's default init from the seed
    const finder = result.metrics.lr_finder!;
    expect(finder.lrs).toHaveLength(100); // the loss never ran away: the whole test
    expect(finder.method).toBe("steep");
    expect(suggestLearningRate(finder).lr).toBe(finder.lr);
    expect(result.plan.loss).toBe("cross_entropy");
    expect(result.metrics.history).toHaveLength(8);
    expect(result.metrics.history[0]!.lr).toBe(finder.lr);
    expect(result.metrics.initial!.val_accuracy).toBeLessThan(0.2); // untrained
    expect(result.metrics.history.at(-1)!.val_accuracy).toBeGreaterThanOrEqual(0.88);
  });
});
