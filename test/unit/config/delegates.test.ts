/**
 * Delegate VirtualServices (Istio's `http[].delegate`): where the merged
 * rules go, how root and delegate matches merge or conflict, what the root
 * rule lends, visibility (exportTo), Istio's validation of roots and
 * delegates, and problems reported where they are written.
 */
import { describe, expect, it } from "vitest";
import { matchConflict, mergeMatch, mergeRoute, stringMatchConflict } from "../../../src/config/compile/delegate-merge.ts";
import type { Snapshot } from "../../../src/config/snapshot.ts";
import { runPipeline } from "../../../src/gateway/pipeline.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import { build, doc, errors, pipelineDeps, serviceEntry, snapshotOf, virtualService, warnings, type Doc } from "../support.ts";

const direct = (body: string, extra: Record<string, unknown> = {}) => ({ directResponse: { status: 200, body: { string: body } }, ...extra });
const prefix = (p: string) => ({ uri: { prefix: p } });
/** A delegate: a VirtualService without hosts. */
const delegate = (name: string, http: unknown[], namespace = "team", extra: Record<string, unknown> = {}): Doc => doc("VirtualService", name, { http, ...extra }, namespace);
const root = (http: unknown[], extra: Record<string, unknown> = {}, namespace = "edge"): Doc => virtualService("root", ["app.example.com"], http, extra, namespace);

/** The bodies (or destinations) of app.example.com's routes, in order. */
function served(snapshot: Snapshot, host = "app.example.com"): string[] {
  const vh = snapshot.virtualHosts.find((v) => v.name === host);
  return (vh?.routes ?? []).map((r) => {
    const action = snapshot.rules[r.rule]?.action;
    if (action?.type === "direct") return action.body ?? "";
    if (action?.type === "route") return `→${action.destinations.map((d) => d.host).join(",")}`;
    return action?.type ?? "?";
  });
}

/** What a GET for this path on app.example.com gets back. */
async function get(snapshot: Snapshot, path: string, headers: Record<string, string> = {}): Promise<string> {
  const { response } = await runPipeline(new Request(`http://app.example.com${path}`, { headers }), hydrate(snapshot), pipelineDeps());
  return `${response.status} ${await response.text()}`;
}

describe("merged rules", () => {
  it("replace the delegating rule in place, in the delegate's order", async () => {
    const snapshot = await snapshotOf(
      root([direct("root /a", { match: [prefix("/a")] }), { match: [prefix("/shop")], delegate: { name: "shop", namespace: "team" } }, direct("root catch-all")]),
      delegate("shop", [direct("cart", { match: [prefix("/shop/cart")] }), direct("shop")]),
    );
    expect(served(snapshot)).toEqual(["root /a", "cart", "shop", "root catch-all"]);
    expect(await get(snapshot, "/shop/cart/1")).toBe("200 cart");
    expect(await get(snapshot, "/shop/x")).toBe("200 shop");
    // The delegate's catch-all applies only under the root rule's match.
    expect(await get(snapshot, "/elsewhere")).toBe("200 root catch-all");
    expect(await get(snapshot, "/a")).toBe("200 root /a");
  });

  it("resolve the delegate's short destination names in its own namespace, and the delegate namespace defaults to the root's", async () => {
    const snapshot = await snapshotOf(
      serviceEntry("cart", ["cart.team.svc.cluster.local"], { location: "MESH_INTERNAL" }, "team"),
      serviceEntry("cart", ["cart.edge.svc.cluster.local"], { location: "MESH_INTERNAL" }, "edge"),
      root([
        { match: [prefix("/team")], delegate: { name: "team-routes", namespace: "team" } },
        { match: [prefix("/edge")], delegate: { name: "edge-routes" } },
      ]),
      delegate("team-routes", [{ route: [{ destination: { host: "cart" } }] }]),
      delegate("edge-routes", [{ route: [{ destination: { host: "cart" } }] }], "edge"),
    );
    expect(served(snapshot)).toEqual(["→cart.team.svc.cluster.local", "→cart.edge.svc.cluster.local"]);
  });

  it("carry the delegate's identity and joined names (root-delegate), as Istio names them", async () => {
    const snapshot = await snapshotOf(
      root([{ name: "shop", match: [{ ...prefix("/shop"), name: "m" }], delegate: { name: "shop", namespace: "team" } }]),
      delegate("shop", [direct("cart", { name: "cart", match: [{ ...prefix("/shop/cart"), name: "c" }] }), direct("rest")]),
    );
    const rules = snapshot.virtualHosts[0]?.routes.map((r) => [r.name, snapshot.rules[r.rule]?.source, snapshot.rules[r.rule]?.index, snapshot.rules[r.rule]?.name]);
    expect(rules).toEqual([
      ["shop-cart.m-c", "VirtualService/team/shop", 0, "shop-cart"],
      ["shop.m", "VirtualService/team/shop", 1, "shop"],
    ]);
  });

  it("take the root rule's timeout, retries, headers, rewrite, fault, CORS and mirroring where the delegate sets none", async () => {
    const lent = {
      timeout: "3s",
      retries: { attempts: 1, retryOn: "5xx" },
      headers: { response: { set: { "x-root": "1" } } },
      rewrite: { uri: "/v2" },
      fault: { delay: { fixedDelay: "1s", percentage: { value: 50 } } },
      corsPolicy: { allowOrigins: [{ exact: "https://a.example" }] },
      mirror: { host: "mirror" },
    };
    const snapshot = await snapshotOf(
      serviceEntry("a", ["a.example.com"], { location: "MESH_INTERNAL" }),
      serviceEntry("mirror", ["mirror.edge.svc.cluster.local"], { location: "MESH_INTERNAL" }, "edge"),
      root([{ match: [prefix("/v1")], delegate: { name: "d", namespace: "team" }, ...lent }]),
      delegate("d", [
        { match: [prefix("/v1/own")], route: [{ destination: { host: "a.example.com" } }], timeout: "9s", headers: { response: { set: { "x-own": "1" } } } },
        { route: [{ destination: { host: "a.example.com" } }] },
      ]),
    );
    const [own, inherited] = snapshot.rules;
    expect(own?.timeoutMs).toBe(9000);
    expect(own?.headers?.response?.set).toEqual([["x-own", "1"]]);
    expect(own?.retry?.attempts).toBe(1);
    expect(inherited?.timeoutMs).toBe(3000);
    expect(inherited?.headers?.response?.set).toEqual([["x-root", "1"]]);
    expect(inherited?.rewrite?.uri).toBe("/v2");
    expect(inherited?.fault).toBeDefined();
    expect(inherited?.cors).toBeDefined();
    // The root's short mirror host is the root namespace's service, not the delegate's.
    expect(inherited?.mirrors?.map((m) => m.host)).toEqual(["mirror.edge.svc.cluster.local"]);
  });

  it("take the root's isthmus.dev annotations where the delegate has none", async () => {
    const annotated = root([{ delegate: { name: "d", namespace: "team" } }]);
    (annotated.metadata as Record<string, unknown>).annotations = { "isthmus.dev/retry-non-idempotent": "true" };
    const snapshot = await snapshotOf(serviceEntry("a", ["a.example.com"], { location: "MESH_INTERNAL" }), annotated, delegate("d", [{ route: [{ destination: { host: "a.example.com" } }] }]));
    expect(snapshot.rules[0]?.retryNonIdempotent).toBe(true);
  });

  it("stop at a catch-all in the merged list, as Istio does, and say which rule is unreachable", async () => {
    const result = await build(root([{ delegate: { name: "d", namespace: "team" } }, direct("after")]), delegate("d", [direct("everything")]));
    expect(served(result.snapshot!)).toEqual(["everything"]);
    expect(warnings(result)).toEqual([expect.stringMatching(/VirtualService\/edge\/root: spec\.http\[1\]: unreachable: VirtualService\/team\/d spec\.http\[0\] before it matches every request/)]);
  });
});

describe("match merging", () => {
  it("joins headers: a delegate rule applies only when the root's conditions hold too", async () => {
    const snapshot = await snapshotOf(
      root([{ match: [{ ...prefix("/"), headers: { "x-team": { exact: "blue" } } }], delegate: { name: "d", namespace: "team" } }, direct("fallback")]),
      delegate("d", [direct("beta", { match: [{ headers: { "x-beta": { exact: "1" } } }] }), direct("blue")]),
    );
    expect(await get(snapshot, "/", { "x-team": "blue", "x-beta": "1" })).toBe("200 beta");
    expect(await get(snapshot, "/", { "x-team": "blue" })).toBe("200 blue");
    // The delegate's own block (x-beta only) does not escape the root's x-team condition.
    expect(await get(snapshot, "/", { "x-beta": "1" })).toBe("200 fallback");
  });

  it("merges a delegate block with every root block it fits", async () => {
    const snapshot = await snapshotOf(
      root([{ match: [prefix("/a"), prefix("/b")], delegate: { name: "d", namespace: "team" } }]),
      delegate("d", [direct("get", { match: [{ method: { exact: "GET" } }] })]),
    );
    expect(snapshot.virtualHosts[0]?.routes.map((r) => r.match)).toEqual([
      { uri: { type: "prefix", value: "/a" }, method: { type: "exact", value: "GET" } },
      { uri: { type: "prefix", value: "/b" }, method: { type: "exact", value: "GET" } },
    ]);
  });

  it("drops a delegate rule whose block falls outside the root's, with a warning on the delegate", async () => {
    const result = await build(
      root([{ match: [prefix("/shop")], delegate: { name: "d", namespace: "team" } }]),
      delegate("d", [direct("admin", { match: [prefix("/admin")] }), direct("regex", { match: [{ uri: { regex: "/shop/.*" } }] }), direct("shop", { match: [prefix("/shop/x")] })]),
    );
    expect(served(result.snapshot!)).toEqual(["shop"]);
    expect(warnings(result)).toEqual([
      expect.stringMatching(/VirtualService\/team\/d: spec\.http\[0\]\.match: never applies through VirtualService\/edge\/root spec\.http\[0\]: .*as Istio drops it/),
      expect.stringMatching(/VirtualService\/team\/d: spec\.http\[1\]\.match: never applies through/),
    ]);
  });

  it("follows Istio's conflict rules for string matches", () => {
    const cases: [Record<string, string> | undefined, Record<string, string> | undefined, boolean][] = [
      [undefined, { exact: "/a" }, false],
      [{ prefix: "/a" }, undefined, false],
      [{ prefix: "/a" }, { prefix: "/a/b" }, false],
      [{ prefix: "/a/b" }, { prefix: "/a" }, true],
      [{ prefix: "/a" }, { exact: "/a/x" }, false],
      [{ prefix: "/a" }, { exact: "/b" }, true],
      [{ exact: "/a" }, { exact: "/a" }, false],
      [{ exact: "/a" }, { exact: "/b" }, true],
      [{ exact: "/a" }, { prefix: "/a" }, true],
      [{ regex: ".*" }, { exact: "/a" }, true],
      [{ prefix: "/" }, { regex: "/a.*" }, true],
      [{ regex: "a" }, { regex: "a" }, true],
    ];
    for (const [parent, leaf, conflict] of cases) expect([parent, leaf, stringMatchConflict(parent, leaf)]).toEqual([parent, leaf, conflict]);
  });

  it("keeps the root's withoutHeaders exclusions: a delegate may not restate one more narrowly", async () => {
    expect(matchConflict({ withoutHeaders: { "x-env": { prefix: "prod" } } }, { withoutHeaders: { "x-env": { prefix: "prod-eu" } } })).toBe(true);
    expect(matchConflict({ withoutHeaders: { "x-env": { prefix: "prod" } } }, { withoutHeaders: { "x-env": { prefix: "prod" } } })).toBe(false);
    expect(matchConflict({ withoutHeaders: { "x-env": { prefix: "prod" } } }, { withoutHeaders: { "x-other": { exact: "1" } } })).toBe(false);
    const snapshot = await snapshotOf(
      root([{ match: [{ ...prefix("/"), withoutHeaders: { "x-env": { prefix: "prod" } } }], delegate: { name: "d", namespace: "team" } }, direct("root")]),
      delegate("d", [direct("narrowed", { match: [{ withoutHeaders: { "x-env": { prefix: "prod-eu" } } }] }), direct("delegate")]),
    );
    expect(await get(snapshot, "/", { "x-env": "prod-us" })).toBe("200 root");
    expect(await get(snapshot, "/", { "x-env": "dev" })).toBe("200 delegate");
  });

  it("needs the same ignoreUriCase, a port and gateways within the root's, and the root's source conditions", () => {
    expect(matchConflict({ ignoreUriCase: true }, {})).toBe(true);
    expect(matchConflict({ port: 80 }, { port: 443 })).toBe(true);
    expect(matchConflict({ port: 80 }, {})).toBe(false);
    expect(matchConflict({ gateways: ["edge/a", "edge/b"] }, { gateways: ["edge/a"] })).toBe(false);
    expect(matchConflict({ gateways: ["edge/a"] }, { gateways: ["edge/a", "edge/b"] })).toBe(true);
    expect(matchConflict({ sourceNamespace: "edge" }, {})).toBe(true);
    expect(matchConflict({ sourceLabels: { app: "gw" } }, { sourceLabels: { app: "other" } })).toBe(true);
    expect(matchConflict({ headers: { a: { exact: "1" } } }, { headers: { a: { exact: "2" } } })).toBe(true);
    expect(matchConflict({ headers: { a: { exact: "1" } } }, { headers: { b: { exact: "2" } } })).toBe(false);
  });

  it("merges blocks field by field, the delegate's winning", () => {
    expect(
      mergeMatch(
        { name: "r", uri: { prefix: "/a" }, method: { exact: "GET" }, headers: { a: { exact: "1" } }, port: 80, gateways: ["edge/gw"] },
        { name: "d", uri: { prefix: "/a/b" }, headers: { b: { exact: "2" } } },
      ),
    ).toEqual({ name: "r-d", uri: { prefix: "/a/b" }, method: { exact: "GET" }, headers: { a: { exact: "1" }, b: { exact: "2" } }, port: 80, gateways: ["edge/gw"] });
  });

  it("lends mirroring whole, never mixing mirror with mirrors", () => {
    const target = { host: "m" };
    expect(mergeRoute({ mirror: target, mirrorPercentage: { value: 5 } }, {})?.route).toEqual({ mirror: target, mirrorPercentage: { value: 5 } });
    expect(mergeRoute({ mirror: target }, { mirrors: [{ destination: { host: "n" } }] })?.route).toEqual({ mirrors: [{ destination: { host: "n" } }] });
    expect(mergeRoute({ mirrors: [{ destination: target }] }, {})?.route).toEqual({ mirrors: [{ destination: target }] });
    // Istio lends the percentage to a delegate mirror without one.
    expect(mergeRoute({ mirror: target, mirrorPercentage: { value: 5 } }, { mirror: { host: "n" } })?.route).toEqual({ mirror: { host: "n" }, mirrorPercentage: { value: 5 } });
  });
});

describe("finding the delegate", () => {
  it("skips the rule with a warning when the delegate does not exist, or has hosts", async () => {
    const result = await build(
      root([{ match: [prefix("/a")], delegate: { name: "nope", namespace: "team" } }, { match: [prefix("/b")], delegate: { name: "real", namespace: "team" } }, direct("rest")]),
      virtualService("real", ["other.example.com"], [direct("real")], {}, "team"),
    );
    expect(served(result.snapshot!)).toEqual(["rest"]);
    expect(warnings(result)).toEqual([
      expect.stringMatching(/VirtualService\/edge\/root: spec\.http\[0\]\.delegate: no delegate VirtualService team\/nope \(one without hosts\) is defined; this rule is skipped, as Istio skips it/),
      expect.stringMatching(/VirtualService\/edge\/root: spec\.http\[1\]\.delegate: no delegate VirtualService team\/real/),
    ]);
  });

  it("honours the delegate's exportTo, and does not warn that it is ignored", async () => {
    const result = await build(
      root([{ match: [prefix("/private")], delegate: { name: "private", namespace: "team" } }, { match: [prefix("/shared")], delegate: { name: "shared", namespace: "team" } }, direct("rest")]),
      delegate("private", [direct("private")], "team", { exportTo: ["."] }),
      delegate("shared", [direct("shared")], "team", { exportTo: ["edge"] }),
    );
    expect(served(result.snapshot!)).toEqual(["shared", "rest"]);
    expect(warnings(result)).toEqual([
      expect.stringMatching(/VirtualService\/edge\/root: spec\.http\[0\]\.delegate: VirtualService\/team\/private is not exported to namespace edge \(exportTo: \[\.\]\); this rule is skipped/),
      expect.stringMatching(/VirtualService\/team\/private: spec: no VirtualService served at the edge delegates to this one/),
    ]);
  });

  it("warns about a delegate nothing delegates to", async () => {
    const result = await build(root([direct("root")]), delegate("lonely", [direct("x")]));
    expect(warnings(result)).toEqual([expect.stringMatching(/VirtualService\/team\/lonely: spec: no VirtualService served at the edge delegates to this one \(a VirtualService without hosts is a delegate\), so it serves nothing/)]);
  });
});

describe("Istio's validation of roots and delegates", () => {
  it("ignores a delegating rule's direct response with a warning, as Istio's merge drops it", async () => {
    const result = await build(root([{ delegate: { name: "d", namespace: "team" }, directResponse: { status: 404 } }]), delegate("d", [direct("d")]));
    expect(served(result.snapshot!)).toEqual(["d"]);
    expect(warnings(result)).toEqual([expect.stringMatching(/VirtualService\/edge\/root: spec\.http\[0\]\.directResponse: ignored next to delegate/)]);
  });

  it("refuses a delegating rule with its own route or redirect, and one without a name", async () => {
    const result = await build(
      root([
        { delegate: { name: "d", namespace: "team" }, route: [{ destination: { host: "a.example.com" } }] },
        { match: [prefix("/r")], delegate: { name: "d", namespace: "team" }, redirect: { uri: "/x" } },
        { match: [prefix("/n")], delegate: { namespace: "team" } },
      ]),
      delegate("d", [direct("d")]),
    );
    expect(errors(result)).toEqual([
      expect.stringMatching(/VirtualService\/edge\/root: spec\.http\[0\]\.route: expected only one of route, redirect, directResponse or delegate, got delegate and route$/),
      expect.stringMatching(/VirtualService\/edge\/root: spec\.http\[1\]\.redirect: expected only one of route, redirect, directResponse or delegate, got delegate and redirect$/),
      expect.stringMatching(/VirtualService\/edge\/root: spec\.http\[2\]\.delegate\.name: expected the name of the VirtualService to delegate to$/),
    ]);
  });

  it("refuses a delegate with gateways, tcp or tls routes, or delegating again", async () => {
    const result = await build(
      root([{ delegate: { name: "d", namespace: "team" } }]),
      delegate("d", [direct("d", { match: [prefix("/a")] }), { delegate: { name: "e" } }], "team", { gateways: ["edge/gw"], tcp: [{ route: [{ destination: { host: "a" } }] }] }),
    );
    expect(errors(result)).toEqual([
      expect.stringMatching(/VirtualService\/team\/d: spec\.http\[1\]\.delegate: a delegate VirtualService cannot delegate again/),
      expect.stringMatching(/VirtualService\/team\/d: spec\.gateways: a delegate VirtualService \(one without hosts\) must have no gateways/),
      expect.stringMatching(/VirtualService\/team\/d: spec\.tcp: a delegate VirtualService \(one without hosts\) must have no tcp routes/),
    ]);
  });

  it("still refuses a VirtualService with neither hosts nor rules", async () => {
    const result = await build(delegate("empty", [], "team"));
    // Istio: "http, tcp or tls must be provided in virtual service", delegate or not.
    expect(errors(result)).toEqual([expect.stringMatching(/VirtualService\/team\/empty: spec: expected http, tcp or tls routes/)]);
  });
});

describe("problems in merged rules", () => {
  it("are reported on the delegate's field, naming the root that delegates to it", async () => {
    const result = await build(root([{ match: [prefix("/a")], delegate: { name: "d", namespace: "team" } }]), delegate("d", [{ route: [{ destination: { host: "missing" } }] }]));
    expect(errors(result)).toEqual([
      expect.stringMatching(
        /VirtualService\/team\/d: spec\.http\[0\]\.route\[0\]\.destination\.host: expected a host declared by a ServiceEntry, got "missing" .*\(delegated to by VirtualService\/edge\/root spec\.http\[0\]\)$/,
      ),
    ]);
  });

  it("are reported on the root's field for what it lent", async () => {
    const result = await build(
      root([{ match: [{ uri: { prefix: "/a" }, headers: { "x-a": { regex: "(" } } }], delegate: { name: "d", namespace: "team" }, headers: { request: { set: { "x-b": "50%" } } } }]),
      delegate("d", [direct("d", { match: [prefix("/a/1"), prefix("/a/2")] }), direct("e")]),
    );
    // Each is reported once, though two merged blocks and two merged rules carry them.
    expect(errors(result)).toEqual([
      expect.stringMatching(/VirtualService\/edge\/root: spec\.http\[0\]\.match\[0\]\.headers\["x-a"\]\.regex: expected an RE2 regular expression: .*\(lent to the rules of VirtualService\/team\/d, here its spec\.http\[0\]\)$/),
      expect.stringMatching(/VirtualService\/edge\/root: spec\.http\[0\]\.headers\.request\.set\["x-b"\]: expected a literal value .*\(lent to the rules of VirtualService\/team\/d, here its spec\.http\[0\]\)$/),
    ]);
  });

  it("leave out what a redirect or direct response cannot carry (rewrite, CORS), and lend them the fault, as Istio does", async () => {
    const snapshot = await snapshotOf(
      root([{ delegate: { name: "d", namespace: "team" }, rewrite: { uri: "/b" }, fault: { abort: { httpStatus: 503, percentage: { value: 100 } } }, corsPolicy: { allowOrigins: [{ exact: "https://a.example" }] }, timeout: "2s" }]),
      delegate("d", [direct("d", { match: [prefix("/d")] }), { redirect: { uri: "/elsewhere" } }]),
    );
    for (const rule of snapshot.rules) expect([rule.rewrite, rule.cors, rule.timeoutMs, rule.fault?.abort?.status]).toEqual([undefined, undefined, 2000, 503]);
    // A platform's abort on the root rule stops the delegated direct responses too.
    expect(await get(snapshot, "/d")).toBe("503 fault filter abort");
  });
});
