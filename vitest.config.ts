import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // parity and kernel tests print their worst errors; keep the output readable
    reporters: ["default"],
    testTimeout: 30_000,
  },
});
