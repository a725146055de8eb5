/**
 * Header operations as Envoy applies them: remove, then set, then add;
 * destination operations after the route's for a single destination,
 * before them for weighted destinations.
 */
import { describe, expect, it } from "vitest";
import type { HeadersDef } from "../../../src/config/snapshot.ts";
import { applyHeaderOps, orderedOps } from "../../../src/routing/header-ops.ts";

describe("applyHeaderOps", () => {
  it("removes, then sets (overwrites), then adds (appends)", () => {
    const headers = new Headers({ "x-old": "1", "x-keep": "k", "x-set": "before", "x-add": "first" });
    applyHeaderOps(headers, { remove: ["x-old", "x-set"], set: [["x-set", "after"]], add: [["x-add", "second"], ["x-new", "n"]] });
    expect(Object.fromEntries(headers)).toEqual({ "x-keep": "k", "x-set": "after", "x-add": "first, second", "x-new": "n" });
  });

  it("does nothing without operations", () => {
    const headers = new Headers({ a: "1" });
    applyHeaderOps(headers, undefined);
    applyHeaderOps(headers, {});
    expect(Object.fromEntries(headers)).toEqual({ a: "1" });
  });
});

describe("orderedOps", () => {
  const route: HeadersDef = { request: { set: [["x-who", "route"]] }, response: { add: [["x-r", "route"]] } };
  const destination: HeadersDef = { request: { set: [["x-who", "destination"]] }, response: { add: [["x-r", "destination"]] } };
  const apply = (side: "request" | "response", weighted: boolean) => {
    const headers = new Headers();
    for (const ops of orderedOps(side, route, destination, weighted)) applyHeaderOps(headers, ops);
    return Object.fromEntries(headers);
  };

  it("lets the destination win for a single destination", () => {
    expect(apply("request", false)).toEqual({ "x-who": "destination" });
    expect(apply("response", false)).toEqual({ "x-r": "route, destination" });
  });

  it("lets the route win for weighted destinations (Envoy evaluates weighted-cluster headers first)", () => {
    expect(apply("request", true)).toEqual({ "x-who": "route" });
    expect(apply("response", true)).toEqual({ "x-r": "destination, route" });
  });

  it("tolerates missing levels", () => {
    expect(orderedOps("request", undefined, undefined, false)).toEqual([undefined, undefined]);
    expect(orderedOps("response", route, undefined, true)).toEqual([undefined, route.response]);
  });
});
