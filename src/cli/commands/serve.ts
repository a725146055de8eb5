import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { lockStateDir, recordWorkerd } from "../serve/state-lock.ts";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { randomUUID } from "node:crypto";
import { CliError } from "../files.ts";
import { hostPortOption, portOption, stateConfigDir } from "../options.ts";
import { workerSettings } from "../wrangler-config.ts";
import { bundleWorker, stopBundler } from "../serve/bundle.ts";
import { workerdConfig } from "../serve/workerd-config.ts";
import { clusterArgs, clusterOptions, decisionTimeoutNotes, type ClusterFlags } from "../serve/cluster.ts";
import { missingCredentials, readCaFile, readCredentials, readKeypair, type ClientCredential, type Keypair } from "../serve/credentials.ts";
import type { Snapshot } from "../../config/snapshot.ts";
import { applyFiles, killProcess, superviseGateway } from "../supervise.ts";
import { makePrivateDir } from "../stores.ts";
import { assertPortsFree } from "../serve/free-ports.ts";
import { eachLine, refusalMessage, servedDeployment } from "../serve/deployments.ts";

export const help = `isthmus serve -f PATH... [--port N] [--state DIR] — run the gateway on bare workerd

Self-hosted mode: bundles the Worker, writes a workerd configuration and
runs the \`workerd\` binary directly (no wrangler or Miniflare on the
request path). The configuration store is a directory on local disk
(DIR/config) and Durable Objects are stored under DIR/durable-objects, so
both survive a restart. Prints one line once it serves the configuration:

  isthmus: ready on http://127.0.0.1:8787 (config 3f9c2a1b0c4d)

Like \`isthmus dev\`, edits to the files are validated and re-applied; a
configuration with errors is reported and the previous one keeps serving.
\`isthmus apply --state DIR\` (and versions, diff, rollback) work on the
same store. Ctrl-C stops workerd.

Options:
  --port N        port to listen on (default 8787), plain HTTP
  --https-port N  also listen for HTTPS on this port, with the certificate in --tls
  --tls DIR       the HTTPS certificate: tls.crt (with intermediates) and tls.key,
                  as a mounted Kubernetes TLS secret holds them (or cert and key)
  --health-port N answer readiness probes on this port: GET /healthz/ready is
                  200 while a configuration is served, else 503 (Istio's
                  gateways use 15021); never routed, no admin token. With
                  --cluster-bucket, also 503 unless the replica serves as a
                  member of its cluster (joining, stopping, lease lapsed)
                  and has reached the objects its peers run
  --metrics-port N
                  answer Prometheus scrapes on this port: GET /stats/prometheus
                  gives Istio's metrics (istio_requests_total, ...) and Isthmus's
                  own, cumulative since start (Istio's gateways use 15090);
                  Telemetry resources choose them as for the built-in
                  \`prometheus\` provider. Never routed, no admin token
  --ip ADDR       address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
  --state DIR     state directory (default .isthmus)
  --config FILE   the gateway's wrangler.toml (default ./wrangler.toml): main,
                  compatibility date and flags, Durable Object bindings
  --env-file FILE secrets and variables for the Worker (KEY=VALUE lines), such as
                  the OTLP exporter header secrets (default: .dev.vars beside the
                  wrangler.toml, when it exists, as wrangler dev reads it)
  --credentials DIR
                  client certificates for DestinationRule \`tls.mode: MUTUAL\`: each
                  subdirectory is one binding, named after it, holding tls.crt and
                  tls.key (a mounted Kubernetes TLS secret) or cert and key (Istio's
                  generic secret), and optionally ca.crt / cacert to verify the
                  origin (else the public CAs). What mtls_certificates bindings
                  are on Cloudflare; read at start (restart to rotate)
  --trusted-ca FILE
                  PEM CA certificates that outbound HTTPS trusts besides the public
                  CAs: origins (DestinationRule tls SIMPLE), JWKS, OTLP and ext-authz
                  servers inside the cluster whose certificates a private CA signs
  --cluster-bucket s3://BUCKET/PREFIX | gs://BUCKET/PREFIX
                  share Durable Objects (GLOBAL rate limits, outlier ejections)
                  with every replica started with the same bucket, through
                  workerd's cluster mode: without it each replica has its own.
                  s3:// must honour conditional writes (S3, R2, MinIO); its
                  endpoint and credentials come from AWS_ENDPOINT_URL,
                  AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (or
                  AWS_CREDENTIALS_FILE). gs:// is Google Cloud Storage, with
                  the key GOOGLE_APPLICATION_CREDENTIALS names, else the GCE or
                  GKE metadata server (Workload Identity). Needs:
  --cluster-addr HOST:PORT
                  where this replica listens for the others (a private address)
  --cluster-advertise HOST:PORT
                  the address the others reach it at (the pod IP), when
                  --cluster-addr is a wildcard or not reachable as is
  --cluster-key-file FILE
                  a secret every replica shares, at least 32 bytes
                  (openssl rand -hex 32); traffic between replicas is
                  authenticated with it, not encrypted: keep it private
  --cluster-stop-timeout DURATION
                  how long a replica takes from SIGTERM to exit while it hands
                  its objects over and drains (default 8s, which fits
                  Kubernetes' 30 s grace period); raise both together
  --cluster-allow-deployments
                  serve the workerd deployments the bucket's catalog selects
                  (\`workerd deploy\`) beside the gateway; without it a replica
                  whose bucket holds one refuses to run: its code would run
                  with the replica's network and client certificates
  --inspector-addr ADDR
                  open workerd's V8 inspector on ADDR (host:port) to debug or
                  CPU-profile the gateway with Chrome DevTools or any CDP client;
                  never on a public address

The admin endpoints use the token in ISTHMUS_ADMIN_TOKEN (random per run
when unset). See docs/SELF-HOSTED.md for what differs from Cloudflare.

Example:
  isthmus serve -f examples/bookinfo/config --port 8080 --state /var/lib/isthmus`;

export interface ServeOptions extends ClusterFlags {
  port?: string;
  ip?: string;
  state?: string;
  config?: string;
  "env-file"?: string;
  "inspector-addr"?: string;
  credentials?: string;
  "https-port"?: string;
  tls?: string;
  "health-port"?: string;
  "metrics-port"?: string;
  "trusted-ca"?: string;
}

export async function serve(files: string[], opts: ServeOptions): Promise<number> {
  const port = portOption("--port", opts.port ?? "8787", {});
  const ip = opts.ip ?? "127.0.0.1";
  const https = httpsOption(opts, port);
  const healthPort = opts["health-port"] !== undefined ? portOption("--health-port", opts["health-port"], { "--port": port, "--https-port": https?.port }) : undefined;
  const metricsPort =
    opts["metrics-port"] !== undefined ? portOption("--metrics-port", opts["metrics-port"], { "--port": port, "--https-port": https?.port, "--health-port": healthPort }) : undefined;
  const inspector = opts["inspector-addr"] !== undefined ? loopbackOnly("--inspector-addr", hostPortOption("--inspector-addr", opts["inspector-addr"])) : undefined;
  const token = adminToken(process.env.ISTHMUS_ADMIN_TOKEN);
  const state = resolve(opts.state ?? ".isthmus");
  const wranglerConfig = opts.config ?? "wrangler.toml";
  const settings = workerSettings(wranglerConfig);
  // As in wrangler, `main` is relative to the wrangler.toml.
  const entry = resolve(dirname(wranglerConfig), settings.main);

  const credentials = credentialsOption(opts.credentials);
  const trustedCas = opts["trusted-ca"] !== undefined ? readCaFile(resolve(opts["trusted-ca"]), "--trusted-ca") : undefined;
  const cluster = clusterOptions(opts, process.env);
  const inspect = (snapshot: Snapshot) => {
    warnMissingCredentials(snapshot, credentials, opts.credentials);
    if (cluster) for (const note of decisionTimeoutNotes(snapshot)) console.error(note);
  };

  const envFile = opts["env-file"] ?? join(dirname(wranglerConfig), ".dev.vars");
  if (opts["env-file"] !== undefined && !existsSync(envFile)) throw new CliError(`--env-file: ${envFile} does not exist`, 2);
  const vars = existsSync(envFile) ? parseEnvFile(readFileSync(envFile, "utf8")) : {};
  assertFreeBindingNames(credentials, [
    ["CONFIG_STORE", "the configuration store"],
    ["ADMIN_TOKEN", "the admin token"],
    ...Object.keys(vars).map((name): [string, string] => [name, `a variable in ${envFile}`]),
    ...settings.durableObjects.map((d): [string, string] => [d.binding, `a Durable Object binding in ${wranglerConfig}`]),
  ]);

  await assertPortsFree(ip, [
    ["--port", port],
    ["--https-port", https?.port],
    ["--health-port", healthPort],
    ["--metrics-port", metricsPort],
  ]);

  const runDir = join(state, "run");
  try {
    // 0700, an existing one too: the configuration (an inline JWKS key), the Durable Objects' data and the run files are private.
    makePrivateDir(state);
    makePrivateDir(runDir);
  } catch (error) {
    throw new CliError(`--state ${state}: ${error instanceof Error ? error.message : String(error)}`);
  }
  // Before anything is written to the state directory, such as the configuration applied next.
  const release = lockStateDir(runDir);
  process.once("exit", release);

  const storeOptions = { state };
  const first = await applyFiles(files, storeOptions, inspect, true);
  if (!first) return 1;
  // `isthmus apply/rollback --state` while serve ran (or other files at its last start) set what the files now replace.
  if (first.changed && first.previous !== undefined) console.error(replacedNote(first.version, first.previous));

  // workerd refuses to start a cluster on a disk holding objects from before it (they are not
  // imported), so a clustered instance keeps its share of the objects in a directory of its own.
  const durableObjectDir = join(state, cluster ? "cluster-durable-objects" : "durable-objects");
  makePrivateDir(durableObjectDir);
  try {
    await bundleWorker(entry, join(runDir, "worker.js"));
  } catch (error) {
    throw new CliError(`bundling ${settings.main} failed: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    await stopBundler();
  }
  const configFile = join(runDir, "isthmus.capnp");
  const bracketed = ip.includes(":") ? `[${ip}]` : ip;
  const address = (p: number) => `${bracketed}:${p}`;
  const listen = address(port);
  writeFileSync(
    configFile,
    workerdConfig({
      moduleFile: "worker.js",
      compatibilityDate: settings.compatibilityDate,
      compatibilityFlags: settings.compatibilityFlags,
      listen,
      configDir: stateConfigDir(state),
      durableObjectDir,
      durableObjects: settings.durableObjects,
      adminToken: token,
      vars,
      credentials,
      ...(https ? { https: { listen: address(https.port), privateKey: https.keypair.privateKey, certificateChain: https.keypair.certificateChain } } : {}),
      ...(healthPort !== undefined ? { healthListen: address(healthPort) } : {}),
      ...(metricsPort !== undefined ? { metricsListen: address(metricsPort) } : {}),
      ...(trustedCas ? { trustedCas } : {}),
      // The instance's own addresses in it are left out of the file: they go as workerd flags (clusterArgs).
      ...(cluster ? { cluster } : {}),
    }),
    { mode: 0o600 },
  );
  // It holds the admin token, --env-file secrets and private keys: 0600 even when the file was already there.
  chmodSync(configFile, 0o600);

  // A clustered replica's stderr passes through serve, which stops it if it serves a deployment from the bucket.
  const refuseDeployments = cluster !== undefined && cluster.allowDeployments !== true;
  const gateway = startWorkerd(configFile, [...(inspector ? [`--inspector-addr=${inspector}`] : []), ...(cluster ? clusterArgs(cluster) : [])], refuseDeployments);
  // So that a serve started after this one is SIGKILLed finds the workerd it leaves running.
  if (gateway.pid !== undefined) recordWorkerd(runDir, gateway.pid);
  if (refuseDeployments && gateway.stderr) {
    gateway.stderr.pipe(process.stderr);
    eachLine(gateway.stderr, (line) => {
      const deployment = servedDeployment(line);
      if (!deployment) return;
      console.error(refusalMessage(cluster.bucket, deployment));
      killProcess(gateway);
    });
  }
  if (cluster) console.log(`isthmus: Durable Objects shared with the replicas of ${cluster.bucket}; peers reach this one at ${cluster.advertise ?? cluster.address}`);
  const host = ip === "0.0.0.0" || ip === "::" ? "127.0.0.1" : bracketed;
  const base = `http://${host}:${port}`;
  if (healthPort !== undefined) console.log(`isthmus: readiness on http://${host}:${healthPort}/healthz/ready`);
  if (metricsPort !== undefined) console.log(`isthmus: Prometheus metrics on http://${host}:${metricsPort}/stats/prometheus`);
  if (https) console.log(`isthmus: HTTPS on https://${host}:${https.port} with the certificate in ${opts.tls} (expires ${https.keypair.notAfter})`);
  return superviseGateway({ files, storeOptions, first, gateway, name: "workerd", base, token, readyTimeoutMs: 30_000, inspect });
}

/**
 * The note serve prints when its -f files replace, at start, an active
 * version they did not produce: a rollback or apply --state since the last
 * start is undone by a restart, which is easy to miss.
 *
 * @example
 * replacedNote("3f9c2a1b0c4d", "0d6388dcf39b") // "isthmus: note: the -f files (config 3f9c2a1b0c4d) replace the active config 0d6388dcf39b ..."
 */
export function replacedNote(version: string, replaced: string): string {
  return (
    `isthmus: note: the -f files (config ${version}) replace the active config ${replaced}, which they did not produce ` +
    `(\`isthmus apply --state\` or \`rollback --state\` set it, or other files at an earlier start): serve starts from its -f files; to keep ${replaced}, change the files to its configuration`
  );
}

/** `--https-port N --tls DIR`: the HTTPS socket's port and certificate, or undefined without them. */
function httpsOption(opts: ServeOptions, port: number): { port: number; keypair: Keypair } | undefined {
  if (opts["https-port"] === undefined && opts.tls === undefined) return undefined;
  if (opts["https-port"] === undefined || opts.tls === undefined) throw new CliError("--https-port and --tls go together: the port to listen on for HTTPS and the certificate to serve", 2);
  const httpsPort = portOption("--https-port", opts["https-port"], { "--port": port });
  const keypair = readKeypair(resolve(opts.tls), "--tls");
  if (Date.parse(keypair.notAfter) <= Date.now()) console.error(`isthmus: warning: --tls: the certificate expired at ${keypair.notAfter}; clients will refuse it`);
  // cert-manager puts the issuing CA beside every certificate it writes.
  if (keypair.trustedCertificates) console.error("isthmus: note: --tls: the CA file is not used: serve does not ask clients for certificates");
  return { port: httpsPort, keypair };
}

/** `--credentials DIR`: the client certificates, with a warning for each expired one. */
function credentialsOption(dir: string | undefined): ClientCredential[] {
  const credentials = dir !== undefined ? readCredentials(resolve(dir)) : [];
  for (const c of credentials) {
    if (Date.parse(c.notAfter) <= Date.now()) console.error(`isthmus: warning: --credentials: the client certificate of ${c.binding} expired at ${c.notAfter}; origins that verify it will refuse the handshake`);
  }
  return credentials;
}

/** Refuses a credential whose binding name is already another binding's (`taken`: name → what it is). */
function assertFreeBindingNames(credentials: ClientCredential[], taken: [name: string, what: string][]): void {
  const names = new Map(taken);
  for (const c of credentials) {
    const other = names.get(c.binding);
    if (other) throw new CliError(`--credentials: ${c.binding} is already the name of ${other}; rename the directory (and the GatewayConfig credentials entry that names it)`, 2);
  }
}

/**
 * Warns about mTLS bindings the configuration uses and no --credentials
 * directory provides: requests to those clusters would be answered 503 UF.
 */
function warnMissingCredentials(snapshot: Snapshot, credentials: ClientCredential[], dir: string | undefined): void {
  for (const m of missingCredentials(snapshot, credentials.map((c) => c.binding))) {
    const where = dir !== undefined ? `no directory ${m.binding} in --credentials ${dir}` : "serve was started without --credentials";
    console.error(
      `isthmus: warning: ${m.clusters.join(", ")}: DestinationRule tls.credentialName needs the client certificate binding ${m.binding}, but ${where}; ` +
        `requests to ${m.clusters.length === 1 ? "this cluster" : "these clusters"} are answered 503 UF (restart serve with the certificate to add it)`,
    );
  }
}

/**
 * A dotenv file as wrangler reads `.dev.vars`: `KEY=VALUE` lines, `#`
 * comments, values optionally in single or double quotes (`\n` in double quotes).
 */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    let value = (m[2] as string).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1).replace(/\\n/g, "\n");
    else if (value.length >= 2 && value.startsWith("'") && value.endsWith("'")) value = value.slice(1, -1);
    else value = value.replace(/\s+#.*$/, "");
    out[m[1] as string] = value;
  }
  return out;
}

/** The workerd binary shipped by the `workerd` npm package. */
export function workerdBinary(): string {
  const require = createRequire(import.meta.url);
  return (require("workerd") as { default: string }).default;
}

function startWorkerd(configFile: string, flags: string[], pipeStderr: boolean): ChildProcess {
  // localDisk Durable Object storage and cluster mode are marked experimental in workerd.capnp.
  const args = ["serve", "--experimental", ...flags, configFile];
  return spawn(workerdBinary(), args, {
    stdio: ["ignore", "inherit", pipeStderr ? "pipe" : "inherit"],
    detached: true,
  });
}

/**
 * The V8 inspector runs any code in the gateway, with its secrets: only on
 * a loopback address (reach it through an SSH tunnel or kubectl port-forward).
 */
function loopbackOnly(option: string, hostPort: string): string {
  const host = hostPort.slice(0, hostPort.lastIndexOf(":")).replace(/^\[|\]$/g, "");
  if (host === "localhost" || host === "::1" || /^127\./.test(host)) return hostPort;
  throw new CliError(`${option}: expected a loopback address (127.0.0.1, ::1 or localhost), got ${hostPort}: the inspector gives whoever reaches it code execution in the gateway`, 2);
}

/**
 * The admin token: ISTHMUS_ADMIN_TOKEN (tests and operators pin it), else
 * random per run. A bearer token has token68's characters (RFC 7235); the
 * admin endpoints answer 400 to any other before comparing, so such a
 * token would lock the gateway out of its own readiness check.
 */
function adminToken(configured: string | undefined): string {
  if (configured === undefined) return randomUUID();
  if (!/^[A-Za-z0-9._~+/-]+=*$/.test(configured)) throw new CliError("ISTHMUS_ADMIN_TOKEN: expected a bearer token (letters, digits and -._~+/, then = padding)", 2);
  return configured;
}
