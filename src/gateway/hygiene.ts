/**
 * Ingress hygiene, the first stage of every request: reject malformed or
 * oversized requests before any work is done, and rebuild the header set
 * without anything a client could use to impersonate the gateway, the
 * platform or an identity the gateway vouches for.
 */
import type { HeadersWithUnderscoresAction, RequestLimits } from "../config/snapshot.ts";
import { badRequest, type LocalReply } from "./local-reply.ts";
import { isHttpToken } from "./request-header.ts";
import { isTraceContextHeader } from "../telemetry/trace-context.ts";

/** Hop-by-hop headers (RFC 9110 §7.6.1) never forwarded in either direction. */
export const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"]);

/**
 * Headers a client must never be able to set: forwarding and identity
 * headers the gateway (or Envoy) would otherwise be trusted for.
 */
const SPOOFABLE_EXACT = new Set(["forwarded", "x-real-ip", "x-forwarded-client-cert", "client-cert", "client-cert-chain", "x-request-id", "x-envoy-original-path"]);
/** Every one starts with "x-" (spoofablePrefix tests that first, as most names do not). */
const SPOOFABLE_PREFIXES = ["x-forwarded-", "x-envoy-", "x-isthmus-"];
/** Hop-by-hop and exact spoofable names together: one lookup per header. */
const STRIPPED_EXACT = new Set([...HOP_BY_HOP, ...SPOOFABLE_EXACT]);


function spoofablePrefix(name: string): boolean {
  if (name.charCodeAt(0) !== 120 /* x */ || name.charCodeAt(1) !== 45 /* - */) return false;
  for (const prefix of SPOOFABLE_PREFIXES) if (name.startsWith(prefix)) return true;
  return false;
}

/** True for a (lower-case) header name that ingress hygiene always removes from client requests. */
export function strippedAtIngress(name: string): boolean {
  return STRIPPED_EXACT.has(name) || spoofablePrefix(name);
}

/**
 * Headers Cloudflare's edge (or `isthmus serve`'s socket) sets for the
 * Worker, kept as they arrive; the platform never spells them with `_`
 * (the names of src/cli/serve/workerd-config.ts EDGE_HEADERS).
 */
const PLATFORM_SET = new Set(["cf-connecting-ip", "cf-connecting-ipv6", "cf-pseudo-ipv4", "cf-ipcountry", "cf-ray", "cf-visitor", "cf-worker", "true-client-ip"]);

/**
 * A header name with every `_` read as `-`: how CGI (`HTTP_X_USER_ID`),
 * WSGI, PHP and nginx with `underscores_in_headers on` see it. Names are
 * lower-case already (Headers iteration lowers them).
 *
 * @example
 * dashed("x_user_id") // "x-user-id"
 */
export function dashed(name: string): string {
  return name.replaceAll("_", "-");
}

/** `injected` with its names dashed, built once per set (it lives as long as its snapshot). */
const dashedSets = new WeakMap<ReadonlySet<string>, ReadonlySet<string>>();

function dashedSet(names: ReadonlySet<string>): ReadonlySet<string> {
  let out = dashedSets.get(names);
  if (!out) {
    out = new Set([...names].map(dashed));
    dashedSets.set(names, out);
  }
  return out;
}

/**
 * True for a client header that is another spelling of one the gateway
 * strips or sets itself (`x_forwarded_for`, `X-Envoy_Retry_On`,
 * `x_jwt_sub` for a claim header `x-jwt-sub`), or of what the platform
 * sets (`cf_connecting_ip`): an origin that reads `_` as `-` would take it
 * for the header the gateway vouches for. `name` is dashed already.
 */
function vouchedSpelling(name: string, injected: ReadonlySet<string> | undefined): boolean {
  return strippedAtIngress(name) || PLATFORM_SET.has(name) || (injected?.has(name) ?? false);
}

/** Envoy's HTTP/1 codec reply to a header name with `_` under REJECT_REQUEST. */
const UNDERSCORE_REJECTED = badRequest(400, "header name contains underscores", "http1.unexpected_underscore");
/** Envoy's HTTP/1 codec reply to a transfer coding other than `chunked` alone (RFC 9112 §6.1: 501). */
const TRANSFER_CODING_REFUSED = badRequest(501, "unsupported transfer encoding", "http1.invalid_transfer_encoding");

/**
 * `bytes`: the HTTP/1.1 size of the header block as received (`name: value\r\n` per header).
 * `host`, `connectingIp`, `forwardedFor` and `bodyLength` are the client's
 * `Host`, `CF-Connecting-IP`, `X-Forwarded-For` (removed from `headers` all
 * the same) and Content-Length (as a number, once checked), noted during the
 * same pass so that later stages need not look them up again. `traceContext`:
 * the client sent a trace context header (`traceparent`, `tracestate`, `b3`,
 * `x-b3-*`) or `x-client-trace-id`; without one, tracing reads none of them.
 */
export type HygieneResult =
  | {
      ok: true;
      headers: Headers;
      bytes: number;
      host: string | null;
      connectingIp: string | null;
      forwardedFor: string | null;
      bodyLength: number | undefined;
      traceContext: boolean;
      /** A WebSocket handshake (`websocketUpgrade`): its `Upgrade` and `Connection` headers are kept for the upstream. */
      websocket: boolean;
    }
  | { ok: false; reply: LocalReply };

export interface HygieneOptions {
  limits: RequestLimits;
  /**
   * Extra header names to strip (headers Isthmus injects, such as JWT
   * claim headers), in any spelling that reads the same with `_` as `-`.
   */
  injected?: ReadonlySet<string>;
  /**
   * GatewayConfig `headersWithUnderscoresAction` (Envoy's): what happens
   * to any other header whose name has a `_`. Absent means ALLOW.
   */
  headersWithUnderscoresAction?: HeadersWithUnderscoresAction;
}

/**
 * Checks a request and returns its sanitized headers, or the 4xx (or 501)
 * to send.
 *
 * A header name with `_` that reads as one the gateway strips or sets
 * (see vouchedSpelling) is always dropped; any other follows
 * `headersWithUnderscoresAction`: kept (ALLOW), dropped (DROP_HEADER), or
 * the request refused with 400 (REJECT_REQUEST, Envoy's
 * `http1.unexpected_underscore`). A Transfer-Encoding other than `chunked`
 * alone gets Envoy's 501 (`http1.invalid_transfer_encoding`): the runtime
 * has removed the chunked framing, and a coding under it (`gzip, chunked`)
 * would reach the origin as if the body were not coded.
 *
 * @example
 * const result = sanitizeRequest(request, { limits });
 * if (!result.ok) return toResponse(result.reply);
 */
export function sanitizeRequest(request: Request, options: HygieneOptions): HygieneResult {
  const { limits } = options;
  const injected = options.injected ? dashedSet(options.injected) : undefined;
  const underscores = options.headersWithUnderscoresAction ?? "ALLOW";
  // UTF-16 code units take at most 3 UTF-8 bytes each: only a long URL needs counting.
  if (request.url.length * 3 > limits.maxUrlBytes && utf8Length(request.url) > limits.maxUrlBytes) {
    return { ok: false, reply: badRequest(414, "URI too long") };
  }
  if (!isHttpToken(request.method)) return { ok: false, reply: badRequest(400, "invalid method") };

  // One pass over the headers: validate them, note the ones to strip and the
  // few later stages read (iteration joins repeated names as `get` does).
  // `forEach` rather than `for…of`: workerd builds an iterator result and a
  // [name, value] array per header for the latter, ~2,400 instructions more
  // per header (bench/NOTES.md, eleventh pass).
  let count = 0;
  let bytes = 0;
  // An upper bound on what repeated lines may add to `bytes` (see repeatedLineBytes), times two:
  // a multiply-add per header, so that the values are searched only when it could matter.
  let spread = 0;
  let invalid = undefined as LocalReply | undefined;
  const strip: string[] = [];
  let host = null as string | null;
  let connectingIp = null as string | null;
  let forwardedFor = null as string | null;
  let contentLength = null as string | null;
  let connection = null as string | null;
  let upgrade = null as string | null;
  let transferEncoding = null as string | null;
  let traceContext = false;
  // (The `as` types: assignments in the callback do not widen what TypeScript narrowed the initial values to.)
  request.headers.forEach((value, name) => {
    if (invalid) return;
    count++;
    bytes += name.length + value.length + 4;
    spread += (name.length + 2) * value.length;
    if (!isHttpToken(name)) invalid = badRequest(400, "invalid header name");
    else if (/[\r\n\0]/.test(value)) invalid = badRequest(400, "invalid header value");
    switch (name) {
      case "host":
        host = value;
        break;
      case "cf-connecting-ip":
        connectingIp = value;
        break;
      case "x-forwarded-for":
        forwardedFor = value;
        break;
      case "content-length":
        contentLength = value;
        break;
      case "connection":
        connection = value;
        break;
      case "upgrade":
        upgrade = value;
        break;
      case "transfer-encoding":
        transferEncoding = value;
        break;
      case "expect":
        // The runtime has already answered 100 Continue to the client; as Envoy without
        // proxy_100_continue, the expectation is not passed on.
        if (value.toLowerCase() === "100-continue") strip.push(name);
        break;
      default:
        if (isTraceContextHeader(name)) traceContext = true;
    }
    if (!name.includes("_")) {
      if (strippedAtIngress(name) || injected?.has(name)) strip.push(name);
    } else if (underscores === "REJECT_REQUEST") {
      invalid ??= UNDERSCORE_REJECTED;
    } else if (underscores === "DROP_HEADER" || vouchedSpelling(dashed(name), injected)) {
      strip.push(name);
    }
  });
  if (invalid) return { ok: false, reply: invalid };
  if (count > limits.maxHeadersCount) return { ok: false, reply: badRequest(431, "too many request headers") };
  const maxBytes = limits.maxRequestHeadersBytes;
  // Repeated lines are counted (a second pass) only when they could take the block past the limit.
  if (bytes > maxBytes || (bytes + spread / 2 > maxBytes && bytes + repeatedLineBytes(request.headers) > maxBytes)) {
    return { ok: false, reply: badRequest(431, "request headers too large") };
  }

  // As Envoy's codec: only `chunked` (which the runtime has decoded) may frame a request body.
  if (transferEncoding !== null && transferEncoding.trim().toLowerCase() !== "chunked") return { ok: false, reply: TRANSFER_CODING_REFUSED };
  if (contentLength !== null && transferEncoding !== null) {
    return { ok: false, reply: badRequest(400, "both content-length and transfer-encoding are set") };
  }
  let bodyLength: number | undefined;
  if (contentLength !== null) {
    if (!/^\d+$/.test(contentLength.trim())) return { ok: false, reply: badRequest(400, "invalid content-length") };
    bodyLength = Number(contentLength);
    if (bodyLength > limits.maxRequestBodyBytes) return { ok: false, reply: badRequest(413, "payload too large") };
  }

  // Copy natively, then remove what must not pass (and what `Connection` names as hop-by-hop).
  const headers = new Headers(request.headers);
  for (const name of strip) headers.delete(name);
  if (connection) deleteConnectionOptions(headers, connection);
  const websocket = upgrade !== null && websocketUpgrade(request.method, upgrade, connection);
  if (websocket) {
    headers.set("upgrade", "websocket");
    headers.set("connection", "Upgrade");
  }
  return { ok: true, headers, bytes, host, connectingIp, forwardedFor, bodyLength, traceContext, websocket };
}

/**
 * The bytes a header block may have had beyond what its joined entries
 * show. The runtime joins the lines of a repeated name into one entry with
 * ", ", so 12,000 lines of `X-A: b` arrive as one header of 36,000 bytes
 * while the origin is sent 12,000 lines (Envoy counts each line against its
 * limits). Any ", " may be such a join: each counts the `name: ` and CRLF of
 * a line of its own (name length + 2 more bytes than the separator). A comma
 * list the client wrote on one line (Accept) is over-counted by as much,
 * harmless against a limit in tens of KiB. Run only when the cheap bound in
 * sanitizeRequest says the limit could be reached.
 *
 * @example
 * repeatedLineBytes(new Headers([["x-a", "b"], ["x-a", "c"]])) // 5: the second line's "x-a: " and CRLF (7 bytes) less the ", " counted in its place
 */
export function repeatedLineBytes(headers: Headers): number {
  let extra = 0;
  headers.forEach((value, name) => {
    for (let i = value.indexOf(", "); i >= 0; i = value.indexOf(", ", i + 2)) extra += name.length + 2;
  });
  return extra;
}

/**
 * A WebSocket handshake (RFC 6455 §4.1): a GET whose `Upgrade` names
 * websocket and whose `Connection` names upgrade. Istio turns on Envoy's
 * `websocket` upgrade for every route, so the gateway passes these on; any
 * other upgrade (h2c, …) is hop-by-hop and removed, as Envoy does.
 *
 * @example
 * websocketUpgrade("GET", "websocket", "keep-alive, Upgrade") // true
 */
export function websocketUpgrade(method: string, upgrade: string, connection: string | null): boolean {
  if (method !== "GET" || connection === null) return false;
  return headerTokens(upgrade).includes("websocket") && headerTokens(connection).includes("upgrade");
}

/**
 * The lower-cased members of a comma-separated header value such as
 * `Connection` or `Upgrade`, empty ones left out.
 *
 * @example
 * headerTokens("keep-alive, Upgrade") // ["keep-alive", "upgrade"]
 */
export function headerTokens(value: string): string[] {
  const out: string[] = [];
  for (const token of value.split(",")) {
    const name = token.trim().toLowerCase();
    if (name) out.push(name);
  }
  return out;
}

/**
 * Removes the headers a `Connection` value names (RFC 9110 §7.6.1: they
 * are hop-by-hop too, and an intermediary must not forward them), in a
 * request or a response.
 *
 * @example
 * deleteConnectionOptions(headers, "x-secret, close"); // x-secret is gone
 */
export function deleteConnectionOptions(headers: Headers, connection: string): void {
  for (const name of headerTokens(connection)) headers.delete(name);
}

/** The UTF-8 length of a string, without encoding it. */
function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** What `limitBody` tells its caller about the body it wraps. */
export interface BodyWatch {
  /** The most bytes the body may have. */
  max: number;
  /** The body passed `max`: runs before the stream fails, so the caller can abort the upstream request. */
  onExceeded: () => void;
  /** The client's body was read to its end (Envoy's end of the downstream request, where its timeouts start). */
  onEnd?: (size: number) => void;
  /** Reading the client's body failed (the client went away mid-upload). */
  onFailed?: () => void;
}

/**
 * Wraps a request body so that it fails once more than `max` bytes have
 * been read, and tells the caller when the body ends or the client's side
 * fails. The caller must abort the upstream request on `onExceeded` and
 * `onFailed`: workerd's fetch ends an errored body stream as if it were
 * complete, so an origin would otherwise take a cut-short upload for a
 * whole one (Envoy resets the upstream stream instead).
 *
 * @example
 * const body = limitBody(request.body, { max: 10_485_760, onExceeded: () => controller.abort(), onFailed: () => controller.abort() });
 */
export function limitBody(body: ReadableStream<Uint8Array>, watch: BodyWatch): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let seen = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let read: ReadableStreamReadResult<Uint8Array>;
        try {
          read = await reader.read();
        } catch (error) {
          watch.onFailed?.();
          controller.error(error);
          return;
        }
        if (read.done) {
          watch.onEnd?.(seen);
          controller.close();
          return;
        }
        seen += read.value.byteLength;
        if (seen > watch.max) {
          watch.onExceeded();
          controller.error(new Error("request body exceeds the configured limit"));
          void reader.cancel().catch(() => {});
          return;
        }
        controller.enqueue(read.value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
