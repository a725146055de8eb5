/**
 * Token extraction from the locations the JWT rules name, as Envoy's
 * extractor does: a header whose value starts with the configured prefix
 * (case-sensitive; a header without the prefix holds no token), then the
 * run of JWT characters after it; query parameters; cookies. Every token
 * found is returned (they must all verify), and each one is checked
 * against the size cap before any decoding. A parameter or cookie that is
 * present with an empty value is a token too, as in Envoy: it fails as
 * malformed (401), rather than passing as a request without a token.
 */
import { decodeQueryPart, queryParam, type RequestFacts } from "../../gateway/facts.ts";

/** The places tokens are looked for, deduplicated, with the rules that declared each one. */
export interface ExtractionPlan<R> {
  headers: { name: string; prefix: string; rules: R[] }[];
  params: { name: string; rules: R[] }[];
  cookies: { name: string; rules: R[] }[];
}

export interface FoundToken<R> {
  token: string;
  /** The rules whose locations hold this token (candidates to verify it). */
  rules: R[];
  /** Set for tokens found in a header (the header verification may remove). */
  header?: string;
  /** Set for tokens found in a query parameter (the parameter verification may remove). */
  param?: string;
}

export type Extraction<R> = { ok: true; tokens: FoundToken<R>[] } | { ok: false; tooLarge: true };

/** Characters of a compact JWS (base64url plus the dots); global, so a search can start after the prefix. */
const JWT_RUN = /[A-Za-z0-9._-]+/g;

/**
 * Builds the plan for rules given in order, each with its locations.
 * @example
 * const plan = extractionPlan([[rule, rule.def.locations]]);
 */
export function extractionPlan<R>(rules: readonly [R, readonly ({ header: string; prefix: string } | { param: string } | { cookie: string })[]][]): ExtractionPlan<R> {
  const plan: ExtractionPlan<R> = { headers: [], params: [], cookies: [] };
  for (const [rule, locations] of rules) {
    for (const loc of locations) {
      if ("header" in loc) {
        const existing = plan.headers.find((h) => h.name === loc.header && h.prefix === loc.prefix);
        if (existing) existing.rules.push(rule);
        else plan.headers.push({ name: loc.header, prefix: loc.prefix, rules: [rule] });
      } else if ("param" in loc) {
        const existing = plan.params.find((p) => p.name === loc.param);
        if (existing) existing.rules.push(rule);
        else plan.params.push({ name: loc.param, rules: [rule] });
      } else {
        const existing = plan.cookies.find((c) => c.name === loc.cookie);
        if (existing) existing.rules.push(rule);
        else plan.cookies.push({ name: loc.cookie, rules: [rule] });
      }
    }
  }
  return plan;
}

/**
 * Finds every token the plan's locations hold.
 *
 * `known(candidate, rules)`, when given, says whether a string is a token
 * one of `rules` already verified (a verified-token cache entry). A header
 * part whose whole rest after the prefix is such a token is taken as it is,
 * without scanning it for the end of its run of JWT characters (~1 µs for
 * a 700-character token, about half of a cache hit): a verified token is
 * three strict base64url segments joined by dots, so the scan would have
 * ended exactly at its end. Anything else is scanned as before.
 *
 * @example
 * extractTokens(plan, facts, 8192, (t, rules) => rules.some((r) => r.tokens.has(t)));
 */
export function extractTokens<R>(plan: ExtractionPlan<R>, facts: RequestFacts, maxBytes: number, known?: (candidate: string, rules: readonly R[]) => boolean): Extraction<R> {
  const tokens: FoundToken<R>[] = [];
  for (const h of plan.headers) {
    const value = facts.headers.get(h.name);
    if (value === null) continue;
    // Repeated headers arrive comma-joined; JWTs never contain commas, so each part is one candidate.
    for (const part of value.includes(",") ? value.split(",") : [value]) {
      const trimmed = part.trimStart();
      if (!trimmed.startsWith(h.prefix)) continue;
      if (known !== undefined && trimmed.length - h.prefix.length <= maxBytes) {
        const rest = trimmed.slice(h.prefix.length);
        if (known(rest, h.rules)) {
          tokens.push({ token: rest, rules: h.rules, header: h.name });
          continue;
        }
      }
      JWT_RUN.lastIndex = h.prefix.length;
      const run = JWT_RUN.exec(trimmed);
      if (!run) continue;
      if (run[0].length > maxBytes) return { ok: false, tooLarge: true };
      tokens.push({ token: run[0], rules: h.rules, header: h.name });
    }
  }
  for (const p of plan.params) {
    for (const value of queryParams(facts, p.name)) {
      if (value.length > maxBytes) return { ok: false, tooLarge: true };
      tokens.push({ token: value, rules: p.rules, param: p.name });
    }
  }
  if (plan.cookies.length > 0) {
    const cookies = parseCookies(facts.headers.get("cookie"));
    for (const c of plan.cookies) {
      const value = cookies.get(c.name);
      if (value === undefined) continue;
      if (value.length > maxBytes) return { ok: false, tooLarge: true };
      tokens.push({ token: value, rules: c.rules });
    }
  }
  return { ok: true, tokens };
}

/** Every value of a query parameter (a token may be sent twice; both must verify). */
function queryParams(facts: RequestFacts, name: string): string[] {
  if (!facts.query) return [];
  if (queryParam(facts, name) === undefined) return [];
  const out: string[] = [];
  for (const part of facts.query.split("&")) {
    const eq = part.indexOf("=");
    const key = eq < 0 ? part : part.slice(0, eq);
    if (decodeQueryPart(key) === name) out.push(eq < 0 ? "" : decodeQueryPart(part.slice(eq + 1)));
  }
  return out;
}

function parseCookies(header: string | null): Map<string, string> {
  const out = new Map<string, string>();
  if (!header) return out;
  for (const pair of header.split(";")) {
    const eq = pair.indexOf("=");
    if (eq < 0) continue;
    const name = pair.slice(0, eq).trim();
    let value = pair.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (!out.has(name)) out.set(name, value);
  }
  return out;
}
