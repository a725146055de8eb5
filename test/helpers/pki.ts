/**
 * A throwaway test PKI made with openssl: a CA, a server certificate for
 * localhost and 127.0.0.1, a client certificate it signed, and one signed
 * by a rogue CA. EC P-256 keys in PKCS#8 PEM (openssl genpkey's output).
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

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
