/**
 * TLS on both sides of `isthmus serve`, with a test PKI made by openssl.
 *
 * Outbound, `--credentials DIR`: DestinationRule `tls.mode: MUTUAL` against
 * a real Node HTTPS origin that requires and verifies a client certificate.
 * Each credential directory becomes a workerd network service presenting
 * its certificate, bound under the directory's name: the same
 * `env.<binding>.fetch()` path an `mtls_certificates` binding takes on
 * Cloudflare. Health checks go through it too.
 *
 * Inbound, `--https-port N --tls DIR`: a second socket that terminates TLS,
 * so x-forwarded-proto and Gateway `tls.httpsRedirect` see the scheme.
 *
 * `--trusted-ca FILE`: outbound HTTPS to an origin a private CA signed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, startGateway, type Gateway } from "../helpers/gateway.ts";
import { send } from "../helpers/http.ts";
import { serviceEntry } from "../helpers/istio-yaml.ts";
import { generatePki, mtlsPaymentsYaml, startMtlsOrigin, type MtlsOrigin, type Pki } from "../helpers/pki.ts";

let dir: string;
let pki: Pki;
let origin: MtlsOrigin;
let port: number;
let gw: Gateway;
let httpsPort: number;
/** An HTTPS origin whose certificate the test CA signed, asking for no client certificate. */
let ledger: Server;
let ledgerPort: number;
/** What the origin saw of each request it answered. */
const seen = () => origin.seen.map((r) => ({ path: r.path, clientCn: r.clientCn, host: r.headers.host, proto: r.headers["x-forwarded-proto"] }));
const refused = () => origin.refused;

const config = () => `
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus, namespace: istio-system}
spec:
  credentials:
  - {credentialName: payments-client-cert, binding: ORIGIN_CERT}
  healthChecks:
  - {host: payments.edge.internal, path: /healthz, interval: 1s, timeout: 1s}
---
${mtlsPaymentsYaml(port, { rogue: "ROGUE_CERT", "public-cas": "PUBLIC_CAS_CERT", missing: "MISSING_CERT" })}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: payments, namespace: edge}
spec:
  hosts: [payments.example.com]
  gateways: [public]
  http:
  - match: [{uri: {prefix: /rogue}}]
    route: [{destination: {host: payments.edge.internal, subset: rogue}}]
  - match: [{uri: {prefix: /public-cas}}]
    route: [{destination: {host: payments.edge.internal, subset: public-cas}}]
  - match: [{uri: {prefix: /missing}}]
    route: [{destination: {host: payments.edge.internal, subset: missing}}]
  - match: [{uri: {prefix: /ledger}}]
    route: [{destination: {host: ledger.edge.internal}}]
  - route: [{destination: {host: payments.edge.internal}}]
---
${serviceEntry({ name: "ledger", namespace: "edge", port: { number: 443, name: "https", protocol: "HTTPS" }, endpoints: [{ address: "localhost", port: ledgerPort }] })}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ledger, namespace: edge}
spec:
  host: ledger.edge.internal
  trafficPolicy:
    tls: {mode: SIMPLE}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: edge}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [payments.example.com]
  - port: {number: 80, name: http-shop, protocol: HTTP}
    hosts: [shop.example.com]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [payments.example.com, shop.example.com]
    tls: {mode: SIMPLE}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: edge}
spec:
  hosts: [shop.example.com]
  gateways: [public]
  http:
  - directResponse: {status: 200, body: {string: "shop over TLS"}}
`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "isthmus-serve-mtls-"));
  pki = generatePki(dir);
  origin = await startMtlsOrigin(pki);
  port = origin.port;
  ledger = createServer({ key: pki.serverKey, cert: pki.serverCert }, (_req, res) => res.end("ledger over TLS"));
  await new Promise<void>((resolve) => ledger.listen(0, "127.0.0.1", resolve));
  ledgerPort = (ledger.address() as AddressInfo).port;

  // As Kubernetes mounts TLS secrets (ORIGIN_CERT, PUBLIC_CAS_CERT) and an Istio generic secret (ROGUE_CERT).
  const credentials = join(dir, "credentials");
  const secret = (name: string, files: Record<string, string>) => {
    mkdirSync(join(credentials, name), { recursive: true });
    for (const [file, text] of Object.entries(files)) writeFileSync(join(credentials, name, file), text);
  };
  secret("ORIGIN_CERT", { "tls.crt": pki.clientCert, "tls.key": pki.clientKey, "ca.crt": pki.ca });
  secret("ROGUE_CERT", { cert: pki.strangerCert, key: pki.strangerKey, cacert: pki.ca });
  // No CA: the origin's certificate is checked against the public CAs, which did not sign it.
  secret("PUBLIC_CAS_CERT", { "tls.crt": pki.clientCert, "tls.key": pki.clientKey });
  const tls = join(dir, "tls");
  mkdirSync(tls);
  writeFileSync(join(tls, "tls.crt"), pki.serverCert);
  writeFileSync(join(tls, "tls.key"), pki.serverKey);
  httpsPort = await freePort();
  writeFileSync(join(dir, "internal-ca.pem"), pki.ca);
  gw = await startGateway(config(), {
    command: "serve",
    args: ["--credentials", credentials, "--https-port", String(httpsPort), "--tls", tls, "--trusted-ca", join(dir, "internal-ca.pem")],
  });
}, 120_000);

afterAll(async () => {
  await gw?.stop();
  await origin?.close();
  await new Promise<void>((resolve) => (ledger ? ledger.close(() => resolve()) : resolve()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const get = (path: string) => send(gw.url, path, { host: "payments.example.com" });

/** GET over TLS to the gateway's HTTPS port, verifying its certificate with the test CA. */
const getTls = (path: string, host: string) =>
  new Promise<{ status: number; body: string; authorized: boolean }>((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: httpsPort, path, servername: "localhost", ca: [pki.ca], headers: { host } }, (res) => {
      const authorized = (res.socket as TLSSocket).authorized;
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, authorized }));
    });
    req.on("error", reject);
    req.end();
  });

describe("isthmus serve --credentials", () => {
  it("presents the credential's client certificate to the origin, which verifies it; the origin is verified with the credential's CA", async () => {
    // No handshake is refused for it. The rogue subset's health probes (each second, with a certificate the
    // origin refuses) can fall into the count: one that did is taken again (a probe can only add to it).
    const added: number[] = [];
    for (let i = 0; i < 3 && added[added.length - 1] !== 0; i++) {
      const refusedBefore = refused().length;
      const res = await get("/charge");
      expect({ status: res.status, body: res.body }).toEqual({ status: 200, body: "hello isthmus-gateway" });
      added.push(refused().length - refusedBefore);
    }
    expect(Math.min(...added)).toBe(0);
    const charges = seen().filter((s) => s.path === "/charge");
    expect(charges.length).toBe(added.length);
    for (const charge of charges) expect(charge).toEqual({ path: "/charge", clientCn: "isthmus-gateway", host: `localhost:${port}`, proto: "http" });
  });

  it("is refused by the origin when the certificate comes from a CA it does not trust (Istio's generic secret layout)", async () => {
    // One refused handshake per attempt: Istio's default retry policy retried the connection failure twice.
    // The rogue subset's health probes (each second, with its certificate) are refused too: a count one of
    // them fell into is taken again (a probe can only add to it).
    const counts: number[] = [];
    for (let i = 0; i < 3 && counts[counts.length - 1] !== 3; i++) {
      const refusedBefore = refused().length;
      const res = await get("/rogue");
      expect(res.status).toBe(503);
      counts.push(refused().length - refusedBefore);
    }
    expect(seen().some((s) => s.path === "/rogue")).toBe(false);
    expect(Math.min(...counts)).toBe(3);
  });

  it("does not trust a private origin certificate without the credential's CA", async () => {
    const res = await get("/public-cas");
    expect(res.status).toBe(503);
    expect(seen().some((s) => s.path === "/public-cas")).toBe(false);
  });

  it("warns at start about a binding no credential provides, and answers its cluster 503 UF", async () => {
    expect(gw.output()).toContain(
      "isthmus: warning: outbound|443|missing|payments.edge.internal: DestinationRule tls.credentialName needs the client certificate binding MISSING_CERT, but no directory MISSING_CERT in --credentials",
    );
    expect(gw.output()).not.toMatch(/binding (ORIGIN_CERT|ROGUE_CERT|PUBLIC_CAS_CERT), but/);
    const res = await get("/missing");
    expect(res.status).toBe(503);
    expect(seen().some((s) => s.path === "/missing")).toBe(false);
  });

  it("runs the cluster's health checks through the same certificate", async () => {
    const deadline = Date.now() + 15_000;
    while (!seen().some((s) => s.path === "/healthz") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(seen().find((s) => s.path === "/healthz")).toMatchObject({ path: "/healthz", clientCn: "isthmus-gateway", host: `localhost:${port}` });
  });
});

describe("isthmus serve --trusted-ca", () => {
  it("lets outbound HTTPS (DestinationRule tls SIMPLE) trust an origin that a private CA signed", async () => {
    const res = await get("/ledger/balance");
    expect({ status: res.status, body: res.body }).toEqual({ status: 200, body: "ledger over TLS" });
  });

  it("leaves a client certificate's own trust alone: a credential without a CA file still trusts only the public CAs", async () => {
    expect((await get("/public-cas")).status).toBe(503);
  });
});

describe("isthmus serve --https-port --tls", () => {
  it("terminates TLS with the certificate given, and tells the origin the request came over https", async () => {
    expect(gw.output()).toContain(`isthmus: HTTPS on https://127.0.0.1:${httpsPort} with the certificate in`);
    const res = await getTls("/over-tls", "payments.example.com");
    expect(res).toEqual({ status: 200, body: "hello isthmus-gateway", authorized: true });
    expect(seen().find((s) => s.path === "/over-tls")?.proto).toBe("https");
    await get("/over-plain-http");
    expect(seen().find((s) => s.path === "/over-plain-http")?.proto).toBe("http");
  });

  it("applies Gateway tls.httpsRedirect to plain HTTP only", async () => {
    const plain = await send(gw.url, "/cart?item=7", { host: "shop.example.com" });
    expect(plain.status).toBe(301);
    expect(plain.headers.location).toBe("https://shop.example.com/cart?item=7");
    expect(await getTls("/cart?item=7", "shop.example.com")).toEqual({ status: 200, body: "shop over TLS", authorized: true });
  });
});
