/**
 * The whole pipeline on a compiled snapshot, with fetch, randomness, ids
 * and the clock injected: what the upstream is asked for and what the
 * client gets back.
 */
import { describe, expect, it } from "vitest";
import { runPipeline, type PipelineDeps } from "../../../src/gateway/pipeline.ts";
import { Balancer } from "../../../src/routing/balancer.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import { packSnapshot, type PackedSnapshot } from "../../../src/config/snapshot-packing.ts";
import { doc, serviceEntry, snapshotOf, virtualService, type Doc } from "../support.ts";

interface Upstream {
  requests: Request[];
  deps: PipelineDeps;
}

function upstream(respond: (req: Request) => Promise<Response> = async () => new Response("origin", { headers: { "x-origin": "1" } }), draw = 0): Upstream {
  const requests: Request[] = [];
  let clock = 1000;
  return {
    requests,
    deps: {
      fetch: async (url, init) => {
        const req = new Request(url, init);
        requests.push(req);
        clock += 7;
        return respond(req);
      },
      balancer: new Balancer(() => 0),
      random: () => draw,
      requestId: () => "rid-1",
      now: () => clock,
      sleep: async (ms) => {
        clock += ms;
      },
    },
  };
}

const origin = (name: string, address: string, extra: Record<string, unknown> = {}) =>
  serviceEntry(name, [`${name}.internal`], { location: "MESH_INTERNAL", resolution: "STATIC", ports: [{ number: 8080, name: "http" }], endpoints: [{ address }], ...extra });

async function send(docs: Doc[], url: string, init: RequestInit = {}, up = upstream()) {
  const runtime = hydrate(await snapshotOf(...docs));
  const { response, record } = await runPipeline(new Request(url, init), runtime, up.deps);
  return { response, record, body: await response.text(), sent: up.requests };
}

describe("runPipeline", () => {
  it("forwards to the endpoint with the rewritten path, the query and the route's header operations", async () => {
    const { response, record, body, sent } = await send(
      [
        origin("api", "10.0.0.1"),
        virtualService("v", ["shop.example.com"], [
          {
            name: "orders",
            match: [{ uri: { prefix: "/api/" } }],
            rewrite: { uri: "/v2/" },
            headers: { request: { set: { "x-route": "orders" }, remove: ["x-drop"] }, response: { set: { "cache-control": "no-store" } } },
            route: [{ destination: { host: "api.internal" } }],
          },
        ]),
      ],
      "http://shop.example.com/api/orders?limit=5",
      { headers: { "x-drop": "1", "x-keep": "2" } },
    );
    expect(sent).toHaveLength(1);
    expect(sent[0]?.url).toBe("http://10.0.0.1:8080/v2/orders?limit=5");
    // As Envoy's router records a rewritten path.
    expect(sent[0]?.headers.get("x-envoy-original-path")).toBe("/api/orders?limit=5");
    expect(sent[0]?.headers.get("x-route")).toBe("orders");
    expect(sent[0]?.headers.get("x-drop")).toBeNull();
    expect(sent[0]?.headers.get("x-keep")).toBe("2");
    expect(sent[0]?.headers.get("x-request-id")).toBe("rid-1");
    expect(response.status).toBe(200);
    expect(body).toBe("origin");
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(response.headers.get("x-envoy-upstream-service-time")).toBe("7");
    expect(record).toMatchObject({ flags: [], routeName: "orders", cluster: "outbound|8080||api.internal", upstreamHost: "10.0.0.1:8080" });
  });

  it("never sends the origin a spelling with _ of a header the gateway sets (x_user_id next to a claim header x-user-id), and applies GatewayConfig headersWithUnderscoresAction", async () => {
    const docs = (action?: string) => [
      origin("api", "10.0.0.1"),
      virtualService("v", ["shop.example.com"], [{ route: [{ destination: { host: "api.internal" } }] }]),
      doc("RequestAuthentication", "jwt", { jwtRules: [{ issuer: "https://idp.example.com", jwksUri: "https://idp.example.com/jwks", outputClaimToHeaders: [{ header: "x-user-id", claim: "sub" }] }] }, "istio-system"),
      ...(action ? [doc("GatewayConfig", "isthmus", { headersWithUnderscoresAction: action }, "istio-system")] : []),
    ];
    const spoofed = { x_user_id: "admin", X_Forwarded_For: "10.0.0.9", X_Request_Id: "mine", "X-Envoy_Retry_On": "5xx", X_Isthmus_Mirror: "1", x_custom: "v" };
    const allowed = await send(docs(), "http://shop.example.com/", { headers: spoofed });
    expect(allowed.response.status).toBe(200);
    expect([...(allowed.sent[0]?.headers.keys() ?? [])].filter((n) => n.includes("_"))).toEqual(["x_custom"]);
    expect(allowed.sent[0]?.headers.get("x-request-id")).toBe("rid-1");

    const dropped = await send(docs("DROP_HEADER"), "http://shop.example.com/", { headers: spoofed });
    expect([...(dropped.sent[0]?.headers.keys() ?? [])].filter((n) => n.includes("_"))).toEqual([]);

    const rejected = await send(docs("REJECT_REQUEST"), "http://shop.example.com/", { headers: { x_custom: "v" } });
    expect([rejected.response.status, rejected.record.flags, rejected.record.details, rejected.sent.length]).toEqual([400, ["DPE"], "http1.unexpected_underscore", 0]);
  });

  it("answers Envoy's 501 for a transfer coding under chunked, without calling the origin", async () => {
    const docs = [origin("api", "10.0.0.1"), virtualService("v", ["shop.example.com"], [{ route: [{ destination: { host: "api.internal" } }] }])];
    const { response, record, sent } = await send(docs, "http://shop.example.com/", { method: "POST", body: "hello", headers: { "transfer-encoding": "gzip, chunked" } });
    expect([response.status, record.flags, record.details, sent.length]).toEqual([501, ["DPE"], "http1.invalid_transfer_encoding", 0]);
  });

  it("applies a regex rewrite with capture groups", async () => {
    const { sent } = await send(
      [origin("api", "10.0.0.1"), virtualService("v", ["shop.example.com"], [{ rewrite: { uriRegexRewrite: { match: "^/v([0-9]+)/(.*)$", rewrite: "/\\2/version/\\1" } }, route: [{ destination: { host: "api.internal" } }] }])],
      "http://shop.example.com/v3/users/7",
    );
    expect(sent[0]?.url).toBe("http://10.0.0.1:8080/users/7/version/3");
    expect(sent[0]?.headers.get("x-envoy-original-path")).toBe("/v3/users/7");
    // Without a rewrite there is nothing to record, and a client's own is never passed on.
    const plain = await send([origin("api", "10.0.0.1"), virtualService("v", ["shop.example.com"], [{ route: [{ destination: { host: "api.internal" } }] }])], "http://shop.example.com/v3/users/7", { headers: { "x-envoy-original-path": "/spoofed" } });
    expect(plain.sent[0]?.headers.get("x-envoy-original-path")).toBeNull();
  });

  it("lets the route's set win over a weighted destination's, and a single destination's win over the route's", async () => {
    const route = (weights: number[]) =>
      virtualService("v", ["shop.example.com"], [
        {
          headers: { request: { set: { "x-who": "route" } } },
          route: weights.map((weight, i) => ({ destination: { host: i === 0 ? "a.internal" : "b.internal" }, weight, headers: { request: { set: { "x-who": `destination-${i}` } } } })),
        },
      ]);
    const weighted = await send([origin("a", "10.0.0.1"), origin("b", "10.0.0.2"), route([1, 1])], "http://shop.example.com/");
    expect(weighted.sent[0]?.headers.get("x-who")).toBe("route");
    const single = await send([origin("a", "10.0.0.1"), route([0])], "http://shop.example.com/");
    expect(single.sent[0]?.headers.get("x-who")).toBe("destination-0");
  });

  it("picks the weighted destination from the injected draw", async () => {
    const docs = [
      origin("a", "10.0.0.1"),
      origin("b", "10.0.0.2"),
      virtualService("v", ["shop.example.com"], [{ route: [{ destination: { host: "a.internal" }, weight: 10 }, { destination: { host: "b.internal" }, weight: 90 }] }]),
    ];
    expect((await send(docs, "http://shop.example.com/", {}, upstream(undefined, 0.05))).sent[0]?.url).toBe("http://10.0.0.1:8080/");
    expect((await send(docs, "http://shop.example.com/", {}, upstream(undefined, 0.5))).sent[0]?.url).toBe("http://10.0.0.2:8080/");
  });

  it("answers Envoy's local replies: 404 NR, 503 UH without endpoints, 503 UF when the connection fails", async () => {
    const vs = virtualService("v", ["shop.example.com"], [{ match: [{ uri: { prefix: "/api" } }], route: [{ destination: { host: "api.internal" } }] }]);
    const noRoute = await send([origin("api", "10.0.0.1"), vs], "http://shop.example.com/other");
    expect([noRoute.response.status, noRoute.body, noRoute.record.flags]).toEqual([404, "", ["NR"]]);
    const unknownHost = await send([origin("api", "10.0.0.1"), vs], "http://elsewhere.example.com/api");
    expect([unknownHost.response.status, unknownHost.record.flags]).toEqual([404, ["NR"]]);
    const empty = await send([origin("api", "10.0.0.1", { endpoints: [] }), vs], "http://shop.example.com/api");
    expect([empty.response.status, empty.body, empty.record.flags, empty.sent.length]).toEqual([503, "no healthy upstream", ["UH"], 0]);
    const refused = await send([origin("api", "10.0.0.1"), vs], "http://shop.example.com/api", {}, upstream(() => Promise.reject(new TypeError("connection refused"))));
    // Istio's default retry policy (2 retries on connect-failure) applies, so the origin is tried 3 times.
    expect([refused.response.status, refused.body, refused.sent.length]).toEqual([503, "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: connection failure", 3]);
    expect(refused.record.flags).toEqual(expect.arrayContaining(["UF", "URX"]));
  });

  it("answers 503 NC with an empty body for a route whose cluster is missing from the snapshot (one the CLI would refuse, §7.28)", async () => {
    const snapshot = await snapshotOf(
      origin("api", "10.0.0.1", { endpoints: [{ address: "10.0.0.1", labels: { version: "v1" } }, { address: "10.0.0.2", labels: { version: "v2" } }] }),
      doc("DestinationRule", "api", { host: "api.internal", subsets: [{ name: "v1", labels: { version: "v1" } }, { name: "v2", labels: { version: "v2" } }] }),
      virtualService("v", ["shop.example.com"], [
        { match: [{ uri: { prefix: "/v1" } }], route: [{ destination: { host: "api.internal", subset: "v1" } }] },
        { route: [{ destination: { host: "api.internal", subset: "v2" } }] },
      ]),
    );
    // The compiler refuses an undefined subset, so the only way to a route without its cluster is to drop the cluster by hand.
    expect(Object.keys(snapshot.clusters)).toContain("outbound|8080|v1|api.internal");
    delete snapshot.clusters["outbound|8080|v1|api.internal"];
    const runtime = hydrate(snapshot);
    const up = upstream();
    const missing = await runPipeline(new Request("http://shop.example.com/v1/items"), runtime, up.deps);
    expect([missing.response.status, await missing.response.text(), missing.record.flags]).toEqual([503, "", ["NC"]]);
    expect(up.requests).toHaveLength(0);
    // Only that route fails: the other subset's route still forwards.
    const other = await runPipeline(new Request("http://shop.example.com/items"), runtime, up.deps);
    expect(other.response.status).toBe(200);
    expect(up.requests.map((r) => r.url)).toEqual(["http://10.0.0.2:8080/items"]);
  });

  it("answers redirects and direct responses at the edge, with the route's response headers", async () => {
    const docs = [
      virtualService("v", ["shop.example.com"], [
        { match: [{ uri: { prefix: "/old" } }], redirect: { prefixRewrite: "/new", redirectCode: 308 } },
        { match: [{ uri: { exact: "/bytes" } }], directResponse: { status: 200, body: { bytes: "AAEC/w==" } }, headers: { response: { set: { "content-type": "application/octet-stream" } } } },
        { directResponse: { status: 503, body: { string: "down for maintenance" } } },
      ]),
    ];
    const redirect = await send(docs, "http://shop.example.com/old/page?x=1");
    expect([redirect.response.status, redirect.response.headers.get("location"), redirect.sent.length]).toEqual([308, "http://shop.example.com/new/page?x=1", 0]);
    const bytes = await runPipeline(new Request("http://shop.example.com/bytes"), hydrate(await snapshotOf(...docs)), upstream().deps);
    expect([...new Uint8Array(await bytes.response.arrayBuffer())]).toEqual([0, 1, 2, 255]);
    expect(bytes.response.headers.get("content-type")).toBe("application/octet-stream");
    const text = await send(docs, "http://shop.example.com/anything");
    expect([text.response.status, text.body, text.response.headers.get("content-type")]).toEqual([503, "down for maintenance", "text/plain"]);
  });

  it("redirects plain HTTP to HTTPS for a Gateway server with httpsRedirect", async () => {
    const docs = [
      { apiVersion: "networking.istio.io/v1", kind: "Gateway", metadata: { name: "gw", namespace: "edge" }, spec: { servers: [{ port: { number: 80, name: "http", protocol: "HTTP" }, hosts: ["shop.example.com"], tls: { httpsRedirect: true } }] } },
      virtualService("v", ["shop.example.com"], [{ directResponse: { status: 200 } }], { gateways: ["edge/gw"] }),
    ];
    const plain = await send(docs, "http://shop.example.com/cart?id=1");
    expect([plain.response.status, plain.response.headers.get("location")]).toEqual([301, "https://shop.example.com/cart?id=1"]);
    expect((await send(docs, "https://shop.example.com/cart")).response.status).toBe(200);
  });

  it("authorizes before answering 404 NR or an httpsRedirect 301, as Envoy's jwt_authn and RBAC filters run before its router", async () => {
    const gw = { apiVersion: "networking.istio.io/v1", kind: "Gateway", metadata: { name: "gw", namespace: "edge" }, spec: { servers: [{ port: { number: 80, name: "http", protocol: "HTTP" }, hosts: ["secure.example.com"], tls: { httpsRedirect: true } }] } };
    const jwks = JSON.stringify({ keys: [{ kty: "oct", kid: "k", k: "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA", alg: "HS256" }] });
    const docs = [
      origin("api", "10.0.0.1"),
      gw,
      virtualService("v", ["shop.example.com"], [{ match: [{ uri: { prefix: "/api" } }], route: [{ destination: { host: "api.internal" } }] }]),
      virtualService("s", ["secure.example.com"], [{ directResponse: { status: 200 } }], { gateways: ["edge/gw"] }),
      doc("AuthorizationPolicy", "no-admin", { action: "DENY", rules: [{ to: [{ operation: { paths: ["/admin*"] } }] }] }, "istio-system"),
      doc("RequestAuthentication", "jwt", { jwtRules: [{ issuer: "https://idp.example", jwks }] }, "istio-system"),
    ];
    const status = async (url: string, init: RequestInit = {}) => {
      const { response, record, sent } = await send(docs, url, init);
      return [response.status, record.flags.join(","), sent.length];
    };
    // No route for /admin on a known host, nor on an unknown one: the DENY policy answers first.
    expect(await status("http://shop.example.com/admin/users")).toEqual([403, "", 0]);
    expect(await status("http://elsewhere.example.com/admin")).toEqual([403, "", 0]);
    // A token that fails verification: 401 before the router, routed or not.
    const bad = { headers: { authorization: "Bearer not.a.token" } };
    expect(await status("http://elsewhere.example.com/", bad)).toEqual([401, "", 0]);
    expect(await status("http://shop.example.com/missing", bad)).toEqual([401, "", 0]);
    // Plain HTTP to an httpsRedirect server: denied by the policy, or redirected.
    expect(await status("http://secure.example.com/admin")).toEqual([403, "", 0]);
    const redirect = await send(docs, "http://secure.example.com/cart");
    expect([redirect.response.status, redirect.response.headers.get("location")]).toEqual([301, "https://secure.example.com/cart"]);
    // What the policies let through and no route takes is still 404 NR.
    expect(await status("http://shop.example.com/missing")).toEqual([404, "NR", 0]);
    expect(await status("http://elsewhere.example.com/")).toEqual([404, "NR", 0]);
  });

  it("resolves catch-alls per port and gateway, as Istio's per-port route tables do (a port-only block is a catch-all on its port)", async () => {
    const redirectPlain = virtualService("site", ["shop.example.com"], [
      { match: [{ port: 80 }], redirect: { scheme: "https" } },
      { match: [{ uri: { prefix: "/shop" } }], directResponse: { status: 200, body: { string: "shop" } } },
    ]);
    const api = virtualService("api", ["shop.example.com"], [{ match: [{ uri: { prefix: "/api" } }], directResponse: { status: 200, body: { string: "api" } } }]);
    (redirectPlain.metadata as Record<string, unknown>).creationTimestamp = "2024-01-01T00:00:00Z";
    (api.metadata as Record<string, unknown>).creationTimestamp = "2024-06-01T00:00:00Z";
    const answer = async (url: string) => {
      const { response, body } = await send([redirectPlain, api], url);
      return response.status === 200 ? body : `${response.status} ${response.headers.get("location") ?? ""}`;
    };
    // Port 80's table: the redirect took every request, so /shop is never there; merged, the catch-all moves after /api.
    expect(await answer("http://shop.example.com/shop")).toBe("301 https://shop.example.com/shop");
    expect(await answer("http://shop.example.com/api/x")).toBe("api");
    expect(await answer("http://shop.example.com/other")).toBe("301 https://shop.example.com/other");
    // Port 443's table never had the redirect.
    expect(await answer("https://shop.example.com/shop")).toBe("shop");
    expect(await answer("https://shop.example.com/other")).toBe("404 ");

    // A block for one gateway takes every request through that gateway only: the next rule still serves the other.
    const gws = ["public", "internal"].map((name) => ({ apiVersion: "networking.istio.io/v1", kind: "Gateway", metadata: { name, namespace: "edge" }, spec: { servers: [{ port: { number: 80, name: "http", protocol: "HTTP" }, hosts: [`${name}.example.com`] }] } }));
    const split = virtualService("split", ["public.example.com", "internal.example.com"], [
      { match: [{ gateways: ["edge/public"] }], directResponse: { status: 200, body: { string: "public only" } } },
      { directResponse: { status: 200, body: { string: "everyone" } } },
    ], { gateways: ["edge/public", "edge/internal"] });
    expect((await send([...gws, split], "http://public.example.com/")).body).toBe("public only");
    expect((await send([...gws, split], "http://internal.example.com/")).body).toBe("everyone");
  });

  it("never routes the internet by a block meant for an in-mesh caller (sourceLabels): the next rule serves, as at an Istio gateway", async () => {
    const docs = [
      origin("admin", "10.0.0.9"),
      origin("api", "10.0.0.1"),
      virtualService("v", ["shop.example.com"], [
        { match: [{ sourceLabels: { app: "backoffice" } }], route: [{ destination: { host: "admin.internal" } }] },
        { match: [{ uri: { prefix: "/admin" }, sourceNamespace: "ops" }], route: [{ destination: { host: "admin.internal" } }] },
        { route: [{ destination: { host: "api.internal" } }] },
      ]),
    ];
    for (const path of ["/", "/admin/users"]) expect((await send(docs, `http://shop.example.com${path}`)).sent[0]?.url).toBe(`http://10.0.0.1:8080${path}`);
  });

  it("fails only the requests of a virtual host whose packed text is corrupt (a snapshot altered by hand), and keeps serving the others", async () => {
    const docs = [origin("api", "10.0.0.1"), virtualService("a", ["a.example.com"], [{ route: [{ destination: { host: "api.internal" } }] }]), virtualService("b", ["b.example.com"], [{ route: [{ destination: { host: "api.internal" } }] }])];
    const packed = JSON.parse(JSON.stringify(packSnapshot(await snapshotOf(...docs)))) as PackedSnapshot;
    for (const vh of packed.virtualHosts) if (vh.name === "b.example.com") vh.packed = vh.packed.slice(0, 20);
    const runtime = hydrate(packed);
    const ok = await runPipeline(new Request("http://a.example.com/x"), runtime, upstream().deps);
    expect(ok.response.status).toBe(200);
    // The Worker's entry answers 500 for what the pipeline throws (src/index.ts), logging "isthmus: unexpected error".
    await expect(runPipeline(new Request("http://b.example.com/x"), runtime, upstream().deps)).rejects.toThrow(SyntaxError);
    expect((await runPipeline(new Request("http://a.example.com/y"), runtime, upstream().deps)).response.status).toBe(200);
  });
});
