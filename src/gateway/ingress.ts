/**
 * Pipeline stages 1 and 2: hygiene, then normalization into RequestFacts.
 * After this, every stage and the upstream see the same host, path and
 * headers.
 */
import type { GatewaySettings } from "../config/snapshot.ts";
import type { PipelineDeps } from "./context.ts";
import { LISTENER_PORT, type RequestFacts } from "./facts.ts";
import { sanitizeRequest } from "./hygiene.ts";
import { badRequest, type LocalReply } from "./local-reply.ts";
import { normalizeHost, normalizePath } from "./normalize.ts";
import { parseIp } from "../authz/policy/cidr.ts";

export type IngressResult = { ok: true; facts: RequestFacts } | { ok: false; reply: LocalReply };

/** Envoy's answer to a request whose path does not start with "/" (an empty 404, details absolute_path_rejected). */
const NOT_A_PATH: LocalReply = { status: 404, body: "" };

/**
 * @param injected lower-case names of headers Isthmus itself sets from verified identities
 *   (JWT claim and payload headers): a client never gets to send them, nor a spelling of
 *   them with `_` for `-`. (An ext-authz
 *   provider's upstream headers are handled on the requests it checks: authz/ext-authz/upstream.ts.)
 */
export function ingress(request: Request, settings: GatewaySettings, deps: PipelineDeps, injected?: ReadonlySet<string>): IngressResult {
  const clean = sanitizeRequest(request, { limits: settings.limits, injected, headersWithUnderscoresAction: settings.headersWithUnderscoresAction });
  if (!clean.ok) return clean;

  // request.url is already serialized by the runtime's URL parser: split it, not parse it again.
  const parts = urlParts(request.url);
  // workerd hands the asterisk-form target of `OPTIONS *` (and `GET *`) on as `http://host*`:
  // a path not starting with "/", which Envoy answers 404 (absolute_path_rejected). No host
  // name ends with "*", and a request with a path always has its "/" after the authority.
  if (parts.authority.charCodeAt(parts.authority.length - 1) === 42 /* * */) return { ok: false, reply: NOT_A_PATH };
  const scheme = parts.scheme;
  const host = normalizeHost(clean.host ?? parts.authority);
  if (!host.ok) return { ok: false, reply: badRequest(400, host.reason) };
  const path = normalizePath(parts.path, settings.pathNormalization);
  if (!path.ok) return { ok: false, reply: badRequest(400, path.reason) };

  const headers = clean.headers;
  const peerIp = clean.connectingIp ?? peerAddress(request);
  const client = clientAddress(peerIp, clean.forwardedFor, settings.numTrustedProxies ?? 0);
  const requestId = deps.requestId();
  headers.set("x-request-id", requestId);
  if (client.forwardedFor) headers.set("x-forwarded-for", client.forwardedFor);
  headers.set("x-forwarded-proto", scheme);
  const facts: RequestFacts = {
    method: request.method,
    scheme,
    host: host.host,
    // The listener's port, not the Host header's (which stays in `authority`): a client must not
    // pick the port that AuthorizationPolicy `ports` and route `match.port` compare.
    port: LISTENER_PORT[scheme],
    authority: host.authority,
    path: path.path,
    query: parts.query,
    headers,
    remoteIp: client.remoteIp,
    receivedHeaderBytes: clean.bytes,
    bodyLength: clean.bodyLength,
    traceContext: clean.traceContext,
    websocket: clean.websocket,
    requestId,
    // Present from the start, so the object never changes shape (see newRecord).
    peerIp: client.remoteIp !== peerIp ? peerIp : undefined,
    claims: undefined,
    auth: undefined,
    peer: undefined,
  };
  return { ok: true, facts };
}

/**
 * The client's address and the X-Forwarded-For sent upstream, as Envoy
 * derives them with `use_remote_address` and `xff_num_trusted_hops`
 * (Istio's gatewayTopology.numTrustedProxies):
 * - no trusted proxies: the client is the peer, and X-Forwarded-For is the
 *   peer alone (a client's own value is dropped at this edge);
 * - N trusted proxies: the client is the Nth address from the right of the
 *   received X-Forwarded-For (the peer when it has fewer, or that entry is
 *   not an IP address), and the peer is appended to it.
 *
 * @example
 * clientAddress("192.0.2.5", "203.0.113.128, 203.0.113.10, 203.0.113.1", 2);
 * // { remoteIp: "203.0.113.10", forwardedFor: "203.0.113.128, 203.0.113.10, 203.0.113.1, 192.0.2.5" }
 */
export function clientAddress(peerIp: string, received: string | null, trustedProxies: number): { remoteIp: string; forwardedFor: string } {
  if (trustedProxies === 0 || !received) return { remoteIp: peerIp, forwardedFor: peerIp };
  const hops = received.split(",");
  const entry = hops.length >= trustedProxies ? (hops[hops.length - trustedProxies] as string).trim() : "";
  const remoteIp = entry && parseIp(entry) ? entry : peerIp;
  return { remoteIp, forwardedFor: peerIp ? `${received}, ${peerIp}` : received };
}

/**
 * The client's address when no CF-Connecting-IP header names it (Cloudflare
 * always sets one): bare workerd (`isthmus serve`) reports the socket's peer
 * as `request.cf.clientIp`, `ip:port` or `[ipv6]:port`. "" when neither is
 * known. Reading `cf` costs workerd a parse, so it happens only here.
 *
 * @example
 * peerAddress(request); // "10.0.3.7" for cf.clientIp "10.0.3.7:51234", "::1" for "[::1]:51234"
 */
export function peerAddress(request: Request): string {
  const value = (request.cf as { clientIp?: unknown } | undefined)?.clientIp;
  if (typeof value !== "string") return "";
  if (value.startsWith("[")) {
    const end = value.indexOf("]");
    return end > 0 ? value.slice(1, end) : "";
  }
  const colon = value.indexOf(":");
  // One colon: IPv4 with a port. None, or several (an IPv6 address without brackets): no port to drop.
  return colon > 0 && colon === value.lastIndexOf(":") ? value.slice(0, colon) : value;
}

/**
 * The parts of a serialized http(s) URL (a Request's url): the scheme, the
 * authority, the path as the runtime's URL parser left it (before our
 * normalization) and the query without its `?`. Neither keeps the fragment
 * (a Request's url keeps `#...`; Envoy strips it so that routing and
 * authorization never see it, CVE-2021-32779).
 */
export function urlParts(url: string): { scheme: "http" | "https"; authority: string; path: string; query: string } {
  const scheme = url.startsWith("https:") ? "https" : "http";
  const afterScheme = url.indexOf("//") + 2;
  const hash = url.indexOf("#", afterScheme);
  const end = hash < 0 ? url.length : hash;
  let question = url.indexOf("?", afterScheme);
  if (question > end || question < 0) question = end;
  let pathStart = url.indexOf("/", afterScheme);
  if (pathStart < 0 || pathStart > question) pathStart = question;
  const authority = url.slice(afterScheme, pathStart);
  return {
    scheme,
    authority: authority.slice(authority.lastIndexOf("@") + 1),
    path: pathStart < question ? url.slice(pathStart, question) : "/",
    query: question < end ? url.slice(question + 1, end) : "",
  };
}
