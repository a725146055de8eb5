/**
 * The configurations the benchmark runs Isthmus with, and the requests sent
 * to each. `realistic` is the one place that builds the realistic config
 * (routes, retries, JWT, authorization, a global rate limit, OTLP
 * telemetry); REALISTIC_FEATURES says what it contains and why, and is
 * printed in the report.
 */
import { BENCH_USERS } from "./idp.ts";

export interface RequestSpec {
  host: string;
  path: string;
  headers?: Record<string, string>;
}

export interface BenchConfig {
  yaml: string;
  /** The requests the load generator sends in rotation. */
  requests: RequestSpec[];
}

export interface Feature {
  feature: string;
  included: boolean;
  note: string;
}

/** What the issue's realistic config asks for, and how `realistic` builds each part. */
export const REALISTIC_FEATURES: Feature[] = [
  { feature: "1,000 routes over 50 hosts (exact, prefix and regex uri matches)", included: true, note: "50 VirtualServices × 20 http routes" },
  { feature: "header routing", included: true, note: "every 4th route also matches a request header" },
  { feature: "weighted routing", included: true, note: "every 5th route splits 90/10 across DestinationRule subsets v1/v2" },
  {
    feature: "RS256 JWT against a local JWKS (RequestAuthentication)",
    included: true,
    note: `one gateway-wide rule (root namespace) with \`jwksUri\` on a local server the harness starts; RSA-2048 key; every request carries a Bearer token of one of ${BENCH_USERS} users, so after the first request per user every check is a verified-token cache hit (the JWKS is fetched once per isolate)`,
  },
  {
    feature: "20 AuthorizationPolicies",
    included: true,
    note: "6 root-namespace DENY policies (admin paths, methods, a debug header, requests without a principal, banned principals, an IP block), 1 ALLOW selecting the ingress gateway (hosts and methods), 10 namespace ALLOW policies (one per 5 hosts: hosts or path prefixes, methods, request principals, an x-tenant header rule), 2 namespace DENY (write methods; a `groups` claim) and 1 never-matching ALLOW (a canary header); every bench request passes both layers",
  },
  { feature: "a retry policy", included: true, note: "every route: `retries: {attempts: 2, perTryTimeout: 2s, retryOn: 5xx,reset,connect-failure}`; the upstream always answers 200, so every request succeeds on its first try" },
  {
    feature: "a global rate limit with a high ceiling (RateLimitPolicy)",
    included: true,
    note: "one GLOBAL rule (Durable Objects), keyed by `request.auth.principal` (one object per user), 1,000,000 requests per minute each: nothing is limited. Every request asks the key's object (an exact count), and because a minute limit refills slower than 1/s the object persists a floor under its count to SQLite (rewritten when the count leaves a band of 1% of the burst, at most about twice a second here), as in production. The 'lease' contender adds `lease: {size: 100}` to the rule (an opt-in that lets the isolate spend 100 tokens per object call)",
  },
  {
    feature: "OTLP export to a local receiver (Telemetry)",
    included: true,
    note: "'telemetry on': an OTLP/HTTP (protobuf) provider for traces, metrics and logs, exported to a local sink process on the generator core; a root-namespace Telemetry with 1% trace sampling (Istio's default), Istio's standard metrics on, and access logs only for errors (`response.code >= 400`), as a production mesh runs; flushes every 5 s or 500 requests (the defaults). 'telemetry off': the same config without the provider and the Telemetry",
  },
];

const HOSTS = 50;
const ROUTES_PER_HOST = 20;
/** Hosts per namespace ALLOW policy (HOSTS / HOST_GROUP = 10 policies). */
const HOST_GROUP = 5;

/** What the realistic config points at besides the upstream. */
export interface RealisticOptions {
  telemetry: boolean;
  /** The issuer, its JWKS URL and the tokens to send (bench/idp.ts). */
  jwt: { issuer: string; jwksUri: string; tokens: string[] };
  /** OTLP/HTTP base URL of the collector; required when `telemetry`. */
  otlpEndpoint?: string;
  /** Lease mode on the GLOBAL rule (tokens an isolate takes at once); off (one object call per request) without it. */
  lease?: { size: number };
  /** GatewayConfig `telemetry.flushInterval` (default 5s): the instruction count sets 25s to keep metric exports out of its counted requests. */
  flushInterval?: string;
  /**
   * Parts to leave out, for `bench:instructions`' feature ladder (what each
   * part costs per request). All are in by default. The 20 policies need the
   * JWT rule (they deny a request without a principal) and the rate limit
   * is keyed by the principal, so leaving `jwt` out needs both out too.
   */
  without?: RealisticPart[];
}

/** The parts of the realistic config a ladder can leave out. */
export type RealisticPart = "rateLimit" | "authorization" | "jwt" | "retries";

/**
 * The realistic config: 1,000 routes over 50 hosts in front of one
 * upstream port (see routeTable) with retries on every route, plus JWT
 * authentication, 20 AuthorizationPolicies, a GLOBAL rate limit and, with
 * `telemetry`, OTLP export (see REALISTIC_FEATURES). Every request it
 * returns is expected to be answered 200 by the upstream.
 *
 * @example
 * const config = realistic(8080, { telemetry: true, jwt: await benchKeys("http://127.0.0.1:9000"), otlpEndpoint: "http://127.0.0.1:4318" });
 */
export function realistic(upstreamPort: number, options: RealisticOptions): BenchConfig {
  const without = new Set(options.without ?? []);
  if (without.has("jwt") && !(without.has("authorization") && without.has("rateLimit")))
    throw new Error("realistic: the policies deny a request without a principal, and the rate limit is keyed by it; leave out authorization and rateLimit with jwt");
  const table = routeTable(upstreamPort, { hosts: HOSTS, routesPerHost: ROUTES_PER_HOST, regex: true, retries: !without.has("retries") });
  const { tokens, issuer, jwksUri } = options.jwt;
  if (tokens.length === 0) throw new Error("realistic: at least one token is needed");
  const requests = table.requests.map((r, i) => ({ ...r, headers: { ...r.headers, authorization: `Bearer ${tokens[i % tokens.length]}` } }));
  const docs = [table.yaml.trimEnd(), ...security(issuer, jwksUri, options.lease, without)];
  if (options.telemetry) {
    if (!options.otlpEndpoint) throw new Error("realistic: telemetry needs an otlpEndpoint");
    docs.push(...telemetry(options.otlpEndpoint, options.flushInterval));
  }
  return { yaml: docs.join("\n---\n") + "\n", requests };
}

/** RequestAuthentication, the 20 AuthorizationPolicies and the RateLimitPolicy, less the parts in `without`. */
function security(issuer: string, jwksUri: string, lease: { size: number } | undefined, without: Set<RealisticPart>): string[] {
  const root = (kind: string, name: string, spec: string) => `apiVersion: ${kind === "RateLimitPolicy" ? "isthmus.dev/v1alpha1" : "security.istio.io/v1"}\nkind: ${kind}\nmetadata: {name: ${name}, namespace: istio-system}\nspec:\n${spec}`;
  const bench = (kind: string, name: string, spec: string) => `apiVersion: security.istio.io/v1\nkind: ${kind}\nmetadata: {name: ${name}, namespace: bench}\nspec:\n${spec}`;
  const jwt = root("RequestAuthentication", "jwt", `  jwtRules:\n  - {issuer: "${issuer}", jwksUri: "${jwksUri}", audiences: [bench-api]}`);
  const rateLimit = root(
    "RateLimitPolicy",
    "per-user",
    `  rules:\n  - name: per-user\n    key: ["request.auth.principal"]\n    limits: [{requests: 1000000, unit: minute}]${lease ? `\n    lease: {size: ${lease.size}}` : ""}`,
  );
  const docs = [
    // Root namespace: the gateway layer and every destination.
    root("AuthorizationPolicy", "deny-admin-paths", `  action: DENY\n  rules: [{to: [{operation: {paths: ["/admin", "/admin/*", "*/.git/*", "*.php"]}}]}]`),
    root("AuthorizationPolicy", "deny-methods", `  action: DENY\n  rules: [{to: [{operation: {methods: [TRACE, CONNECT]}}]}]`),
    root("AuthorizationPolicy", "deny-debug-header", `  action: DENY\n  rules: [{when: [{key: "request.headers[x-debug-override]", values: ["*"]}]}]`),
    root("AuthorizationPolicy", "require-jwt", `  action: DENY\n  rules: [{from: [{source: {notRequestPrincipals: ["*"]}}]}]`),
    root("AuthorizationPolicy", "deny-banned-users", `  action: DENY\n  rules: [{from: [{source: {requestPrincipals: ["${issuer}/banned-1", "${issuer}/banned-2"]}}]}]`),
    root("AuthorizationPolicy", "deny-bad-ips", `  action: DENY\n  rules: [{from: [{source: {remoteIpBlocks: ["203.0.113.0/24", "198.51.100.7"]}}]}]`),
    // The gateway itself.
    root(
      "AuthorizationPolicy",
      "gateway-allow",
      `  selector: {matchLabels: {istio: ingressgateway}}\n  action: ALLOW\n  rules: [{to: [{operation: {hosts: ["*.bench.example.com"], methods: [GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS]}}]}]`,
    ),
  ];
  // Namespace `bench`: the destination layer. One ALLOW per group of hosts, alternating host and path matches.
  for (let g = 0; g < HOSTS / HOST_GROUP; g++) {
    const hs = Array.from({ length: HOST_GROUP }, (_, i) => g * HOST_GROUP + i);
    const to = g % 2 === 0 ? `hosts: [${hs.map((h) => `"s${h}.bench.example.com"`).join(", ")}]` : `paths: [${hs.map((h) => `"/s${h}/*"`).join(", ")}]`;
    docs.push(
      bench(
        "AuthorizationPolicy",
        `tenants-${g}`,
        `  action: ALLOW\n  rules:\n  - from: [{source: {requestPrincipals: ["${issuer}/user-*"]}}]\n    to: [{operation: {${to}, methods: [GET, HEAD]}}]\n  - to: [{operation: {${to}, methods: [POST]}}]\n    when: [{key: "request.headers[x-tenant]", values: ["t*"]}, {key: "request.auth.claims[scope]", values: [write]}]`,
      ),
    );
  }
  docs.push(bench("AuthorizationPolicy", "deny-writes-to-items", `  action: DENY\n  rules: [{to: [{operation: {methods: [PUT, PATCH, DELETE], paths: ["*/items/*"]}}]}]`));
  docs.push(bench("AuthorizationPolicy", "deny-suspended", `  action: DENY\n  rules: [{when: [{key: "request.auth.claims[groups]", values: [suspended]}]}]`));
  docs.push(bench("AuthorizationPolicy", "canary-testers", `  action: ALLOW\n  rules: [{to: [{operation: {paths: ["*/item"]}}], when: [{key: "request.headers[x-canary]", values: ["1"]}]}]`));
  return [...(without.has("jwt") ? [] : [jwt]), ...(without.has("authorization") ? [] : docs), ...(without.has("rateLimit") ? [] : [rateLimit])];
}

/** The OTLP provider (GatewayConfig) and a production-like root Telemetry. */
function telemetry(endpoint: string, flushInterval?: string): string[] {
  return [
    `apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus, namespace: istio-system}
spec:
  extensionProviders:
  - name: otel
    opentelemetry:
      endpoint: "${endpoint}"
      signals: [traces, metrics, logs]${flushInterval ? `\n  telemetry: {flushInterval: ${flushInterval}}` : ""}`,
    `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing: [{providers: [{name: otel}], randomSamplingPercentage: 1}]
  metrics: [{providers: [{name: otel}]}]
  accessLogging:
  - providers: [{name: otel}]
    filter: {expression: "response.code >= 400"}`,
  ];
}

export interface RouteTableShape {
  hosts: number;
  routesPerHost: number;
  /** Every 10th route matches its uri by regex (else by prefix). */
  regex: boolean;
  /** Every route carries an explicit retry policy. */
  retries?: boolean;
}

/**
 * `hosts` VirtualServices of `routesPerHost` routes each. Route k of host h
 * matches `/s{h}/r{k}/…` (every 3rd by exact uri, every 10th by regex when
 * `regex`, else by prefix); every 4th also matches an `x-tenant` header;
 * every 5th splits 90/10 across DestinationRule subsets v1/v2. The request
 * set hits early, middle and last routes of every host, header-matched
 * routes with their header, and weighted routes.
 */
export function routeTable(upstreamPort: number, shape: RouteTableShape): BenchConfig {
  const docs: string[] = [];
  const requests: RequestSpec[] = [];
  const n = shape.routesPerHost;
  const isRegex = (k: number) => shape.regex && k % 10 === 9;
  const pathFor = (h: number, k: number) => (isRegex(k) ? `/s${h}/r${k}/abc/42` : k % 3 === 0 ? `/s${h}/r${k}/item` : `/s${h}/r${k}/items/7`);
  for (let h = 0; h < shape.hosts; h++) {
    const host = `s${h}.bench.example.com`;
    const service = `s${h}.bench.internal`;
    const routes: string[] = [];
    for (let k = 0; k < n; k++) {
      const uri = isRegex(k) ? `{regex: "/s${h}/r${k}/[a-z]+/[0-9]+"}` : k % 3 === 0 ? `{exact: /s${h}/r${k}/item}` : `{prefix: /s${h}/r${k}/}`;
      const header = k % 4 === 1 ? `, headers: {x-tenant: {exact: t${k}}}` : "";
      const destination =
        k % 5 === 2
          ? `[{destination: {host: ${service}, subset: v1}, weight: 90}, {destination: {host: ${service}, subset: v2}, weight: 10}]`
          : `[{destination: {host: ${service}, subset: v1}}]`;
      const retries = shape.retries ? `\n    retries: {attempts: 2, perTryTimeout: 2s, retryOn: "5xx,reset,connect-failure"}` : "";
      routes.push(`  - name: r${k}\n    match: [{uri: ${uri}${header}}]\n    route: ${destination}${retries}`);
    }
    docs.push(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: s${h}, namespace: bench}
spec:
  hosts: [${host}]
  http:
${routes.join("\n")}`);
    docs.push(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: s${h}, namespace: bench}
spec:
  hosts: [${service}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: ${upstreamPort}}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: ${upstreamPort}}, labels: {version: v2}}`);
    docs.push(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: s${h}, namespace: bench}
spec:
  host: ${service}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}`);
    // A few routes per host, spread over the route list (first, middle, last, in between). A lone host (the
    // route lookup micro-benchmark, timed at 10, 1,000 and 10,000 routes) gets the same ten requests' shapes at
    // every size, so only the table's size differs: route i of ten at 10 routes, and at larger sizes the route
    // with the same position modulo 60 (exact, regex, header and weighted routes repeat every 3, 10, 4 and 5)
    // spread from the first to near the last.
    const picks = shape.hosts === 1 ? Array.from({ length: Math.min(n, 10) }, (_, i) => 60 * Math.floor((i * Math.max(0, n - 10)) / 9 / 60) + i) : [h % n, n - 1 - (h % 7), Math.floor(n / 2) - 1, 2];
    for (const k of picks.filter((k) => k >= 0 && k < n)) {
      const path = pathFor(h, k);
      requests.push(k % 4 === 1 ? { host, path, headers: { "x-tenant": `t${k}` } } : { host, path });
    }
  }
  return { yaml: docs.join("\n---\n") + "\n", requests };
}

/** One route, one upstream: the least any gateway config can be. */
export function minimal(upstreamPort: number): BenchConfig {
  const yaml = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: bench}
spec:
  hosts: [app.bench.example.com]
  http:
  - route: [{destination: {host: app.bench.internal}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: bench}
spec:
  hosts: [app.bench.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${upstreamPort}}}]
`;
  return { yaml, requests: [{ host: "app.bench.example.com", path: "/api/items/7" }] };
}
