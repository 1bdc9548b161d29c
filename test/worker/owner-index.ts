/**
 * The JobIndex Durable Object of an API key, as the Worker names it (`owner:` and the SHA-256 of
 * the key in hex), for workerd tests that look at a key's quotas, streams and listing.
 */
import { env } from "cloudflare:test";

/**
 * The key's JobIndex stub.
 *
 * @example
 * ```ts
 * expect((await (await ownerIndex("worker-test-key")).usage()).activeJobs).toBe(0);
 * ```
 */
export async function ownerIndex(key: string) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key)));
  const owner = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  return env.JOB_INDEX.get(env.JOB_INDEX.idFromName(`owner:${owner}`));
}
