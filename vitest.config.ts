import { defineConfig } from "vitest/config";

/**
 * Two projects: "node" (kernels, engine, formats, parity, the API through app.request())
 * and "workers" (the Worker inside workerd via @cloudflare/vitest-pool-workers).
 */
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "node",
          include: ["test/**/*.test.ts"],
          exclude: ["test/worker/**", "test/e2e/**"],
          testTimeout: 30_000,
        },
      },
      "./test/worker/vitest.config.ts",
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
