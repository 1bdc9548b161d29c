/**
 * Webhooks: a job that asked for one (`webhook: { url }`) is POSTed to that URL when it ends,
 * signed as Standard Webhooks specifies (https://www.standardwebhooks.com, spec/standard-webhooks.md):
 *
 *   webhook-id:        the message id, the same on every retry (receivers deduplicate on it)
 *   webhook-timestamp: seconds since the epoch of this attempt (receivers refuse old ones)
 *   webhook-signature: "v1," + base64(HMAC-SHA256(key, `${id}.${timestamp}.${body}`))
 *
 * where the key is the base64 after the secret's `whsec_` prefix (EDGETUNE_WEBHOOK_SECRET).
 * The body is `{ type, timestamp, data }`: `type` is "fine_tune.<final status>", `data` the job.
 * Only fetch and Web Crypto: runs in workerd and Node alike.
 */
import type { Job } from "../schema/job.js";
import { decodeBase64, encodeBase64 } from "../formats/base64.js";

/** The prefix of a Standard Webhooks secret. */
export const WEBHOOK_SECRET_PREFIX = "whsec_";

/** The event body of a job that ended. */
export interface WebhookEvent {
  type: `fine_tune.${Job["status"]}`;
  /** When the job ended (ISO 8601). */
  timestamp: string;
  data: Job;
}

/**
 * The key bytes of a `whsec_...` secret; null when it is not one (no prefix, not base64, or
 * shorter than 24 bytes, the minimum the specification names).
 *
 * @example
 * ```ts
 * webhookKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"); // 24 bytes
 * ```
 */
export function webhookKey(secret: string | undefined): Uint8Array | null {
  if (!secret?.startsWith(WEBHOOK_SECRET_PREFIX)) return null;
  const b64 = secret.slice(WEBHOOK_SECRET_PREFIX.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return null;
  const key = decodeBase64(b64);
  return key.length >= 24 ? key : null;
}

/**
 * The `webhook-signature` value of one message: "v1,<base64 HMAC-SHA256>".
 *
 * @example
 * ```ts
 * const signature = await signWebhook(key, "msg_1", 1700000000, '{"type":"fine_tune.succeeded"}');
 * // "v1,..."
 * ```
 */
export async function signWebhook(key: Uint8Array, id: string, timestamp: number, body: string): Promise<string> {
  const hmac = await crypto.subtle.importKey("raw", key as BufferSource, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = await crypto.subtle.sign("HMAC", hmac, new TextEncoder().encode(`${id}.${timestamp}.${body}`));
  return `v1,${encodeBase64(new Uint8Array(mac))}`;
}

/**
 * The message id of a job's final event: stable, so that every retry carries the same one.
 *
 * @example
 * ```ts
 * webhookMessageId({ id: "ft_1", status: "succeeded" }); // "msg_ft_1_succeeded"
 * ```
 */
export function webhookMessageId(job: Pick<Job, "id" | "status">): string {
  return `msg_${job.id}_${job.status}`;
}

/**
 * POSTs a job's final event to its webhook, signed. Resolves with whether the receiver took it
 * (a 2xx); a network error or a timeout is a false, for the caller to retry.
 *
 * @example
 * ```ts
 * const ok = await deliverWebhook(job.webhook!.url, key, job, { timeoutMs: 10_000 });
 * if (!ok) message.retry({ delaySeconds: 30 });
 * ```
 */
export async function deliverWebhook(url: string, key: Uint8Array, job: Job, options: { timeoutMs?: number; now?: number; fetch?: typeof fetch } = {}): Promise<{ ok: boolean; status: number | null }> {
  const event: WebhookEvent = { type: `fine_tune.${job.status}`, timestamp: job.finished_at ?? new Date().toISOString(), data: job };
  const body = JSON.stringify(event);
  const id = webhookMessageId(job);
  const timestamp = Math.floor((options.now ?? Date.now()) / 1000);
  const doFetch = options.fetch ?? ((u: string, init: RequestInit) => fetch(u, init));
  try {
    const res = await doFetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "webhook-id": id,
        "webhook-timestamp": String(timestamp),
        "webhook-signature": await signWebhook(key, id, timestamp, body),
      },
      body,
      redirect: "manual", // a redirect could lead anywhere, past the URL rules
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
    });
    await res.body?.cancel();
    return { ok: res.status >= 200 && res.status < 300, status: res.status };
  } catch {
    return { ok: false, status: null };
  }
}

/**
 * Why a webhook URL is refused, or null when it is allowed. Outside local development: https
 * only, to a public host: no IP literal in a private, loopback, link-local, shared or reserved
 * range, no localhost or single-label name, no .local / .internal / .localhost name. In local
 * development (`allowLocal`), http and localhost are allowed too.
 *
 * @example
 * ```ts
 * webhookUrlProblem("https://example.com/hook", { allowLocal: false }); // null
 * webhookUrlProblem("https://10.0.0.1/hook", { allowLocal: false });    // "must be a public host ..."
 * ```
 */
export function webhookUrlProblem(raw: string, options: { allowLocal: boolean }): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return "must be an absolute URL";
  }
  if (url.username || url.password) return "must not carry credentials";
  const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, "");
  const local = host === "localhost" || host.endsWith(".localhost") || host === "127.0.0.1" || host === "::1";
  if (options.allowLocal && local && (url.protocol === "http:" || url.protocol === "https:")) return null;
  if (url.protocol !== "https:") return "must be an https URL";
  if (isPrivateHost(host)) return "must be a public host (no localhost, private, link-local or reserved address)";
  return null;
}

function isPrivateHost(host: string): boolean {
  if (!host.includes(".") && !host.includes(":")) return true; // localhost, intranet names
  if (/\.(localhost|local|internal|home\.arpa|lan|intranet)$/.test(host) || host === "localhost") return true;
  const v4 = ipv4(host);
  if (v4) return privateV4(v4);
  if (host.includes(":")) return privateV6(host);
  return false;
}

/** Four octets of a dotted IPv4 literal, or null. */
function ipv4(host: string): number[] | null {
  const parts = host.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p))) return null;
  const n = parts.map(Number);
  return n.every((o) => o <= 255) ? n : null;
}

function privateV4([a, b]: number[]): boolean {
  return (
    a === 0 || a === 10 || a === 127 || a >= 224 || // this network, private, loopback, multicast and reserved
    (a === 100 && b! >= 64 && b! <= 127) || // shared address space (CGNAT)
    (a === 169 && b === 254) || // link-local, cloud metadata
    (a === 172 && b! >= 16 && b! <= 31) ||
    (a === 192 && b === 168) ||
    (a === 192 && b === 0) || // IETF protocol assignments
    (a === 198 && (b === 18 || b === 19)) // benchmarking
  );
}

function privateV6(host: string): boolean {
  if (host === "::" || host === "::1") return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host);
  if (mapped) return privateV4(ipv4(mapped[1]!) ?? [0]);
  if (/^::ffff:/.test(host)) return true; // hex-written mapped addresses: refused rather than parsed
  const first = parseInt(host.split(":")[0] || "0", 16);
  return (first & 0xfe00) === 0xfc00 || (first & 0xffc0) === 0xfe80 || (first & 0xff00) === 0xff00; // unique local, link-local, multicast
}
