import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

// wrangler.toml's [assets] directory (the browser library, npm run build:browser) must exist for
// the pool to start; these tests do not fetch /lib/*, so an empty one will do before a build
mkdirSync(fileURLToPath(new URL("../../build/public", import.meta.url)), { recursive: true });

/** Keys for test/worker/parity.test.ts: each sync POST takes a token of its key's bucket (burst 60). */
export const PARITY_KEYS = 6;

/** The Worker in the real workerd runtime, with its wrangler.toml bindings (R2, Durable Objects). */
export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: fileURLToPath(new URL("../../wrangler.toml", import.meta.url)) },
      // local development (EDGETUNE_DEV, as `npm run dev`); test/worker/security.test.ts calls the
      // Worker with production-like vars instead
      miniflare: { bindings: { EDGETUNE_DEV: "true", EDGETUNE_API_KEYS: ["worker-test-key", "rate-test-key", ...Array.from({ length: PARITY_KEYS }, (_, i) => `parity-key-${i}`)].join(",") } },
    }),
  ],
  test: {
    name: "workers",
    root: fileURLToPath(new URL("../..", import.meta.url)),
    include: ["test/worker/**/*.test.ts"],
    testTimeout: 30_000,
  },
});
