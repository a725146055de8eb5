/**
 * Certificates `isthmus serve` reads from disk: the client certificates of
 * `--credentials DIR`, which stand in for Cloudflare's `mtls_certificates`
 * bindings on bare workerd, and the HTTPS certificate of `--tls DIR`.
 *
 * Each subdirectory of DIR is one binding, named after the directory, and
 * holds a Kubernetes TLS secret as it is mounted (`tls.crt`, `tls.key`,
 * optionally `ca.crt`) or an Istio generic secret (`cert`, `key`,
 * optionally `cacert`). A DestinationRule `tls.credentialName` reaches it
 * through the same name resolution as on Cloudflare (a GatewayConfig
 * `credentials` entry, else the credentialName itself).
 */
import { X509Certificate, createPrivateKey, type KeyObject } from "node:crypto";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { ClusterDef } from "../../config/snapshot.ts";
import { CliError } from "../files.ts";

export interface ClientCredential {
  /** The binding name the Worker sees (env.NAME): the directory's name. */
  binding: string;
  /** The private key as PKCS#8 PEM (the form workerd's TLS options take). */
  privateKey: string;
  /** The client certificate, then any intermediates (PEM). */
  certificateChain: string;
  /** CAs that verify the origin's certificate; absent: the public CAs browsers trust. */
  trustedCertificates?: string[];
  /** When the client certificate expires (ISO 8601). */
  notAfter: string;
}

/** Binding names as wrangler.toml and the config compiler accept them. */
const BINDING_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** File names of one credential, in the order they are looked for: Kubernetes TLS secret, then Istio generic secret. */
const FILES = {
  cert: ["tls.crt", "cert"],
  key: ["tls.key", "key"],
  ca: ["ca.crt", "cacert"],
} as const;

/**
 * Reads every credential under `dir`. Entries whose name starts with a dot
 * are skipped (Kubernetes keeps `..data` and timestamped directories beside
 * a mounted secret's files).
 *
 * @example
 * // /etc/isthmus/credentials/PAYMENTS_CLIENT_CERT/{tls.crt,tls.key,ca.crt}
 * const creds = readCredentials("/etc/isthmus/credentials");
 * creds[0].binding; // "PAYMENTS_CLIENT_CERT"
 */
export function readCredentials(dir: string): ClientCredential[] {
  let entries: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new CliError(`--credentials: ${dir} is not a directory`, 2);
    entries = readdirSync(dir).sort();
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw new CliError(`--credentials: ${dir}: no such directory`, 2);
  }
  const out: ClientCredential[] = [];
  for (const name of entries) {
    if (name.startsWith(".")) continue;
    const path = join(dir, name);
    let isDirectory: boolean;
    try {
      isDirectory = statSync(path).isDirectory();
    } catch (error) {
      throw new CliError(`--credentials: ${path}: cannot be read (${message(error)})`, 2);
    }
    if (!isDirectory) continue;
    if (!BINDING_NAME.test(name)) {
      throw new CliError(`--credentials: ${path}: expected a directory named as a binding (letters, digits and _, not starting with a digit), e.g. PAYMENTS_CLIENT_CERT`, 2);
    }
    out.push({ binding: name, ...readKeypair(path, "--credentials") });
  }
  return out;
}

/** A certificate and its key read from a directory, as a mounted TLS secret holds them. */
export type Keypair = Omit<ClientCredential, "binding">;

/**
 * Reads `tls.crt` + `tls.key` (or `cert` + `key`) and the optional CA file
 * (`ca.crt` or `cacert`) from `path`; errors start with `option`.
 *
 * @example
 * const { privateKey, certificateChain } = readKeypair("/etc/isthmus/tls", "--tls");
 */
export function readKeypair(path: string, option: string): Keypair {
  const certFile = find(path, FILES.cert);
  const keyFile = find(path, FILES.key);
  if (!certFile || !keyFile) {
    // A certificate file given where its directory is expected: say so rather than fail listing it (ENOTDIR).
    if (existsSync(path) && !statSync(path).isDirectory()) throw new CliError(`${option}: ${path}: expected a directory holding tls.crt and tls.key (or cert and key), got a file`, 2);
    const found = existsSync(path) ? readdirSync(path).filter((f) => !f.startsWith(".")).join(", ") || "nothing" : "no such directory";
    throw new CliError(`${option}: ${path}: expected a certificate and its key (tls.crt and tls.key, or cert and key); found ${found}`, 2);
  }
  const chain = readText(certFile, option);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(chain);
  } catch (error) {
    throw new CliError(`${option}: ${certFile}: expected a PEM certificate (${message(error)})`, 2);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(readText(keyFile, option));
  } catch (error) {
    throw new CliError(`${option}: ${keyFile}: expected an unencrypted PEM private key (${message(error)})`, 2);
  }
  if (!leaf.checkPrivateKey(key)) throw new CliError(`${option}: ${keyFile}: the key does not belong to the certificate in ${certFile}`, 2);
  const keypair: Keypair = {
    privateKey: key.export({ type: "pkcs8", format: "pem" }) as string,
    certificateChain: chain,
    notAfter: new Date(leaf.validTo).toISOString(),
  };
  const caFile = find(path, FILES.ca);
  if (caFile) keypair.trustedCertificates = readCaFile(caFile, option);
  return keypair;
}

/**
 * The PEM certificates in a CA file (a bundle may hold several), each
 * checked; errors start with `option`.
 *
 * @example
 * const cas = readCaFile("/etc/isthmus/ca/ca.crt", "--trusted-ca"); // ["-----BEGIN CERTIFICATE-----\n…\n"]
 */
export function readCaFile(file: string, option: string): string[] {
  const cas = readText(file, option).match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  try {
    if (cas.length === 0) throw new Error("no certificate in it");
    for (const ca of cas) new X509Certificate(ca);
  } catch (error) {
    throw new CliError(`${option}: ${file}: expected PEM CA certificates (${message(error)})`, 2);
  }
  return cas.map((ca) => `${ca}\n`);
}

/** A file's text; an unreadable file is an error naming the option and the file. */
export function readText(file: string, option: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    throw new CliError(`${option}: ${file}: cannot be read (${message(error)})`, 2);
  }
}

function find(dir: string, names: readonly string[]): string | undefined {
  return names.map((n) => join(dir, n)).find((f) => existsSync(f));
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A binding the configuration uses that no credential provides, with the clusters that use it. */
export interface MissingCredential {
  binding: string;
  clusters: string[];
}

/**
 * The mTLS bindings of `snapshot`'s clusters that are not among `available`.
 *
 * @example
 * missingCredentials(snapshot, ["ORIGIN_CERT"]);
 * // [{ binding: "PAYMENTS", clusters: ["outbound|443||payments.shop.internal"] }]
 */
export function missingCredentials(snapshot: { clusters: Record<string, Pick<ClusterDef, "mtlsBinding">> }, available: readonly string[]): MissingCredential[] {
  const have = new Set(available);
  const missing = new Map<string, string[]>();
  for (const [name, cluster] of Object.entries(snapshot.clusters)) {
    const binding = cluster.mtlsBinding;
    if (binding === undefined || have.has(binding)) continue;
    const clusters = missing.get(binding) ?? [];
    clusters.push(name);
    missing.set(binding, clusters);
  }
  return [...missing].map(([binding, clusters]) => ({ binding, clusters: clusters.sort() }));
}
