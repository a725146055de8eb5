/**
 * Route conditions, evaluated straight from the snapshot's match
 * definitions. A route keeps only its definition (parsed from the stored
 * snapshot anyway): matchers built as closures cost ~100 bytes each (a
 * function and its context), two or more per route, which for 10,000
 * routes was ~3 MB held for nothing the definition did not already say.
 * A regex is compiled the first time it is evaluated and kept for as long
 * as its definition is, and so is an `ignoreCase` value's lower case.
 * Matching is allocation-free except for lower-casing the request's value
 * when `ignoreCase` asks for it.
 */
import type { ClaimMatchDef, HeaderMatchDef, MatchDef, StringMatchDef } from "../config/snapshot.ts";
import { authorityPort, rawQueryParam, type RequestFacts } from "../gateway/facts.ts";
import { lazyRegex, type Regex } from "./regex.ts";

/** Each regex definition's compiled pattern, for as long as the definition lives. */
const regexes = new WeakMap<StringMatchDef, Regex>();

function regexOf(def: StringMatchDef & { type: "regex" }): Regex {
  let re = regexes.get(def);
  if (!re) regexes.set(def, (re = lazyRegex(def.value)));
  return re;
}

/** Each ignore-case definition's value in lower case, lowered once rather than at every evaluation. */
const foldedValues = new WeakMap<StringMatchDef, string>();

function foldedValue(def: StringMatchDef & { value: string }): string {
  let folded = foldedValues.get(def);
  if (folded === undefined) foldedValues.set(def, (folded = def.value.toLowerCase()));
  return folded;
}

/**
 * True when `value` satisfies `def`; an absent value satisfies nothing.
 * @example
 * matchesString({ type: "prefix", value: "/api" }, "/api/users") // true
 * matchesString({ type: "present" }, undefined) // false
 */
export function matchesString(def: StringMatchDef, value: string | undefined): boolean {
  if (value === undefined) return false;
  switch (def.type) {
    case "present":
      return true;
    case "exact":
      return def.ignoreCase ? value.toLowerCase() === foldedValue(def) : value === def.value;
    case "prefix":
      return def.ignoreCase ? value.toLowerCase().startsWith(foldedValue(def)) : value.startsWith(def.value);
    case "regex":
      return regexOf(def).fullMatch(value);
  }
}

/**
 * True when every present field of one HTTPMatchRequest holds (Istio ANDs
 * the fields of a match block); an empty one matches every request.
 * @example
 * matchesRequest({ uri: { type: "prefix", value: "/api" }, port: 8443 }, facts)
 */
export function matchesRequest(def: MatchDef, f: RequestFacts): boolean {
  if (def.uri && !matchesString(def.uri, f.path)) return false;
  if (def.scheme && !matchesString(def.scheme, f.scheme)) return false;
  if (def.method && !matchesString(def.method, f.method)) return false;
  if (def.authority && !matchesString(def.authority, f.authority)) return false;
  if (def.port !== undefined && f.port !== def.port) return false;
  if (def.exceptPorts !== undefined && def.exceptPorts.includes(f.port)) return false;
  if (def.hostPort !== undefined && (authorityPort(f) ?? f.port) !== def.hostPort) return false;
  if (def.headers) for (const h of def.headers) if (!matchesHeader(h, f)) return false;
  if (def.withoutHeaders) for (const h of def.withoutHeaders) if (!lacksHeader(h, f)) return false;
  if (def.claims) for (const c of def.claims) if (!matchesClaim(c, f)) return false;
  if (def.withoutClaims) for (const c of def.withoutClaims) if (matchesClaim(c, f)) return false;
  if (def.queryParams) for (const q of def.queryParams) if (!matchesString(q.match, rawQueryParam(f, q.name))) return false;
  return true;
}

function matchesHeader(h: HeaderMatchDef, f: RequestFacts): boolean {
  return matchesString(h.match, f.headers.get(h.name) ?? undefined);
}

/**
 * A `withoutHeaders` condition: the header's match must not hold, and a
 * missing header counts as "" (Envoy's treat_missing_header_as_empty), so
 * `withoutHeaders: {x: {exact: v}}` lets requests without `x` through.
 */
function lacksHeader(h: HeaderMatchDef, f: RequestFacts): boolean {
  if (h.match.type === "present") return !f.headers.has(h.name);
  return !matchesString(h.match, f.headers.get(h.name) ?? "");
}

/** A `@request.auth.claims` condition: a string claim, or any string in a list claim. */
function matchesClaim(c: ClaimMatchDef, f: RequestFacts): boolean {
  let node: unknown = f.claims;
  for (const key of c.claim) {
    if (typeof node !== "object" || node === null || Array.isArray(node)) return false;
    node = (node as Record<string, unknown>)[key];
  }
  if (typeof node === "string") return matchesString(c.match, node);
  if (Array.isArray(node)) {
    for (const v of node) if (typeof v === "string" && matchesString(c.match, v)) return true;
  }
  return false;
}
