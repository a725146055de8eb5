/**
 * The pure policy core inside workerd: CIDRs, Istio value forms, path
 * templates, the requestPrincipals matcher and the rule semantics of the
 * engine (ANDs, ORs, negations, absent attributes, empty rules).
 */
import { describe, expect, it } from "vitest";
import { cidrContains, parseCidr, parseIp } from "../../../src/authz/policy/cidr.ts";
import { anyValue, istioValue } from "../../../src/authz/policy/value-match.ts";
import { isPathTemplate, pathTemplateProblem, pathTemplateRegex } from "../../../src/authz/policy/path-template.ts";
import { compileCheck, compilePolicy, NO_ALLOW_MATCHED, requestPrincipalMatcher, verdict, type PolicyInput } from "../../../src/authz/policy/engine.ts";
import type { PolicyDef } from "../../../src/config/snapshot.ts";
import type { RequestIdentity } from "../../../src/authz/identity.ts";

describe("CIDR", () => {
  const contains = (range: string, ip: string) => cidrContains(parseCidr(range)!, parseIp(ip)!);
  it("matches IPv4 and IPv6 ranges, bare addresses and v4-mapped v6 addresses", () => {
    expect(contains("10.0.0.0/8", "10.200.3.4")).toBe(true);
    expect(contains("10.0.0.0/8", "11.0.0.1")).toBe(false);
    expect(contains("192.168.1.1", "192.168.1.1")).toBe(true);
    expect(contains("192.168.1.0/25", "192.168.1.200")).toBe(false);
    expect(contains("0.0.0.0/0", "8.8.8.8")).toBe(true);
    expect(contains("2001:db8::/32", "2001:db8:1::1")).toBe(true);
    expect(contains("2001:db8::/32", "2001:db9::1")).toBe(false);
    expect(contains("::1", "::1")).toBe(true);
    expect(contains("10.0.0.0/8", "::ffff:10.1.2.3")).toBe(true);
    expect(contains("10.0.0.0/8", "2001:db8::1")).toBe(false);
  });
  it("rejects malformed input", () => {
    for (const bad of ["10.0.0.256", "10.0.0", "10.0.0.0/33", "01.2.3.4", "1::2::3", "::1/129", "abc", "10.0.0.0/-1", ""]) expect(parseCidr(bad), bad).toBeUndefined();
  });
});

describe("Istio value forms", () => {
  it("exact, prefix*, *suffix and * (non-empty)", () => {
    expect(istioValue("/a")("/a")).toBe(true);
    expect(istioValue("/a")("/a/")).toBe(false);
    expect(istioValue("/a*")("/abc")).toBe(true);
    expect(istioValue("*.json")("/x.json")).toBe(true);
    expect(istioValue("*")("x")).toBe(true);
    expect(istioValue("*")("")).toBe(false);
    expect(istioValue("Example.COM", true)("example.com")).toBe(true);
    // Case-insensitive matchers lower each value they are given, whatever they were given before.
    const host = istioValue("Example.COM", true);
    const suffix = istioValue("*.Example.com", true);
    expect([host("EXAMPLE.com"), suffix("EXAMPLE.com"), host("other.com"), suffix("A.EXAMPLE.COM"), host("Example.Com"), host("example.com.evil")]).toEqual([true, false, false, true, true, false]);
    expect(istioValue("/a*b")("/a*b")).toBe(true);
    expect(istioValue("/a*b")("/axb")).toBe(false);
  });

  it("a list matches when any of its values does, exact ones looked up together", () => {
    const values = ["GET", "/api/*", "*.json", "HEAD", "/a*b"];
    const m = anyValue(values);
    const inputs = ["GET", "HEAD", "get", "/api/x", "/x.json", "/a*b", "/axb", "", "POST"];
    // The same answers as trying each value's own matcher in turn.
    expect(inputs.map(m)).toEqual(inputs.map((v) => values.some((p) => istioValue(p)(v))));
    expect(inputs.map(m)).toEqual([true, true, false, true, true, true, false, false, false]);
    expect(anyValue(["*"])("")).toBe(false);
    expect(anyValue(["*", "x"])("y")).toBe(true);
    expect(anyValue([])("x")).toBe(false);
    expect(anyValue(["a", "a"])("a")).toBe(true);
    const hosts = anyValue(["Shop.Example.com", "*.Example.COM", "api.example.com"], true);
    expect(["SHOP.example.com", "x.EXAMPLE.com", "API.Example.Com", "example.com", "shop.example.org"].map(hosts)).toEqual([true, true, true, false, false]);
  });
});

describe("path templates", () => {
  it("{*} is one non-empty segment, {**} the rest", () => {
    const m = (t: string, p: string) => pathTemplateRegex(t).test(p);
    expect(m("/foo/{*}", "/foo/bar")).toBe(true);
    expect(m("/foo/{*}", "/foo/bar/baz")).toBe(false);
    expect(m("/foo/{*}", "/foo/")).toBe(false);
    expect(m("/foo/{**}", "/foo/")).toBe(true);
    expect(m("/foo/{**}", "/foo/a/b.txt")).toBe(true);
    expect(m("/foo/{*}/bar/{**}", "/foo/buzz/bar/")).toBe(true);
    expect(m("/foo/{*}/bar/{**}", "/foo/buzz/bar/baz")).toBe(true);
    expect(m("/a.b/{*}", "/aXb/c")).toBe(false);
  });
  it("are validated as Istio validates them", () => {
    expect(isPathTemplate("/a/{*}")).toBe(true);
    expect(isPathTemplate("/a/*")).toBe(false);
    expect(pathTemplateProblem("/foo/{*}")).toBeUndefined();
    expect(pathTemplateProblem("/*/baz/{*}")).toMatch(/only allowed/);
    expect(pathTemplateProblem("/**/baz/{*}")).toMatch(/only allowed/);
    expect(pathTemplateProblem("/{**}/foo/{*}")).toMatch(/last operator/);
    expect(pathTemplateProblem("/foo/{*}.txt")).toMatch(/only allowed/);
  });
});

describe("requestPrincipals", () => {
  const id = (iss?: string, sub?: string): RequestIdentity => ({ principal: `${iss}/${sub}`, audiences: [], claims: {}, ...(iss ? { iss } : {}), ...(sub ? { sub } : {}) });
  it("splits at the last / because issuers are URLs", () => {
    expect(requestPrincipalMatcher("https://idp.example/realms/x/alice")(id("https://idp.example/realms/x", "alice"))).toBe(true);
    expect(requestPrincipalMatcher("https://idp.example/realms/x/alice")(id("https://idp.example/realms", "x/alice"))).toBe(false);
  });
  it('"*" needs both iss and sub', () => {
    expect(requestPrincipalMatcher("*")(id("i", "s"))).toBe(true);
    expect(requestPrincipalMatcher("*")(id("i"))).toBe(false);
    expect(requestPrincipalMatcher("*")(id(undefined, "s"))).toBe(false);
  });
  it("prefix and suffix forms", () => {
    expect(requestPrincipalMatcher("i/adm*")(id("i", "admin"))).toBe(true);
    expect(requestPrincipalMatcher("i/*")(id("i", "x"))).toBe(true);
    expect(requestPrincipalMatcher("i/*")(id("j", "x"))).toBe(false);
    expect(requestPrincipalMatcher("*/alice")(id("any", "alice"))).toBe(true);
    expect(requestPrincipalMatcher("*.example/alice")(id("https://a.example", "alice"))).toBe(true);
    expect(requestPrincipalMatcher("issuer-a*")(id("issuer-abc", "bob"))).toBe(true);
    // A value with a slash always splits there, as in Istio: this is iss "https:/" plus a sub prefix.
    expect(requestPrincipalMatcher("https://a*")(id("https://a.example", "bob"))).toBe(false);
  });
});

describe("the engine", () => {
  const input = (over: Partial<PolicyInput["facts"]> = {}, identity?: RequestIdentity): PolicyInput => ({
    facts: { method: "GET", scheme: "http", host: "h.test", port: 80, authority: "h.test", path: "/p", query: "", headers: new Headers({ "x-a": "1" }), remoteIp: "10.0.0.1", ...over },
    ...(identity ? { identity } : {}),
  });
  const policy = (rules: PolicyDef["rules"]): PolicyDef => ({ source: "AuthorizationPolicy/ns/p", action: "ALLOW", dryRun: false, rules });

  it("ANDs the from, to and when of a rule, ORs within from and within to, and ORs the rules", () => {
    const rule = (path: string, method: string, header: string): PolicyDef["rules"][number] => ({
      from: [[{ attribute: "remote.ip", values: ["10.0.0.0/8"] }], [{ attribute: "remote.ip", values: ["192.0.2.1"] }]],
      to: [[{ attribute: "request.path", values: [path] }], [{ attribute: "request.method", values: [method] }]],
      when: [{ attribute: "request.headers", key: "x-a", values: [header] }],
    });
    const p = compilePolicy(policy([rule("/nope", "PUT", "1"), rule("/p", "DELETE", "2")]));
    const two = new Headers({ "x-a": "2" });
    // The first rule's `to` misses and the second rule's `when` does.
    expect(p.matches(input())).toBe(false);
    expect(p.matches(input({ method: "PUT" }))).toBe(true);
    expect(p.matches(input({ path: "/q", method: "PUT" }))).toBe(true);
    expect(p.matches(input({ headers: two }))).toBe(true);
    expect(p.matches(input({ path: "/q", headers: two }))).toBe(false);
    expect(p.matches(input({ headers: new Headers({ "x-a": "3" }) }))).toBe(false);
    expect(p.matches(input({ headers: two, remoteIp: "203.0.113.9" }))).toBe(false);
    expect(p.matches(input({ headers: two, remoteIp: "192.0.2.1" }))).toBe(true);
  });

  it("decides as Istio: the first matching DENY in layer order, then any layer whose ALLOW policies all miss", () => {
    const on = (path: string, action: PolicyDef["action"], name: string) =>
      compilePolicy({ source: `AuthorizationPolicy/ns/${name}`, action, dryRun: false, rules: [{ from: [], to: [[{ attribute: "request.path", values: [path] }]], when: [] }] });
    const gateway = { deny: [on("/admin", "DENY", "g-deny")], allow: [on("/p", "ALLOW", "g-allow"), on("/q", "ALLOW", "g-allow-q")] };
    const destination = { deny: [on("/p", "DENY", "d-deny"), on("/p", "DENY", "d-deny-2")], allow: [] };
    const open = { deny: [], allow: [] };
    expect(verdict([gateway, open], input())).toBeUndefined();
    expect(verdict([gateway, open], input({ path: "/q" }))).toBeUndefined();
    expect(verdict([gateway, open], input({ path: "/r" }))).toBe(NO_ALLOW_MATCHED);
    expect(verdict([gateway, destination], input())).toBe(destination.deny[0]);
    // A DENY anywhere wins over an ALLOW that did not match in an earlier layer.
    expect(verdict([{ deny: [], allow: [on("/x", "ALLOW", "a")] }, destination], input())).toBe(destination.deny[0]);
    expect(verdict([gateway, destination], input({ path: "/admin" }))).toBe(gateway.deny[0]);
    expect(verdict([], input())).toBeUndefined();
  });

  it("a policy without rules matches nothing; an empty rule matches everything", () => {
    expect(compilePolicy(policy([])).matches(input())).toBe(false);
    expect(compilePolicy(policy([{ from: [], to: [], when: [] }])).matches(input())).toBe(true);
  });

  it("ANDs the fields of an operation and ORs the operations", () => {
    const p = compilePolicy(
      policy([
        {
          from: [],
          to: [
            [
              { attribute: "request.method", values: ["GET"] },
              { attribute: "request.path", values: ["/p"] },
            ],
            [{ attribute: "request.path", values: ["/other"] }],
          ],
          when: [],
        },
      ]),
    );
    expect(p.matches(input())).toBe(true);
    expect(p.matches(input({ method: "POST" }))).toBe(false);
    expect(p.matches(input({ method: "POST", path: "/other" }))).toBe(true);
  });

  it("values and notValues on one field are ANDed", () => {
    const p = compilePolicy(policy([{ from: [], to: [[{ attribute: "request.path", values: ["/api/*"], notValues: ["/api/admin*"] }]], when: [] }]));
    expect(p.matches(input({ path: "/api/x" }))).toBe(true);
    expect(p.matches(input({ path: "/api/admin/x" }))).toBe(false);
  });

  it("a notValues-only check holds when the attribute is absent", () => {
    const p = compilePolicy(policy([{ from: [], to: [], when: [{ attribute: "request.auth.claims", key: ["group"], notValues: ["x"] }] }]));
    expect(p.matches(input())).toBe(true);
    expect(p.matches(input({}, { principal: "i/s", iss: "i", sub: "s", audiences: [], claims: { group: "x" } }))).toBe(false);
  });

  it("reads claims as own properties only", () => {
    const p = compilePolicy(policy([{ from: [], to: [], when: [{ attribute: "request.auth.claims", key: ["constructor", "name"], values: ["Object"] }] }]));
    expect(p.matches(input({}, { principal: "", audiences: [], claims: {} }))).toBe(false);
  });

  it("matches the client IP against CIDRs, and request headers by lower-case name", () => {
    const p = compilePolicy(
      policy([
        {
          from: [[{ attribute: "source.ip", values: ["10.0.0.0/8"] }]],
          to: [],
          when: [{ attribute: "request.headers", key: "x-a", values: ["1"] }],
        },
      ]),
    );
    expect(p.matches(input())).toBe(true);
    expect(p.matches(input({ remoteIp: "192.168.0.1" }))).toBe(false);
    expect(p.matches(input({ remoteIp: "not an ip" }))).toBe(false);
  });

  it("reads ipBlocks (source.ip) from the direct peer and remoteIpBlocks (remote.ip) from the client trusted proxies report, as Istio does", () => {
    const check = (attribute: "source.ip" | "remote.ip") => compilePolicy(policy([{ from: [[{ attribute, values: ["198.51.100.0/24"] }]], to: [], when: [] }]));
    const behindProxy = input({ remoteIp: "198.51.100.7", peerIp: "10.0.0.9" });
    expect(check("remote.ip").matches(behindProxy)).toBe(true);
    expect(check("source.ip").matches(behindProxy)).toBe(false);
    expect(check("source.ip").matches(input({ remoteIp: "10.0.0.9", peerIp: "198.51.100.7" }))).toBe(true);
    // Without trusted proxies there is one address, and both read it.
    const direct = input({ remoteIp: "198.51.100.7" });
    expect(check("remote.ip").matches(direct)).toBe(true);
    expect(check("source.ip").matches(direct)).toBe(true);
  });
});

describe("request.hostname (RateLimitPolicy match.hosts)", () => {
  const input = (authority: string, host: string) => ({ facts: { authority, host } }) as unknown as PolicyInput;
  it("matches a value without a port on any port, a value with one on that port only; request.host keeps Istio's rule", () => {
    const hostname = compileCheck({ attribute: "request.hostname", values: ["rl.test", "*.api.test", "pinned.test:8080"] });
    expect(hostname(input("rl.test", "rl.test"))).toBe(true);
    expect(hostname(input("rl.test:80", "rl.test"))).toBe(true);
    expect(hostname(input("a.api.test:443", "a.api.test"))).toBe(true);
    expect(hostname(input("pinned.test:8080", "pinned.test"))).toBe(true);
    expect(hostname(input("pinned.test", "pinned.test"))).toBe(false);
    expect(hostname(input("other.test:80", "other.test"))).toBe(false);
    const notHosts = compileCheck({ attribute: "request.hostname", notValues: ["rl.test"] });
    expect(notHosts(input("rl.test:80", "rl.test"))).toBe(false);
    // AuthorizationPolicy hosts, as Istio: a Host with a port only matches a value with that port.
    expect(compileCheck({ attribute: "request.host", values: ["rl.test"] })(input("rl.test:80", "rl.test"))).toBe(false);
  });
});
