/**
 * The Worker's bindings (wrangler.toml).
 */
export interface Env {
  /** Workers KV namespace holding snapshots and the active pointer. */
  CONFIG: KVNamespace;
  /** Secret enabling the admin endpoints (`wrangler secret put ADMIN_TOKEN`). */
  ADMIN_TOKEN?: string;
}
