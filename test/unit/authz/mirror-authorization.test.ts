/**
 * Mirrored copies and the mirror destination's security: a copy is a
 * request to another cluster, so the policies that stand in for that
 * cluster's sidecar (its namespace's and workloads' PeerAuthentication,
 * RequestAuthentication and AuthorizationPolicy) decide whether it is
 * sent, as they would for a request routed there. Through the pipeline
 * with an injected fetch, to see exactly which copies left.
 */
import { describe, expect, it } from "vitest";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { buildConfig } from "../../../src/config/build.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import { runPipeline, type PipelineDeps } from "../../../src/gateway/pipeline.ts";
import { Balancer } from "../../../src/routing/balancer.ts";
import { UpstreamState } from "../../../src/upstream/state.ts";

const { publicKey, privateKey } = await generateKeyPair("ES256");
const JWKS = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: "k" }] });
const ISSUER = "https://secret-idp.test";
const sign = () => new SignJWT({}).setProtectedHeader({ alg: "ES256", kid: "k" }).setIssuer(ISSUER).setSubject("ops").setExpirationTime("1h").sign(privateKey);

const service = (name: string, ns: string) => `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}, namespace: ${ns}}
spec:
  hosts: [${name}.${ns}.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: ${name}.internal}]
`;

/** `apps` serves app.example.com and mirrors every request to the shadow service of namespace `secret`; /direct routes to it. */
const BASE = `${service("app", "apps")}
---
${service("shadow", "secret")}
---
${service("open", "public")}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: apps}
spec:
  hosts: [app.example.com]
  http:
  - match: [{uri: {prefix: /direct}}]
    route: [{destination: {host: shadow.secret.internal}}]
  - route: [{destination: {host: app.apps.internal}}]
    mirrors:
    - destination: {host: shadow.secret.internal}
    - destination: {host: open.public.internal}
`;

async function gateway(yaml: string) {
  const result = await buildConfig([{ path: "test.yaml", text: yaml }]);
  if (!result.snapshot) throw new Error(result.problems.map((p) => `${p.resource} ${p.field}: ${p.message}`).join("\n"));
  const snapshot = hydrate(result.snapshot);
  const sent: string[] = [];
  const deps: PipelineDeps = {
    fetch: async (url, init) => {
      const request = new Request(url, init);
      const host = new URL(request.url).hostname.replace(".internal", "");
      sent.push(host);
      return new Response(`ok from ${host}`);
    },
    balancer: new Balancer(Math.random),
    random: () => 0.5,
    requestId: () => "00000000-0000-4000-8000-000000000000",
    now: () => Date.now(),
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    upstreams: new UpstreamState({ log: () => {} }),
  };
  const run = async (path: string, headers: Record<string, string> = {}) => {
    const pending: Promise<unknown>[] = [];
    sent.length = 0;
    const r = await runPipeline(new Request(`http://app.example.com${path}`, { headers }), snapshot, deps, (p) => pending.push(p));
    await Promise.all(pending);
    const mirrors = Object.fromEntries((r.record.mirrors ?? []).map((m) => [m.cluster.replace(/^outbound\|80\|\|/, ""), m.outcome]));
    return { status: r.response.status, sent: [...sent].sort(), mirrors };
  };
  return { run };
}

describe("mirrored copies meet the mirror destination's security", () => {
  it("skips a copy to a namespace whose policy denies everything, and sends the others", async () => {
    const gw = await gateway(`${BASE}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: secret}
spec: {}
`);
    expect((await gw.run("/direct")).status).toBe(403);
    expect(await gw.run("/x")).toEqual({
      status: 200,
      sent: ["app", "open"],
      mirrors: { "shadow.secret.internal": "skipped-denied", "open.public.internal": "sent" },
    });
  });

  it("sends the copy when the mirror destination's policies allow the request", async () => {
    const gw = await gateway(`${BASE}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-x, namespace: secret}
spec:
  rules: [{to: [{operation: {paths: ["/x"]}}]}]
`);
    expect((await gw.run("/x")).mirrors).toEqual({ "shadow.secret.internal": "sent", "open.public.internal": "sent" });
    expect((await gw.run("/y")).mirrors).toEqual({ "shadow.secret.internal": "skipped-denied", "open.public.internal": "sent" });
  });

  it("verifies the mirror destination's own JWT rules: a copy needs the identity its policy asks for", async () => {
    const gw = await gateway(`${BASE}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: secret-jwt, namespace: secret}
spec:
  jwtRules: [{issuer: "${ISSUER}", jwks: '${JWKS}'}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: needs-jwt, namespace: secret}
spec:
  rules: [{from: [{source: {requestPrincipals: ["${ISSUER}/ops"]}}]}]
`);
    expect((await gw.run("/x")).mirrors["shadow.secret.internal"]).toBe("skipped-denied");
    const token = await sign();
    expect(await gw.run("/x", { authorization: `Bearer ${token}` })).toMatchObject({ status: 200, sent: ["app", "open", "shadow"] });
    // An invalid token fails the copy's authentication (the primary destination has no rule for it).
    expect((await gw.run("/x", { authorization: `Bearer ${token.slice(0, -4)}AAAA` })).mirrors["shadow.secret.internal"]).toBe("skipped-denied");
  });

  it("skips a copy to a destination whose PeerAuthentication is STRICT when the client has no certificate", async () => {
    const gw = await gateway(`${BASE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: secret}
spec: {mtls: {mode: STRICT}}
`);
    expect(await gw.run("/x")).toMatchObject({ status: 200, sent: ["app", "open"], mirrors: { "shadow.secret.internal": "skipped-denied" } });
  });

  it("never asks an external authorizer for a copy: a matching CUSTOM policy of the mirror destination skips it", async () => {
    const gw = await gateway(`${BASE}
---
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus, namespace: istio-system}
spec:
  extensionProviders:
  - name: ext
    envoyExtAuthzHttp: {service: authz.auth.internal, port: 80}
---
${service("authz", "auth")}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ask, namespace: secret}
spec:
  action: CUSTOM
  provider: {name: ext}
  rules: [{to: [{operation: {paths: ["/guarded*"]}}]}]
`);
    expect(await gw.run("/guarded")).toMatchObject({ status: 200, sent: ["app", "open"], mirrors: { "shadow.secret.internal": "skipped-denied" } });
    expect((await gw.run("/other")).mirrors["shadow.secret.internal"]).toBe("sent");
  });
});
