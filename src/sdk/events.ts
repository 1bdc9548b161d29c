/**
 * A job's event stream as an async iterator of typed events, resuming with Last-Event-ID when a
 * connection drops before the final event.
 */
import { APIConnectionError, APIUserAbortError, EdgetuneAPIError } from "./errors.js";
import { backoffMs, sleep, type OpenStream } from "./core.js";
import { parseSSE } from "./sse.js";
import type { FineTuneEvent } from "./types.js";

const EVENT_NAMES = new Set(["status", "epoch", "step", "done", "error", "trial"]);

/**
 * The answer of `client.fineTunes.events(id)`: iterate it once with `for await`. It ends after
 * the final `done` or `error` event. When a connection drops (or the server closes it) before
 * then, it reconnects with `Last-Event-ID` and carries on without repeating events; after
 * `maxRetries` reconnections in a row that bring nothing new it throws `APIConnectionError`.
 * Breaking out of the loop, or `abort()`, aborts the underlying request.
 *
 * @example
 * ```ts
 * const stream = client.fineTunes.events(id);
 * for await (const event of stream) {
 *   if (event.event === "epoch") console.log(`epoch ${event.data.epoch}: ${event.data.train_loss}`);
 *   if (event.event === "epoch" && event.data.train_loss < 0.01) break; // aborts the request
 * }
 * stream.lastEventId; // resume later with events(id, { lastEventId })
 * ```
 */
export class EventStream implements AsyncIterable<FineTuneEvent> {
  /** Aborting it ends the iteration (with `APIUserAbortError`) and the request. */
  readonly controller = new AbortController();
  /** The id of the last event received: pass it as `lastEventId` to resume in another stream. */
  lastEventId: number | undefined;
  private iterated = false;

  constructor(
    private readonly open: (lastEventId: number | undefined, signal: AbortSignal) => Promise<OpenStream>,
    options: { lastEventId?: number | undefined; signal?: AbortSignal | undefined; maxRetries: number },
  ) {
    this.lastEventId = options.lastEventId;
    this.maxRetries = options.maxRetries;
    const { signal } = options;
    if (signal?.aborted) this.controller.abort(signal.reason);
    else if (signal) {
      const onAbort = () => this.controller.abort(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      this.unlink = () => signal.removeEventListener("abort", onAbort);
    }
  }

  private readonly maxRetries: number;
  private unlink: () => void = () => {};

  /** Stops the stream and aborts its request. */
  abort(reason?: unknown): void {
    this.controller.abort(reason);
  }

  [Symbol.asyncIterator](): AsyncGenerator<FineTuneEvent> {
    if (this.iterated) throw new TypeError("An EventStream can be iterated once; call events() again (with lastEventId) for another pass.");
    this.iterated = true;
    return this.iterate();
  }

  private async *iterate(): AsyncGenerator<FineTuneEvent> {
    const signal = this.controller.signal;
    let fruitless = 0;
    let delay: number | undefined;
    try {
      for (;;) {
        const connection = await this.open(this.lastEventId, signal);
        let progressed = false;
        let dropped: unknown = undefined;
        try {
          const type = connection.response.headers.get("content-type") ?? "";
          if (!type.startsWith("text/event-stream")) {
            throw new EdgetuneAPIError(`Expected an event stream, got content-type ${type || "(none)"}.`);
          }
          if (!connection.response.body) throw new EdgetuneAPIError("The event stream has no body.");
          for await (const message of parseSSE(connection.response.body)) {
            if (message.retry !== undefined) delay = message.retry;
            const event = toEvent(message.event, message.id, message.data);
            if (event === null) continue;
            this.lastEventId = event.id;
            progressed = true;
            yield event;
            if (event.event === "done" || event.event === "error") return;
          }
        } catch (err) {
          if (signal.aborted) throw new APIUserAbortError(undefined, signal.reason);
          if (err instanceof EdgetuneAPIError) throw err;
          dropped = err; // the connection broke mid-stream: resume below
        } finally {
          connection.close();
        }
        fruitless = progressed ? 0 : fruitless + 1;
        if (fruitless > this.maxRetries) {
          throw new APIConnectionError(
            `The event stream closed ${fruitless} times in a row before its final event (last event id ${this.lastEventId ?? "none"}).`,
            dropped,
          );
        }
        await sleep(delay ?? backoffMs(Math.max(0, fruitless - 1)), signal);
      }
    } finally {
      // reached on the final event, on errors, and when the caller breaks out of its loop
      this.controller.abort();
      this.unlink();
    }
  }
}

/** A typed event from an SSE message; null for events this SDK does not know (skipped). */
function toEvent(name: string, id: string | undefined, data: string): FineTuneEvent | null {
  if (!EVENT_NAMES.has(name)) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    throw new EdgetuneAPIError(`The ${name} event ${id ?? ""} carries data that is not JSON: ${data.slice(0, 200)}`);
  }
  const seq = id === undefined ? 0 : Number.parseInt(id, 10);
  return { id: Number.isFinite(seq) ? seq : 0, event: name, data: parsed } as FineTuneEvent;
}
