/**
 * The playground's logic without a browser: the form's state (every load resets every field),
 * the request it builds (the restore-best toggle), the chart's log ticks and layout (the axis
 * title clear of the tick labels), the CSV look and the explanations' colour scale. The page
 * itself runs in headless Chromium in test/e2e/playground.test.ts.
 */
import { describe, expect, it } from "vitest";
import { chartLayout, linearTicks, logTicks } from "../../../src/playground/chart.js";
import { lookAtCsv } from "../../../src/playground/csv.js";
import { attributionColour, isExplanations } from "../../../src/playground/explanations.js";
import { DEFAULT_FIELDS, FormError, formFromDemo, formFromRequestDocument, modelText, requestFromForm, schedulePreset } from "../../../src/playground/form.js";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const seedRequest = JSON.parse(readFileSync(fileURLToPath(new URL("../../../examples/seed-mlp/request.json", import.meta.url)), "utf8")) as unknown;
const digitsRequest = JSON.parse(readFileSync(fileURLToPath(new URL("../../../examples/digits-cnn/request.json", import.meta.url)), "utf8")) as {
  model: unknown;
  training: Record<string, unknown>;
};

describe("the playground's form state", () => {
  it("a request.json sets every field from the file or the defaults, never from the demo picked before", () => {
    const moons = formFromDemo("moons");
    expect(moons).toMatchObject({ schedule: "cosine", loss: "cross_entropy", lr: "0.01", epochs: "30", split: "0.2" });
    const fields = formFromRequestDocument(seedRequest);
    // the file: mse, adam at 1e-3, batch 32, 20 epochs, validation_split 0.1; no schedule, no seed: the defaults
    expect(fields).toEqual({
      ...DEFAULT_FIELDS,
      model: fields.model,
      loss: "mse",
      optimizer: "adam",
      lr: "0.001",
      batch: "32",
      epochs: "20",
      split: "0.1",
      target: "y",
    });
    expect(fields.schedule).toBe("constant");
    expect(fields.scheduleParams).toBe("{}");
    expect(JSON.parse(fields.model)).toEqual((seedRequest as { model: unknown }).model);
  });

  it("keeps what the form has no input for: optimizer and loss options, other training and request fields, early stopping", () => {
    const fields = formFromRequestDocument({
      model: { layers: [{ type: "linear", name: "fc", in_features: 2, out_features: 1 }] },
      data: { target: ["a", "b"], tokenization: { max_length: 8 }, train: "ignored: the CSV upload is the data" },
      training: {
        loss: { type: "huber", delta: 0.5 },
        optimizer: { type: "sgd", lr: 0.1, momentum: 0.9 },
        schedule: { type: "step", step_size: 3 },
        seed: 7,
        shuffle: false,
        early_stopping: { patience: 2, min_delta: 0.01 },
      },
      trainable: ["fc"],
      mode: "sync",
    });
    expect(fields).toMatchObject({
      target: "a,b",
      loss: "huber",
      lossParams: '{"delta":0.5}',
      optimizer: "sgd",
      lr: "0.1",
      optimizerParams: '{"momentum":0.9}',
      schedule: "step",
      scheduleParams: '{"step_size":3}',
      seed: "7",
      patience: "2",
      restoreBest: true, // the schema's default when early_stopping is given
      monitor: "val_loss",
      trainingExtra: '{"shuffle":false,"early_stopping":{"min_delta":0.01}}',
      requestExtra: '{"trainable":["fc"],"data":{"tokenization":{"max_length":8}}}',
    });
    const request = requestFromForm(fields, { hasValidationFile: false });
    expect(request).toEqual({
      trainable: ["fc"],
      model: { layers: [{ type: "linear", name: "fc", in_features: 2, out_features: 1 }] },
      data: { tokenization: { max_length: 8 } },
      training: {
        shuffle: false,
        epochs: 20,
        batch_size: 32,
        seed: 7,
        loss: { type: "huber", delta: 0.5 },
        optimizer: { type: "sgd", lr: 0.1, momentum: 0.9 },
        schedule: { type: "step", step_size: 3 },
        early_stopping: { min_delta: 0.01, monitor: "val_loss", patience: 2, restore_best_weights: true },
      },
    });
  });

  it("a model JSON alone ({input, layers}) resets the training fields to the defaults", () => {
    const fields = formFromRequestDocument(digitsRequest.model);
    expect(fields).toEqual({ ...DEFAULT_FIELDS, model: fields.model });
    expect(JSON.parse(fields.model)).toEqual(digitsRequest.model);
    expect(() => formFromRequestDocument({ training: {} })).toThrow(FormError);
    expect(() => formFromRequestDocument([1])).toThrow(/not a JSON object/);
  });

  it("the restore-best toggle reaches the request: early_stopping with restore_best_weights, patience = epochs unless set", () => {
    const off = requestFromForm(formFromDemo("moons"), { hasValidationFile: false });
    expect(off.training.early_stopping).toBeUndefined();
    const on = requestFromForm({ ...formFromDemo("moons"), restoreBest: true }, { hasValidationFile: false });
    expect(on.training.early_stopping).toEqual({ monitor: "val_loss", patience: 30, restore_best_weights: true });
    // no validation (xor): the best epoch is the one with the lowest train_loss
    const xor = requestFromForm({ ...formFromDemo("xor"), restoreBest: true }, { hasValidationFile: false });
    expect(xor.training.early_stopping).toEqual({ monitor: "train_loss", patience: 150, restore_best_weights: true });
    const patience = requestFromForm({ ...formFromDemo("xor"), patience: "5", monitor: "train_loss" }, { hasValidationFile: false });
    expect(patience.training.early_stopping).toEqual({ monitor: "train_loss", patience: 5, restore_best_weights: false });
    const withFile = requestFromForm({ ...formFromDemo("xor"), restoreBest: true }, { hasValidationFile: true });
    expect(withFile.training.early_stopping!.monitor).toBe("val_loss");
  });

  it("names the field of a bad value", () => {
    const bad = (patch: Partial<typeof DEFAULT_FIELDS>) => {
      try {
        requestFromForm({ ...formFromDemo("xor"), ...patch }, { hasValidationFile: false });
      } catch (e) {
        return e instanceof FormError ? e.field : `not a FormError: ${String(e)}`;
      }
      return "no error";
    };
    expect(bad({ lr: "" })).toBe("lr");
    expect(bad({ epochs: "2.5" })).toBe("epochs");
    expect(bad({ model: "{" })).toBe("model");
    expect(bad({ scheduleParams: "[1]" })).toBe("schedule-params");
    expect(bad({ split: "1" })).toBe("val-split");
    expect(bad({ patience: "-1" })).toBe("patience");
    expect(bad({})).toBe("no error");
  });

  it('"auto" for the learning rate and the batch size (docs/strategy.md): sent as "auto", read back from a request.json', () => {
    const request = requestFromForm({ ...formFromDemo("xor"), lr: " Auto ", batch: "auto" }, { hasValidationFile: false });
    expect(request.training.optimizer.lr).toBe("auto");
    expect(request.training.batch_size).toBe("auto");
    expect(requestFromForm({ ...formFromDemo("xor"), lr: "0.5", batch: "8" }, { hasValidationFile: false }).training).toMatchObject({ batch_size: 8, optimizer: { lr: 0.5 } });
    const bad = (patch: Partial<typeof DEFAULT_FIELDS>) => () => requestFromForm({ ...formFromDemo("xor"), ...patch }, { hasValidationFile: false });
    expect(bad({ lr: "automatic" })).toThrow(expect.objectContaining({ field: "lr" }));
    expect(bad({ batch: "autos" })).toThrow(expect.objectContaining({ field: "batch" }));
    const autoLr = JSON.parse(readFileSync(fileURLToPath(new URL("../../../examples/digits-mlp-auto-lr/request.json", import.meta.url)), "utf8")) as unknown;
    const fields = formFromRequestDocument(autoLr);
    expect(fields).toMatchObject({ lr: "auto", batch: "32", loss: "auto", epochs: "8" });
    expect(requestFromForm(fields, { hasValidationFile: true }).training).toMatchObject({ optimizer: { type: "adam", lr: "auto" }, loss: { type: "auto" } });
  });

  it("schedule presets, and the model one layer a line", () => {
    expect(JSON.parse(schedulePreset("sequential", 40))).toEqual({
      schedulers: [{ type: "linear", start_factor: 0.1, total_iters: 5 }, { type: "cosine", T_max: 35 }],
      milestones: [5],
    });
    expect(schedulePreset("nonesuch", 10)).toBe("{}");
    const text = modelText({ input: { shape: [1, 8, 8] }, layers: [{ type: "flatten" }, { type: "relu" }] });
    expect(text).toBe('{"input":{"shape":[1,8,8]},\n "layers": [\n  {"type":"flatten"},\n  {"type":"relu"}\n]}');
    expect(JSON.parse(text)).toEqual({ input: { shape: [1, 8, 8] }, layers: [{ type: "flatten" }, { type: "relu" }] });
  });
});

describe("the playground's chart", () => {
  it("log ticks: powers of ten, else 1-2-5 multiples, labelled with values", () => {
    expect(logTicks(-3.2, 0.1).map((t) => t.label)).toEqual(["0.001", "0.01", "0.1", "1"]);
    expect(logTicks(-1.1, -0.2).map((t) => t.label)).toEqual(["0.1", "0.2", "0.5"]);
    // within a factor of two: linear values
    const narrow = logTicks(Math.log10(0.3), Math.log10(0.55));
    expect(narrow.length).toBeGreaterThanOrEqual(2);
    for (const t of narrow) expect(t.at).toBeCloseTo(Math.log10(Number(t.label)), 9);
    expect(linearTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
  });

  it("the rotated axis title sits left of the widest tick label, whatever the labels' width", () => {
    for (const labels of [["0", "0.5", "1"], ["1.00e-4", "0.001", "0.01"], ["12345678901234"]]) {
      const measure = (s: string) => s.length * 6.5;
      const L = chartLayout(390, 240, labels, measure);
      const widest = Math.max(...labels.map(measure));
      // the title's glyphs reach fontSize/2 right of its centre line; the labels start at left - tickGap - widest
      expect(L.titleX + L.fontSize / 2).toBeLessThan(L.left - L.tickGap - widest);
      expect(L.plotWidth).toBeGreaterThan(0);
    }
  });
});

describe("the playground's CSV look", () => {
  it("counts rows and features with the API's parser and proposes a model", () => {
    const look = lookAtCsv("a,b,y\n0,1,0\n1,0,1\n1,1,2\n", "three.csv", ["y"]);
    expect(look).toMatchObject({ ok: true, summary: "three.csv: 3 rows, 2 features, 3 classes (cross_entropy suggested)", loss: "cross_entropy" });
    expect(look.model!.layers.at(-1)).toMatchObject({ in_features: 32, out_features: 3 });
    expect(lookAtCsv("a,y\n0,0.5\n1,1.5\n", "r.csv", ["y"])).toMatchObject({ summary: "r.csv: 2 rows, 1 features, 1 regression target(s)", loss: "mse" });
    expect(lookAtCsv("a,b\n0,1\n", "t.csv", ["y"])).toMatchObject({ ok: false });
    expect(lookAtCsv("a,b\n0,1\n", "t.csv", ["y"]).summary).toMatch(/^t\.csv line 1: target column "y" not found/);
    expect(lookAtCsv('{"x":[1],"y":0}\n', "d.jsonl", ["y"])).toMatchObject({ ok: true, summary: "d.jsonl: JSONL; write the model by hand." });
  });
});

describe("the playground's explanations", () => {
  it("a diverging colour scale: white at 0, blue below, orange above, clamped", () => {
    expect(attributionColour(0, 1)).toBe("rgb(255, 255, 255)");
    expect(attributionColour(1, 1)).toBe("rgb(232, 89, 12)");
    expect(attributionColour(-2, 1)).toBe("rgb(31, 111, 235)");
    expect(attributionColour(0.5, 1)).toBe("rgb(244, 172, 134)");
    expect(attributionColour(0.5, 0)).toBe("rgb(255, 255, 255)");
  });

  it("recognises the shape", () => {
    const e = { method: "integrated_gradients", target: 1, feature_names: ["x0"], attributions: [[0.1]], feature_importance: [0.1] };
    expect(isExplanations(e)).toBe(true);
    expect(isExplanations({ ...e, attributions: [0.1] })).toBe(false);
    expect(isExplanations(null)).toBe(false);
  });
});
