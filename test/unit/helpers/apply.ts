/**
 * Applies a configuration to the test Worker's real KV binding and waits
 * until the Worker serves it (an isolate with no configuration looks
 * again once a second). Each test file has its own storage and isolate.
 */
import { env, exports } from "cloudflare:workers";
import { expect } from "vitest";
import { buildConfig } from "../../../src/config/build.ts";
import { applySnapshot } from "../../../src/config/store.ts";

export async function applyConfig(yaml: string, probeUrl: string): Promise<void> {
  const result = await buildConfig([{ path: "config.yaml", text: yaml }]);
  expect(result.problems.filter((p) => p.severity === "error")).toEqual([]);
  await applySnapshot(env.CONFIG, result.snapshot!, result.sources, new Date());
  for (let i = 0; i < 50; i++) {
    const res = await exports.default.fetch(probeUrl);
    await res.arrayBuffer();
    if (res.status !== 503) return;
    await scheduler.wait(100);
  }
  throw new Error("the Worker did not pick up the configuration");
}
