/**
 * When the trace is decided. Every Telemetry plan sampling at one rate (a
 * mesh-wide Telemetry, the common case): as the request enters, before
 * authorization runs, as Envoy decides before its filters; the stages and
 * upstream attempts of a trace that is not sampled are then not timed (the
 * times serve only spans), and the generated x-request-id is not read back
 * or rewritten. Plans sampling at different rates: once routing has picked
 * the cluster, whose plan's rate applies.
 */
import { describe, expect, it } from "vitest";
import { runPipeline, type PipelineDeps } from "../../src/gateway/pipeline.ts";
import { hydrate } from "../../src/routing/hydrate.ts";
import { memoryDeps } from "../../bench/pipeline-harness.ts";
import { doc, serviceEntry, snapshotOf, virtualService, type Doc } from "../unit/support.ts";

const REQUEST_ID = "6b1f3a52-9c0d-4e7a-8f21-0a1b2c3d4e5f";

/** A host routed to one endpoint in namespace `ns`, behind an AuthorizationPolicy (a timed stage). */
const app = (ns: string, host: string): Doc[] => [
  virtualService("app", [host], [{ route: [{ destination: { host: `app.${ns}.internal` } }] }], {}, ns),
  serviceEntry("app", [`app.${ns}.internal`], { location: "MESH_INTERNAL", resolution: "STATIC", endpoints: [{ address: "127.0.0.1", ports: { http: 8080 } }] }, ns),
  doc("AuthorizationPolicy", "open", { action: "ALLOW", rules: [{ to: [{ operation: { methods: ["GET"] } }] }] }, ns),
];

const tracing = (ns: string, entry: Record<string, unknown>) => doc("Telemetry", "tracing", { tracing: [entry] }, ns);
const telemetry = (ns: string, percent: number) => tracing(ns, { providers: [{ name: "otel" }], randomSamplingPercentage: percent });

const PROVIDER = doc("GatewayConfig", "isthmus", { extensionProviders: [{ name: "otel", opentelemetry: { endpoint: "http://otlp.test.example", signals: ["traces"] } }] }, "istio-system");

async function gateway(...docs: Doc[]) {
  const runtime = hydrate(await snapshotOf(PROVIDER, ...app("shop", "shop.example.com"), ...app("quiet", "quiet.example.com"), ...docs));
  let clockReads = 0;
  const sent: Request[] = [];
  const deps: PipelineDeps = {
    ...memoryDeps(),
    requestId: () => REQUEST_ID,
    now: () => (clockReads++, 1_000),
    fetch: async (url, init) => {
      sent.push(new Request(url, init));
      return new Response("ok", { headers: { "content-length": "2" } });
    },
  };
  const serve = async (host: string) => {
    clockReads = 0;
    const { response, record } = await runPipeline(new Request(`http://${host}/items`, { headers: { host } }), runtime, deps);
    const upstream = sent.at(-1) as Request;
    return { status: response.status, record, clockReads, requestId: upstream.headers.get("x-request-id"), traceparent: upstream.headers.get("traceparent") };
  };
  return { runtime, serve };
}

describe("the trace decision", () => {
  it("is made as the request enters when every plan samples at one rate", async () => {
    const sampled = await gateway(telemetry("istio-system", 100));
    expect(sampled.runtime.telemetry?.sampling).toBe(100);
    const traced = await sampled.serve("shop.example.com");
    expect(traced.status).toBe(200);
    expect(traced.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    // Envoy's sampled mark, written once.
    expect(traced.requestId).toBe(`${REQUEST_ID.slice(0, 14)}9${REQUEST_ID.slice(15)}`);
    expect(traced.record.stages?.map((s) => s.name)).toEqual(["authorization"]);
    expect(traced.record.upstreamAttempts?.[0]?.start).toBe(1_000);

    const unsampled = await gateway(telemetry("istio-system", 0));
    expect(unsampled.runtime.telemetry?.sampling).toBe(0);
    const plain = await unsampled.serve("shop.example.com");
    expect(plain.status).toBe(200);
    expect(plain.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    expect(plain.requestId).toBe(REQUEST_ID);
    // Nothing a span would need is timed: no stages, attempts at 0, fewer clock reads.
    expect(plain.record.stages).toBeUndefined();
    expect(plain.record.upstreamAttempts?.[0]).toMatchObject({ start: 0, end: 0, status: 200 });
    expect(plain.clockReads).toBeLessThan(traced.clockReads - 3);
  });

  it("waits for routing when plans sample at different rates, and each destination gets its plan's rate", async () => {
    const mixed = await gateway(telemetry("istio-system", 100), telemetry("quiet", 0));
    expect(mixed.runtime.telemetry?.sampling).toBeUndefined();
    const shop = await mixed.serve("shop.example.com");
    expect(shop.traceparent).toMatch(/-01$/);
    expect(shop.requestId?.[14]).toBe("9");
    // Undecided while authorization ran: timed in case the trace is sampled.
    expect(shop.record.stages?.map((s) => s.name)).toEqual(["authorization"]);
    const quiet = await mixed.serve("quiet.example.com");
    expect(quiet.traceparent).toMatch(/-00$/);
    expect(quiet.requestId).toBe(REQUEST_ID);
    expect(quiet.record.upstreamAttempts?.[0]).toMatchObject({ start: 0, end: 0 });
  });

  it("is not made at entry when some traffic is not traced", async () => {
    const partial = await gateway(telemetry("istio-system", 100), tracing("quiet", { providers: [{ name: "zipkin" }] }));
    expect(partial.runtime.telemetry?.sampling).toBeUndefined();
    const quiet = await partial.serve("quiet.example.com");
    // No tracing for this traffic: no context is sent, and x-request-id stays as generated.
    expect(quiet.traceparent).toBeNull();
    expect(quiet.requestId).toBe(REQUEST_ID);
    expect(quiet.record.trace).toBeUndefined();
    expect((await partial.serve("shop.example.com")).traceparent).toMatch(/-01$/);
  });
});
