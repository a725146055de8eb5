/**
 * The route index must return exactly what Istio's first-match scan does.
 * A property test: random route sets (exact, prefix, ignore-case, regex,
 * no uri, extra conditions) and random paths, indexed lookup vs linear scan.
 */
import { describe, expect, it } from "vitest";
import type { MatchDef, StringMatchDef } from "../../../src/config/snapshot.ts";
import type { RequestFacts } from "../../../src/gateway/facts.ts";
import { matchesRequest } from "../../../src/routing/match.ts";
import { RouteIndex } from "../../../src/routing/route-index.ts";
import { facts } from "../support.ts";

/** mulberry32: a small seeded PRNG, so a failure is reproducible from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEGMENTS = ["a", "A", "api", "Api", "b", "v1", ""];
const EXACT = ["/", "/a", "/A", "/a/b", "/api", "/Api/v1", "/a/"];
const PREFIX = ["", "/", "/a", "/A", "/a/", "/api", "/ap", "/Api/V1", "/b"];
const REGEX = [".*", "/a.*", "/[ab]+", "/A/.*", "/api/v[0-9]"];

function randomRoutes(random: () => number): MatchDef[] {
  const pick = <T,>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
  const count = Math.floor(random() * 40);
  return Array.from({ length: count }, (): MatchDef => {
    const kind = pick(["exact", "prefix", "regex", "none", "exact", "prefix"] as const);
    const ignoreCase = random() < 0.3;
    let uri: StringMatchDef | undefined;
    if (kind === "exact") uri = ignoreCase ? { type: "exact", value: pick(EXACT), ignoreCase } : { type: "exact", value: pick(EXACT) };
    else if (kind === "prefix") uri = ignoreCase ? { type: "prefix", value: pick(PREFIX), ignoreCase } : { type: "prefix", value: pick(PREFIX) };
    else if (kind === "regex") uri = { type: "regex", value: pick(REGEX) };
    const match: MatchDef = uri ? { uri } : {};
    if (random() < 0.25) match.headers = [{ name: "x-canary", match: { type: "exact", value: "1" } }];
    if (random() < 0.1) match.method = { type: "exact", value: "POST" };
    return match;
  });
}

function randomPath(random: () => number): string {
  const depth = Math.floor(random() * 4);
  let path = "";
  for (let i = 0; i < depth; i++) path += `/${SEGMENTS[Math.floor(random() * SEGMENTS.length)]}`;
  if (path === "" || random() < 0.2) path += "/";
  return path;
}

describe("RouteIndex", () => {
  it("finds the same first matching route as a linear scan, for random routes and paths", () => {
    let checked = 0;
    for (let seed = 1; seed <= 300; seed++) {
      const random = prng(seed);
      const routes = randomRoutes(random);
      const matchers = routes.map((def) => (f: RequestFacts) => matchesRequest(def, f));
      const index = new RouteIndex(routes);
      for (let n = 0; n < 50; n++) {
        const f = facts({ path: randomPath(random), method: random() < 0.5 ? "GET" : "POST", headers: random() < 0.5 ? { "x-canary": "1" } : {} });
        const linear = matchers.findIndex((m) => m(f));
        const candidates = index.candidates(f.path);
        const indexed = candidates.find((i) => matchers[i]!(f)) ?? -1;
        if (indexed !== linear) {
          throw new Error(`seed ${seed}: path ${f.path} → indexed ${indexed}, linear ${linear}\nroutes: ${JSON.stringify(routes)}`);
        }
        // Candidates come in route order and never leave out a route that matches.
        const ordered = candidates.every((c, i) => i === 0 || (candidates[i - 1] as number) < c);
        const missing = matchers.findIndex((m, i) => m(f) && !candidates.includes(i));
        if (!ordered || missing >= 0) throw new Error(`seed ${seed}: path ${f.path}: candidates ${JSON.stringify(candidates)} (missing ${missing})`);
        checked++;
      }
    }
    expect(checked).toBe(300 * 50);
  });

  it("narrows the candidates once there are many routes", () => {
    const routes: MatchDef[] = Array.from({ length: 50 }, (_, i) => ({ uri: { type: "exact", value: `/r${i}` } }));
    routes.push({ uri: { type: "prefix", value: "/r1" } }, { uri: { type: "regex", value: "/x.*" } }, {});
    const index = new RouteIndex(routes);
    // The regex /x.* is filed under its literal prefix /x, so it is no candidate for these paths.
    expect(index.candidates("/r10")).toEqual([10, 50, 52]);
    expect(index.candidates("/xyz")).toEqual([51, 52]);
    expect(index.candidates("/zzz")).toEqual([52]);
  });

  it("scans every route when there are only a few", () => {
    expect(new RouteIndex([{ uri: { type: "exact", value: "/a" } }, {}]).candidates("/b")).toEqual([0, 1]);
  });
});
