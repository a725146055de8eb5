/**
 * The configurations the benchmark runs Isthmus with, and the requests sent
 * to each. `realistic` is the one place that builds the realistic config:
 * as a feature lands (JWT, authorization, rate limits, retries, OTLP),
 * add its resources here, flip its entry in REALISTIC_FEATURES to
 * "included", and the next `npm run bench` measures it.
 */

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

/** What the realistic config asks for, and what of it exists in Isthmus today. */
export const REALISTIC_FEATURES: Feature[] = [
  { feature: "1,000 routes over 50 hosts (exact, prefix and regex uri matches)", included: true, note: "50 VirtualServices × 20 http routes" },
  { feature: "header routing", included: true, note: "every 4th route also matches a request header" },
  { feature: "weighted routing", included: true, note: "every 5th route splits 90/10 across DestinationRule subsets v1/v2" },
  { feature: "RS256 JWT against a local JWKS (RequestAuthentication)", included: false, note: "not built yet" },
  { feature: "20 AuthorizationPolicies", included: false, note: "not built yet" },
  { feature: "a retry policy", included: false, note: "not built yet (retries are accepted with a warning and not enforced, so they are left out)" },
  { feature: "a global rate limit with a high ceiling (RateLimitPolicy)", included: false, note: "not built yet" },
  { feature: "OTLP export to a local receiver (Telemetry)", included: false, note: "not built yet; 'telemetry off' therefore runs the identical config (an A/A control)" },
];

const HOSTS = 50;
const ROUTES_PER_HOST = 20;

/**
 * 1,000 routes over 50 hosts in front of one upstream port (see routeTable).
 *
 * @param telemetry reserved for the Telemetry resource once OTLP export exists
 */
export function realistic(upstreamPort: number, options: { telemetry: boolean } = { telemetry: true }): BenchConfig {
  void options.telemetry; // No Telemetry kind is enforced yet: both variants are identical (see REALISTIC_FEATURES).
  return routeTable(upstreamPort, { hosts: HOSTS, routesPerHost: ROUTES_PER_HOST, regex: true });
}

export interface RouteTableShape {
  hosts: number;
  routesPerHost: number;
  /** Every 10th route matches its uri by regex (else by prefix). */
  regex: boolean;
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
      routes.push(`  - name: r${k}\n    match: [{uri: ${uri}${header}}]\n    route: ${destination}`);
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
    // A few routes per host, spread over the route list (first, middle, last, in between).
    const picks = shape.hosts === 1 ? Array.from({ length: Math.min(n, 200) }, (_, i) => Math.floor((i * n) / Math.min(n, 200))) : [h % n, n - 1 - (h % 7), Math.floor(n / 2) - 1, 2];
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
