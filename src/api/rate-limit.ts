/**
 * Per-key rate limits: a token bucket per owner (the API key's digest, or the client address
 * when the API is open). Exceeding it answers 429 with Retry-After. The bucket arithmetic is
 * here; where buckets live is the runtime's choice (a Durable Object per key on Cloudflare,
 * a Map in a Node process).
 */
import type { MiddlewareHandler } from "hono";
import { problem, problemResponse } from "./problem.js";

/** Bucket size (burst) and refill rate. */
export interface RateLimitPolicy {
  /** Requests a key may make at once. */
  burst: number;
  /** Requests per minute a key may sustain. */
  perMinute: number;
}

/** A bucket as stored. */
export interface Bucket {
  tokens: number;
  /** When `tokens` was computed (ms since epoch). */
  at: number;
}

/** The outcome of taking a token: allowed, or how long to wait for one. */
export type RateDecision = { ok: true; remaining: number } | { ok: false; retryAfterSeconds: number };

/**
 * Takes one token from a bucket (pure: returns the new bucket).
 *
 * @example
 * ```ts
 * const { bucket, decision } = takeToken(stored, Date.now(), { burst: 60, perMinute: 120 });
 * ```
 */
export function takeToken(bucket: Bucket | undefined, now: number, policy: RateLimitPolicy): { bucket: Bucket; decision: RateDecision } {
  const perMs = policy.perMinute / 60_000;
  const current = bucket ? Math.min(policy.burst, bucket.tokens + (now - bucket.at) * perMs) : policy.burst;
  if (current >= 1) return { bucket: { tokens: current - 1, at: now }, decision: { ok: true, remaining: Math.floor(current - 1) } };
  const retryAfterSeconds = Math.max(1, Math.ceil((1 - current) / perMs / 1000));
  return { bucket: { tokens: current, at: now }, decision: { ok: false, retryAfterSeconds } };
}

/** Where buckets live. */
export interface RateLimiter {
  take(owner: string): Promise<RateDecision>;
}

/**
 * Buckets in a Map: exact within one process (one Node server, or one isolate).
 *
 * @example
 * ```ts
 * const limiter = new MemoryRateLimiter({ burst: 60, perMinute: 120 });
 * ```
 */
export class MemoryRateLimiter implements RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  constructor(private readonly policy: RateLimitPolicy, private readonly clock: () => number = Date.now) {}

  async take(owner: string): Promise<RateDecision> {
    const { bucket, decision } = takeToken(this.buckets.get(owner), this.clock(), this.policy);
    this.buckets.set(owner, bucket);
    return decision;
  }
}

/** Buckets shared by anonymous callers: the most rate-limit objects a burst of addresses can create. */
export const ANONYMOUS_BUCKETS = 256;

/**
 * The bucket of an anonymous caller (an open API): its address hashed (FNV-1a) into one of
 * ANONYMOUS_BUCKETS, so that a burst from many addresses creates at most that many limiter
 * objects; callers without a trusted address share bucket "ip:local".
 *
 * @example
 * ```ts
 * anonymousBucket("203.0.113.7"); // "ip:<0..255>"
 * anonymousBucket(undefined);     // "ip:local"
 * ```
 */
export function anonymousBucket(address: string | undefined): string {
  if (!address) return "ip:local";
  let h = 0x811c9dc5;
  for (let i = 0; i < address.length; i++) h = Math.imul(h ^ address.charCodeAt(i), 0x01000193) >>> 0;
  return `ip:${h % ANONYMOUS_BUCKETS}`;
}

/**
 * Middleware: one token per request from the owner's bucket; 429 problem+json with Retry-After
 * when it is empty. Runs after authentication (it needs `owner`).
 *
 * @example
 * ```ts
 * app.use("/v1/fine-tunes/*", rateLimit((c) => c.var.deps.rateLimiter));
 * ```
 */
export function rateLimit<E extends { Variables: { owner: string } }>(
  limiter: (c: Parameters<MiddlewareHandler<E>>[0]) => RateLimiter | null,
  addressHeader: (c: Parameters<MiddlewareHandler<E>>[0]) => string | null = () => null,
): MiddlewareHandler<E> {
  return async (c, next) => {
    const l = limiter(c);
    if (!l) return next();
    // an open API limits by client address, read only from a header the platform sets
    const header = addressHeader(c);
    const owner = c.var.owner || anonymousBucket(header === null ? undefined : c.req.header(header));
    const decision = await l.take(owner);
    if (!decision.ok) {
      return problemResponse(
        problem(429, "rate_limited", `Too many requests for this key; retry in ${decision.retryAfterSeconds} s.`),
        { "Retry-After": String(decision.retryAfterSeconds) },
      );
    }
    c.header("RateLimit-Remaining", String(decision.remaining));
    return next();
  };
}
