/**
 * The workerd configuration (Cap'n Proto text) that `isthmus serve` runs:
 * the bundled Worker, the configuration store as a read-only directory on
 * disk (service CONFIG_STORE), Durable Objects on local disk, outbound
 * fetch allowed to private and loopback addresses (a gateway's upstreams
 * live there), one network service per client certificate (what stands in
 * for an `mtls_certificates` binding), the sockets, and with a bucket the
 * cluster that replicas share their Durable Objects through.
 *
 * Pure: paths are absolute and the text depends only on the input.
 */

import type { ClientCredential } from "./credentials.ts";

export interface DurableObjectBinding {
  /** The binding name the Worker sees (env.NAME). */
  binding: string;
  /** The exported class. */
  className: string;
  /** True for SQLite-backed classes (`new_sqlite_classes`): enables `ctx.storage.sql`. */
  sql: boolean;
}

export interface WorkerdConfigInput {
  /** File name of the bundled ES module, relative to the config file. */
  moduleFile: string;
  compatibilityDate: string;
  compatibilityFlags: string[];
  /** `host:port` to listen on. */
  listen: string;
  /** Absolute directory of the configuration store (one file per key). */
  configDir: string;
  /** Absolute directory for Durable Object storage. */
  durableObjectDir: string;
  durableObjects: DurableObjectBinding[];
  /** Enables the admin endpoints. */
  adminToken?: string;
  /** Secrets and variables (text bindings), e.g. OTLP exporter header secrets. */
  vars?: Record<string, string>;
  /**
   * Client certificates, each bound as a service whose outbound HTTPS
   * connections present it (to whatever host the URL names, like an
   * `mtls_certificates` binding on Cloudflare).
   */
  credentials?: Pick<ClientCredential, "binding" | "privateKey" | "certificateChain" | "trustedCertificates">[];
  /** A second socket that terminates TLS with this certificate (`--https-port`, `--tls`). */
  https?: { listen: string; privateKey: string; certificateChain: string };
  /** A socket for readiness probes, served by the Worker's `Health` entrypoint (`--health-port`). */
  healthListen?: string;
  /** A socket for Prometheus scrapes, served by the Worker's `Metrics` entrypoint (`--metrics-port`); sets PROMETHEUS_SCRAPE. */
  metricsListen?: string;
  /** CAs the global outbound trusts besides the public ones (`--trusted-ca`): private origins, IdPs, collectors. */
  trustedCas?: string[];
  /**
   * Join a cluster of replicas that share their Durable Objects through a
   * bucket (`--cluster-bucket`). The instance's own addresses are workerd
   * flags, so every replica's file is the same; among them, the address of
   * its own cluster port, which the Worker's readiness check asks (binding
   * CLUSTER_PORT).
   */
  cluster?: {
    bucket: string;
    key: string;
    /** workerd's `stopTimeoutMs`: from SIGTERM to exit, handing the objects over (workerd's default, 8 s, when absent). */
    stopTimeoutMs?: number;
    /** workerd's `unsafeTimeDivisor`, for tests only: divides the 20 s lease and the waits of takeovers and stops. */
    timeDivisor?: number;
  };
}

/** Bindings serve sets itself, which an --env-file cannot override. */
const RESERVED_VARS = new Set(["ADMIN_TOKEN", "PROMETHEUS_SCRAPE"]);

/** The workerd service through which the Worker asks this instance's cluster port whether it is ready (`GET /ready`). */
export const CLUSTER_PORT_SERVICE = "cluster-port";

/**
 * Headers a client could send to impersonate what Cloudflare's edge sets.
 * Bare workerd sets none of them, so the socket strips them on the way in.
 */
export const EDGE_HEADERS = ["cf-connecting-ip", "cf-ipcountry", "cf-ray", "cf-visitor", "cf-worker", "true-client-ip", "cf-connecting-ipv6", "cf-pseudo-ipv4"];

/**
 * @example
 * writeFileSync("isthmus.capnp", workerdConfig({ moduleFile: "worker.js", compatibilityDate: "2026-11-01",
 *   compatibilityFlags: [], listen: "127.0.0.1:8787", configDir: "/var/lib/isthmus/config",
 *   durableObjectDir: "/var/lib/isthmus/durable-objects", durableObjects: [] }));
 */
export function workerdConfig(input: WorkerdConfigInput): string {
  const bindings = [`(name = "CONFIG_STORE", service = "config-store")`];
  if (input.adminToken !== undefined) bindings.push(`(name = "ADMIN_TOKEN", text = ${str(input.adminToken)})`);
  for (const [name, value] of Object.entries(input.vars ?? {})) if (!RESERVED_VARS.has(name)) bindings.push(`(name = ${str(name)}, text = ${str(value)})`);
  // The Worker keeps Prometheus metrics only where a socket serves them.
  if (input.metricsListen) bindings.push(`(name = "PROMETHEUS_SCRAPE", text = "true")`);
  for (const d of input.durableObjects) bindings.push(`(name = ${str(d.binding)}, durableObjectNamespace = (className = ${str(d.className)}))`);
  if (input.cluster) bindings.push(`(name = "CLUSTER_PORT", service = ${str(CLUSTER_PORT_SERVICE)})`);
  const credentialServices: string[] = [];
  for (const c of input.credentials ?? []) {
    const service = str(`mtls-${c.binding}`);
    bindings.push(`(name = ${str(c.binding)}, service = ${service})`);
    // With a CA of its own the origin is verified against that CA only (Istio's caCertificates);
    // without one, against the public CAs, as the mtls_certificates binding does on Cloudflare.
    const trust = c.trustedCertificates ? `trustedCertificates = [${c.trustedCertificates.map(str).join(", ")}]` : "trustBrowserCas = true";
    credentialServices.push(`    (name = ${service}, network = (allow = ["public", "private", "local"], tlsOptions = (
      keypair = (privateKey = ${str(c.privateKey)}, certificateChain = ${str(c.certificateChain)}),
      ${trust}))),
`);
  }
  const namespaces = input.durableObjects.map(
    (d) => `(className = ${str(d.className)}, uniqueKey = ${str(`isthmus-${d.className}`)}${d.sql ? ", enableSql = true" : ""})`,
  );
  const extraCas = input.trustedCas && input.trustedCas.length > 0 ? `, trustedCertificates = [${input.trustedCas.map(str).join(", ")}]` : "";
  const stripped = EDGE_HEADERS.map((name) => `(name = ${str(name)})`).join(", ");
  const health = input.healthListen
    ? `    # Readiness probes: GET /healthz/ready, answered by the Health entrypoint (never routed).
    (name = "health", address = ${str(input.healthListen)}, http = (), service = (name = "isthmus", entrypoint = "Health")),\n`
    : "";
  const metrics = input.metricsListen
    ? `    # Prometheus scrapes: GET /stats/prometheus, answered by the Metrics entrypoint (never routed).
    (name = "metrics", address = ${str(input.metricsListen)}, http = (), service = (name = "isthmus", entrypoint = "Metrics")),\n`
    : "";
  const https = input.https
    ? `    (name = "https", address = ${str(input.https.listen)}, service = "isthmus",
     https = (options = (injectRequestHeaders = [${stripped}]),
              tlsOptions = (keypair = (privateKey = ${str(input.https.privateKey)}, certificateChain = ${str(input.https.certificateChain)})))),\n`
    : "";
  return `# Generated by \`isthmus serve\`; regenerated on every start.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "isthmus", worker = .isthmus),
    # The configuration store: read-only for the Worker; \`isthmus apply --state\` writes it.
    (name = "config-store", disk = (path = ${str(input.configDir)}, writable = false)),
    # Durable Object storage (SQLite files, one directory per class).
    (name = "durable-objects", disk = (path = ${str(input.durableObjectDir)}, writable = true)),
    # Upstreams of a self-hosted gateway are usually private or loopback addresses.
    (name = "internet", network = (allow = ["public", "private", "local"], tlsOptions = (trustBrowserCas = true${extraCas}))),
${credentialServices.length > 0 ? `    # Client certificates (--credentials): each binding presents its own on outbound HTTPS.\n${credentialServices.join("")}` : ""}${
    input.cluster
      ? `    # This instance's own cluster port, for readiness (GET /ready); its address is the flag --external-addr=${CLUSTER_PORT_SERVICE}=...
    (name = ${str(CLUSTER_PORT_SERVICE)}, external = (address = "127.0.0.1:1", http = ())),\n`
      : ""
  }  ],
  sockets = [
    (name = "http", address = ${str(input.listen)}, service = "isthmus",
     http = (injectRequestHeaders = [${stripped}])),
${https}${health}${metrics}  ],
${input.cluster ? `  # Replicas share their Durable Objects: each object runs on one instance, its owner, recorded in the bucket.
  cluster = (bucket = ${str(input.cluster.bucket)}, key = ${str(input.cluster.key)}${input.cluster.stopTimeoutMs ? `, stopTimeoutMs = ${input.cluster.stopTimeoutMs}` : ""}${input.cluster.timeDivisor ? `, unsafeTimeDivisor = ${input.cluster.timeDivisor}` : ""}),
` : ""});

const isthmus :Workerd.Worker = (
  modules = [(name = ${str(input.moduleFile)}, esModule = embed ${str(input.moduleFile)})],
  compatibilityDate = ${str(input.compatibilityDate)},
  compatibilityFlags = [${input.compatibilityFlags.map(str).join(", ")}],
  bindings = [
    ${bindings.join(",\n    ")},
  ],
  durableObjectNamespaces = [${namespaces.join(", ")}],
  durableObjectStorage = (localDisk = "durable-objects"),
  globalOutbound = "internet",
);
`;
}

/** A Cap'n Proto text literal. */
function str(value: string): string {
  return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;
}
