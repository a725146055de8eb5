/**
 * Tracing through the pipeline and Telemetry together: what goes upstream,
 * what is exported (OTLP/JSON, captured in process) and what the access log
 * shows, for `disableSpanReporting`, a trace decided only once the request
 * is reported, and the resource's `service.instance.id`.
 */
import { describe, expect, it } from "vitest";
import { buildConfig } from "../../src/config/build.ts";
import { runPipeline } from "../../src/gateway/pipeline.ts";
import { hydrate } from "../../src/routing/hydrate.ts";
import { Telemetry } from "../../src/telemetry/telemetry.ts";
import { minimal } from "../../bench/configs.ts";
import { memoryDeps } from "../../bench/pipeline-harness.ts";

/** The id ingress generates in memoryDeps (a version 4 UUID: "not sampled"), and with Envoy's sampled mark. */
const REQUEST_ID = "00000000-0000-4000-8000-000000000000";
const SAMPLED_ID = "00000000-0000-9000-8000-000000000000";
const CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_PARENT = `00-${CLIENT_TRACE}-b7ad6b7169203331-01`;

/** The one-route config with an OTLP/JSON provider of every signal, flushing spans and logs after each request. */
const config = (telemetry: string, settings = "") => `${minimal(8080).yaml}---
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus, namespace: istio-system}
spec:
  telemetry: {flushRequests: 1${settings}}
  extensionProviders:
  - name: otel
    opentelemetry: {endpoint: "http://otlp.test.example", protocol: http/json, signals: [traces, metrics, logs]}
${telemetry}`;

const meshTelemetry = (spec: string, name = "mesh-default", namespace = "istio-system") => `---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: ${name}, namespace: ${namespace}}
spec:
  ${spec}
`;

interface Export {
  signal: string;
  body: { resourceSpans?: { resource: { attributes: { key: string; value: { stringValue?: string } }[] }; scopeSpans: { spans: { attributes: { key: string; value: { stringValue?: string } }[] }[] }[] }[] };
}

/** A gateway (pipeline + Telemetry, one isolate) whose upstream requests and OTLP exports are captured. */
async function gateway(yaml: string) {
  const built = await buildConfig([{ path: "test.yaml", text: yaml }]);
  if (!built.snapshot) throw new Error(JSON.stringify(built.problems));
  const runtime = hydrate(built.snapshot);
  const exports: Export[] = [];
  const lines: string[] = [];
  const telemetry = new Telemetry({
    fetch: async (url, init) => {
      exports.push({ signal: String(url).split("/").pop() as string, body: JSON.parse(await new Response(init?.body).text()) as Export["body"] });
      return new Response(null, { status: 200 });
    },
    now: () => Date.now(),
    // No flush at the end of an interval: a request without spans or logs to send holds only that one.
    sleep: () => Promise.reject(new Error("no scheduled flush in these tests")),
    random: Math.random,
    secret: () => undefined,
    log: () => {},
    write: (line) => void lines.push(line),
  });
  const upstream: Headers[] = [];
  const deps = { ...memoryDeps(), fetch: async (_url: string | URL | Request, init?: RequestInit) => (upstream.push(new Headers(init?.headers)), new Response("ok", { headers: { "content-length": "2" } })) };
  const serve = async (host: string, headers: Record<string, string> = {}) => {
    const request = new Request(`http://${host}/items`, { headers: { host, ...headers } });
    const held: Promise<unknown>[] = [];
    const response = telemetry.observe(request, await runPipeline(request, runtime, deps, () => {}), runtime, (p) => void held.push(p));
    await response.text();
    await Promise.allSettled(held);
    return response.status;
  };
  const spans = () => exports.filter((e) => e.signal === "traces").flatMap((e) => e.body.resourceSpans ?? []).flatMap((r) => r.scopeSpans.flatMap((s) => s.spans));
  return { runtime, serve, upstream, exports, spans, lines };
}

const attribute = (attributes: { key: string; value: { stringValue?: string } }[], key: string) => attributes.find((a) => a.key === key)?.value.stringValue;

describe("disableSpanReporting", () => {
  it("keeps propagation, sampling and the x-request-id mark, and only stops exporting spans", async () => {
    for (const disabled of [false, true]) {
      const gw = await gateway(config(meshTelemetry(`tracing: [{randomSamplingPercentage: 100, disableSpanReporting: ${disabled}}]`)));
      // A request without trace context: the gateway starts the trace, samples it and marks the id.
      expect(await gw.serve("app.bench.example.com")).toBe(200);
      const [fresh] = gw.upstream;
      expect(fresh?.get("traceparent"), `disableSpanReporting: ${disabled}`).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      expect(fresh?.get("x-request-id")).toBe(SAMPLED_ID);
      // A client's trace is joined: same trace id, the gateway's CLIENT span as parent.
      expect(await gw.serve("app.bench.example.com", { traceparent: CLIENT_PARENT })).toBe(200);
      const joined = gw.upstream[1]?.get("traceparent");
      expect(joined).toMatch(new RegExp(`^00-${CLIENT_TRACE}-[0-9a-f]{16}-01$`));
      expect(joined).not.toBe(CLIENT_PARENT);
      // Spans go out only when reported.
      expect(gw.spans().length > 0).toBe(!disabled);
    }
  });
});

describe("a trace decided when the request is reported", () => {
  it("marks x-request-id as the early decision does, so the access log and the span show the marked id", async () => {
    // Plans sampling at different rates: the trace waits for routing, and a 404 (no route) is decided in report().
    const gw = await gateway(
      config(
        meshTelemetry("tracing: [{randomSamplingPercentage: 100}]\n  accessLogging: [{providers: [{name: envoy}]}]") +
          meshTelemetry("tracing: [{randomSamplingPercentage: 0}]", "bench-quiet", "bench"),
      ),
    );
    expect(gw.runtime.telemetry?.sampling).toBeUndefined();
    expect(await gw.serve("unknown.example.com")).toBe(404);
    expect(JSON.parse(gw.lines[0] as string)).toMatchObject({ response_code: 404, request_id: SAMPLED_ID });
    const [server] = gw.spans();
    expect(attribute(server?.attributes ?? [], "guid:x-request-id")).toBe(SAMPLED_ID);
    // Routed traffic in the namespace sampled at 0: the id keeps "not sampled".
    expect(await gw.serve("app.bench.example.com")).toBe(200);
    expect(JSON.parse(gw.lines[1] as string)).toMatchObject({ response_code: 200, request_id: REQUEST_ID });
  });
});

describe("service.instance.id", () => {
  it("stays unique per isolate when resourceAttributes sets one: the isolate's id is appended to the value given", async () => {
    const yaml = config(meshTelemetry("tracing: [{randomSamplingPercentage: 100}]"), ", resourceAttributes: {service.instance.id: edge-prod}");
    const ids: (string | undefined)[] = [];
    for (let isolate = 0; isolate < 2; isolate++) {
      const gw = await gateway(yaml);
      expect(await gw.serve("app.bench.example.com")).toBe(200);
      const resource = gw.exports.find((e) => e.signal === "traces")?.body.resourceSpans?.[0]?.resource;
      ids.push(attribute(resource?.attributes ?? [], "service.instance.id"));
    }
    for (const id of ids) expect(id).toMatch(/^edge-prod-[0-9a-f]{16}-[0-9a-f]{16}$/);
    expect(ids[0]).not.toBe(ids[1]);
  });
});
