/**
 * The Worker's bindings (wrangler.toml; `isthmus serve` generates its own).
 */
import type { UpstreamHealth } from "./upstream/health/object.ts";
import type { RateLimiter } from "./ratelimit/limiter-object.ts";

export interface Env {
  /** Workers KV namespace holding snapshots and the active pointer (Cloudflare, `wrangler dev`). */
  CONFIG?: KVNamespace;
  /**
   * The same store as a directory on local disk, read over a workerd `disk`
   * service (bare workerd under `isthmus serve`, which has no file-backed KV).
   */
  CONFIG_STORE?: Fetcher;
  /** Secret enabling the admin endpoints (`wrangler secret put ADMIN_TOKEN`). */
  ADMIN_TOKEN?: string;
  /** Shares outlier ejections between isolates and runs active health checks. */
  UPSTREAM_HEALTH?: DurableObjectNamespace<UpstreamHealth>;
  /** One RateLimiter Durable Object per key of each GLOBAL rate-limit rule. */
  RATE_LIMITER?: DurableObjectNamespace<RateLimiter>;
  /**
   * This instance's own cluster port under `isthmus serve --cluster-bucket`,
   * whose `GET /ready` says whether it serves as a member of its cluster
   * (readiness, the `Health` entrypoint). Absent elsewhere.
   */
  CLUSTER_PORT?: Fetcher;
  /**
   * "true" under `isthmus serve --metrics-port`: the isolate keeps the
   * built-in `prometheus` provider's metrics for the `Metrics` entrypoint
   * to answer scrapes with. Absent on Cloudflare, where nothing can scrape
   * an isolate.
   */
  PROMETHEUS_SCRAPE?: string;
}

/**
 * The bindings the gateway itself uses. None may serve as a client
 * certificate (DestinationRule `tls.credentialName`): a cluster fetching
 * through CONFIG_STORE would serve the configuration store to clients.
 */
export const GATEWAY_BINDINGS: ReadonlySet<string> = new Set(["CONFIG", "CONFIG_STORE", "ADMIN_TOKEN", "UPSTREAM_HEALTH", "RATE_LIMITER", "CLUSTER_PORT", "PROMETHEUS_SCRAPE"]);
