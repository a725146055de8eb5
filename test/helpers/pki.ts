/**
 * A throwaway test PKI made with openssl: a CA, a server certificate for
 * localhost and 127.0.0.1, a client certificate it signed, and one signed
 * by a rogue CA. EC P-256 keys in PKCS#8 PEM (openssl genpkey's output).
 * And an origin that requires the client certificate.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import type { IncomingHttpHeaders } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { serviceEntry } from "./istio-yaml.ts";

export interface Pki {
  ca: string;
  serverKey: string;
  serverCert: string;
  clientKey: string;
  clientCert: string;
  strangerKey: string;
  strangerCert: string;
}

/** A CA, a server certificate for localhost, a client certificate it signed, and one it did not. */
export function generatePki(dir: string): Pki {
  const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  const key = (name: string) => ssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${name}.key`);
  const sign = (name: string, subject: string, ca: string, ext: string) => {
    key(name);
    ssl("req", "-new", "-key", `${name}.key`, "-subj", subject, "-out", `${name}.csr`);
    writeFileSync(join(dir, `${name}.ext`), ext);
    ssl("x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.crt`, "-CAkey", `${ca}.key`, "-CAcreateserial", "-days", "2", "-sha256", "-extfile", `${name}.ext`, "-out", `${name}.crt`);
  };
  for (const ca of ["ca", "rogue-ca"]) {
    key(ca);
    ssl("req", "-x509", "-new", "-key", `${ca}.key`, "-subj", `/CN=Isthmus test ${ca}`, "-days", "2", "-sha256", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", `${ca}.crt`);
  }
  sign("server", "/CN=localhost", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  sign("client", "/CN=isthmus-gateway", "ca", "extendedKeyUsage=clientAuth\n");
  sign("stranger", "/CN=stranger", "rogue-ca", "extendedKeyUsage=clientAuth\n");
  const read = (f: string) => readFileSync(join(dir, f), "utf8");
  return {
    ca: read("ca.crt"),
    serverKey: read("server.key"),
    serverCert: read("server.crt"),
    clientKey: read("client.key"),
    clientCert: read("client.crt"),
    strangerKey: read("stranger.key"),
    strangerCert: read("stranger.crt"),
  };
}

/** A request the mTLS origin accepted: its path, the client certificate's CN and the headers. */
export interface SeenRequest {
  path: string;
  clientCn: string;
  headers: IncomingHttpHeaders;
}

export interface MtlsOrigin {
  port: number;
  /** Requests answered, in order. */
  seen: SeenRequest[];
  /** Handshakes refused, with OpenSSL's reason (e.g. ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE). */
  refused: string[];
  close(): Promise<void>;
}

/**
 * A Node HTTPS origin on 127.0.0.1 with the PKI's server certificate that
 * requires a client certificate signed by the PKI's CA and answers
 * `hello <client CN>`.
 */
export async function startMtlsOrigin(pki: Pki): Promise<MtlsOrigin> {
  const seen: SeenRequest[] = [];
  const refused: string[] = [];
  const server: Server = createServer({ key: pki.serverKey, cert: pki.serverCert, ca: [pki.ca], requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const cert = (req.socket as TLSSocket).getPeerCertificate();
    seen.push({ path: req.url ?? "", clientCn: String(cert.subject?.CN ?? ""), headers: req.headers });
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(`hello ${cert.subject?.CN}`);
  });
  server.on("tlsClientError", (error: Error & { code?: string }) => refused.push(error.code ?? error.message));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    refused,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * The mTLS tests' origin as configuration: a ServiceEntry for
 * payments.edge.internal on `port` (namespace edge) and its DestinationRule,
 * MUTUAL with credentialName payments-client-cert, with one subset per entry
 * of `subsets` (subset name → the credentialName it uses instead).
 *
 * @example
 * mtlsPaymentsYaml(origin.port, { rogue: "ROGUE_CERT" });
 */
export function mtlsPaymentsYaml(port: number, subsets: Record<string, string>): string {
  const lines = Object.entries(subsets).map(
    ([name, credential]) => `  - name: ${name}
    trafficPolicy:
      tls: {mode: MUTUAL, credentialName: ${credential}}`,
  );
  return `${serviceEntry({ name: "payments", namespace: "edge", port: { number: 443, name: "https" }, endpoints: [{ address: "localhost", port }] })}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: payments, namespace: edge}
spec:
  host: payments.edge.internal
  trafficPolicy:
    tls: {mode: MUTUAL, credentialName: payments-client-cert}
  subsets:
${lines.join("\n")}`;
}
