// A consumer project's code, type-checked under strict settings by test/unit/consumer-types.test.ts
// against the built package (dist/*.d.ts), as an app that installed edgetune would see it.
import { readFile } from "node:fs/promises";
import { train, type TrainRequest } from "edgetune";
import { Edgetune, isJob, NotFoundError, type FineTuneCreateParams } from "edgetune/sdk";
import request from "./request.json" with { type: "json" };

// a model written `as const`: readonly arrays and literal types
const model = { layers: [{ type: "linear", name: "fc", in_features: 2, out_features: 1 }] } as const;
const rows = [[0.1, 0.2], [0.3, 0.4]] as const;

export async function local(): Promise<number | undefined> {
  const result = await train({ model, data: { train: { x: rows, y: [1, 0] } }, training: { epochs: 2 } });
  return result.metrics.history.at(-1)?.train_loss;
}

export async function fromJson(): Promise<string> {
  // request.json imported as JSON: its literals are widened to string and number
  const body: TrainRequest = { ...request, data: { ...request.data, train: { x: [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]], y: [1] } } };
  return (await train(body)).status;
}

export async function binary(): Promise<string> {
  // a safetensors dataset: a Buffer (a Uint8Array) to train(), base64 in the JSON, bytes to the SDK
  const dataset = await readFile("train.safetensors");
  const local = await train({ model, data: { train: dataset, validation: { safetensors: dataset.toString("base64") } } });
  const client = new Edgetune({ baseURL: "http://localhost:8787" });
  const created = await client.fineTunes.create({ model, data: { train: new Uint8Array(dataset) }, mode: "sync" });
  return `${local.status} ${isJob(created) ? created.status : created.status}`;
}

export async function remote(): Promise<string> {
  // process.env values are `string | undefined`: accepted under exactOptionalPropertyTypes
  const client = new Edgetune({ baseURL: "http://localhost:8787", apiKey: process.env.EDGETUNE_API_KEY });
  const params: FineTuneCreateParams = { ...request, weights: await readFile("weights.safetensors"), data: { ...request.data, train: "x0,y\n1,2\n" } };
  const created = await client.fineTunes.create(params, { idempotencyKey: process.env.IDEMPOTENCY_KEY });
  if (!isJob(created)) return created.status;
  try {
    return (await client.fineTunes.waitForCompletion(created.id)).status;
  } catch (error) {
    if (error instanceof NotFoundError) return "gone";
    throw error;
  }
}

export async function stillChecked(): Promise<void> {
  // the types still catch what can never be valid
  // @ts-expect-error epochs is a number
  await train({ model, data: { train: { x: rows, y: [1, 0] } }, training: { epochs: "five" } });
  // @ts-expect-error the request needs its data
  await train({ model });
  // @ts-expect-error no such client option
  new Edgetune({ baseUrl: "http://localhost:8787" });
}
