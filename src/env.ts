/**
 * The Worker's bindings (wrangler.toml).
 */
import type { RateLimiter } from "./ratelimit/limiter-object.ts";

export interface Env {
  /** Workers KV namespace holding snapshots and the active pointer. */
  CONFIG: KVNamespace;
  /** Secret enabling the admin endpoints (`wrangler secret put ADMIN_TOKEN`). */
  ADMIN_TOKEN?: string;
  /** One RateLimiter Durable Object per key of each GLOBAL rate-limit rule. */
  RATE_LIMITER?: DurableObjectNamespace<RateLimiter>;
}
