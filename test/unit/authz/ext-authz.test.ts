/**
 * CUSTOM policies through the whole pipeline, with the authorizer and the
 * origin behind one injected fetch: which client headers the check and the
 * upstream get, how the authorizer's answer is read (Envoy's ext_authz HTTP
 * service: 200 allows, 5xx is an error, anything else denies) and what
 * reaches the client on a denial.
 */
import { describe, expect, it } from "vitest";
import { toResponse } from "../../../src/gateway/local-reply.ts";
import { runPipeline } from "../../../src/gateway/pipeline.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import type { RuntimeSnapshot } from "../../../src/routing/hydrate.ts";
import { doc, errors, build, pipelineDeps, serviceEntry, snapshotOf, virtualService } from "../support.ts";

interface Answer {
  status: number;
  body?: string;
  headers?: [string, string][];
}

const OAUTH = {
  service: "authz.auth.internal",
  port: 9000,
  includeRequestHeadersInCheck: ["cookie"],
  includeAdditionalHeadersInCheck: {
    "X-Auth-Request-Redirect": "https://%REQ(:authority)%%REQ(:path)%",
    "x-request-line": "%REQ(:METHOD)% %REQ(:scheme)% [%REQ(x-trace)%] [%REQ(x-nope)%]",
    "x-client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "x-client-port": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "x-literal": "100%% sure",
    "x-empty": "%REQ(x-nope)%",
  },
  headersToUpstreamOnAllow: ["authorization", "x-auth-user", "x-auth-group-*"],
};

const gatewayConfig = (provider: Record<string, unknown>) => doc("GatewayConfig", "isthmus", { extensionProviders: [{ name: "oauth", envoyExtAuthzHttp: provider }] }, "istio-system");

async function gateway(provider: Record<string, unknown> = OAUTH): Promise<RuntimeSnapshot> {
  return hydrate(
    await snapshotOf(
      gatewayConfig(provider),
      serviceEntry("authz", ["authz.auth.internal"], { ports: [{ number: 9000, name: "http", protocol: "HTTP" }] }, "auth"),
      serviceEntry("app", ["app.internal"], {}, "shop"),
      serviceEntry("plain", ["plain.internal"], {}, "plain"),
      virtualService("app", ["app.test"], [{ route: [{ destination: { host: "app.internal" } }] }], {}, "shop"),
      virtualService("plain", ["plain.test"], [{ route: [{ destination: { host: "plain.internal" } }] }], {}, "plain"),
      doc("AuthorizationPolicy", "ext", { action: "CUSTOM", provider: { name: "oauth" }, rules: [{ to: [{ operation: { paths: ["/checked/*"] } }] }] }, "shop"),
    ),
  );
}

/** Runs one request; the authorizer answers `answer`, the origin 200. */
async function run(runtime: RuntimeSnapshot, url: string, headers: Record<string, string> = {}, answer: Answer = { status: 200 }) {
  let check: Request | undefined;
  let upstream: Request | undefined;
  const deps = pipelineDeps({
    fetch: async (input, init) => {
      const req = new Request(input, init);
      if (new URL(req.url).hostname === "authz.auth.internal") {
        check = req;
        const h = new Headers();
        for (const [n, v] of answer.headers ?? []) h.append(n, v);
        // Bytes, not a string: a string body would get a Content-Type the authorizer did not send.
        return new Response(answer.body === undefined ? null : new TextEncoder().encode(answer.body), { status: answer.status, headers: h });
      }
      upstream = req;
      return new Response("origin");
    },
  });
  const result = await runPipeline(new Request(url, { headers }), runtime, deps);
  return { response: result.response, record: result.record, check, upstream };
}

describe("headersToUpstreamOnAllow", () => {
  it("leaves a client's Authorization alone on hosts and paths no CUSTOM policy checks", async () => {
    const runtime = await gateway();
    const plain = await run(runtime, "http://plain.test/x", { authorization: "Bearer client" });
    expect(plain.upstream?.headers.get("authorization")).toBe("Bearer client");
    const unchecked = await run(runtime, "http://app.test/open", { authorization: "Bearer client", "x-auth-user": "mallory" });
    expect(unchecked.check).toBeUndefined();
    expect(unchecked.upstream?.headers.get("authorization")).toBe("Bearer client");
    expect(unchecked.upstream?.headers.get("x-auth-user")).toBe("mallory");
  });

  it("sends the client's Authorization in the check; the authorizer's value replaces it upstream only when it returns one", async () => {
    const runtime = await gateway();
    const minted = await run(runtime, "http://app.test/checked/a", { authorization: "Bearer client" }, { status: 200, headers: [["authorization", "Bearer minted"]] });
    expect(minted.check?.headers.get("authorization")).toBe("Bearer client");
    expect(minted.upstream?.headers.get("authorization")).toBe("Bearer minted");
    const kept = await run(runtime, "http://app.test/checked/a", { authorization: "Bearer client" }, { status: 200 });
    expect(kept.upstream?.headers.get("authorization")).toBe("Bearer client");
  });

  it("on a checked request, removes the client's values of the authorizer's other outputs, and keeps what the check was sent", async () => {
    const runtime = await gateway();
    const spoof = { "x-auth-user": "mallory", "x-auth-group-admin": "yes", cookie: "_oauth2_proxy=abc" };
    const silent = await run(runtime, "http://app.test/checked/a", spoof, { status: 200 });
    expect(silent.upstream?.headers.get("x-auth-user")).toBeNull();
    expect(silent.upstream?.headers.get("x-auth-group-admin")).toBeNull();
    expect(silent.upstream?.headers.get("cookie")).toBe("_oauth2_proxy=abc");
    const vouched = await run(runtime, "http://app.test/checked/a", spoof, { status: 200, headers: [["x-auth-user", "alice"]] });
    expect(vouched.upstream?.headers.get("x-auth-user")).toBe("alice");
  });

  it("removes the client's spellings of the authorizer's outputs with _ for - (x_auth_user), which CGI, WSGI and PHP read as the same header", async () => {
    const runtime = await gateway();
    const spoof = { x_auth_user: "mallory", "X_Auth-Group_Admin": "yes", x_unrelated: "kept" };
    const vouched = await run(runtime, "http://app.test/checked/a", spoof, { status: 200, headers: [["x-auth-user", "alice"]] });
    expect(vouched.response.status).toBe(200);
    expect([...(vouched.upstream?.headers.keys() ?? [])].filter((n) => n.includes("auth") || n.includes("_"))).toEqual(["x-auth-user", "x_unrelated"]);
    expect(vouched.upstream?.headers.get("x-auth-user")).toBe("alice");
    // Patterns written with _ match either spelling.
    const underscored = await gateway({ ...OAUTH, headersToUpstreamOnAllow: ["x_auth_user"] });
    const both = await run(underscored, "http://app.test/checked/a", { "x-auth-user": "mallory", x_auth_user: "mallory" }, { status: 200 });
    expect([both.upstream?.headers.get("x-auth-user"), both.upstream?.headers.get("x_auth_user")]).toEqual([null, null]);
  });

  it("never strips a name at ingress, so JWT authentication and the check still see it", async () => {
    const result = await build(gatewayConfig(OAUTH), serviceEntry("authz", ["authz.auth.internal"], { ports: [{ number: 9000, name: "http", protocol: "HTTP" }] }, "auth"), doc("AuthorizationPolicy", "ext", { action: "CUSTOM", provider: { name: "oauth" }, rules: [{}] }, "auth"));
    expect(result.snapshot?.security?.injectedHeaders).toEqual([]);
  });
});

describe("failOpen", () => {
  it("lets the request through without the client's values of the authorizer's outputs", async () => {
    const runtime = await gateway({ ...OAUTH, failOpen: true });
    const { response, upstream } = await run(runtime, "http://app.test/checked/a", { authorization: "Bearer client", "x-auth-user": "mallory" }, { status: 503 });
    expect(response.status).toBe(200);
    expect(upstream?.headers.get("x-auth-user")).toBeNull();
    expect(upstream?.headers.get("authorization")).toBe("Bearer client");
  });
});

describe("the check request", () => {
  it("always carries the client's Authorization, as Envoy's does", async () => {
    const runtime = await gateway({ service: "authz.auth.internal", port: 9000 });
    const { check } = await run(runtime, "http://app.test/checked/a", { authorization: "Bearer t", "x-other": "no" });
    expect(check?.headers.get("authorization")).toBe("Bearer t");
    expect(check?.headers.get("x-other")).toBeNull();
  });

  it("expands Envoy's command operators in includeAdditionalHeadersInCheck", async () => {
    const runtime = await gateway();
    const { check } = await run(runtime, "http://app.test:8080/checked/a%20b?x=1&y=2", { "x-trace": "t-1", "cf-connecting-ip": "203.0.113.9" });
    expect(check?.headers.get("x-auth-request-redirect")).toBe("https://app.test:8080/checked/a%20b?x=1&y=2");
    expect(check?.headers.get("x-request-line")).toBe("GET http [t-1] []");
    expect(check?.headers.get("x-client")).toBe("203.0.113.9");
    expect(check?.headers.get("x-client-port")).toBe("203.0.113.9:0");
    expect(check?.headers.get("x-literal")).toBe("100% sure");
    // A value that expands to nothing is not sent (Envoy drops empty headers_to_add).
    expect(check?.headers.has("x-empty")).toBe(false);
  });

  it("refuses an operator it cannot expand, naming the field", async () => {
    const provider = (value: string) => build(gatewayConfig({ service: "authz.auth.internal", port: 9000, includeAdditionalHeadersInCheck: { "x-a": value } }), serviceEntry("authz", ["authz.auth.internal"], { ports: [{ number: 9000, name: "http", protocol: "HTTP" }] }, "auth"));
    for (const bad of ["%START_TIME%", "%REQ(:status)%", "%REQ()%", "50% off", "%REQ(x-a):abc%", "%req(x-a)%"]) {
      const errs = errors(await provider(bad));
      expect(errs, bad).toHaveLength(1);
      expect(errs[0], bad).toContain('GatewayConfig/istio-system/isthmus: spec.extensionProviders[0].envoyExtAuthzHttp.includeAdditionalHeadersInCheck["x-a"]: expected ');
    }
    for (const good of ["%REQ(x-a?x-b):10%", "%%REQ(x)%%", "plain", "%DOWNSTREAM_REMOTE_ADDRESS%"]) expect(errors(await provider(good)), good).toEqual([]);
  });
});

describe("the authorizer's answer", () => {
  it("allows only on 200: a 204 is a denial with that status, as in Envoy", async () => {
    const runtime = await gateway();
    const denied = await run(runtime, "http://app.test/checked/a", {}, { status: 204 });
    expect(denied.response.status).toBe(204);
    expect(denied.upstream).toBeUndefined();
    expect(denied.record.flags).toContain("UAEX");
  });

  it("passes every Set-Cookie of a denial to the client", async () => {
    const runtime = await gateway();
    const cookies: [string, string][] = [
      ["location", "https://login.test/start"],
      ["set-cookie", "csrf=1; Path=/"],
      ["set-cookie", "csrf2=2; Path=/"],
    ];
    const all = await run(runtime, "http://app.test/checked/a", {}, { status: 302, headers: cookies });
    expect(all.response.status).toBe(302);
    expect(all.response.headers.getSetCookie()).toEqual(["csrf=1; Path=/", "csrf2=2; Path=/"]);
    const selected = await run(await gateway({ ...OAUTH, headersToDownstreamOnDeny: ["set-cookie"] }), "http://app.test/checked/a", {}, { status: 302, headers: cookies });
    expect(selected.response.headers.getSetCookie()).toEqual(["csrf=1; Path=/", "csrf2=2; Path=/"]);
  });

  it("keeps the Content-Type of a denial; text/plain only when it has none", async () => {
    const runtime = await gateway();
    const json = await run(runtime, "http://app.test/checked/a", {}, { status: 401, body: '{"error":"denied"}', headers: [["content-type", "application/json"]] });
    expect(json.response.headers.get("content-type")).toBe("application/json");
    expect(await json.response.text()).toBe('{"error":"denied"}');
    const bare = await run(runtime, "http://app.test/checked/a", {}, { status: 403, body: "nope" });
    expect(bare.response.headers.get("content-type")).toBe("text/plain");
  });
});

describe("toResponse", () => {
  it("sends every pair of a list, keeps a reply's own Content-Type, and still takes a record", async () => {
    const listed = toResponse({ status: 401, body: "{}", headers: [["content-type", "application/json"], ["set-cookie", "a=1"], ["set-cookie", "b=2"]] });
    expect([listed.headers.get("content-type"), listed.headers.getSetCookie()]).toEqual(["application/json", ["a=1", "b=2"]]);
    const record = toResponse({ status: 301, body: "", headers: { location: "https://a.test/" } });
    expect([record.headers.get("location"), record.headers.get("content-type")]).toEqual(["https://a.test/", null]);
    expect(toResponse({ status: 403, body: "RBAC: access denied" }).headers.get("content-type")).toBe("text/plain");
    // A status that cannot have a body (an authorizer's 204 denial) is sent without one.
    const empty = toResponse({ status: 204, body: "ignored" });
    expect([empty.status, await empty.text()]).toEqual([204, ""]);
  });
});
