/**
 * The forwarding stage inside workerd with an injected fetch, for
 * behaviour that needs exact control of what each endpoint does: which
 * endpoint each attempt went to, what it carried, and what the client got.
 * The end-to-end tests (test/e2e/upstream-*.test.ts) show the same against
 * real origins.
 */
import { describe, expect, it } from "vitest";
import { buildConfig } from "../../../src/config/build.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import { runPipeline, type PipelineDeps } from "../../../src/gateway/pipeline.ts";
import { Balancer } from "../../../src/routing/balancer.ts";
import { UpstreamState } from "../../../src/upstream/state.ts";
import { bindingFetch } from "../../../src/routing/forward.ts";

type Behaviour = (request: Request, body: string) => Response | "refuse" | "hang" | Promise<Response>;

interface Sent {
  host: string;
  method: string;
  attempt: string | null;
  body: string;
}

const endpoints = (names: string[], locality = (_: string) => "") =>
  names.map((n) => `  - {address: ${n}.internal${locality(n) ? `, locality: ${locality(n)}` : ""}}`).join("\n");

async function gateway(yaml: string, behave: Record<string, Behaviour>, extra: Partial<PipelineDeps> = {}) {
  const result = await buildConfig([{ path: "test.yaml", text: yaml }]);
  if (!result.snapshot) throw new Error(result.problems.map((p) => `${p.field}: ${p.message}`).join("\n"));
  const snapshot = hydrate(result.snapshot);
  const sent: Sent[] = [];
  let seed = 1;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const deps: PipelineDeps = {
    fetch: async (url, init) => {
      const request = new Request(url, init);
      const host = new URL(request.url).hostname.replace(".internal", "");
      const body = request.body ? await request.text() : "";
      sent.push({ host, method: request.method, attempt: request.headers.get("x-envoy-attempt-count"), body });
      const b = behave[host] ?? (() => new Response(`ok from ${host}`));
      const out = await b(request, body);
      if (out === "refuse") throw new Error("Network connection lost.");
      if (out === "hang") {
        return new Promise<Response>((_, reject) => request.signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError"))));
      }
      return out;
    },
    balancer: new Balancer(random),
    random,
    requestId: () => "00000000-0000-4000-8000-000000000000",
    now: () => Date.now(),
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    upstreams: new UpstreamState({ log: () => {} }),
    ...extra,
  };
  const pending: Promise<unknown>[] = [];
  const run = async (path: string, init: RequestInit & { cf?: Record<string, string> } = {}) => {
    const r = await runPipeline(new Request(`http://app.example.com${path}`, init), snapshot, deps, (p) => pending.push(p));
    return { status: r.response.status, body: await r.response.text(), headers: r.response.headers, flags: r.record.flags, attempts: r.record.attempts, details: r.record.details };
  };
  return { run, sent, deps, pending };
}

const config = ({ endpoints: eps = endpoints(["a", "b", "c"]), route = "", policy = "", annotations = "" } = {}) => `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: shop}
spec:
  hosts: [app.shop.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
${eps}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: shop${annotations}}
spec:
  hosts: [app.example.com]
  http:
  - route: [{destination: {host: app.shop.internal}}]
${route}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app, namespace: shop}
spec:
  host: app.shop.internal
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
${policy}
`;

describe("Istio's default retry policy", () => {
  it("retries a refused connection on another endpoint and sends x-envoy-attempt-count", async () => {
    const gw = await gateway(config(), { a: () => "refuse" });
    const res = await gw.run("/");
    expect(res.status).toBe(200);
    expect(gw.sent.map((s) => [s.host, s.attempt])).toEqual([
      ["a", "1"],
      ["b", "2"],
    ]);
    expect(res.attempts).toBe(2);
    expect(res.flags).toEqual([]);
  });

  it("returns Envoy's retried connect-failure reply with flags UF and URX when every attempt fails", async () => {
    const gw = await gateway(config(), { a: () => "refuse", b: () => "refuse", c: () => "refuse" });
    const res = await gw.run("/");
    expect(res.status).toBe(503);
    expect(res.body).toBe("upstream connect error or disconnect/reset before headers. retried and the latest reset reason: connection failure");
    expect(res.flags).toEqual(["UF", "URX"]);
    expect(gw.sent.map((s) => s.host)).toEqual(["a", "b", "c"]);
  });

  it("passes a 503 through without retrying it (Istio >= 1.24)", async () => {
    const gw = await gateway(config(), { a: () => new Response("busy", { status: 503 }) });
    const res = await gw.run("/");
    expect([res.status, res.body, gw.sent.length]).toEqual([503, "busy", 1]);
  });

  it("does not retry a POST whose connection failed (it may have reached the origin)", async () => {
    const gw = await gateway(config(), { a: () => "refuse" });
    const res = await gw.run("/", { method: "POST", body: "order=1" });
    expect(res.status).toBe(503);
    expect(gw.sent).toHaveLength(1);
  });

  it("retries it with isthmus.dev/retry-non-idempotent, resending the same body", async () => {
    const gw = await gateway(config({ annotations: ', annotations: {isthmus.dev/retry-non-idempotent: "true"}' }), { a: () => "refuse" });
    const res = await gw.run("/", { method: "POST", body: "order=1" });
    expect(res.status).toBe(200);
    expect(gw.sent.map((s) => [s.host, s.body])).toEqual([
      ["a", "order=1"],
      ["b", "order=1"],
    ]);
  });

  it("sends a body larger than maxRetryBodyBytes once, unbuffered", async () => {
    const yaml = `${config({ annotations: ', annotations: {isthmus.dev/retry-non-idempotent: "true"}' })}
---
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: gw}
spec:
  limits: {maxRetryBodyBytes: 4}
`;
    const gw = await gateway(yaml, { a: () => "refuse" });
    const res = await gw.run("/", { method: "POST", body: "order=1" });
    expect(res.status).toBe(503);
    expect(res.flags).toEqual(["UF"]);
    expect(gw.sent).toHaveLength(1);
  });
});

describe("configured retries", () => {
  it("retries 5xx on endpoints not tried yet and returns the last response with URX when retries run out", async () => {
    const gw = await gateway(config({ route: '    retries: {attempts: 2, retryOn: 5xx}' }), {
      a: () => new Response("a broke", { status: 500 }),
      b: () => new Response("b broke", { status: 502 }),
      c: () => new Response("c broke", { status: 503 }),
    });
    const res = await gw.run("/");
    expect([res.status, res.body]).toEqual([503, "c broke"]);
    expect(res.flags).toEqual(["URX"]);
    expect(new Set(gw.sent.map((s) => s.host)).size).toBe(3);
  });

  it("retries the status codes listed in retryOn", async () => {
    const gw = await gateway(config({ route: '    retries: {attempts: 1, retryOn: "429"}' }), { a: () => new Response("slow down", { status: 429 }) });
    expect((await gw.run("/")).status).toBe(200);
    expect(gw.sent.map((s) => s.host)).toEqual(["a", "b"]);
  });

  it("bounds each attempt by perTryTimeout (504, then a retry elsewhere)", async () => {
    const gw = await gateway(config({ route: "    retries: {attempts: 1, perTryTimeout: 50ms, retryOn: 5xx}" }), { a: () => "hang" });
    const started = Date.now();
    const res = await gw.run("/");
    expect(res.status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    expect(gw.sent.map((s) => s.host)).toEqual(["a", "b"]);
  });

  it("logs a last attempt's per-try timeout with Envoy's details upstream_per_try_timeout (504 UT, as the route timeout)", async () => {
    const gw = await gateway(config({ route: "    retries: {attempts: 1, perTryTimeout: 30ms, retryOn: 5xx}" }), { a: () => "hang", b: () => "hang", c: () => "hang" });
    const res = await gw.run("/");
    expect([res.status, res.body, res.flags, res.details]).toEqual([504, "upstream request timeout", ["UT", "URX"], "upstream_per_try_timeout"]);
  });

  it("answers 504 UT when the route timeout passes, whatever retries remain", async () => {
    const gw = await gateway(config({ route: "    timeout: 120ms\n    retries: {attempts: 5, perTryTimeout: 50ms, retryOn: 5xx}" }), {
      a: () => "hang",
      b: () => "hang",
      c: () => "hang",
    });
    const started = Date.now();
    const res = await gw.run("/");
    const took = Date.now() - started;
    expect([res.status, res.body]).toEqual([504, "upstream request timeout"]);
    expect(res.flags).toEqual(["UT"]);
    expect(took).toBeGreaterThanOrEqual(110);
    expect(took).toBeLessThan(1_000);
    expect(gw.sent.length).toBeGreaterThanOrEqual(2);
    expect(gw.sent.length).toBeLessThanOrEqual(3);
  });

  it("stops retrying when the cluster's maxRetries are in use (flag UO)", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    let bCalls = 0;
    const gw = await gateway(config({ route: "    retries: {attempts: 2, retryOn: 5xx}", policy: "    connectionPool: {http: {maxRetries: 1}}" }), {
      a: () => new Response("a", { status: 500 }),
      b: async () => {
        if (++bCalls > 1) return new Response("b", { status: 500 });
        await gate;
        return new Response("b");
      },
      c: () => new Response("c", { status: 500 }),
    });
    // Round robin: the first request goes to a (500) and retries on b, which holds the one retry slot.
    const first = gw.run("/");
    await new Promise((r) => setTimeout(r, 30));
    // The second goes to b (500); its retry is refused.
    const second = await gw.run("/");
    expect([second.status, second.flags]).toEqual([500, ["UO"]]);
    release();
    expect((await first).status).toBe(200);
    expect(gw.sent.map((s) => s.host)).toEqual(["a", "b", "b"]);
  });
});

describe("circuit breaking", () => {
  it("answers 503 UO with Envoy's overflow body past http2MaxRequests", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const gw = await gateway(config({ policy: "    connectionPool: {http: {http2MaxRequests: 1}}" }), {
      a: async () => {
        await gate;
        return new Response("a");
      },
    });
    const first = gw.run("/");
    await new Promise((r) => setTimeout(r, 10));
    const second = await gw.run("/");
    expect([second.status, second.body, second.flags]).toEqual([503, "upstream connect error or disconnect/reset before headers. reset reason: overflow", ["UO"]]);
    release();
    expect((await first).status).toBe(200);
  });

  it("lets http1MaxPendingRequests wait for a slot", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const gw = await gateway(config({ policy: "    connectionPool: {http: {http2MaxRequests: 1, http1MaxPendingRequests: 1}}" }), {
      a: async () => {
        await gate;
        return new Response("a");
      },
    });
    const first = gw.run("/");
    await new Promise((r) => setTimeout(r, 10));
    const waiting = gw.run("/");
    const third = await gw.run("/");
    expect(third.status).toBe(503);
    release();
    expect((await first).status).toBe(200);
    expect((await waiting).status).toBe(200);
  });
});

describe("outlier detection", () => {
  const od = "    outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 50}";

  it("ejects an endpoint after consecutive 5xx and stops sending to it", async () => {
    const gw = await gateway(config({ policy: od, route: "    retries: {attempts: 0}" }), { b: () => new Response("b", { status: 500 }) });
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push((await gw.run("/")).status);
    const toB = gw.sent.filter((s) => s.host === "b").length;
    expect(toB).toBe(2);
    expect(statuses.filter((s) => s === 500)).toHaveLength(2);
  });
});

describe("mirrors", () => {
  it("go through the shadow cluster's own load balancing: an ejected endpoint gets no copies", async () => {
    const yaml = `${config()}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shadow, namespace: shop}
spec:
  hosts: [shadow.shop.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: s1.internal}, {address: s2.internal}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shadow, namespace: shop}
spec:
  host: shadow.shop.internal
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 50}
`.replace(
      "  http:\n  - route: [{destination: {host: app.shop.internal}}]",
      "  http:\n  - match: [{uri: {prefix: /direct}}]\n    retries: {attempts: 0}\n    route: [{destination: {host: shadow.shop.internal}}]\n  - route: [{destination: {host: app.shop.internal}}]\n    mirror: {host: shadow.shop.internal}",
    );
    const gw = await gateway(yaml, { s1: () => new Response("s1 down", { status: 503 }) });
    // Direct traffic to the shadow service finds s1 failing: it is ejected.
    for (let i = 0; i < 4; i++) await gw.run("/direct");
    expect(gw.sent.filter((s) => s.host === "s1")).toHaveLength(1);
    const before = gw.sent.length;
    for (let i = 0; i < 10; i++) expect((await gw.run("/m")).status).toBe(200);
    await Promise.all(gw.pending);
    const copies = gw.sent.slice(before).filter((s) => s.host.startsWith("s"));
    expect(copies.map((s) => s.host)).toEqual(Array(10).fill("s2"));
  });
});

describe("consistent hashing", () => {
  const hashed = (key: string) => `    loadBalancer: {consistentHash: {${key}}}`;

  it("keeps a header value on one endpoint", async () => {
    const gw = await gateway(config({ policy: hashed("httpHeaderName: x-user") }).replace("    loadBalancer: {simple: ROUND_ROBIN}\n", ""), {});
    for (const user of ["ann", "bob", "cy", "dee"]) {
      const before = gw.sent.length;
      for (let i = 0; i < 5; i++) await gw.run("/", { headers: { "x-user": user } });
      expect(new Set(gw.sent.slice(before).map((s) => s.host)).size).toBe(1);
    }
  });

  it("generates the cookie when it is missing and ttl is set, then hashes on it", async () => {
    const gw = await gateway(config({ policy: hashed("httpCookie: {name: affinity, path: /, ttl: 60s}") }).replace("    loadBalancer: {simple: ROUND_ROBIN}\n", ""), {});
    const first = await gw.run("/");
    const cookie = first.headers.get("set-cookie") ?? "";
    expect(cookie).toMatch(/^affinity="[0-9a-f]{16}"; Max-Age=60; Path=\/; HttpOnly$/);
    const value = cookie.split(";")[0] as string;
    const host = gw.sent.at(-1)?.host;
    for (let i = 0; i < 5; i++) {
      const res = await gw.run("/", { headers: { cookie: value } });
      expect(res.headers.get("set-cookie")).toBeNull();
      expect(gw.sent.at(-1)?.host).toBe(host);
    }
  });

  it("retries on the same endpoint (Istio drops previous_hosts for hashed clusters)", async () => {
    const gw = await gateway(config({ policy: hashed("httpHeaderName: x-user") }).replace("    loadBalancer: {simple: ROUND_ROBIN}\n", ""), { a: () => "refuse", b: () => "refuse", c: () => "refuse" });
    await gw.run("/", { headers: { "x-user": "ann" } });
    expect(new Set(gw.sent.map((s) => s.host)).size).toBe(1);
    expect(gw.sent).toHaveLength(3);
  });
});

describe("locality from request.cf", () => {
  const yaml = `${config({
    endpoints: endpoints(["fra", "fra2", "iad", "sfo"], (n) => ({ fra: "gcp/europe-west3/a", fra2: "gcp/europe-west3/b", iad: "aws/us-east-1/a", sfo: "aws/us-west-1/a" })[n] as string),
    policy: "    outlierDetection: {consecutive5xxErrors: 1, maxEjectionPercent: 100}",
    route: "    retries: {attempts: 4, retryOn: 5xx, retryRemoteLocalities: true}",
  })}
---
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: gw}
spec:
  locality:
    rules:
    - {match: {colos: [FRA, AMS]}, locality: gcp/europe-west3/a}
    - {match: {continents: [NA]}, locality: aws/us-east-1/a}
`;

  it("sends each request to the endpoints nearest the Cloudflare location that received it", async () => {
    const gw = await gateway(yaml, {});
    await gw.run("/", { cf: { colo: "FRA", country: "DE", continent: "EU" } });
    await gw.run("/", { cf: { colo: "AMS", country: "NL", continent: "EU" } });
    await gw.run("/", { cf: { colo: "DFW", country: "US", continent: "NA" } });
    expect(gw.sent.map((s) => s.host)).toEqual(["fra", "fra", "iad"]);
  });

  it("moves retries to other localities after two attempts with retryRemoteLocalities", async () => {
    const gw = await gateway(yaml.replace("consecutive5xxErrors: 1", "consecutive5xxErrors: 0"), { fra: () => new Response("", { status: 503 }), fra2: () => new Response("", { status: 503 }) });
    const res = await gw.run("/", { cf: { colo: "FRA" } });
    expect(res.status).toBe(200);
    // Envoy's previous_priorities, update frequency 2: attempts 1–2 on P0 (same zone), 3–4 leave P0 out
    // (P1: same region), 5 leaves P0 and P1 out (another region).
    expect(gw.sent.map((s) => s.host)).toEqual(["fra", "fra", "fra2", "fra2", expect.stringMatching(/^(iad|sfo)$/)]);
  });
});

describe("mTLS origination", () => {
  const mutual = config({ policy: "    tls: {mode: MUTUAL, credentialName: ORIGIN_CERT}" });

  it("sends through the binding named by credentialName, over https", async () => {
    const through: string[] = [];
    const gw = await gateway(mutual, {}, {
      binding: (name) => (name === "ORIGIN_CERT" ? async (url) => (through.push(new URL(url).href), new Response("via binding")) : undefined),
    });
    const res = await gw.run("/x");
    expect([res.status, res.body]).toEqual([200, "via binding"]);
    expect(through[0]).toMatch(/^https:\/\/[abc]\.internal:80\/x$/);
    expect(gw.sent).toHaveLength(0);
  });

  it("mirrors to an mTLS cluster through its binding too", async () => {
    const yaml = `${config()}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shadow, namespace: shop}
spec:
  hosts: [shadow.shop.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 443, name: https, protocol: HTTP}]
  endpoints: [{address: shadow.internal}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shadow, namespace: shop}
spec:
  host: shadow.shop.internal
  trafficPolicy: {tls: {mode: MUTUAL, credentialName: SHADOW_CERT}}
`.replace("  - route: [{destination: {host: app.shop.internal}}]", "  - route: [{destination: {host: app.shop.internal}}]\n    mirror: {host: shadow.shop.internal}");
    const through: string[] = [];
    const gw = await gateway(yaml, {}, { binding: (name) => (name === "SHADOW_CERT" ? async (url) => (through.push(new URL(url).href), new Response("shadow")) : undefined) });
    expect((await gw.run("/m")).status).toBe(200);
    await Promise.all(gw.pending);
    expect(through).toEqual(["https://shadow.internal/m"]);
    expect(gw.sent.map((s) => s.host)).not.toContain("shadow");
  });

  it("answers 503 UF when the binding is missing", async () => {
    const gw = await gateway(mutual, {}, { binding: () => undefined });
    const res = await gw.run("/");
    expect([res.status, res.flags]).toEqual([503, ["UF"]]);
  });
});

describe("client-certificate bindings", () => {
  it("never fetches through one of the gateway's own bindings, even when a stored snapshot names one", () => {
    const fetcher = { fetch: () => Promise.resolve(new Response("store")) };
    expect(bindingFetch({ CONFIG_STORE: fetcher, ORIGIN_CERT: fetcher }, "CONFIG_STORE")).toBeUndefined();
    expect(bindingFetch({ CONFIG_STORE: fetcher, ORIGIN_CERT: fetcher }, "ORIGIN_CERT")).toBeTypeOf("function");
  });
});
