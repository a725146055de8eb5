/**
 * Ingress hygiene, the first stage of every request: reject malformed or
 * oversized requests before any work is done, and rebuild the header set
 * without anything a client could use to impersonate the gateway, the
 * platform or an identity the gateway vouches for.
 */
import type { RequestLimits } from "../config/snapshot.ts";
import { badRequest, type LocalReply } from "./local-reply.ts";

/** Hop-by-hop headers (RFC 9110 §7.6.1) never forwarded in either direction. */
export const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"]);

/**
 * Headers a client must never be able to set: forwarding and identity
 * headers the gateway (or Envoy) would otherwise be trusted for.
 */
const SPOOFABLE_EXACT = new Set(["forwarded", "x-real-ip", "x-forwarded-client-cert", "client-cert", "client-cert-chain", "x-request-id", "x-envoy-original-path"]);
const SPOOFABLE_PREFIXES = ["x-forwarded-", "x-envoy-", "x-isthmus-"];

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** True for a (lower-case) header name that ingress hygiene always removes from client requests. */
export function strippedAtIngress(name: string): boolean {
  return HOP_BY_HOP.has(name) || SPOOFABLE_EXACT.has(name) || SPOOFABLE_PREFIXES.some((p) => name.startsWith(p));
}

export type HygieneResult = { ok: true; headers: Headers } | { ok: false; reply: LocalReply };

export interface HygieneOptions {
  limits: RequestLimits;
  /** Extra header names to strip (headers Isthmus injects, such as JWT claim headers). */
  injected?: ReadonlySet<string>;
}

/**
 * Checks a request and returns its sanitized headers, or the 4xx to send.
 *
 * @example
 * const result = sanitizeRequest(request, { limits });
 * if (!result.ok) return toResponse(result.reply);
 */
export function sanitizeRequest(request: Request, options: HygieneOptions): HygieneResult {
  const { limits } = options;
  if (new TextEncoder().encode(request.url).length > limits.maxUrlBytes) {
    return { ok: false, reply: badRequest(414, "URI too long") };
  }
  if (!TOKEN.test(request.method)) return { ok: false, reply: badRequest(400, "invalid method") };

  let count = 0;
  let bytes = 0;
  for (const [name, value] of request.headers) {
    count++;
    bytes += name.length + value.length + 4;
    if (!TOKEN.test(name)) return { ok: false, reply: badRequest(400, "invalid header name") };
    if (/[\r\n\0]/.test(value)) return { ok: false, reply: badRequest(400, "invalid header value") };
  }
  if (count > limits.maxHeadersCount) return { ok: false, reply: badRequest(431, "too many request headers") };
  if (bytes > limits.maxRequestHeadersBytes) return { ok: false, reply: badRequest(431, "request headers too large") };

  const contentLength = request.headers.get("content-length");
  if (contentLength !== null && request.headers.has("transfer-encoding")) {
    return { ok: false, reply: badRequest(400, "both content-length and transfer-encoding are set") };
  }
  if (contentLength !== null) {
    if (!/^\d+$/.test(contentLength.trim())) return { ok: false, reply: badRequest(400, "invalid content-length") };
    if (Number(contentLength) > limits.maxRequestBodyBytes) return { ok: false, reply: badRequest(413, "payload too large") };
  }

  const connectionTokens = new Set(
    (request.headers.get("connection") ?? "")
      .split(",")
      .map((t) => t.trim().toLowerCase())
      .filter(Boolean),
  );
  const headers = new Headers();
  for (const [name, value] of request.headers) {
    if (HOP_BY_HOP.has(name) || connectionTokens.has(name)) continue;
    if (SPOOFABLE_EXACT.has(name) || SPOOFABLE_PREFIXES.some((p) => name.startsWith(p))) continue;
    if (options.injected?.has(name)) continue;
    headers.append(name, value);
  }
  return { ok: true, headers };
}

/**
 * Wraps a request body so that it fails once more than `max` bytes have
 * been read. `onExceeded` runs first, so the caller can abort the upstream
 * request (a merely truncated stream would look like a complete, shorter
 * body to the origin).
 */
export function limitBody(body: ReadableStream<Uint8Array>, max: number, onExceeded: () => void): ReadableStream<Uint8Array> {
  let seen = 0;
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        seen += chunk.byteLength;
        if (seen > max) {
          onExceeded();
          controller.error(new Error("request body exceeds the configured limit"));
        } else {
          controller.enqueue(chunk);
        }
      },
    }),
  );
}
