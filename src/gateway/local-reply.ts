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
  headers?: Record<string, string>;
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
  rbacDenied: { status: 403, body: "RBAC: access denied" },
  rateLimited: { status: 429, body: "local_rate_limited", flag: "RL" },
  rateLimitServiceError: { status: 500, body: "", flag: "RLSE" },
  /** An ALLOW_ANY passthrough that came back to the gateway that sent it (an Isthmus reply: Envoy has none). */
  loopDetected: { status: 508, body: "request loop detected" },
} as const satisfies Record<string, LocalReply>;

/** A 4xx for a malformed request, with Envoy's downstream-protocol-error flag. */
export function badRequest(status: 400 | 413 | 414 | 431, reason: string): LocalReply {
  return { status, body: reason, flag: "DPE" };
}

export function toResponse(reply: LocalReply): Response {
  const headers = new Headers(reply.headers);
  if (reply.body) headers.set("content-type", "text/plain");
  return new Response(reply.body || null, { status: reply.status, headers });
}
