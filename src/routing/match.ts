/**
 * Runtime matchers built from the snapshot's matcher descriptors. Building
 * happens once per snapshot per isolate; matching is allocation-free.
 */
import type { ClaimMatchDef, HeaderMatchDef, MatchDef, StringMatchDef } from "../config/snapshot.ts";
import { queryParam, type RequestFacts } from "../gateway/facts.ts";
import { lazyRegex } from "./regex.ts";

export type StringMatcher = (value: string | undefined) => boolean;

/** Builds a matcher; `undefined` input (absent value) only satisfies nothing. */
export function stringMatcher(def: StringMatchDef): StringMatcher {
  switch (def.type) {
    case "present":
      return (v) => v !== undefined;
    case "exact":
      if (def.ignoreCase) {
        const want = def.value.toLowerCase();
        return (v) => v !== undefined && v.toLowerCase() === want;
      }
      return (v) => v === def.value;
    case "prefix":
      if (def.ignoreCase) {
        const want = def.value.toLowerCase();
        return (v) => v !== undefined && v.toLowerCase().startsWith(want);
      }
      return (v) => v !== undefined && v.startsWith(def.value);
    case "regex": {
      const re = lazyRegex(def.value);
      return (v) => v !== undefined && re.fullMatch(v);
    }
  }
}

export type RequestMatcher = (facts: RequestFacts) => boolean;

/**
 * Builds the matcher for one HTTPMatchRequest: every present field must
 * hold (Istio ANDs the fields of a match block).
 *
 * Each check is made by a small function of its own, so a matcher holds
 * only what it tests: closures made here would share this function's scope,
 * and every matcher would keep the `checks` list alive (10,000 routes held
 * ~3 MB more that way).
 */
export function requestMatcher(def: MatchDef): RequestMatcher {
  const checks: RequestMatcher[] = [];
  if (def.uri) checks.push(onPath(stringMatcher(def.uri)));
  if (def.scheme) checks.push(onScheme(stringMatcher(def.scheme)));
  if (def.method) checks.push(onMethod(stringMatcher(def.method)));
  if (def.authority) checks.push(onAuthority(stringMatcher(def.authority)));
  if (def.port !== undefined) checks.push(onPort(def.port));
  for (const h of def.headers ?? []) checks.push(headerCheck(h, false));
  for (const h of def.withoutHeaders ?? []) checks.push(headerCheck(h, true));
  for (const c of def.claims ?? []) checks.push(claimCheck(c));
  for (const q of def.queryParams ?? []) checks.push(onQueryParam(q.name, stringMatcher(q.match)));
  if (checks.length === 0) return always;
  if (checks.length === 1) return checks[0] as RequestMatcher;
  return allOf(checks.slice());
}

const always: RequestMatcher = () => true;
const onPath = (m: StringMatcher): RequestMatcher => (f) => m(f.path);
const onScheme = (m: StringMatcher): RequestMatcher => (f) => m(f.scheme);
const onMethod = (m: StringMatcher): RequestMatcher => (f) => m(f.method);
const onAuthority = (m: StringMatcher): RequestMatcher => (f) => m(f.authority);
const onPort = (port: number): RequestMatcher => (f) => f.port === port;
const onQueryParam = (name: string, m: StringMatcher): RequestMatcher => (f) => m(queryParam(f, name));

/** `checks` must not change afterwards (the matcher keeps it). */
function allOf(checks: readonly RequestMatcher[]): RequestMatcher {
  return (f) => {
    for (const check of checks) if (!check(f)) return false;
    return true;
  };
}

/**
 * A header condition. For `withoutHeaders` the result is inverted and a
 * missing header counts as "" (Envoy's treat_missing_header_as_empty), so
 * `withoutHeaders: {x: {exact: v}}` lets requests without `x` through.
 */
function headerCheck(h: HeaderMatchDef, invert: boolean): RequestMatcher {
  const m = stringMatcher(h.match);
  if (!invert) return (f) => m(f.headers.get(h.name) ?? undefined);
  if (h.match.type === "present") return (f) => !f.headers.has(h.name);
  return (f) => !m(f.headers.get(h.name) ?? "");
}

/** A `@request.auth.claims` condition: a string claim, or any string in a list claim. */
function claimCheck(c: ClaimMatchDef): RequestMatcher {
  const m = stringMatcher(c.match);
  return (f) => {
    let node: unknown = f.claims;
    for (const key of c.claim) {
      if (typeof node !== "object" || node === null || Array.isArray(node)) return false;
      node = (node as Record<string, unknown>)[key];
    }
    if (typeof node === "string") return m(node);
    if (Array.isArray(node)) return node.some((v) => typeof v === "string" && m(v));
    return false;
  };
}
