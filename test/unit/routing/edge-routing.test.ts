/**
 * Routing edge cases the audit against Istio/Envoy found, through the whole
 * pipeline on a compiled snapshot: where a rewritten path is sent, what a
 * redirect's Location and a direct response look like, where CORS and a
 * gRPC fault abort apply, and a destination's own authority rewrite.
 */
import { describe, expect, it } from "vitest";
import { runPipeline } from "../../../src/gateway/pipeline.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import { compileRegex, lazyRegex, substitutionError } from "../../../src/routing/regex.ts";
import { pipelineDeps, serviceEntry, snapshotOf, virtualService, type Doc } from "../support.ts";

const origin = (name: string, address: string) =>
  serviceEntry(name, [`${name}.internal`], { location: "MESH_INTERNAL", resolution: "STATIC", ports: [{ number: 8080, name: "http" }], endpoints: [{ address }] });

/** Runs one request through a gateway with these rules for a.example.com; records what went upstream. */
async function send(http: unknown[], path: string, init: RequestInit = {}, draw = 0) {
  const sent: Request[] = [];
  const docs: Doc[] = [origin("app", "10.0.0.1"), origin("other", "10.0.0.2"), virtualService("v", ["a.example.com"], http)];
  const deps = pipelineDeps({
    random: () => draw,
    fetch: async (url, requestInit) => {
      sent.push(new Request(url, requestInit));
      return new Response("origin");
    },
  });
  const { response } = await runPipeline(new Request(`http://a.example.com${path}`, init), hydrate(await snapshotOf(...docs)), deps);
  return { response, body: await response.text(), sent };
}

const toApp = [{ destination: { host: "app.internal" } }];

describe("a rewritten path never changes the upstream host", () => {
  it("sends a regex rewrite that leaves no leading / to the route's endpoint, with one added", async () => {
    const { sent } = await send([{ match: [{ uri: { prefix: "/api" } }], rewrite: { uriRegexRewrite: { match: "^/api(.*)$", rewrite: "\\1" } }, route: toApp }], "/api@10.0.0.2:8080/secret?q=1");
    expect(sent.map((r) => new URL(r.url).host)).toEqual(["10.0.0.1:8080"]);
    expect(sent[0]?.url).toBe("http://10.0.0.1:8080/@10.0.0.2:8080/secret?q=1");
  });

  it("sends / when the rewrite leaves an empty path", async () => {
    const { sent } = await send([{ match: [{ uri: { prefix: "/api" } }], rewrite: { uriRegexRewrite: { match: "^/api(.*)$", rewrite: "\\1" } }, route: toApp }], "/api");
    expect(sent[0]?.url).toBe("http://10.0.0.1:8080/");
  });

  it("gives a mirror's copy the same rooted path on the mirror's own endpoint", async () => {
    const { sent } = await send(
      [{ match: [{ uri: { prefix: "/api" } }], rewrite: { uriRegexRewrite: { match: "^/api(.*)$", rewrite: "\\1" } }, mirror: { host: "other.internal" }, route: toApp }],
      "/api@10.0.0.9:81/x",
    );
    // The copy leaves in waitUntil: give it a turn.
    await new Promise((r) => setTimeout(r, 10));
    expect(sent.map((r) => r.url).sort()).toEqual(["http://10.0.0.1:8080/@10.0.0.9:81/x", "http://10.0.0.2:8080/@10.0.0.9:81/x"]);
  });

  it("reads an empty rewrite.uri as unset: the path goes unchanged", async () => {
    const { sent } = await send([{ match: [{ uri: { prefix: "/e" } }], rewrite: { uri: "", authority: "x.internal" }, route: toApp }], "/e/zz");
    expect(sent[0]?.url).toBe("http://10.0.0.1:8080/e/zz");
    expect(sent[0]?.headers.get("x-envoy-original-path")).toBeNull();
    expect(sent[0]?.headers.get("x-forwarded-host")).toBe("x.internal");
  });
});

describe("redirect Location", () => {
  it("puts a / before a uri without one instead of pasting it onto the host", async () => {
    const { response } = await send([{ match: [{ uri: { prefix: "/rel" } }], redirect: { uri: "new" } }], "/rel");
    expect(response.headers.get("location")).toBe("http://a.example.com/new");
  });

  it("keeps the path for an empty uri next to an authority", async () => {
    const { response } = await send([{ match: [{ uri: { prefix: "/r" } }], redirect: { uri: "", authority: "b.example.com" } }], "/r/x?q=1");
    expect(response.headers.get("location")).toBe("http://b.example.com/r/x?q=1");
  });
});

describe("direct responses", () => {
  it("answers 204, 205 and 304 with a body configured as the status alone, not a 500", async () => {
    for (const [status, body] of [
      [204, { string: "x" }],
      [205, { bytes: "aGVsbG8=" }],
      [304, { string: "x" }],
    ] as const) {
      const res = await send([{ directResponse: { status, body } }], "/d");
      expect([res.response.status, res.body, res.response.headers.get("content-type")]).toEqual([status, "", null]);
    }
  });

  it("sends no Content-Type for an empty string body", async () => {
    const res = await send([{ directResponse: { status: 200, body: { string: "" } } }], "/d");
    expect([res.response.status, res.body, res.response.headers.get("content-type")]).toEqual([200, "", null]);
  });
});

describe("CORS only on routes to a destination", () => {
  const cors = { allowOrigins: [{ exact: "https://app.example" }], allowMethods: ["GET"] };
  const preflight = { method: "OPTIONS", headers: { origin: "https://app.example", "access-control-request-method": "GET" } };

  it("answers a preflight to a directResponse rule with the direct response, without CORS headers", async () => {
    const res = await send([{ directResponse: { status: 403, body: { string: "no" } }, corsPolicy: cors }], "/d", preflight);
    expect([res.response.status, res.body, res.response.headers.get("access-control-allow-origin")]).toEqual([403, "no", null]);
  });

  it("gives a redirect no Access-Control-Allow-Origin, for a preflight or an actual request", async () => {
    for (const init of [preflight, { headers: { origin: "https://app.example" } }]) {
      const res = await send([{ redirect: { uri: "/new" }, corsPolicy: cors }], "/old", init);
      expect([res.response.status, res.response.headers.get("access-control-allow-origin")]).toEqual([301, null]);
    }
  });
});

describe("an unmatched preflight under unmatchedPreflights: IGNORE", () => {
  it("is answered with every configured CORS header but Access-Control-Allow-Origin (Envoy's cors filter)", async () => {
    const corsPolicy = { allowOrigins: [{ exact: "https://app.example" }], allowMethods: ["GET", "POST"], allowHeaders: ["x-a"], maxAge: "1m", allowCredentials: true, unmatchedPreflights: "IGNORE" };
    const res = await send([{ corsPolicy, route: toApp }], "/c", { method: "OPTIONS", headers: { origin: "https://evil.example", "access-control-request-method": "POST" } });
    expect(res.sent).toHaveLength(0);
    expect(res.response.status).toBe(200);
    expect(Object.fromEntries([...res.response.headers].filter(([k]) => k.startsWith("access-control-")))).toEqual({
      "access-control-allow-credentials": "true",
      "access-control-allow-headers": "x-a",
      "access-control-allow-methods": "GET,POST",
      "access-control-max-age": "60",
    });
  });
});

describe("a destination's own authority rewrite", () => {
  const weighted = [
    { destination: { host: "app.internal" }, weight: 50, headers: { request: { set: { host: "v1.internal" } } } },
    { destination: { host: "other.internal" }, weight: 50, headers: { request: { set: { host: "v2.internal" } } } },
  ];

  it("sends each weighted destination's authority as x-forwarded-host", async () => {
    const first = await send([{ route: weighted }], "/x", {}, 0);
    const second = await send([{ route: weighted }], "/x", {}, 0.99);
    expect([first.sent[0]?.url, first.sent[0]?.headers.get("x-forwarded-host")]).toEqual(["http://10.0.0.1:8080/x", "v1.internal"]);
    expect([second.sent[0]?.url, second.sent[0]?.headers.get("x-forwarded-host")]).toEqual(["http://10.0.0.2:8080/x", "v2.internal"]);
  });

  it("lets the rule's own authority rewrite win, as Istio and Envoy do", async () => {
    const { sent } = await send([{ rewrite: { authority: "rule.internal" }, route: weighted }], "/x");
    expect(sent[0]?.headers.get("x-forwarded-host")).toBe("rule.internal");
  });
});

describe("a grpcStatus fault abort", () => {
  const rule = [{ fault: { abort: { grpcStatus: "UNAVAILABLE", percentage: { value: 100 } } }, route: toApp }];

  it("is a trailers-only gRPC response for a gRPC request", async () => {
    for (const contentType of ["application/grpc", "application/grpc+proto"]) {
      const res = await send(rule, "/svc.Greeter/Hello", { method: "POST", headers: { "content-type": contentType }, body: "" });
      expect([res.response.status, res.response.headers.get("content-type"), res.response.headers.get("grpc-status"), res.body]).toEqual([200, "application/grpc", "14", ""]);
    }
  });

  it("is a plain 200 `fault filter abort` for any other request, as Envoy's local reply", async () => {
    for (const headers of [{}, { "content-type": "application/grpc-web" }, { "content-type": "application/json" }] as Record<string, string>[]) {
      const res = await send(rule, "/x", { headers });
      expect([res.response.status, res.response.headers.get("grpc-status"), res.response.headers.get("content-type"), res.body]).toEqual([200, null, "text/plain", "fault filter abort"]);
    }
  });
});

describe("regex substitution with a group the pattern lacks", () => {
  it("is refused with the group and the pattern's count", () => {
    expect(substitutionError("^/g/([^/]+)$", "/new/\\2")).toBe("\\2 names capture group 2, but the pattern has 1");
    expect(substitutionError("^/g/.*$", "/new/\\1")).toBe("\\1 names capture group 1, but the pattern has none");
    expect(substitutionError("^/g/([^/]+)$", "/new/\\1\\0")).toBeUndefined();
  });

  it("leaves the path unchanged at run time, as Envoy does when RE2 refuses the rewrite", () => {
    for (const re of [compileRegex("^/g/([^/]+)$"), lazyRegex("^/g/([^/]+)$")]) {
      expect(re.replaceAll("/g/abc", "/new/\\2")).toBe("/g/abc");
      expect(re.replaceAll("/g/abc", "/new/\\1")).toBe("/new/abc");
    }
  });
});
