/**
 * CUSTOM AuthorizationPolicies with a real HTTP external authorizer (a
 * Node server) declared as a GatewayConfig envoyExtAuthzHttp provider:
 * what the authorizer is sent, how its allow/deny/error answers reach the
 * client and the origin, timeouts and fail modes, the body option, and
 * the order CUSTOM → DENY → ALLOW, and Istio's oauth2-proxy recipe
 * (Authorization in headersToUpstreamOnAllow, `%REQ()%` operators, a login
 * redirect with several cookies).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAuthorizer, type Authorizer } from "../helpers/ext-authz.ts";
import { freePort, startGateway, type Gateway } from "../helpers/gateway.ts";
import { startIdp, type Idp } from "../helpers/idp.ts";
import { send, type Send } from "../helpers/http.ts";
import { startOrigin, type Origin } from "../helpers/origin.ts";
import { requestAuthentication, routedService, serviceEntry } from "../helpers/istio-yaml.ts";

let gw: Gateway;
let app: Origin;
let authz: Authorizer;
let idp: Idp;
let closedPort: number;

/** `<ns>.authz.test` routed to the origin through `svc.<ns>.internal`, with these policies. */
const site = (ns: string, policies: string) =>
  [routedService({ hosts: `${ns}.authz.test`, name: "svc", namespace: ns, virtualServiceName: "vs", endpoints: [app.port] }), policies].join("\n---\n");

const custom = (ns: string, provider: string, rules = "[{}]") => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: ${ns}}
spec:
  action: CUSTOM
  provider: {name: ${provider}}
  rules: ${rules}`;

const config = () =>
  [
    `apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus, namespace: istio-system}
spec:
  extensionProviders:
  - name: checker
    envoyExtAuthzHttp:
      service: authz.auth.internal
      port: 9000
      pathPrefix: /check
      timeout: 1s
      includeRequestHeadersInCheck: [authorization, "x-user-*", "*-session"]
      includeAdditionalHeadersInCheck: {x-gateway: isthmus}
      headersToUpstreamOnAllow: [x-auth-user, "x-auth-group-*"]
      headersToDownstreamOnAllow: [x-auth-trace]
      headersToDownstreamOnDeny: [x-deny-reason]
  - name: open
    envoyExtAuthzHttp: {service: authz.auth.internal, port: 9000, timeout: 1s, failOpen: true}
  - name: unavailable
    envoyExtAuthzHttp: {service: down.auth.internal, port: 9000, timeout: 1s, statusOnError: "503"}
  - name: body
    envoyExtAuthzHttp:
      service: authz.auth.internal
      port: 9000
      includeRequestBodyInCheck: {maxRequestBytes: 16}
  - name: oauth2-proxy
    envoyExtAuthzHttp:
      service: authz.auth.internal
      port: 9000
      timeout: 1s
      includeRequestHeadersInCheck: [cookie]
      includeAdditionalHeadersInCheck: {X-Auth-Request-Redirect: "https://%REQ(:authority)%%REQ(:path)%"}
      headersToUpstreamOnAllow: [authorization, path, x-auth-request-user]
      headersToDownstreamOnDeny: [content-type, set-cookie]`,
    serviceEntry({ name: "authz", namespace: "auth", port: { number: 9000 }, endpoints: [authz.port] }),
    serviceEntry({ name: "down", namespace: "auth", port: { number: 9000 }, endpoints: [closedPort] }),
    requestAuthentication(idp),
    site(
      "custom",
      `${custom("custom", "checker", `\n  - to: [{operation: {paths: ["/protected/*"]}}]`)}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: custom}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/protected/denied"]}}]`,
    ),
    site("open", custom("open", "open")),
    site("unavailable", custom("unavailable", "unavailable")),
    site("body", custom("body", "body")),
    site("oauth", custom("oauth", "oauth2-proxy", `\n  - to: [{operation: {notPaths: ["/public/*"]}}]`)),
  ].join("\n---\n");

beforeAll(async () => {
  [app, authz, idp] = await Promise.all([startOrigin("app"), startAuthorizer(), startIdp()]);
  closedPort = await freePort();
  gw = await startGateway(config());
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([app, authz, idp].map((s) => s?.close()));
});

async function call(ns: string, path: string, options: Send = {}) {
  const checks = authz.checks.length;
  const reached = app.received.length;
  const res = await send(gw.url, path, { host: `${ns}.authz.test`, ...options });
  return {
    res,
    check: authz.checks.length > checks ? authz.checks[checks] : undefined,
    upstream: app.received.length > reached ? app.received[reached] : undefined,
  };
}

describe("a CUSTOM policy", () => {
  it("does not ask the authorizer about requests its rules do not match", async () => {
    authz.decide(() => ({ status: 403 }));
    const { res, check } = await call("custom", "/open");
    expect(res.status).toBe(200);
    expect(check).toBeUndefined();
  });

  it("sends the configured parts of the request and forwards an allowed one with the authorizer's headers", async () => {
    authz.decide(() => ({ status: 200, headers: { "x-auth-user": "alice", "x-auth-group-main": "ops", "x-auth-trace": "t-1", "x-other": "no" } }));
    const { res, check, upstream } = await call("custom", "/protected/x?q=1", {
      method: "POST",
      body: "payload",
      headers: { "x-user-id": "42", "my-session": "s", "x-unrelated": "u", "x-auth-user": "mallory", "x-auth-group-admin": "yes" },
    });
    expect(res.status).toBe(200);
    expect(res.headers["x-auth-trace"]).toBe("t-1");
    expect(check?.method).toBe("POST");
    expect(check?.url).toBe("/check/protected/x?q=1");
    expect(check?.headers["x-user-id"]).toBe("42");
    expect(check?.headers["my-session"]).toBe("s");
    expect(check?.headers["x-unrelated"]).toBeUndefined();
    expect(check?.headers["x-gateway"]).toBe("isthmus");
    expect(check?.headers["x-forwarded-host"]).toBe("custom.authz.test");
    expect(check?.body).toBe("");
    expect(upstream?.body).toBe("payload");
    expect(upstream?.headers["x-auth-user"]).toBe("alice");
    expect(upstream?.headers["x-auth-group-main"]).toBe("ops");
    expect(upstream?.headers["x-auth-group-admin"]).toBeUndefined();
    expect(upstream?.headers["x-other"]).toBeUndefined();
  });

  it("on a request it allows, never lets a client set the headers the authorizer vouches for; unchecked requests are untouched", async () => {
    authz.decide(() => ({ status: 200 }));
    const spoof = { "x-auth-user": "mallory", "x-auth-group-admin": "yes" };
    const checked = await call("custom", "/protected/x", { headers: spoof });
    expect(checked.upstream?.headers["x-auth-user"]).toBeUndefined();
    expect(checked.upstream?.headers["x-auth-group-admin"]).toBeUndefined();
    // As Envoy: a request no CUSTOM policy checks goes upstream as the client sent it.
    const unchecked = await call("custom", "/not-checked", { headers: spoof });
    expect(unchecked.check).toBeUndefined();
    expect(unchecked.upstream?.headers["x-auth-user"]).toBe("mallory");
  });

  it("allows only on 200: any other status, a 204 too, is a denial with that status", async () => {
    authz.decide(() => ({ status: 204 }));
    const { res, upstream } = await call("custom", "/protected/x");
    expect(res.status).toBe(204);
    expect(upstream).toBeUndefined();
  });

  it("passes a denial's status, body and selected headers to the client, and never calls the origin", async () => {
    authz.decide(() => ({ status: 403, body: "nope", headers: { "x-deny-reason": "quota", "x-internal": "secret" } }));
    const { res, upstream } = await call("custom", "/protected/x");
    expect(res.status).toBe(403);
    expect(res.body).toBe("nope");
    expect(res.headers["x-deny-reason"]).toBe("quota");
    expect(res.headers["x-internal"]).toBeUndefined();
    expect(upstream).toBeUndefined();
  });

  it("passes WWW-Authenticate and Location of a denial even when not listed", async () => {
    authz.decide(() => ({ status: 401, body: "login", headers: { "www-authenticate": 'Bearer realm="x"' } }));
    const unauthorized = (await call("custom", "/protected/x")).res;
    expect(unauthorized.status).toBe(401);
    expect(unauthorized.headers["www-authenticate"]).toBe('Bearer realm="x"');
    authz.decide(() => ({ status: 302, headers: { location: "https://login.example/" } }));
    const redirect = (await call("custom", "/protected/x")).res;
    expect(redirect.status).toBe(302);
    expect(redirect.headers.location).toBe("https://login.example/");
  });

  it("runs before DENY policies, which still apply to what it allows", async () => {
    authz.decide(() => ({ status: 200 }));
    const allowed = await call("custom", "/protected/denied");
    expect(allowed.check).toBeDefined();
    expect(allowed.res.status).toBe(403);
    expect(allowed.res.body).toBe("RBAC: access denied");
    authz.decide(() => ({ status: 401, body: "who are you" }));
    const denied = await call("custom", "/protected/denied");
    expect(denied.res.status).toBe(401);
    expect(denied.res.body).toBe("who are you");
  });

  it("sends the authorizer the bearer token a RequestAuthentication verified (and removed), as Envoy's ext_authz sees it", async () => {
    authz.decide(() => ({ status: 200 }));
    const token = await idp.sign();
    const { res, check, upstream } = await call("custom", "/protected/x", { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(check?.headers.authorization).toBe(`Bearer ${token}`);
    // Upstream, the verified token is gone (forwardOriginalToken is not set).
    expect(upstream?.headers.authorization).toBeUndefined();
  });

  it("runs after request authentication: an invalid token is refused without asking the authorizer", async () => {
    authz.decide(() => ({ status: 200 }));
    const bad = `${(await idp.sign()).slice(0, -6)}AAAAAA`;
    const { res, check } = await call("custom", "/protected/x", { headers: { authorization: `Bearer ${bad}` } });
    expect(res.status).toBe(401);
    expect(check).toBeUndefined();
  });
});

describe("the oauth2-proxy recipe", () => {
  it("leaves the client's Authorization to JWT authentication and the check, and the authorizer's replaces it upstream", async () => {
    const bad = `${(await idp.sign()).slice(0, -6)}AAAAAA`;
    authz.decide(() => ({ status: 200 }));
    // The gateway-wide RequestAuthentication sees the token (it was stripped at ingress, so a bad one passed as anonymous).
    const refused = await call("oauth", "/app", { headers: { authorization: `Bearer ${bad}` } });
    expect(refused.res.status).toBe(401);
    expect(refused.check).toBeUndefined();
    const opaque = await call("oauth", "/public/x", { headers: { authorization: "Basic dTpw" } });
    expect(opaque.upstream?.headers.authorization).toBe("Basic dTpw");
    authz.decide(() => ({ status: 200, headers: { authorization: "Bearer minted", "x-auth-request-user": "alice" } }));
    const allowed = await call("oauth", "/app", { headers: { authorization: "Basic dTpw", cookie: "_oauth2_proxy=abc" } });
    expect(allowed.check?.headers.authorization).toBe("Basic dTpw");
    expect(allowed.check?.headers.cookie).toBe("_oauth2_proxy=abc");
    expect(allowed.upstream?.headers.authorization).toBe("Bearer minted");
    expect(allowed.upstream?.headers["x-auth-request-user"]).toBe("alice");
  });

  it("sends the URL the client asked for in X-Auth-Request-Redirect", async () => {
    authz.decide(() => ({ status: 200 }));
    const { check } = await call("oauth", "/app/page?x=1&y=%20");
    expect(check?.headers["x-auth-request-redirect"]).toBe("https://oauth.authz.test/app/page?x=1&y=%20");
  });

  it("passes the login redirect with all its cookies and the authorizer's Content-Type", async () => {
    authz.decide(() => ({
      status: 302,
      body: "<a href=\"https://login.example/\">Found</a>",
      headers: { location: "https://login.example/", "content-type": "text/html; charset=utf-8", "set-cookie": ["csrf=1; Path=/", "csrf2=2; Path=/"] },
    }));
    const { res, upstream } = await call("oauth", "/app");
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe("https://login.example/");
    expect(res.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(res.headers["set-cookie"]).toBe("csrf=1; Path=/, csrf2=2; Path=/");
    expect(upstream).toBeUndefined();
    authz.decide(() => ({ status: 401, body: '{"error":"denied"}', headers: { "content-type": "application/json" } }));
    const json = (await call("oauth", "/app")).res;
    expect([json.status, json.headers["content-type"], json.body]).toEqual([401, "application/json", '{"error":"denied"}']);
  });
});

describe("authorizer failures", () => {
  it("a 5xx answer is an error: statusOnError (403 by default), empty body", async () => {
    authz.decide(() => ({ status: 500, body: "boom" }));
    const { res, upstream } = await call("custom", "/protected/x");
    expect(res.status).toBe(403);
    expect(res.body).toBe("");
    expect(upstream).toBeUndefined();
  });

  it("a timeout is an error; failOpen lets the request through", async () => {
    authz.decide(() => ({ status: 200, delayMs: 2_500 }));
    const closed = await call("custom", "/protected/x");
    expect(closed.res.status).toBe(403);
    expect(closed.upstream).toBeUndefined();
    const open = await call("open", "/anything");
    expect(open.res.status).toBe(200);
    expect(open.upstream).toBeDefined();
    authz.decide(() => ({ status: 200 }));
  });

  it("an unreachable authorizer answers statusOnError", async () => {
    const { res, upstream } = await call("unavailable", "/x");
    expect(res.status).toBe(503);
    expect(upstream).toBeUndefined();
  });
});

describe("includeRequestBodyInCheck", () => {
  it("sends the body to the authorizer and still forwards it whole", async () => {
    authz.decide(() => ({ status: 200 }));
    const { res, check, upstream } = await call("body", "/upload", { method: "POST", body: "hello" });
    expect(res.status).toBe(200);
    expect(check?.body).toBe("hello");
    expect(upstream?.body).toBe("hello");
  });

  it("checks a GET that carries a body without it, instead of failing with a 500 (no fetch can send a GET body)", async () => {
    authz.decide(() => ({ status: 200 }));
    const allowed = await call("body", "/upload", { method: "GET", body: "hello", headers: { "content-length": "5" } });
    expect(allowed.res.status).toBe(200);
    expect(allowed.check?.method).toBe("GET");
    expect(allowed.check?.body).toBe("");
    expect(allowed.upstream?.method).toBe("GET");
    authz.decide(() => ({ status: 403 }));
    const denied = await call("body", "/upload", { method: "GET", body: "hello", headers: { "content-length": "5" } });
    expect(denied.res.status).toBe(403);
    expect(denied.upstream).toBeUndefined();
    authz.decide(() => ({ status: 200 }));
  });

  it("answers 413 for a body over maxRequestBytes when partial messages are not allowed", async () => {
    const { res, check, upstream } = await call("body", "/upload", { method: "POST", body: "x".repeat(100) });
    expect(res.status).toBe(413);
    expect(check).toBeUndefined();
    expect(upstream).toBeUndefined();
  });
});
