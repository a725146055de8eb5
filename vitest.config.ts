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
