/**
 * AuthorizationPolicy, one field or Istio rule at a time, end to end.
 * Each case lives in its own namespace: a ServiceEntry there, a host
 * routed to it, and the policies of that namespace (which, by the edge
 * mapping, apply to traffic routed to services of that namespace). The
 * origin is a real Node server; a denied request must never reach it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type Gateway } from "../helpers/gateway.ts";
import { startIdp, type Idp, type SignOptions } from "../helpers/idp.ts";
import { send, type Send } from "../helpers/http.ts";
import { startOrigin, type Origin } from "../helpers/origin.ts";
import { requestAuthentication, routedService, virtualService } from "../helpers/istio-yaml.ts";

let gw: Gateway;
let app: Origin;
let idp: Idp;

/** One namespace per case: `<ns>.authz.test` → `svc.<ns>.internal`, with these policies. */
const CASES: Record<string, (iss: string) => string> = {
  methods: () => allow(`- to: [{operation: {methods: ["GET", "HEAD"]}}]`),
  lowermethods: () => allow(`- to: [{operation: {methods: ["get", "POST"]}}]`),
  notmethods: () => deny(`- to: [{operation: {notMethods: ["GET"]}}]`),
  paths: () => allow(`- to: [{operation: {paths: ["/exact", "/prefix/*", "*.json", "/items/{*}/edit", "/files/{**}"]}}]`),
  notpaths: () => allow(`- to: [{operation: {notPaths: ["/admin*"]}}]`),
  hosts: () => allow(`- to: [{operation: {hosts: ["hosts.authz.test", "hosts.authz.test:81"]}}]`),
  nothosts: () => deny(`- to: [{operation: {notHosts: ["nothosts.authz.test"]}}]`),
  ports: () => allow(`- to: [{operation: {ports: ["80"]}}]`),
  notports: () => deny(`- to: [{operation: {notPorts: ["80"]}}]`),
  requestprincipals: (iss) => allow(`- from: [{source: {requestPrincipals: ["${iss}/alice"]}}]`),
  rpforms: (iss) => allow(`- from: [{source: {requestPrincipals: ["*/carol", "${iss}/adm*"]}}]`),
  rpany: () => allow(`- from: [{source: {requestPrincipals: ["*"]}}]`),
  notrequestprincipals: (iss) => allow(`- from: [{source: {notRequestPrincipals: ["${iss}/mallory"]}}]`),
  ipblocks: () => allow(`- from: [{source: {ipBlocks: ["127.0.0.1", "10.0.0.0/8"]}}]`),
  notipblocks: () => deny(`- from: [{source: {notIpBlocks: ["10.0.0.0/8"]}}]`),
  remoteipblocks: () => allow(`- from: [{source: {remoteIpBlocks: ["127.0.0.0/8"]}}]`),
  notremoteipblocks: () => deny(`- from: [{source: {notRemoteIpBlocks: ["127.0.0.0/8"]}}]`),
  headers: () => allow(`- when: [{key: "request.headers[X-Tenant]", values: ["acme", "beta*"]}]`),
  notvalues: () => allow(`- when: [{key: "request.auth.claims[group]", notValues: ["banned"]}]`),
  claims: () => allow(`- when: [{key: "request.auth.claims[realm][roles]", values: ["editor"]}]`),
  scopes: () => allow(`- when: [{key: "request.auth.claims[scope]", values: ["write"]}]`),
  audiences: () => allow(`- when: [{key: "request.auth.audiences", values: ["api://orders"]}]`),
  presenter: () => allow(`- when: [{key: "request.auth.presenter", values: ["web-*"]}]`),
  authprincipal: (iss) => allow(`- when: [{key: "request.auth.principal", values: ["${iss}/alice"]}]`),
  sourceip: () => allow(`- when: [{key: "source.ip", values: ["127.0.0.1"]}, {key: "remote.ip", notValues: ["10.0.0.0/8"]}]`),
  destport: () => allow(`- when: [{key: "destination.port", values: ["80"]}]`),
  sni: () => allow(`- when: [{key: "connection.sni", values: ["*"]}]`),
  denyall: () => `spec: {}`,
  allowall: () => `${allow("- {}")}\n---\n${policy("ruleless-deny", "spec: {action: DENY}")}`,
  nopolicyallow: () => deny(`- to: [{operation: {paths: ["/blocked"]}}]`),
  denywins: () => `${allow("- {}")}\n---\n${policy("deny", `spec:\n  action: DENY\n  rules:\n  - to: [{operation: {paths: ["/secret"]}}]`)}`,
  dryrun: () =>
    `${policy("dry-deny", `spec:\n  action: DENY\n  rules: [{}]`, true)}\n---\n${policy("dry-allow", `spec:\n  action: ALLOW\n  rules:\n  - to: [{operation: {paths: ["/only"]}}]`, true)}`,
  audit: () => `spec:\n  action: AUDIT\n  rules: [{}]`,
};

function allow(rules: string): string {
  return `spec:\n  action: ALLOW\n  rules:\n${indent(rules)}`;
}
function deny(rules: string): string {
  return `spec:\n  action: DENY\n  rules:\n${indent(rules)}`;
}
function indent(text: string): string {
  return text
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n");
}
/** A whole AuthorizationPolicy document; `{{ns}}` is filled in per case. */
function policy(name: string, body: string, dryRun = false): string {
  return `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: ${name}\n  namespace: "{{ns}}"${dryRun ? `\n  annotations: {"istio.io/dry-run": "true"}` : ""}\n${body}`;
}

function config(): string {
  const docs: string[] = [
    requestAuthentication(idp),
  ];
  for (const [ns, make] of Object.entries(CASES)) {
    let body = make(idp.issuer);
    if (!body.startsWith("apiVersion")) body = policy("policy", body);
    docs.push(body.replaceAll("{{ns}}", ns));
    const hosts = ns === "nothosts" ? [`${ns}.authz.test`, "alias-nothosts.authz.test"] : `${ns}.authz.test`;
    docs.push(routedService({ hosts, name: "svc", namespace: ns, virtualServiceName: "vs", endpoints: [app.port] }));
  }
  // A VirtualService in another namespace routing to a service of "denyall": the service's namespace decides.
  docs.push(virtualService({ name: "cross", namespace: "frontends", hosts: "cross.authz.test", destination: "svc.denyall.internal" }));
  return docs.join("\n---\n");
}

beforeAll(async () => {
  [app, idp] = await Promise.all([startOrigin("app"), startIdp()]);
  gw = await startGateway(config());
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([app, idp].map((s) => s?.close()));
});

interface Call extends Send {
  token?: SignOptions & { claims?: Record<string, unknown> };
}

/** Sends to `<ns>.authz.test` and returns the status; a refusal must be RBAC's and must not reach the origin. */
async function status(ns: string, path = "/", call: Call = {}): Promise<number> {
  const headers = { ...call.headers };
  if (call.token) headers.authorization = `Bearer ${await idp.sign(call.token.claims ?? {}, call.token)}`;
  const before = app.received.length;
  const res = await send(gw.url, path, { host: call.host ?? `${ns}.authz.test`, method: call.method ?? "GET", headers });
  if (res.status === 403) {
    expect(res.body).toBe("RBAC: access denied");
    expect(app.received.length).toBe(before);
  } else {
    expect(res.status, res.body).toBe(200);
  }
  return res.status;
}

describe("to.operation", () => {
  it("methods: exact, case-sensitive list", async () => {
    expect(await status("methods", "/", { method: "GET" })).toBe(200);
    expect(await status("methods", "/", { method: "POST" })).toBe(403);
    expect(await status("methods", "/", { method: "PATCH" })).toBe(403);
  });

  it("methods: a lower-case value never matches the upper-case method (§7.20)", async () => {
    expect(await status("lowermethods", "/", { method: "GET" })).toBe(403);
    expect(await status("lowermethods", "/", { method: "POST" })).toBe(200);
  });

  it("notMethods", async () => {
    expect(await status("notmethods", "/", { method: "GET" })).toBe(200);
    expect(await status("notmethods", "/", { method: "DELETE" })).toBe(403);
  });

  it("paths: exact, prefix*, *suffix, {*} one segment, {**} the rest; the query is ignored", async () => {
    expect(await status("paths", "/exact")).toBe(200);
    expect(await status("paths", "/exact?x=1")).toBe(200);
    expect(await status("paths", "/exact/")).toBe(403);
    expect(await status("paths", "/prefix/a/b")).toBe(200);
    expect(await status("paths", "/prefixed")).toBe(403);
    expect(await status("paths", "/any/where/data.json")).toBe(200);
    expect(await status("paths", "/items/42/edit")).toBe(200);
    expect(await status("paths", "/items/42/43/edit")).toBe(403);
    expect(await status("paths", "/items//edit")).toBe(403);
    expect(await status("paths", "/files/")).toBe(200);
    expect(await status("paths", "/files/a/b/c.txt")).toBe(200);
    expect(await status("paths", "/file")).toBe(403);
  });

  it("notPaths", async () => {
    expect(await status("notpaths", "/public")).toBe(200);
    expect(await status("notpaths", "/admin")).toBe(403);
    expect(await status("notpaths", "/administrator")).toBe(403);
  });

  it("hosts: case-insensitive, and a port must be listed to match a Host that carries one", async () => {
    expect(await status("hosts", "/", { host: "hosts.authz.test" })).toBe(200);
    expect(await status("hosts", "/", { host: "HOSTS.Authz.TEST" })).toBe(200);
    expect(await status("hosts", "/", { host: "hosts.authz.test:81" })).toBe(200);
    expect(await status("hosts", "/", { host: "hosts.authz.test:8080" })).toBe(403);
  });

  it("notHosts", async () => {
    expect(await status("nothosts", "/", { host: "nothosts.authz.test" })).toBe(200);
    expect(await status("nothosts", "/", { host: "alias-nothosts.authz.test" })).toBe(403);
  });

  it("ports: the listener's port (80 on plain HTTP), not a port in the Host header", async () => {
    expect(await status("ports", "/", { host: "ports.authz.test" })).toBe(200);
    expect(await status("ports", "/", { host: "ports.authz.test:8080" })).toBe(200);
  });

  it("notPorts: the listener's port too (test/e2e/authz-bypass.test.ts denies by port)", async () => {
    expect(await status("notports", "/", { host: "notports.authz.test:80" })).toBe(200);
    expect(await status("notports", "/", { host: "notports.authz.test:8443" })).toBe(200);
  });
});

describe("from.source", () => {
  it("requestPrincipals: <iss>/<sub> of a verified JWT", async () => {
    expect(await status("requestprincipals", "/", { token: { subject: "alice" } })).toBe(200);
    expect(await status("requestprincipals", "/", { token: { subject: "bob" } })).toBe(403);
    expect(await status("requestprincipals")).toBe(403);
  });

  it("requestPrincipals: *suffix and prefix* forms split at the last /", async () => {
    expect(await status("rpforms", "/", { token: { subject: "carol" } })).toBe(200);
    expect(await status("rpforms", "/", { token: { subject: "admin-7" } })).toBe(200);
    expect(await status("rpforms", "/", { token: { subject: "dave" } })).toBe(403);
  });

  it('requestPrincipals: ["*"] needs both iss and sub', async () => {
    expect(await status("rpany", "/", { token: { subject: "x" } })).toBe(200);
    expect(await status("rpany", "/", { token: { subject: null } })).toBe(403);
    expect(await status("rpany")).toBe(403);
  });

  it("notRequestPrincipals admits anonymous requests (a negative match holds when the attribute is absent)", async () => {
    expect(await status("notrequestprincipals")).toBe(200);
    expect(await status("notrequestprincipals", "/", { token: { subject: "alice" } })).toBe(200);
    expect(await status("notrequestprincipals", "/", { token: { subject: "mallory" } })).toBe(403);
  });

  it("ipBlocks / notIpBlocks: the client IP (CF-Connecting-IP)", async () => {
    expect(await status("ipblocks")).toBe(200);
    expect(await status("notipblocks")).toBe(403);
  });

  it("remoteIpBlocks / notRemoteIpBlocks: the same client IP at the edge", async () => {
    expect(await status("remoteipblocks")).toBe(200);
    expect(await status("notremoteipblocks")).toBe(200);
  });
});

describe("when conditions", () => {
  it("request.headers[...]: name case-insensitive, values exact or prefix", async () => {
    expect(await status("headers", "/", { headers: { "x-tenant": "acme" } })).toBe(200);
    expect(await status("headers", "/", { headers: { "x-tenant": "beta-7" } })).toBe(200);
    expect(await status("headers", "/", { headers: { "x-tenant": "gamma" } })).toBe(403);
    expect(await status("headers")).toBe(403);
  });

  it("notValues only: an ALLOW rule admits requests without the attribute", async () => {
    expect(await status("notvalues")).toBe(200);
    expect(await status("notvalues", "/", { token: { claims: { group: "staff" } } })).toBe(200);
    expect(await status("notvalues", "/", { token: { claims: { group: "banned" } } })).toBe(403);
    expect(await status("notvalues", "/", { token: { claims: { group: ["staff", "banned"] } } })).toBe(403);
  });

  it("request.auth.claims[a][b]: nested claims, any element of a list, never numbers", async () => {
    expect(await status("claims", "/", { token: { claims: { realm: { roles: ["viewer", "editor"] } } } })).toBe(200);
    expect(await status("claims", "/", { token: { claims: { realm: { roles: "editor" } } } })).toBe(200);
    expect(await status("claims", "/", { token: { claims: { realm: { roles: ["viewer"] } } } })).toBe(403);
    expect(await status("claims", "/", { token: { claims: { realm: { roles: 7 } } } })).toBe(403);
    expect(await status("claims")).toBe(403);
  });

  it("request.auth.claims[scope]: scope is split on spaces", async () => {
    expect(await status("scopes", "/", { token: { claims: { scope: "read write" } } })).toBe(200);
    expect(await status("scopes", "/", { token: { claims: { scope: "read" } } })).toBe(403);
  });

  it("request.auth.audiences", async () => {
    expect(await status("audiences", "/", { token: { audience: ["api://other", "api://orders"] } })).toBe(200);
    expect(await status("audiences", "/", { token: { audience: "api://other" } })).toBe(403);
  });

  it("request.auth.presenter (azp)", async () => {
    expect(await status("presenter", "/", { token: { claims: { azp: "web-portal" } } })).toBe(200);
    expect(await status("presenter", "/", { token: { claims: { azp: "cli" } } })).toBe(403);
  });

  it("request.auth.principal", async () => {
    expect(await status("authprincipal", "/", { token: { subject: "alice" } })).toBe(200);
    expect(await status("authprincipal", "/", { token: { subject: "eve" } })).toBe(403);
  });

  it("source.ip and remote.ip", async () => {
    expect(await status("sourceip")).toBe(200);
  });

  it("destination.port", async () => {
    expect(await status("destport")).toBe(200);
    // The listener's port, as `ports`: a Host header's port is not compared.
    expect(await status("destport", "/", { host: "destport.authz.test:8080" })).toBe(200);
  });

  it("connection.sni is absent on plain HTTP", async () => {
    expect(await status("sni")).toBe(403);
  });
});

describe("policy shapes and the decision order", () => {
  it("spec: {} denies everything", async () => {
    expect(await status("denyall")).toBe(403);
    expect(await status("denyall", "/anything", { method: "POST" })).toBe(403);
  });

  it("rules: [{}] allows everything, and a DENY policy without rules denies nothing", async () => {
    expect(await status("allowall", "/x")).toBe(200);
  });

  it("with no ALLOW policy, what no DENY matches is allowed", async () => {
    expect(await status("nopolicyallow", "/fine")).toBe(200);
    expect(await status("nopolicyallow", "/blocked")).toBe(403);
  });

  it("DENY is evaluated before ALLOW", async () => {
    expect(await status("denywins", "/public")).toBe(200);
    expect(await status("denywins", "/secret")).toBe(403);
  });

  it("istio.io/dry-run policies are evaluated but never enforced", async () => {
    expect(await status("dryrun", "/anything")).toBe(200);
  });

  it("AUDIT policies only mark requests", async () => {
    expect(await status("audit", "/")).toBe(200);
  });

  it("policies follow the destination service's namespace, not the VirtualService's", async () => {
    expect(await status("cross", "/", { host: "cross.authz.test" })).toBe(403);
  });
});
