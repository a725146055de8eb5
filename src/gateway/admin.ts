/**
 * The admin endpoints, under GatewayConfig `admin.pathPrefix` (default
 * `/__isthmus`). They exist only when the ADMIN_TOKEN secret is set, and
 * every call needs `Authorization: Bearer <ADMIN_TOKEN>`.
 *
 *   GET <prefix>/status   the version this isolate serves, when it last
 *                          checked, the last load failure, and the rate-limit
 *                          decisions this isolate made by where they were made
 *   GET <prefix>/config   the Snapshot this isolate serves
 *   GET <prefix>/upstreams what this isolate knows of each cluster's endpoints:
 *                          outlier ejections (its own and shared), health
 *                          checks, circuit breaker counters
 */
import { Hono } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import type { SnapshotCache } from "./snapshot-cache.ts";
import { compiledSnapshot, type RuntimeSnapshot } from "../routing/hydrate.ts";
import type { UpstreamState } from "../upstream/state.ts";
import type { RateLimitEnv } from "../ratelimit/decide.ts";

export interface AdminContext {
  cache: SnapshotCache;
  snapshot: RuntimeSnapshot | undefined;
  upstreams?: UpstreamState;
  rateLimits?: RateLimitEnv | undefined;
}

/**
 * Builds the admin app for a prefix and token.
 * @example
 * const app = adminApp("/__isthmus", env.ADMIN_TOKEN);
 * return app.fetch(request, { cache, snapshot });
 */
export function adminApp(prefix: string, token: string): Hono<{ Bindings: AdminContext }> {
  const app = new Hono<{ Bindings: AdminContext }>().basePath(prefix);
  app.use("*", bearerAuth({ token }));
  app.get("/status", (c) => {
    const status = c.env.cache.status();
    return c.json({
      serving: status.version ?? null,
      loadedAt: status.loadedAt ?? null,
      checkedAt: status.checkedAt ?? null,
      lastError: status.lastError ?? null,
      resources: c.env.snapshot?.snapshot.resources ?? [],
      rateLimitDecisions: c.env.rateLimits?.decisions ?? null,
    });
  });
  app.get("/config", (c) => {
    if (!c.env.snapshot) return c.json({ error: "no configuration has been applied" }, 404);
    // The compiled form, whatever layout it was stored in.
    return c.json(compiledSnapshot(c.env.snapshot));
  });
  app.get("/upstreams", (c) => {
    const { snapshot, upstreams } = c.env;
    if (!snapshot || !upstreams) return c.json({ error: "no configuration has been applied" }, 404);
    const clusters = Object.fromEntries(
      [...snapshot.clusters.values()].map((cluster) => [cluster.name, { limits: upstreams.limits(cluster.name).snapshot(), endpoints: upstreams.describe(cluster) }]),
    );
    return c.json({ lastSync: upstreams.lastSync ?? null, clusters });
  });
  app.notFound((c) => c.json({ error: "not found", endpoints: [`${prefix}/status`, `${prefix}/config`, `${prefix}/upstreams`] }, 404));
  return app;
}
