/**
 * The runtime settings every Worker the benchmarks serve on bare workerd
 * gets: the compatibility date and flags of the gateway's own wrangler.toml,
 * as `isthmus serve` passes them. A hand-written date alone would run the
 * measured code under other defaults than the gateway runs under (from
 * 2026-01-20 the date turns on Node's global timers, which wrangler.toml
 * turns off: ~6,000 instructions more per timer set and cleared).
 */
import { workerSettings } from "../src/cli/wrangler-config.ts";

const settings = workerSettings("wrangler.toml");

/** `compatibilityDate` and `compatibilityFlags`, as Miniflare options take them. */
export const COMPATIBILITY = { compatibilityDate: settings.compatibilityDate, compatibilityFlags: settings.compatibilityFlags };

/**
 * The same as fields of a workerd `Worker` in capnp text.
 *
 * @example
 * `worker = (modules = [...], ${compatibilityCapnp()})`
 * // worker = (modules = [...], compatibilityDate = "2026-11-01", compatibilityFlags = ["no_nodejs_global_timers"])
 */
export function compatibilityCapnp(): string {
  return `compatibilityDate = ${JSON.stringify(COMPATIBILITY.compatibilityDate)}, compatibilityFlags = [${COMPATIBILITY.compatibilityFlags.map((f) => JSON.stringify(f)).join(", ")}]`;
}
