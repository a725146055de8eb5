// Types for `import { env, exports } from "cloudflare:workers"` in the workerd test project.
declare namespace Cloudflare {
  interface Env {
    CONFIG: KVNamespace;
    ADMIN_TOKEN?: string;
    UPSTREAM_HEALTH: DurableObjectNamespace<import("../src/upstream/health/object.ts").UpstreamHealth>;
    RATE_LIMITER: DurableObjectNamespace<import("../src/ratelimit/limiter-object.ts").RateLimiter>;
  }
  interface GlobalProps {
    mainModule: typeof import("../src/index.ts");
  }
}
