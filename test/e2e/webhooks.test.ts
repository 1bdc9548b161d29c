/**
 * Webhooks with real processes: `wrangler dev` (local development, so http://127.0.0.1 is an
 * allowed URL) and a receiver on this machine that verifies each delivery's Standard Webhooks
 * signature with node:crypto, and refuses the first attempt of every message so that the Queue's
 * retry delivers it.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedRequest } from "../helpers.js";
import { eventually, freePort, startWranglerDev, stop, type Proc } from "./processes.js";

const work = mkdtempSync(join(tmpdir(), "edgetune-webhooks-"));
const KEY = "webhook-key";
const RAW_SECRET = Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 53 + 7) & 0xff));
const SECRET = `whsec_${RAW_SECRET.toString("base64")}`;
const headers = { "content-type": "application/json", authorization: `Bearer ${KEY}` };

interface Delivery {
  id: string;
  timestamp: number;
  verified: boolean;
  event: { type: string; timestamp: string; data: { id: string; status: string } };
  answered: number;
}

/** The receiver's check, as the Standard Webhooks libraries do it: HMAC of id.timestamp.body, constant-time compare, fresh timestamp. */
function verify(id: string, timestamp: string, body: string, signatures: string): boolean {
  const expected = Buffer.from(createHmac("sha256", RAW_SECRET).update(`${id}.${timestamp}.${body}`).digest("base64"));
  const fresh = Math.abs(Date.now() / 1000 - Number(timestamp)) < 300;
  return fresh && signatures.split(" ").some((s) => s.startsWith("v1,") && s.length - 3 === expected.length && timingSafeEqual(Buffer.from(s.slice(3)), expected));
}

describe("webhooks through wrangler dev, to a receiver that verifies signatures", () => {
  let base = "";
  let hookUrl = "";
  let edge: Proc | undefined;
  let receiver: Server | undefined;
  const deliveries: Delivery[] = [];

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        const id = String(req.headers["webhook-id"]);
        const first = !deliveries.some((d) => d.id === id);
        const answered = first ? 500 : 204; // the first attempt of each message fails
        deliveries.push({
          id,
          timestamp: Number(req.headers["webhook-timestamp"]),
          verified: verify(id, String(req.headers["webhook-timestamp"]), body, String(req.headers["webhook-signature"])),
          event: JSON.parse(body),
          answered,
        });
        res.writeHead(answered).end();
      });
    });
    await new Promise<void>((r) => receiver!.listen(0, "127.0.0.1", r));
    hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/edgetune`;
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    edge = await startWranglerDev(port, join(work, "state"), { EDGETUNE_API_KEYS: KEY, EDGETUNE_WEBHOOK_SECRET: SECRET, WEBHOOK_RETRY_SECONDS: "1", RATE_LIMIT_PER_MINUTE: "0" });
  }, 90_000);
  afterAll(async () => {
    await stop(edge);
    await new Promise((r) => receiver?.close(r));
    rmSync(work, { recursive: true, force: true });
  });

  const create = (body: object) => fetch(`${base}/v1/fine-tunes`, { method: "POST", headers, body: JSON.stringify({ ...seedRequest(16, { training: { epochs: 3, batch_size: 8 } }), ...body }) });
  const delivered = (jobId: string) => deliveries.filter((d) => d.event.data.id === jobId);

  it("a sync job, an async edge job and a cancelled queued job each deliver their final event, signed, once retried", async () => {
    const sync = (await (await create({ mode: "sync", webhook: { url: hookUrl } })).json()) as { id: string };
    const asyncJob = (await (await create({ mode: "async", placement: "edge", webhook: { url: hookUrl } })).json()) as { id: string };
    const queued = (await (await create({ mode: "async", placement: "gpu-node", webhook: { url: hookUrl } })).json()) as { id: string; webhook: { url: string } };
    expect(queued.webhook).toEqual({ url: hookUrl });
    expect((await fetch(`${base}/v1/fine-tunes/${queued.id}/cancel`, { method: "POST", headers })).status).toBe(200);

    const expected: [string, string][] = [[sync.id, "fine_tune.succeeded"], [asyncJob.id, "fine_tune.succeeded"], [queued.id, "fine_tune.cancelled"]];
    for (const [id, type] of expected) {
      const attempts = await eventually(`the webhook of ${id} to be taken`, 60_000, async () => {
        const d = delivered(id);
        return d.some((x) => x.answered === 204) ? d : undefined;
      });
      expect(attempts.length).toBeGreaterThanOrEqual(2); // the refused attempt, then the retry
      expect(new Set(attempts.map((a) => a.id)).size).toBe(1); // one message id across retries
      for (const a of attempts) {
        expect(a.verified).toBe(true);
        expect(a.event.type).toBe(type);
        expect(a.event.data.id).toBe(id);
      }
    }
    // a job without a webhook sends none
    const plain = (await (await create({ mode: "sync" })).json()) as { id: string };
    await new Promise((r) => setTimeout(r, 1500));
    expect(delivered(plain.id)).toEqual([]);
  }, 120_000);

  it("a webhook URL on a private network is refused, naming webhook.url", async () => {
    const res = await create({ mode: "sync", webhook: { url: "http://10.0.0.8/hook" } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe("webhook.url");
  });
});
