/**
 * The per-request context the pipeline stages share, and the dependencies
 * (fetch, randomness, clocks, ids) injected into them so tests are exact.
 */
import type { BodyEnd } from "../upstream/response-body.ts";
import type { ClusterDef, DestinationDef, EndpointDef, GatewaySettings } from "../config/snapshot.ts";
import type { JwksCache } from "../authz/jwt/jwks-cache.ts";
import type { Balancer } from "../routing/balancer.ts";
import type { Fetch } from "../routing/forward.ts";
import type { Route, RuntimeSnapshot, VirtualHost } from "../routing/hydrate.ts";
import type { RequestFacts } from "./facts.ts";
import { toResponse, type LocalReply, type ResponseFlag } from "./local-reply.ts";
import type { MirrorOutcome } from "../routing/mirror.ts";
import type { UpstreamState } from "../upstream/state.ts";
import type { RateLimitEnv, RateLimitRecord } from "../ratelimit/decide.ts";
import type { AttemptTiming, StageTiming } from "../telemetry/record.ts";
import type { TraceContext } from "../telemetry/trace-context.ts";
import type { ResponseHead } from "../telemetry/completed.ts";

/** Everything the pipeline needs from the outside world. */
export interface PipelineDeps {
  fetch: Fetch;
  balancer: Balancer;
  /** Uniform in [0, 1). */
  random: () => number;
  requestId: () => string;
  /** Milliseconds since the epoch. */
  now: () => number;
  /** Waits (fault delays, retry backoff). */
  sleep: (ms: number) => Promise<void>;
  /** The isolate's JWKS cache (created on first use when absent). */
  jwks?: JwksCache;
  /**
   * Per-isolate upstream state (outlier detection, circuit breakers, the
   * shared health view). When absent, one is kept per deps object.
   */
  upstreams?: UpstreamState;
  /** The fetch of a Worker binding by name (`mtls_certificates` bindings for tls MUTUAL). */
  binding?: (name: string) => Fetch | undefined;
  /** The isolate's rate-limit state and the RateLimiter binding (created on first use when absent, without a binding). */
  rateLimits?: RateLimitEnv;
}

/** What happened to a request, for logs and telemetry. */
export interface RequestRecord {
  flags: ResponseFlag[];
  routeName?: string;
  cluster?: string;
  upstreamHost?: string;
  /** Attempts made to the upstream (1 + retries). */
  attempts?: number;
  /** Outcomes of mirrored copies, filled in after the response when they complete. */
  mirrors?: MirrorOutcome[];
  /** `<iss>/<sub>` of the verified JWT, when there is one. */
  requestPrincipal?: string;
  /** The verified client-certificate principal, when there is one. */
  peerPrincipal?: string;
  /** AUDIT policies that matched, and the shadow (dry-run) verdicts. */
  authz?: { audit?: string[]; dryRun?: { allow?: string; deny?: string }; deniedBy?: string };
  /** Every rate-limit decision made for the request (exported with telemetry). */
  rateLimit?: RateLimitRecord[];
  /** deps.now() when the pipeline started. */
  startedAt?: number;
  /** Timings of the authentication, authorization and rate-limit stages (only when telemetry is configured). */
  stages?: StageTiming[];
  /** Every upstream attempt (only when telemetry is configured). */
  upstreamAttempts?: AttemptTiming[];
  /** The endpoint of the last attempt. */
  upstreamEndpoint?: EndpointDef;
  /** The request's trace, once decided (when the traffic has tracing). */
  trace?: TraceContext;
  /** Mirror CLIENT span ids, one per mirror sent (when traced). */
  mirrorSpans?: string[];
  /** When mirrors started, and a promise that settles when their outcomes are in `mirrors`. */
  mirrorsStarted?: number;
  mirrorsDone?: Promise<unknown>;
  mirrorsEnded?: number;
  /** Milliseconds from the first attempt to the upstream response headers (x-envoy-upstream-service-time). */
  upstreamServiceTimeMs?: number;
  /** Envoy's RESPONSE_CODE_DETAILS for replies the gateway made, when the flag does not say it. */
  details?: string;
  /** The response body is watched to its end (upstream/response-body.ts): telemetry takes its size from here. */
  bodyDone?: Promise<BodyEnd>;
}

/**
 * A record with every field present from the start (undefined until set).
 * Objects that gain properties one by one go through map transitions V8
 * holds only weakly: a major GC that finds no live object of such a map
 * frees it, and every optimized function that embedded it is deoptimized
 * and compiled again. One shape from birth keeps the hot code optimized.
 */
export function newRecord(startedAt: number): RequestRecord {
  return {
    flags: [],
    routeName: undefined,
    cluster: undefined,
    upstreamHost: undefined,
    attempts: undefined,
    mirrors: undefined,
    requestPrincipal: undefined,
    peerPrincipal: undefined,
    authz: undefined,
    rateLimit: undefined,
    startedAt,
    stages: undefined,
    upstreamAttempts: undefined,
    upstreamEndpoint: undefined,
    trace: undefined,
    mirrorSpans: undefined,
    mirrorsStarted: undefined,
    mirrorsDone: undefined,
    mirrorsEnded: undefined,
    upstreamServiceTimeMs: undefined,
    details: undefined,
    bodyDone: undefined,
  };
}

/** State that grows as the request moves through the stages. */
export interface RequestContext {
  request: Request;
  snapshot: RuntimeSnapshot;
  settings: GatewaySettings;
  deps: PipelineDeps;
  facts: RequestFacts;
  record: RequestRecord;
  /** Schedules work that may outlive the response (ctx.waitUntil). */
  waitUntil: (promise: Promise<unknown>) => void;
  /**
   * Changes to make to the response, registered by a stage (e.g. CORS) for
   * whatever a later stage answers. Replies from earlier stages (an
   * authorization 403, a fault abort) do not get them, as in Envoy's chain.
   */
  responseHooks: ((response: Response) => void)[];
  vhost?: VirtualHost;
  route?: Route;
  destination?: DestinationDef;
  cluster?: ClusterDef;
  /** ALLOW_ANY: an unknown host is forwarded as is, after the security stages. */
  passthrough?: boolean;
  /** Client headers as they were before request authentication changed them (set only when needed later). */
  preAuthHeaders?: Headers;
  /**
   * Set by the stages that apply the route's response header operations
   * themselves (a forwarded response, a redirect or direct response, a
   * CORS preflight); any other reply made once a route is chosen gets them
   * from the pipeline, as Envoy finalizes every local reply's headers.
   */
  routeHeadersApplied?: boolean;
  /**
   * The head of the upstream's response as telemetry reads it, counted when
   * the response was copied and kept in step with every change since; unset
   * when not counted, and cleared when a response hook changes the headers.
   */
  responseHead?: ResponseHead;
}

/**
 * The context of a request that passed ingress, with every field present
 * from the start (see `newRecord`).
 */
export function newContext(
  request: Request,
  snapshot: RuntimeSnapshot,
  deps: PipelineDeps,
  facts: RequestFacts,
  record: RequestRecord,
  waitUntil: (promise: Promise<unknown>) => void,
): RequestContext {
  return {
    request,
    snapshot,
    settings: snapshot.snapshot.settings,
    deps,
    facts,
    record,
    waitUntil,
    responseHooks: [],
    vhost: undefined,
    route: undefined,
    destination: undefined,
    cluster: undefined,
    passthrough: undefined,
    preAuthHeaders: undefined,
    routeHeadersApplied: undefined,
    responseHead: undefined,
  };
}

export interface PipelineResult {
  response: Response;
  record: RequestRecord;
  /** The request's context (absent when ingress refused the request). */
  context?: RequestContext;
}

/** Ends the request with a local reply, recording its response flag (and its details, when it has them). */
export function localReply(reply: LocalReply, record: RequestRecord): PipelineResult {
  if (reply.flag) record.flags.push(reply.flag);
  if (reply.details) record.details = reply.details;
  return { response: toResponse(reply), record };
}
