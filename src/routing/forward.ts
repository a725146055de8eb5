/**
 * Forwarding to one endpoint: builds the upstream request, enforces the
 * route timeout, and maps failures to Envoy's local replies.
 */
import { GATEWAY_BINDINGS } from "../env.ts";
import type { ClusterDef, EndpointDef } from "../config/snapshot.ts";
import { deleteConnectionOptions, headerTokens, HOP_BY_HOP, limitBody } from "../gateway/hygiene.ts";
import { badRequest, REPLIES, type LocalReply } from "../gateway/local-reply.ts";
import { sendsNoBody, withDeclaredLength } from "../upstream/request-body.ts";
import { responseHeadWithout, type ResponseHead } from "../telemetry/completed.ts";

/**
 * How the gateway sends a subrequest: the shape of the global `fetch` with a
 * URL and an init. workerd builds the subrequest from them once; handing it a
 * `Request` built in JavaScript makes it build the request a second time.
 */
export type Fetch = (url: string, init: RequestInit) => Promise<Response>;

/**
 * The fetch of a binding by name (an mTLS certificate or a service), or
 * undefined when the Worker has no such binding.
 *
 * @example
 * const viaCert = bindingFetch(env, cluster.mtlsBinding); // undefined: not in wrangler.toml
 */
export function bindingFetch(env: object, name: string): Fetch | undefined {
  // A snapshot compiled before they were refused could still name one of the gateway's own bindings.
  if (GATEWAY_BINDINGS.has(name)) return undefined;
  const b = (env as Record<string, unknown>)[name] as { fetch?: unknown } | undefined;
  return typeof b?.fetch === "function" ? (url, init) => (b as Fetcher).fetch(url, init) : undefined;
}

export interface UpstreamRequest {
  method: string;
  headers: Headers;
  body: ReadableStream<Uint8Array> | null;
  /** The client's Content-Length, when it declared one: the body is sent with it. */
  length?: number | undefined;
  maxBodyBytes: number;
  timeoutMs?: number;
  /** Told the body's size once it has been read to its end. */
  bodyRead?: (size: number) => void;
}

export type ForwardResult = { ok: true; response: Response } | { ok: false; reply: LocalReply };

/**
 * The URL for an endpoint; a dynamic cluster connects to the request's own host.
 * The path always starts with `/`: a rewrite can leave one without (`^/api(.*)$` → `\1`),
 * and pasted after the port, `@other:81/x` would turn the endpoint into userinfo and send
 * the request to another origin. Envoy always connects to the cluster's endpoint whatever
 * the `:path`; the `/` keeps it so.
 *
 * @example
 * endpointUrl(httpCluster, { address: "10.0.0.1", port: 8080, labels: {}, weight: 1 }, "a.test", "@evil:81/x", "q=1")
 * // "http://10.0.0.1:8080/@evil:81/x?q=1"
 */
export function endpointUrl(cluster: ClusterDef, endpoint: EndpointDef, requestHost: string, path: string, query: string): string {
  const address = cluster.dynamicAddress ? requestHost : endpoint.address;
  const host = address.includes(":") && !address.startsWith("[") ? `[${address}]` : address;
  const rooted = path.charCodeAt(0) === 47 ? path : `/${path}`;
  return `${cluster.scheme}://${host}:${endpoint.port}${rooted}${query ? `?${query}` : ""}`;
}

/**
 * Sends the request and returns the upstream response (any status), or the
 * local reply for a timeout (504 UT), a connection failure (503 UF) or an
 * oversized body (413).
 */
export async function forward(fetchFn: Fetch, url: string, req: UpstreamRequest): Promise<ForwardResult> {
  const hasBody = req.body !== null && !sendsNoBody(req.method);
  // Only a timeout or a body limit can abort the upstream request; without either, no controller is needed.
  const controller = hasBody || req.timeoutMs !== undefined ? new AbortController() : undefined;
  let timedOut = false;
  let tooLarge = false;
  const timer =
    req.timeoutMs !== undefined
      ? setTimeout(() => {
          timedOut = true;
          controller?.abort();
        }, req.timeoutMs)
      : undefined;
  const body = hasBody
    ? withDeclaredLength(
        limitBody(req.body as ReadableStream<Uint8Array>, {
          max: req.maxBodyBytes,
          onExceeded: () => {
            tooLarge = true;
            controller?.abort();
          },
          onEnd: req.bodyRead,
          // The client went away mid-upload: reset the upstream request rather than let it look complete.
          onFailed: () => controller?.abort(),
        }),
        req.length,
      )
    : null;
  try {
    const init: RequestInit = { method: req.method, headers: req.headers, body, redirect: "manual" };
    if (controller) init.signal = controller.signal;
    const response = await fetchFn(url, init);
    if (tooLarge) {
      await response.body?.cancel();
      return { ok: false, reply: badRequest(413, "payload too large") };
    }
    return { ok: true, response };
  } catch {
    if (tooLarge) return { ok: false, reply: badRequest(413, "payload too large") };
    if (timedOut) return { ok: false, reply: REPLIES.timeout };
    return { ok: false, reply: REPLIES.connectFailure };
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

/**
 * Copies an upstream response into a mutable one without hop-by-hop headers.
 * The upstream response is the init, so its headers are copied once, into
 * the new response's own (`{ headers: new Headers(...) }` copies them twice).
 * `websocket`: the request was a WebSocket handshake, whose 101 carries the socket.
 * `body`: the body to send in place of the upstream's (one watched to its end, see watchedBody).
 */
export function downstreamResponse(upstream: Response, websocket = false, body: ReadableStream<Uint8Array> | null = upstream.body): Response {
  // `webSocket` is a native getter: read only for a handshake.
  if (websocket && upstream.webSocket) return acceptedWebSocket(upstream);
  const response = new Response(body, upstream);
  // `response.headers` is a native getter: read it once, not once per name.
  const headers = response.headers;
  const connection = headers.get("connection");
  for (const name of HOP_BY_HOP) headers.delete(name);
  if (connection !== null) deleteConnectionOptions(headers, connection);
  return response;
}

/**
 * The origin's 101 to a WebSocket handshake, handed to the client with its
 * socket (a 101 cannot be built from a body), and mutable headers without
 * the hop-by-hop ones the runtime sets again for the upgrade.
 */
function acceptedWebSocket(upstream: Response): Response {
  const headers = new Headers(upstream.headers);
  for (const name of HOP_BY_HOP) headers.delete(name);
  return new Response(null, { status: 101, webSocket: upstream.webSocket, headers });
}

/** Deletes the headers `connection` names, and returns their size as `scan` counted it (name + value + 4). */
function deleteCountedOptions(headers: Headers, connection: string): number {
  let bytes = 0;
  for (const name of headerTokens(connection)) {
    const value = headers.get(name);
    if (value === null) continue;
    bytes += name.length + value.length + 4;
    headers.delete(name);
  }
  return bytes;
}

/** The header Envoy sets on every response from an upstream: how long the upstream took, in ms. */
export const UPSTREAM_SERVICE_TIME = "x-envoy-upstream-service-time";

/** What the counted copy removes from the upstream's headers: hop-by-hop ones, and the service time the gateway sets anew. */
const COUNTED_DROPS: ReadonlySet<string> = new Set([...HOP_BY_HOP, UPSTREAM_SERVICE_TIME]);

/**
 * `downstreamResponse` for a request telemetry reports: one pass over the
 * upstream's headers counts the response's head (its size on the wire,
 * for `istio_response_bytes`) and finds the hop-by-hop headers it holds,
 * and only those are deleted (instead of all seven names, ~2.2k
 * instructions each, and a second pass at the end). The upstream's own
 * `x-envoy-upstream-service-time` goes too: the caller sets it, and adds
 * its bytes to `head.bytes`, as it must for any later change it makes.
 *
 * @example
 * const { response, head } = countedDownstreamResponse(upstream);
 * response.headers.set(UPSTREAM_SERVICE_TIME, "12");
 * head.bytes += UPSTREAM_SERVICE_TIME.length + "12".length + 4;
 */
export function countedDownstreamResponse(upstream: Response, websocket = false, body: ReadableStream<Uint8Array> | null = upstream.body): { response: Response; head: ResponseHead } {
  const response = websocket && upstream.webSocket ? acceptedWebSocket(upstream) : new Response(body, upstream);
  const { head, present } = responseHeadWithout(response, COUNTED_DROPS);
  if (present.length > 0) {
    const headers = response.headers;
    // Headers the upstream's Connection names go too; they were counted, so they are counted off again.
    const connection = present.includes("connection") ? headers.get("connection") : null;
    for (const name of present) headers.delete(name);
    if (connection !== null) head.bytes -= deleteCountedOptions(headers, connection);
  }
  return { response, head };
}
