/**
 * DestinationRule traffic policy → the resilience parts of a cluster:
 * consistent hashing, locality load balancing, circuit breaker limits,
 * retry budget, outlier detection, panic threshold and mTLS origination,
 * with Istio's defaults (cluster_traffic_policy.go) and validation.
 *
 * `checkTrafficPolicy` validates one policy where it is written (so
 * messages name the DestinationRule field); `upstreamPolicy` converts the
 * merged policy of a cluster and never reports problems.
 */
import { GATEWAY_BINDINGS } from "../../env.ts";
import type { z } from "zod";
import { durationMs } from "../duration.ts";
import type { ConnectionPoolSettings, LoadBalancerSettings, LocalityLoadBalancerSetting, OutlierDetection, TrafficPolicy } from "../schema/networking.ts";
import type { ClusterDef, ConnectionPoolDef, ConsistentHashDef, HashKeyDef, LocalityLbDef, OutlierDetectionDef } from "../snapshot.ts";
import { isHttpToken } from "../../gateway/request-header.ts";
import type { FieldPath } from "./diagnostics.ts";

type Report = (path: FieldPath, message: string) => void;

/** Envoy's ring hash default minimum (Istio sets 1024) and the caps Isthmus applies for isolate memory. */
export const DEFAULT_RING_SIZE = 1024;
export const MAX_RING_SIZE = 65_536;
export const DEFAULT_MAGLEV_TABLE = 65_537;
export const MAX_MAGLEV_TABLE = 65_537;

/** The parts of a traffic policy that merge per field (Istio's MergeTrafficPolicy). */
export type PolicyParts = Pick<TrafficPolicy, "loadBalancer" | "connectionPool" | "outlierDetection" | "tls" | "retryBudget">;

/**
 * Maps DestinationRule `tls.credentialName` to the Worker binding that
 * presents the certificate (undefined: none can); `reserved` says when the
 * name would have been one of the gateway's own bindings.
 */
export interface CredentialResolver {
  (credentialName: string): string | undefined;
  reserved(credentialName: string): boolean;
}

const BINDING_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * A credentialName resolves through GatewayConfig `credentials`; without
 * an entry it is used as the binding name itself when it is a valid one.
 */
export function credentialResolver(credentials: { credentialName: string; binding: string }[] | undefined): CredentialResolver {
  const map = new Map((credentials ?? []).map((c) => [c.credentialName, c.binding]));
  const named = (name: string) => map.get(name) ?? (BINDING_NAME.test(name) ? name : undefined);
  // The gateway's own bindings are never a certificate (see GATEWAY_BINDINGS).
  const reserved = (name: string) => GATEWAY_BINDINGS.has(named(name) ?? "");
  return Object.assign((name: string) => (reserved(name) ? undefined : named(name)), { reserved });
}

/** Validates a traffic policy (top level, subset or port level) where it is written. */
export function checkTrafficPolicy(
  policy: Omit<TrafficPolicy, "portLevelSettings" | "tunnel" | "proxyProtocol" | "retryBudget"> & Partial<Pick<TrafficPolicy, "retryBudget">>,
  path: FieldPath,
  resolve: CredentialResolver,
  error: Report,
  warn: Report,
): void {
  const lb = policy.loadBalancer;
  if (lb?.consistentHash) checkConsistentHash(lb.consistentHash, [...path, "loadBalancer", "consistentHash"], error, warn);
  if (lb?.localityLbSetting) checkLocalityLb(lb.localityLbSetting, policy.outlierDetection, [...path, "loadBalancer", "localityLbSetting"], error, warn);
  const http = policy.connectionPool?.http;
  for (const field of ["http1MaxPendingRequests", "http2MaxRequests", "maxRetries"] as const) {
    const v = http?.[field];
    if (v !== undefined && v < 0) error([...path, "connectionPool", "http", field], "expected a number >= 0");
  }
  // Requests only wait for a free http2MaxRequests slot here: Envoy's HTTP/1 pool makes them wait for one of
  // tcp.maxConnections connections, which a Worker does not have (Istio's circuit-breaking task relies on that).
  if ((http?.http1MaxPendingRequests ?? 0) > 0 && !((http?.http2MaxRequests ?? 0) > 0)) {
    const tcp = policy.connectionPool?.tcp?.maxConnections;
    warn(
      [...path, "connectionPool", "http", "http1MaxPendingRequests"],
      `has no effect without connectionPool.http.http2MaxRequests: at the edge requests wait only for a free http2MaxRequests slot, as a Worker has no connection pool${tcp ? ` (tcp.maxConnections is ignored)` : ""}; set http2MaxRequests to the number of requests allowed in flight${tcp ? ` (${tcp}, to match Envoy's one request per HTTP/1.1 connection)` : ""}`,
    );
  }
  const od = policy.outlierDetection;
  if (od) {
    if (od.consecutiveErrors !== undefined) {
      warn([...path, "outlierDetection", "consecutiveErrors"], "deprecated and ignored (as in current Istio); use consecutiveGatewayErrors or consecutive5xxErrors");
    }
  }
  const tls = policy.tls;
  if (tls?.mode === "MUTUAL") {
    if (tls.credentialName === undefined) {
      error([...path, "tls", "credentialName"], "MUTUAL needs credentialName: the name of an mtls_certificates binding (or a GatewayConfig credentials entry) that presents the client certificate");
    } else if (resolve.reserved(tls.credentialName)) {
      error(
        [...path, "tls", "credentialName"],
        `"${tls.credentialName}" names one of the gateway's own bindings (${[...GATEWAY_BINDINGS].join(", ")}), not a client certificate: name an mtls_certificates binding, a GatewayConfig credentials entry or an isthmus serve --credentials directory`,
      );
    } else if (resolve(tls.credentialName) === undefined) {
      error([...path, "tls", "credentialName"], `expected a GatewayConfig credentials entry for "${tls.credentialName}" (binding names are letters, digits and _)`);
    }
  } else if (tls?.credentialName !== undefined) {
    warn([...path, "tls", "credentialName"], "only MUTUAL uses credentialName at the edge (the client certificate binding); ignored");
  }
}

function checkConsistentHash(hash: NonNullable<z.infer<typeof LoadBalancerSettings>["consistentHash"]>, path: FieldPath, error: Report, warn: Report): void {
  if (!hash.httpHeaderName && !hash.httpCookie && !hash.useSourceIp && !hash.httpQueryParameterName) {
    warn(path, "no hash key (httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName): every request hashes to a random endpoint");
  }
  if (hash.httpCookie) {
    if (!isHttpToken(hash.httpCookie.name)) error([...path, "httpCookie", "name"], "expected a cookie name (an HTTP token)");
  }
  if (hash.maglev?.tableSize !== undefined) {
    const size = hash.maglev.tableSize;
    if (!isPrime(size)) error([...path, "maglev", "tableSize"], `expected a prime number (Envoy's Maglev table size), got ${size}`);
    else if (size > MAX_MAGLEV_TABLE) warn([...path, "maglev", "tableSize"], `tables above ${MAX_MAGLEV_TABLE} entries are capped at ${MAX_MAGLEV_TABLE} (isolate memory)`);
  }
  const ring = hash.ringHash?.minimumRingSize ?? hash.minimumRingSize;
  if (ring !== undefined && ring > MAX_RING_SIZE) {
    warn([...path, hash.ringHash ? "ringHash" : "minimumRingSize"], `rings above ${MAX_RING_SIZE} entries are capped at ${MAX_RING_SIZE} (isolate memory)`);
  }
}

const WILDCARD_AT_END = /^[^*]*\*?$/;

function checkLocalityLb(setting: z.infer<typeof LocalityLoadBalancerSetting>, od: z.infer<typeof OutlierDetection> | undefined, path: FieldPath, error: Report, warn: Report): void {
  setting.distribute?.forEach((d, i) => {
    if (!WILDCARD_AT_END.test(d.from)) error([...path, "distribute", i, "from"], `expected at most one '*', at the end, got "${d.from}"`);
    let sum = 0;
    for (const [to, weight] of Object.entries(d.to)) {
      if (!WILDCARD_AT_END.test(to)) error([...path, "distribute", i, "to", to], `expected at most one '*', at the end, got "${to}"`);
      if (weight < 1 || weight > 100) error([...path, "distribute", i, "to", to], `expected a weight between 1 and 100, got ${weight}`);
      sum += weight;
    }
    if (sum !== 100) error([...path, "distribute", i, "to"], `expected weights that add up to 100, got ${sum}`);
  });
  setting.failover?.forEach((f, i) => {
    const at: FieldPath = [...path, "failover", i];
    if (f.from === f.to) error(at, "expected different regions in from and to");
    if (f.from.includes("/") || f.to.includes("/")) error(at, "expected regions only (no zone or subzone) in failover");
    if (f.from.includes("*") || f.to.includes("*")) error(at, "expected regions without '*' in failover");
  });
  if (!od && setting.enabled !== false && ((setting.failover?.length ?? 0) > 0 || (setting.failoverPriority?.length ?? 0) > 0)) {
    warn(path, "failover needs outlierDetection (as in Istio): without it no endpoint is ever ejected and traffic never fails over");
  }
}

/** Converts the merged policy of one cluster. */
export function upstreamPolicy(policy: PolicyParts, resolve: CredentialResolver): Partial<ClusterDef> {
  const out: Partial<ClusterDef> = {};
  const hash = policy.loadBalancer?.consistentHash;
  if (hash) out.consistentHash = consistentHashOf(hash);
  const pool = connectionPoolOf(policy.connectionPool);
  if (pool) out.connectionPool = pool;
  if (policy.retryBudget) {
    out.retryBudget = { percent: policy.retryBudget.percent ?? 20, minRetryConcurrency: policy.retryBudget.minRetryConcurrency ?? 3 };
  }
  const od = policy.outlierDetection ? outlierDetectionOf(policy.outlierDetection) : undefined;
  if (od) out.outlierDetection = od;
  // Istio writes healthy_panic_threshold whenever outlierDetection is set (default 0: panic disabled).
  out.panicThreshold = policy.outlierDetection ? (policy.outlierDetection.minHealthPercent ?? 0) : 50;
  const locality = localityOf(policy.loadBalancer?.localityLbSetting, od !== undefined);
  if (locality) out.locality = locality;
  if (policy.tls?.mode === "MUTUAL" && policy.tls.credentialName !== undefined) {
    const binding = resolve(policy.tls.credentialName);
    if (binding) out.mtlsBinding = binding;
  }
  return out;
}

function consistentHashOf(hash: NonNullable<z.infer<typeof LoadBalancerSettings>["consistentHash"]>): ConsistentHashDef {
  let key: HashKeyDef | undefined;
  if (hash.httpHeaderName) key = { type: "header", name: hash.httpHeaderName.toLowerCase() };
  else if (hash.httpCookie) {
    const c = hash.httpCookie;
    const cookie: HashKeyDef = { type: "cookie", name: c.name };
    if (c.path) cookie.path = c.path;
    if (c.ttl !== undefined) cookie.ttlSeconds = Math.floor(durationMs(c.ttl) / 1000);
    if (c.attributes?.length) cookie.attributes = c.attributes.map((a) => (a.value === undefined ? [a.name] : [a.name, a.value]));
    key = cookie;
  } else if (hash.useSourceIp) key = { type: "sourceIp" };
  else if (hash.httpQueryParameterName) key = { type: "query", name: hash.httpQueryParameterName };
  const out: ConsistentHashDef = hash.maglev
    ? { algorithm: "MAGLEV", size: Math.min(hash.maglev.tableSize || DEFAULT_MAGLEV_TABLE, MAX_MAGLEV_TABLE) }
    : { algorithm: "RING_HASH", size: Math.min(hash.ringHash?.minimumRingSize || hash.minimumRingSize || DEFAULT_RING_SIZE, MAX_RING_SIZE) };
  if (key) out.key = key;
  return out;
}

/** Istio treats 0 as unset (it cannot tell them apart). */
function connectionPoolOf(pool: z.infer<typeof ConnectionPoolSettings> | undefined): ConnectionPoolDef | undefined {
  const http = pool?.http;
  if (!http) return undefined;
  const out: ConnectionPoolDef = {};
  if (http.http2MaxRequests && http.http2MaxRequests > 0) out.maxRequests = http.http2MaxRequests;
  if (http.http1MaxPendingRequests && http.http1MaxPendingRequests > 0) out.maxPendingRequests = http.http1MaxPendingRequests;
  if (http.maxRetries && http.maxRetries > 0) out.maxRetries = http.maxRetries;
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Envoy's outlier detection defaults as Istio leaves them (consecutive 5xx: 5, gateway errors: off). */
function outlierDetectionOf(od: z.infer<typeof OutlierDetection>): OutlierDetectionDef {
  const base = od.baseEjectionTime ? durationMs(od.baseEjectionTime) : 30_000;
  return {
    consecutive5xxErrors: od.consecutive5xxErrors ?? 5,
    consecutiveGatewayErrors: od.consecutiveGatewayErrors ?? 0,
    splitExternalLocalOriginErrors: od.splitExternalLocalOriginErrors ?? false,
    consecutiveLocalOriginFailures: od.consecutiveLocalOriginFailures || 5,
    intervalMs: od.interval ? durationMs(od.interval) : 10_000,
    baseEjectionTimeMs: base,
    maxEjectionTimeMs: Math.max(300_000, base),
    maxEjectionPercent: od.maxEjectionPercent || 10,
  };
}

/**
 * Locality load balancing is on by default (Istio's mesh default); a
 * DestinationRule can turn it off with `enabled: false`. `distribute`
 * always applies; failover (by proximity, `failover` rules and
 * `failoverPriority`) only with outlier detection.
 */
function localityOf(setting: z.infer<typeof LocalityLoadBalancerSetting> | undefined, outlierDetection: boolean): LocalityLbDef | undefined {
  if (setting?.enabled === false) return undefined;
  if (setting?.distribute?.length) {
    return { distribute: setting.distribute.map((d) => ({ from: d.from, to: Object.entries(d.to) })) };
  }
  if (!outlierDetection) return undefined;
  const out: LocalityLbDef = { failover: true };
  if (setting?.failover?.length) out.failoverRules = setting.failover.map((f) => ({ from: f.from, to: f.to }));
  if (setting?.failoverPriority?.length) out.failoverPriority = setting.failoverPriority;
  return out;
}

function isPrime(n: number): boolean {
  if (n < 2 || !Number.isInteger(n)) return false;
  for (let i = 2; i * i <= n; i++) if (n % i === 0) return false;
  return true;
}
