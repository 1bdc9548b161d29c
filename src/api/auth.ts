/**
 * Bearer-key authentication. Keys come from EDGETUNE_API_KEYS (comma-separated; an entry
 * "sha256:<hex>" is a key stored as its SHA-256 digest). Keys are compared as SHA-256 digests in
 * constant time, and every configured key is compared on every
 * request, so timing reveals neither a key's prefix nor its length. The digest of the
 * presented key is the job owner: each job belongs to the key that created it.
 * With no key configured the API is open (owner "") only where the entry allows it (local
 * development, or EDGETUNE_ALLOW_OPEN=true on the Worker), with a warning logged once;
 * elsewhere every request is a 503 saying how to configure keys (docs/security.md).
 */
import type { MiddlewareHandler } from "hono";
import { problem, problemResponse } from "./problem.js";

const digestCache = new Map<string, Promise<Uint8Array[]>>();
let warnedOpen = false;

/**
 * Logs, once per process or isolate, that the API is open when no key is configured.
 *
 * @example
 * ```ts
 * warnIfOpen(parseApiKeys(env.EDGETUNE_API_KEYS)); // at start-up
 * ```
 */
export function warnIfOpen(keys: readonly string[]): void {
  if (keys.length > 0 || warnedOpen) return;
  warnedOpen = true;
  console.warn("edgetune: EDGETUNE_API_KEYS is not set, so the API is open to anyone who can reach it.");
}

/** Parses EDGETUNE_API_KEYS: comma-separated, whitespace trimmed, empties dropped. */
export function parseApiKeys(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((k) => k.trim())
    .filter((k) => k.length > 0);
}

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/**
 * The digest a configured entry stands for: "sha256:<64 hex digits>" is a key stored hashed
 * (the secret then never holds the key itself); anything else is a key, hashed here.
 */
async function configuredDigest(entry: string): Promise<Uint8Array> {
  const stored = /^sha256:([0-9a-f]{64})$/i.exec(entry);
  if (!stored) return sha256(entry);
  return Uint8Array.from(stored[1]!.match(/../g)!, (byte) => Number.parseInt(byte, 16));
}

/** Constant-time equality of two 32-byte digests. */
function digestsEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ (b[i] ?? 0);
  return diff === 0;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Checks an Authorization header against configured keys; returns the hex SHA-256 of the
 * presented key when it is one of them, else null.
 *
 * @example
 * ```ts
 * const owner = await verifyBearer(c.req.header("authorization"), ["k1", "k2"]);
 * ```
 */
export async function verifyBearer(header: string | undefined, configured: readonly string[]): Promise<string | null> {
  const cacheKey = configured.join(",");
  let digests = digestCache.get(cacheKey);
  if (!digests) {
    digests = Promise.all(configured.map(configuredDigest));
    digestCache.set(cacheKey, digests);
  }
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  if (!match) return null;
  const presented = await sha256(match[1]!);
  let ok = false;
  for (const d of await digests) ok = digestsEqual(presented, d) || ok; // no early exit
  return ok ? hex(presented) : null;
}

const unauthorized = (detail: string) =>
  problemResponse(problem(401, "unauthorized", detail), { "WWW-Authenticate": 'Bearer realm="edgetune"' });

/**
 * The answer of an API with no key configured where an open API is not allowed: a 503 that says
 * how to configure keys, rather than serving everyone.
 */
export const apiKeysNotConfigured = () =>
  problemResponse(
    problem(
      503,
      "api_keys_not_configured",
      "This deployment has no API keys, so it refuses every request. Set EDGETUNE_API_KEYS (comma-separated keys: " +
        "`npx wrangler secret put EDGETUNE_API_KEYS`), or set the var EDGETUNE_ALLOW_OPEN=true to serve an open API on purpose.",
    ),
  );

/**
 * Middleware: 401 problem+json unless the request carries a configured key; sets `owner`.
 * With no key configured, the API is open when `allowOpen(c)` says so (local development,
 * EDGETUNE_ALLOW_OPEN=true), else every request is a 503 (apiKeysNotConfigured).
 *
 * @example
 * ```ts
 * app.use("/v1/*", apiKeyAuth((c) => c.var.deps.apiKeys, (c) => c.var.deps.allowOpen ?? true));
 * ```
 */
export function apiKeyAuth<E extends { Variables: { owner: string } }>(
  keys: (c: Parameters<MiddlewareHandler<E>>[0]) => string[],
  allowOpen: (c: Parameters<MiddlewareHandler<E>>[0]) => boolean = () => true,
): MiddlewareHandler<E> {
  return async (c, next) => {
    const configured = keys(c);
    if (configured.length === 0) {
      if (!allowOpen(c)) return apiKeysNotConfigured();
      warnIfOpen(configured);
      c.set("owner", "");
      return next();
    }
    const header = c.req.header("authorization");
    if (!header) return unauthorized("Send an API key as `Authorization: Bearer <key>`.");
    const owner = await verifyBearer(header, configured);
    if (owner === null) return unauthorized("The API key is not valid.");
    c.set("owner", owner);
    return next();
  };
}

/**
 * The node token GPU nodes use when EDGETUNE_NODE_TOKENS is not set. It is public, so the
 * Worker accepts it only in local development (EDGETUNE_DEV=true, set by `npm run dev`).
 */
export const DEV_NODE_TOKEN = "edgetune-dev-node-token";

/**
 * The node tokens an entry accepts: the configured ones; with none configured, the public
 * development token in local development only, and none at all elsewhere.
 *
 * @example
 * ```ts
 * acceptedNodeTokens(undefined, true); // ["edgetune-dev-node-token"]
 * acceptedNodeTokens(undefined, false); // []: /v1/nodes answers 503 until EDGETUNE_NODE_TOKENS is set
 * acceptedNodeTokens("t1,t2", true); // ["t1", "t2"]
 * ```
 */
export function acceptedNodeTokens(configured: string | undefined, localDev: boolean): string[] {
  const tokens = parseApiKeys(configured);
  if (tokens.length > 0) return tokens;
  return localDev ? [DEV_NODE_TOKEN] : [];
}

/**
 * Middleware for the GPU-node API: 401 unless the request carries a node token; 503 when no
 * token is accepted at all (a deployment without EDGETUNE_NODE_TOKENS).
 *
 * @example
 * ```ts
 * app.use("/v1/nodes/*", nodeTokenAuth((c) => c.var.deps.nodeTokens));
 * ```
 */
export function nodeTokenAuth<E extends object>(tokens: (c: Parameters<MiddlewareHandler<E>>[0]) => string[]): MiddlewareHandler<E> {
  return async (c, next) => {
    const accepted = tokens(c);
    if (accepted.length === 0) {
      return problemResponse(
        problem(
          503,
          "node_tokens_not_configured",
          "This deployment accepts no GPU-node token. Set EDGETUNE_NODE_TOKENS (comma-separated: " +
            "`npx wrangler secret put EDGETUNE_NODE_TOKENS`) and give nodes one of them as EDGETUNE_NODE_TOKEN.",
        ),
      );
    }
    const ok = (await verifyBearer(c.req.header("authorization"), accepted)) !== null;
    if (!ok) return unauthorized("GPU nodes authenticate with `Authorization: Bearer <node token>` (EDGETUNE_NODE_TOKENS).");
    return next();
  };
}
