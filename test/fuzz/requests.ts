/**
 * Arbitraries for fine-tune requests: small valid ones (every layer, loss, optimizer and
 * schedule, data that fits the loss, weights that fit the model or not), and mutations of them
 * that replace, delete or add a value anywhere in the JSON tree. Small on purpose: a valid
 * request that the app runs synchronously must train in milliseconds.
 */
import { readdirSync, readFileSync } from "node:fs";
import fc from "fast-check";
import { encodeBase64 } from "../../src/formats/base64.js";
import { writeSafetensors } from "../../src/formats/safetensors.js";
import { anyString, nastyNumber } from "./fuzz.js";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const activation = fc.oneof(
  fc.constant({ type: "relu" }),
  fc.constant({ type: "tanh" }),
  fc.constant({ type: "sigmoid" }),
  fc.record({ type: fc.constant("gelu"), approximate: fc.constantFrom("none", "tanh") }),
  fc.record({ type: fc.constant("leaky_relu"), negative_slope: fc.double({ min: 0, max: 0.5, noNaN: true }) }),
  fc.record({ type: fc.constant("dropout"), p: fc.double({ min: 0, max: 0.9, noNaN: true }) }),
);

const optimizer = fc.oneof(
  fc.record({ type: fc.constant("sgd"), lr: fc.double({ min: 0, max: 0.1, noNaN: true }), momentum: fc.constantFrom(0, 0.9), nesterov: fc.boolean() }, { requiredKeys: ["type"] }),
  fc.record({ type: fc.constantFrom("adam", "adamw"), lr: fc.double({ min: 0, max: 0.1, noNaN: true }), amsgrad: fc.boolean(), betas: fc.constant([0.9, 0.99]) }, { requiredKeys: ["type"] }),
  fc.record({ type: fc.constant("rmsprop"), centered: fc.boolean(), momentum: fc.constantFrom(0, 0.5) }, { requiredKeys: ["type"] }),
  fc.record({ type: fc.constant("adagrad"), lr_decay: fc.constantFrom(0, 0.01) }, { requiredKeys: ["type"] }),
);

const schedule = fc.oneof(
  fc.constant({ type: "constant" }),
  fc.record({ type: fc.constant("step"), step_size: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ type: fc.constant("multistep"), milestones: fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 3 }) }),
  fc.record({ type: fc.constant("exponential"), gamma: fc.double({ min: 0.5, max: 1, noNaN: true }) }),
  fc.record({ type: fc.constant("cosine"), interval: fc.constantFrom("epoch", "step") }, { requiredKeys: ["type"] }),
  fc.constant({ type: "linear" }),
  fc.record({ type: fc.constant("onecycle"), max_lr: fc.constant(0.01) }, { requiredKeys: ["type"] }),
  fc.record({ type: fc.constant("plateau"), patience: fc.integer({ min: 0, max: 2 }) }),
  fc.constant({ type: "sequential", schedulers: [{ type: "linear", start_factor: 0.5, total_iters: 2 }, { type: "cosine" }], milestones: [2] }),
);

/** A normalisation layer after the first linear layer (over `hidden` features), without state so that the weights stay those of the two linear layers. */
const norm = fc.constantFrom<{ [key: string]: Json } | null>(
  null,
  { type: "layer_norm", elementwise_affine: false },
  { type: "rms_norm", eps: null, elementwise_affine: false },
  { type: "batch_norm1d", affine: false, track_running_stats: false, momentum: null },
);

type LossKind = "mse" | "l1" | "huber" | "smooth_l1" | "cross_entropy" | "bce_with_logits" | "hinge" | "multi_margin";

/** A valid request (as JSON) for a 2-layer MLP; weights null, omitted, matching or mismatching. */
export const validRequest: fc.Arbitrary<Record<string, Json>> = fc
  .record({
    inputs: fc.integer({ min: 1, max: 4 }),
    hidden: fc.integer({ min: 1, max: 4 }),
    outputs: fc.integer({ min: 1, max: 3 }),
    rows: fc.integer({ min: 2, max: 12 }),
    named: fc.boolean(),
    activation,
    norm,
    loss: fc.constantFrom<LossKind>("mse", "l1", "huber", "smooth_l1", "cross_entropy", "bce_with_logits", "hinge", "multi_margin"),
    optimizer,
    schedule,
    epochs: fc.integer({ min: 1, max: 3 }),
    batch: fc.integer({ min: 1, max: 8 }),
    weights: fc.constantFrom("omit", "null", "match", "mismatch", "garbage"),
    validation: fc.constantFrom("none", "split", "data"),
    seed: fc.integer({ min: 0, max: 1000 }),
    mode: fc.constantFrom("auto", "sync", "async", undefined),
    dtype: fc.constantFrom("float32", "float16", "bfloat16"),
    clip: fc.constantFrom(null, 1, { max_norm: 1, norm_type: "inf" }),
    early: fc.constantFrom(null, { monitor: "train_loss", patience: 1 }),
    shuffle: fc.boolean(),
  })
  .map((r) => {
    const first: Json = r.named ? { type: "linear", name: "fc1", in_features: r.inputs, out_features: r.hidden } : { type: "linear", in_features: r.inputs, out_features: r.hidden };
    const second: Json = r.named ? { type: "linear", name: "fc2", in_features: r.hidden, out_features: r.outputs } : { type: "linear", in_features: r.hidden, out_features: r.outputs };
    const names = r.named ? ["fc1", "fc2"] : ["0", r.norm ? "3" : "2"];
    const normLayer: Json[] =
      r.norm === null ? [] : [{ ...r.norm, ...(r.norm.type === "batch_norm1d" ? { num_features: r.hidden } : { normalized_shape: [r.hidden] }) }];
    let state = r.seed * 7919 + 1;
    const rand = () => ((state = (state * 48271) % 2147483647) / 2147483647) * 2 - 1;
    const table = (rows: number) => {
      const x = Array.from({ length: rows }, () => Array.from({ length: r.inputs }, rand));
      const y = x.map((_, i): Json => {
        switch (r.loss) {
          case "cross_entropy":
          case "multi_margin":
            return i % r.outputs;
          case "bce_with_logits":
            return r.outputs === 1 ? i % 2 : Array.from({ length: r.outputs }, (_, j) => (i + j) % 2);
          case "hinge":
            return r.outputs === 1 ? (i % 2 ? 1 : -1) : Array.from({ length: r.outputs }, (_, j) => ((i + j) % 2 ? 1 : 0));
          default:
            return r.outputs === 1 ? rand() : Array.from({ length: r.outputs }, rand);
        }
      });
      return { x, y };
    };
    const request: Record<string, Json> = {
      model: { layers: [first, ...normLayer, r.activation as Json, second] },
      data: { train: table(r.rows) },
      training: {
        epochs: r.epochs,
        batch_size: r.batch,
        seed: r.seed,
        shuffle: r.shuffle,
        loss: { type: r.loss },
        optimizer: r.optimizer as Json,
        schedule: r.schedule as Json,
        clip_grad_norm: r.clip as Json,
        early_stopping: r.early as Json,
      },
      output: { dtype: r.dtype },
    };
    if (r.mode !== undefined) request.mode = r.mode;
    if (r.validation === "split") (request.data as Record<string, Json>).validation_split = 0.25;
    if (r.validation === "data") (request.data as Record<string, Json>).validation = table(3);
    if (r.weights === "null") request.weights = null;
    if (r.weights === "garbage") request.weights = "bm90IHNhZmV0ZW5zb3Jz";
    if (r.weights === "match" || r.weights === "mismatch") {
      const shapes: [string, number[]][] = [
        [`${names[0]}.weight`, [r.hidden, r.inputs]],
        [`${names[0]}.bias`, [r.hidden]],
        [`${names[1]}.weight`, [r.outputs, r.hidden]],
        [`${names[1]}.bias`, [r.weights === "mismatch" ? r.outputs + 1 : r.outputs]],
      ];
      const tensors = shapes.map(([name, shape]) => ({ name, shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rand() * 0.5) }));
      request.weights = encodeBase64(writeSafetensors(tensors));
    }
    return request;
  });

/** Every path (list of keys) in a JSON tree, the root included. */
function paths(value: Json, prefix: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(prefix);
  if (Array.isArray(value)) value.forEach((v, i) => paths(v, [...prefix, i], out));
  else if (value !== null && typeof value === "object") for (const [k, v] of Object.entries(value)) paths(v, [...prefix, k], out);
  return out;
}

/** Values a fuzzer puts where a field was. */
export const replacement: fc.Arbitrary<Json> = fc.oneof(
  { weight: 3, arbitrary: nastyNumber as fc.Arbitrary<Json> },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json> },
  { weight: 2, arbitrary: anyString as fc.Arbitrary<Json> },
  { weight: 1, arbitrary: fc.constantFrom<Json>(null, true, false, [], {}, "", "auto", "sync", "async", "edge", "gpu-node", "float16", "inf", "mse", "cross_entropy", "adam", "onecycle", "linear", "fc1", "fc2.bias", [0.9, 1], [[1]], { type: "linear" }, "AAAA") },
);

/** Keys a fuzzer adds: unknown names, near-misses and prototype keys. */
export const extraKey: fc.Arbitrary<string> = fc.oneof(fc.constantFrom("__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "Epochs", "lr ", "x", "y", "type", "weights", "train"), anyString);

export type Mutation = { kind: "replace" | "delete" | "add"; at: number; value: Json; key: string };

export const mutation: fc.Arbitrary<Mutation> = fc.record({ kind: fc.constantFrom("replace", "replace", "delete", "add"), at: fc.nat(), value: replacement, key: extraKey });

/** Applies mutations to a deep copy; object keys are written as own data properties (so "__proto__" stays a key, as JSON.parse makes it). */
export function mutate(request: Record<string, Json>, mutations: Mutation[]): Json {
  let root = JSON.parse(JSON.stringify(request)) as Json;
  for (const m of mutations) {
    const all = paths(root);
    const path = all[m.at % all.length]!;
    if (path.length === 0) {
      if (m.kind === "replace") root = m.value;
      continue;
    }
    let parent = root as Record<string | number, Json>;
    for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, Json>;
    const last = path[path.length - 1]!;
    if (m.kind === "replace") parent[last] = m.value;
    else if (m.kind === "delete") {
      if (Array.isArray(parent)) parent.splice(last as number, 1);
      else delete parent[last];
    } else {
      const target = parent[last];
      if (target !== null && typeof target === "object" && !Array.isArray(target)) {
        Object.defineProperty(target, m.key, { value: m.value, enumerable: true, writable: true, configurable: true });
      } else if (Array.isArray(target)) target.push(m.value);
    }
  }
  return root;
}

/** A mutated (or not) valid request, as a JSON value. */
export const fuzzedRequest: fc.Arbitrary<Json> = fc.oneof(
  { weight: 1, arbitrary: validRequest as fc.Arbitrary<Json> },
  { weight: 6, arbitrary: fc.tuple(validRequest, fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([r, ms]) => mutate(r, ms)) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }) as fc.Arbitrary<Json> },
);

/**
 * The requests of the PyTorch parity fixtures (test/parity/fixtures): every layer kind, Hugging Face
 * configs, LoRA adapters, DP-SGD, explanations and "auto" choices, as valid starting points the
 * mutations take apart. Without weights (the run initialises them) and with at most `rows` rows
 * per dataset, so that validating one stays cheap.
 */
export function fixtureRequests(rows = 8): Record<string, Json>[] {
  const dir = new URL("../parity/fixtures/", import.meta.url);
  const out: Record<string, Json>[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
    const doc = JSON.parse(readFileSync(new URL(file, dir), "utf8")) as { cases?: { request?: Record<string, Json> }[] };
    for (const c of doc.cases ?? []) {
      if (!c.request) continue;
      const request = JSON.parse(JSON.stringify(c.request)) as Record<string, Json>;
      const data = request.data as Record<string, Json>;
      for (const part of ["train", "validation"]) {
        const table = data[part] as Record<string, Json> | undefined;
        if (!table) continue;
        for (const [key, value] of Object.entries(table)) if (Array.isArray(value)) table[key] = value.slice(0, rows);
      }
      out.push(request);
    }
  }
  return out;
}

/** A parity fixture's request, mutated 1 to 3 times. */
export const fuzzedFixtureRequest = (requests: Record<string, Json>[]): fc.Arbitrary<Json> =>
  fc.tuple(fc.constantFrom(...requests), fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([r, ms]) => mutate(r, ms));

export type { Json };

