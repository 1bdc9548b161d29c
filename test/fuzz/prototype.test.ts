/**
 * Prototype pollution: request JSON (body or multipart part), safetensors headers, CSV headers
 * and JSONL lines carrying `__proto__`, `constructor.prototype` or `prototype` keys never change
 * Object.prototype, and such keys are refused with a 400 naming them (or, where the schema
 * strips unknown keys, ignored).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { parseSafetensors } from "../../src/formats/safetensors.js";
import { parseCsv, parseJsonl } from "../../src/formats/dataset.js";
import { prepareRun, type TrainRequest } from "../../src/engine/train.js";
import { EdgetuneError, RequestValidationError } from "../../src/errors.js";
import { testApp } from "../api/app.js";
import { checkProperty, printReports, smallBudget } from "./fuzz.js";
import { validRequest } from "./requests.js";

afterAll(() => printReports("prototype"));

type App = Awaited<ReturnType<typeof testApp>>["app"];
let app: App;
beforeAll(async () => {
  app = (await testApp({ budget: smallBudget() })).app;
});

/** Object.prototype and Array.prototype are untouched. */
function expectClean(): void {
  const probe = {} as Record<string, unknown>;
  expect(probe.polluted, "Object.prototype.polluted").toBeUndefined();
  expect(Object.hasOwn(Object.prototype, "polluted")).toBe(false);
  expect(([] as unknown as Record<string, unknown>).polluted).toBeUndefined();
  expect(Object.getPrototypeOf(probe)).toBe(Object.prototype);
}
afterEach(() => {
  // leave no pollution behind for other tests, even when one fails
  delete (Object.prototype as Record<string, unknown>).polluted;
  delete (Array.prototype as unknown as Record<string, unknown>).polluted;
});

const PAYLOADS = ['"__proto__":{"polluted":true}', '"constructor":{"prototype":{"polluted":true}}', '"prototype":{"polluted":true}', '"__proto__":{"__proto__":{"polluted":true}}', '"__proto__":null'];
const BASE = `{"model":{"layers":[{"type":"linear","name":"fc1","in_features":2,"out_features":1}]},"data":{"train":{"x":[[1,2],[3,4]],"y":[1,2]}},"training":{"epochs":1,"optimizer":{"type":"sgd"}},"output":{"dtype":"float32"},"mode":"sync"}`;
/** Where a key can be spliced into BASE: after each "{" of an object (the path the error should name). */
const PLACES: [string, string][] = [
  ["", "{"],
  ["model", '"model":{'],
  ["model.layers[0]", '"layers":[{'],
  ["data", '"data":{'],
  ["data.train", '"train":{'],
  ["training", '"training":{'],
  ["training.optimizer", '"optimizer":{'],
  ["output", '"output":{'],
];

function splice(place: string, payload: string): string {
  const at = BASE.indexOf(place) + place.length;
  return `${BASE.slice(0, at)}${payload},${BASE.slice(at)}`;
}

async function post(body: string | FormData): Promise<{ status: number; body: { errors?: { path: string }[] } }> {
  const init: RequestInit = typeof body === "string" ? { method: "POST", body, headers: { "content-type": "application/json" } } : { method: "POST", body };
  const response = await app.request("/v1/fine-tunes", init);
  return { status: response.status, body: (await response.json()) as { errors?: { path: string }[] } };
}

describe("prototype keys in the request JSON", () => {
  for (const [path, place] of PLACES) {
    for (const payload of PAYLOADS) {
      const key = payload.slice(1, payload.indexOf('"', 1));
      it(`${key} in ${path || "the body"}: ${path === "output" ? "ignored" : "refused, naming it"}, nothing polluted`, async () => {
        const text = splice(place, payload);
        expect(() => JSON.parse(text)).not.toThrow();
        const { status, body } = await post(text);
        expectClean();
        if (path === "output") {
          // `output` is the one non-strict object of the schema: unknown keys are stripped
          expect([200, 400]).toContain(status);
          return;
        }
        expect(status).toBe(400);
        const paths = (body.errors ?? []).map((e) => e.path);
        const expected = path === "" ? key : path === "model.layers[0]" ? `model.layers[0].${key}` : `${path}.${key}`;
        expect(paths).toContain(expected);
      });
    }
  }

  it("in the multipart request part", async () => {
    const form = new FormData();
    form.append("request", splice('"data":{', '"__proto__":{"polluted":true,"target":"polluted"}').replace(/"train":\{[^}]*\}/, '"target":"y"'));
    form.append("train", new Blob(["a,b,y\n1,2,3\n"], { type: "text/csv" }), "train.csv");
    const { status, body } = await post(form);
    expectClean();
    expect(status).toBe(400);
    expect((body.errors ?? []).map((e) => e.path)).toContain("data.__proto__");
  });

  it("prepareRun on a JSON.parse'd request with __proto__ at every level", () => {
    for (const [path, place] of PLACES) {
      let error: unknown;
      try {
        prepareRun(JSON.parse(splice(place, PAYLOADS[0]!)) as TrainRequest);
      } catch (e) {
        error = e;
      }
      expectClean();
      if (path !== "output") expect(error, path).toBeInstanceOf(RequestValidationError);
    }
  });
});

describe("prototype keys in files", () => {
  it("a safetensors tensor and metadata key named __proto__", () => {
    const header = '{"__metadata__":{"__proto__":"x","polluted":"y"},"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"constructor":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}';
    const bytes = new Uint8Array(8 + header.length + 8);
    new DataView(bytes.buffer).setUint32(0, header.length, true);
    bytes.set(new TextEncoder().encode(header), 8);
    const file = parseSafetensors(bytes);
    expectClean();
    expect([...file.tensors.keys()]).toEqual(["__proto__", "constructor"]);
    expect(Object.getPrototypeOf(file.metadata)).toBe(Object.prototype);
    expect(Object.hasOwn(file.metadata!, "__proto__")).toBe(true);
  });

  it("CSV columns and JSONL keys named __proto__ / constructor", () => {
    const table = parseCsv("__proto__,constructor,y\n1,2,3\n", { target: "y", field: "data.train" });
    expect(table.features).toBe(2);
    expect(() => parseCsv("a,y\n1,2\n", { target: "__proto__", field: "data.train" })).toThrow(EdgetuneError);
    expect(() => parseJsonl('{"__proto__":{"x":[1],"y":1}}\n', { field: "data.train" })).toThrow(EdgetuneError);
    const ok = parseJsonl('{"x":[1],"y":1,"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}\n', { field: "data.train" });
    expect(ok.rows).toBe(1);
    expectClean();
  });
});

describe("fuzz: prototype keys spliced anywhere into valid requests", () => {
  it("never pollute, and are refused unless under output", async () => {
    await checkProperty(
      "prototype: spliced keys",
      fc.asyncProperty(validRequest, fc.nat(), fc.constantFrom(...PAYLOADS), async (request, at, payload) => {
        const text = JSON.stringify({ ...request, mode: "sync", training: { ...(request.training as object), epochs: 1 } });
        // splice after a random "{" that opens an object
        const opens = [...text.matchAll(/\{/g)].map((m) => m.index!);
        const position = opens[at % opens.length]! + 1;
        const spliced = `${text.slice(0, position)}${payload}${text[position] === "}" ? "" : ","}${text.slice(position)}`;
        const { status, body } = await post(spliced);
        expectClean();
        const key = payload.slice(1, payload.indexOf('"', 1));
        if (status === 400 || status === 422) {
          // refused: for the prototype key (then an issue names it), or for something of the request itself
          let alone: unknown = null;
          try {
            prepareRun(JSON.parse(text) as TrainRequest);
          } catch (e) {
            alone = e;
          }
          const invalidAlone = alone instanceof RequestValidationError;
          if (status === 400 && !invalidAlone) expect((body.errors ?? []).map((e) => e.path).join(" "), spliced).toContain(key);
          return;
        }
        // accepted only when the key went where unknown keys are ignored: output, or inside a JSON value that is free-form
        expect([200, 202]).toContain(status);
        const before = text.slice(0, position);
        expect(/"output":\{$/.test(before) || /"__metadata__"/.test(before), `accepted ${payload} at ${before.slice(-40)}`).toBe(true);
      }),
      500,
    );
  });
});
