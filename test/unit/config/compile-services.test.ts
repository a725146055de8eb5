/**
 * ServiceEntry + DestinationRule → clusters: host resolution, subsets,
 * ports, endpoints, DestinationRule merging and traffic policy layering.
 */
import { describe, expect, it } from "vitest";
import { effectivePolicy } from "../../../src/config/compile/services.ts";
import type { TrafficPolicy } from "../../../src/config/schema/networking.ts";
import type { RuleDef } from "../../../src/config/snapshot.ts";
import { build, doc, errors, serviceEntry, snapshotOf, virtualService, warnings, type Doc } from "../support.ts";

const destinationsOf = (rule: RuleDef | undefined) => (rule?.action.type === "route" ? rule.action.destinations : []);

describe("destination hosts", () => {
  it("must be declared by a ServiceEntry", async () => {
    const text = [
      "apiVersion: networking.istio.io/v1",
      "kind: VirtualService",
      "metadata: {name: v, namespace: prod}",
      "spec:",
      "  hosts: [app.example.com]",
      "  http:",
      "  - route:",
      "    - destination:",
      "        host: nowhere.example.com",
      "",
    ].join("\n");
    const result = await build(text);
    expect(errors(result)).toEqual([
      'config.yaml:9: error: VirtualService/prod/v: spec.http[0].route[0].destination.host: expected a host declared by a ServiceEntry, got "nowhere.example.com" (the edge only reaches origins listed as ServiceEntry endpoints)',
    ]);
    expect(result.snapshot).toBeUndefined();
  });

  it("expands short names to <name>.<namespace>.svc.cluster.local in the VirtualService's namespace", async () => {
    const se = serviceEntry("reviews", ["reviews.prod.svc.cluster.local"], {}, "prod");
    const snapshot = await snapshotOf(se, virtualService("v", ["app.example.com"], [{ route: [{ destination: { host: "reviews" } }] }], {}, "prod"));
    expect(destinationsOf(snapshot.rules[0])).toEqual([{ host: "reviews.prod.svc.cluster.local", port: 80, cluster: "outbound|80||reviews.prod.svc.cluster.local", weight: 100 }]);

    const elsewhere = await build(se, virtualService("v", ["app.example.com"], [{ route: [{ destination: { host: "reviews" } }] }], {}, "staging"));
    expect(errors(elsewhere)).toEqual([expect.stringMatching(/destination\.host: expected a host declared by a ServiceEntry, got "reviews"/)]);
  });

  it("resolves a ServiceEntry short name in the ServiceEntry's own namespace", async () => {
    const snapshot = await snapshotOf(
      serviceEntry("ratings", ["ratings"], {}, "prod"),
      virtualService("v", ["app.example.com"], [{ route: [{ destination: { host: "ratings.prod.svc.cluster.local" } }] }], {}, "web"),
    );
    expect(Object.keys(snapshot.clusters)).toEqual(["outbound|80||ratings.prod.svc.cluster.local"]);
  });

  it("matches hosts case-insensitively", async () => {
    const snapshot = await snapshotOf(serviceEntry("a", ["API.Example.com"]), virtualService("v", ["app.example.com"], [{ route: [{ destination: { host: "api.EXAMPLE.com" } }] }]));
    expect(destinationsOf(snapshot.rules[0])[0]?.cluster).toBe("outbound|80||api.example.com");
  });

  it("resolves through a wildcard ServiceEntry, the most specific one winning, and connects to the concrete host", async () => {
    const snapshot = await snapshotOf(
      serviceEntry("wide", ["*.example.com"], { resolution: "NONE" }),
      serviceEntry("narrow", ["*.api.example.com"], { resolution: "NONE", ports: [{ number: 8080, name: "http" }] }),
      virtualService("v", ["app.example.com"], [
        { match: [{ uri: { prefix: "/a" } }], route: [{ destination: { host: "files.example.com" } }] },
        { route: [{ destination: { host: "v1.api.example.com" } }] },
      ]),
    );
    expect(destinationsOf(snapshot.rules[0])).toEqual([{ host: "files.example.com", port: 80, cluster: "outbound|80||files.example.com", weight: 100 }]);
    expect(destinationsOf(snapshot.rules[1])).toEqual([{ host: "v1.api.example.com", port: 8080, cluster: "outbound|8080||v1.api.example.com", weight: 100 }]);
    expect(snapshot.clusters["outbound|80||files.example.com"]).toMatchObject({
      service: "*.example.com",
      source: "ServiceEntry/default/wide",
      endpoints: [{ address: "files.example.com", port: 80, labels: {}, weight: 1 }],
    });
    expect(snapshot.clusters["outbound|80||files.example.com"]?.dynamicAddress).toBeUndefined();
  });

  it("rejects a host declared by two ServiceEntries, naming the first", async () => {
    const result = await build(serviceEntry("one", ["api.example.com"]), serviceEntry("two", ["other.example.com", "API.example.com"]));
    expect(errors(result)).toEqual([
      expect.stringMatching(/^config\.yaml:\d+: error: ServiceEntry\/default\/two: spec\.hosts\[1\]: host api\.example\.com is already defined by ServiceEntry\/default\/one \(config\.yaml:1\)$/),
    ]);
  });
});

describe("destination ports", () => {
  const twoPorts = serviceEntry("multi", ["multi.example.com"], {
    ports: [
      { number: 80, name: "http", protocol: "HTTP" },
      { number: 443, name: "https", protocol: "HTTPS" },
    ],
  });

  it("implies the only port of a service", async () => {
    const snapshot = await snapshotOf(serviceEntry("a", ["a.example.com"], { ports: [{ number: 9080, name: "http" }] }), virtualService("v", ["app.example.com"], [{ route: [{ destination: { host: "a.example.com" } }] }]));
    expect(destinationsOf(snapshot.rules[0])[0]).toMatchObject({ port: 9080, cluster: "outbound|9080||a.example.com" });
  });

  it("needs port.number when the service has several ports", async () => {
    const result = await build(twoPorts, virtualService("v", ["app.example.com"], [{ route: [{ destination: { host: "multi.example.com" } }] }]));
    expect(errors(result)).toEqual([
      expect.stringMatching(/spec\.http\[0\]\.route\[0\]\.destination\.host: multi\.example\.com has 2 ports \(80, 443\); expected destination\.port\.number to pick one$/),
    ]);
    const snapshot = await snapshotOf(twoPorts, virtualService("v", ["app.example.com"], [{ route: [{ destination: { host: "multi.example.com", port: { number: 443 } } }] }]));
    expect(snapshot.clusters["outbound|443||multi.example.com"]).toMatchObject({ port: 443, scheme: "https" });
  });

  it("rejects a port the service does not have", async () => {
    const result = await build(twoPorts, virtualService("v", ["app.example.com"], [{ route: [{ destination: { host: "multi.example.com", port: { number: 8080 } } }] }]));
    expect(errors(result)).toEqual([expect.stringMatching(/destination\.port: expected one of the ports of multi\.example\.com \(80, 443\), got 8080$/)]);
  });

  it("rejects a ServiceEntry without ports", async () => {
    const result = await build(doc("ServiceEntry", "s", { hosts: ["a.example.com"] }));
    expect(errors(result)).toEqual([expect.stringMatching(/ServiceEntry\/default\/s: spec\.ports: expected at least one port/)]);
  });
});

describe("endpoints", () => {
  it("take their port by port name, else the targetPort, else the service port", async () => {
    const snapshot = await snapshotOf(
      serviceEntry("a", ["a.internal"], {
        resolution: "STATIC",
        location: "MESH_INTERNAL",
        ports: [{ number: 80, name: "http", targetPort: 8080 }],
        endpoints: [
          { address: "10.0.0.1", ports: { http: 9000 }, labels: { version: "v1" }, locality: "us-east/1a", weight: 3 },
          { address: "10.0.0.2", weight: 0 },
        ],
      }),
      serviceEntry("b", ["b.internal"], { resolution: "STATIC", location: "MESH_INTERNAL", ports: [{ number: 81, name: "web" }], endpoints: [{ address: "10.0.0.3" }] }),
      virtualService("v", ["app.example.com"], [
        { match: [{ uri: { prefix: "/b" } }], route: [{ destination: { host: "b.internal" } }] },
        { route: [{ destination: { host: "a.internal" } }] },
      ]),
    );
    expect(snapshot.clusters["outbound|80||a.internal"]?.endpoints).toEqual([
      { address: "10.0.0.1", port: 9000, labels: { version: "v1" }, locality: "us-east/1a", weight: 3 },
      { address: "10.0.0.2", port: 8080, labels: {}, weight: 1 },
    ]);
    expect(snapshot.clusters["outbound|81||b.internal"]?.endpoints).toEqual([{ address: "10.0.0.3", port: 81, labels: {}, weight: 1 }]);
  });

  it("reject a port name that is not in spec.ports, a missing address and a Unix socket", async () => {
    const result = await build(
      serviceEntry("a", ["a.internal"], {
        resolution: "STATIC",
        endpoints: [{ address: "10.0.0.1", ports: { htp: 9000 } }, { labels: { a: "b" } }, { address: "unix:///var/run/app.sock" }],
      }),
    );
    expect(errors(result).map((e) => e.replace(/^config\.yaml:\d+: error: ServiceEntry\/default\/a: /, ""))).toEqual([
      "spec.endpoints[0].ports.htp: expected the name of a port in spec.ports (http)",
      "spec.endpoints[1].address: expected an address: the edge can only reach endpoints by host name or IP",
      "spec.endpoints[2].address: expected a host name or IP address; Unix sockets cannot be reached from the edge",
    ]);
  });

  it("default to the host itself for DNS resolution without endpoints", async () => {
    const snapshot = await snapshotOf(serviceEntry("httpbin", ["httpbin.org"], { ports: [{ number: 443, name: "https", protocol: "HTTPS" }] }));
    expect(snapshot.clusters["outbound|443||httpbin.org"]).toMatchObject({ scheme: "https", endpoints: [{ address: "httpbin.org", port: 443, labels: {}, weight: 1 }] });
  });

  it("are empty for STATIC resolution without endpoints, with a warning", async () => {
    const result = await build(serviceEntry("a", ["a.example.com"], { resolution: "STATIC" }));
    expect(warnings(result)).toEqual([expect.stringMatching(/spec\.resolution: STATIC resolution with no endpoints: requests for these hosts get 503 no healthy upstream/)]);
    expect(result.snapshot?.clusters["outbound|80||a.example.com"]?.endpoints).toEqual([]);
  });
});

describe("subsets", () => {
  const se = serviceEntry("reviews", ["reviews.prod.svc.cluster.local"], {
    location: "MESH_INTERNAL",
    resolution: "STATIC",
    endpoints: [
      { address: "10.0.0.1", labels: { version: "v1" } },
      { address: "10.0.0.2", labels: { version: "v2" } },
      { address: "10.0.0.3", labels: { version: "v2", canary: "true" } },
    ],
  }, "prod");
  const dr = doc("DestinationRule", "reviews", { host: "reviews", subsets: [{ name: "v1", labels: { version: "v1" } }, { name: "v2", labels: { version: "v2" } }] }, "prod");
  const to = (subset: string) => virtualService("v", ["app.example.com"], [{ route: [{ destination: { host: "reviews", subset } }] }], {}, "prod");

  it("select the endpoints whose labels match", async () => {
    const snapshot = await snapshotOf(se, dr, to("v2"));
    expect(destinationsOf(snapshot.rules[0])).toEqual([{ host: "reviews.prod.svc.cluster.local", subset: "v2", port: 80, cluster: "outbound|80|v2|reviews.prod.svc.cluster.local", weight: 100 }]);
    expect(snapshot.clusters["outbound|80|v2|reviews.prod.svc.cluster.local"]?.endpoints.map((e) => e.address)).toEqual(["10.0.0.2", "10.0.0.3"]);
  });

  it("must be defined by a DestinationRule for the host", async () => {
    expect(errors(await build(se, dr, to("v3")))).toEqual([
      expect.stringMatching(/destination\.subset: expected a subset defined by a DestinationRule for reviews\.prod\.svc\.cluster\.local \(v1, v2\), got "v3"$/),
    ]);
    expect(errors(await build(se, to("v1")))).toEqual([expect.stringMatching(/destination\.subset: expected a subset defined by a DestinationRule for reviews\.prod\.svc\.cluster\.local \(none is defined\), got "v1"$/)]);
  });

  it("may not be defined twice in one DestinationRule", async () => {
    const twice = doc("DestinationRule", "reviews", { host: "reviews", subsets: [{ name: "v1", labels: { version: "v1" } }, { name: "v1", labels: { version: "v2" } }] }, "prod");
    expect(errors(await build(se, twice))).toEqual([expect.stringMatching(/DestinationRule\/prod\/reviews: spec\.subsets\[1\]\.name: duplicate subset name "v1"$/)]);
  });

  it("merge across DestinationRules for one host: the first definition of a subset wins, with a warning", async () => {
    const second = doc("DestinationRule", "reviews-extra", { host: "reviews.prod.svc.cluster.local", subsets: [{ name: "v2", labels: { canary: "true" } }, { name: "v3", labels: { version: "v3" } }] }, "prod");
    const result = await build(se, dr, second, to("v2"));
    expect(errors(result)).toEqual([]);
    expect(warnings(result)).toEqual([
      expect.stringMatching(/DestinationRule\/prod\/reviews-extra: spec\.subsets\[0\]: ignored: subset "v2" of reviews\.prod\.svc\.cluster\.local is already defined \(Istio keeps the first\)$/),
    ]);
    expect(result.snapshot?.clusters["outbound|80|v2|reviews.prod.svc.cluster.local"]?.endpoints.map((e) => e.address)).toEqual(["10.0.0.2", "10.0.0.3"]);
    // v3 comes from the second rule and is usable.
    expect(errors(await build(se, dr, second, to("v3")))).toEqual([]);
  });
});

describe("traffic policies", () => {
  const se = serviceEntry("a", ["a.example.com"], { ports: [{ number: 80, name: "http" }, { number: 8443, name: "tls", protocol: "TLS" }] });
  const route = (port: number, subset?: string) =>
    virtualService("v", ["app.example.com"], [{ route: [{ destination: { host: "a.example.com", port: { number: port }, ...(subset ? { subset } : {}) } }] }]);

  it("the first DestinationRule's top-level policy wins, with a warning on the later one", async () => {
    const first = doc("DestinationRule", "a1", { host: "a.example.com", trafficPolicy: { loadBalancer: { simple: "ROUND_ROBIN" } } });
    const second = doc("DestinationRule", "a2", { host: "a.example.com", trafficPolicy: { loadBalancer: { simple: "RANDOM" } } });
    const result = await build(se, first, second, route(80));
    expect(warnings(result)).toEqual([
      expect.stringMatching(/DestinationRule\/default\/a2: spec\.trafficPolicy: ignored: DestinationRule\/default\/a1 already sets the traffic policy for a\.example\.com \(Istio keeps the first\)$/),
    ]);
    expect(result.snapshot?.clusters["outbound|80||a.example.com"]?.loadBalancer).toBe("ROUND_ROBIN");
  });

  it("the most specific DestinationRule host applies", async () => {
    const wide = doc("DestinationRule", "wide", { host: "*.example.com", trafficPolicy: { loadBalancer: { simple: "RANDOM" } } });
    const exact = doc("DestinationRule", "exact", { host: "a.example.com", trafficPolicy: { loadBalancer: { simple: "ROUND_ROBIN" } } });
    const snapshot = await snapshotOf(se, wide, exact, route(80));
    expect(snapshot.clusters["outbound|80||a.example.com"]?.loadBalancer).toBe("ROUND_ROBIN");
  });

  it("defaults to LEAST_REQUEST and plain http for an HTTP port", async () => {
    const snapshot = await snapshotOf(se, route(80));
    expect(snapshot.clusters["outbound|80||a.example.com"]).toMatchObject({ loadBalancer: "LEAST_REQUEST", scheme: "http" });
    expect((await snapshotOf(se, route(8443))).clusters["outbound|8443||a.example.com"]?.scheme).toBe("https");
  });

  it("sends plaintext when a DestinationRule says tls DISABLE, even to a port whose protocol is HTTPS", async () => {
    const disable = doc("DestinationRule", "plain", { host: "a.example.com", trafficPolicy: { tls: { mode: "DISABLE" } } });
    expect((await snapshotOf(se, disable, route(8443))).clusters["outbound|8443||a.example.com"]?.scheme).toBe("http");
  });

  it("subset fields override the top level field by field; port-level settings replace the whole policy", async () => {
    const dr = doc("DestinationRule", "a", {
      host: "a.example.com",
      trafficPolicy: {
        loadBalancer: { simple: "RANDOM" },
        tls: { mode: "SIMPLE" },
        portLevelSettings: [{ port: { number: 8443 }, loadBalancer: { simple: "ROUND_ROBIN" } }],
      },
      subsets: [{ name: "rr", trafficPolicy: { loadBalancer: { simple: "ROUND_ROBIN" } } }, { name: "plain" }],
    });
    const clusters = async (port: number, subset?: string) => (await snapshotOf(se, dr, route(port, subset))).clusters;
    expect((await clusters(80))["outbound|80||a.example.com"]).toMatchObject({ loadBalancer: "RANDOM", scheme: "https" });
    expect((await clusters(80, "rr"))["outbound|80|rr|a.example.com"]).toMatchObject({ loadBalancer: "ROUND_ROBIN", scheme: "https" });
    expect((await clusters(80, "plain"))["outbound|80|plain|a.example.com"]).toMatchObject({ loadBalancer: "RANDOM", scheme: "https" });
  });

  it("effectivePolicy layers top level, top-level port settings, subset and subset port settings as Istio does", () => {
    const top: TrafficPolicy = {
      loadBalancer: { simple: "RANDOM" },
      tls: { mode: "SIMPLE" },
      outlierDetection: { consecutive5xxErrors: 5 },
      portLevelSettings: [{ port: { number: 9000 }, connectionPool: { http: { http2MaxRequests: 10 } } }],
    };
    const subset: TrafficPolicy = {
      loadBalancer: { simple: "ROUND_ROBIN" },
      portLevelSettings: [{ port: { number: 9001 }, tls: { mode: "DISABLE" } }],
    };
    expect(effectivePolicy(top, undefined, 80)).toEqual({ loadBalancer: { simple: "RANDOM" }, tls: { mode: "SIMPLE" }, outlierDetection: { consecutive5xxErrors: 5 }, connectionPool: undefined });
    // A matching port entry replaces all four parts: no inheritance of the top-level ones.
    expect(effectivePolicy(top, undefined, 9000)).toEqual({ connectionPool: { http: { http2MaxRequests: 10 } }, loadBalancer: undefined, tls: undefined, outlierDetection: undefined });
    // Subset fields override per field on top of the (port-merged) top level.
    expect(effectivePolicy(top, subset, 80)).toEqual({ loadBalancer: { simple: "ROUND_ROBIN" }, tls: { mode: "SIMPLE" }, outlierDetection: { consecutive5xxErrors: 5 }, connectionPool: undefined });
    expect(effectivePolicy(top, subset, 9000)).toEqual({ loadBalancer: { simple: "ROUND_ROBIN" }, connectionPool: { http: { http2MaxRequests: 10 } }, tls: undefined, outlierDetection: undefined });
    expect(effectivePolicy(top, subset, 9001)).toEqual({ tls: { mode: "DISABLE" }, loadBalancer: undefined, connectionPool: undefined, outlierDetection: undefined });
    expect(effectivePolicy(undefined, undefined, 80)).toEqual({});
  });

  it("warns about a DestinationRule whose host no ServiceEntry declares", async () => {
    const result = await build(se, doc("DestinationRule", "ghost", { host: "ghost.example.com" }));
    expect(warnings(result)).toEqual([expect.stringMatching(/DestinationRule\/default\/ghost: spec\.host: no ServiceEntry host matches ghost\.example\.com; this DestinationRule has no effect$/)]);
  });
});

describe("DestinationRule lookup across namespaces (Istio's PushContext.destinationRule)", () => {
  const se = serviceEntry("svc", ["svc.edge.internal"], {
    location: "MESH_INTERNAL",
    resolution: "STATIC",
    endpoints: [
      { address: "10.0.0.1", labels: { v: "a" } },
      { address: "10.0.0.2", labels: { v: "b" } },
    ],
  }, "edge");
  const route = virtualService("v", ["app.example.com"], [{ route: [{ destination: { host: "svc.edge.internal", subset: "pick" } }] }], {}, "edge");
  /** A DestinationRule defining subset `pick` as the endpoints labelled `v`. */
  const pick = (name: string, namespace: string, v: string, host = "svc.edge.internal") => doc("DestinationRule", name, { host, subsets: [{ name: "pick", labels: { v } }] }, namespace);
  const picked = async (...docs: Doc[]) => (await snapshotOf(se, route, ...docs)).clusters["outbound|80|pick|svc.edge.internal"]?.endpoints.map((e) => e.address);

  it("prefers the service's namespace to the root namespace, whatever the file order, without merging them", async () => {
    const result = await build(se, route, pick("root-dr", "istio-system", "a"), pick("svc-dr", "edge", "b"));
    expect(warnings(result)).toEqual([]);
    expect(result.snapshot?.clusters["outbound|80|pick|svc.edge.internal"]?.endpoints.map((e) => e.address)).toEqual(["10.0.0.2"]);
    // The root namespace's rule applies when the service's namespace has none.
    expect(await picked(pick("root-dr", "istio-system", "a"))).toEqual(["10.0.0.1"]);
  });

  it("merges the rules of one namespace oldest first (creation time, then name), not in file order", async () => {
    const created = (d: Doc, creationTimestamp: string): Doc => ({ ...d, metadata: { ...d.metadata, creationTimestamp } });
    const result = await build(se, route, created(pick("newer", "edge", "a"), "2025-06-01T00:00:00Z"), created(pick("older", "edge", "b"), "2024-01-01T00:00:00Z"));
    expect(warnings(result)).toEqual([
      expect.stringMatching(/DestinationRule\/edge\/newer: spec\.subsets\[0\]: ignored: subset "pick" of svc\.edge\.internal is already defined \(Istio keeps the first\)$/),
    ]);
    expect(result.snapshot?.clusters["outbound|80|pick|svc.edge.internal"]?.endpoints.map((e) => e.address)).toEqual(["10.0.0.2"]);
    expect(await picked(pick("zz", "edge", "a"), pick("aa", "edge", "b"))).toEqual(["10.0.0.2"]);
  });

  it("takes the most specific host within the first namespace that has a match, even a wildcard over another namespace's exact host", async () => {
    expect(await picked(pick("exact-root", "istio-system", "a"), pick("wild-svc", "edge", "b", "*.edge.internal"))).toEqual(["10.0.0.2"]);
    expect(await picked(pick("wild", "edge", "a", "*.edge.internal"), pick("exact", "edge", "b"))).toEqual(["10.0.0.2"]);
  });

  it("looks in the gateway's namespace (the GatewayConfig's) first when it is not the root namespace", async () => {
    const config = doc("GatewayConfig", "gw", {}, "ingress");
    expect(await picked(config, pick("svc-dr", "edge", "a"), pick("gw-dr", "ingress", "b"))).toEqual(["10.0.0.2"]);
    // Without a GatewayConfig the gateway is in the root namespace, whose rules come after the service's.
    expect(await picked(pick("svc-dr", "edge", "a"), pick("gw-dr", "istio-system", "b"))).toEqual(["10.0.0.1"]);
  });

  it("ignores, with a warning, a rule in a namespace that is neither the gateway's, the service's nor the root", async () => {
    const foreign = doc("DestinationRule", "foreign", { host: "svc.edge.internal", trafficPolicy: { connectionPool: { http: { http2MaxRequests: 1 } } } }, "team");
    const result = await build(se, virtualService("v", ["app.example.com"], [{ route: [{ destination: { host: "svc.edge.internal" } }] }], {}, "edge"), foreign);
    expect(warnings(result)).toEqual([
      expect.stringMatching(
        /DestinationRule\/team\/foreign: metadata\.namespace: this DestinationRule has no effect: as in Istio, the gateway looks up DestinationRules in the service's namespace \(edge\) and the root namespace \(istio-system, its own\); move it to one of them$/,
      ),
    ]);
    expect(result.snapshot?.clusters["outbound|80||svc.edge.internal"]?.connectionPool).toBeUndefined();
    expect(warnings(await build(se, doc("GatewayConfig", "gw", {}, "ingress"), foreign))).toEqual([
      expect.stringMatching(/in its own namespace \(ingress\), the service's namespace \(edge\) and the root namespace \(istio-system\); move it/),
    ]);
  });
});

describe("Istio's ServiceEntry validation (ValidateServiceEntry)", () => {
  type Result = Parameters<typeof errors>[0];
  const strip = (lines: string[]) => lines.map((l) => l.replace(/^config\.yaml:\d+: (error|warning): ServiceEntry\/default\/[\w-]+: /, ""));
  const errs = (result: Result) => strip(errors(result));
  const warns = (result: Result) => strip(warnings(result));

  it('rejects the full wildcard host "*", which would forward every Host a client sends', async () => {
    for (const resolution of ["NONE", "DNS", "STATIC"]) {
      const result = await build(serviceEntry("any", ["api.example.com", "*"], { resolution, ...(resolution === "STATIC" ? { endpoints: [{ address: "10.0.0.1" }] } : {}) }));
      expect(errs(result)).toEqual([
        "spec.hosts[1]: invalid host *: a ServiceEntry may not declare the full wildcard (Istio refuses it; at the edge it would forward every Host a client sends); expected a host name or a wildcard such as *.example.com",
      ]);
      expect(result.snapshot).toBeUndefined();
    }
  });

  it("warns once per port that GRPC, GRPC-WEB and HTTP2 ports are reached over HTTP/1.1, however many routes use them", async () => {
    const se = serviceEntry("rpc", ["rpc.example.com"], {
      ports: [
        { number: 9000, name: "grpc", protocol: "GRPC" },
        { number: 9001, name: "grpc-web", protocol: "grpc-web" },
        { number: 9002, name: "h2", protocol: "HTTP2" },
        { number: 80, name: "http", protocol: "HTTP" },
        { number: 443, name: "https", protocol: "HTTPS" },
      ],
    });
    const route = (port: number) => ({ route: [{ destination: { host: "rpc.example.com", port: { number: port } } }] });
    const result = await build(se, virtualService("a", ["a.example.com"], [route(9000)]), virtualService("b", ["b.example.com"], [route(9000)]));
    const caveat = "is reached over HTTP/1.1: Istio's proxy would speak HTTP/2 to this port, but a Worker's fetch() speaks HTTP/1.1 to plaintext origins (HTTP/2 cleartext, h2c, is not possible), so an origin that accepts only HTTP/2, such as a plaintext gRPC server, cannot be reached (503); under isthmus serve (workerd) TLS origins get HTTP/1.1 as well";
    expect(warns(result)).toEqual([`spec.ports[0].protocol: GRPC ${caveat}`, `spec.ports[1].protocol: GRPC-WEB ${caveat}`, `spec.ports[2].protocol: HTTP2 ${caveat}`]);
    expect(result.snapshot?.clusters["outbound|9000||rpc.example.com"]?.scheme).toBe("http");
  });

  it("rejects endpoints with resolution NONE, Istio's default when resolution is unset", async () => {
    const none = await build(serviceEntry("a", ["a.example.com"], { resolution: "NONE", endpoints: [{ address: "10.0.0.1" }] }));
    expect(errs(none)).toEqual(["spec.endpoints: no endpoints should be provided for resolution type NONE; expected resolution: STATIC for IP addresses or DNS for host names"]);
    const unset = await build(doc("ServiceEntry", "a", { hosts: ["a.example.com"], ports: [{ number: 80, name: "http" }], endpoints: [{ address: "10.0.0.1" }] }));
    expect(errs(unset)).toEqual([
      "spec.endpoints: no endpoints should be provided for resolution type NONE (resolution is unset, and NONE is its default); expected resolution: STATIC for IP addresses or DNS for host names",
    ]);
  });

  it("rejects a wildcard host with DNS resolution and no endpoints; NONE connects to each request's host", async () => {
    for (const resolution of ["DNS", "DNS_ROUND_ROBIN"]) {
      const result = await build(serviceEntry("wild", ["api.example.com", "*.example.org"], { resolution }));
      expect(errs(result)).toEqual([`spec.hosts[1]: hosts must be FQDN if no endpoints are provided for resolution mode ${resolution}, got *.example.org; to connect to each request's host, use resolution: NONE`]);
    }
    for (const resolution of ["NONE", "DYNAMIC_DNS", undefined]) {
      const snapshot = await snapshotOf(serviceEntry("wild", ["*.example.org"], { resolution }));
      expect(snapshot.clusters["outbound|80||*.example.org"]).toMatchObject({ dynamicAddress: true, endpoints: [{ address: "", port: 80 }] });
    }
  });

  it("sends a wildcard host's default route to its endpoints when it has some, not to each request's host", async () => {
    for (const [resolution, address] of [["STATIC", "10.0.0.1"], ["DNS", "proxy.example.org"]] as const) {
      const snapshot = await snapshotOf(serviceEntry("wild", ["*.example.org"], { resolution, endpoints: [{ address }] }));
      const cluster = snapshot.clusters["outbound|80||*.example.org"];
      expect(cluster?.dynamicAddress).toBeUndefined();
      expect(cluster?.endpoints).toEqual([{ address, port: 80, labels: {}, weight: 1 }]);
    }
    const empty = await build(serviceEntry("wild", ["*.example.org"], { resolution: "STATIC" }));
    expect(empty.snapshot?.clusters["outbound|80||*.example.org"]).toMatchObject({ endpoints: [] });
    expect(empty.snapshot?.clusters["outbound|80||*.example.org"]?.dynamicAddress).toBeUndefined();
  });

  it("rejects a port number or name defined twice", async () => {
    const result = await build(
      serviceEntry("a", ["a.example.com"], {
        ports: [
          { number: 80, name: "http" },
          { number: 80, name: "web" },
          { number: 8080, name: "http" },
        ],
      }),
    );
    expect(errs(result)).toEqual(["spec.ports[1].number: service entry port 80 already defined (spec.ports[0])", 'spec.ports[2].name: service entry port name "http" already defined (spec.ports[0])']);
  });

  it("rejects workloadSelector with endpoints, CIDR addresses without NONE or STATIC resolution, and several DNS_ROUND_ROBIN endpoints", async () => {
    const selector = await build(serviceEntry("a", ["a.example.com"], { workloadSelector: { labels: { app: "a" } }, endpoints: [{ address: "a.internal" }] }));
    expect(errs(selector)).toEqual(["spec.workloadSelector: only one of workloadSelector or endpoints is allowed in a ServiceEntry"]);

    const cidr = await build(serviceEntry("a", ["a.example.com"], { addresses: ["10.1.0.0/16", "10.2.0.1"] }));
    expect(errs(cidr)).toEqual(["spec.addresses[0]: CIDR addresses are allowed only for NONE/STATIC resolution types, got 10.1.0.0/16 with resolution DNS"]);
    expect(errors(await build(serviceEntry("a", ["a.example.com"], { resolution: "NONE", addresses: ["10.1.0.0/16"] })))).toEqual([]);

    const roundRobin = await build(serviceEntry("a", ["a.example.com"], { resolution: "DNS_ROUND_ROBIN", endpoints: [{ address: "a1.internal" }, { address: "a2.internal" }] }));
    expect(errs(roundRobin)).toEqual(["spec.endpoints: there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN, got 2; use resolution: DNS for several"]);
    expect(errors(await build(serviceEntry("a", ["a.example.com"], { resolution: "DNS_ROUND_ROBIN", endpoints: [{ address: "a1.internal" }] })))).toEqual([]);
  });
});
