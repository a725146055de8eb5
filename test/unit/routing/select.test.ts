/**
 * Selection: host → virtual host (Envoy's precedence), first matching
 * route, weighted destination with an injected draw.
 */
import { describe, expect, it } from "vitest";
import type { DestinationDef, RuleDef } from "../../../src/config/snapshot.ts";
import { hydrate, type HostIndex, type Rule } from "../../../src/routing/hydrate.ts";
import { findVirtualHost, lookupHost, pickDestination, selectRoute } from "../../../src/routing/select.ts";
import { facts, serviceEntry, snapshotOf, virtualService } from "../support.ts";

describe("lookupHost", () => {
  const index: HostIndex = {
    exact: new Map([
      ["api.example.com", 0],
      ["api.v1.example.com", 9],
    ]),
    suffix: new Map([
      [".example.com", 1],
      [".v1.example.com", 2],
    ]),
    prefix: new Map([
      ["api.", 3],
      ["api.v1.", 4],
    ]),
    any: 5,
  };

  it("prefers exact, then the longest suffix wildcard, then the longest prefix wildcard, then *", () => {
    expect(lookupHost(index, "api.example.com")).toBe(0);
    expect(lookupHost(index, "api.v1.example.com")).toBe(9);
    expect(lookupHost(index, "www.example.com")).toBe(1);
    expect(lookupHost(index, "x.v1.example.com")).toBe(2);
    expect(lookupHost(index, "deep.x.v1.example.com")).toBe(2);
    expect(lookupHost(index, "api.v1.example.org")).toBe(4);
    expect(lookupHost(index, "api.example.org")).toBe(3);
    expect(lookupHost(index, "other.org")).toBe(5);
  });

  it("does not let a wildcard match the bare suffix or prefix", () => {
    const onlyWildcards: HostIndex = { exact: new Map(), suffix: new Map([[".example.com", 1]]), prefix: new Map([["api.", 3]]) };
    expect(lookupHost(onlyWildcards, "example.com")).toBeUndefined();
    expect(lookupHost(onlyWildcards, "api.")).toBeUndefined();
    expect(lookupHost(onlyWildcards, "api")).toBeUndefined();
    expect(lookupHost(onlyWildcards, "a.example.com")).toBe(1);
  });

  it("finds nothing without a * virtual host", () => {
    expect(lookupHost({ exact: new Map(), suffix: new Map(), prefix: new Map() }, "a.example.com")).toBeUndefined();
  });
});

describe("selectRoute and findVirtualHost on a compiled snapshot", () => {
  it("returns the first route whose match holds, across hosts and wildcards", async () => {
    const snapshot = hydrate(
      await snapshotOf(
        virtualService("v", ["app.example.com"], [
          { name: "canary", match: [{ uri: { prefix: "/api" }, headers: { "x-canary": { exact: "1" } } }], directResponse: { status: 201 } },
          { name: "api", match: [{ uri: { prefix: "/api" } }], directResponse: { status: 202 } },
          { name: "home", match: [{ uri: { exact: "/" } }], directResponse: { status: 203 } },
        ]),
        virtualService("w", ["*.example.com"], [{ name: "wild", directResponse: { status: 204 } }]),
      ),
    );
    const route = (host: string, path: string, headers: Record<string, string> = {}) => {
      const vh = findVirtualHost(snapshot, host);
      return vh ? (selectRoute(vh, facts({ host, path, headers }))?.name ?? "no route") : "no host";
    };
    expect(route("app.example.com", "/api/x", { "x-canary": "1" })).toBe("canary");
    expect(route("app.example.com", "/api/x")).toBe("api");
    expect(route("app.example.com", "/")).toBe("home");
    expect(route("app.example.com", "/other")).toBe("no route");
    expect(route("www.example.com", "/anything")).toBe("wild");
    expect(route("example.org", "/")).toBe("no host");
  });
});

describe("pickDestination", () => {
  const dest = (host: string, weight: number): DestinationDef => ({ host, port: 80, cluster: `outbound|80||${host}`, weight });
  const ruleOf = async (weights: number[]): Promise<Rule> => {
    const hosts = weights.map((_, i) => `s${i}.example.com`);
    const snapshot = await snapshotOf(
      ...hosts.map((h, i) => serviceEntry(`s${i}`, [h], { location: "MESH_INTERNAL" })),
      virtualService("v", ["app.example.com"], [{ route: hosts.map((host, i) => ({ destination: { host }, weight: weights[i] })) }]),
    );
    return hydrate(snapshot).virtualHosts[0]!.routes[0]!.rule;
  };

  it("splits the draw by relative weight", async () => {
    const rule = await ruleOf([1, 3]);
    expect(pickDestination(rule, 0)?.host).toBe("s0.example.com");
    expect(pickDestination(rule, 0.2499)?.host).toBe("s0.example.com");
    expect(pickDestination(rule, 0.25)?.host).toBe("s1.example.com");
    expect(pickDestination(rule, 0.9999)?.host).toBe("s1.example.com");
  });

  it("never picks a dropped weight-0 destination and gives a lone destination everything", async () => {
    const rule = await ruleOf([0, 5, 0]);
    for (const draw of [0, 0.5, 0.999]) expect(pickDestination(rule, draw)?.host).toBe("s1.example.com");
    const lone = await ruleOf([0]);
    expect(pickDestination(lone, 0.7)?.host).toBe("s0.example.com");
  });

  it("follows cumulative weights of a hand-built rule, and returns nothing without destinations", () => {
    const def: RuleDef = { source: "x", index: 0, action: { type: "route", destinations: [dest("a", 10), dest("b", 20), dest("c", 70)] } };
    const rule: Rule = { def, destinations: [dest("a", 10), dest("b", 20), dest("c", 70)], totalWeight: 100 };
    expect([0.05, 0.1, 0.29, 0.3, 0.99].map((d) => pickDestination(rule, d)?.host)).toEqual(["a", "b", "b", "c", "c"]);
    expect(pickDestination({ def, destinations: [], totalWeight: 0 }, 0.5)).toBeUndefined();
  });
});
