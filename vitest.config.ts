import { defineConfig } from "vitest/config";
import { cloudflareTest } from "@cloudflare/vitest-plugin";

/**
 * Three projects, all run by `npm test`:
 * - unit: the pure core inside workerd (the runtime the gateway runs in)
 * - node: the CLI and Node-side helpers
 * - e2e:  the real gateway (`isthmus dev`) against real local origins, one
 *         gateway per file, files one after another
 */
export default defineConfig({
  test: {
    // A test that makes a Durable Object fail on purpose (test/unit/ratelimit/worker.test.ts) throws
    // this inside the object; workerd reports the object's reset as uncaught on top of failing the
    // calls waiting on it. Only that error is ignored.
    onUnhandledError: (error) => !String(error.message).includes("test-induced Durable Object failure"),
    projects: [
      {
        plugins: [cloudflareTest({ wrangler: { configPath: "./wrangler.toml" }, remoteBindings: false })],
        test: { name: "unit", include: ["test/unit/**/*.test.ts"], globalSetup: ["test/unit/setup/origin.ts"] },
      },
      {
        test: { name: "node", include: ["test/node/**/*.test.ts"], environment: "node", testTimeout: 60_000 },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          environment: "node",
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
