/**
 * The Isthmus Worker: loads the active Snapshot (per isolate, refreshed in
 * the background) and runs every request through the gateway pipeline.
 * `Health` and `Metrics` are entrypoints for readiness probes and
 * Prometheus scrapes (`isthmus serve --health-port`, `--metrics-port`),
 * off the request path.
 */
import { WorkerEntrypoint } from "cloudflare:workers";
import type { Env } from "./env.ts";
import { adminApp } from "./gateway/admin.ts";
import { runPipeline, type PipelineDeps } from "./gateway/pipeline.ts";
import { nothingServed, SnapshotCache } from "./gateway/snapshot-cache.ts";
import { configSource } from "./gateway/config-source.ts";
import { DEFAULT_SETTINGS } from "./config/defaults.ts";
import { JwksCache } from "./authz/jwt/jwks-cache.ts";
import { Balancer } from "./routing/balancer.ts";
import { bindingFetch, type Fetch } from "./routing/forward.ts";
import { UpstreamState, type HealthExchange } from "./upstream/state.ts";

export { UpstreamHealth } from "./upstream/health/object.ts";
import { rateLimitEnv } from "./ratelimit/decide.ts";
import { withCachedIds } from "./ratelimit/object-ids.ts";
import { Telemetry } from "./telemetry/telemetry.ts";
import { PrometheusRegistry } from "./telemetry/prometheus.ts";
import { scrapeHeaders } from "./telemetry/prometheus-text.ts";

export { RateLimiter } from "./ratelimit/limiter-object.ts";

/** The name of the gateway's one UpstreamHealth object. */
const HEALTH_OBJECT = "isthmus";

let isolateCache: SnapshotCache | undefined;
let admin: { key: string; app: ReturnType<typeof adminApp> } | undefined;
let deps: PipelineDeps | undefined;
let telemetry: Telemetry | undefined;
let prometheus: PrometheusRegistry | undefined;

/** Whether this runtime is scraped for Prometheus metrics (`isthmus serve --metrics-port` sets `PROMETHEUS_SCRAPE`). */
function scraped(env: Env): boolean {
  return env.PROMETHEUS_SCRAPE === "true";
}

/** The isolate's Prometheus registry, when this runtime is scraped. */
function prometheusRegistry(env: Env): PrometheusRegistry | undefined {
  if (!scraped(env)) return undefined;
  return (prometheus ??= new PrometheusRegistry(Date.now()));
}

/** The isolate's dependencies, built on its first request (bindings come with the request's env). */
function isolateDeps(env: Env): PipelineDeps {
  const namespace = env.UPSTREAM_HEALTH;
  const exchange: HealthExchange | undefined = namespace ? { sync: (request) => namespace.getByName(HEALTH_OBJECT).sync(request) } : undefined;
  const bindings = env as unknown as Record<string, unknown>;
  const upstreamFetch: Fetch = (url, init) => fetch(url, init);
  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
  const registry = prometheusRegistry(env);
  telemetry = new Telemetry({
    fetch: upstreamFetch,
    now: () => Date.now(),
    sleep,
    random: Math.random,
    secret: (name) => (typeof bindings[name] === "string" ? (bindings[name] as string) : undefined),
    log: (message, fields) => console.error(JSON.stringify({ message, ...fields })),
    ...(registry ? { prometheus: registry } : {}),
  });
  const jwks = new JwksCache(upstreamFetch, () => Date.now());
  const isolateTelemetry = telemetry;
  jwks.onFetch = (source, ok) => isolateTelemetry.jwksFetch(source, ok);
  return {
    fetch: upstreamFetch,
    balancer: new Balancer(),
    random: Math.random,
    requestId: () => crypto.randomUUID(),
    now: () => Date.now(),
    sleep,
    jwks,
    upstreams: new UpstreamState(exchange ? { exchange } : {}),
    rateLimits: rateLimitEnv(env.RATE_LIMITER ? withCachedIds(env.RATE_LIMITER) : undefined),
    binding: (name) => bindingFetch(env, name),
  };
}

const NO_STORE = "isthmus: no configuration store is bound to this Worker (expected the KV namespace CONFIG or the service CONFIG_STORE).\n";

/** A local text/plain answer. */
function plainText(body: string, status: number): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain" } });
}

/** The isolate's snapshot cache, created on first use; undefined when no configuration store is bound. */
function snapshotCache(env: Env): SnapshotCache | undefined {
  if (!isolateCache) {
    const source = configSource(env);
    if (source) isolateCache = new SnapshotCache(source, Date.now, { prometheus: scraped(env) });
  }
  return isolateCache;
}

export default {
  async fetch(request, env, ctx): Promise<Response> {
    const cache = snapshotCache(env);
    if (!cache) return plainText(NO_STORE, 503);
    const snapshot = await cache.get((p) => ctx.waitUntil(p));

    const prefix = snapshot?.snapshot.settings.adminPathPrefix ?? DEFAULT_SETTINGS.adminPathPrefix;
    if (env.ADMIN_TOKEN && pathOf(request.url).startsWith(`${prefix}/`)) {
      const key = `${prefix}|${env.ADMIN_TOKEN}`;
      if (admin?.key !== key) admin = { key, app: adminApp(prefix, env.ADMIN_TOKEN) };
      deps ??= isolateDeps(env);
      // Tells the UpstreamHealth object which configuration is served, so its health checks start without
      // traffic: `isthmus serve`/`dev` poll /status until a configuration is served, at start and on each apply.
      if (snapshot) deps.upstreams?.maybeSync(snapshot.snapshot, (p) => ctx.waitUntil(p));
      return admin.app.fetch(request, { cache, snapshot, upstreams: deps.upstreams, rateLimits: deps.rateLimits });
    }

    if (!snapshot) return plainText(nothingServed(cache), 503);
    try {
      deps ??= isolateDeps(env);
      const waitUntil = (p: Promise<unknown>) => ctx.waitUntil(p);
      telemetry?.serving(snapshot);
      const result = await runPipeline(request, snapshot, deps, waitUntil);
      return telemetry && snapshot.telemetry ? telemetry.observe(request, result, snapshot, waitUntil) : result.response;
    } catch (error) {
      console.error(JSON.stringify({ message: "isthmus: unexpected error", error: error instanceof Error ? error.stack : String(error) }));
      return plainText("isthmus: internal error\n", 500);
    }
  },

  /**
   * A CONNECT request, which workerd (`isthmus serve`) hands here rather
   * than to fetch; Cloudflare's edge never sends one to a Worker. The
   * gateway tunnels nothing (Envoy, with no CONNECT route, answers 404), but
   * workerd has already answered 200 before it calls this handler and has no
   * way to refuse with a status: the connection is closed at once, with
   * nothing read or forwarded. Without the handler workerd answers 500 and
   * logs an uncaught exception for every CONNECT, a log any client can fill.
   */
  async connect(socket) {
    await socket.close().catch(() => {});
  },
} satisfies ExportedHandler<Env>;

/**
 * Readiness, as Istio's gateways answer it on port 15021: `GET /healthz/ready`
 * is 200 while this isolate serves a configuration, 503 before it has one.
 * A replica of a cluster (`--cluster-bucket`) is ready only while it is also
 * a member serving its share of the Durable Objects: 503 while it joins,
 * once it is stopping (so that load balancers drain it while it still
 * answers), and when its lease in the bucket has lapsed; and, until it
 * first has, while it cannot reach the objects its peers run (a cluster key
 * other than theirs).
 * `isthmus serve --health-port N` binds a socket to this entrypoint, so the
 * probe never passes through routing and needs no admin token.
 *
 * @example
 * // kubelet: httpGet { path: /healthz/ready, port: 15021 }
 * await fetch("http://127.0.0.1:15021/healthz/ready"); // 200 "ready: config 3f9c2a1b0c4d"
 */
export class Health extends WorkerEntrypoint<Env> {
  override async fetch(request: Request): Promise<Response> {
    if (pathOf(request.url) !== "/healthz/ready") return plainText("not found: GET /healthz/ready\n", 404);
    const cache = snapshotCache(this.env);
    if (!cache) return plainText(NO_STORE, 503);
    const snapshot = await cache.get((p) => this.ctx.waitUntil(p));
    if (!snapshot) return plainText(nothingServed(cache), 503);
    if (this.env.CLUSTER_PORT) {
      if (!(await clusterReady(this.env.CLUSTER_PORT))) return plainText(NOT_A_MEMBER, 503);
      if (this.env.UPSTREAM_HEALTH && !(await peersReached(this.env.UPSTREAM_HEALTH))) return plainText(PEERS_NOT_REACHED, 503);
    }
    return plainText(`ready: config ${snapshot.version}\n`, 200);
  }
}

/**
 * Prometheus scrapes, as Istio's gateways answer them on port 15090:
 * `GET /stats/prometheus` gives Istio's standard metrics and Isthmus's own,
 * cumulative since the process started, in Prometheus's text format.
 * `isthmus serve --metrics-port N` binds a socket to this entrypoint (and
 * sets `PROMETHEUS_SCRAPE`), so scrapes never pass through routing.
 *
 * @example
 * // prometheus.io/scrape: "true", prometheus.io/port: "15090", prometheus.io/path: /stats/prometheus
 * await fetch("http://127.0.0.1:15090/stats/prometheus"); // "# HELP istio_requests_total Requests the gateway answered, …"
 */
export class Metrics extends WorkerEntrypoint<Env> {
  override async fetch(request: Request): Promise<Response> {
    if (pathOf(request.url) !== "/stats/prometheus") return plainText("not found: GET /stats/prometheus\n", 404);
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("method not allowed: GET /stats/prometheus\n", { status: 405, headers: { allow: "GET, HEAD", "content-type": "text/plain" } });
    }
    const registry = prometheusRegistry(this.env);
    if (!registry) return plainText("isthmus: this gateway keeps no Prometheus metrics (PROMETHEUS_SCRAPE is not set; isthmus serve sets it with --metrics-port).\n", 404);
    return new Response(request.method === "HEAD" ? null : registry.stream(Date.now()), { headers: scrapeHeaders(request.headers.get("accept-encoding")) });
  }
}

const NOT_A_MEMBER = "isthmus: not serving as a member of its cluster (joining, stopping, or its lease in the bucket has lapsed).\n";
const PEERS_NOT_REACHED =
  "isthmus: has not yet reached the cluster's Durable Objects (if this lasts, check that --cluster-key-file holds the other replicas' key: they log 'cluster CONNECT refused').\n";

/** Set once this isolate has reached the cluster's UpstreamHealth object; a key is fixed at start, so once is enough. */
let reachedPeers = false;

/**
 * Whether this replica has reached the cluster's UpstreamHealth object at
 * least once. A replica whose cluster key differs from its peers' joins the
 * bucket and holds a lease like any other, but every call to an object a
 * peer owns is refused: it must not take traffic, whose GLOBAL decisions
 * would all wait out their timeout and fail by failureMode. Checked until
 * it first succeeds, within the probe's 1 s default timeout; a lost owner
 * delays a new replica's readiness until its lease lapses, and never takes
 * a ready replica out.
 */
async function peersReached(namespace: NonNullable<Env["UPSTREAM_HEALTH"]>): Promise<boolean> {
  if (reachedPeers) return true;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 800)));
    reachedPeers = await Promise.race([namespace.getByName(HEALTH_OBJECT).reach(), timeout]);
  } catch {
    reachedPeers = false;
  } finally {
    clearTimeout(timer);
  }
  return reachedPeers;
}

/** Whether workerd's cluster port answers `GET /ready` with 200 (its own readiness: serving, holding its lease, not stopping). */
async function clusterReady(port: Fetcher): Promise<boolean> {
  try {
    const response = await port.fetch("http://cluster/ready", { signal: AbortSignal.timeout(2_000) });
    await response.body?.cancel();
    return response.status === 200;
  } catch {
    return false;
  }
}

/** The path of a serialized absolute URL (request.url), without parsing it again. */
function pathOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "/";
  const end = url.indexOf("?", start);
  return end < 0 ? url.slice(start) : url.slice(start, end);
}
