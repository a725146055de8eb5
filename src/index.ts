/**
 * The Isthmus Worker: loads the active Snapshot (per isolate, refreshed in
 * the background) and runs every request through the gateway pipeline.
 */
import type { Env } from "./env.ts";
import { adminApp } from "./gateway/admin.ts";
import { runPipeline, type PipelineDeps } from "./gateway/pipeline.ts";
import { SnapshotCache } from "./gateway/snapshot-cache.ts";
import { DEFAULT_SETTINGS } from "./config/defaults.ts";
import { JwksCache } from "./authz/jwt/jwks-cache.ts";
import { Balancer } from "./routing/balancer.ts";
import { rateLimitEnv } from "./ratelimit/decide.ts";

export { RateLimiter } from "./ratelimit/limiter-object.ts";

let cache: SnapshotCache | undefined;
let admin: { key: string; app: ReturnType<typeof adminApp> } | undefined;

const upstreamFetch = (request: Request) => fetch(request);
const deps: PipelineDeps = {
  fetch: upstreamFetch,
  balancer: new Balancer(),
  random: Math.random,
  requestId: () => crypto.randomUUID(),
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  jwks: new JwksCache(upstreamFetch, () => Date.now()),
};

const NO_CONFIG =
  "isthmus: no configuration has been applied to this gateway yet.\n" +
  "Apply one with `npx isthmus apply -f <files>` (add --remote for a deployed gateway).\n";

export default {
  async fetch(request, env, ctx): Promise<Response> {
    cache ??= new SnapshotCache(env.CONFIG);
    const snapshot = await cache.get((p) => ctx.waitUntil(p));

    const prefix = snapshot?.snapshot.settings.adminPathPrefix ?? DEFAULT_SETTINGS.adminPathPrefix;
    if (env.ADMIN_TOKEN && new URL(request.url).pathname.startsWith(`${prefix}/`)) {
      const key = `${prefix}|${env.ADMIN_TOKEN}`;
      if (admin?.key !== key) admin = { key, app: adminApp(prefix, env.ADMIN_TOKEN) };
      return admin.app.fetch(request, { cache, snapshot, rateLimits: deps.rateLimits });
    }

    if (!snapshot) return new Response(NO_CONFIG, { status: 503, headers: { "content-type": "text/plain" } });
    deps.rateLimits ??= rateLimitEnv(env.RATE_LIMITER);
    try {
      const { response } = await runPipeline(request, snapshot, deps, (p) => ctx.waitUntil(p));
      return response;
    } catch (error) {
      console.error(JSON.stringify({ message: "isthmus: unexpected error", error: error instanceof Error ? error.stack : String(error) }));
      return new Response("isthmus: internal error\n", { status: 500, headers: { "content-type": "text/plain" } });
    }
  },
} satisfies ExportedHandler<Env>;
