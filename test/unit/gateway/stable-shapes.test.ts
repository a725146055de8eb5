/**
 * The per-request objects keep the shape they were created with. An object
 * that gains properties one by one goes through map transitions V8 holds
 * only weakly; a major GC that finds no live object of such a map frees it
 * and deoptimizes every function that embedded it (measured in
 * bench/NOTES.md, tenth pass: ~35 functions recompiled after every major
 * GC under the realistic config). So whatever a request goes through —
 * forwarded, retried, denied, limited, aborted, redirected, unrouted — its
 * record, context and facts have exactly the fields their constructors
 * gave them, in the order they gave them.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newRecord } from "../../../src/gateway/context.ts";
import { runPipeline, type PipelineDeps } from "../../../src/gateway/pipeline.ts";
import { ingress } from "../../../src/gateway/ingress.ts";
import { rateLimitEnv } from "../../../src/ratelimit/decide.ts";
import { Balancer } from "../../../src/routing/balancer.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import { responseHead } from "../../../src/telemetry/completed.ts";
import { doc, serviceEntry, snapshotOf, virtualService } from "../support.ts";

const runtime = hydrate(
  await snapshotOf(
    serviceEntry("api", ["api.internal"], { location: "MESH_INTERNAL", resolution: "STATIC", ports: [{ number: 8080, name: "http" }], endpoints: [{ address: "10.0.0.1" }] }),
    virtualService(
      "v",
      ["shop.test"],
      [
        { name: "moved", match: [{ uri: { prefix: "/old" } }], redirect: { uri: "/new" } },
        { name: "broken", match: [{ uri: { prefix: "/broken" } }], fault: { abort: { httpStatus: 503, percentage: { value: 100 } } }, route: [{ destination: { host: "api.internal" } }] },
        {
          name: "api",
          match: [{ uri: { prefix: "/" } }],
          route: [{ destination: { host: "api.internal" }, weight: 90 }, { destination: { host: "api.internal" }, weight: 10 }],
          retries: { attempts: 2, perTryTimeout: "1s", retryOn: "5xx" },
          headers: { response: { set: { "x-route": "api" } } },
        },
      ],
      {},
      "istio-system",
    ),
    doc("AuthorizationPolicy", "no-admin", { action: "DENY", rules: [{ to: [{ operation: { paths: ["/admin*"] } }] }] }, "istio-system"),
    doc("RateLimitPolicy", "per-user", { rules: [{ name: "per-user", key: ["request.headers[x-user]"], limits: [{ requests: 2, unit: "day" }], decisionTimeout: "10s" }] }, "istio-system"),
  ),
);

let upstreamCalls = 0;
const deps: PipelineDeps = {
  // Every other upstream answer is a 503, so the first forwarded request is retried.
  fetch: async () => {
    const busy = upstreamCalls++ % 2 === 0;
    return new Response(busy ? "busy" : "ok", { status: busy ? 503 : 200 });
  },
  balancer: new Balancer(() => 0),
  random: () => 0.5,
  requestId: () => "rid",
  now: () => Date.now(),
  sleep: (ms) => scheduler.wait(ms),
  rateLimits: rateLimitEnv(env.RATE_LIMITER),
};

/** Own keys in creation order: a key added later, even one deleted and set again, shows up out of place. */
const keys = (o: object) => Object.keys(o);
const request = (path: string, headers: Record<string, string> = {}) =>
  new Request(`http://shop.test${path}`, { headers: { "cf-connecting-ip": "203.0.113.7", "x-user": `u${path}`, ...headers } });

describe("per-request objects", () => {
  const fresh = ingress(request("/"), runtime.snapshot.settings, deps);
  if (!fresh.ok) throw new Error("the sample request must pass ingress");

  it.each([
    ["forwarded after a retry", "/items", {}, 200],
    ["denied by a policy", "/admin/users", {}, 403],
    ["aborted by a fault", "/broken", {}, 503],
    ["redirected", "/old/page", {}, 301],
  ] as const)("keep their shape when the request is %s", async (_what, path, headers, status) => {
    const result = await runPipeline(request(path, headers), runtime, deps);
    expect(result.response.status).toBe(status);
    expect(keys(result.record)).toEqual(keys(newRecord(0)));
    const context = result.context;
    if (!context) throw new Error("a request past ingress has a context");
    expect(keys(context.facts)).toEqual(keys(fresh.facts));
    expect(keys(context)).toEqual(["request", "snapshot", "settings", "deps", "facts", "record", "waitUntil", "responseHooks", "vhost", "route", "destination", "cluster", "passthrough", "preAuthHeaders", "routeHeadersApplied", "responseHead"]);
    expect(keys(result)).toEqual(["response", "record", "context"]);
  });

  it("keep their shape when the request is rate limited", async () => {
    const statuses: number[] = [];
    let last;
    for (let i = 0; i < 3; i++) {
      last = await runPipeline(request("/limited", { "x-user": "limited-user" }), runtime, deps);
      statuses.push(last.response.status);
    }
    expect(statuses.at(-1)).toBe(429);
    expect(keys(last?.record ?? {})).toEqual(keys(newRecord(0)));
  });

  it("keep their shape when no route matches", async () => {
    const result = await runPipeline(new Request("http://elsewhere.test/", { headers: { "cf-connecting-ip": "203.0.113.7" } }), runtime, deps);
    expect(result.response.status).toBe(404);
    expect(keys(result.record)).toEqual(keys(newRecord(0)));
  });
});

describe("telemetry's per-request objects", () => {
  const ATTEMPT = ["attempt", "endpoint", "url", "start", "end", "outcome", "status", "spanId", "ejected"];

  it.each([100, 0])("keep their shape: the attempt timings of a retried request (traces sampled at %d%%) and the response head", async (percent) => {
    const traced = hydrate(
      await snapshotOf(
        serviceEntry("api", ["api.internal"], { location: "MESH_INTERNAL", resolution: "STATIC", ports: [{ number: 8080, name: "http" }], endpoints: [{ address: "10.0.0.1" }] }),
        virtualService("v", ["shop.test"], [{ route: [{ destination: { host: "api.internal" } }], retries: { attempts: 2, perTryTimeout: "1s", retryOn: "5xx" } }], {}, "istio-system"),
        doc("GatewayConfig", "isthmus", { extensionProviders: [{ name: "otel", opentelemetry: { endpoint: "http://otlp.test", signals: ["traces"] } }] }, "istio-system"),
        doc("Telemetry", "mesh", { tracing: [{ providers: [{ name: "otel" }], randomSamplingPercentage: percent }] }, "istio-system"),
      ),
    );
    upstreamCalls = 0;
    const result = await runPipeline(request("/items"), traced, deps);
    expect(result.response.status).toBe(200);
    const attempts = result.record.upstreamAttempts ?? [];
    expect(attempts.map((a) => a.status)).toEqual([503, 200]);
    for (const a of attempts) expect(keys(a)).toEqual(ATTEMPT);
    expect(keys(responseHead(result.response))).toEqual(["status", "bytes", "contentType", "grpcStatus", "contentLength", "contentEncoding"]);
  });
});
