/**
 * The client certificate of a request, as Cloudflare API Shield (or
 * Access) mTLS reports it in `request.cf.tlsClientAuth`. Only a certificate
 * that was presented, verified (`certVerified: "SUCCESS"`) and not revoked
 * yields a principal:
 *
 * - SUBJECT_DN (default): the subject DN in RFC 2253 form
 *   (`CN=client,O=Acme`), falling back to `certSubjectDN`;
 * - SHA256_FINGERPRINT: the certificate's SHA-256 fingerprint, lower-case hex.
 *
 * That principal is what `principals` / `source.principal` match
 * (Istio matches SPIFFE IDs there; the edge has client certificates).
 */
import type { PeerIdentity } from "../identity.ts";

interface TlsClientAuth {
  certPresented?: string;
  certVerified?: string;
  certRevoked?: string;
  certSubjectDN?: string;
  certSubjectDNRFC2253?: string;
  certFingerprintSHA256?: string;
  certRFC9440?: string;
  certChainRFC9440?: string;
}

export type PrincipalKind = "SUBJECT_DN" | "SHA256_FINGERPRINT";

/**
 * Reads the peer identity from a request's `cf` object.
 * @example
 * readPeer(request.cf, "SUBJECT_DN") // { presented: true, verified: true, principal: "CN=client,O=Acme" }
 */
export function readPeer(cf: unknown, kind: PrincipalKind): PeerIdentity {
  const auth = (typeof cf === "object" && cf !== null ? (cf as { tlsClientAuth?: unknown }).tlsClientAuth : undefined) as TlsClientAuth | undefined;
  if (!auth || typeof auth !== "object") return { presented: false, verified: false };
  const presented = auth.certPresented === "1";
  const verified = presented && auth.certVerified === "SUCCESS" && auth.certRevoked !== "1";
  const peer: PeerIdentity = { presented, verified };
  if (!verified) return peer;
  const principal =
    kind === "SHA256_FINGERPRINT"
      ? str(auth.certFingerprintSHA256)?.toLowerCase()
      : (str(auth.certSubjectDNRFC2253) ?? str(auth.certSubjectDN));
  if (principal) peer.principal = principal;
  const cert = str(auth.certRFC9440);
  if (cert) peer.certRfc9440 = cert;
  const chain = str(auth.certChainRFC9440);
  if (chain) peer.chainRfc9440 = chain;
  return peer;
}

function str(v: unknown): string | undefined {
  return typeof v === "string" && v.length > 0 ? v : undefined;
}
