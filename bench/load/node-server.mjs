#!/usr/bin/env node
// The edgetune app served by node:http, for the load test: the built modules (dist/, from
// `npm run build`) wired as test/api/app.ts wires them (real engine and WASM kernels, an
// in-memory job store), behind a small adapter from Node's http to the app's fetch handler.
//
//   node bench/load/node-server.mjs [port]      prints "READY <port>" once listening
//
// EDGETUNE_API_KEYS (comma-separated) turns auth on; MAX_BODY_BYTES sets the body limit.
import { createServer } from "node:http";
import { Readable } from "node:stream";
import { createApp } from "../../dist/src/api/app.js";
import { parseApiKeys } from "../../dist/src/api/auth.js";
import { DEFAULT_EDGE_BUDGET } from "../../dist/src/api/budget.js";
import { MemoryJobStore } from "../../dist/src/jobs/memory-store.js";
import { DEFAULT_LEASE_POLICY } from "../../dist/src/jobs/state.js";
import { loadNodeRuntime } from "../../dist/src/node/kernel-module.js";

const port = Number(process.argv[2] ?? process.env.PORT ?? 8788);
const runtime = await loadNodeRuntime();
const store = new MemoryJobStore(DEFAULT_LEASE_POLICY);
const apiKeys = parseApiKeys(process.env.EDGETUNE_API_KEYS);
const app = createApp(() => ({
  runtime,
  store,
  apiKeys,
  budget: DEFAULT_EDGE_BUDGET,
  maxBodyBytes: Number(process.env.MAX_BODY_BYTES ?? 64 * 1024 * 1024),
  version: "load-test",
  lease: DEFAULT_LEASE_POLICY,
  nodeTokens: ["load-test-node-token"],
  pollMs: 500,
  rateLimiter: null,
  corsOrigins: [],
}));

/** Node's IncomingMessage as a fetch Request (body streamed, aborted when the client goes away). */
function toRequest(req, res) {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else if (value !== undefined) headers.set(name, value);
  }
  const controller = new AbortController();
  res.on("close", () => {
    if (!res.writableFinished) controller.abort();
  });
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  return new Request(`http://${req.headers.host ?? `127.0.0.1:${port}`}${req.url}`, {
    method: req.method,
    headers,
    body: hasBody ? Readable.toWeb(req) : undefined,
    duplex: "half",
    signal: controller.signal,
  });
}

const server = createServer(async (req, res) => {
  let response;
  try {
    response = await app.fetch(toRequest(req, res));
  } catch (error) {
    // the app answers its own errors; anything here is an adapter failure
    console.error("node-server: unhandled", error);
    response = new Response('{"status":500}', { status: 500, headers: { "content-type": "application/problem+json" } });
  }
  res.statusCode = response.status;
  for (const [name, value] of response.headers) res.appendHeader(name, value);
  if (!response.body) return res.end();
  try {
    for await (const chunk of response.body) {
      if (!res.write(chunk)) await new Promise((resolve) => res.once("drain", resolve));
    }
  } catch {
    // client went away mid-stream
  }
  res.end();
});
server.keepAliveTimeout = 65_000;
server.listen(port, "127.0.0.1", () => console.log(`READY ${server.address().port}`));
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => server.close(() => process.exit(0)));
