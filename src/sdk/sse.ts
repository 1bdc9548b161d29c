/**
 * A Server-Sent Events parser (the WHATWG event-stream format) over a fetch body: only
 * ReadableStream and TextDecoder, so it runs in Node, browsers and Workers.
 */

/**
 * One dispatched SSE message.
 *
 * @example
 * ```ts
 * const m: SSEMessage = { event: "epoch", data: '{"epoch":1,"train_loss":0.5,"lr":0.001}', id: "3" };
 * ```
 */
export interface SSEMessage {
  /** The `event:` field, "message" when absent. */
  event: string;
  /** The `data:` lines joined with "\n". */
  data: string;
  /** The last `id:` seen on the stream so far (it persists across messages, as in EventSource). */
  id: string | undefined;
  /** A `retry:` reconnection delay in ms, when this message carried one. */
  retry?: number | undefined;
}

/**
 * Parses an event stream into messages. Comments (`: keep-alive`) are skipped; an unterminated
 * last message is dropped, as the spec says. Cancels the body when the caller stops early.
 *
 * @example
 * ```ts
 * for await (const message of parseSSE(response.body!)) console.log(message.event, JSON.parse(message.data));
 * ```
 */
export async function* parseSSE(body: ReadableStream<Uint8Array>): AsyncGenerator<SSEMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let data: string[] = [];
  let event = "";
  let id: string | undefined;
  let retry: number | undefined;
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let start = 0;
      for (;;) {
        const cr = buffer.indexOf("\r", start);
        const lf = buffer.indexOf("\n", start);
        let end: number;
        if (cr === -1 && lf === -1) break;
        if (cr === -1 || (lf !== -1 && lf < cr)) end = lf;
        else end = cr;
        let next = end + 1;
        if (buffer[end] === "\r") {
          if (end + 1 === buffer.length && !done) break; // a "\r\n" may be split across chunks
          if (buffer[end + 1] === "\n") next = end + 2;
        }
        const line = buffer.slice(start, end);
        start = next;
        if (line === "") {
          if (data.length > 0) {
            const message: SSEMessage = { event: event || "message", data: data.join("\n"), id };
            if (retry !== undefined) message.retry = retry;
            yield message;
          }
          data = [];
          event = "";
          retry = undefined;
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let fieldValue = colon === -1 ? "" : line.slice(colon + 1);
        if (fieldValue.startsWith(" ")) fieldValue = fieldValue.slice(1);
        if (field === "data") data.push(fieldValue);
        else if (field === "event") event = fieldValue;
        else if (field === "id" && !fieldValue.includes("\0")) id = fieldValue;
        else if (field === "retry" && /^\d+$/.test(fieldValue)) retry = Number(fieldValue);
      }
      buffer = buffer.slice(start);
      if (done) {
        finished = true;
        return;
      }
    }
  } finally {
    if (!finished) reader.cancel().catch(() => {});
    else reader.releaseLock();
  }
}
