/**
 * Runtime matchers: StringMatch and the whole HTTPMatchRequest, with
 * Istio/Envoy's surprising cases (withoutHeaders on a missing header,
 * presence matches, `?k` with exact "", ignoreUriCase vs regex, claims).
 */
import { describe, expect, it } from "vitest";
import type { MatchDef, StringMatchDef } from "../../../src/config/snapshot.ts";
import { queryParam, type RequestFacts } from "../../../src/gateway/facts.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import { matchesRequest, matchesString } from "../../../src/routing/match.ts";
import { facts, snapshotOf, virtualService } from "../support.ts";

const stringMatcher = (def: StringMatchDef) => (value: string | undefined) => matchesString(def, value);
const requestMatcher = (def: MatchDef) => (f: RequestFacts) => matchesRequest(def, f);

describe("matchesString", () => {
  it("exact, prefix and regex, case-sensitive unless asked", () => {
    expect(stringMatcher({ type: "exact", value: "/a" })("/a")).toBe(true);
    expect(stringMatcher({ type: "exact", value: "/a" })("/A")).toBe(false);
    expect(stringMatcher({ type: "exact", value: "/a", ignoreCase: true })("/A")).toBe(true);
    expect(stringMatcher({ type: "prefix", value: "/api" })("/apiary")).toBe(true);
    expect(stringMatcher({ type: "prefix", value: "/api" })("/API/x")).toBe(false);
    expect(stringMatcher({ type: "prefix", value: "/API", ignoreCase: true })("/api/x")).toBe(true);
    expect(stringMatcher({ type: "regex", value: "/v[0-9]" })("/v1")).toBe(true);
    expect(stringMatcher({ type: "regex", value: "/v[0-9]" })("/v1/x")).toBe(false);
  });

  it("keeps answering ignore-case matches from the definition's value lowered once", () => {
    const exact = stringMatcher({ type: "exact", value: "/Cart", ignoreCase: true });
    const prefix = stringMatcher({ type: "prefix", value: "/API/", ignoreCase: true });
    for (let i = 0; i < 3; i++) {
      expect([exact("/cart"), exact("/CART"), exact("/carts"), exact(undefined)]).toEqual([true, true, false, false]);
      expect([prefix("/api/x"), prefix("/Api/"), prefix("/apix")]).toEqual([true, true, false]);
    }
  });

  it("never matches an absent value, except exact/prefix \"\" on a present empty one", () => {
    for (const def of [
      { type: "exact", value: "" },
      { type: "prefix", value: "" },
      { type: "regex", value: ".*" },
      { type: "present" },
    ] as const) {
      expect(stringMatcher(def)(undefined)).toBe(false);
      expect(stringMatcher(def)("")).toBe(true);
    }
  });
});

describe("matchesRequest", () => {
  it("matches everything when empty", () => {
    expect(requestMatcher({})(facts())).toBe(true);
  });

  it("ANDs every field: uri, scheme, method, authority, port, headers and query", () => {
    const def: MatchDef = {
      uri: { type: "prefix", value: "/api" },
      scheme: { type: "exact", value: "https" },
      method: { type: "regex", value: "GET|HEAD" },
      authority: { type: "exact", value: "app.example.com:8443" },
      port: 8443,
      headers: [{ name: "x-user", match: { type: "exact", value: "jason" } }],
      queryParams: [{ name: "v", match: { type: "regex", value: "[0-9]+" } }],
    };
    const ok = facts({ path: "/api/x", scheme: "https", method: "HEAD", authority: "app.example.com:8443", port: 8443, headers: { "x-user": "jason" }, query: "v=2" });
    const m = requestMatcher(def);
    expect(m(ok)).toBe(true);
    expect(m({ ...ok, path: "/other" })).toBe(false);
    expect(m({ ...ok, scheme: "http" })).toBe(false);
    expect(m({ ...ok, method: "POST" })).toBe(false);
    // The authority match sees the port: app.example.com is not app.example.com:8443.
    expect(m({ ...ok, authority: "app.example.com" })).toBe(false);
    expect(m({ ...ok, port: 443 })).toBe(false);
    expect(m({ ...ok, headers: new Headers({ "x-user": "mallory" }) })).toBe(false);
    expect(m({ ...ok, headers: new Headers() })).toBe(false);
    expect(m({ ...ok, query: "v=two" })).toBe(false);
    expect(m({ ...ok, query: "" })).toBe(false);
  });

  it("compares a default route's hostPort with the Host header's port (the listener's when it names none), and port with the listener's only", () => {
    const m = requestMatcher({ hostPort: 8443 });
    const on443 = facts({ scheme: "https", authority: "api.example.com:8443", port: 443 });
    expect(m(on443)).toBe(true);
    expect(m({ ...on443, authority: "api.example.com:9443" })).toBe(false);
    expect(m({ ...on443, authority: "api.example.com" })).toBe(false);
    expect(requestMatcher({ hostPort: 443 })({ ...on443, authority: "api.example.com" })).toBe(true);
    // A VirtualService's `port` is the listener's: the Host header's port cannot stand in for it.
    expect(requestMatcher({ port: 8443 })(on443)).toBe(false);
  });

  it("matches several values of one header as the comma-joined list", () => {
    const headers = new Headers();
    headers.append("x-group", "a");
    headers.append("x-group", "b");
    expect(requestMatcher({ headers: [{ name: "x-group", match: { type: "exact", value: "a, b" } }] })(facts({ headers }))).toBe(true);
    expect(requestMatcher({ headers: [{ name: "x-group", match: { type: "exact", value: "a" } }] })(facts({ headers }))).toBe(false);
  });

  it("header presence: any value, even empty, but not absence", () => {
    const m = requestMatcher({ headers: [{ name: "x-debug", match: { type: "present" } }] });
    expect(m(facts({ headers: { "x-debug": "" } }))).toBe(true);
    expect(m(facts({ headers: { "x-debug": "1" } }))).toBe(true);
    expect(m(facts())).toBe(false);
  });

  it("withoutHeaders treats a missing header as \"\" (so it passes exact \"v\" but not exact \"\" or a prefix \"\")", () => {
    const notV = requestMatcher({ withoutHeaders: [{ name: "x", match: { type: "exact", value: "v" } }] });
    expect(notV(facts())).toBe(true);
    expect(notV(facts({ headers: { x: "other" } }))).toBe(true);
    expect(notV(facts({ headers: { x: "v" } }))).toBe(false);
    const notEmpty = requestMatcher({ withoutHeaders: [{ name: "x", match: { type: "exact", value: "" } }] });
    expect(notEmpty(facts())).toBe(false);
    expect(notEmpty(facts({ headers: { x: "set" } }))).toBe(true);
    const notRegex = requestMatcher({ withoutHeaders: [{ name: "x", match: { type: "regex", value: "a.*" } }] });
    expect(notRegex(facts())).toBe(true);
    expect(notRegex(facts({ headers: { x: "abc" } }))).toBe(false);
  });

  it("withoutHeaders presence passes only when the header is missing", () => {
    const m = requestMatcher({ withoutHeaders: [{ name: "x-internal", match: { type: "present" } }] });
    expect(m(facts())).toBe(true);
    expect(m(facts({ headers: { "x-internal": "" } }))).toBe(false);
  });

  it("query parameters: exact \"\" matches ?k, presence, first value, compared as written (Envoy's router does not decode them)", () => {
    const empty = requestMatcher({ queryParams: [{ name: "debug", match: { type: "exact", value: "" } }] });
    expect(empty(facts({ query: "debug" }))).toBe(true);
    expect(empty(facts({ query: "debug=" }))).toBe(true);
    expect(empty(facts({ query: "debug=1" }))).toBe(false);
    expect(empty(facts({ query: "" }))).toBe(false);
    const present = requestMatcher({ queryParams: [{ name: "debug", match: { type: "present" } }] });
    expect(present(facts({ query: "a=1&debug=0" }))).toBe(true);
    expect(present(facts({ query: "a=1&debugger=0" }))).toBe(false);
    expect(requestMatcher({ queryParams: [{ name: "q", match: { type: "exact", value: "a b/c" } }] })(facts({ query: "q=a+b%2Fc" }))).toBe(false);
    expect(requestMatcher({ queryParams: [{ name: "q", match: { type: "exact", value: "a+b%2Fc" } }] })(facts({ query: "q=a+b%2Fc" }))).toBe(true);
    expect(requestMatcher({ queryParams: [{ name: "debug", match: { type: "present" } }] })(facts({ query: "%64ebug=1" }))).toBe(false);
    expect(requestMatcher({ queryParams: [{ name: "id", match: { type: "regex", value: "\\d+$" } }] })(facts({ query: "id=a123" }))).toBe(false);
  });

  it("claims: a string claim, any string of a list claim, nested claims, and nothing without claims", () => {
    const groups = requestMatcher({ claims: [{ claim: ["groups"], match: { type: "exact", value: "admin" } }] });
    expect(groups(facts({ claims: { groups: ["dev", "admin"] } }))).toBe(true);
    expect(groups(facts({ claims: { groups: "admin" } }))).toBe(true);
    expect(groups(facts({ claims: { groups: ["dev"] } }))).toBe(false);
    expect(groups(facts({ claims: { groups: 1 } }))).toBe(false);
    expect(groups(facts())).toBe(false);
    const nested = requestMatcher({ claims: [{ claim: ["realm_access", "roles"], match: { type: "prefix", value: "ops-" } }] });
    expect(nested(facts({ claims: { realm_access: { roles: ["ops-admin"] } } }))).toBe(true);
    expect(nested(facts({ claims: { realm_access: ["roles"] } }))).toBe(false);
  });

  it("withoutHeaders on a claim: the claim must not match, and a request without it (or without a token) passes", () => {
    const notAdmin = requestMatcher({ withoutClaims: [{ claim: ["groups"], match: { type: "exact", value: "admin" } }] });
    expect(notAdmin(facts({ claims: { groups: ["dev", "admin"] } }))).toBe(false);
    expect(notAdmin(facts({ claims: { groups: ["dev"] } }))).toBe(true);
    expect(notAdmin(facts({ claims: {} }))).toBe(true);
    expect(notAdmin(facts({}))).toBe(true);
  });
});

describe("ignoreUriCase", () => {
  it("applies to exact and prefix uri matches but not to regex ones", async () => {
    const snapshot = await snapshotOf(
      virtualService("v", ["app.example.com"], [
        { match: [{ uri: { prefix: "/Admin" }, ignoreUriCase: true }], directResponse: { status: 200 } },
        { match: [{ uri: { regex: "/Reports/.*" }, ignoreUriCase: true }], directResponse: { status: 201 } },
      ]),
    );
    const [prefix, regex] = hydrate(snapshot).virtualHosts[0]!.routes;
    expect(prefix!.matches(facts({ path: "/ADMIN/x" }))).toBe(true);
    expect(regex!.matches(facts({ path: "/Reports/1" }))).toBe(true);
    expect(regex!.matches(facts({ path: "/reports/1" }))).toBe(false);
  });
});

describe("queryParam", () => {
  it("returns the first value, \"\" for a bare key and undefined when absent", () => {
    expect(queryParam(facts({ query: "a=1&a=2" }), "a")).toBe("1");
    expect(queryParam(facts({ query: "a" }), "a")).toBe("");
    expect(queryParam(facts({ query: "b=1" }), "a")).toBeUndefined();
    expect(queryParam(facts({ query: "%61=x" }), "a")).toBe("x");
    expect(queryParam(facts({ query: "a=%E0%A4%A" }), "a")).toBe("%E0%A4%A");
  });
});
