/**
 * Property tests of every layer type, derived from the registry and the parity fixtures (every
 * layer type has a fixture, test/engine/registry.test.ts checks it): take a fixture's model,
 * mutate one field of one layer anywhere in it (a nasty number, a string, a negative or huge
 * size, a list, null, a deleted field, an unknown field, another layer type), and require that
 * prepareRun either accepts the request or throws a typed 400/422 naming a field; an accepted
 * request then trains one step without throwing and without NaN weights.
 */
import { readFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { LAYERS } from "../../src/engine/layers/index.js";
import { prepareRun, type TrainRequest } from "../../src/engine/prepare.js";
import { RequestValidationError, UnprocessableError } from "../../src/errors.js";
import { decodeBase64 } from "../../src/formats/base64.js";
import { parseSafetensors, readTensorF32 } from "../../src/formats/safetensors.js";
import { train } from "../../src/node/index.js";
import { GROUPS, type ParityCase } from "../parity/compare.js";
import { anyString, checkProperty, expectTyped, nastyNumber, printReports } from "./fuzz.js";

afterAll(() => printReports("layers"));

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** One small fixture request per layer type (its first), with 8 rows and one epoch. */
const requests: Record<string, Json>[] = (() => {
  const cases = GROUPS.flatMap(
    (group) => (JSON.parse(readFileSync(new URL(`../parity/fixtures/${group}.json`, import.meta.url), "utf8")) as { cases: ParityCase[] }).cases,
  );
  const uses = (layers: Json[], type: string): boolean =>
    layers.some((l) => (l as { type: string }).type === type || uses(((l as { layers?: Json[] }).layers ?? []) as Json[], type));
  const picked = new Map<string, ParityCase>();
  for (const d of LAYERS) {
    const c = cases.find((k) => uses((k.request as { model: { layers?: Json[] } }).model.layers ?? [], d.type));
    if (c) picked.set(c.name, c);
  }
  return [...picked.values()].map((c) => {
    const r = structuredClone(c.request) as Record<string, Json> & { data: Record<string, Record<string, Json[]>>; training: Record<string, Json> };
    for (const ds of Object.values(r.data)) for (const [k, v] of Object.entries(ds)) if (Array.isArray(v)) ds[k] = v.slice(0, 8);
    r.training = { ...r.training, epochs: 1, batch_size: 4, early_stopping: null };
    return r;
  });
})();

/** Every layer object of a model (containers' children included), for picking one to mutate. */
function layersOf(layers: Json[]): Record<string, Json>[] {
  return layers.flatMap((l) => [l as Record<string, Json>, ...layersOf((((l as Record<string, Json>).layers as Json[] | undefined) ?? []))]);
}

const replacement: fc.Arbitrary<Json> = fc.oneof(
  nastyNumber,
  fc.integer({ min: -3, max: 70 }),
  fc.constantFrom(0, -1, 2 ** 20, 2 ** 31, 1.5, [2, 2], [1, 2, 3], [], null, true, "same", "valid", "none"),
  anyString,
);

const mutation = fc.record({
  request: fc.constantFrom(...requests),
  layer: fc.nat(),
  field: fc.nat(),
  kind: fc.constantFrom("replace", "delete", "unknown", "retype"),
  value: replacement,
  type: fc.constantFrom(...LAYERS.map((d) => d.type)),
});

describe("fuzz: any layer field, mutated, is accepted or refused with a typed 400/422", () => {
  it("fixtures exist for the layer types", () => {
    expect(requests.length).toBeGreaterThan(0);
  });

  it("mutated layers", async () => {
    let accepted = 0;
    let trained = 0;
    await checkProperty(
      "layers: one mutated field of one layer",
      fc.asyncProperty(mutation, async (m) => {
        const request = structuredClone(m.request) as Record<string, Json> & { model: { layers: Json[] } };
        const all = layersOf(request.model.layers);
        const layer = all[m.layer % all.length]!;
        const keys = Object.keys(layer);
        const key = keys[m.field % keys.length]!;
        if (m.kind === "replace") layer[key] = m.value;
        else if (m.kind === "delete") delete layer[key];
        else if (m.kind === "unknown") layer.not_a_field = m.value;
        else layer.type = m.type;
        let prepared: ReturnType<typeof prepareRun>;
        try {
          prepared = prepareRun(request as unknown as TrainRequest);
        } catch (error) {
          const typed = expectTyped(error, [RequestValidationError, UnprocessableError]);
          expect([400, 422]).toContain(typed.status);
          return;
        }
        accepted++;
        // weights were not sent: the run initialises them; a small model trains one epoch
        if (prepared.plan.flops > 5e7) return;
        const result = await train(request as unknown as TrainRequest);
        expect(["succeeded", "diverged"]).toContain(result.status);
        const file = parseSafetensors(decodeBase64(result.weights));
        for (const name of file.tensors.keys()) {
          const values = readTensorF32(file, name, "weights", { integers: true });
          expect(values.every(Number.isFinite), `${name} finite`).toBe(true);
        }
        trained++;
      }),
      1000,
    );
    console.log(`[fuzz] layers: ${accepted} mutated requests accepted, ${trained} of them trained`);
    expect(accepted).toBeGreaterThan(0);
  });
});
