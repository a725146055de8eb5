/**
 * The compiled Snapshot: plain JSON, immutable, content-addressed. It holds
 * everything the request path needs, already resolved: the host table,
 * route tables with matcher descriptors, clusters with their endpoints, and
 * gateway-wide settings. The Worker turns it into runtime objects once per
 * isolate (see src/routing/hydrate.ts); nothing here is parsed per request.
 */
import type { SecurityDef } from "./snapshot-security.ts";
import type { RateLimitDef } from "./snapshot-ratelimit.ts";
import type { TelemetryDef } from "./snapshot-telemetry.ts";

export type * from "./snapshot-security.ts";
export type * from "./snapshot-ratelimit.ts";
export type * from "./snapshot-telemetry.ts";

/** Bumped whenever the shape below changes incompatibly. */
export const SNAPSHOT_FORMAT = 1;

export type PathNormalization = "NONE" | "BASE" | "MERGE_SLASHES" | "DECODE_AND_MERGE_SLASHES";

/** Envoy's `headers_with_underscores_action`: what happens to a client header whose name has a `_`. */
export type HeadersWithUnderscoresAction = "ALLOW" | "DROP_HEADER" | "REJECT_REQUEST";

export interface Snapshot {
  format: typeof SNAPSHOT_FORMAT;
  /** Content hash of the rest of the snapshot (12 hex characters). */
  version: string;
  settings: GatewaySettings;
  /** Served host name patterns → index into `virtualHosts`. */
  hosts: HostTable;
  virtualHosts: VirtualHostDef[];
  /** HTTP rules (one per VirtualService `http[]` entry), shared by the routes that use them. */
  rules: RuleDef[];
  /** Upstream clusters by name (`outbound|<port>|<subset>|<host>`, as Istio names them). */
  clusters: Record<string, ClusterDef>;
  /** One line per resource compiled in, for the admin endpoint and `isthmus versions`. */
  resources: string[];
  /** Authentication and authorization; absent when no security resource is configured. */
  security?: SecurityDef;
  /** Rate limits (RateLimitPolicy); absent when none is configured. */
  rateLimits?: RateLimitDef;
  /** Telemetry (OTLP exporters, Telemetry resources); absent when nothing is reported. */
  telemetry?: TelemetryDef;
}

export interface GatewaySettings {
  rootNamespace: string;
  /** How often an isolate re-reads the active pointer, in ms. */
  configRefreshMs: number;
  pathNormalization: PathNormalization;
  /** REGISTRY_ONLY answers 404 NR for unknown hosts; ALLOW_ANY forwards them as-is. */
  outboundTrafficPolicy: "REGISTRY_ONLY" | "ALLOW_ANY";
  limits: RequestLimits;
  adminPathPrefix: string;
  /**
   * GatewayConfig `gatewayTopology.numTrustedProxies` (Envoy's
   * `xff_num_trusted_hops`): the client is the address that many entries
   * from the right of X-Forwarded-For. Absent means 0: the direct peer.
   */
  numTrustedProxies?: number;
  /**
   * GatewayConfig `headersWithUnderscoresAction` (Envoy's
   * `headers_with_underscores_action`) when not ALLOW: DROP_HEADER drops
   * every client header whose name has a `_`, REJECT_REQUEST answers 400.
   * Absent means ALLOW (Istio's default). Whatever it says, a name that
   * reads with `_` as `-` like one the gateway strips or sets is dropped.
   */
  headersWithUnderscoresAction?: HeadersWithUnderscoresAction;
  /**
   * The retry policy of routes whose VirtualService rule has no `retries`:
   * GatewayConfig `defaultHttpRetryPolicy`, else Istio's built-in default.
   * Absent in snapshots from older CLIs (the built-in default applies).
   */
  defaultRetry?: RetryDef;
  /** Maps the request's Cloudflare location to the locality it is treated as coming from. */
  locality?: LocalitySettings;
  /** GatewayConfig `gatewayLabels`: the gateway's own labels (failoverPriority compares them). */
  gatewayLabels?: Record<string, string>;
  /** Active health checks, run by the UpstreamHealth Durable Object. */
  healthChecks?: HealthCheckDef[];
  /** How often an isolate exchanges ejections and health with the UpstreamHealth Durable Object, in ms. */
  healthSyncMs?: number;
}

export interface RequestLimits {
  maxRequestHeadersBytes: number;
  maxHeadersCount: number;
  maxUrlBytes: number;
  maxRequestBodyBytes: number;
  maxJwtBytes: number;
  /** Mirrored requests with a larger body are skipped (and counted). */
  maxMirrorBodyBytes: number;
  /** Request bodies up to this size are buffered so a retry can resend them; larger ones are sent once. */
  maxRetryBodyBytes?: number;
}

export interface HostTable {
  /** `host` (lower case, no port) → virtual host index. */
  exact: Record<string, number>;
  /** `*.example.com` patterns as `.example.com`, longest first. */
  suffix: [suffix: string, vhost: number][];
  /** `api.*` patterns as `api.`, longest first. */
  prefix: [prefix: string, vhost: number][];
  /** The `*` virtual host, if any. */
  any?: number;
}

export interface VirtualHostDef {
  /** The host pattern this virtual host serves, e.g. `bookinfo.local` or `*.example.com`. */
  name: string;
  /** Redirect plain-HTTP requests to HTTPS (Gateway `tls.httpsRedirect`). */
  httpsRedirect: boolean;
  routes: RouteDef[];
}

export type StringMatchDef =
  | { type: "exact"; value: string; ignoreCase?: boolean }
  | { type: "prefix"; value: string; ignoreCase?: boolean }
  | { type: "regex"; value: string }
  | { type: "present" };

export interface HeaderMatchDef {
  /** Lower-case header name. */
  name: string;
  match: StringMatchDef;
}

export interface ClaimMatchDef {
  /** Claim path, e.g. `["groups"]` or `["realm_access", "roles"]`. */
  claim: string[];
  match: StringMatchDef;
}

export interface MatchDef {
  uri?: StringMatchDef;
  scheme?: StringMatchDef;
  method?: StringMatchDef;
  authority?: StringMatchDef;
  headers?: HeaderMatchDef[];
  claims?: ClaimMatchDef[];
  withoutHeaders?: HeaderMatchDef[];
  /** `withoutHeaders` on `@request.auth.claims`: the claim must not match (a request without it passes), as Istio's inverted metadata matcher. */
  withoutClaims?: ClaimMatchDef[];
  queryParams?: { name: string; match: StringMatchDef }[];
  /** The listener's port: 80 for http, 443 for https (RequestFacts.port). */
  port?: number;
  /**
   * The port the Host header names (the listener's when it names none):
   * Istio's default route to a service with several ports takes the one
   * the client addressed, as a sidecar's listener would. Never written in
   * a VirtualService (`port` is the listener's).
   */
  hostPort?: number;
  /**
   * Ports an earlier catch-all of the same VirtualService took (a block with
   * only `port`): Istio's table for such a port never has this route.
   */
  exceptPorts?: number[];
}

export interface RouteDef {
  /** `http.name` + `.` + `match.name` when both are set (Envoy's ROUTE_NAME). */
  name: string;
  /** Index into `Snapshot.rules`. */
  rule: number;
  match: MatchDef;
}

export interface HeaderOpsDef {
  set?: [name: string, value: string][];
  add?: [name: string, value: string][];
  remove?: string[];
}

export interface HeadersDef {
  request?: HeaderOpsDef;
  response?: HeaderOpsDef;
}

export interface DestinationDef {
  /** Service host as written after resolution (the ServiceEntry host it resolved to). */
  host: string;
  subset?: string;
  port: number;
  /** Cluster name; absent from `clusters` when the subset is undefined (→ 503 NC). */
  cluster: string;
  weight: number;
  headers?: HeadersDef;
  /** The destination's own authority rewrite (`host` in its request `set`); the rule's `rewrite.authority` wins. */
  authority?: string;
}

export interface RedirectDef {
  uri?: string;
  prefixRewrite?: string;
  authority?: string;
  scheme?: string;
  port?: number;
  derivePort?: "FROM_PROTOCOL_DEFAULT" | "FROM_REQUEST_PORT";
  status: number;
}

export interface RewriteDef {
  uri?: string;
  uriRegex?: { match: string; rewrite: string };
  authority?: string;
}

export type ActionDef =
  | { type: "route"; destinations: DestinationDef[] }
  | { type: "redirect"; redirect: RedirectDef }
  | { type: "direct"; status: number; body?: string; bodyBase64?: string };

export interface RuleDef {
  /** `Kind/namespace/name` of the VirtualService (or ServiceEntry for default routes). */
  source: string;
  /** Index of this rule in the VirtualService's `http` list. */
  index: number;
  name?: string;
  action: ActionDef;
  rewrite?: RewriteDef;
  headers?: HeadersDef;
  /** Route timeout in ms; absent means no timeout (Istio's default). */
  timeoutMs?: number;
  fault?: FaultDef;
  cors?: CorsDef;
  /** Requests copied fire-and-forget to other destinations. */
  mirrors?: MirrorDef[];
  /** Makes the weighted pick sticky by a hash of a header or cookie (annotation `isthmus.dev/sticky-cohort`). */
  cohort?: CohortDef;
  /** The rule's `retries`; absent means the gateway default (`GatewaySettings.defaultRetry`). */
  retry?: RetryDef;
  /**
   * Retry non-idempotent methods (POST, PATCH, ...) after any retriable failure, not only after
   * failures known to have happened before the request reached the origin (annotation
   * `isthmus.dev/retry-non-idempotent: "true"`).
   */
  retryNonIdempotent?: boolean;
}

/** A compiled HTTPRetry (Istio's retry.ConvertPolicy). */
export interface RetryDef {
  /** Retries after the first attempt; 0 disables retries. */
  attempts: number;
  /** Envoy retry_on tokens, e.g. `connect-failure`, `5xx`, `retriable-status-codes`. */
  retryOn: string[];
  /** Statuses retried under `retriable-status-codes`. */
  statusCodes?: number[];
  perTryTimeoutMs?: number;
  /** Envoy's fully jittered exponential backoff: base (25 ms) and cap (10 × base). */
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** Envoy's previous_priorities (update frequency 2): later retries go to other localities. */
  retryRemoteLocalities?: boolean;
  /** `retryIgnorePreviousHosts` as written; absent means on, except for consistent-hash clusters. */
  previousHosts?: boolean;
}

/** Percentages are 0–100 with Envoy's 0.0001 granularity. */
export interface FaultDef {
  delay?: { ms: number; percent: number };
  abort?: { status: number; grpcStatus?: number; percent: number };
}

export interface CorsDef {
  allowOrigins: StringMatchDef[];
  allowMethods?: string;
  allowHeaders?: string;
  exposeHeaders?: string;
  /** Seconds, as Access-Control-Max-Age wants it. */
  maxAge?: string;
  allowCredentials?: boolean;
  unmatchedPreflights: "FORWARD" | "IGNORE";
}

export interface MirrorDef {
  host: string;
  port: number;
  subset?: string;
  cluster: string;
  percent: number;
}

export interface CohortDef {
  header?: string;
  cookie?: string;
}

export interface EndpointDef {
  /** Host name or IP address to connect to. */
  address: string;
  port: number;
  labels: Record<string, string>;
  locality?: string;
  weight: number;
}

export interface ClusterDef {
  name: string;
  /** ServiceEntry host this cluster belongs to. */
  service: string;
  /** `Kind/namespace/name` of the ServiceEntry. */
  source: string;
  namespace: string;
  port: number;
  subset?: string;
  /** `https` when the port protocol is HTTPS/TLS or the DestinationRule asks for TLS. */
  scheme: "http" | "https";
  endpoints: EndpointDef[];
  /**
   * True for a wildcard ServiceEntry without endpoints: the single endpoint
   * has an empty address and each request connects to its own host.
   */
  dynamicAddress?: boolean;
  loadBalancer: "LEAST_REQUEST" | "ROUND_ROBIN" | "RANDOM";
  /** DestinationRule `loadBalancer.consistentHash` (replaces `loadBalancer`). */
  consistentHash?: ConsistentHashDef;
  /** Locality-aware load balancing, present when it is in effect for this cluster. */
  locality?: LocalityLbDef;
  /** Per-isolate circuit breaker limits (`connectionPool.http`); an absent limit is unlimited. */
  connectionPool?: ConnectionPoolDef;
  /** DestinationRule `retryBudget`: caps concurrent retries relative to active requests. */
  retryBudget?: RetryBudgetDef;
  outlierDetection?: OutlierDetectionDef;
  /** Envoy's healthy_panic_threshold in percent; absent means 50 (Envoy's default). */
  panicThreshold?: number;
  /** The Worker binding (an `mtls_certificates` binding) that presents the client certificate (`tls.mode: MUTUAL`). */
  mtlsBinding?: string;
  /** Index into `GatewaySettings.healthChecks` of the active health check covering this cluster's endpoints. */
  healthCheck?: number;
}

export type HashKeyDef =
  | { type: "header"; name: string }
  | { type: "cookie"; name: string; path?: string; ttlSeconds?: number; attributes?: [name: string, value?: string][] }
  | { type: "sourceIp" }
  | { type: "query"; name: string };

export interface ConsistentHashDef {
  /** Absent when the DestinationRule names no key: every request hashes to a random point. */
  key?: HashKeyDef;
  algorithm: "RING_HASH" | "MAGLEV";
  /** Ring entries (RING_HASH) or the prime table size (MAGLEV). */
  size: number;
}

export interface LocalityLbDef {
  /** `from` locality pattern → weights per `to` pattern (each list sums to 100). */
  distribute?: { from: string; to: [locality: string, weight: number][] }[];
  /** Failover by locality proximity (Istio's default when outlierDetection is set). */
  failover?: boolean;
  /** Cross-region failover restrictions: from region → to region. */
  failoverRules?: { from: string; to: string }[];
  /** Labels ranking endpoints against the gateway (`label` or `label=value`). */
  failoverPriority?: string[];
}

export interface ConnectionPoolDef {
  /** `http2MaxRequests`: concurrent requests to the cluster from one isolate. */
  maxRequests?: number;
  /** `http1MaxPendingRequests`: requests that may wait for a free request slot. */
  maxPendingRequests?: number;
  /** `maxRetries`: concurrent retries to the cluster from one isolate. */
  maxRetries?: number;
}

export interface RetryBudgetDef {
  percent: number;
  minRetryConcurrency: number;
}

export interface OutlierDetectionDef {
  /** 0 disables. */
  consecutive5xxErrors: number;
  /** 0 disables. */
  consecutiveGatewayErrors: number;
  splitExternalLocalOriginErrors: boolean;
  consecutiveLocalOriginFailures: number;
  intervalMs: number;
  baseEjectionTimeMs: number;
  /** Envoy's max_ejection_time: max(300 s, base). */
  maxEjectionTimeMs: number;
  maxEjectionPercent: number;
}

export interface LocalitySettings {
  /** The first rule whose match holds gives the locality. */
  rules: LocalityRuleDef[];
  default?: string;
}

/** Every listed field must match (any of its values); an empty rule matches nothing. */
export interface LocalityRuleDef {
  /** Cloudflare colo IATA codes (request.cf.colo), upper case. */
  colos?: string[];
  /** ISO 3166-1 alpha-2 (request.cf.country), upper case. */
  countries?: string[];
  /** Continent codes (request.cf.continent), upper case. */
  continents?: string[];
  /** ISO 3166-2 codes `<country>-<region>` (request.cf.country + regionCode), upper case. */
  regions?: string[];
  locality: string;
}

export interface HealthCheckDef {
  /** `Kind/namespace/name` of the GatewayConfig, for logs. */
  source: string;
  /** ServiceEntry host and port checked. */
  service: string;
  port: number;
  path: string;
  intervalMs: number;
  timeoutMs: number;
  /** Inclusive status ranges that count as healthy. */
  expectedCodes: [low: number, high: number][];
  healthyThreshold: number;
  unhealthyThreshold: number;
  headers?: [name: string, value: string][];
  /** The endpoints probed. Their key (`address:port`) is what clusters look up. */
  targets: HealthTargetDef[];
}

export interface HealthTargetDef {
  address: string;
  port: number;
  scheme: "http" | "https";
  mtlsBinding?: string;
}
