/**
 * The Worker's bindings (wrangler.toml).
 */
import type { UpstreamHealth } from "./upstream/health/object.ts";

export interface Env {
  /** Workers KV namespace holding snapshots and the active pointer. */
  CONFIG: KVNamespace;
  /** Secret enabling the admin endpoints (`wrangler secret put ADMIN_TOKEN`). */
  ADMIN_TOKEN?: string;
  /** Shares outlier ejections between isolates and runs active health checks. */
  UPSTREAM_HEALTH?: DurableObjectNamespace<UpstreamHealth>;
}
