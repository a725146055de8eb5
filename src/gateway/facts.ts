/**
 * RequestFacts: the canonical view of a request that every decision stage
 * (routing, authorization, rate limiting) reads. Built once by
 * normalization, so every stage sees the same host, path and headers.
 */
import type { PeerIdentity, RequestIdentity } from "../authz/identity.ts";

export interface RequestFacts {
  method: string;
  scheme: "http" | "https";
  /** Lower-case host without port or trailing dot. */
  host: string;
  /**
   * The port the request came in on, as Envoy's listener port: 80 for http, 443 for https
   * (`LISTENER_PORT`). What `match.port`, AuthorizationPolicy `ports` and `destination.port`,
   * and `derivePort: FROM_REQUEST_PORT` see. Never the Host header's port, which the client
   * chooses: that one is only in `authority`.
   */
  port: number;
  /** `host` plus the Host header's `:port` when the client sent one: what `authority` matches see. */
  authority: string;
  /** Normalized path without the query string. */
  path: string;
  /** Raw query string without the `?` (empty when there is none). */
  query: string;
  /** Sanitized request headers (spoofable and hop-by-hop headers removed). */
  headers: Headers;
  /**
   * The client IP: the direct peer (CF-Connecting-IP on Cloudflare, the
   * socket's peer under isthmus serve), or with trusted proxies in front
   * (GatewayConfig gatewayTopology.numTrustedProxies) the address they
   * report in X-Forwarded-For. "" when unknown.
   */
  remoteIp: string;
  /** The direct peer, when trusted proxies make `remoteIp` another address; absent: the same as `remoteIp`. */
  peerIp?: string;
  /** The HTTP/1.1 size of the header block as the client sent it (`name: value\r\n` each), counted by hygiene; telemetry reports it. */
  receivedHeaderBytes?: number;
  /**
   * The request body's size: the client's Content-Length, checked and noted
   * by hygiene; for a body sent without one (chunked, or HTTP/2), the bytes
   * read once the gateway has read it whole (absent until then).
   */
  bodyLength?: number | undefined;
  /**
   * The client sent a trace context header or `x-client-trace-id` (noted by
   * hygiene); false lets tracing skip reading them. Absent: unknown, read them.
   */
  traceContext?: boolean;
  /** A WebSocket handshake, whose Upgrade and Connection headers go upstream (noted by hygiene). */
  websocket?: boolean;
  /** The x-request-id ingress generated (a client's is never kept at the edge). Absent: read the header. */
  requestId?: string;
  /** Verified JWT claims, once request authentication ran. */
  claims?: Record<string, unknown>;
  /** The verified JWT identity (request.auth.*), once request authentication ran. */
  auth?: RequestIdentity;
  /** The client certificate (request.cf.tlsClientAuth), once peer authentication ran. */
  peer?: PeerIdentity;
}

/**
 * The port of the listener a request came in on, by the scheme of its
 * connection: Cloudflare's edge, and the http and https sockets of
 * `isthmus serve`, play an Istio Gateway's servers on ports 80 and 443.
 * A Worker cannot see its socket's port; the scheme is set by the runtime
 * from the connection, so a client cannot choose it as it can a Host port.
 */
export const LISTENER_PORT = { http: 80, https: 443 } as const;

/**
 * The port a request's authority (its Host header) names, undefined when
 * it names none. Where the request is sent on or pointed back to (an
 * ALLOW_ANY passthrough, a redirect that keeps the Host's port), never
 * what policies or routes match (`RequestFacts.port`).
 *
 * @example
 * authorityPort({ authority: "app.example.com:8080" }) // 8080
 * authorityPort({ authority: "[2001:db8::1]" }) // undefined
 */
export function authorityPort(r: { authority: string }): number | undefined {
  const colon = r.authority.lastIndexOf(":");
  return colon < 0 || r.authority.endsWith("]") ? undefined : Number(r.authority.slice(colon + 1));
}

/**
 * A request's path with its query, as `:path` carries it (the path
 * normalized by ingress).
 *
 * @example
 * pathWithQuery({ path: "/api/orders", query: "limit=5" }) // "/api/orders?limit=5"
 */
export function pathWithQuery(r: { path: string; query: string }): string {
  return r.query ? `${r.path}?${r.query}` : r.path;
}

/** The first value of a query parameter, decoded; `""` for `?k`, undefined when absent. */
export function queryParam(facts: RequestFacts, name: string): string | undefined {
  return firstQueryValue(facts.query, name, decodeQueryPart);
}

/**
 * The first value of a query parameter as the client wrote it, compared by
 * its name as written: what Envoy's route `query_parameters` match sees
 * (its router parses the query string without percent-decoding).
 *
 * @example
 * rawQueryParam(facts, "q") // "a+b%2Fc" for ?q=a+b%2Fc
 */
export function rawQueryParam(facts: RequestFacts, name: string): string | undefined {
  return firstQueryValue(facts.query, name, asWritten);
}

const asWritten = (s: string): string => s;

function firstQueryValue(query: string, name: string, decode: (s: string) => string): string | undefined {
  if (!query) return undefined;
  for (const part of query.split("&")) {
    const eq = part.indexOf("=");
    const key = eq < 0 ? part : part.slice(0, eq);
    if (decode(key) !== name) continue;
    return eq < 0 ? "" : decode(part.slice(eq + 1));
  }
  return undefined;
}

/**
 * A query string's name or value decoded (`+` is a space), or as it is when
 * its escapes are malformed.
 *
 * @example
 * decodeQueryPart("a+b%2Fc") // "a b/c"
 */
export function decodeQueryPart(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch {
    return s;
  }
}
