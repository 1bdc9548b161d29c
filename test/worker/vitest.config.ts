import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";
import { fileURLToPath } from "node:url";

/** The Worker in the real workerd runtime, with its wrangler.toml bindings (R2, Durable Objects). */
export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: fileURLToPath(new URL("../../wrangler.toml", import.meta.url)) },
      miniflare: { bindings: { EDGETUNE_API_KEYS: "worker-test-key,rate-test-key" } },
    }),
  ],
  test: {
    name: "workers",
    root: fileURLToPath(new URL("../..", import.meta.url)),
    include: ["test/worker/**/*.test.ts"],
    testTimeout: 30_000,
  },
});
