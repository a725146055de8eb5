/**
 * Authorization that cannot be bypassed, end to end:
 *
 * - the bypass corpus (CVE-2021-31920, CVE-2021-39156, CVE-2021-39155 and
 *   friends) against a policy that denies /admin and one that allows only
 *   /public/*: every encoding, dot segment, fragment, slash and host
 *   variant is denied, and whatever is allowed reaches the origin with
 *   exactly the path that was authorized;
 * - ports: AuthorizationPolicy `ports`, `notPorts` and `destination.port`
 *   see the listener's port, never one the client writes in its Host header;
 * - which policies apply: gateway-wide policies (root namespace, or a
 *   selector matching the gateway) and the destination's policies must
 *   both allow; gateway policies also cover direct responses and
 *   passthrough traffic; selector policies follow endpoint labels.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type Gateway } from "../helpers/gateway.ts";
import { startIdp, type Idp } from "../helpers/idp.ts";
import { send, sendRaw } from "../helpers/http.ts";
import { startOrigin, type Origin } from "../helpers/origin.ts";
import { requestAuthentication, routedService, serviceEntry } from "../helpers/istio-yaml.ts";

let gw: Gateway;
let app: Origin;
let idp: Idp;

const config = () =>
  [
    `apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus, namespace: istio-system}
spec:
  outboundTrafficPolicy: {mode: ALLOW_ANY}`,
    requestAuthentication(idp),
    // The bypass corpus targets.
    routedService({ hosts: "deny.bypass.test", name: "svc", namespace: "deny-admin", virtualServiceName: "deny", endpoints: [app.port] }),
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: deny-admin}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin", "/admin/*"]}}]`,
    routedService({ hosts: "public.bypass.test", name: "svc", namespace: "public-only", virtualServiceName: "public", endpoints: [app.port] }),
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: public-only, namespace: public-only}
spec:
  rules:
  - to: [{operation: {paths: ["/public/*"]}}]`,
    // Ports: the listener's (80 here, plain HTTP), which a Host header's port must not stand in for.
    routedService({ hosts: "ports.bypass.test", name: "svc", namespace: "https-only", virtualServiceName: "ports", endpoints: [app.port] }),
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: https-only, namespace: https-only}
spec:
  rules:
  - to: [{operation: {ports: ["443"]}}]
  - when: [{key: "destination.port", values: ["443"]}]`,
    routedService({ hosts: "notports.bypass.test", name: "svc", namespace: "secure-https", virtualServiceName: "notports", endpoints: [app.port] }),
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: secure-only-on-https, namespace: secure-https}
spec:
  action: DENY
  rules:
  - to: [{operation: {notPorts: ["443"], paths: ["/secure/*"]}}]`,
    // Layers: a root-namespace ALLOW for layers.test, a gateway-selected DENY, a namespace ALLOW.
    serviceEntry({ name: "svc", namespace: "layers", endpoints: [app.port] }),
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: layers, namespace: layers}
spec:
  hosts: [layers.test]
  http:
  - match: [{uri: {exact: /public/direct}}]
    directResponse: {status: 200, body: {string: "answered by the gateway"}}
  - route: [{destination: {host: svc.layers.internal}}]`,
    // Selects the gateway: evaluated for every request, in the gateway's layer only.
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gateway-allow, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules:
  - to: [{operation: {hosts: ["layers.test"], paths: ["/public/*"]}}]
  - to: [{operation: {notHosts: ["layers.test"]}}]`,
    // Root namespace, no selector: every request, at the gateway and at every destination.
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-wide-deny, namespace: istio-system}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/root-denied"]}}]`,
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: on-the-gateway, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules:
  - when: [{key: "request.headers[x-block]", values: ["*"]}]`,
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: need-jwt, namespace: layers}
spec:
  rules:
  - from: [{source: {requestPrincipals: ["*"]}}]`,
    // Selector scoping: the policy applies only to the service whose endpoints carry app=b.
    serviceEntry({ name: "a", namespace: "labels", endpoints: [{ port: app.port, labels: { app: "a" } }] }),
    serviceEntry({ name: "b", namespace: "labels", endpoints: [{ port: app.port, labels: { app: "b" } }] }),
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: labels, namespace: labels}
spec:
  hosts: [labels.test]
  http:
  - match: [{uri: {prefix: /a/}}]
    route: [{destination: {host: a.labels.internal}}]
  - route: [{destination: {host: b.labels.internal}}]`,
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-b, namespace: labels}
spec:
  selector: {matchLabels: {app: b}}
  rules:
  - to: [{operation: {paths: ["/b/ok"]}}]`,
  ].join("\n---\n");

beforeAll(async () => {
  [app, idp] = await Promise.all([startOrigin("app"), startIdp()]);
  gw = await startGateway(config());
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([app, idp].map((s) => s?.close()));
});

/** Sends a raw request line; returns the status and what the origin received (undefined when it was not called). */
async function raw(target: string, host: string): Promise<{ status: number; upstream?: string }> {
  const before = app.received.length;
  const out = await sendRaw(gw.url, `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(out)?.[1] ?? 0);
  const got = app.received.slice(before);
  expect(got.length).toBeLessThanOrEqual(1);
  return got[0] ? { status, upstream: got[0].url } : { status };
}

const ADMIN_VARIANTS = [
  "/admin",
  "//admin",
  "///admin",
  "/%2Fadmin",
  "/%2fadmin",
  "/./admin",
  "/a/../admin",
  "/public/../admin",
  "/public/%2e%2e/admin",
  "/public%2F..%2Fadmin",
  "/%5Cadmin",
  "/%5cadmin",
  "/public%5C..%5Cadmin",
  "/%61dmin",
  "/admin#x",
  "/admin?x=1",
  "/admin/",
  "/admin/users",
  "/admin//users",
  "/./admin/./users",
];

describe("a policy that denies /admin", () => {
  for (const target of ADMIN_VARIANTS) {
    it(`denies ${target}`, async () => {
      const r = await raw(target, "deny.bypass.test");
      expect(r.status).toBe(403);
      expect(r.upstream).toBeUndefined();
    });
  }

  it("denies an encoded NUL outright (400)", async () => {
    expect((await raw("/admin%00", "deny.bypass.test")).status).toBe(400);
  });

  for (const host of ["DENY.bypass.test", "Deny.Bypass.Test", "deny.bypass.test.", "deny.bypass.test:80", "deny.bypass.test:8080", "DENY.BYPASS.TEST.:8080"]) {
    it(`denies /admin for Host ${host}`, async () => {
      const r = await raw("/admin", host);
      expect(r.status).toBe(403);
      expect(r.upstream).toBeUndefined();
    });
  }

  it("denies /admin sent as an absolute-form request target", async () => {
    expect((await raw("http://deny.bypass.test/admin", "deny.bypass.test")).status).toBe(403);
  });

  it("forwards exactly the path it authorized: case is preserved and nothing is decoded twice", async () => {
    expect(await raw("/ADMIN", "deny.bypass.test")).toEqual({ status: 200, upstream: "/ADMIN" });
    expect(await raw("/%252Fadmin", "deny.bypass.test")).toEqual({ status: 200, upstream: "/%252Fadmin" });
    expect(await raw("/administrator", "deny.bypass.test")).toEqual({ status: 200, upstream: "/administrator" });
  });
});

describe("a policy that allows only /public/*", () => {
  for (const target of [...ADMIN_VARIANTS, "/ADMIN", "/Admin", "/PUBLIC/x", "/publicx", "/public", "/public%2F..%2F..%2Fadmin", "/%252Fpublic/x"]) {
    it(`denies ${target}`, async () => {
      const r = await raw(target, "public.bypass.test");
      expect(r.status).toBe(403);
      expect(r.upstream).toBeUndefined();
    });
  }

  it("allows /public/* and forwards the normalized path it authorized", async () => {
    expect(await raw("/public/ok", "public.bypass.test")).toEqual({ status: 200, upstream: "/public/ok" });
    expect(await raw("/public/./a//b/../c?q=1", "PUBLIC.bypass.test.")).toEqual({ status: 200, upstream: "/public/a/c?q=1" });
  });
});

describe("ports a client cannot choose", () => {
  it("matches ports and destination.port against the listener (80 on plain HTTP), so Host: …:443 does not pass an ALLOW for 443", async () => {
    for (const host of ["ports.bypass.test", "ports.bypass.test:443", "PORTS.bypass.test.:443"]) {
      expect(await raw("/x", host), host).toEqual({ status: 403 });
    }
  });

  it("does not let Host: …:443 escape a DENY notPorts: [\"443\"] on plain HTTP", async () => {
    for (const host of ["notports.bypass.test", "notports.bypass.test:443"]) {
      expect(await raw("/secure/x", host), host).toEqual({ status: 403 });
    }
    expect(await raw("/open", "notports.bypass.test:443")).toEqual({ status: 200, upstream: "/open" });
  });
});

describe("which policies apply", () => {
  const call = async (path: string, headers: Record<string, string> = {}, host = "layers.test") => {
    const before = app.received.length;
    const res = await send(gw.url, path, { host, headers });
    return { status: res.status, body: res.body, reached: app.received.length > before };
  };

  it("a request must pass both the gateway-wide policies and its destination's", async () => {
    const token = { authorization: `Bearer ${await idp.sign()}` };
    expect(await call("/public/x", token)).toMatchObject({ status: 200, reached: true });
    expect(await call("/private", token)).toMatchObject({ status: 403, reached: false });
    expect(await call("/public/x")).toMatchObject({ status: 403, reached: false });
  });

  it("a root-namespace policy without selector applies to all traffic", async () => {
    expect(await call("/root-denied", {}, "deny.bypass.test")).toMatchObject({ status: 403, reached: false });
    expect(await call("/root-denied", {}, "labels.test")).toMatchObject({ status: 403, reached: false });
    expect(await call("/root-denied", {}, `127.0.0.1:${app.port}`)).toMatchObject({ status: 403, reached: false });
  });

  it("a policy whose selector matches the gateway's labels applies to all traffic", async () => {
    const token = { authorization: `Bearer ${await idp.sign()}` };
    expect(await call("/public/x", { ...token, "x-block": "1" })).toMatchObject({ status: 403, reached: false });
    expect(await call("/public/ok", { "x-block": "1" }, "public.bypass.test")).toMatchObject({ status: 403, reached: false });
    expect(await call("/public/ok", {}, "public.bypass.test")).toMatchObject({ status: 200, reached: true });
  });

  it("gateway-wide policies also cover direct responses", async () => {
    expect(await call("/public/direct")).toMatchObject({ status: 200, body: "answered by the gateway" });
    expect(await call("/public/direct", { "x-block": "yes" })).toMatchObject({ status: 403 });
  });

  it("gateway-wide policies also cover passthrough (ALLOW_ANY) traffic", async () => {
    const host = `127.0.0.1:${app.port}`;
    expect(await call("/anything", {}, host)).toMatchObject({ status: 200, reached: true });
    expect(await call("/anything", { "x-block": "1" }, host)).toMatchObject({ status: 403, reached: false });
  });

  it("refuses a passthrough that comes back to the gateway itself (508) instead of calling itself until its connections run out", async () => {
    const self = new URL(gw.url).host;
    const started = Date.now();
    // identity: the runtime would otherwise compress the inner hop's reply for the outer hop's fetch, and this client does not decode.
    const res = await send(gw.url, "/loop", { host: self, headers: { "accept-encoding": "identity" } });
    expect([res.status, res.body]).toEqual([508, "request loop detected"]);
    expect(Date.now() - started).toBeLessThan(5_000);
    // A chain through other gateways is not a loop: their marks travel on with this gateway's appended.
    const before = app.received.length;
    expect(await call("/anything", { "x-isthmus-via": "another-gateway" }, `127.0.0.1:${app.port}`)).toMatchObject({ status: 200, reached: true });
    expect(app.received[before]?.headers["x-isthmus-via"]).toMatch(/^another-gateway, [0-9a-f-]{36}$/);
  });

  it("a selector policy applies only to destinations whose endpoint labels match", async () => {
    expect(await call("/a/anything", {}, "labels.test")).toMatchObject({ status: 200, reached: true });
    expect(await call("/b/ok", {}, "labels.test")).toMatchObject({ status: 200, reached: true });
    expect(await call("/b/other", {}, "labels.test")).toMatchObject({ status: 403, reached: false });
  });
});
