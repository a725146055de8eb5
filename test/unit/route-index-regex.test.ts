/**
 * Regex routes in the route index: filed under their literal prefix, so a
 * lookup among many regex routes does not evaluate every one of them, while
 * the first matching route (Istio's order) is still the one chosen.
 */
import { describe, expect, it } from "vitest";
import { literalPrefix } from "../../src/routing/regex.ts";
import { RouteIndex } from "../../src/routing/route-index.ts";
import type { MatchDef } from "../../src/config/snapshot.ts";
import { compileRegex } from "../../src/routing/regex.ts";

describe("literalPrefix", () => {
  it.each([
    ["/api/v[0-9]+/.*", "/api/v"],
    ["/items?", "/item"],
    ["/ab*c", "/a"],
    ["/ab+c", "/ab"],
    ["/a{2}", "/"],
    ["/s0/r9/[a-z]+/[0-9]+", "/s0/r9/"],
    ["/exact/path", "/exact/path"],
    ["/api(?i)/users", "/api"],
  ])("%s → %s", (pattern, prefix) => {
    expect(literalPrefix(pattern)).toBe(prefix);
  });

  it.each(["/a|/b", "(/a)/b", "[/]a", "^/a", "\\/a", ".*", "(?i)/api", "/x(/y|/z)"])("has none for %s", (pattern) => {
    expect(literalPrefix(pattern)).toBe("");
  });

  it("never splits a surrogate pair", () => {
    expect(literalPrefix("/a😀*")).toBe("/a");
    expect(literalPrefix("/a😀/b")).toBe("/a😀/b");
  });

  it("is a prefix of every full match (checked against RE2 on sample paths)", () => {
    const patterns = ["/api/v[0-9]+/.*", "/items?", "/ab*c", "/api(?i)/users", "/s0/r9/[a-z]+/[0-9]+"];
    const paths = ["/api/v2/x", "/item", "/items", "/ac", "/abbbc", "/api/USERS", "/s0/r9/abc/42", "/a"];
    for (const p of patterns) {
      const re = compileRegex(p);
      for (const path of paths) if (re.fullMatch(path)) expect(path.startsWith(literalPrefix(p))).toBe(true);
    }
  });
});

const regex = (value: string): MatchDef => ({ uri: { type: "regex", value } });
const prefix = (value: string): MatchDef => ({ uri: { type: "prefix", value } });

describe("RouteIndex with regex routes", () => {
  const matches: MatchDef[] = [
    regex("/a/[0-9]+"), // 0
    prefix("/b/"), // 1
    regex(".*/special"), // 2: no literal prefix, always a candidate
    regex("/b/x[a-z]*"), // 3
    prefix("/a/"), // 4
    regex("/c|/b/xy"), // 5: alternation, always a candidate
    ...Array.from({ length: 20 }, (_, i) => regex(`/r${i}/[a-z]+`)), // 6..25
  ];
  const index = new RouteIndex(matches);

  it("keeps route order among the candidates and includes every route that can match", () => {
    expect(index.candidates("/a/12")).toEqual([0, 2, 4, 5]);
    expect(index.candidates("/b/xy")).toEqual([1, 2, 3, 5]);
    expect(index.candidates("/r7/abc")).toEqual([2, 5, 13]);
  });

  it("leaves out regex routes whose literal prefix the path does not start with", () => {
    const c = index.candidates("/r7/abc");
    for (let i = 6; i < 26; i++) if (i !== 13) expect(c).not.toContain(i);
  });
});

describe("RouteIndex with prefixes that end in / and prefixes that do not", () => {
  const matches: MatchDef[] = [
    prefix("/api/"), // 0
    prefix("/api"), // 1
    prefix("/ap"), // 2
    prefix("/api/v1/"), // 3
    prefix("/api/v1"), // 4
    prefix("/apx/"), // 5
    { uri: { type: "exact", value: "/api/v1/users" } }, // 6
    prefix("/api/v1/users/"), // 7
    prefix("/"), // 8
  ];
  const index = new RouteIndex(matches);
  const brute = (path: string) => matches.flatMap((m, i) => (m.uri?.type === "prefix" ? path.startsWith(m.uri.value) : m.uri?.type === "exact" ? path === m.uri.value : true) ? [i] : []);

  it.each(["/api/v1/users", "/api/v1/users/7", "/api/v10", "/apix", "/api", "/a", "/", "/apx/1", "//api/"])("finds exactly the routes that can match %s, once each, in order", (path) => {
    expect(index.candidates(path)).toEqual(brute(path));
  });
});
