/**
 * Snapshot → runtime objects, once per version per isolate.
 */
import { describe, expect, it } from "vitest";
import { hydrate, SnapshotFormatError } from "../../../src/routing/hydrate.ts";
import { findVirtualHost } from "../../../src/routing/select.ts";
import { serviceEntry, snapshotOf, virtualService } from "../support.ts";

describe("hydrate", () => {
  it("builds lookups, cumulative weights and compiled rewrites", async () => {
    const snapshot = await snapshotOf(
      serviceEntry("a", ["a.example.com"], { location: "MESH_INTERNAL" }),
      serviceEntry("b", ["b.example.com"], { location: "MESH_INTERNAL" }),
      virtualService("v", ["app.example.com", "*.example.org"], [
        {
          rewrite: { uriRegexRewrite: { match: "^/v([0-9]+)/(.*)$", rewrite: "/\\2?v=\\1" } },
          route: [
            { destination: { host: "a.example.com" }, weight: 20 },
            { destination: { host: "b.example.com" }, weight: 60 },
          ],
        },
      ]),
    );
    const runtime = hydrate(snapshot);
    expect(runtime.version).toBe(snapshot.version);
    expect(findVirtualHost(runtime, "app.example.com")?.name).toBe("app.example.com");
    expect(findVirtualHost(runtime, "x.example.org")?.name).toBe("*.example.org");
    const rule = runtime.virtualHosts[0]!.routes[0]!.rule;
    expect(rule.destinations.map((d) => [d.host, d.weight])).toEqual([["a.example.com", 20], ["b.example.com", 60]]);
    expect(rule.totalWeight).toBe(80);
    expect(rule.uriRegex?.replaceAll("/v3/users", rule.def.rewrite!.uriRegex!.rewrite)).toBe("/users?v=3");
    expect([...runtime.clusters.keys()].sort()).toEqual(["outbound|80||a.example.com", "outbound|80||b.example.com"]);
  });

  it("refuses a snapshot of another format with a message that says what to do", async () => {
    const snapshot = await snapshotOf(virtualService("v", ["app.example.com"], [{ directResponse: { status: 200 } }]));
    const future = { ...snapshot, format: 3 } as unknown as typeof snapshot;
    expect(() => hydrate(future)).toThrow(SnapshotFormatError);
    expect(() => hydrate(future)).toThrow(/snapshot format 3 is not supported by this gateway build \(it reads formats 1 and 2\); redeploy the Worker or re-apply with a matching CLI/);
  });

  it("builds a virtual host's routes only when a request first reaches it, and then keeps them", async () => {
    const snapshot = await snapshotOf(
      virtualService("v", ["a.example.com", "b.example.com"], [{ match: [{ uri: { regex: "/x/[0-9]+" } }], directResponse: { status: 200 } }]),
    );
    const runtime = hydrate(snapshot);
    const a = findVirtualHost(runtime, "a.example.com")!;
    const first = a.routes;
    expect(a.routes).toBe(first);
    expect(first[0]!.matches({ path: "/x/12" } as Parameters<(typeof first)[0]["matches"]>[0])).toBe(true);
  });

  it("makes a regex that does not compile (a snapshot not written by the CLI) match nothing instead of failing requests", async () => {
    const snapshot = await snapshotOf(virtualService("v", ["a.example.com"], [{ match: [{ uri: { regex: "/ok/.*" } }], directResponse: { status: 200 } }]));
    const broken = structuredClone(snapshot);
    broken.virtualHosts[0]!.routes[0]!.match.uri = { type: "regex", value: "(?=lookahead)" };
    const runtime = hydrate(broken);
    const route = findVirtualHost(runtime, "a.example.com")!.routes[0]!;
    expect(route.matches({ path: "(?=lookahead)" } as Parameters<typeof route.matches>[0])).toBe(false);
  });
});
