/**
 * The SDK inside workerd: a Worker (or Durable Object) calling edgetune through
 * `edgetune/sdk`, here against the real Worker via SELF.fetch.
 */
import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { AuthenticationError, Edgetune, NotFoundError } from "../../src/sdk/index.js";
import { seedRequest } from "../helpers.js";

const client = (apiKey?: string) =>
  new Edgetune({ baseURL: "http://edgetune.test", ...(apiKey ? { apiKey } : {}), maxRetries: 0, fetch: (url, init) => SELF.fetch(url, init) });

describe("the SDK in workerd", () => {
  it("creates a sync fine-tune, retrieves it, lists it and downloads its weights", async () => {
    const sdk = client("worker-test-key");
    const result = await sdk.fineTunes.create({ ...seedRequest(64, { training: { epochs: 2 } }), mode: "sync" });
    expect(result.status).toBe("succeeded");
    expect((await sdk.fineTunes.retrieve(result.id)).status).toBe("succeeded");
    const page = await sdk.fineTunes.list({ limit: 100 });
    expect(page.data.map((j) => j.id)).toContain(result.id);
    const weights = await sdk.fineTunes.weights(result.id);
    expect(weights.byteLength).toBeGreaterThan(500);
  });

  it("maps the Worker's problem+json to typed errors", async () => {
    await expect(client().fineTunes.list()).rejects.toBeInstanceOf(AuthenticationError);
    await expect(client("worker-test-key").fineTunes.retrieve("ft_0123456789abcdef0123456789abcdef")).rejects.toBeInstanceOf(NotFoundError);
  });
});
