/**
 * edgetune/sdk: the TypeScript client of the edgetune HTTP API. Only fetch, ReadableStream,
 * TextDecoder, AbortController, FormData and Blob: it runs in Node 20+, browsers and Workers.
 *
 * @example
 * ```ts
 * import { Edgetune } from "edgetune/sdk";
 *
 * const client = new Edgetune({ baseURL: "http://localhost:8787", apiKey: "k1" });
 * const job = await client.fineTunes.create({ ...request, mode: "async" });
 * const done = await client.fineTunes.waitForCompletion(job.id, { onEvent: (e) => console.log(e.event) });
 * const weights = await client.fineTunes.weights(done.id); // safetensors bytes
 * ```
 */
import { decodeBase64 } from "../formats/base64.js";
import { Edgetune } from "./client.js";

export { Edgetune };
export default Edgetune;
export { APIClient, backoffMs, retryAfterMs, type ClientOptions, type Fetch, type RequestOptions } from "./core.js";
export { FineTunes, type CreateOptions, type EventsOptions, type ExplainOptions, type ListJobsParams, type ListParams, type WaitOptions } from "./fine-tunes.js";
export { EventStream } from "./events.js";
export { FineTuneCheckpoints } from "./checkpoints.js";
export type { Checkpoint, CheckpointList } from "../schema/checkpoint.js";
export { huggingFace, type HuggingFaceFiles, type JsonFile } from "./huggingface.js";
export { JobListPromise, MetricsPagePromise, PagePromise } from "./pagination.js";
export { parseSSE, type SSEMessage } from "./sse.js";
export {
  EdgetuneAPIError,
  BadRequestError,
  AuthenticationError,
  NotFoundError,
  ConflictError,
  PayloadTooLargeError,
  UnsupportedMediaTypeError,
  UnprocessableEntityError,
  RateLimitError,
  InternalServerError,
  APIConnectionError,
  APITimeoutError,
  APIUserAbortError,
  ExplanationFailedError,
  type FieldIssue,
} from "./errors.js";
export * from "./types.js";

/**
 * The weights of a sync result (base64 in `result.weights`) as safetensors bytes.
 *
 * @example
 * ```ts
 * const result = await client.fineTunes.create({ ...request, mode: "sync" });
 * await writeFile("tuned.safetensors", decodeWeights(result));
 * ```
 */
export function decodeWeights(result: { weights: string }): Uint8Array {
  return decodeBase64(result.weights);
}
