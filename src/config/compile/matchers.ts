/**
 * Compiles VirtualService HTTPMatchRequest blocks into matcher descriptors,
 * checking regexes against RE2 on the way.
 */
import type { z } from "zod";
import type { HTTPMatchRequest } from "../schema/networking.ts";
import type { StringMatch } from "../schema/common.ts";
import type { ClaimMatchDef, HeaderMatchDef, MatchDef, StringMatchDef } from "../snapshot.ts";
import { regexError } from "../../routing/regex.ts";
import { isHttpToken } from "../../gateway/request-header.ts";
import type { FieldPath } from "./diagnostics.ts";

export type Report = (path: FieldPath, message: string) => void;

/** Header keys Istio ignores in `headers` because they have their own fields. */
const PSEUDO_HEADER_KEYS = new Set(["uri", "scheme", "method", "authority"]);
const CLAIM_PREFIX = "@request.auth.claims";

/**
 * Compiles one StringMatch. `{}` and `regex: "*"` mean "present" where
 * Istio allows it (headers, query parameters).
 */
export function compileStringMatch(
  m: StringMatch,
  path: FieldPath,
  report: Report,
  options: { ignoreCase?: boolean; allowPresence?: boolean } = {},
): StringMatchDef | undefined {
  if (m.exact !== undefined) return options.ignoreCase ? { type: "exact", value: m.exact, ignoreCase: true } : { type: "exact", value: m.exact };
  if (m.prefix !== undefined) return options.ignoreCase ? { type: "prefix", value: m.prefix, ignoreCase: true } : { type: "prefix", value: m.prefix };
  if (m.regex !== undefined) {
    if (options.allowPresence && m.regex === "*") return { type: "present" };
    const problem = regexError(m.regex);
    if (problem) {
      report([...path, "regex"], `expected an RE2 regular expression: ${problem}`);
      return undefined;
    }
    return { type: "regex", value: m.regex };
  }
  if (options.allowPresence) return { type: "present" };
  report(path, "expected one of exact, prefix or regex");
  return undefined;
}

/** Parses `@request.auth.claims.a.b` or `@request.auth.claims[a][b]` into `["a", "b"]`. */
export function parseClaimKey(key: string): string[] | undefined {
  const rest = key.slice(CLAIM_PREFIX.length);
  if (rest.startsWith(".")) {
    const parts = rest.slice(1).split(".");
    return parts.every((p) => p.length > 0) ? parts : undefined;
  }
  const parts = [...rest.matchAll(/\[([^\][]+)\]/g)].map((m) => m[1] as string);
  return parts.length > 0 && parts.map((p) => `[${p}]`).join("") === rest ? parts : undefined;
}

/** Compiles an HTTPMatchRequest into a MatchDef (undefined when it has errors). */
export function compileMatch(m: z.infer<typeof HTTPMatchRequest>, path: FieldPath, report: Report): MatchDef | undefined {
  let ok = true;
  const fail: Report = (p, message) => {
    ok = false;
    report(p, message);
  };
  const out: MatchDef = {};
  if (m.uri) {
    const uri = compileStringMatch(m.uri, [...path, "uri"], fail, { ignoreCase: m.ignoreUriCase === true });
    if (uri) out.uri = uri;
  }
  for (const field of ["scheme", "method", "authority"] as const) {
    const value = m[field];
    if (!value) continue;
    if (value.exact === "" || value.prefix === "" || value.regex === "") fail([...path, field], `expected a non-empty ${field} match`);
    const compiled = compileStringMatch(value, [...path, field], fail);
    if (compiled) out[field] = compiled;
  }
  const headers = compileHeaderMatches(m.headers, [...path, "headers"], fail);
  if (headers.headers.length) out.headers = headers.headers;
  if (headers.claims.length) out.claims = headers.claims;
  const without = compileHeaderMatches(m.withoutHeaders, [...path, "withoutHeaders"], fail);
  if (without.claims.length) out.withoutClaims = without.claims;
  if (without.headers.length) out.withoutHeaders = without.headers;
  if (m.queryParams) {
    const params: NonNullable<MatchDef["queryParams"]> = [];
    for (const [name, value] of Object.entries(m.queryParams)) {
      const compiled = compileStringMatch(value, [...path, "queryParams", name], fail, { allowPresence: true });
      if (compiled) params.push({ name, match: compiled });
    }
    if (params.length) out.queryParams = params;
  }
  if (m.port !== undefined) out.port = m.port;
  return ok ? out : undefined;
}

function compileHeaderMatches(
  headers: Record<string, StringMatch> | undefined,
  path: FieldPath,
  report: Report,
): { headers: HeaderMatchDef[]; claims: ClaimMatchDef[] } {
  const out = { headers: [] as HeaderMatchDef[], claims: [] as ClaimMatchDef[] };
  for (const [rawName, value] of Object.entries(headers ?? {})) {
    if (rawName.startsWith(CLAIM_PREFIX)) {
      const claim = parseClaimKey(rawName);
      if (!claim) {
        report([...path, rawName], "expected @request.auth.claims.<name> or @request.auth.claims[<name>][<nested>]");
        continue;
      }
      const match = compileStringMatch(value, [...path, rawName], report, { allowPresence: true });
      if (match) out.claims.push({ claim, match });
      continue;
    }
    const name = rawName.toLowerCase();
    if (PSEUDO_HEADER_KEYS.has(name)) continue;
    if (!isHttpToken(name)) {
      report([...path, rawName], "expected a valid HTTP header name");
      continue;
    }
    const match = compileStringMatch(value, [...path, rawName], report, { allowPresence: true });
    if (match) out.headers.push({ name, match });
  }
  return out;
}
