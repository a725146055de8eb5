/**
 * RFC 9440 forwarding of the client certificate to the upstream
 * (GatewayConfig `peerCertificate.forwardClientCert: RFC9440`). The values
 * are Cloudflare's `certRFC9440` / `certChainRFC9440`, already in the
 * `:base64-DER:` byte-sequence form; Cloudflare leaves them empty when the
 * certificate (10 KB) or chain (16 KB) is too large, and then nothing is
 * sent. Client-sent Client-Cert headers never get this far: ingress
 * hygiene removes them.
 */
import type { PeerIdentity } from "../identity.ts";

export function forwardClientCert(headers: Headers, peer: PeerIdentity): void {
  if (!peer.verified || !peer.certRfc9440) return;
  if (!/^:[A-Za-z0-9+/=]+:$/.test(peer.certRfc9440)) return;
  headers.set("client-cert", peer.certRfc9440);
  if (peer.chainRfc9440 && /^:[A-Za-z0-9+/=]+:(, *:[A-Za-z0-9+/=]+:)*$/.test(peer.chainRfc9440)) headers.set("client-cert-chain", peer.chainRfc9440);
}
