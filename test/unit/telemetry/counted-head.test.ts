/**
 * With telemetry on, the response's head (its size on the wire for
 * istio_response_bytes, and the values telemetry reads) is counted when the
 * gateway copies the upstream's response, in the pass that finds its
 * hop-by-hop headers, instead of read again at the end. Whatever the
 * request goes through, a counted head must equal what reading the final
 * response gives; where later changes would make it differ (header
 * operations, the consistent-hash cookie, response hooks) it is not used.
 */
import { describe, expect, it } from "vitest";
import { runPipeline, type PipelineDeps } from "../../../src/gateway/pipeline.ts";
import { Balancer } from "../../../src/routing/balancer.ts";
import { countedDownstreamResponse } from "../../../src/routing/forward.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import { responseHead, responseHeadWithout } from "../../../src/telemetry/completed.ts";
import { doc, serviceEntry, snapshotOf, virtualService } from "../support.ts";

/** What an HTTP/1.1 upstream behind keep-alive answers, with every hop-by-hop header and a service time of its own. */
const upstreamHeaders = () => ({
  "content-type": "application/json",
  "content-length": "9",
  connection: "keep-alive",
  "keep-alive": "timeout=5",
  "proxy-connection": "keep-alive",
  trailer: "x-checksum",
  upgrade: "h2c",
  "x-envoy-upstream-service-time": "999",
  "x-app": "a, b",
});

const deps: PipelineDeps = {
  fetch: async () => new Response('{"ok":1}\n', { status: 200, headers: upstreamHeaders() }),
  balancer: new Balancer(() => 0),
  random: () => 0.5,
  requestId: () => "rid",
  now: () => Date.now(),
  sleep: (ms) => scheduler.wait(ms),
};

const api = serviceEntry("api", ["api.internal"], { location: "MESH_INTERNAL", resolution: "STATIC", ports: [{ number: 8080, name: "http" }], endpoints: [{ address: "10.0.0.1" }] });
const telemetry = [
  doc("GatewayConfig", "isthmus", { extensionProviders: [{ name: "otel", opentelemetry: { endpoint: "http://otlp.test", signals: ["metrics", "traces"] } }] }, "istio-system"),
  doc("Telemetry", "mesh", { metrics: [{ providers: [{ name: "otel" }] }], tracing: [{ providers: [{ name: "otel" }], randomSamplingPercentage: 1 }] }, "istio-system"),
];
const route = (extra: Record<string, unknown> = {}) => virtualService("v", ["shop.test"], [{ route: [{ destination: { host: "api.internal" } }], ...extra }], {}, "istio-system");
const request = (headers: Record<string, string> = {}) => new Request("http://shop.test/items", { headers: { "cf-connecting-ip": "203.0.113.7", ...headers } });

async function run(docs: Parameters<typeof snapshotOf>, headers?: Record<string, string>) {
  const result = await runPipeline(request(headers), hydrate(await snapshotOf(...docs)), deps);
  expect(result.response.status).toBe(200);
  return { counted: result.context?.responseHead, final: responseHead(result.response), response: result.response };
}

describe("the response head counted as the upstream's response is copied", () => {
  it("leaves out the hop-by-hop headers it finds, which alone are deleted, and the upstream's service time", () => {
    const response = new Response("x", { status: 201, headers: upstreamHeaders() });
    const { head, present } = responseHeadWithout(response, new Set(["connection", "keep-alive", "te", "x-envoy-upstream-service-time"]));
    expect(present).toEqual(["connection", "keep-alive", "x-envoy-upstream-service-time"]);
    expect(head).toEqual({
      status: 201,
      bytes: ["content-type: application/json", "content-length: 9", "proxy-connection: keep-alive", "trailer: x-checksum", "upgrade: h2c", "x-app: a, b"].reduce((n, line) => n + line.length + 2, 0),
      contentType: "application/json",
      grpcStatus: "",
      contentLength: "9",
      contentEncoding: "",
    });

    const copied = countedDownstreamResponse(response);
    expect([...copied.response.headers.keys()]).toEqual(["content-length", "content-type", "x-app"]);
    expect(copied.head).toEqual(responseHead(copied.response));
  });

  it("equals the final response's head for a forwarded request with telemetry on, the service time included", async () => {
    const { counted, final, response } = await run([api, route(), ...telemetry]);
    expect(counted).toBeDefined();
    expect(counted).toEqual(final);
    expect(response.headers.get("x-envoy-upstream-service-time")).not.toBe("999");
    for (const name of ["connection", "keep-alive", "proxy-connection", "trailer", "upgrade"]) expect(response.headers.has(name)).toBe(false);
  });

  it.each([
    ["the route sets response headers", [api, route({ headers: { response: { set: { "x-route": "api" }, remove: ["x-app"] } } }), ...telemetry], {}, "x-route"],
    ["the destination adds response headers", [api, route({ route: [{ destination: { host: "api.internal" }, headers: { response: { add: { "x-dest": "1" } } } }] }), ...telemetry], {}, "x-dest"],
    [
      "the consistent-hash cookie is set",
      [
        api,
        route(),
        doc("DestinationRule", "api", { host: "api.internal", trafficPolicy: { loadBalancer: { consistentHash: { httpCookie: { name: "affinity", path: "/", ttl: "60s" } } } } }, "istio-system"),
        ...telemetry,
      ],
      {},
      "set-cookie",
    ],
    ["a response hook adds CORS headers", [api, route({ corsPolicy: { allowOrigins: [{ exact: "https://app.test" }], allowMethods: ["GET"] } }), ...telemetry], { origin: "https://app.test" }, "access-control-allow-origin"],
  ] as const)("is not used when %s: telemetry reads the final headers", async (_what, docs, headers, changed) => {
    const { counted, response } = await run([...docs] as Parameters<typeof snapshotOf>, headers);
    expect(counted).toBeUndefined();
    // The case did change the response after the copy.
    expect(response.headers.has(changed)).toBe(true);
  });

  it("is not counted with telemetry off", async () => {
    const { counted, response } = await run([api, route()]);
    expect(counted).toBeUndefined();
    expect([...response.headers.keys()]).toEqual(["content-length", "content-type", "x-app", "x-envoy-upstream-service-time"]);
  });
});

describe("headers the upstream's Connection names (RFC 9110 §7.6.1)", () => {
  const naming: PipelineDeps = {
    ...deps,
    fetch: async () => new Response("{}", { headers: { "content-type": "application/json", connection: "x-secret, Keep-Alive", "x-secret": "internal", "keep-alive": "timeout=5", "x-app": "1" } }),
  };
  const served = async (docs: Parameters<typeof snapshotOf>) => {
    const result = await runPipeline(request(), hydrate(await snapshotOf(...docs)), naming);
    return { keys: [...result.response.headers.keys()], counted: result.context?.responseHead, final: responseHead(result.response) };
  };

  it("are not forwarded to the client, with telemetry off or on (and then not counted)", async () => {
    const off = await served([api, route()]);
    expect(off.keys).toEqual(["content-type", "x-app", "x-envoy-upstream-service-time"]);
    const on = await served([api, route(), ...telemetry]);
    expect(on.keys).toEqual(off.keys);
    expect(on.counted).toEqual(on.final);
  });
});
