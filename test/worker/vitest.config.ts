import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

// wrangler.toml's [assets] directory (the browser library, npm run build:browser) must exist for
// the pool to start; these tests do not fetch /lib/*, so an empty one will do before a build
mkdirSync(fileURLToPath(new URL("../../build/public", import.meta.url)), { recursive: true });

/** The Worker in the real workerd runtime, with its wrangler.toml bindings (R2, Durable Objects). */
export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: fileURLToPath(new URL("../../wrangler.toml", import.meta.url)) },
      miniflare: { bindings: { EDGETUNE_API_KEYS: "worker-test-key,rate-test-key,parity-key-0,parity-key-1" } },
    }),
  ],
  test: {
    name: "workers",
    root: fileURLToPath(new URL("../..", import.meta.url)),
    include: ["test/worker/**/*.test.ts"],
    testTimeout: 30_000,
  },
});
