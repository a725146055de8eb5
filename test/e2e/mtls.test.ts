/**
 * mTLS origination (DestinationRule `tls.mode: MUTUAL` + `credentialName`)
 * against a real Node HTTPS origin that requires and verifies a client
 * certificate, with a test PKI generated here by openssl.
 *
 * In production the credentialName names an `mtls_certificates` binding,
 * which presents the uploaded certificate. That binding cannot present a
 * certificate locally (workers-platform.md §1a), and `wrangler dev` cannot
 * replace it with anything that can, so this test runs the gateway Worker
 * (bundled as wrangler bundles it) in workerd through Miniflare, with the
 * binding replaced by a workerd external service that holds the client
 * keypair — the same code path: `env.<binding>.fetch()`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildConfig } from "../../src/config/build.ts";
import { applySnapshot, type KeyValueStore } from "../../src/config/store.ts";
import { send } from "../helpers/http.ts";
import { generatePki, mtlsPaymentsYaml, startMtlsOrigin, type MtlsOrigin, type Pki } from "../helpers/pki.ts";

let dir: string;
let pki: Pki;
let origin: MtlsOrigin;
let port: number;
let mf: Miniflare;
/** What the origin saw of each request it answered. */
const seen = () => origin.seen.map((r) => ({ path: r.path, clientCn: r.clientCn, attempt: r.headers["x-envoy-attempt-count"] }));
const refused = () => origin.refused;

const config = () => `
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus}
spec:
  credentials:
  - {credentialName: payments-client-cert, binding: ORIGIN_CERT}
---
${mtlsPaymentsYaml(port, { "no-cert": "ORIGIN_NO_CERT", "wrong-cert": "ORIGIN_ROGUE_CERT" })}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: payments, namespace: edge}
spec:
  hosts: [payments.example.com]
  http:
  - match: [{uri: {prefix: /no-cert}}]
    route: [{destination: {host: payments.edge.internal, subset: no-cert}}]
  - match: [{uri: {prefix: /wrong-cert}}]
    route: [{destination: {host: payments.edge.internal, subset: wrong-cert}}]
  - route: [{destination: {host: payments.edge.internal}}]
`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "isthmus-mtls-"));
  pki = generatePki(dir);
  origin = await startMtlsOrigin(pki);
  port = origin.port;

  const bundle = join(dir, "worker.js");
  await build({
    entryPoints: ["src/index.ts"],
    outfile: bundle,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    mainFields: ["module", "main"],
    conditions: ["workerd", "worker", "browser"],
    external: ["cloudflare:*", "node:*"],
    logLevel: "silent",
  });
  const external = (keypair?: { privateKey: string; certificateChain: string }) => ({
    external: {
      address: `127.0.0.1:${port}`,
      https: { certificateHost: "localhost", tlsOptions: { ...(keypair ? { keypair } : {}), trustedCertificates: [pki.ca] } },
    },
  });
  mf = new Miniflare(
    convertV4MiniflareOptions({
      modules: true,
      scriptPath: bundle,
      modulesRoot: dir,
      compatibilityDate: "2026-11-01",
      host: "127.0.0.1",
      port: 0,
      kvNamespaces: { CONFIG: "config" },
      durableObjects: { UPSTREAM_HEALTH: { className: "UpstreamHealth", useSQLite: true } },
      serviceBindings: {
        ORIGIN_CERT: external({ privateKey: pki.clientKey, certificateChain: pki.clientCert }),
        ORIGIN_NO_CERT: external(),
        ORIGIN_ROGUE_CERT: external({ privateKey: pki.strangerKey, certificateChain: pki.strangerCert }),
      },
    }),
  );
  const built = await buildConfig([{ path: "mtls.yaml", text: config() }]);
  if (!built.snapshot) throw new Error(built.problems.map((p) => `${p.field}: ${p.message}`).join("\n"));
  const kv = (await mf.getKVNamespace("CONFIG")) as unknown as KeyValueStore;
  await applySnapshot(kv, built.snapshot, built.sources, new Date());
}, 120_000);

afterAll(async () => {
  await mf?.dispose();
  await origin?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const get = async (path: string) => {
  const res = await send((await mf.ready).toString(), path, { host: "payments.example.com" });
  return { status: res.status, body: res.body };
};

describe("the test origin", () => {
  it("refuses a TLS client that presents no certificate", async () => {
    const failure = await new Promise<string>((resolve) => {
      const socket = connect({ host: "127.0.0.1", port, servername: "localhost", ca: [pki.ca] }, () => socket.write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
      socket.on("data", (d) => resolve(`answered: ${d.toString().split("\r\n")[0]}`));
      socket.on("error", (e) => resolve(`error: ${e.message}`));
      socket.on("close", () => resolve("closed without an answer"));
    });
    expect(failure).not.toMatch(/^answered/);
  });
});

describe("DestinationRule tls MUTUAL", () => {
  it("reaches the origin through the credential's binding, which presents the client certificate", async () => {
    const refusedBefore = refused().length;
    const res = await get("/charge");
    expect(refused().length).toBe(refusedBefore);
    expect(res).toEqual({ status: 200, body: "hello isthmus-gateway" });
    expect(seen().at(-1)).toEqual({ path: "/charge", clientCn: "isthmus-gateway", attempt: "1" });
  }, 30_000);

  it("is refused by the origin when the binding presents no certificate (503 after the default retries)", async () => {
    const [before, refusedBefore] = [seen().length, refused().length];
    const res = await get("/no-cert");
    expect(res.status).toBe(503);
    expect(res.body).toBe("upstream connect error or disconnect/reset before headers. retried and the latest reset reason: connection failure");
    expect(seen().length).toBe(before);
    // One refused handshake per attempt: Istio's default policy retried the connection failure twice.
    expect(refused().slice(refusedBefore)).toEqual(Array(3).fill("ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE"));
  }, 30_000);

  it("is refused when the certificate comes from a CA the origin does not trust", async () => {
    const [before, refusedBefore] = [seen().length, refused().length];
    const res = await get("/wrong-cert");
    expect(res.status).toBe(503);
    expect(seen().length).toBe(before);
    // Node reports a TLS 1.3 client certificate it rejects as a hang-up during the handshake.
    expect(refused().slice(refusedBefore)).toEqual(Array(3).fill("ECONNRESET"));
  }, 30_000);
});
