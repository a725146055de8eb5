/**
 * The stored (packed) layout of a Snapshot: each virtual host's routes and
 * rules as JSON text of their own, parsed when a request first reaches the
 * host. The layout must change nothing a request sees.
 */
import { describe, expect, it } from "vitest";
import type { Snapshot } from "../../../src/config/snapshot.ts";
import { PACKED_FORMAT, packSnapshot, unpackSnapshot, type PackedSnapshot } from "../../../src/config/snapshot-packing.ts";
import { compiledSnapshot, hydrate } from "../../../src/routing/hydrate.ts";
import { findVirtualHost, selectRoute } from "../../../src/routing/select.ts";
import { doc, facts, serviceEntry, snapshotOf, virtualService } from "../support.ts";

/** Several hosts, one VirtualService serving two of them (shared rules), wildcards, a default route, and rules with every kind of part hydration compiles. */
const config = () =>
  snapshotOf(
    serviceEntry("a", ["a.internal"], { location: "MESH_INTERNAL" }),
    serviceEntry("b", ["b.internal"], { location: "MESH_INTERNAL" }),
    serviceEntry("ext", ["api.partner.com"], { location: "MESH_EXTERNAL", ports: [{ number: 80, name: "http", protocol: "HTTP" }], resolution: "DNS" }),
    virtualService("shop", ["shop.example.com", "store.example.com"], [
      { match: [{ uri: { regex: "/v[0-9]+/items/.*" } }], rewrite: { uriRegexRewrite: { match: "^/v([0-9]+)/(.*)$", rewrite: "/\\2?v=\\1" } }, route: [{ destination: { host: "a.internal" } }] },
      { match: [{ headers: { "x-tenant": { exact: "blue" } } }], route: [{ destination: { host: "b.internal" } }] },
      {
        match: [{ uri: { prefix: "/split" } }],
        route: [
          { destination: { host: "a.internal" }, weight: 30 },
          { destination: { host: "b.internal" }, weight: 70 },
        ],
        corsPolicy: { allowOrigins: [{ exact: "https://app.example.com" }], allowMethods: ["GET"] },
      },
      { route: [{ destination: { host: "a.internal" } }] },
    ]),
    virtualService("wild", ["*.example.org"], [{ match: [{ uri: { exact: "/ping" } }], directResponse: { status: 204 } }, { route: [{ destination: { host: "b.internal" } }] }]),
    doc("GatewayConfig", "g", { configRefreshInterval: "2s" }, "istio-system"),
  );

/** The stored form as an isolate reads it: written as JSON, parsed back. */
const stored = (snapshot: Snapshot): PackedSnapshot => JSON.parse(JSON.stringify(packSnapshot(snapshot))) as PackedSnapshot;

const requests = [
  facts({ host: "shop.example.com", path: "/v2/items/7" }),
  facts({ host: "store.example.com", path: "/v2/items/7" }),
  facts({ host: "shop.example.com", path: "/", headers: { "x-tenant": "blue" } }),
  facts({ host: "store.example.com", path: "/split/x" }),
  facts({ host: "shop.example.com", path: "/anything" }),
  facts({ host: "x.example.org", path: "/ping" }),
  facts({ host: "y.example.org", path: "/other" }),
  facts({ host: "api.partner.com", path: "/v1" }),
];

describe("the packed snapshot layout", () => {
  it("gives the compiled snapshot back exactly", async () => {
    const snapshot = await config();
    const packed = stored(snapshot);
    expect(packed.format).toBe(PACKED_FORMAT);
    expect(packed.version).toBe(snapshot.version);
    expect(unpackSnapshot(packed)).toEqual(snapshot);
    // A plain (format 1) snapshot is already the compiled form.
    expect(unpackSnapshot(snapshot)).toBe(snapshot);
  });

  it("keeps what every request needs eager, and each virtual host's routes and rules as text of its own", async () => {
    const snapshot = await config();
    const packed = stored(snapshot);
    expect("rules" in packed).toBe(false);
    expect(packed.hosts).toEqual(snapshot.hosts);
    expect(packed.clusters).toEqual(snapshot.clusters);
    expect(packed.settings).toEqual(snapshot.settings);
    expect(packed.virtualHosts.map((vh) => vh.name)).toEqual(snapshot.virtualHosts.map((vh) => vh.name));
    for (const vh of packed.virtualHosts) expect(typeof vh.packed).toBe("string");
    // The two hosts of one VirtualService name the same rules of the compiled snapshot.
    const ids = (name: string) => packed.virtualHosts.find((vh) => vh.name === name)!.ruleIds;
    expect(ids("shop.example.com")).toEqual(ids("store.example.com"));
    expect(ids("shop.example.com")).toHaveLength(4);
  });

  it("routes every request as the compiled snapshot does", async () => {
    const snapshot = await config();
    const plain = hydrate(snapshot);
    const packed = hydrate(stored(snapshot));
    for (const request of requests) {
      const a = findVirtualHost(plain, request.host);
      const b = findVirtualHost(packed, request.host);
      expect(b?.name, request.host).toBe(a?.name);
      expect(a, request.host).toBeDefined();
      const ra = selectRoute(a!, request);
      const rb = selectRoute(b!, request);
      expect(rb?.name).toBe(ra?.name);
      expect(rb?.order).toBe(ra?.order);
      expect(rb?.rule.def).toEqual(ra?.rule.def);
      expect(rb?.rule.destinations).toEqual(ra?.rule.destinations);
      expect(rb?.rule.totalWeight).toBe(ra?.rule.totalWeight);
      expect(rb?.uri).toEqual(ra?.uri);
    }
    // The regex rewrite and CORS were hydrated from the packed text.
    const regexRoute = selectRoute(findVirtualHost(packed, "shop.example.com")!, requests[0]!)!;
    expect(regexRoute.rule.uriRegex?.replaceAll("/v2/items/7", regexRoute.rule.def.rewrite!.uriRegex!.rewrite)).toBe("/items/7?v=2");
    expect(selectRoute(findVirtualHost(packed, "store.example.com")!, requests[3]!)?.rule.cors).toBeDefined();
  });

  it("hydrates a rule once for every host that shares it, as the compiled layout does", async () => {
    const snapshot = await config();
    for (const runtime of [hydrate(snapshot), hydrate(stored(snapshot))]) {
      const shop = findVirtualHost(runtime, "shop.example.com")!;
      const store = findVirtualHost(runtime, "store.example.com")!;
      expect(shop).not.toBe(store);
      shop.routes.forEach((route, i) => expect(store.routes[i]!.rule).toBe(route.rule));
    }
  });

  it("gives the admin endpoint the compiled snapshot, before and after requests reached its hosts", async () => {
    const snapshot = await config();
    for (const runtime of [hydrate(snapshot), hydrate(stored(snapshot))]) {
      expect(compiledSnapshot(runtime)).toEqual(snapshot);
      selectRoute(findVirtualHost(runtime, "store.example.com")!, requests[1]!);
      expect(compiledSnapshot(runtime)).toEqual(snapshot);
    }
  });

  it("lets go of a virtual host's text once a request has reached it", async () => {
    const snapshot = await config();
    const packed = stored(snapshot);
    const runtime = hydrate(packed);
    expect(findVirtualHost(runtime, "shop.example.com")!.routes).toHaveLength(4);
    // The built host answers from what it parsed; the text it was read from is no longer consulted.
    for (const vh of packed.virtualHosts) if (vh.name === "shop.example.com") vh.packed = "{ not json";
    expect(compiledSnapshot(runtime)).toEqual(snapshot);
    expect(() => hydrate(packed).virtualHosts.find((vh) => vh.name === "shop.example.com")!.routes).toThrow(SyntaxError);
  });

  it("parses a virtual host's text only when a request first reaches it", async () => {
    const packed = stored(await config());
    const wild = packed.virtualHosts.find((vh) => vh.name === "*.example.org")!;
    wild.packed = "{ not json";
    // Loading reads none of the hosts' texts: the broken one fails only the host it belongs to.
    const runtime = hydrate(packed);
    expect(selectRoute(findVirtualHost(runtime, "shop.example.com")!, requests[4]!)?.order).toBe(3);
    expect(() => findVirtualHost(runtime, "x.example.org")!.routes).toThrow(SyntaxError);
  });
});
