/**
 * Envoy's command operators in `includeAdditionalHeadersInCheck` values.
 * Istio turns that field into the ext_authz service's
 * `authorization_request.headers_to_add`, whose values Envoy formats per
 * request, so the usual oauth2-proxy recipe
 * `X-Auth-Request-Redirect: "https://%REQ(:authority)%%REQ(:path)%"` sends
 * the URL the client asked for. The subset Isthmus expands:
 *
 * - `%REQ(name)%`, `%REQ(name?other)%` (the first one present) and
 *   `%REQ(name):N%` (at most N characters): a request header, or
 *   `:authority` (also `host`), `:path` (with its query), `:method`,
 *   `:scheme`; a missing one is empty;
 * - `%DOWNSTREAM_REMOTE_ADDRESS%`: the client address with a port, which the
 *   edge does not know, so `:0`, as Envoy prints an address it took from
 *   X-Forwarded-For (`[…]:0` for IPv6);
 * - `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`: the client address;
 * - `%%`: a literal `%`.
 *
 * Anything else with a `%` is refused at compile time, so an authorizer is
 * never sent an operator as literal text.
 */
import type { RequestFacts } from "../../gateway/facts.ts";
import { isHttpToken, pseudoHeader, PSEUDO_HEADERS } from "../../gateway/request-header.ts";

/** A value formatted for one request. */
export type HeaderValue = (facts: RequestFacts) => string;

export type ParsedValue = { ok: true; value: HeaderValue } | { ok: false; reason: string };

const SUPPORTED = "text with the command operators %REQ(header)%, %DOWNSTREAM_REMOTE_ADDRESS% or %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%, and %% for a literal %";
/** `%NAME%`, `%NAME(args)%`, `%NAME(args):N%`, read from a `%`. */
const OPERATOR = /%([A-Z][A-Z0-9_]*)(?:\(([^()%]*)\))?(?::(\d+))?%/y;

/**
 * Parses a header value with command operators into its formatter.
 *
 * @example
 * const parsed = parseHeaderValue("https://%REQ(:authority)%%REQ(:path)%");
 * if (parsed.ok) parsed.value(facts); // "https://app.test/a?b=1"
 * parseHeaderValue("50% off"); // { ok: false, reason: "expected text with the command operators …; got \"% off\"" }
 */
export function parseHeaderValue(text: string): ParsedValue {
  if (!text.includes("%")) return { ok: true, value: () => text };
  const parts: (string | HeaderValue)[] = [];
  let literal = "";
  let i = 0;
  while (i < text.length) {
    const at = text.indexOf("%", i);
    if (at < 0) {
      literal += text.slice(i);
      break;
    }
    literal += text.slice(i, at);
    if (text[at + 1] === "%") {
      literal += "%";
      i = at + 2;
      continue;
    }
    OPERATOR.lastIndex = at;
    const match = OPERATOR.exec(text);
    const operator = match ? operatorOf(match[1] as string, match[2], match[3]) : { ok: false as const, reason: `expected ${SUPPORTED}; got "${text.slice(at)}"` };
    if (!operator.ok) return operator;
    if (literal) parts.push(literal);
    literal = "";
    parts.push(operator.value);
    i = OPERATOR.lastIndex;
  }
  if (literal) parts.push(literal);
  return { ok: true, value: join(parts) };
}

function join(parts: readonly (string | HeaderValue)[]): HeaderValue {
  if (parts.length === 1 && typeof parts[0] === "function") return parts[0];
  return (facts) => {
    let out = "";
    for (const part of parts) out += typeof part === "string" ? part : part(facts);
    return out;
  };
}

function operatorOf(name: string, args: string | undefined, max: string | undefined): ParsedValue {
  if (name === "REQ") return requestOperator(args, max === undefined ? undefined : Number(max));
  if (name === "DOWNSTREAM_REMOTE_ADDRESS" || name === "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT") {
    if (args !== undefined || max !== undefined) return { ok: false, reason: `%${name}% takes no arguments` };
    return { ok: true, value: name === "DOWNSTREAM_REMOTE_ADDRESS" ? remoteAddress : (facts) => facts.remoteIp };
  }
  return { ok: false, reason: `expected ${SUPPORTED}; got %${name}%, which Isthmus does not expand` };
}

function requestOperator(args: string | undefined, max: number | undefined): ParsedValue {
  const names = (args ?? "").split("?").map((n) => n.trim().toLowerCase());
  const bad = args === undefined || names.length > 2 ? "" : names.find((n) => !isRequestHeader(n));
  if (bad !== undefined) {
    return { ok: false, reason: `expected %REQ(header)% or %REQ(header?other)%, with request header names or :authority, :path, :method, :scheme; got %REQ(${args ?? ""})%` };
  }
  const [first, other] = names as [string, string | undefined];
  const cut = max === undefined ? (v: string) => v : (v: string) => v.slice(0, max);
  return { ok: true, value: (facts) => cut(requestValue(first, facts) ?? (other === undefined ? null : requestValue(other, facts)) ?? "") };
}

function isRequestHeader(name: string): boolean {
  return PSEUDO_HEADERS.has(name) || isHttpToken(name);
}

/** A request header as Envoy's `%REQ()%` reads it: `host` is the authority. */
function requestValue(name: string, facts: RequestFacts): string | null {
  if (name === "host") return facts.authority;
  return pseudoHeader(name, facts) ?? facts.headers.get(name);
}

function remoteAddress(facts: RequestFacts): string {
  const ip = facts.remoteIp;
  if (!ip) return "";
  return ip.includes(":") ? `[${ip}]:0` : `${ip}:0`;
}
