/**
 * The local replies of the security stages, with Envoy's status codes and
 * bodies: jwt_authn failures (401, or 403 for an audience mismatch, with a
 * `WWW-Authenticate: Bearer realm="<url>", error="invalid_token"` header),
 * RBAC denials (403 `RBAC: access denied`) and the PeerAuthentication
 * STRICT refusal (403; Envoy would refuse the TLS handshake instead).
 */
import { pathWithQuery, type RequestFacts } from "../gateway/facts.ts";
import { REPLIES, type LocalReply } from "../gateway/local-reply.ts";
import type { JwtStatus } from "./jwt/status.ts";

/** Envoy truncates the path in the realm to this many characters. */
const MAX_REALM_PATH = 256;

export function jwtFailure(status: JwtStatus, httpStatus: 401 | 403, facts: RequestFacts): LocalReply {
  const path = pathWithQuery(facts).slice(0, MAX_REALM_PATH);
  const realm = `${facts.scheme}://${facts.authority}${path}`.replace(/["\\]/g, "");
  return { status: httpStatus, body: status, headers: { "www-authenticate": `Bearer realm="${realm}", error="invalid_token"` } };
}

export const RBAC_DENIED: LocalReply = REPLIES.rbacDenied;

export const PEER_CERTIFICATE_REQUIRED: LocalReply = {
  status: 403,
  body: "peer authentication failed: a verified client certificate is required",
};

/** The ext-authz error reply: `statusOnError`, empty body, flag UAEX. */
export function extAuthzError(status: number): LocalReply {
  return { status, body: "", flag: "UAEX" };
}
