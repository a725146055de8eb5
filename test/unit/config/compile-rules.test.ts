/**
 * VirtualService http rules → rules and routes: weights, redirects, direct
 * responses, conflicting actions, rewrites, header operations, matchers.
 */
import { describe, expect, it } from "vitest";
import type { RuleDef, Snapshot } from "../../../src/config/snapshot.ts";
import { build, errors, serviceEntry, snapshotOf, virtualService, warnings } from "../support.ts";

// MESH_INTERNAL, so that the only rules are the VirtualService's (no default routes).
const se = serviceEntry("a", ["a.example.com"], { location: "MESH_INTERNAL" });
const seB = serviceEntry("b", ["b.example.com"], { location: "MESH_INTERNAL" });
const dest = (host = "a.example.com", extra: Record<string, unknown> = {}) => ({ destination: { host }, ...extra });

/** Builds one VirtualService (host app.example.com) with these rules next to the ServiceEntries a and b. */
const buildRules = (...http: unknown[]) => build(se, seB, virtualService("v", ["app.example.com"], http));
const compileRules = async (...http: unknown[]): Promise<Snapshot> => snapshotOf(se, seB, virtualService("v", ["app.example.com"], http));
/** Error lines without the file/line/resource prefix. */
const fieldErrors = async (...http: unknown[]) => errors(await buildRules(...http)).map((e) => e.replace(/^config\.yaml:\d+: error: VirtualService\/default\/v: /, ""));
const action = (rule: RuleDef | undefined) => rule?.action;

describe("weights", () => {
  it("gives a lone destination all the traffic, whatever its weight", async () => {
    for (const weight of [undefined, 0, 30]) {
      const snapshot = await compileRules({ route: [dest("a.example.com", weight === undefined ? {} : { weight })] });
      expect(action(snapshot.rules[0])).toEqual({ type: "route", destinations: [{ host: "a.example.com", port: 80, cluster: "outbound|80||a.example.com", weight: 100 }] });
    }
  });

  it("keeps relative weights (no sum-to-100 rule) and drops weight-0 destinations", async () => {
    const snapshot = await compileRules({ route: [dest("a.example.com", { weight: 1 }), dest("b.example.com", { weight: 0 }), dest("b.example.com", { weight: 3 })] });
    const a = action(snapshot.rules[0]);
    expect(a?.type === "route" && a.destinations.map((d) => [d.host, d.weight])).toEqual([
      ["a.example.com", 1],
      ["b.example.com", 3],
    ]);
  });

  it("rejects several destinations that all weigh 0", async () => {
    expect(await fieldErrors({ route: [dest(), dest("b.example.com", { weight: 0 })] })).toEqual(["spec.http[0].route: expected at least one destination with a weight > 0"]);
  });

  it("still checks a weight-0 destination's host", async () => {
    expect(await fieldErrors({ route: [dest(), dest("c.example.com", { weight: 0 })], })).toEqual([
      "spec.http[0].route: expected at least one destination with a weight > 0",
    ]);
    expect(await fieldErrors({ route: [dest("a.example.com", { weight: 1 }), dest("c.example.com", { weight: 0 })] })).toEqual([
      'spec.http[0].route[1].destination.host: expected a host declared by a ServiceEntry, got "c.example.com" (the edge only reaches origins listed as ServiceEntry endpoints)',
    ]);
  });

  it("rejects an empty route list", async () => {
    expect(await fieldErrors({ route: [] })).toEqual(["spec.http[0].route: expected at least one destination"]);
  });
});

describe("redirect", () => {
  it("defaults the status to 301 and keeps the fields it was given", async () => {
    const snapshot = await compileRules({ redirect: { uri: "/new", authority: "new.example.com" } });
    expect(action(snapshot.rules[0])).toEqual({ type: "redirect", redirect: { status: 301, uri: "/new", authority: "new.example.com" } });
  });

  it("accepts 301, 302, 303, 307 and 308 and rejects other codes", async () => {
    for (const code of [301, 302, 303, 307, 308]) {
      const snapshot = await compileRules({ redirect: { scheme: "https", redirectCode: code } });
      expect(action(snapshot.rules[0])).toEqual({ type: "redirect", redirect: { status: code, scheme: "https" } });
    }
    for (const code of [200, 300, 304, 404]) {
      expect(await fieldErrors({ redirect: { scheme: "https", redirectCode: code } })).toEqual([`spec.http[0].redirect.redirectCode: expected one of 301, 302, 303, 307, 308, got ${code}`]);
    }
  });

  it("needs something to change and a scheme of http or https", async () => {
    expect(await fieldErrors({ redirect: { redirectCode: 302 } })).toEqual(["spec.http[0].redirect: expected at least one of uri, prefixRewrite, authority (non-empty), scheme, port or derivePort"]);
    expect(await fieldErrors({ redirect: { scheme: "ftp" } })).toEqual(['spec.http[0].redirect.scheme: expected http or https, got "ftp"']);
  });

  it("reads an empty uri, prefixRewrite or authority as unset, as Istio does", async () => {
    const snapshot = await compileRules({ match: [{ uri: { prefix: "/r" } }], redirect: { uri: "", authority: "b.example.com" } }, { redirect: { prefixRewrite: "", scheme: "https" } });
    expect(action(snapshot.rules[0])).toEqual({ type: "redirect", redirect: { status: 301, authority: "b.example.com" } });
    expect(action(snapshot.rules[1])).toEqual({ type: "redirect", redirect: { status: 301, scheme: "https" } });
    for (const redirect of [{ uri: "" }, { prefixRewrite: "" }, { authority: "", uri: "" }]) {
      expect(await fieldErrors({ redirect })).toEqual(["spec.http[0].redirect: expected at least one of uri, prefixRewrite, authority (non-empty), scheme, port or derivePort"]);
    }
  });

  it("rejects a redirect's prefixRewrite on a rule that matches by regex (Istio's validation), but not rewrite.uri", async () => {
    expect(await fieldErrors({ match: [{ uri: { prefix: "/a" } }, { uri: { regex: "/b.*" } }], redirect: { prefixRewrite: "/c" } })).toEqual([
      "spec.http[0].match[1].uri: a redirect's prefixRewrite needs exact or prefix uri matches (Istio refuses it with a regex match)",
    ]);
    // Istio accepts it, and Envoy's prefix_rewrite then replaces the whole path the regex matched.
    expect(await fieldErrors({ match: [{ uri: { regex: "/v1/[a-z]+" } }], rewrite: { uri: "/v2/items" }, route: [dest()] })).toEqual([]);
  });
});

describe("directResponse", () => {
  it("keeps the status and a string body", async () => {
    const snapshot = await compileRules({ directResponse: { status: 418, body: { string: "short and stout" } } });
    expect(action(snapshot.rules[0])).toEqual({ type: "direct", status: 418, body: "short and stout" });
  });

  it("keeps base64 bytes and rejects what is not base64", async () => {
    const snapshot = await compileRules({ directResponse: { status: 200, body: { bytes: "aGVsbG8=" } } });
    expect(action(snapshot.rules[0])).toEqual({ type: "direct", status: 200, bodyBase64: "aGVsbG8=" });
    for (const bytes of ["hello!", "aGVsbG8", "aGV=sbG8"]) {
      expect(await fieldErrors({ directResponse: { status: 200, body: { bytes } } })).toEqual(["spec.http[0].directResponse.body.bytes: expected base64-encoded bytes"]);
    }
  });

  it("rejects a status outside 200-599 and a body over 1 MB", async () => {
    for (const status of [100, 199, 600]) {
      expect(await fieldErrors({ directResponse: { status } })).toEqual(["spec.http[0].directResponse.status: expected an HTTP status between 200 and 599"]);
    }
    expect(await fieldErrors({ directResponse: { status: 200, body: { string: "x".repeat(1024 * 1024 + 1) } } })).toEqual(["spec.http[0].directResponse.body: expected a body of at most 1 MB"]);
    expect(await fieldErrors({ directResponse: { status: 200, body: { string: "x", bytes: "eA==" } } })).toEqual([
      "spec.http[0].directResponse.body: expected only one of string, bytes in directResponse.body, got string and bytes",
    ]);
  });
});

describe("conflicting actions", () => {
  it("needs exactly one of route, redirect, directResponse or delegate", async () => {
    expect(await fieldErrors({ match: [{ uri: { prefix: "/" } }] })).toEqual(["spec.http[0]: expected one of route, redirect, directResponse or delegate"]);
    expect(await fieldErrors({ route: [dest()], redirect: { uri: "/x" } })).toEqual(["spec.http[0].redirect: expected only one of route, redirect, directResponse or delegate, got route and redirect"]);
    expect(await fieldErrors({ redirect: { uri: "/x" }, directResponse: { status: 200 } })).toEqual([
      "spec.http[0].directResponse: expected only one of route, redirect, directResponse or delegate, got redirect and directResponse",
    ]);
  });

  it("rejects rewrite or fault next to redirect and directResponse", async () => {
    expect(await fieldErrors({ redirect: { uri: "/x" }, rewrite: { uri: "/y" } })).toEqual(["spec.http[0].rewrite: rewrite cannot be combined with redirect"]);
    expect(await fieldErrors({ directResponse: { status: 200 }, fault: { abort: { httpStatus: 500, percentage: { value: 1 } } } })).toEqual([
      "spec.http[0].fault: fault cannot be combined with directResponse",
    ]);
  });

  it("warns that a corsPolicy does nothing on a redirect or directResponse rule, and drops it (Envoy's cors filter needs a route entry)", async () => {
    const cors = { allowOrigins: [{ exact: "https://app.example" }] };
    const result = await buildRules({ match: [{ uri: { prefix: "/r" } }], redirect: { uri: "/x" }, corsPolicy: cors }, { directResponse: { status: 200 }, corsPolicy: cors });
    expect(errors(result)).toEqual([]);
    expect(warnings(result)).toEqual([
      expect.stringMatching(/VirtualService\/default\/v: spec\.http\[0\]\.corsPolicy: has no effect on a redirect rule \(Envoy's CORS filter only runs for routes to a destination\)$/),
      expect.stringMatching(/VirtualService\/default\/v: spec\.http\[1\]\.corsPolicy: has no effect on a directResponse rule /),
    ]);
    expect(result.snapshot?.rules.map((r) => r.cors)).toEqual([undefined, undefined]);
    const routed = await compileRules({ corsPolicy: cors, route: [dest()] });
    expect(routed.rules[0]?.cors).toBeDefined();
  });

  it("warns that a match port other than 80 or 443 never matches at the edge", async () => {
    const result = await buildRules({ match: [{ port: 80 }, { port: 8080 }], route: [dest()] });
    expect(warnings(result)).toEqual([expect.stringMatching(/spec\.http\[0\]\.match\[1\]\.port: never matches: at the edge a request's port is the listener's/)]);
  });

  it("rejects mirror together with mirrors", async () => {
    expect(await fieldErrors({ route: [dest()], mirror: { host: "b.example.com" }, mirrors: [{ destination: { host: "b.example.com" } }] })).toEqual([
      "spec.http[0].mirrors: expected only one of mirror and mirrors",
    ]);
  });
});

describe("rewrite and timeout", () => {
  it("keeps uri, authority and a checked regex rewrite", async () => {
    const snapshot = await compileRules(
      { match: [{ uri: { prefix: "/old" } }], rewrite: { uri: "/new", authority: "internal.example.com" }, route: [dest()] },
      { rewrite: { uriRegexRewrite: { match: "^/v([0-9]+)/(.*)$", rewrite: "/api/\\2?v=\\1" } }, route: [dest()] },
    );
    expect(snapshot.rules[0]?.rewrite).toEqual({ uri: "/new", authority: "internal.example.com" });
    expect(snapshot.rules[1]?.rewrite).toEqual({ uriRegex: { match: "^/v([0-9]+)/(.*)$", rewrite: "/api/\\2?v=\\1" } });
    expect(await fieldErrors({ rewrite: { uriRegexRewrite: { match: "(?<=v)1", rewrite: "2" } }, route: [dest()] })).toEqual([
      expect.stringMatching(/^spec\.http\[0\]\.rewrite\.uriRegexRewrite\.match: expected an RE2 regular expression: /),
    ]);
  });

  it("reads an empty uri or authority as unset and refuses a rewrite that sets nothing (Istio's validateHTTPRewrite)", async () => {
    const snapshot = await compileRules({ match: [{ uri: { prefix: "/e" } }], rewrite: { uri: "", authority: "x.internal" }, route: [dest()] });
    expect(snapshot.rules[0]?.rewrite).toEqual({ authority: "x.internal" });
    for (const rewrite of [{ uri: "" }, { uri: "", authority: "" }, {}]) {
      expect(await fieldErrors({ rewrite, route: [dest()] })).toEqual([
        "spec.http[0].rewrite: expected a non-empty uri, uriRegexRewrite or authority (an empty string sets nothing, as in Istio)",
      ]);
    }
  });

  it("refuses a regex substitution naming a capture group the pattern lacks, or an empty match or substitution", async () => {
    const rw = (match: string, rewrite: string) => fieldErrors({ rewrite: { uriRegexRewrite: { match, rewrite } }, route: [dest()] });
    expect(await rw("^/g/([^/]+)$", "/new/\\2")).toEqual([
      "spec.http[0].rewrite.uriRegexRewrite.rewrite: expected capture groups the match pattern has: \\2 names capture group 2, but the pattern has 1 (Envoy would leave every path unchanged)",
    ]);
    expect(await rw("^/g/.*$", "/new/\\1")).toEqual([
      "spec.http[0].rewrite.uriRegexRewrite.rewrite: expected capture groups the match pattern has: \\1 names capture group 1, but the pattern has none (Envoy would leave every path unchanged)",
    ]);
    // \0 is the whole match; an escaped backslash is a literal.
    expect(await rw("^/g/([^/]+)$", "/new/\\1\\0\\\\2")).toEqual([]);
    expect(await rw("^/g$", "")).toEqual(["spec.http[0].rewrite.uriRegexRewrite.rewrite: expected a non-empty substitution (Istio requires both match and rewrite)"]);
    expect(await rw("", "/x")).toEqual(["spec.http[0].rewrite.uriRegexRewrite.match: expected a non-empty RE2 regular expression (Istio requires both match and rewrite)"]);
  });

  it("turns timeout into milliseconds; absent means no timeout", async () => {
    const snapshot = await compileRules(
      { match: [{ uri: { prefix: "/a" } }], timeout: "1.5s", route: [dest()] },
      { match: [{ uri: { prefix: "/b" } }], timeout: "1m30s", route: [dest()] },
      { route: [dest()] },
    );
    expect(snapshot.rules.map((r) => r.timeoutMs)).toEqual([1500, 90_000, undefined]);
  });

  it("refuses a timeout under 1ms or finer than a millisecond, as Istio's ValidateDuration does (0s included)", async () => {
    for (const timeout of ["0s", "0.5ns", "999us"]) {
      expect(await fieldErrors({ timeout, route: [dest()] })).toEqual([`spec.http[0].timeout: expected a duration of at least 1ms, got ${timeout}`]);
    }
    expect(await fieldErrors({ timeout: "1.5ms5us", route: [dest()] })).toEqual([
      "spec.http[0].timeout: expected whole milliseconds (Istio supports durations only to ms precision), got 1.5ms5us",
    ]);
  });
});

describe("header operations", () => {
  it("sorts set and add by lower-cased name", async () => {
    const snapshot = await compileRules({
      route: [dest()],
      headers: {
        request: { set: { "X-B": "2", "x-a": "1" }, add: { "X-Trace": "t" }, remove: ["X-Remove-Me"] },
        response: { set: { "Cache-Control": "no-store" }, remove: ["server"] },
      },
    });
    expect(snapshot.rules[0]?.headers).toEqual({
      request: { set: [["x-a", "1"], ["x-b", "2"]], add: [["x-trace", "t"]], remove: ["x-remove-me"] },
      response: { set: [["cache-control", "no-store"]], remove: ["server"] },
    });
  });

  it("turns a host header in request set into the authority rewrite", async () => {
    for (const name of ["host", "Host", ":authority"]) {
      const snapshot = await compileRules({ route: [dest()], headers: { request: { set: { [name]: "internal.example.com", "x-a": "1" } } } });
      expect(snapshot.rules[0]?.rewrite).toEqual({ authority: "internal.example.com" });
      expect(snapshot.rules[0]?.headers).toEqual({ request: { set: [["x-a", "1"]] } });
    }
  });

  it("turns a host header in request add into the authority rewrite too, set winning over add (Istio's TranslateHeadersOperations)", async () => {
    const added = await compileRules({ route: [dest()], headers: { request: { add: { host: "added.example.com" } } } });
    expect(added.rules[0]?.rewrite).toEqual({ authority: "added.example.com" });
    expect(added.rules[0]?.headers).toBeUndefined();
    const both = await compileRules({ route: [dest()], headers: { request: { add: { host: "added.example.com" }, set: { host: "set.example.com" } } } });
    expect(both.rules[0]?.rewrite).toEqual({ authority: "set.example.com" });
  });

  it("refuses pseudo-headers other than a request :authority, and removing Host (Istio's header operation name checks)", async () => {
    expect(await fieldErrors({ route: [dest()], headers: { request: { set: { ":path": "/evil", "x-ok": "1" }, add: { ":method": "PUT" }, remove: [":method", "Host"] } } })).toEqual([
      'spec.http[0].headers.request.set[":path"]: header ":path" cannot have a ":" prefix: pseudo-headers cannot be set (only :authority, which rewrites the host)',
      'spec.http[0].headers.request.add[":method"]: header ":method" cannot have a ":" prefix: pseudo-headers cannot be added (only :authority, which rewrites the host)',
      'spec.http[0].headers.request.remove[0]: header ":method" cannot have a ":" prefix: pseudo-headers cannot be removed',
      "spec.http[0].headers.request.remove[1]: cannot remove the Host header",
    ]);
    // A destination's operations are checked alike.
    expect(await fieldErrors({ route: [dest("a.example.com", { headers: { request: { set: { ":scheme": "http" } } } })] })).toEqual([
      'spec.http[0].route[0].headers.request.set[":scheme"]: header ":scheme" cannot have a ":" prefix: pseudo-headers cannot be set (only :authority, which rewrites the host)',
    ]);
  });

  it("refuses host and :authority in response operations instead of dropping them", async () => {
    expect(await fieldErrors({ route: [dest()], headers: { response: { set: { ":authority": "x", host: "y", "x-ok": "1" }, add: { Host: "z" } } } })).toEqual([
      'spec.http[0].headers.response.set[":authority"]: header ":authority" cannot have a ":" prefix: pseudo-headers cannot be set',
      "spec.http[0].headers.response.set.host: cannot set the Host header of a response",
      "spec.http[0].headers.response.add.Host: cannot add the Host header of a response",
    ]);
  });

  it("rejects setting the authority twice", async () => {
    expect(await fieldErrors({ route: [dest()], rewrite: { authority: "a" }, headers: { request: { set: { host: "b" } } } })).toEqual([
      "spec.http[0].headers: authority is set both by rewrite.authority and by a host header operation",
    ]);
  });

  it("reads %% as a literal percent and rejects any other %", async () => {
    const snapshot = await compileRules({ route: [dest()], headers: { response: { set: { "x-discount": "50%% off" } } } });
    expect(snapshot.rules[0]?.headers?.response?.set).toEqual([["x-discount", "50% off"]]);
    for (const value of ["abc%123", "%DOWNSTREAM_REMOTE_ADDRESS%", "trailing%"]) {
      expect(await fieldErrors({ route: [dest()], headers: { request: { set: { "x-v": value } } } })).toEqual([
        "spec.http[0].headers.request.set[\"x-v\"]: expected a literal value (write %% for a percent sign; Envoy %COMMAND% operators are not supported yet)",
      ]);
    }
  });

  it("rejects invalid header names and values with CR or LF", async () => {
    expect(await fieldErrors({ route: [dest()], headers: { request: { set: { "bad name": "x" } } } })).toEqual(['spec.http[0].headers.request.set["bad name"]: expected a valid HTTP header name']);
    // A name Headers refuses would make every request on the route throw when it is removed.
    expect(await fieldErrors({ route: [dest()], headers: { response: { remove: ["x-ok", "bad name"] } } })).toEqual(['spec.http[0].headers.response.remove[1]: expected a valid HTTP header name, got "bad name"']);
    expect(await fieldErrors({ route: [dest()], headers: { request: { add: { "x-a": "one\r\nx-b: two" } } } })).toEqual(['spec.http[0].headers.request.add["x-a"]: expected a value without CR, LF or NUL']);
  });

  it("keeps per-destination operations and a per-destination host rewrite on the destination (Istio's host_rewrite_literal per destination)", async () => {
    const snapshot = await compileRules({
      route: [dest("a.example.com", { weight: 1, headers: { request: { set: { "x-d": "a", host: "v1.internal" } } } }), dest("b.example.com", { weight: 1, headers: { request: { set: { Host: "v2.internal" } } } })],
    });
    const a = action(snapshot.rules[0]);
    expect(a?.type === "route" && a.destinations.map((d) => [d.authority, d.headers])).toEqual([
      ["v1.internal", { request: { set: [["x-d", "a"]] } }],
      ["v2.internal", undefined],
    ]);
    const single = await compileRules({ route: [dest("a.example.com", { headers: { request: { add: { host: "x.internal" } } } })] });
    const s = action(single.rules[0]);
    expect(s?.type === "route" && s.destinations[0]?.authority).toBe("x.internal");
    expect(single.rules[0]?.rewrite).toBeUndefined();
  });
});

describe("routes and names", () => {
  it("makes one route per match block, named http.name + '.' + match.name", async () => {
    const snapshot = await compileRules({
      name: "api",
      match: [{ name: "v1", uri: { prefix: "/v1" } }, { uri: { prefix: "/v2" } }],
      route: [dest()],
    }, { route: [dest("b.example.com")] });
    expect(snapshot.virtualHosts.find((v) => v.name === "app.example.com")?.routes).toEqual([
      { name: "api.v1", rule: 0, match: { uri: { type: "prefix", value: "/v1" } } },
      { name: "api", rule: 0, match: { uri: { type: "prefix", value: "/v2" } } },
      { name: "", rule: 1, match: {} },
    ]);
    expect(snapshot.rules[0]).toMatchObject({ source: "VirtualService/default/v", index: 0, name: "api" });
  });

  it("drops the rules after a catch-all with a warning on the first unreachable one", async () => {
    for (const catchAll of [{}, { match: [{ uri: { prefix: "/" } }] }, { match: [{ uri: { regex: ".*" } }] }, { match: [{ uri: { prefix: "/" }, ignoreUriCase: true }] }]) {
      const result = await buildRules({ ...catchAll, route: [dest()] }, { match: [{ uri: { prefix: "/x" } }], route: [dest("b.example.com")] }, { route: [dest("b.example.com")] });
      expect(errors(result)).toEqual([]);
      expect(warnings(result)).toEqual([
        expect.stringMatching(/VirtualService\/default\/v: spec\.http\[1\]: unreachable: rule 0 before it matches every request \(Istio drops the rules after a catch-all\)$/),
      ]);
      expect(result.snapshot?.rules).toHaveLength(1);
    }
  });

  it("does not treat a match with another condition as a catch-all", async () => {
    const result = await buildRules({ match: [{ uri: { prefix: "/" }, headers: { "x-canary": { exact: "1" } } }], route: [dest("b.example.com")] }, { route: [dest()] });
    expect(warnings(result)).toEqual([]);
    expect(result.snapshot?.rules).toHaveLength(2);
  });
});

describe("match blocks", () => {
  const routesOf = (snapshot: Snapshot) => snapshot.virtualHosts.find((v) => v.name === "app.example.com")?.routes.map((r) => r.match);

  it("compiles every condition into a matcher descriptor", async () => {
    const snapshot = await compileRules({
      match: [
        {
          uri: { prefix: "/Api" },
          ignoreUriCase: true,
          scheme: { exact: "https" },
          method: { regex: "GET|HEAD" },
          authority: { prefix: "app.example.com" },
          headers: { "X-User": { exact: "jason" }, "x-present": {}, "x-star": { regex: "*" }, uri: { exact: "/ignored" }, Method: { exact: "POST" } },
          withoutHeaders: { "x-block": { exact: "1" } },
          queryParams: { debug: { exact: "" }, page: { regex: "[0-9]+" }, flag: {} },
          port: 8080,
        },
      ],
      route: [dest()],
    });
    expect(routesOf(snapshot)?.[0]).toEqual({
      uri: { type: "prefix", value: "/Api", ignoreCase: true },
      scheme: { type: "exact", value: "https" },
      method: { type: "regex", value: "GET|HEAD" },
      authority: { type: "prefix", value: "app.example.com" },
      headers: [
        { name: "x-user", match: { type: "exact", value: "jason" } },
        { name: "x-present", match: { type: "present" } },
        { name: "x-star", match: { type: "present" } },
      ],
      withoutHeaders: [{ name: "x-block", match: { type: "exact", value: "1" } }],
      queryParams: [
        { name: "debug", match: { type: "exact", value: "" } },
        { name: "page", match: { type: "regex", value: "[0-9]+" } },
        { name: "flag", match: { type: "present" } },
      ],
      port: 8080,
    });
  });

  it("compiles JWT claim conditions in both spellings", async () => {
    const snapshot = await compileRules({
      match: [{ headers: { "@request.auth.claims.groups": { exact: "admin" }, "@request.auth.claims[realm_access][roles]": { prefix: "ops-" } } }],
      route: [dest()],
    });
    expect(routesOf(snapshot)?.[0]).toEqual({
      claims: [
        { claim: ["groups"], match: { type: "exact", value: "admin" } },
        { claim: ["realm_access", "roles"], match: { type: "prefix", value: "ops-" } },
      ],
    });
    expect(await fieldErrors({ match: [{ headers: { "@request.auth.claims": { exact: "x" } } }], route: [dest()] })).toEqual([
      'spec.http[0].match[0].headers["@request.auth.claims"]: expected @request.auth.claims.<name> or @request.auth.claims[<name>][<nested>]',
    ]);
    // Istio accepts a claim in withoutHeaders (an inverted metadata matcher): it compiles to withoutClaims.
    const without = await compileRules({ match: [{ withoutHeaders: { "@request.auth.claims.sub": { exact: "x" } } }], route: [dest()] });
    expect(routesOf(without)?.[0]).toEqual({ withoutClaims: [{ claim: ["sub"], match: { type: "exact", value: "x" } }] });
  });

  it("rejects empty scheme, method and authority matches, a uri match with no type and a bad header name", async () => {
    expect(await fieldErrors({ match: [{ method: { exact: "" } }], route: [dest()] })).toEqual(["spec.http[0].match[0].method: expected a non-empty method match"]);
    expect(await fieldErrors({ match: [{ uri: {} }], route: [dest()] })).toEqual(["spec.http[0].match[0].uri: expected one of exact, prefix or regex"]);
    expect(await fieldErrors({ match: [{ headers: { "bad header": { exact: "x" } } }], route: [dest()] })).toEqual(['spec.http[0].match[0].headers["bad header"]: expected a valid HTTP header name']);
  });
});
