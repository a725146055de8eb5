/**
 * VirtualService `redirect`: builds the Location Envoy would send.
 */
import type { RedirectDef, StringMatchDef } from "../config/snapshot.ts";
import type { RequestFacts } from "../gateway/facts.ts";

const DEFAULT_PORT: Record<string, number> = { http: 80, https: 443 };

/**
 * @example
 * redirectLocation({ status: 301, scheme: "https" }, facts, undefined) // "https://bookinfo.local/x?y"
 */
export function redirectLocation(r: RedirectDef, facts: RequestFacts, uriMatch: StringMatchDef | undefined): string {
  const scheme = r.scheme ?? facts.scheme;
  let host = facts.host;
  let port: number | undefined = facts.authority.includes(":") && !facts.authority.endsWith("]") ? facts.port : undefined;
  if (r.authority !== undefined) {
    const colon = r.authority.lastIndexOf(":");
    if (colon > 0 && !r.authority.endsWith("]") && /^\d+$/.test(r.authority.slice(colon + 1))) {
      host = r.authority.slice(0, colon);
      port = Number(r.authority.slice(colon + 1));
    } else {
      host = r.authority;
      port = undefined;
    }
  }
  if (r.port !== undefined) port = r.port;
  else if (r.derivePort === "FROM_PROTOCOL_DEFAULT") port = undefined;
  else if (r.derivePort === "FROM_REQUEST_PORT") port = facts.port;
  else if (scheme !== facts.scheme && port === DEFAULT_PORT[facts.scheme]) port = undefined;
  if (port === DEFAULT_PORT[scheme]) port = undefined;

  const path = r.uri ?? (r.prefixRewrite !== undefined ? replacePrefix(facts.path, uriMatch, r.prefixRewrite) : facts.path);
  // Envoy's path_redirect: a query string in the redirect uri replaces the request's.
  const query = r.uri?.includes("?") || !facts.query ? "" : `?${facts.query}`;
  return `${scheme}://${host}${port !== undefined ? `:${port}` : ""}${path}${query}`;
}

/**
 * Envoy's prefix_rewrite: the part of the path the route's uri match
 * consumed is replaced (an exact or a regex match consumes the whole path;
 * no uri match consumes the leading `/`). `prefix: /foo` with `/` turns
 * `/foo/x` into `//x`, as in Envoy.
 */
export function replacePrefix(path: string, uriMatch: StringMatchDef | undefined, replacement: string): string {
  if (uriMatch?.type === "exact" || uriMatch?.type === "regex") return replacement;
  if (uriMatch?.type === "prefix") return replacement + path.slice(uriMatch.value.length);
  return replacement + path.slice(1);
}
