/** Webhook signing (Standard Webhooks) and the URL rules that keep webhooks off private networks. */
import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { signWebhook, webhookKey, webhookUrlProblem } from "../../src/jobs/webhook.js";

describe("signWebhook", () => {
  it("reproduces the Standard Webhooks specification's example signature", async () => {
    // spec/standard-webhooks.md: secret, msg id, timestamp and payload of its worked example
    const key = webhookKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")!;
    expect(await signWebhook(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}')).toBe("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  });

  it("equals node:crypto's HMAC-SHA256 of id.timestamp.body under the decoded key", async () => {
    const raw = Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 37) & 0xff));
    const key = webhookKey(`whsec_${raw.toString("base64")}`)!;
    const body = JSON.stringify({ type: "fine_tune.succeeded", data: { id: "ft_1", note: "ünïcode" } });
    const expected = createHmac("sha256", raw).update(`msg_1.1700000000.${body}`).digest("base64");
    expect(await signWebhook(key, "msg_1", 1700000000, body)).toBe(`v1,${expected}`);
  });

  it("webhookKey refuses what is not a whsec_ secret of at least 24 bytes", () => {
    expect(webhookKey(undefined)).toBeNull();
    expect(webhookKey("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).toBeNull();
    expect(webhookKey("whsec_c2hvcnQ=")).toBeNull();
    expect(webhookKey("whsec_not base64!")).toBeNull();
  });
});

describe("webhookUrlProblem", () => {
  const deployed = { allowLocal: false };
  it("allows https to public hosts", () => {
    for (const url of ["https://example.com/hooks/edgetune", "https://hooks.example.co.uk:8443/x?y=1", "https://93.184.216.34/hook", "https://[2606:4700::1111]/hook"]) {
      expect(webhookUrlProblem(url, deployed), url).toBeNull();
    }
  });

  it("refuses http, credentials, and private, loopback, link-local, shared and reserved addresses, however they are written", () => {
    const refused = [
      "http://example.com/hook",
      "ftp://example.com/hook",
      "https://user:pass@example.com/hook",
      "https://localhost/hook",
      "https://api.localhost/hook",
      "https://intranet/hook",
      "https://printer.local/hook",
      "https://metadata.google.internal/computeMetadata",
      "https://127.0.0.1/hook",
      "https://127.1/hook", // WHATWG URL reads it as 127.0.0.1
      "https://2130706433/hook", // 127.0.0.1 as one number
      "https://0x7f000001/hook",
      "https://10.1.2.3/hook",
      "https://172.16.0.1/hook",
      "https://172.31.255.255/hook",
      "https://192.168.1.1/hook",
      "https://169.254.169.254/latest/meta-data",
      "https://100.64.0.1/hook",
      "https://0.0.0.0/hook",
      "https://224.0.0.1/hook",
      "https://[::1]/hook",
      "https://[::ffff:127.0.0.1]/hook",
      "https://[::ffff:a00:1]/hook",
      "https://[fd00::1]/hook",
      "https://[fe80::1]/hook",
      "not a url",
    ];
    for (const url of refused) expect(webhookUrlProblem(url, deployed), url).not.toBeNull();
    expect(webhookUrlProblem("https://172.32.0.1/hook", deployed)).toBeNull(); // just outside 172.16/12
  });

  it("in local development, http://localhost and 127.0.0.1 are allowed; other private hosts still are not", () => {
    const dev = { allowLocal: true };
    expect(webhookUrlProblem("http://localhost:8787/hook", dev)).toBeNull();
    expect(webhookUrlProblem("http://127.0.0.1:9000/hook", dev)).toBeNull();
    expect(webhookUrlProblem("http://10.0.0.1/hook", dev)).not.toBeNull();
    expect(webhookUrlProblem("http://example.com/hook", dev)).not.toBeNull();
  });
});
