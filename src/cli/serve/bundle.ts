/**
 * Bundles the Worker entry into one ES module for workerd, resolving
 * packages the way wrangler does (the `workerd`, `worker` and `browser`
 * export conditions), with `cloudflare:*` and `node:*` left to the runtime.
 */
import { build, stop } from "esbuild";

/**
 * @example
 * await bundleWorker("src/index.ts", ".isthmus/run/worker.js");
 */
export async function bundleWorker(entry: string, outfile: string): Promise<void> {
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    conditions: ["workerd", "worker", "browser"],
    mainFields: ["workerd", "worker", "browser", "module", "main"],
    external: ["cloudflare:*", "node:*"],
    logLevel: "error",
    legalComments: "none",
  });
}

/**
 * Ends esbuild's service process. esbuild keeps it (pinging it) for later
 * builds; a long-running `isthmus serve` makes no more, so it stops it once
 * the Worker is bundled. A later build would start a new one.
 */
export function stopBundler(): Promise<void> {
  return stop();
}
