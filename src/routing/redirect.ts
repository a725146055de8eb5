/**
 * VirtualService `redirect`: builds the Location Envoy would send.
 */
import type { RedirectDef, StringMatchDef } from "../config/snapshot.ts";
import { authorityPort, type RequestFacts } from "../gateway/facts.ts";

const DEFAULT_PORT: Record<string, number> = { http: 80, https: 443 };

/**
 * @example
 * redirectLocation({ status: 301, scheme: "https" }, facts, undefined) // "https://bookinfo.local/x?y"
 */
export function redirectLocation(r: RedirectDef, facts: RequestFacts, uriMatch: StringMatchDef | undefined): string {
  const scheme = r.scheme ?? facts.scheme;
  let host = facts.host;
  // The Host header's port (facts.port is the listener's, which only FROM_REQUEST_PORT uses, as Istio's ApplyRedirect).
  let port: number | undefined = authorityPort(facts);
  if (r.authority) {
    const colon = r.authority.lastIndexOf(":");
    if (colon > 0 && !r.authority.endsWith("]") && /^\d+$/.test(r.authority.slice(colon + 1))) {
      host = r.authority.slice(0, colon);
      port = Number(r.authority.slice(colon + 1));
    } else {
      host = r.authority;
      port = undefined;
    }
  }
  // FROM_PROTOCOL_DEFAULT sets no port_redirect in Istio (ApplyRedirect), so Envoy keeps the
  // Host's port as it does with no port setting at all (processRequestHost).
  if (r.port !== undefined) port = r.port;
  else if (r.derivePort === "FROM_REQUEST_PORT") port = facts.port;
  else if (scheme !== facts.scheme && port === DEFAULT_PORT[facts.scheme]) port = undefined;
  if (port === DEFAULT_PORT[scheme]) port = undefined;

  // An empty uri or prefixRewrite is no rewrite, as in Envoy (empty path_redirect / prefix_rewrite).
  const path = r.uri ? r.uri : r.prefixRewrite ? replacePrefix(facts.path, uriMatch, r.prefixRewrite) : facts.path;
  // Envoy's path_redirect: a query string in the redirect uri replaces the request's.
  const query = r.uri?.includes("?") || !facts.query ? "" : `?${facts.query}`;
  // Envoy's newUri puts a `/` before a path without one: pasted after the host, `uri: new` or a
  // rewritten `@evil.example/x` would otherwise change the Location's host.
  const rooted = path.charCodeAt(0) === 47 ? path : `/${path}`;
  return `${scheme}://${host}${port !== undefined ? `:${port}` : ""}${rooted}${query}`;
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
