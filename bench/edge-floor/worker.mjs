// The floor of bench/edge.mjs: a plain Hono app through the same `wrangler dev`, no storage,
// no validation. GET /healthz answers 200; POST /echo reads the body as text (the tiny
// request's 102 KiB) and answers its length, so that the loopback round trip and the body's
// transfer are measured apart from what edgetune does with it.
import { Hono } from "hono";

const app = new Hono();
app.get("/healthz", (c) => c.json({ status: "ok" }));
app.post("/echo", async (c) => c.json({ bytes: (await c.req.text()).length }));
app.post("/parse", async (c) => c.json({ keys: Object.keys(await c.req.json()).length }));

export default app;
