/**
 * RequestAuthentication end to end: the real gateway (`isthmus dev`) in
 * front of a real origin, with real identity providers (Node servers that
 * publish JWKS for keys made with jose). Each test asserts what the
 * client got, what the origin received and what the IdP was asked.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type Gateway } from "../helpers/gateway.ts";
import { startIdp, type Idp } from "../helpers/idp.ts";
import { send } from "../helpers/http.ts";
import { startOrigin, type Origin } from "../helpers/origin.ts";
import { routedService, serviceEntry } from "../helpers/istio-yaml.ts";

let gw: Gateway;
let app: Origin;
let admin: Origin;
let idpA: Idp;
let idpB: Idp;
let stranger: Idp;
let tenantIdp: Idp;

const HOST = "jwt.test";

const config = () => `
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus, namespace: istio-system}
spec:
  jwks: {unknownKidCooldown: 2s}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: jwt, namespace: apps}
spec:
  hosts: [${HOST}]
  http:
  - name: admins
    match:
    - headers:
        "@request.auth.claims.role": {exact: admin}
    route:
    - destination: {host: admin.apps.internal}
  - name: everyone
    route:
    - destination: {host: app.apps.internal}
---
${serviceEntry({ name: "app", namespace: "apps", endpoints: [app.port] })}
---
${serviceEntry({ name: "admin", namespace: "apps", endpoints: [admin.port] })}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: edge-jwt, namespace: istio-system}
spec:
  jwtRules:
  - issuer: ${idpA.issuer}
    jwksUri: ${idpA.jwksUri}
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders:
    - {header: x-jwt-sub, claim: sub}
    - {header: x-jwt-team, claim: org.team}
    - {header: x-jwt-admin, claim: flags.admin}
    - {header: x-jwt-groups, claim: groups}
  - issuer: ${idpB.issuer}
    audiences: ["api://gateway"]
    fromHeaders: [{name: x-token, prefix: "Token "}]
    fromParams: [tok]
    fromCookies: [session]
    forwardOriginalToken: true
---
${routedService({ hosts: "tenant.jwt.test", name: "tenant", namespace: "tenants", endpoints: [app.port] })}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: tenant-jwt, namespace: tenants}
spec:
  jwtRules:
  - issuer: ${tenantIdp.issuer}
    jwksUri: ${tenantIdp.jwksUri}
    fromHeaders: [{name: x-tenant-token}]
    outputClaimToHeaders: [{header: x-tenant-sub, claim: sub}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tenant-secure, namespace: tenants}
spec:
  rules:
  - to: [{operation: {notPaths: ["/secure/*"]}}]
  - from: [{source: {requestPrincipals: ["*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: private-needs-jwt, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules:
  - to: [{operation: {notPaths: ["/private/*"]}}]
  - from: [{source: {requestPrincipals: ["*"]}}]
    to: [{operation: {paths: ["/private/*"]}}]
`;

beforeAll(async () => {
  [app, admin, idpA, idpB, stranger, tenantIdp] = await Promise.all([startOrigin("app"), startOrigin("admin"), startIdp(), startIdp(), startIdp(), startIdp()]);
  gw = await startGateway(config());
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([app, admin, idpA, idpB, stranger, tenantIdp].map((s) => s?.close()));
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const get = (path: string, headers: Record<string, string> = {}) => send(gw.url, path, { host: HOST, headers });

/** The request `origin` received during `action`, asserting it received exactly one. */
async function received(origin: Origin, action: () => Promise<unknown>) {
  const before = origin.received.length;
  await action();
  expect(origin.received.length - before).toBe(1);
  return origin.received[before] as (typeof origin.received)[number];
}

describe("requests without a token", () => {
  it("continue with no identity, and nothing identity-related reaches the origin", async () => {
    const got = await received(app, async () => expect((await get("/")).status).toBe(200));
    for (const h of ["authorization", "x-jwt-sub", "x-jwt-payload"]) expect(got.headers[h], h).toBeUndefined();
  });

  it("are refused where a policy requires a request principal (requestPrincipals: ['*'])", async () => {
    const before = app.received.length;
    const res = await get("/private/data");
    expect(res.status).toBe(403);
    expect(res.body).toBe("RBAC: access denied");
    expect(app.received.length).toBe(before);
  });
});

describe("a valid token", () => {
  it("is verified, removed from the upstream request, and its claims are output as configured", async () => {
    const token = await idpA.sign({ org: { team: "payments" }, flags: { admin: false }, groups: ["a", "b"] });
    const got = await received(app, async () => expect((await get("/private/data", bearer(token))).status).toBe(200));
    expect(got.headers.authorization).toBeUndefined();
    expect(got.headers["x-jwt-sub"]).toBe("alice");
    expect(got.headers["x-jwt-team"]).toBe("payments");
    expect(got.headers["x-jwt-admin"]).toBe("false");
    expect(got.headers["x-jwt-groups"]).toBe(Buffer.from('["a","b"]').toString("base64"));
    expect(got.headers["x-jwt-payload"]).toBe(token.split(".")[1]);
  });

  it("overwrites identity headers a client sent itself, and strips them when there is no token", async () => {
    const spoofed = { "x-jwt-sub": "admin", "x-jwt-payload": "eyJzdWIiOiJhZG1pbiJ9", "x-jwt-team": "root" };
    const anonymous = await received(app, () => get("/", spoofed));
    for (const h of Object.keys(spoofed)) expect(anonymous.headers[h], h).toBeUndefined();
    const token = await idpA.sign({}, { subject: "bob" });
    const authenticated = await received(app, () => get("/", { ...spoofed, ...bearer(token) }));
    expect(authenticated.headers["x-jwt-sub"]).toBe("bob");
    expect(authenticated.headers["x-jwt-team"]).toBeUndefined();
  });

  it("never lets any identity header a client sends reach the upstream", async () => {
    const spoofed: Record<string, string> = {
      "x-jwt-sub": "root",
      "x-jwt-payload": "e30",
      "x-jwt-groups": "WyJhZG1pbiJd",
      "x-forwarded-client-cert": "By=spiffe://x;URI=spiffe://admin",
      "client-cert": ":Zm9yZ2Vk:",
      "client-cert-chain": ":Zm9yZ2Vk:",
      "x-envoy-original-path": "/public",
      "x-envoy-peer-metadata": "x",
      "x-isthmus-principal": "admin",
      "x-forwarded-user": "admin",
      "x-real-ip": "10.0.0.1",
      forwarded: "for=10.0.0.1",
    };
    for (const headers of [spoofed, { ...spoofed, ...bearer(await idpA.sign({}, { subject: "erin" })) }]) {
      const got = await received(app, () => get("/", headers));
      for (const h of Object.keys(spoofed)) {
        if (h === "x-jwt-sub" && headers.authorization) expect(got.headers[h]).toBe("erin");
        else if (h === "x-jwt-payload" && headers.authorization) expect(got.headers[h]).not.toBe("e30");
        else expect(got.headers[h], h).toBeUndefined();
      }
    }
  });

  it("without exp is accepted", async () => {
    const token = await idpA.sign({}, { expiresIn: null });
    expect((await get("/private/x", bearer(token))).status).toBe(200);
  });

  it("expired less than the 60 s clock skew ago is accepted; beyond it, 401 Jwt is expired", async () => {
    expect((await get("/private/x", bearer(await idpA.sign({}, { expiresIn: -30 })))).status).toBe(200);
    const res = await get("/private/x", bearer(await idpA.sign({}, { expiresIn: -120 })));
    expect(res.status).toBe(401);
    expect(res.body).toBe("Jwt is expired");
  });

  it("in access_token is used when no location is configured (Envoy's default), and removed from the URL sent upstream", async () => {
    const token = await idpA.sign({}, { subject: "carol" });
    const got = await received(app, async () => expect((await get(`/private/q?a=0&access_token=${token}&x=1`)).status).toBe(200));
    expect(got.headers["x-jwt-sub"]).toBe("carol");
    // Envoy removes a verified token's query parameter unless forwarding it (envoyproxy/envoy#34418).
    expect(got.url).toBe("/private/q?a=0&x=1");
  });

  it("routes on its claims (@request.auth.claims)", async () => {
    const token = await idpA.sign({ role: "admin" });
    const res = await get("/", bearer(token));
    expect(res.headers["x-origin"]).toBe("admin");
    expect((await get("/", bearer(await idpA.sign({ role: "user" })))).headers["x-origin"]).toBe("app");
  });
});

describe("an invalid token", () => {
  it("gets 401 with Envoy's body and WWW-Authenticate, and never reaches the origin", async () => {
    const token = await idpA.sign();
    const [h, p] = token.split(".");
    const before = app.received.length;
    const res = await get("/a/b?c=d", bearer(`${h}.${p}.${Buffer.from("not the signature").toString("base64url")}`));
    expect(res.status).toBe(401);
    expect(res.body).toBe("Jwt verification fails");
    expect(res.headers["www-authenticate"]).toBe(`Bearer realm="http://${HOST}/a/b?c=d", error="invalid_token"`);
    expect(app.received.length).toBe(before);
  });

  it("from an issuer no rule names gets 401 Jwt issuer is not configured", async () => {
    const res = await get("/", bearer(await stranger.sign()));
    expect(res.status).toBe(401);
    expect(res.body).toBe("Jwt issuer is not configured");
  });

  it("next to a valid one fails the request: every token must verify", async () => {
    const good = await idpA.sign();
    const bad = (await idpA.sign()).slice(0, -4) + "AAAA";
    const before = app.received.length;
    const res = await get(`/?access_token=${bad}`, bearer(good));
    expect(res.status).toBe(401);
    expect(app.received.length).toBe(before);
  });
});

describe("CORS preflights", () => {
  it("skip JWT verification (Istio's bypass_cors_preflight) but not authorization", async () => {
    const preflight = (path: string) =>
      send(gw.url, path, {
        host: HOST,
        method: "OPTIONS",
        headers: { origin: "https://app.example", "access-control-request-method": "GET", authorization: "Bearer not.a.jwt" },
      });
    expect((await preflight("/")).status).toBe(200);
    const denied = await preflight("/private/x");
    expect(denied.status).toBe(403);
    expect(denied.body).toBe("RBAC: access denied");
  });
});

describe("configured locations, audiences and forwarding", () => {
  it("reads fromHeaders with its prefix and keeps the token upstream when forwardOriginalToken is set", async () => {
    const token = await idpB.sign({}, { audience: "api://gateway", subject: "dave" });
    const got = await received(app, async () => expect((await get("/private/y", { "x-token": `Token ${token}` })).status).toBe(200));
    expect(got.headers["x-token"]).toBe(`Token ${token}`);
  });

  it("treats a header without the configured prefix as no token at all", async () => {
    const token = await idpB.sign({}, { audience: "api://gateway" });
    expect((await get("/", { "x-token": `Bearer ${token}` })).status).toBe(200);
    expect((await get("/private/z", { "x-token": `Bearer ${token}` })).status).toBe(403);
  });

  it("reads fromParams and fromCookies", async () => {
    const token = await idpB.sign({}, { audience: "api://gateway" });
    expect((await get(`/private/p?tok=${token}`)).status).toBe(200);
    expect((await get("/private/c", { cookie: `theme=dark; session=${token}` })).status).toBe(200);
  });

  it("answers 403 Audiences in Jwt are not allowed when no audience matches", async () => {
    const res = await get("/", { "x-token": `Token ${await idpB.sign({}, { audience: "api://other" })}` });
    expect(res.status).toBe(403);
    expect(res.body).toBe("Audiences in Jwt are not allowed");
    expect(res.headers["www-authenticate"]).toMatch(/^Bearer realm=".*", error="invalid_token"$/);
  });

  it("finds the keys of an issuer without jwksUri by OIDC discovery", async () => {
    expect(idpB.requests).toContain("/.well-known/openid-configuration");
    expect(idpB.requests).toContain("/discovered/jwks.json");
  });
});

describe("a RequestAuthentication scoped to a namespace", () => {
  const tenant = (path: string, headers: Record<string, string> = {}) => send(gw.url, path, { host: "tenant.jwt.test", headers });

  it("verifies tokens for requests routed to services of that namespace", async () => {
    const token = await tenantIdp.sign({}, { subject: "t-1" });
    const got = await received(app, async () => expect((await tenant("/secure/x", { "x-tenant-token": token })).status).toBe(200));
    expect(got.headers["x-tenant-sub"]).toBe("t-1");
    expect(got.headers["x-tenant-token"]).toBeUndefined();
    const bad = await tenant("/secure/x", { "x-tenant-token": `${token.slice(0, -4)}AAAA` });
    expect(bad.status).toBe(401);
    expect((await tenant("/secure/x")).status).toBe(403);
  });

  it("does not apply to other namespaces, whose requests keep the header as sent", async () => {
    const junk = "not.a.token";
    const got = await received(app, async () => expect((await get("/", { "x-tenant-token": junk })).status).toBe(200));
    expect(got.headers["x-tenant-token"]).toBe(junk);
  });

  it("works together with the gateway-wide rules, which apply everywhere", async () => {
    expect((await tenant("/secure/y", bearer(await idpA.sign()))).status).toBe(200);
  });
});

describe("the JWKS cache", () => {
  it("fetches keys once per isolate, not per request", async () => {
    const token = await idpA.sign();
    await get("/", bearer(token));
    const fetches = idpA.jwksFetches();
    for (let i = 0; i < 5; i++) expect((await get("/", bearer(await idpA.sign({ n: i })))).status).toBe(200);
    expect(idpA.jwksFetches()).toBe(fetches);
  });

  it("refetches once for an unknown kid (key rotation), then not again within the cooldown", async () => {
    await new Promise((r) => setTimeout(r, 2_100));
    const rotated = await idpA.addKey("ES256", "rotated");
    const fetches = idpA.jwksFetches();
    expect((await get("/", bearer(await idpA.sign({}, { key: rotated })))).status).toBe(200);
    expect(idpA.jwksFetches()).toBe(fetches + 1);
    const unpublished = await idpA.addKey("RS256", "unpublished");
    idpA.unpublish("unpublished");
    const res = await get("/", bearer(await idpA.sign({}, { key: unpublished })));
    expect(res.status).toBe(401);
    expect(res.body).toBe("Jwks doesn't have key to match kid or alg from Jwt");
    expect(idpA.jwksFetches()).toBe(fetches + 1);
  });
});
