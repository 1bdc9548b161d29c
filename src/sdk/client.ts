/**
 * The edgetune API client.
 */
import { APIClient, type ClientOptions } from "./core.js";
import { FineTunes } from "./fine-tunes.js";

/**
 * The edgetune client: `client.fineTunes.create / retrieve / list / cancel / events / weights /
 * waitForCompletion`. Uses only fetch, so it runs in Node 20+, browsers and Workers.
 *
 * Without options it reads `EDGETUNE_URL` (default http://localhost:8787) and
 * `EDGETUNE_API_KEY` where `process.env` exists. Idempotent calls (GET, cancel) and creates
 * (which carry an Idempotency-Key) are retried `maxRetries` times (default 2) after connection
 * errors, timeouts, 408, 429 and 5xx other than 501, with exponential backoff and jitter,
 * honouring `Retry-After`. Each attempt times out after `timeout` ms (default 10 minutes).
 *
 * @example
 * ```ts
 * import { Edgetune } from "edgetune/sdk";
 *
 * const client = new Edgetune({ baseURL: "http://localhost:8787", apiKey: process.env.EDGETUNE_API_KEY });
 * const result = await client.fineTunes.create({ ...request, mode: "sync" });
 * console.log(result.status, result.metrics.history.at(-1)?.train_loss);
 * ```
 */
export class Edgetune extends APIClient {
  /** The /v1/fine-tunes resource. */
  readonly fineTunes: FineTunes;

  constructor(options: ClientOptions = {}) {
    super(options);
    this.fineTunes = new FineTunes(this);
  }
}
