/**
 * Telemetry.observe on the request path: a request whose body goes out
 * with its headers is reported at once, holds a waitUntil only when an
 * export is due or must be scheduled, and a failure while reporting never
 * reaches the client; `request.cf`, which Cloudflare builds for a request on
 * its first read, is read only by what needs it.
 */
import { describe, expect, it } from "vitest";
import { buildConfig } from "../../src/config/build.ts";
import { runPipeline } from "../../src/gateway/pipeline.ts";
import { hydrate } from "../../src/routing/hydrate.ts";
import { Telemetry, type TelemetryDeps } from "../../src/telemetry/telemetry.ts";
import { PrometheusRegistry } from "../../src/telemetry/prometheus.ts";
import { minimal } from "../../bench/configs.ts";
import { memoryDeps } from "../../bench/pipeline-harness.ts";

/** The benchmark's one-route config, with an OTLP provider and Istio's metrics on. */
const YAML = `${minimal(8080).yaml}---
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus, namespace: istio-system}
spec:
  extensionProviders:
  - name: otel
    opentelemetry: {endpoint: "http://otlp.test.example", signals: [traces, metrics, logs]}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  metrics: [{providers: [{name: otel}]}]
`;

async function setup(deps: Partial<TelemetryDeps> = {}, yaml = YAML) {
  const built = await buildConfig([{ path: "test.yaml", text: yaml }]);
  if (!built.snapshot) throw new Error(JSON.stringify(built.problems));
  const runtime = hydrate(built.snapshot);
  const logged: string[] = [];
  const telemetry = new Telemetry({
    fetch: async () => new Response(null, { status: 200 }),
    now: () => Date.now(),
    sleep: () => new Promise(() => {}),
    random: Math.random,
    secret: () => undefined,
    log: (message) => void logged.push(message),
    ...deps,
  });
  // One random source for the pipeline and telemetry, as the Worker has (either may decide a request's trace).
  const pipelineDeps = { ...memoryDeps(), ...(deps.random ? { random: deps.random } : {}) };
  const serve = async (waitUntil: (p: Promise<unknown>) => void, prepare?: (request: Request) => void) => {
    // As Cloudflare delivers it: CF-Connecting-IP names the client.
    const request = new Request("http://app.bench.example.com/items", { headers: { host: "app.bench.example.com", "cf-connecting-ip": "203.0.113.9" } });
    prepare?.(request);
    const result = await runPipeline(request, runtime, pipelineDeps, () => {});
    return telemetry.observe(request, result, runtime, waitUntil);
  };
  const provider = runtime.telemetry?.def.providers[0];
  if (!provider) throw new Error("expected the otel provider");
  /** istio_requests_total since the last call (collecting starts a new interval). */
  const requestsCounted = () => {
    const metrics = telemetry.exporter.metrics(provider, 1000).collect(Date.now());
    const points = metrics.find((m) => m.name === "istio_requests_total")?.sum?.dataPoints ?? [];
    return points.reduce((n, p) => n + (p.asInt ?? p.asDouble ?? 0), 0);
  };
  return { serve, requestsCounted, logged };
}

describe("Telemetry.observe", () => {
  it("reports a small response at once and keeps a waitUntil only for the request that schedules the export", async () => {
    const { serve, requestsCounted } = await setup();
    let held = 0;
    for (let i = 0; i < 10; i++) {
      const response = await serve(() => void held++);
      expect(response.status).toBe(200);
      expect(await response.text()).toHaveLength(1024);
      // Counted before the response was even read by the client.
      expect(requestsCounted()).toBe(1);
    }
    expect(held).toBe(1);
  });

  it("answers the client when reporting fails, and logs the failure", async () => {
    let broken = false;
    const { serve, logged } = await setup({
      now: () => {
        if (broken) throw new Error("clock gone");
        return Date.now();
      },
    });
    broken = true;
    const response = await serve(() => {});
    expect(response.status).toBe(200);
    expect(await response.text()).toHaveLength(1024);
    expect(logged).toEqual(["telemetry: reporting a request failed"]);
  });

  it("reads request.cf once per isolate (the colo): not for locality or the protocol when nothing reports them", async () => {
    // Access logs for errors only, so no signal reports a 200's protocol (with no entry, Istio's default logs every request);
    // and no request drawn into the 1% of sampled traces, whose span would report it (Math.random made this fail 1 run in 10).
    const { serve } = await setup({ random: () => 0.5 }, `${YAML}  accessLogging:\n  - providers: [{name: otel}]\n    filter: {expression: "response.code >= 400"}\n`);
    let reads = 0;
    const counted = (request: Request) =>
      Object.defineProperty(request, "cf", {
        get() {
          reads++;
          return { colo: "FRA", httpProtocol: "HTTP/2" };
        },
      });
    for (let i = 0; i < 5; i++) expect((await serve(() => {}, counted)).status).toBe(200);
    expect(reads).toBe(1);
    // On bare workerd (isthmus serve) no header names the client: ingress reads the peer from cf, once per request.
    const peerOnly = (request: Request) => {
      request.headers.delete("cf-connecting-ip");
      counted(request);
    };
    for (let i = 0; i < 5; i++) expect((await serve(() => {}, peerOnly)).status).toBe(200);
    expect(reads).toBe(6);
  });

  it("applies a new configuration's maxSeries to the series opened under it", async () => {
    const withCap = (cap: number) => YAML.replace("  extensionProviders:", `  telemetry: {maxSeries: ${cap}}\n  extensionProviders:`);
    const hydrated = async (cap: number) => {
      const built = await buildConfig([{ path: "test.yaml", text: withCap(cap) }]);
      if (!built.snapshot) throw new Error(JSON.stringify(built.problems));
      return hydrate(built.snapshot);
    };
    const [capped, raised] = [await hydrated(10), await hydrated(100)];
    const telemetry = new Telemetry({ fetch: async () => new Response(null), now: () => Date.now(), sleep: () => new Promise(() => {}), random: Math.random, secret: () => undefined, log: () => {} });
    // The upstream answers the status the path ends with: one set of series per status.
    const deps = { ...memoryDeps(), fetch: async (url: string | URL | Request) => new Response("x", { status: Number(String(url).split("/").pop()) }) };
    const serve = async (runtime: typeof capped, status: number) => {
      const request = new Request(`http://app.bench.example.com/items/${status}`, { headers: { host: "app.bench.example.com" } });
      const response = telemetry.observe(request, await runPipeline(request, runtime, deps, () => {}), runtime, () => {});
      await response.text();
      return response.status;
    };
    // Under a cap of 10: 200 opens Istio's four series and the config version's, 401 four more, 402 the last
    // (its count) and folds three, 403 folds all four.
    for (const status of [200, 401, 402, 403]) expect(await serve(capped, status)).toBe(status);
    // The next configuration's cap of 100 applies to the same stores: 403 opens its series.
    expect(await serve(raised, 403)).toBe(403);
    const provider = raised.telemetry?.def.providers[0];
    if (!provider) throw new Error("expected the otel provider");
    const metrics = telemetry.exporter.metrics(provider, 100).collect(Date.now());
    const counts = metrics.find((m) => m.name === "istio_requests_total")?.sum?.dataPoints.map((p) => [(p.attributes.find((a) => a.key === "response_code")?.value as { stringValue?: string } | undefined)?.stringValue ?? "overflow", p.asInt]);
    expect(counts).toEqual([
      ["200", 1],
      ["401", 1],
      ["402", 1],
      ["403", 1],
      ["overflow", 1],
    ]);
  });

  it("with a Prometheus endpoint and no OTLP provider, records for scrapes only and never holds a waitUntil", async () => {
    // The benchmark's one-route config as is: no GatewayConfig, no Telemetry, so Istio's default metrics go to `prometheus`.
    const built = await buildConfig([{ path: "test.yaml", text: minimal(8080).yaml }]);
    if (!built.snapshot) throw new Error(JSON.stringify(built.problems));
    expect(hydrate(built.snapshot).telemetry).toBeUndefined();
    const runtime = hydrate(built.snapshot, { prometheus: true });
    const registry = new PrometheusRegistry(Date.now());
    const exported: string[] = [];
    const telemetry = new Telemetry({
      fetch: async (url) => (exported.push(String(url)), new Response(null, { status: 200 })),
      now: () => Date.now(),
      sleep: () => new Promise(() => {}),
      random: Math.random,
      secret: () => undefined,
      log: () => {},
      prometheus: registry,
    });
    let held = 0;
    for (let i = 0; i < 3; i++) {
      const request = new Request("http://app.bench.example.com/items", { headers: { host: "app.bench.example.com", "cf-connecting-ip": "203.0.113.9" } });
      const result = await runPipeline(request, runtime, memoryDeps(), () => {});
      const response = telemetry.observe(request, result, runtime, () => void held++);
      expect(await response.text()).toHaveLength(1024);
    }
    expect(held).toBe(0);
    expect(exported).toEqual([]);
    expect(registry.scrape(Date.now())).toMatch(/^istio_requests_total\{reporter="source",.*response_code="200",.*\} 3$/m);
  });
});
