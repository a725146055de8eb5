/**
 * Regular expressions are RE2: the syntax is checked when the config is
 * compiled (with RE2's own message), and matching is linear-time, so no
 * pattern can make a request backtrack catastrophically.
 */
import { describe, expect, it } from "vitest";
import { hydrate } from "../../../src/routing/hydrate.ts";
import { compileRegex, regexError } from "../../../src/routing/regex.ts";
import { build, errors, facts, snapshotOf, virtualService } from "../support.ts";

const vsWithMatch = (match: Record<string, unknown>) => virtualService("v", ["app.example.com"], [{ match: [match], directResponse: { status: 200 } }]);
const matchErrors = async (match: Record<string, unknown>) => errors(await build(vsWithMatch(match))).map((e) => e.replace(/^config\.yaml:\d+: error: VirtualService\/default\/v: /, ""));

describe("RE2 syntax", () => {
  it("rejects lookaround with RE2's message, wherever a regex is allowed", async () => {
    const message = regexError("/api(?=/v1)");
    expect(message).toMatch(/\(\?=/);
    expect(await matchErrors({ uri: { regex: "/api(?=/v1)" } })).toEqual([`spec.http[0].match[0].uri.regex: expected an RE2 regular expression: ${message}`]);
    expect(await matchErrors({ headers: { "x-user": { regex: "(?!admin).*" } } })).toEqual([
      expect.stringMatching(/^spec\.http\[0\]\.match\[0\]\.headers\["x-user"\]\.regex: expected an RE2 regular expression: .+/),
    ]);
    expect(await matchErrors({ queryParams: { id: { regex: "(?<=x)1" } } })).toEqual([expect.stringMatching(/^spec\.http\[0\]\.match\[0\]\.queryParams\.id\.regex: expected an RE2 regular expression: /)]);
    expect(await matchErrors({ method: { regex: "(?=G)GET" } })).toEqual([expect.stringMatching(/^spec\.http\[0\]\.match\[0\]\.method\.regex: expected an RE2 regular expression: /)]);
  });

  it("rejects backreferences with RE2's message", async () => {
    const message = regexError("/(a)\\1");
    expect(message).toMatch(/\\1/);
    expect(await matchErrors({ uri: { regex: "/(a)\\1" } })).toEqual([`spec.http[0].match[0].uri.regex: expected an RE2 regular expression: ${message}`]);
  });

  it("rejects plain syntax errors", async () => {
    expect(await matchErrors({ uri: { regex: "/api/[" } })).toEqual([expect.stringMatching(/^spec\.http\[0\]\.match\[0\]\.uri\.regex: expected an RE2 regular expression: .*missing closing \]/)]);
  });

  it("accepts what RE2 supports: classes, flags, named groups, bounded repetition", async () => {
    for (const regex of ["/api/v[0-9]+/.*", "(?i)/Admin(/.*)?", "/(?P<id>[a-f0-9]{8})", "/x{2,5}", "/\\p{L}+"]) {
      expect(regexError(regex)).toBeUndefined();
      expect(await matchErrors({ uri: { regex } })).toEqual([]);
    }
  });
});

describe("catastrophic backtracking", () => {
  it("matches the evil pattern (a+)+$ from a VirtualService uri regex against 100,000 characters in linear time", async () => {
    const snapshot = await snapshotOf(vsWithMatch({ uri: { regex: "(a+)+$" } }));
    const route = hydrate(snapshot).virtualHosts[0]!.routes[0]!;
    const input = "a".repeat(100_000);
    // A backtracking engine needs ~2^100000 steps for the second input and would never return.
    expect(route.matches(facts({ path: input }))).toBe(true);
    expect(route.matches(facts({ path: `${input}!` }))).toBe(false);
  });

  it("also survives nested alternation and overlapping repetition", () => {
    const input = "x".repeat(50_000);
    expect(compileRegex("(x+x+)+y").fullMatch(input)).toBe(false);
    expect(compileRegex("(x|x)*y").fullMatch(input)).toBe(false);
    expect(compileRegex("(.*a){12}").fullMatch("a".repeat(20_000) + "b")).toBe(false);
  });
});

describe("compileRegex", () => {
  it("full-matches (Envoy safe_regex), never a substring", () => {
    const re = compileRegex("/api/v[0-9]+");
    expect(re.fullMatch("/api/v2")).toBe(true);
    expect(re.fullMatch("/api/v2/users")).toBe(false);
    expect(re.fullMatch("/x/api/v2")).toBe(false);
    expect(compileRegex("\\d+$").fullMatch("a123")).toBe(false);
  });

  it("substitutes \\1…\\9 and \\\\ in replaceAll, replacing every match", () => {
    expect(compileRegex("^/v([0-9]+)/(.*)$").replaceAll("/v2/users/7", "/api/\\2?version=\\1")).toBe("/api/users/7?version=2");
    expect(compileRegex("-").replaceAll("/a-b-c", "_")).toBe("/a_b_c");
    expect(compileRegex("/old").replaceAll("/old/x", "\\\\new")).toBe("\\new/x");
    // A group the pattern lacks: RE2's GlobalReplace refuses the rewrite, so Envoy keeps the path.
    expect(compileRegex("/(x)").replaceAll("/x", "[\\5]")).toBe("/x");
  });

  it("returns the capture groups of a full match", () => {
    expect(compileRegex("/u/([0-9]+)/(\\w+)").groups("/u/42/profile")).toEqual(["/u/42/profile", "42", "profile"]);
    expect(compileRegex("/u/([0-9]+)").groups("/u/x")).toBeUndefined();
  });

  it("throws RE2's message for an invalid pattern", () => {
    expect(() => compileRegex("(?=x)")).toThrow();
  });
});
