// Types for `import { env, exports } from "cloudflare:workers"` in the workerd test project.
declare namespace Cloudflare {
  interface Env {
    CONFIG: KVNamespace;
    ADMIN_TOKEN?: string;
    RATE_LIMITER: DurableObjectNamespace<import("../src/ratelimit/limiter-object.ts").RateLimiter>;
  }
  interface GlobalProps {
    mainModule: typeof import("../src/index.ts");
  }
}
