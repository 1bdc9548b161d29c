/**
 * A search's trials (src/engine/search.ts): seeded draws inside their ranges, the grid's points
 * and order, the request paths a trial writes, and the 422s naming `search.space.<path>`.
 */
import { describe, expect, it } from "vitest";
import { UnprocessableError } from "../../src/errors.js";
import { checkSpace, pathSegments, searchIssues, searchMode, trialParams, withParams } from "../../src/engine/search.js";
import { SearchSpec } from "../../src/schema/search.js";
import { seedRequest } from "../helpers.js";

const spec = (input: Record<string, unknown>) => SearchSpec.parse(input);

function refusal(fn: () => unknown): UnprocessableError {
  try {
    fn();
  } catch (e) {
    if (e instanceof UnprocessableError) return e;
    throw e;
  }
  throw new Error("expected a 422");
}

describe("trialParams", () => {
  it("random: the same seed draws the same trials; another seed others; every draw is inside its range", () => {
    const s = spec({
      space: { "training.optimizer.lr": { log_uniform: [1e-4, 1e-1] }, "training.batch_size": { int_uniform: [2, 5] }, "training.optimizer.weight_decay": { uniform: [0, 0.5] }, "training.shuffle": { choice: [true, false] } },
      trials: 64,
      seed: 3,
    });
    // more draws than a search may have trials: the same stream, drawn directly
    const a = trialParams({ ...s, trials: 200 });
    expect(a).toEqual(trialParams({ ...s, trials: 200 }));
    expect(trialParams({ ...s, trials: 200, seed: 4 })).not.toEqual(a);
    expect(trialParams(s)).toEqual(a.slice(0, 64));
    expect(a).toHaveLength(200);
    for (const t of a) {
      expect(t["training.optimizer.lr"]).toBeGreaterThanOrEqual(1e-4);
      expect(t["training.optimizer.lr"]).toBeLessThanOrEqual(1e-1);
      expect(Number.isInteger(t["training.batch_size"])).toBe(true);
      expect(t["training.batch_size"]).toBeGreaterThanOrEqual(2);
      expect(t["training.batch_size"]).toBeLessThanOrEqual(5);
      expect(t["training.optimizer.weight_decay"]).toBeGreaterThanOrEqual(0);
      expect(t["training.optimizer.weight_decay"]).toBeLessThan(0.5);
    }
    // every integer and every choice is drawn; log_uniform covers each decade
    expect(new Set(a.map((t) => t["training.batch_size"]))).toEqual(new Set([2, 3, 4, 5]));
    expect(new Set(a.map((t) => t["training.shuffle"]))).toEqual(new Set([true, false]));
    const decades = new Set(a.map((t) => Math.floor(Math.log10(t["training.optimizer.lr"] as number))));
    expect(decades).toEqual(new Set([-4, -3, -2]));
  });

  it("random without trials runs 10", () => {
    expect(trialParams(spec({ space: { "training.optimizer.lr": { uniform: [0.1, 0.2] } } }))).toHaveLength(10);
  });

  it("grid: every combination, the last field fastest; ranges at grid_points points, both ends included (log: geometric)", () => {
    const g = trialParams(spec({ space: { "training.batch_size": { choice: [8, 16] }, "training.optimizer.lr": { log_uniform: [1e-3, 1e-1] } }, algorithm: "grid" }));
    expect(g).toHaveLength(6);
    expect(g.map((t) => t["training.batch_size"])).toEqual([8, 8, 8, 16, 16, 16]);
    expect(g[0]!["training.optimizer.lr"]).toBe(1e-3);
    expect(g[1]!["training.optimizer.lr"]).toBeCloseTo(1e-2, 15);
    expect(g[2]!["training.optimizer.lr"]).toBe(1e-1);
    const ints = trialParams(spec({ space: { "adapter.r": { int_uniform: [2, 4] } }, algorithm: "grid" }));
    expect(ints.map((t) => t["adapter.r"])).toEqual([2, 3, 4]);
    const lin = trialParams(spec({ space: { x: { uniform: [0, 1] } }, algorithm: "grid", grid_points: 5 }));
    expect(lin.map((t) => t.x)).toEqual([0, 0.25, 0.5, 0.75, 1]);
  });

  it("grid: trials other than the grid's size, or a grid over 64 points, is a 422 naming the field", () => {
    expect(refusal(() => trialParams(spec({ space: { a: { choice: [1, 2] } }, algorithm: "grid", trials: 3 }))).errors[0]!.path).toBe("search.trials");
    expect(refusal(() => trialParams(spec({ space: { a: { int_uniform: [1, 10] }, b: { int_uniform: [1, 10] } }, algorithm: "grid" }))).errors[0]!.path).toBe("search.space");
  });

  it("bounds out of order, or a log range through 0, is a 422 at search.space.<path>", () => {
    const e = refusal(() => trialParams(spec({ space: { "training.optimizer.lr": { log_uniform: [0, 1] }, "training.epochs": { int_uniform: [5, 2] } } })));
    expect(e.status).toBe(422);
    expect(e.errors.map((i) => i.path)).toEqual(["search.space.training.optimizer.lr", "search.space.training.epochs"]);
  });

  it("mode defaults to min, max for val_accuracy", () => {
    expect(searchMode({ metric: "val_loss" })).toBe("min");
    expect(searchMode({ metric: "val_accuracy" })).toBe("max");
    expect(searchMode({ metric: "val_accuracy", mode: "min" })).toBe("min");
  });
});

describe("trial requests", () => {
  it("paths: dotted names with [n] items; anything else is no path", () => {
    expect(pathSegments("training.optimizer.lr")).toEqual(["training", "optimizer", "lr"]);
    expect(pathSegments("model.layers[2].p")).toEqual(["model", "layers", 2, "p"]);
    expect(pathSegments("training..lr")).toBeNull();
    expect(pathSegments("[0].x")).toBeNull();
  });

  it("withParams copies the objects on each path, creates missing ones, and leaves the request as it was", () => {
    const base = seedRequest(4) as unknown as Record<string, any>;
    const before = JSON.stringify(base);
    const { request, created } = withParams({ ...base, search: { space: {} } }, { "training.optimizer.lr": 0.5, "adapter.r": 4, "model.layers[0].out_features": 7 });
    expect(JSON.stringify(base)).toBe(before);
    expect((request as any).training.optimizer.lr).toBe(0.5);
    expect((request as any).model.layers[0].out_features).toBe(7);
    expect((request as any).adapter).toEqual({ r: 4 });
    expect((request as any).data).toBe(base.data); // shared, not copied
    expect("search" in request).toBe(false);
    expect([...created]).toEqual([["adapter", "adapter.r"]]);
  });

  it("checkSpace: a field the schema does not have, or a range past the field's, is a 422 naming search.space.<path>", () => {
    const base = seedRequest(4) as unknown as Record<string, unknown>;
    const unknown = refusal(() => checkSpace(base, { "training.optimizer.learning_rate": { uniform: [0.1, 0.2] } }));
    expect(unknown.errors).toEqual([{ path: "search.space.training.optimizer.learning_rate", message: expect.stringContaining("is not a known field") }]);
    const range = refusal(() => checkSpace(base, { "training.epochs": { int_uniform: [0, 3] }, "training.optimizer.lr": { log_uniform: [1e-4, 1] } }));
    expect(range.errors.map((i) => i.path)).toEqual(["search.space.training.epochs"]);
    expect(range.errors[0]!.message).toMatch(/^0: /);
    const choice = refusal(() => checkSpace(base, { "training.batch_size": { choice: [16, "big"] } }));
    expect(choice.errors[0]!.path).toBe("search.space.training.batch_size");
    expect(() => checkSpace(base, { "training.optimizer.lr": { log_uniform: [1e-4, 1e-1] }, "training.batch_size": { choice: [8, "auto"] } })).not.toThrow();
  });

  it("searchIssues: issues at, above or inside a searched field are the search's; the rest stay the request's", () => {
    const { search, other } = searchIssues(
      [
        { path: "training.optimizer.lr", message: "Too small" },
        { path: "adapter.target_modules", message: "Required" },
        { path: "data.train", message: "training data is required" },
      ],
      { "training.optimizer.lr": -1, "adapter.r": 4 },
      new Map([["adapter", "adapter.r"]]),
    );
    expect(search).toEqual([
      { path: "search.space.training.optimizer.lr", message: "-1: Too small" },
      { path: "search.space.adapter.r", message: "4: adapter.target_modules Required" },
    ]);
    expect(other).toEqual([{ path: "data.train", message: "training data is required" }]);
  });
});
