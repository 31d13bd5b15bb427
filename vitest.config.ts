import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // End-to-end suites start real processes and bind fixed ports: run files one at a time.
    fileParallelism: false,
    reporters: ["default"]
  }
})
