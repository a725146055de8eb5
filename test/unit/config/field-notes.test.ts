/**
 * Field notes: fields the edge cannot honour (EDGE_CAVEATS) and fields not
 * enforced yet (NOT_ENFORCED) produce the documented severity, on the
 * right field and line.
 */
import { describe, expect, it } from "vitest";
import type { z } from "zod";
import { EDGE_CAVEATS, NOT_ENFORCED } from "../../../src/config/field-notes.ts";
import { KINDS, type Kind } from "../../../src/config/kinds.ts";
import { resource as envelope } from "../../../src/config/schema/common.ts";
import { build, doc, errors, lines, serviceEntry, virtualService, warnings } from "../support.ts";

describe("edge caveats", () => {
  it("warns that VirtualService tcp routes are ignored, and still builds", async () => {
    const text = [
      "apiVersion: networking.istio.io/v1",
      "kind: VirtualService",
      "metadata: {name: db, namespace: data}",
      "spec:",
      "  hosts: [db.example.com]",
      "  tcp:",
      "  - route:",
      "    - destination: {host: db.example.com}",
      "",
    ].join("\n");
    const result = await build(text);
    expect(lines(result)).toEqual([
      "config.yaml:6: warning: VirtualService/data/db: spec.tcp: TCP routes need a raw TCP listener; a Worker only receives HTTP requests, so these routes are ignored",
    ]);
    expect(result.snapshot).toBeDefined();
  });

  it("rejects DestinationRule tls.mode ISTIO_MUTUAL wherever a traffic policy can say it", async () => {
    const text = [
      "apiVersion: networking.istio.io/v1", // 1
      "kind: DestinationRule", // 2
      "metadata: {name: r, namespace: prod}", // 3
      "spec:", // 4
      "  host: reviews", // 5
      "  trafficPolicy:", // 6
      "    tls: {mode: ISTIO_MUTUAL}", // 7
      "    portLevelSettings:", // 8
      "    - port: {number: 9080}", // 9
      "      tls: {mode: ISTIO_MUTUAL}", // 10
      "  subsets:", // 11
      "  - name: v1", // 12
      "    trafficPolicy: {tls: {mode: SIMPLE}}", // 13
      "  - name: v2", // 14
      "    trafficPolicy:", // 15
      "      tls:", // 16
      "        mode: ISTIO_MUTUAL", // 17
      "",
    ].join("\n");
    const result = await build(text, serviceEntry("reviews", ["reviews.prod.svc.cluster.local"], {}, "prod"));
    const mesh = "ISTIO_MUTUAL uses mesh certificates that exist only inside the mesh; use MUTUAL with a credentialName backed by an mtls_certificates binding";
    expect(errors(result)).toEqual([
      `config.yaml:7: error: DestinationRule/prod/r: spec.trafficPolicy.tls.mode: ${mesh}`,
      `config.yaml:10: error: DestinationRule/prod/r: spec.trafficPolicy.portLevelSettings[0].tls.mode: ${mesh}`,
      `config.yaml:17: error: DestinationRule/prod/r: spec.subsets[1].trafficPolicy.tls.mode: ${mesh}`,
    ]);
    expect(result.snapshot).toBeUndefined();
  });

  it("warns about tunnel and proxyProtocol in a subset's traffic policy as at the top level", async () => {
    const policy = { tunnel: { targetHost: "proxy.example.com", targetPort: 8080 }, proxyProtocol: { version: "V1" } };
    const result = await build(
      serviceEntry("a", ["a.example.com"]),
      doc("DestinationRule", "r", { host: "a.example.com", trafficPolicy: policy, subsets: [{ name: "v1", labels: { v: "1" }, trafficPolicy: policy }] }),
    );
    expect(errors(result)).toEqual([]);
    expect(warnings(result).map((w) => w.replace(/^config\.yaml:\d+: warning: DestinationRule\/default\/r: /, ""))).toEqual([
      "spec.trafficPolicy.tunnel: HTTP CONNECT tunnelling to origins is not available from a Worker; ignored",
      "spec.trafficPolicy.proxyProtocol: a Worker cannot send a PROXY protocol header to origins; ignored",
      "spec.subsets[0].trafficPolicy.tunnel: HTTP CONNECT tunnelling to origins is not available from a Worker; ignored",
      "spec.subsets[0].trafficPolicy.proxyProtocol: a Worker cannot send a PROXY protocol header to origins; ignored",
    ]);
  });

  it("says that exportTo does not stop the edge serving a VirtualService or ServiceEntry", async () => {
    const result = await build(serviceEntry("a", ["a.example.com"], { exportTo: ["."] }), virtualService("v", ["a.example.com"], [{ route: [{ destination: { host: "a.example.com" } }] }], { exportTo: ["."] }));
    expect(warnings(result).map((w) => w.replace(/^config\.yaml:\d+: warning: /, ""))).toEqual([
      expect.stringMatching(/^ServiceEntry\/default\/a: spec\.exportTo: .*the edge serves it regardless/),
      expect.stringMatching(/^VirtualService\/default\/v: spec\.exportTo: .*the edge serves it regardless/),
    ]);
    expect(result.snapshot?.virtualHosts.map((vh) => vh.name)).toEqual(["a.example.com"]);
  });

  it("flags a conditional caveat only for the values it is about", async () => {
    const dr = (tls: string) => doc("DestinationRule", "r", { host: "a.example.com", trafficPolicy: { tls: JSON.parse(tls) } });
    const se = serviceEntry("a", ["a.example.com"]);
    expect(lines(await build(se, dr('{"mode": "SIMPLE", "insecureSkipVerify": false}')))).toEqual([]);
    expect(errors(await build(se, dr('{"mode": "SIMPLE", "insecureSkipVerify": true}')))).toEqual([
      expect.stringMatching(/spec\.trafficPolicy\.tls\.insecureSkipVerify: a Worker always verifies origin certificates/),
    ]);
    const gateway = (mode: string) =>
      doc("Gateway", "g", { servers: [{ port: { number: 443, name: "https", protocol: "HTTPS" }, hosts: ["*"], tls: { mode } }] });
    expect(warnings(await build(gateway("SIMPLE")))).toEqual([]);
    expect(warnings(await build(gateway("PASSTHROUGH")))).toEqual([expect.stringMatching(/spec\.servers\[0\]\.tls\.mode: Cloudflare terminates TLS for the gateway/)]);
  });

  it("skips a match block whose sourceLabels or sourceNamespace are not the gateway's, with a warning, as an Istio gateway does", async () => {
    const result = await build(
      serviceEntry("a", ["a.example.com"]),
      virtualService("v", ["a.example.com"], [
        { match: [{ uri: { prefix: "/x" } }, { uri: { prefix: "/y" }, sourceLabels: { app: "web" } }], route: [{ destination: { host: "a.example.com" } }] },
        { match: [{ uri: { prefix: "/z" }, sourceNamespace: "ops" }], route: [{ destination: { host: "a.example.com" } }] },
        { match: [{ uri: { prefix: "/gw" }, sourceLabels: { istio: "ingressgateway" }, sourceNamespace: "istio-system" }], route: [{ destination: { host: "a.example.com" } }] },
      ]),
    );
    expect(warnings(result)).toEqual([
      expect.stringMatching(/VirtualService\/default\/v: spec\.http\[0\]\.match\[1\]: never matches at the edge: sourceLabels app=web are not the gateway's labels \(GatewayConfig gatewayLabels\), so this block is skipped, as an Istio gateway skips it$/),
      expect.stringMatching(/VirtualService\/default\/v: spec\.http\[1\]\.match\[0\]: never matches at the edge: sourceNamespace ops is not the gateway's namespace \(istio-system\)/),
    ]);
    // The gateway's own labels and namespace: the block applies.
    const prefixes = result.snapshot?.virtualHosts[0]?.routes.map((r) => (r.match.uri?.type === "prefix" ? r.match.uri.value : ""));
    expect(prefixes).toEqual(["/x", "/gw"]);
  });
});

describe("not enforced yet", () => {
  it("no longer refuses a RateLimitPolicy, which is enforced, and compiles it into the snapshot", async () => {
    const text = [
      "apiVersion: isthmus.dev/v1alpha1",
      "kind: RateLimitPolicy",
      "metadata: {name: per-ip, namespace: istio-system}",
      "spec:",
      "  rules:",
      "  - {name: r, key: [remote.ip], limits: [{requests: 10, unit: second}]}",
      "",
    ].join("\n");
    const result = await build(text);
    expect(lines(result)).toEqual([]);
    expect(result.snapshot?.rateLimits?.rules.map((r) => [r.id, r.scope, r.limits])).toEqual([["istio-system/per-ip/r", "GLOBAL", [{ requests: 10, windowMs: 1000, burst: 10 }]]]);
  });

  it("no longer refuses the security kinds, which are enforced", async () => {
    for (const kind of ["RequestAuthentication", "AuthorizationPolicy", "PeerAuthentication"]) {
      const result = await build(doc(kind, "p", {}, "istio-system"));
      expect(errors(result).filter((e) => e.includes("not enforced yet")), kind).toEqual([]);
    }
  });

  it("acts on Telemetry; without an OTLP provider its tracing has nothing to report to, which is said", async () => {
    const result = await build(
      serviceEntry("a", ["a.example.com"]),
      virtualService("v", ["a.example.com"], [{ route: [{ destination: { host: "a.example.com" } }] }]),
      doc("Telemetry", "t", { tracing: [{ randomSamplingPercentage: 10 }] }, "istio-system"),
    );
    expect(errors(result)).toEqual([]);
    expect(warnings(result).map((w) => w.replace(/^config\.yaml:\d+: /, ""))).toEqual([
      "warning: Telemetry/istio-system/t: spec.tracing: has no effect: GatewayConfig defines no opentelemetry provider (extensionProviders[].opentelemetry) to send spans to",
    ]);
    expect(result.snapshot).toBeDefined();
  });
});

/**
 * A note whose path names no field of the schema would never fire (a typo
 * in field-notes.ts silently disables a security error). Every path must
 * lead to a field the kind's schema defines.
 */
describe("field note paths", () => {
  type Def = { type: string; shape?: Record<string, z.core.$ZodType>; element?: z.core.$ZodType; valueType?: z.core.$ZodType; innerType?: z.core.$ZodType; in?: z.core.$ZodType };
  const defOf = (node: z.core.$ZodType): Def => node._zod.def as unknown as Def;
  const unwrap = (node: z.core.$ZodType): z.core.$ZodType => {
    let current = node;
    for (;;) {
      const def = defOf(current);
      if ((def.type === "optional" || def.type === "nullable" || def.type === "default") && def.innerType) current = def.innerType;
      else if (def.type === "pipe" && def.in) current = def.in;
      else return current;
    }
  };
  const resolves = (kind: Kind, path: string): boolean => {
    let node: z.core.$ZodType | undefined = unwrap(envelope(KINDS[kind].spec) as unknown as z.core.$ZodType);
    for (const raw of path.split(".")) {
      const iterate = raw.endsWith("[]") ? "list" : raw.endsWith("{}") ? "map" : undefined;
      const key = iterate ? raw.slice(0, -2) : raw;
      const def: Def | undefined = node ? defOf(node) : undefined;
      if (def?.type !== "object" || !def.shape?.[key]) return false;
      node = unwrap(def.shape[key]);
      if (iterate === "list") {
        const inner = defOf(node);
        if (inner.type !== "array" || !inner.element) return false;
        node = unwrap(inner.element);
      } else if (iterate === "map") {
        const inner = defOf(node);
        if (inner.type !== "record" || !inner.valueType) return false;
        node = unwrap(inner.valueType);
      }
    }
    return node !== undefined;
  };

  for (const [table, name] of [
    [EDGE_CAVEATS, "EDGE_CAVEATS"],
    [NOT_ENFORCED, "NOT_ENFORCED"],
  ] as const) {
    it(`every ${name} path names a field of its kind`, () => {
      const broken = (Object.keys(table) as Kind[]).flatMap((kind) => table[kind].filter((rule) => !resolves(kind, rule.path)).map((rule) => `${kind} ${rule.path}`));
      expect(broken).toEqual([]);
    });
  }
});
