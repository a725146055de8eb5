/**
 * Which hosts the edge serves with which routes: Gateway binding, host
 * intersection, merging several VirtualServices for one host, and
 * ServiceEntry default routes.
 */
import { describe, expect, it } from "vitest";
import { resolveGatewayName } from "../../../src/config/compile/gateway-names.ts";
import { hostMatches, intersectHosts } from "../../../src/config/compile/hosts.ts";
import type { Snapshot } from "../../../src/config/snapshot.ts";
import { runPipeline } from "../../../src/gateway/pipeline.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import { build, doc, errors, pipelineDeps, serviceEntry, snapshotOf, virtualService, warnings, type Doc } from "../support.ts";

const internal = serviceEntry("app", ["app.internal"], { location: "MESH_INTERNAL" });
const direct = (body: string, extra: Record<string, unknown> = {}) => ({ directResponse: { status: 200, body: { string: body } }, ...extra });
const gateway = (name: string, hosts: string[], namespace = "edge", extra: Record<string, unknown> = {}): Doc =>
  doc("Gateway", name, { servers: [{ port: { number: 80, name: "http", protocol: "HTTP" }, hosts, ...extra }] }, namespace);

/** host → the bodies of its routes' direct responses, in route order. */
function served(snapshot: Snapshot): Record<string, string[]> {
  return Object.fromEntries(
    snapshot.virtualHosts.map((vh) => [
      vh.name,
      vh.routes.map((r) => {
        const action = snapshot.rules[r.rule]?.action;
        return action?.type === "direct" ? (action.body ?? "") : action?.type === "route" ? `→${action.destinations.map((d) => d.host).join(",")}` : action?.type ?? "?";
      }),
    ]),
  );
}

describe("without Gateway resources", () => {
  it("applies every VirtualService to its hosts", async () => {
    const snapshot = await snapshotOf(
      virtualService("a", ["a.example.com", "A2.example.com"], [direct("a")]),
      virtualService("b", ["*.b.example.com"], [direct("b")], { gateways: ["some-gateway"] }),
    );
    expect(served(snapshot)).toEqual({ "a.example.com": ["a"], "a2.example.com": ["a"], "*.b.example.com": ["b"] });
  });

  it("expands short VirtualService hosts like Istio", async () => {
    const snapshot = await snapshotOf(virtualService("a", ["reviews"], [direct("a")], {}, "prod"));
    expect(Object.keys(served(snapshot))).toEqual(["reviews.prod.svc.cluster.local"]);
  });

  it("needs hosts and routes (without hosts, it is a delegate: see delegates.test.ts)", async () => {
    expect(errors(await build(doc("VirtualService", "v", {})))).toEqual([expect.stringMatching(/VirtualService\/default\/v: spec: expected http, tcp or tls routes/)]);
    expect(warnings(await build(doc("VirtualService", "v", { http: [direct("x")] })))).toEqual([
      expect.stringMatching(/VirtualService\/default\/v: spec: no VirtualService served at the edge delegates to this one/),
    ]);
    // Istio's "http, tcp or tls must be provided in virtual service": an error, no longer a warning
    // (a half-written file would otherwise be applied and answer 404).
    const result = await build(doc("VirtualService", "v", { hosts: ["a.example.com"] }));
    expect(errors(result)).toEqual([
      "config.yaml:6: error: VirtualService/default/v: spec: expected http, tcp or tls routes: a VirtualService without any routes serves nothing",
    ]);
    expect(result.snapshot).toBeUndefined();
  });
});

describe("with Gateway resources", () => {
  it("ignores a VirtualService without gateways (mesh only), with a warning", async () => {
    const result = await build(gateway("gw", ["*"]), virtualService("mesh", ["a.example.com"], [direct("mesh")], {}, "edge"), virtualService("mesh2", ["b.example.com"], [direct("mesh2")], { gateways: ["mesh"] }, "edge"));
    expect(warnings(result)).toEqual([
      expect.stringMatching(/VirtualService\/edge\/mesh: spec\.gateways: not bound to a Gateway \(no gateways means mesh only\); ignored at the edge$/),
      expect.stringMatching(/VirtualService\/edge\/mesh2: spec\.gateways: not bound to a Gateway/),
    ]);
    expect(served(result.snapshot!)).toEqual({});
  });

  it("binds by name in the VirtualService's namespace or by namespace/name, and warns about unknown Gateways", async () => {
    const result = await build(
      gateway("gw", ["*"], "edge"),
      virtualService("local", ["a.example.com"], [direct("a")], { gateways: ["gw"] }, "edge"),
      virtualService("qualified", ["b.example.com"], [direct("b")], { gateways: ["edge/gw"] }, "apps"),
      virtualService("wrongns", ["c.example.com"], [direct("c")], { gateways: ["gw"] }, "apps"),
    );
    expect(served(result.snapshot!)).toEqual({ "a.example.com": ["a"], "b.example.com": ["b"] });
    expect(warnings(result)).toEqual([expect.stringMatching(/VirtualService\/apps\/wrongns: spec\.gateways\[0\]: no Gateway apps\/gw is defined; this binding is ignored$/)]);
  });

  it("resolves ./name and the legacy name.ns[.svc.cluster.local] forms in gateways and match.gateways, as Istio does", async () => {
    const result = await build(
      gateway("public", ["shop.example.com"], "shop"),
      virtualService("dot", ["shop.example.com"], [direct("dot", { match: [{ uri: { prefix: "/dot" } }] })], { gateways: ["./public"] }, "shop"),
      virtualService("fqdn", ["shop.example.com"], [direct("fqdn", { match: [{ uri: { prefix: "/fqdn" } }] })], { gateways: ["public.shop.svc.cluster.local"] }, "other"),
      virtualService("matches", ["shop.example.com"], [
        direct("match dot", { match: [{ uri: { prefix: "/m1" }, gateways: ["./public"] }] }),
        direct("match fqdn", { match: [{ uri: { prefix: "/m2" }, gateways: ["public.shop.svc.cluster.local"] }] }),
        direct("match elsewhere", { match: [{ uri: { prefix: "/m3" }, gateways: ["./other"] }] }),
      ], { gateways: ["public"] }, "shop"),
      virtualService("short", ["shop.example.com"], [direct("short", { match: [{ uri: { prefix: "/short" } }] })], { gateways: ["public.shop"] }, "other"),
    );
    expect(warnings(result)).toEqual([]);
    expect(served(result.snapshot!)).toEqual({ "shop.example.com": ["dot", "fqdn", "match dot", "match fqdn", "short"] });
  });

  it("names the resolved Gateway and what was written when a dotted reference finds none", async () => {
    const result = await build(gateway("public", ["*"], "shop"), virtualService("v", ["a.example.com"], [direct("v")], { gateways: ["./nope", "public.other.svc.cluster.local"] }, "shop"));
    expect(warnings(result)).toEqual([
      expect.stringMatching(/VirtualService\/shop\/v: spec\.gateways\[0\]: no Gateway shop\/nope \(from "\.\/nope"\) is defined; this binding is ignored$/),
      expect.stringMatching(/spec\.gateways\[1\]: no Gateway other\/public \(from "public\.other\.svc\.cluster\.local"\) is defined/),
    ]);
  });

  it("serves only the hosts the VirtualService shares with the Gateway's servers", async () => {
    const result = await build(
      gateway("gw", ["*.example.com", "exact.other.com"]),
      virtualService("v", ["api.example.com", "exact.other.com", "nope.org"], [direct("v")], { gateways: ["edge/gw"] }),
      // In a VirtualService of its own: Istio refuses hosts of one VirtualService that overlap.
      virtualService("star", ["*.other.com"], [direct("star")], { gateways: ["edge/gw"] }, "s"),
      virtualService("wide", ["*"], [direct("wide")], { gateways: ["edge/gw"] }, "w"),
      virtualService("none", ["x.org"], [direct("none")], { gateways: ["edge/gw"] }, "n"),
    );
    expect(served(result.snapshot!)).toEqual({
      "api.example.com": ["v"],
      "exact.other.com": ["star", "v", "wide"],
      "*.example.com": ["wide"],
    });
    expect(warnings(result)).toEqual([expect.stringMatching(/VirtualService\/n\/none: spec\.hosts: none of these hosts is served by Gateway edge\/gw; ignored at the edge$/)]);
  });

  it("honours the namespace/host form of server hosts", async () => {
    const snapshot = await snapshotOf(
      doc("Gateway", "gw", { servers: [{ port: { number: 80, name: "http", protocol: "HTTP" }, hosts: ["prod/*.prod.example.com", "./edge.example.com", "*/any.example.com"] }] }, "edge"),
      virtualService("p", ["a.prod.example.com", "edge.example.com", "any.example.com"], [direct("prod")], { gateways: ["edge/gw"] }, "prod"),
      virtualService("q", ["b.prod.example.com", "edge.example.com", "any.example.com"], [direct("edge")], { gateways: ["gw"] }, "edge"),
    );
    expect(served(snapshot)).toEqual({ "a.prod.example.com": ["prod"], "edge.example.com": ["edge"], "any.example.com": ["prod", "edge"] });
  });

  it("rejects a malformed namespace/host server host", async () => {
    expect(errors(await build(gateway("gw", ["prod/"])))).toEqual([
      expect.stringMatching(/Gateway\/edge\/gw: spec\.servers\[0\]\.hosts\[0\]: expected "host" or "namespace\/host" with a fully qualified host such as app\.example\.com or \*\.example\.com, got "prod\/"$/),
    ]);
  });

  it("carries the server's httpsRedirect to the virtual host", async () => {
    const snapshot = await snapshotOf(
      gateway("gw", ["secure.example.com"], "edge", { tls: { httpsRedirect: true } }),
      gateway("plain", ["plain.example.com"]),
      virtualService("v", ["secure.example.com", "plain.example.com"], [direct("v")], { gateways: ["edge/gw", "edge/plain"] }),
    );
    expect(Object.fromEntries(snapshot.virtualHosts.map((v) => [v.name, v.httpsRedirect]))).toEqual({ "plain.example.com": false, "secure.example.com": true });
  });

  it("applies only the Gateways whose selector matches GatewayConfig.gatewayLabels", async () => {
    const result = await build(
      doc("GatewayConfig", "isthmus", { gatewayLabels: { istio: "edge" } }, "istio-system"),
      gateway("edge-gw", ["a.example.com"], "edge", {}),
      doc("Gateway", "internal-gw", { selector: { istio: "ingressgateway" }, servers: [{ port: { number: 80, name: "http", protocol: "HTTP" }, hosts: ["b.example.com"] }] }, "edge"),
      virtualService("a", ["a.example.com"], [direct("a")], { gateways: ["edge/edge-gw"] }),
      virtualService("b", ["b.example.com"], [direct("b")], { gateways: ["edge/internal-gw"] }),
    );
    expect(served(result.snapshot!)).toEqual({ "a.example.com": ["a"] });
    // Bound to a Gateway of another gateway deployment: not served, and said, on the Gateway and on the VirtualService.
    expect(warnings(result)).toEqual([
      expect.stringMatching(/Gateway\/edge\/internal-gw: spec\.selector: not selected by GatewayConfig gatewayLabels \(istio=edge\): selector label istio=ingressgateway is not among them; its servers are not served/),
      expect.stringMatching(/VirtualService\/default\/b: spec\.gateways: bound only to Gateways GatewayConfig gatewayLabels does not select \(edge\/internal-gw\); ignored at the edge/),
    ]);
  });

  it("warns only about a VirtualService bound to no selected Gateway", async () => {
    const selected = doc("Gateway", "edge-gw", { selector: { istio: "edge" }, servers: [{ port: { number: 80, name: "http", protocol: "HTTP" }, hosts: ["*"] }] }, "edge");
    const other = doc("Gateway", "internal-gw", { selector: { istio: "ingressgateway" }, servers: [{ port: { number: 80, name: "http", protocol: "HTTP" }, hosts: ["*"] }] }, "edge");
    const result = await build(
      doc("GatewayConfig", "isthmus", { gatewayLabels: { istio: "edge" } }, "istio-system"),
      selected,
      other,
      virtualService("both", ["a.example.com"], [direct("a")], { gateways: ["edge/edge-gw", "edge/internal-gw"] }),
    );
    expect(served(result.snapshot!)).toEqual({ "a.example.com": ["a"] });
    expect(warnings(result)).toEqual([expect.stringMatching(/Gateway\/edge\/internal-gw: spec\.selector: not selected by GatewayConfig gatewayLabels/)]);
  });

  it("treats gatewayLabels: {} as unset: every Gateway applies, as the settings read it", async () => {
    const result = await build(
      doc("GatewayConfig", "isthmus", { gatewayLabels: {} }, "istio-system"),
      doc("Gateway", "gw", { selector: { istio: "ingressgateway" }, servers: [{ port: { number: 80, name: "http", protocol: "HTTP" }, hosts: ["a.example.com"] }] }, "edge"),
      virtualService("a", ["a.example.com"], [direct("a")], { gateways: ["edge/gw"] }),
    );
    expect(warnings(result)).toEqual([]);
    expect(served(result.snapshot!)).toEqual({ "a.example.com": ["a"] });
    expect(result.snapshot?.settings.gatewayLabels).toBeUndefined();
  });

  it("treats gatewayLabels: {} as unset for policy selectors: Istio's ingress gateway labels select the gateway", async () => {
    const result = await build(
      doc("GatewayConfig", "isthmus", { gatewayLabels: {} }, "istio-system"),
      doc("AuthorizationPolicy", "deny-all", { selector: { matchLabels: { istio: "ingressgateway" } }, action: "DENY", rules: [{}] }, "istio-system"),
      virtualService("a", ["a.example.com"], [direct("a")]),
    );
    expect(warnings(result)).toEqual([]);
    const runtime = hydrate(result.snapshot!);
    const { response } = await runPipeline(new Request("http://a.example.com/"), runtime, pipelineDeps());
    expect(response.status).toBe(403);
  });
});

describe("several VirtualServices for one host", () => {
  const at = (d: Doc, creationTimestamp: string): Doc => ({ ...d, metadata: { ...d.metadata, creationTimestamp } });

  it("merge in creation order, each keeping its own order, with catch-all routes moved last", async () => {
    const older = virtualService("older", ["app.example.com"], [direct("older /a", { match: [{ uri: { prefix: "/a" } }] }), direct("older catch-all")]);
    const newer = virtualService("newer", ["app.example.com"], [direct("newer /b", { match: [{ uri: { prefix: "/b" } }] }), direct("newer /c", { match: [{ uri: { exact: "/c" } }] })]);
    (older.metadata as Record<string, unknown>).creationTimestamp = "2024-01-01T00:00:00Z";
    (newer.metadata as Record<string, unknown>).creationTimestamp = "2024-06-01T00:00:00Z";
    const snapshot = await snapshotOf(newer, older);
    expect(served(snapshot)).toEqual({ "app.example.com": ["older /a", "newer /b", "newer /c", "older catch-all"] });
  });

  it("break creation-time ties by name, then namespace, not by file order (Istio's sortConfigByCreationTime)", async () => {
    const same = "2024-01-01T00:00:00Z";
    const snapshot = await snapshotOf(
      at(virtualService("b", ["app.example.com"], [direct("b", { match: [{ uri: { prefix: "/b" } }] })], {}, "x"), same),
      at(virtualService("a", ["app.example.com"], [direct("a in y", { match: [{ uri: { prefix: "/ay" } }] })], {}, "y"), same),
      at(virtualService("a", ["app.example.com"], [direct("a in x", { match: [{ uri: { prefix: "/ax" } }] })], {}, "x"), same),
    );
    expect(served(snapshot)).toEqual({ "app.example.com": ["a in x", "a in y", "b"] });
    // Without timestamps (zero time in Istio) the name decides too.
    const untimed = await snapshotOf(
      virtualService("z", ["app.example.com"], [direct("z", { match: [{ uri: { prefix: "/z" } }] })]),
      virtualService("m", ["app.example.com"], [direct("m", { match: [{ uri: { prefix: "/m" } }] })]),
    );
    expect(served(untimed)).toEqual({ "app.example.com": ["m", "z"] });
  });

  it("compare creation times as times, not as strings", async () => {
    const snapshot = await snapshotOf(
      // 00:00:00.5Z is later than 00:00:00Z, though "." sorts before "Z"; 01:00:00+02:00 is 23:00 the day before.
      at(virtualService("a", ["app.example.com"], [direct("fraction", { match: [{ uri: { prefix: "/f" } }] })]), "2024-01-01T00:00:00.5Z"),
      at(virtualService("b", ["app.example.com"], [direct("whole", { match: [{ uri: { prefix: "/w" } }] })]), "2024-01-01T00:00:00Z"),
      at(virtualService("c", ["app.example.com"], [direct("offset", { match: [{ uri: { prefix: "/o" } }] })]), "2024-01-01T01:00:00+02:00"),
    );
    expect(served(snapshot)).toEqual({ "app.example.com": ["offset", "whole", "fraction"] });
  });

  it("moves only the catch-all match of a rule, not its other match blocks (Istio sorts Envoy routes)", async () => {
    const first = virtualService("first", ["app.example.com"], [direct("first", { match: [{ uri: { prefix: "/api" } }, { uri: { prefix: "/" } }] })]);
    const second = virtualService("second", ["app.example.com"], [direct("second", { match: [{ uri: { prefix: "/api/v2" } }] })]);
    const snapshot = await snapshotOf(first, second);
    const vh = snapshot.virtualHosts[0]!;
    expect(vh.routes.map((r) => [r.match.uri?.type === "prefix" ? r.match.uri.value : "", served(snapshot)["app.example.com"]?.[vh.routes.indexOf(r)]])).toEqual([
      ["/api", "first"],
      ["/api/v2", "second"],
      ["/", "first"],
    ]);
  });

  it("share compiled rules between the hosts of one VirtualService", async () => {
    const snapshot = await snapshotOf(virtualService("v", ["a.example.com", "b.example.com"], [direct("v")]));
    expect(snapshot.rules).toHaveLength(1);
    expect(snapshot.virtualHosts.map((v) => v.routes[0]?.rule)).toEqual([0, 0]);
  });
});

describe("ServiceEntry default routes", () => {
  it("route a MESH_EXTERNAL host no VirtualService covers to its service", async () => {
    const snapshot = await snapshotOf(serviceEntry("httpbin", ["httpbin.org"]), internal);
    expect(served(snapshot)).toEqual({ "httpbin.org": ["→httpbin.org"] });
    expect(snapshot.rules[0]).toMatchObject({ source: "ServiceEntry/default/httpbin" });
    expect(snapshot.virtualHosts[0]?.routes).toEqual([{ name: "", rule: 0, match: {} }]);
  });

  it("are not made for MESH_INTERNAL hosts or hosts a VirtualService covers", async () => {
    const snapshot = await snapshotOf(
      internal,
      serviceEntry("covered", ["api.example.com"]),
      serviceEntry("by-wildcard", ["files.example.org"]),
      virtualService("v", ["api.example.com", "*.example.org"], [{ route: [{ destination: { host: "app.internal" } }] }]),
    );
    expect(served(snapshot)).toEqual({ "api.example.com": ["→app.internal"], "*.example.org": ["→app.internal"] });
  });

  it("match the port the client addressed (its Host header's) for a multi-port service, and connect to the request's host for a wildcard one", async () => {
    const snapshot = await snapshotOf(
      serviceEntry("multi", ["multi.example.com"], { ports: [{ number: 80, name: "http" }, { number: 443, name: "https", protocol: "HTTPS" }] }),
      serviceEntry("wild", ["*.wild.example.com"], { resolution: "NONE" }),
    );
    const multi = snapshot.virtualHosts.find((v) => v.name === "multi.example.com");
    expect(multi?.routes.map((r) => r.match)).toEqual([{ hostPort: 80 }, { hostPort: 443 }]);
    expect(snapshot.clusters["outbound|80||*.wild.example.com"]).toMatchObject({ dynamicAddress: true, endpoints: [{ address: "", port: 80, labels: {}, weight: 1 }] });
  });
});

describe("the host table", () => {
  it("files exact, suffix and prefix patterns and *, longest wildcard first", async () => {
    // One VirtualService per host: Istio refuses hosts of one VirtualService that overlap ("*" covers them all).
    const hosts = ["*", "a.example.com", "*.example.com", "*.api.example.com", "api.*", "api.v1.*"];
    const snapshot = await snapshotOf(...hosts.map((h, i) => virtualService(`v${i}`, [h], [direct(`v${i}`)])));
    const name = (i: number | undefined) => (i === undefined ? undefined : snapshot.virtualHosts[i]?.name);
    expect(Object.fromEntries(Object.entries(snapshot.hosts.exact).map(([k, v]) => [k, name(v)]))).toEqual({ "a.example.com": "a.example.com" });
    expect(snapshot.hosts.suffix.map(([s, i]) => [s, name(i)])).toEqual([
      [".api.example.com", "*.api.example.com"],
      [".example.com", "*.example.com"],
    ]);
    expect(snapshot.hosts.prefix.map(([p, i]) => [p, name(i)])).toEqual([
      ["api.v1.", "api.v1.*"],
      ["api.", "api.*"],
    ]);
    expect(name(snapshot.hosts.any)).toBe("*");
  });
});

describe("gateway references", () => {
  it("resolveGatewayName: name, ./name, ns/name, name.ns, name.ns.svc.cluster.local and mesh", () => {
    expect(resolveGatewayName("public", "shop")).toBe("shop/public");
    expect(resolveGatewayName("./public", "shop")).toBe("shop/public");
    expect(resolveGatewayName("edge/public", "shop")).toBe("edge/public");
    expect(resolveGatewayName("public.edge", "shop")).toBe("edge/public");
    expect(resolveGatewayName("public.edge.svc.cluster.local", "shop")).toBe("edge/public");
    expect(resolveGatewayName("mesh", "shop")).toBe("mesh");
  });
});

describe("host patterns", () => {
  it("hostMatches: exact, *.suffix (at least one label), prefix.* and *", () => {
    expect(hostMatches("*", "anything.example.com")).toBe(true);
    expect(hostMatches("*.example.com", "a.example.com")).toBe(true);
    expect(hostMatches("*.example.com", "a.b.example.com")).toBe(true);
    expect(hostMatches("*.example.com", "example.com")).toBe(false);
    expect(hostMatches("*.example.com", "*.a.example.com")).toBe(true);
    expect(hostMatches("*.a.example.com", "*.example.com")).toBe(false);
    expect(hostMatches("api.*", "api.example.com")).toBe(true);
    expect(hostMatches("api.*", "api.")).toBe(false);
    expect(hostMatches("a.example.com", "b.example.com")).toBe(false);
  });

  it("intersectHosts returns the more specific pattern, or nothing", () => {
    expect(intersectHosts("*.example.com", "api.example.com")).toBe("api.example.com");
    expect(intersectHosts("api.example.com", "*")).toBe("api.example.com");
    expect(intersectHosts("*.example.com", "*.api.example.com")).toBe("*.api.example.com");
    expect(intersectHosts("a.example.com", "b.example.com")).toBeUndefined();
  });
});
