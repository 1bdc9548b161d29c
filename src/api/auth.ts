/**
 * Bearer-key authentication. Keys come from EDGETUNE_API_KEYS (comma-separated; an entry
 * "sha256:<hex>" is a key stored as its SHA-256 digest). Keys are compared as SHA-256 digests in
 * constant time, and every configured key is compared on every
 * request, so timing reveals neither a key's prefix nor its length. The digest of the
 * presented key is the job owner: each job belongs to the key that created it.
 * With no key configured the API is open (owner ""), and a warning is logged once.
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
 * Middleware: 401 problem+json unless the request carries a configured key; sets `owner`.
 *
 * @example
 * ```ts
 * app.use("/v1/*", apiKeyAuth((c) => c.var.deps.apiKeys));
 * ```
 */
export function apiKeyAuth<E extends { Variables: { owner: string } }>(keys: (c: Parameters<MiddlewareHandler<E>>[0]) => string[]): MiddlewareHandler<E> {
  return async (c, next) => {
    const configured = keys(c);
    if (configured.length === 0) {
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

/** The node token GPU nodes use when EDGETUNE_NODE_TOKENS is not set (development only). */
export const DEV_NODE_TOKEN = "edgetune-dev-node-token";

/**
 * Middleware for the GPU-node API: 401 unless the request carries a node token.
 *
 * @example
 * ```ts
 * app.use("/v1/nodes/*", nodeTokenAuth((c) => c.var.deps.nodeTokens));
 * ```
 */
export function nodeTokenAuth<E extends object>(tokens: (c: Parameters<MiddlewareHandler<E>>[0]) => string[]): MiddlewareHandler<E> {
  return async (c, next) => {
    const ok = (await verifyBearer(c.req.header("authorization"), tokens(c))) !== null;
    if (!ok) return unauthorized("GPU nodes authenticate with `Authorization: Bearer <node token>` (EDGETUNE_NODE_TOKENS).");
    return next();
  };
}
