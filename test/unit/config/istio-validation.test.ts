/**
 * Istio's webhook validation (pkg/config/validation) that the schemas now
 * apply: durations (ValidateDuration), VirtualService CORS, fault, hosts and
 * routes, Gateway servers (validateServer, validateServerPort, port names,
 * ValidateNamespaceSlashWildcardHostname) and subset names. Each case here was
 * accepted before and is refused by Istio.
 */
import { describe, expect, it } from "vitest";
import { durationNs } from "../../../src/config/schema/common.ts";
import { gatewayHostProblem, hostsOverlap } from "../../../src/config/schema/networking.ts";
import { build, doc, errors, serviceEntry, virtualService } from "../support.ts";

const se = serviceEntry("a", ["a.example.com"], { location: "MESH_INTERNAL" });
const dest = { destination: { host: "a.example.com" } };
/** Error lines without the file/line/resource prefix. */
const problems = async (...docs: Parameters<typeof build>) => errors(await build(...docs)).map((e) => e.replace(/^config\.yaml:\d+: error: [A-Za-z]+\/[^/]+\/[^:]+: /, ""));
const rule = (extra: Record<string, unknown>) => problems(se, virtualService("v", ["app.example.com"], [{ route: [dest], ...extra }]));
const server = (extra: Record<string, unknown> = {}, port: Record<string, unknown> = {}) => ({
  port: { number: 80, name: "http", protocol: "HTTP", ...port },
  hosts: ["*"],
  ...extra,
});
const gateway = (spec: unknown) => problems(doc("Gateway", "gw", spec, "edge"));
const rule0 = "spec.http[0]";

describe("durations (Istio's ValidateDuration: at least 1ms, whole milliseconds)", () => {
  it("reads durations exactly, in nanoseconds", () => {
    expect(durationNs("1.1s")).toBe(1_100_000_000n);
    expect(durationNs("1.5ms5us")).toBe(1_505_000n);
    expect(durationNs("0.5ns")).toBe(0n);
    expect(durationNs("1h1m1s")).toBe(3_661_000_000_000n);
  });

  it("refuses a perTryTimeout, a fault delay or an exponential delay under 1ms or finer than a millisecond", async () => {
    expect(await rule({ retries: { attempts: 2, perTryTimeout: "0.5ns" } })).toEqual([`${rule0}.retries.perTryTimeout: expected a duration of at least 1ms, got 0.5ns`]);
    expect(await rule({ retries: { attempts: 2, perTryTimeout: "1.5ms5us" } })).toEqual([
      `${rule0}.retries.perTryTimeout: expected whole milliseconds (Istio supports durations only to ms precision), got 1.5ms5us`,
    ]);
    expect(await rule({ fault: { delay: { fixedDelay: "0.2ms", percentage: { value: 100 } } } })).toEqual([`${rule0}.fault.delay.fixedDelay: expected a duration of at least 1ms, got 0.2ms`]);
    expect(await rule({ fault: { delay: { exponentialDelay: "1.0001s" } } })).toEqual([
      `${rule0}.fault.delay.exponentialDelay: expected whole milliseconds (Istio supports durations only to ms precision), got 1.0001s`,
    ]);
    // Whole milliseconds written any way are fine.
    expect(await rule({ timeout: "1.5s", retries: { attempts: 2, perTryTimeout: "0.25s" }, fault: { delay: { fixedDelay: "1ms", percentage: { value: 1 } } } })).toEqual([]);
  });

  it("refuses a CORS maxAge that is not whole seconds (max_age is accurate only to seconds)", async () => {
    const cors = (maxAge: string) => rule({ corsPolicy: { allowOrigins: [{ exact: "https://a.example.com" }], maxAge } });
    for (const maxAge of ["1500ms", "0s", "999ms"]) {
      expect(await cors(maxAge)).toEqual([`${rule0}.corsPolicy.maxAge: expected whole seconds of at least 1s, such as 60s or 24h (accurate only to seconds), got ${maxAge}`]);
    }
    expect(await cors("24h")).toEqual([]);
  });

  it("refuses DestinationRule outlier, connection pool and warmup durations Istio validates, and lets idle timeouts be 0s (disabled)", async () => {
    const dr = (trafficPolicy: unknown) => problems(se, doc("DestinationRule", "d", { host: "a.example.com", trafficPolicy }));
    expect(await dr({ outlierDetection: { interval: "1.5ms5us", baseEjectionTime: "0s" } })).toEqual([
      "spec.trafficPolicy.outlierDetection.interval: expected whole milliseconds (Istio supports durations only to ms precision), got 1.5ms5us",
      "spec.trafficPolicy.outlierDetection.baseEjectionTime: expected a duration of at least 1ms, got 0s",
    ]);
    expect(await dr({ connectionPool: { tcp: { connectTimeout: "0.1ms", maxConnectionDuration: "0s", tcpKeepalive: { time: "0s", interval: "1.5ms" } } } })).toEqual([
      "spec.trafficPolicy.connectionPool.tcp.connectTimeout: expected a duration of at least 1ms, got 0.1ms",
      "spec.trafficPolicy.connectionPool.tcp.maxConnectionDuration: expected a duration of at least 1ms, got 0s",
      "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.time: expected a duration of at least 1ms, got 0s",
      "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.interval: expected whole milliseconds (Istio supports durations only to ms precision), got 1.5ms",
    ]);
    expect(await dr({ loadBalancer: { simple: "ROUND_ROBIN", warmupDurationSecs: "0.5ms" } })).toEqual([
      "spec.trafficPolicy.loadBalancer.warmupDurationSecs: expected a duration of at least 1ms, got 0.5ms",
    ]);
    expect(await dr({ connectionPool: { tcp: { idleTimeout: "0s" }, http: { idleTimeout: "0s" } } })).toEqual([]);
    expect(await dr({ connectionPool: { http: { idleTimeout: "0.5ms" } } })).toEqual([
      "spec.trafficPolicy.connectionPool.http.idleTimeout: expected 0s (disabled) or a duration of at least 1ms, got 0.5ms",
    ]);
  });

  it("leaves Isthmus's own durations and a session cookie's ttl: 0s alone", async () => {
    expect(await problems(se, doc("DestinationRule", "d", { host: "a.example.com", trafficPolicy: { loadBalancer: { consistentHash: { httpCookie: { name: "s", ttl: "0s" } } } } }))).toEqual([]);
  });
});

describe("VirtualService", () => {
  it("refuses CORS methods outside Istio's supported list (case-sensitive), which has *", async () => {
    expect(await rule({ corsPolicy: { allowOrigins: [{ exact: "https://a.example.com" }], allowMethods: ["GET", "get", "FETCH", "*"] } })).toEqual([
      `${rule0}.corsPolicy.allowMethods[1]: expected one of GET, HEAD, POST, PUT, PATCH, DELETE, CONNECT, OPTIONS, TRACE, *, got "get"`,
      `${rule0}.corsPolicy.allowMethods[2]: expected one of GET, HEAD, POST, PUT, PATCH, DELETE, CONNECT, OPTIONS, TRACE, *, got "FETCH"`,
    ]);
  });

  it("refuses an empty CORS origin match", async () => {
    expect(await rule({ corsPolicy: { allowOrigins: [{ exact: "" }, { prefix: "" }, {}, { regex: ".*" }] } })).toEqual([
      `${rule0}.corsPolicy.allowOrigins[0]: expected a non-empty exact, prefix or regex origin`,
      `${rule0}.corsPolicy.allowOrigins[1]: expected a non-empty exact, prefix or regex origin`,
      `${rule0}.corsPolicy.allowOrigins[2]: expected a non-empty exact, prefix or regex origin`,
    ]);
  });

  it("refuses a fault with neither abort nor delay", async () => {
    expect(await rule({ fault: {} })).toEqual([`${rule0}.fault: expected an abort and/or a delay`]);
  });

  it("refuses hosts of one VirtualService that overlap (Istio's host.Name.Matches on every pair)", async () => {
    const hosts = (list: string[]) => problems(virtualService("v", list, [{ directResponse: { status: 200 } }]));
    expect(await hosts(["a.app.local", "*.app.local"])).toEqual(['spec.hosts[1]: duplicate host: "*.app.local" overlaps "a.app.local" (hosts[0]); list each host once']);
    expect(await hosts(["a.example.com", "b.example.com", "A.example.com"])).toEqual(['spec.hosts[2]: duplicate host: "A.example.com" overlaps "a.example.com" (hosts[0]); list each host once']);
    expect(await hosts(["*.example.com", "*.api.example.com"])).toEqual(['spec.hosts[1]: duplicate host: "*.api.example.com" overlaps "*.example.com" (hosts[0]); list each host once']);
    expect(await hosts(["a.example.com", "b.example.com", "*.example.org"])).toEqual([]);
    expect(hostsOverlap("*", "anything.example.com")).toBe(true);
    expect(hostsOverlap("*.a.com", "a.com")).toBe(false);
  });

  it("refuses a subset name that is not a DNS-1123 label, in a destination and in a DestinationRule", async () => {
    expect(await rule({ route: [{ destination: { host: "a.example.com", subset: "V1_beta" } }] })).toEqual([
      `${rule0}.route[0].destination.subset: expected a subset name of letters, digits and '-' (a DNS-1123 label, at most 63 characters), got "V1_beta"`,
    ]);
    // Istio's labels.IsDNS1123Label takes upper case.
    expect(await problems(se, doc("DestinationRule", "d", { host: "a.example.com", subsets: [{ name: "v1" }, { name: "v2.0" }, { name: "V3" }] }))).toEqual([
      `spec.subsets[1].name: expected a subset name of letters, digits and '-' (a DNS-1123 label, at most 63 characters), got "v2.0"`,
    ]);
  });
});

describe("Gateway servers", () => {
  it("needs at least one server", async () => {
    expect(await gateway({})).toEqual(["spec: expected at least one server"]);
    expect(await gateway({ servers: [] })).toEqual(["spec.servers: expected at least one server"]);
  });

  it("needs a port name, unique across servers", async () => {
    expect(await gateway({ servers: [server({}, { name: undefined })] })).toEqual([
      "spec.servers[0].port.name: required field is missing (every Gateway server port needs a name, such as http or https)",
    ]);
    expect(await gateway({ servers: [server(), server({ hosts: ["a.example.com"] }, { number: 8080 })] })).toEqual([
      'spec.servers[1].port.name: duplicate port name "http" (also servers[0]); port names must be unique across servers',
    ]);
  });

  it("refuses a protocol Istio does not know, and targetPort", async () => {
    expect(await gateway({ servers: [server({}, { protocol: "HTTPX" })] })).toEqual([
      'spec.servers[0].port.protocol: expected one of HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, HTTP_PROXY, TCP, TLS, UDP, MONGO, REDIS, MYSQL, got "HTTPX"',
    ]);
    expect(await gateway({ servers: [server({}, { protocol: "http2" })] })).toEqual([]);
    expect(await gateway({ servers: [server({}, { targetPort: 8080 })] })).toEqual(["spec.servers[0].port.targetPort: not allowed: targetPort has no effect on a Gateway"]);
  });

  it("needs TLS settings on HTTPS and TLS servers, and allows only httpsRedirect on a plain HTTP one", async () => {
    expect(await gateway({ servers: [server({}, { number: 443, name: "https", protocol: "HTTPS" })] })).toEqual([
      "spec.servers[0].tls: required field is missing (a HTTPS server needs TLS settings, such as {mode: SIMPLE, credentialName: ...})",
    ]);
    expect(await gateway({ servers: [server({ tls: { mode: "SIMPLE", credentialName: "cert" } })] })).toEqual([
      "spec.servers[0].tls: not allowed on a plain-text HTTP server: only httpsRedirect may be set (terminate TLS on an HTTPS server)",
    ]);
    expect(await gateway({ servers: [server({ tls: { httpsRedirect: true, serverCertificate: "/etc/cert.pem" } })] })).toEqual([
      "spec.servers[0].tls: not allowed on a plain-text HTTP server: only httpsRedirect may be set (terminate TLS on an HTTPS server)",
    ]);
    expect(await gateway({ servers: [server({ tls: { httpsRedirect: true } }, { protocol: "TCP", name: "tcp" })] })).toEqual([
      "spec.servers[0].tls: not allowed on a TCP server: TLS settings need an HTTPS or TLS port",
    ]);
    expect(await gateway({ servers: [server({ tls: { httpsRedirect: true } }), server({ tls: { mode: "SIMPLE", credentialName: "cert" } }, { number: 443, name: "https", protocol: "HTTPS" })] })).toEqual([]);
  });

  it("refuses server hosts Istio's ValidateNamespaceSlashWildcardHostname refuses", async () => {
    expect(await gateway({ servers: [server({ hosts: ["bad host!", "*.*.foo", "ns/a/b", "n_s/a.example.com", "api", "foo*.example.com", "a.example.123"] })] })).toEqual([
      'spec.servers[0].hosts[0]: expected "host" or "namespace/host" with a fully qualified host such as app.example.com or *.example.com, got "bad host!" ("bad host!" has an invalid label "bad host!")',
      'spec.servers[0].hosts[1]: expected "host" or "namespace/host" with a fully qualified host such as app.example.com or *.example.com, got "*.*.foo" ("*.*.foo" has an invalid label "*")',
      'spec.servers[0].hosts[2]: expected "host" or "namespace/host" with a fully qualified host such as app.example.com or *.example.com, got "ns/a/b" ("a/b" has an invalid label "a/b")',
      'spec.servers[0].hosts[3]: expected "host" or "namespace/host" with a fully qualified host such as app.example.com or *.example.com, got "n_s/a.example.com" (namespace "n_s" is not "*", "." or a DNS-1123 label)',
      'spec.servers[0].hosts[4]: expected "host" or "namespace/host" with a fully qualified host such as app.example.com or *.example.com, got "api" (short names are not allowed)',
      'spec.servers[0].hosts[5]: expected "host" or "namespace/host" with a fully qualified host such as app.example.com or *.example.com, got "foo*.example.com" ("foo*.example.com" has an invalid label "foo*")',
      'spec.servers[0].hosts[6]: expected "host" or "namespace/host" with a fully qualified host such as app.example.com or *.example.com, got "a.example.123" ("a.example.123" has an all-numeric top-level domain)',
    ]);
    for (const host of ["*", "a.example.com", "*.example.com", "prod/*.example.com", "./a.example.com", "*/a.example.com", "*/*", "10.0.0.1", "::1", "istio.io.", "api.*", "prod/api.v1.*", "App.Example.com", "Prod/*.example.com"]) {
      expect(gatewayHostProblem(host), host).toBeUndefined();
    }
  });
});

describe("metadata (Kubernetes object names)", () => {
  const named = (name: string, namespace: string) => problems(doc("VirtualService", name, { hosts: ["a.example.com"], http: [{ directResponse: { status: 200 } }] }, namespace));

  it("refuses a name that is not a DNS-1123 subdomain and a namespace that is not a DNS-1123 label", async () => {
    expect(await named("Reviews", "prod")).toEqual([
      `metadata.name: expected a name of lowercase letters, digits, '-' and '.' (a DNS-1123 subdomain, starting and ending with a letter or digit), got "Reviews"`,
    ]);
    expect(await named("reviews", "my_ns")).toEqual([
      `metadata.namespace: expected a namespace of lowercase letters, digits and '-' (a DNS-1123 label, at most 63 characters), got "my_ns"`,
    ]);
    expect(await named("reviews.v1", "prod")).toEqual([]);
  });

  it("refuses a '/' in a name or namespace, which made two resources look like one", async () => {
    // VirtualService/x/a/b: name "a/b" in namespace x, or name "b" in namespace "x/a".
    const result = await build(
      doc("VirtualService", "a/b", { hosts: ["a.example.com"], http: [{ directResponse: { status: 200 } }] }, "x"),
      doc("VirtualService", "b", { hosts: ["b.example.com"], http: [{ directResponse: { status: 200 } }] }, "x/a"),
    );
    expect(errors(result).map((e) => e.replace(/^config\.yaml:\d+: error: /, ""))).toEqual([
      `VirtualService/x/a/b: metadata.name: expected a name of lowercase letters, digits, '-' and '.' (a DNS-1123 subdomain, starting and ending with a letter or digit), got "a/b"`,
      `VirtualService/x/a/b: metadata.namespace: expected a namespace of lowercase letters, digits and '-' (a DNS-1123 label, at most 63 characters), got "x/a"`,
    ]);
  });
});
