/**
 * PeerAuthentication and client-certificate identity, through the real
 * Worker entry inside workerd. Cloudflare reports a client certificate
 * only in `request.cf.tlsClientAuth`, which `wrangler dev` always fills
 * with a placeholder and which an HTTP client cannot set, so these tests
 * pass `cf` to the Worker's fetch handler (workers-platform §1b) instead
 * of going through `isthmus dev`. Requests still go through the whole
 * pipeline to a real Node origin (test/unit/setup/origin.ts), which
 * echoes what it received.
 */
import { exports } from "cloudflare:workers";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { applyConfig } from "../helpers/apply.ts";

const CLIENT_DN = "CN=client.example,O=Acme";
const FINGERPRINT = "AB12CD34EF56";
const CERT = ":MIIBszCCAVmgAwIBAgIUe3Rlc3Q=:";
const CHAIN = ":MIIBszCCAVmgAwIBAgIUe3Rlc3Q=:, :MIIBkTCB+wIJAKHBfpegPjMCMA0=:";

const verified = {
  certPresented: "1",
  certVerified: "SUCCESS",
  certRevoked: "0",
  certSubjectDN: "O=Acme,CN=client.example",
  certSubjectDNRFC2253: CLIENT_DN,
  certFingerprintSHA256: FINGERPRINT,
  certRFC9440: CERT,
  certChainRFC9440: CHAIN,
};
const unverified = { ...verified, certVerified: "FAILED:self signed certificate" };
const revoked = { ...verified, certRevoked: "1" };
const none = { certPresented: "0", certVerified: "NONE", certRevoked: "0" };

function site(ns: string, extra = "", labels = "", port?: number) {
  const originPort = port ?? inject("originPort");
  return `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc, namespace: ${ns}}
spec:
  hosts: [svc.${ns}.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${originPort}}${labels ? `, labels: {${labels}}` : ""}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: ${ns}}
spec:
  hosts: [${ns}.peer.test]
  http:
  - route: [{destination: {host: svc.${ns}.internal}}]
${extra ? `---\n${extra}` : ""}`;
}

const config = () =>
  [
    `apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus, namespace: istio-system}
spec:
  peerCertificate: {principal: SUBJECT_DN, forwardClientCert: RFC9440}`,
    `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: mesh, namespace: istio-system}
spec:
  mtls: {mode: STRICT}`,
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge, namespace: istio-system}
spec:
  hosts: [edge.peer.test]
  http:
  - directResponse: {status: 200, body: {string: "edge"}}`,
    site("strict"),
    site("permissive", `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ns, namespace: permissive}\nspec: {mtls: {mode: PERMISSIVE}}`),
    site("unset", `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ns, namespace: unset}\nspec: {mtls: {mode: UNSET}}`),
    site("disabled", `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ns, namespace: disabled}\nspec: {mtls: {mode: DISABLE}}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: disabled}\nspec:\n  rules:\n  - from: [{source: {notPrincipals: ["${CLIENT_DN}"]}}]`),
    site(
      "ported",
      `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ns, namespace: ported}\nspec: {mtls: {mode: PERMISSIVE}}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: workload, namespace: ported}\nspec:\n  selector: {matchLabels: {app: ported}}\n  mtls: {mode: PERMISSIVE}\n  portLevelMtls:\n    "${inject("originPort")}": {mode: STRICT}`,
      "app: ported",
    ),
    site(
      "principals",
      `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ns, namespace: principals}\nspec: {mtls: {mode: PERMISSIVE}}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: principals}\nspec:\n  rules:\n  - from: [{source: {principals: ["${CLIENT_DN}", "CN=other*"]}}]`,
    ),
    site(
      "notprincipals",
      `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ns, namespace: notprincipals}\nspec: {mtls: {mode: PERMISSIVE}}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: notprincipals}\nspec:\n  action: DENY\n  rules:\n  - from: [{source: {notPrincipals: ["*"]}}]`,
    ),
    site(
      "sourceprincipal",
      `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ns, namespace: sourceprincipal}\nspec: {mtls: {mode: PERMISSIVE}}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: sourceprincipal}\nspec:\n  rules:\n  - when: [{key: source.principal, values: ["CN=client*"]}]`,
    ),
    site(
      "namespaces",
      `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: namespaces}\nspec:\n  rules:\n  - from: [{source: {namespaces: ["default"]}}]`,
    ),
    site(
      "sni",
      `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ns, namespace: sni}\nspec: {mtls: {mode: PERMISSIVE}}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: sni}\nspec:\n  rules:\n  - when: [{key: connection.sni, values: ["sni.peer.test"]}]`,
    ),
  ].join("\n---\n");

beforeAll(async () => {
  await applyConfig(config(), "http://edge.peer.test/");
});

interface Echo {
  headers: Record<string, string>;
}

async function call(url: string, tlsClientAuth?: Record<string, string>) {
  const init = tlsClientAuth ? ({ cf: { tlsClientAuth } } as RequestInit) : {};
  const res = await exports.default.fetch(url, init);
  const text = await res.text();
  return { status: res.status, body: text, echo: res.headers.get("content-type") === "application/json" ? (JSON.parse(text) as Echo) : undefined };
}

describe("PeerAuthentication modes", () => {
  it("STRICT (mesh-wide) refuses requests without a verified client certificate", async () => {
    for (const auth of [undefined, none, unverified, revoked]) {
      const r = await call("http://strict.peer.test/", auth);
      expect(r.status).toBe(403);
      expect(r.body).toBe("peer authentication failed: a verified client certificate is required");
      expect(r.echo).toBeUndefined();
    }
    expect((await call("http://strict.peer.test/", verified)).status).toBe(200);
  });

  it("STRICT also covers requests answered by the gateway itself", async () => {
    expect((await call("http://edge.peer.test/")).status).toBe(403);
    expect((await call("http://edge.peer.test/", verified)).body).toBe("edge");
  });

  it("a namespace PERMISSIVE policy overrides the mesh's STRICT one", async () => {
    expect((await call("http://permissive.peer.test/")).status).toBe(200);
    expect((await call("http://permissive.peer.test/", unverified)).status).toBe(200);
  });

  it("UNSET inherits the mesh mode", async () => {
    expect((await call("http://unset.peer.test/")).status).toBe(403);
  });

  it("DISABLE ignores the certificate: no principal, and nothing forwarded", async () => {
    const r = await call("http://disabled.peer.test/", verified);
    expect(r.status).toBe(200);
    expect(r.echo?.headers["client-cert"]).toBeUndefined();
  });

  it("portLevelMtls of a workload policy applies to endpoints on that port", async () => {
    expect((await call("http://ported.peer.test/")).status).toBe(403);
    expect((await call("http://ported.peer.test/", verified)).status).toBe(200);
  });
});

describe("the peer principal", () => {
  it("principals match the subject DN of a verified certificate", async () => {
    expect((await call("http://principals.peer.test/", verified)).status).toBe(200);
    expect((await call("http://principals.peer.test/", { ...verified, certSubjectDNRFC2253: "CN=someone-else" })).status).toBe(403);
    expect((await call("http://principals.peer.test/", { ...verified, certSubjectDNRFC2253: "CN=other-7,O=X" })).status).toBe(200);
    expect((await call("http://principals.peer.test/", unverified)).status).toBe(403);
    expect((await call("http://principals.peer.test/")).status).toBe(403);
  });

  it("notPrincipals: [\"*\"] in a DENY policy refuses requests without a certificate identity", async () => {
    expect((await call("http://notprincipals.peer.test/")).status).toBe(403);
    expect((await call("http://notprincipals.peer.test/", unverified)).status).toBe(403);
    expect((await call("http://notprincipals.peer.test/", verified)).status).toBe(200);
  });

  it("source.principal conditions", async () => {
    expect((await call("http://sourceprincipal.peer.test/", verified)).status).toBe(200);
    expect((await call("http://sourceprincipal.peer.test/")).status).toBe(403);
  });

  it("namespaces match mesh identities, which edge certificates do not carry", async () => {
    expect((await call("http://namespaces.peer.test/", verified)).status).toBe(403);
  });

  it("connection.sni is the host of an HTTPS request", async () => {
    expect((await call("https://sni.peer.test/")).status).toBe(200);
    expect((await call("http://sni.peer.test/")).status).toBe(403);
  });
});

describe("forwarding the client certificate (RFC 9440)", () => {
  it("sends Client-Cert and Client-Cert-Chain upstream for a verified certificate", async () => {
    const r = await call("http://permissive.peer.test/", verified);
    expect(r.echo?.headers["client-cert"]).toBe(CERT);
    expect(r.echo?.headers["client-cert-chain"]).toBe(CHAIN);
  });

  it("never forwards client-sent Client-Cert headers, nor an unverified certificate", async () => {
    const res = await exports.default.fetch("http://permissive.peer.test/", {
      headers: { "client-cert": ":Zm9yZ2Vk:", "client-cert-chain": ":Zm9yZ2Vk:", "x-forwarded-client-cert": "By=x" },
      cf: { tlsClientAuth: unverified },
    } as RequestInit);
    const echo = (await res.json()) as Echo;
    expect(echo.headers["client-cert"]).toBeUndefined();
    expect(echo.headers["client-cert-chain"]).toBeUndefined();
    expect(echo.headers["x-forwarded-client-cert"]).toBeUndefined();
  });
});
