/**
 * The identities a request carries once authentication ran: the peer
 * (client certificate, PeerAuthentication) and the request principal
 * (verified JWT, RequestAuthentication). Authorization, routing
 * (`@request.auth.claims`) and telemetry read them from RequestFacts.
 */

export interface RequestIdentity {
  /** `<iss>/<sub>`, Istio's request.auth.principal (empty parts when a claim is absent). */
  principal: string;
  iss?: string;
  sub?: string;
  /** `aud` as a list. */
  audiences: string[];
  /** `azp`, Istio's request.auth.presenter. */
  presenter?: string;
  /** The payload, with space-delimited claims (`scope`, `permission`, ...) split into lists. */
  claims: Record<string, unknown>;
}

export interface PeerIdentity {
  /** The client presented a certificate. */
  presented: boolean;
  /** Cloudflare verified it (certVerified SUCCESS) and it is not revoked. */
  verified: boolean;
  /** The principal derived from a verified certificate (subject DN or SHA-256 fingerprint). */
  principal?: string;
  /** RFC 9440 `:base64-DER:` of the leaf and of the chain, when Cloudflare provides them. */
  certRfc9440?: string;
  chainRfc9440?: string;
}
