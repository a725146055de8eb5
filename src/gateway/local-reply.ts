/**
 * Replies the gateway produces itself, with Envoy's status codes, bodies
 * and response flags (§1.13 and §5.2 of the semantics reference), so that
 * clients and dashboards see what an Istio gateway would have sent.
 */

export type ResponseFlag = "NR" | "UH" | "UF" | "UO" | "NC" | "UT" | "URX" | "FI" | "DI" | "RL" | "RLSE" | "UAEX" | "DPE" | "DC";

export interface LocalReply {
  status: number;
  body: string;
  flag?: ResponseFlag;
  /** Envoy's RESPONSE_CODE_DETAILS, when the flag alone does not say it (e.g. `http1.unexpected_underscore`). */
  details?: string;
  /** One value per name, or a list of pairs whose repeated names (several `set-cookie`) are all sent. */
  headers?: Record<string, string> | readonly (readonly [string, string])[];
}

export const REPLIES = {
  noRoute: { status: 404, body: "", flag: "NR" },
  noHealthyUpstream: { status: 503, body: "no healthy upstream", flag: "UH" },
  connectFailure: {
    status: 503,
    body: "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
    flag: "UF",
  },
  retriedConnectFailure: {
    status: 503,
    body: "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: connection failure",
    flag: "UF",
  },
  overflow: {
    status: 503,
    body: "upstream connect error or disconnect/reset before headers. reset reason: overflow",
    flag: "UO",
  },
  clusterNotFound: { status: 503, body: "", flag: "NC" },
  timeout: { status: 504, body: "upstream request timeout", flag: "UT" },
  /** The last attempt's per-try timeout passed: the same reply, logged with its own details (upstream_per_try_timeout). */
  perTryTimeout: { status: 504, body: "upstream request timeout", flag: "UT" },
  rbacDenied: { status: 403, body: "RBAC: access denied" },
  rateLimited: { status: 429, body: "local_rate_limited", flag: "RL" },
  rateLimitServiceError: { status: 500, body: "", flag: "RLSE" },
  /** An ALLOW_ANY passthrough that came back to the gateway that sent it (an Isthmus reply: Envoy has none). */
  loopDetected: { status: 508, body: "request loop detected" },
} as const satisfies Record<string, LocalReply>;

/**
 * A 4xx for a malformed request (or Envoy's 501 for a transfer coding it
 * cannot decode), with Envoy's downstream-protocol-error flag and, when
 * given, the codec's RESPONSE_CODE_DETAILS (else `http1.codec_error`).
 *
 * @example
 * badRequest(400, "invalid header name") // { status: 400, body: "invalid header name", flag: "DPE" }
 */
export function badRequest(status: 400 | 413 | 414 | 431 | 501, reason: string, details?: string): LocalReply {
  return details ? { status, body: reason, flag: "DPE", details } : { status, body: reason, flag: "DPE" };
}

/** Statuses whose responses cannot have a body (a `Response` with one throws). */
const NULL_BODY_STATUS = new Set([101, 204, 205, 304]);

/**
 * True when a response with this status cannot carry a body: the body of a
 * reply (or a direct response) with it is dropped, as the HTTP codec drops it.
 *
 * @example
 * isNullBodyStatus(204) // true
 */
export function isNullBodyStatus(status: number): boolean {
  return NULL_BODY_STATUS.has(status);
}

/**
 * The client response for a local reply. A reply with a body and no
 * Content-Type of its own gets `text/plain` (Envoy's local-reply rule): an
 * external authorizer's JSON or HTML denial keeps its type. Repeated
 * header names in a list of pairs are all sent.
 *
 * @example
 * toResponse({ status: 302, body: "", headers: [["location", "/login"], ["set-cookie", "a=1"], ["set-cookie", "b=2"]] });
 * // 302 with both Set-Cookie headers
 */
export function toResponse(reply: LocalReply): Response {
  const headers = replyHeaders(reply.headers);
  const body = reply.body && !NULL_BODY_STATUS.has(reply.status) ? reply.body : null;
  if (body && !headers.has("content-type")) headers.set("content-type", "text/plain");
  return new Response(body, { status: reply.status, headers });
}

function replyHeaders(init: LocalReply["headers"]): Headers {
  const headers = new Headers();
  if (!init) return headers;
  if (isPairs(init)) {
    for (const [name, value] of init) headers.append(name, value);
  } else {
    for (const [name, value] of Object.entries(init)) headers.set(name, value);
  }
  return headers;
}

function isPairs(init: NonNullable<LocalReply["headers"]>): init is readonly (readonly [string, string])[] {
  return Array.isArray(init);
}
