/**
 * The real app on a real port: a tiny node:http adapter to Hono's `app.fetch` (no dependency),
 * plus an in-process consumer that runs queued edge jobs, as the Worker's queue would.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { runClaimedJob } from "../../src/jobs/runner.js";
import { testApp } from "../api/app.js";

type AppOptions = Parameters<typeof testApp>[0];

export async function startServer(options: AppOptions = {}) {
  const t = await testApp(options);
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const controller = new AbortController();
    res.on("close", () => controller.abort());
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(", ") : v);
    const hasBody = req.method !== "GET" && req.method !== "HEAD";
    const request = new Request(`http://${req.headers.host}${req.url}`, {
      method: req.method,
      headers,
      signal: controller.signal,
      ...(hasBody ? { body: Readable.toWeb(req) as ReadableStream, duplex: "half" } : {}),
    } as RequestInit);
    const response = await t.app.fetch(request);
    res.writeHead(response.status, Object.fromEntries(response.headers));
    if (response.body) {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        if (res.destroyed) break;
        res.write(chunk);
      }
    }
    res.end();
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  let busy = false;
  const consumer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      const claim = await t.store.takeEdgeJob("consumer");
      if (claim) await runClaimedJob(t.store.channel, claim, t.runtime, { placement: "edge" });
    } finally {
      busy = false;
    }
  }, 10);

  const close = async () => {
    clearInterval(consumer);
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return { ...t, url, close };
}
