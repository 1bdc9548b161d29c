// A browser app's code (DOM lib, no Node types), type-checked by test/unit/consumer-types.test.ts.
import { train, trainInWorker, type TrainRequest } from "edgetune/browser";
import { Edgetune } from "edgetune/sdk";

const request = {
  model: { layers: [{ type: "linear", in_features: 2, out_features: 1 }] },
  data: { train: { x: [[0.1, 0.2]], y: [1] } },
  training: { epochs: 1, optimizer: { type: "adam", lr: 1e-3 } },
} as const satisfies TrainRequest;

export async function onDevice(gpu: GPUDevice | undefined): Promise<string> {
  const result = await train(request, { kernel: gpu ? "webgpu" : "wasm", gpu });
  const inWorker = await trainInWorker(request, { onProgress: (event) => console.log(event.type) });
  return `${result.status} ${inWorker.status}`;
}

export async function viaApi(): Promise<string> {
  const client = new Edgetune({ baseURL: location.origin });
  for await (const event of client.fineTunes.events("ft_1")) if (event.event === "done") return "done";
  return "open";
}
