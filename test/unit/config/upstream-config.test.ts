/**
 * Compiling retries, DestinationRule traffic policies and the GatewayConfig
 * upstream settings: Istio's defaults, precedence and validation messages.
 */
import { describe, expect, it } from "vitest";
import { buildConfig } from "../../../src/config/build.ts";
import type { Snapshot } from "../../../src/config/snapshot.ts";

const service = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: shop}
spec:
  hosts: [app.shop.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 9090, name: admin, protocol: HTTP}]
  endpoints:
  - {address: a.internal, labels: {version: v1}, locality: aws/us-east-1/us-east-1a}
  - {address: b.internal, labels: {version: v2}, locality: gcp/europe-west1/b}
`;

const route = (extra = "", port = ", port: {number: 80}") => `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: shop}
spec:
  hosts: [app.example.com]
  http:
  - route: [{destination: {host: app.shop.internal${port}}}]
${extra}
`;

async function build(...docs: string[]) {
  return buildConfig([{ path: "test.yaml", text: docs.join("\n---\n") }]);
}

async function snapshot(...docs: string[]): Promise<Snapshot> {
  const result = await build(...docs);
  if (!result.snapshot) throw new Error(result.problems.map((p) => `${p.field}: ${p.message}`).join("\n"));
  return result.snapshot;
}

const messages = async (...docs: string[]) => (await build(...docs)).problems.map((p) => `${p.severity} ${p.field}: ${p.message}`);

describe("VirtualService retries", () => {
  it("leaves rules without retries to the gateway default: Istio's 2 retries on connect-failure", async () => {
    const s = await snapshot(service, route());
    expect(s.rules[0]?.retry).toBeUndefined();
    expect(s.settings.defaultRetry).toEqual({
      attempts: 2,
      retryOn: ["connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"],
      backoffBaseMs: 25,
      backoffMaxMs: 250,
    });
  });

  it("translates attempts, retryOn with status codes, perTryTimeout, backoff and the locality/host options", async () => {
    const s = await snapshot(
      service,
      route(`    retries: {attempts: 3, retryOn: "gateway-error,409, 503 ,reset", perTryTimeout: 2s, backoff: 100ms, retryRemoteLocalities: true, retryIgnorePreviousHosts: false}`),
    );
    expect(s.rules[0]?.retry).toEqual({
      attempts: 3,
      retryOn: ["gateway-error", "reset", "retriable-status-codes"],
      statusCodes: [409, 503],
      perTryTimeoutMs: 2000,
      backoffBaseMs: 100,
      backoffMaxMs: 1000,
      retryRemoteLocalities: true,
      previousHosts: false,
    });
  });

  it("keeps Istio's default retryOn when only attempts is set, and disables retries with attempts: 0", async () => {
    expect((await snapshot(service, route("    retries: {attempts: 5}"))).rules[0]?.retry?.retryOn).toContain("connect-failure");
    expect((await snapshot(service, route("    retries: {attempts: 0}"))).rules[0]?.retry?.attempts).toBe(0);
  });

  it("rejects unknown retryOn values and a policy with attempts 0", async () => {
    expect(await messages(service, route('    retries: {attempts: 2, retryOn: "5xx,bogus,599"}'))).toEqual([
      expect.stringMatching(/^error spec\.http\[0\]\.retries\.retryOn: "bogus" is not a valid retryOn value/),
      expect.stringMatching(/^error spec\.http\[0\]\.retries\.retryOn: "599" is not a valid retryOn value/),
    ]);
    expect(await messages(service, route("    retries: {perTryTimeout: 1s}"))).toEqual([
      "error spec.http[0].retries.attempts: expected attempts > 0: a retry policy is configured but attempts is 0 (retries disabled)",
    ]);
  });

  it("warns about retryOn tokens a Worker can never observe", async () => {
    expect(await messages(service, route('    retries: {attempts: 2, retryOn: "refused-stream,5xx"}'))).toEqual([
      'warning spec.http[0].retries.retryOn: "refused-stream" never matches at the edge: HTTP/2 stream refusals do not surface through fetch()',
    ]);
  });

  it("uses GatewayConfig defaultHttpRetryPolicy for rules without retries", async () => {
    const s = await snapshot(
      service,
      route(),
      `
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: gw}
spec:
  defaultHttpRetryPolicy: {attempts: 1, retryOn: "5xx"}
`,
    );
    expect(s.settings.defaultRetry).toMatchObject({ attempts: 1, retryOn: ["5xx"] });
  });

  it("reads the isthmus.dev/retry-non-idempotent annotation", async () => {
    const vs = route().replace("metadata: {name: app, namespace: shop}", 'metadata: {name: app, namespace: shop, annotations: {isthmus.dev/retry-non-idempotent: "true"}}');
    expect((await snapshot(service, vs)).rules[0]?.retryNonIdempotent).toBe(true);
    const bad = route().replace("metadata: {name: app, namespace: shop}", 'metadata: {name: app, namespace: shop, annotations: {isthmus.dev/retry-non-idempotent: "yes"}}');
    expect(await messages(service, bad)).toEqual([expect.stringMatching(/retry-non-idempotent"\]: expected "true" or "false", got "yes"/)]);
  });
});

const rule = (policy: string) => `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app, namespace: shop}
spec:
  host: app.shop.internal
${policy}
`;

describe("DestinationRule traffic policy", () => {
  it("compiles nothing extra without a DestinationRule: least request, no outlier detection, Envoy's 50% panic threshold", async () => {
    const c = (await snapshot(service, route(undefined, ", port: {number: 80}"))).clusters["outbound|80||app.shop.internal"];
    expect(c).toMatchObject({ loadBalancer: "LEAST_REQUEST", panicThreshold: 50 });
    expect(c?.outlierDetection).toBeUndefined();
    expect(c?.locality).toBeUndefined();
  });

  it("applies Envoy's outlier defaults, disables panic (minHealthPercent 0) and turns on locality failover", async () => {
    const c = (await snapshot(service, route(undefined, ", port: {number: 80}"), rule("  trafficPolicy:\n    outlierDetection: {}"))).clusters["outbound|80||app.shop.internal"];
    expect(c?.outlierDetection).toEqual({
      consecutive5xxErrors: 5,
      consecutiveGatewayErrors: 0,
      splitExternalLocalOriginErrors: false,
      consecutiveLocalOriginFailures: 5,
      intervalMs: 10_000,
      baseEjectionTimeMs: 30_000,
      maxEjectionTimeMs: 300_000,
      maxEjectionPercent: 10,
    });
    expect(c?.panicThreshold).toBe(0);
    expect(c?.locality).toEqual({ failover: true });
  });

  it("lets a subset override the top level per part, and a port-level entry replace them all", async () => {
    const s = await snapshot(
      service,
      `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: shop}
spec:
  hosts: [app.example.com]
  http:
  - match: [{uri: {prefix: /v1}}]
    route: [{destination: {host: app.shop.internal, subset: v1, port: {number: 80}}}]
  - match: [{uri: {prefix: /admin}}]
    route: [{destination: {host: app.shop.internal, subset: v1, port: {number: 9090}}}]
`,
      rule(`  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {http: {http2MaxRequests: 100, maxRetries: 3}}
    outlierDetection: {consecutive5xxErrors: 7}
    retryBudget: {percent: 10}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {consistentHash: {httpHeaderName: X-User, maglev: {tableSize: 65537}}}
      portLevelSettings:
      - port: {number: 9090}
        connectionPool: {http: {http1MaxPendingRequests: 5}}`),
    );
    const v1 = s.clusters["outbound|80|v1|app.shop.internal"];
    expect(v1).toMatchObject({
      connectionPool: { maxRequests: 100, maxRetries: 3 },
      consistentHash: { key: { type: "header", name: "x-user" }, algorithm: "MAGLEV", size: 65537 },
      retryBudget: { percent: 10, minRetryConcurrency: 3 },
    });
    expect(v1?.outlierDetection?.consecutive5xxErrors).toBe(7);
    const admin = s.clusters["outbound|9090|v1|app.shop.internal"];
    expect(admin?.connectionPool).toEqual({ maxPendingRequests: 5 });
    expect(admin?.outlierDetection).toBeUndefined();
    expect(admin?.consistentHash).toBeUndefined();
    expect(admin?.loadBalancer).toBe("LEAST_REQUEST");
  });

  it("compiles cookie hashing with Envoy's Set-Cookie fields and ring hash by default", async () => {
    const c = (
      await snapshot(
        service,
        route(undefined, ", port: {number: 80}"),
        rule(`  trafficPolicy:
    loadBalancer: {consistentHash: {httpCookie: {name: session, path: /, ttl: 3600s, attributes: [{name: SameSite, value: Lax}, {name: Secure}]}}}`),
      )
    ).clusters["outbound|80||app.shop.internal"];
    expect(c?.consistentHash).toEqual({
      key: { type: "cookie", name: "session", path: "/", ttlSeconds: 3600, attributes: [["SameSite", "Lax"], ["Secure"]] },
      algorithm: "RING_HASH",
      size: 1024,
    });
  });

  it("validates Maglev table sizes, distribute weights and failover rules", async () => {
    const problems = await messages(
      service,
      route(),
      rule(`  trafficPolicy:
    loadBalancer:
      consistentHash: {useSourceIp: true, maglev: {tableSize: 1000}}
  subsets:
  - name: v1
    trafficPolicy:
      loadBalancer:
        localityLbSetting:
          distribute: [{from: "aws/*", to: {"aws/*": 60, "gcp/*": 30}}]
  - name: v2
    trafficPolicy:
      loadBalancer:
        localityLbSetting:
          failover: [{from: aws, to: aws}, {from: aws/us-east-1, to: gcp}]`),
    );
    expect(problems).toEqual([
      "error spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: expected a prime number (Envoy's Maglev table size), got 1000",
      "error spec.subsets[0].trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: expected weights that add up to 100, got 90",
      "warning spec.subsets[1].trafficPolicy.loadBalancer.localityLbSetting: failover needs outlierDetection (as in Istio): without it no endpoint is ever ejected and traffic never fails over",
      "error spec.subsets[1].trafficPolicy.loadBalancer.localityLbSetting.failover[0]: expected different regions in from and to",
      "error spec.subsets[1].trafficPolicy.loadBalancer.localityLbSetting.failover[1]: expected regions only (no zone or subzone) in failover",
    ]);
  });

  it("warns that http1MaxPendingRequests does nothing without http2MaxRequests (Istio's circuit-breaking task DestinationRule)", async () => {
    const problems = await messages(
      service,
      route(),
      rule(`  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
  subsets:
  - name: v1
    trafficPolicy:
      connectionPool: {http: {http1MaxPendingRequests: 2}}`),
    );
    expect(problems.filter((p) => p.includes("http1MaxPendingRequests"))).toEqual([
      "warning spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests: has no effect without connectionPool.http.http2MaxRequests: at the edge requests wait only for a free http2MaxRequests slot, as a Worker has no connection pool (tcp.maxConnections is ignored); set http2MaxRequests to the number of requests allowed in flight (1, to match Envoy's one request per HTTP/1.1 connection)",
      "warning spec.subsets[0].trafficPolicy.connectionPool.http.http1MaxPendingRequests: has no effect without connectionPool.http.http2MaxRequests: at the edge requests wait only for a free http2MaxRequests slot, as a Worker has no connection pool; set http2MaxRequests to the number of requests allowed in flight",
    ]);
  });

  it("no longer warns that these fields are not enforced", async () => {
    const problems = await messages(
      service,
      route(),
      rule(`  trafficPolicy:
    loadBalancer: {consistentHash: {httpQueryParameterName: user}}
    connectionPool: {http: {http2MaxRequests: 10, http1MaxPendingRequests: 2, maxRetries: 1}}
    outlierDetection: {consecutiveGatewayErrors: 3}
    retryBudget: {percent: 20, minRetryConcurrency: 1}`),
    );
    expect(problems).toEqual([]);
  });
});

describe("tls MUTUAL", () => {
  const mutual = (credential: string) => rule(`  trafficPolicy:\n    tls: {mode: MUTUAL, credentialName: ${credential}}`);

  it("binds the mtls_certificates binding named by the credentialName, or by a GatewayConfig credentials entry", async () => {
    expect((await snapshot(service, route(undefined, ", port: {number: 80}"), mutual("ORIGIN_CERT"))).clusters["outbound|80||app.shop.internal"]).toMatchObject({
      scheme: "https",
      mtlsBinding: "ORIGIN_CERT",
    });
    const mapped = await snapshot(
      service,
      route(undefined, ", port: {number: 80}"),
      mutual("origin-client-cert"),
      `
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: gw}
spec:
  credentials: [{credentialName: origin-client-cert, binding: ORIGIN_CERT}]
`,
    );
    expect(mapped.clusters["outbound|80||app.shop.internal"]?.mtlsBinding).toBe("ORIGIN_CERT");
  });

  it("rejects MUTUAL without a usable credentialName, and ISTIO_MUTUAL", async () => {
    expect(await messages(service, route(), mutual("origin-client-cert"))).toEqual([
      'error spec.trafficPolicy.tls.credentialName: expected a GatewayConfig credentials entry for "origin-client-cert" (binding names are letters, digits and _)',
    ]);
    expect(await messages(service, route(), rule("  trafficPolicy:\n    tls: {mode: MUTUAL}"))).toEqual([
      expect.stringMatching(/^error spec\.trafficPolicy\.tls\.credentialName: MUTUAL needs credentialName/),
    ]);
    expect(await messages(service, route(), rule("  trafficPolicy:\n    tls: {mode: ISTIO_MUTUAL}"))).toEqual([expect.stringMatching(/^error spec\.trafficPolicy\.tls\.mode: ISTIO_MUTUAL uses mesh certificates/)]);
  });

  it("refuses a credentialName naming one of the gateway's own bindings (CONFIG_STORE would serve the config store to clients), directly or through credentials", async () => {
    for (const name of ["CONFIG_STORE", "CONFIG", "RATE_LIMITER", "ADMIN_TOKEN"]) {
      expect(await messages(service, route(), mutual(name))).toEqual([expect.stringMatching(new RegExp(`^error spec\\.trafficPolicy\\.tls\\.credentialName: "${name}" names one of the gateway's own bindings`))]);
    }
    const viaCredentials = `
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: gw}
spec:
  credentials: [{credentialName: innocent, binding: CONFIG_STORE}]
`;
    expect(await messages(service, route(), mutual("innocent"), viaCredentials)).toEqual([expect.stringMatching(/^error spec\.trafficPolicy\.tls\.credentialName: "innocent" names one of the gateway's own bindings/)]);
  });
});

describe("GatewayConfig locality and health checks", () => {
  const config = (spec: string) => `
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: gw, namespace: shop}
spec:
${spec}
`;

  it("compiles locality rules in upper case and checks them", async () => {
    const s = await snapshot(service, route(), config("  locality:\n    rules: [{match: {colos: [fra], regions: [de-he]}, locality: gcp/europe-west3}]\n    default: aws/us-east-1"));
    expect(s.settings.locality).toEqual({ rules: [{ colos: ["FRA"], regions: ["DE-HE"], locality: "gcp/europe-west3" }], default: "aws/us-east-1" });
    expect(await messages(service, route(), config("  locality:\n    rules: [{match: {regions: [TX]}, locality: a//b/c}, {match: {}, locality: aws}]"))).toEqual([
      'error spec.locality.rules[0].locality: expected a locality region[/zone[/subzone]] such as aws/us-east-1/us-east-1a, got "a//b/c"',
      'error spec.locality.rules[0].match.regions[0]: expected an ISO 3166-2 code <country>-<region> such as US-TX, got "TX"',
      "error spec.locality.rules[1].match: expected at least one of colos, countries, continents or regions",
    ]);
  });

  it("compiles a health check into probe targets and links the service's clusters to it", async () => {
    const s = await snapshot(
      service,
      route(undefined, ", port: {number: 80}"),
      config("  healthChecks: [{host: app.shop.internal, port: 80, path: /healthz, interval: 5s, timeout: 1s, expectedCodes: ['2xx', '304'], unhealthyThreshold: 3, headers: {x-probe: isthmus}}]"),
    );
    expect(s.settings.healthChecks).toEqual([
      {
        source: "GatewayConfig/shop/gw",
        service: "app.shop.internal",
        port: 80,
        path: "/healthz",
        intervalMs: 5000,
        timeoutMs: 1000,
        expectedCodes: [
          [200, 299],
          [304, 304],
        ],
        healthyThreshold: 2,
        unhealthyThreshold: 3,
        headers: [["x-probe", "isthmus"]],
        targets: [
          { address: "a.internal", port: 80, scheme: "http" },
          { address: "b.internal", port: 80, scheme: "http" },
        ],
      },
    ]);
    expect(s.clusters["outbound|80||app.shop.internal"]?.healthCheck).toBe(0);
  });

  it("checks health check hosts, ports, codes and headers", async () => {
    expect(
      await messages(
        service,
        route(),
        config("  healthChecks:\n  - {host: nope.internal}\n  - {host: app.shop.internal}\n  - {host: app.shop.internal, port: 80, expectedCodes: [abc], headers: {host: x}, timeout: 20s}"),
      ),
    ).toEqual([
      'error spec.healthChecks[0].host: expected a host declared by a ServiceEntry, got "nope.internal"',
      "error spec.healthChecks[1].host: app.shop.internal has 2 ports (80, 9090); expected destination.port.number to pick one",
      "error spec.healthChecks[2].timeout: expected a timeout between 1ms and the interval (10000ms)",
      'error spec.healthChecks[2].expectedCodes[0]: expected a status (200), a class (2xx) or a range (200-299), got "abc"',
      "error spec.healthChecks[2].headers.host: expected a header name other than host (a Worker sends the endpoint address as Host)",
    ]);
  });

  it("rejects a malformed endpoint locality", async () => {
    expect(await messages(service.replace("locality: gcp/europe-west1/b", "locality: gcp/europe-west1/b/extra"), route())).toEqual([
      'error spec.endpoints[1].locality: expected a locality region[/zone[/subzone]] such as aws/us-east-1/us-east-1a, got "gcp/europe-west1/b/extra"',
    ]);
  });
});
