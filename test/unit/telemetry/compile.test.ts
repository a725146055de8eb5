/**
 * Telemetry compile: GatewayConfig providers and settings with their
 * defaults, the problems a user sees, and Istio's precedence when
 * Telemetry resources at several levels shape the same traffic.
 */
import { describe, expect, it } from "vitest";
import type { Snapshot, TelemetryPlanDef } from "../../../src/config/snapshot.ts";
import { build, doc, errors, serviceEntry, snapshotOf, virtualService, warnings } from "../support.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import { hydrateTelemetry } from "../../../src/telemetry/hydrate.ts";

const provider = (extra: Record<string, unknown> = {}, name = "otel") => ({ name, opentelemetry: { endpoint: "http://collector.example:4318", ...extra } });
const gatewayConfig = (spec: Record<string, unknown> = {}) => doc("GatewayConfig", "gw", { extensionProviders: [provider()], ...spec }, "istio-system");
const telemetry = (name: string, spec: Record<string, unknown>, namespace = "istio-system") => doc("Telemetry", name, spec, namespace);

/** Two services: shop/app (endpoints labelled app: app, version v1/v2, subsets v1/v2) and web/site. */
const traffic = [
  serviceEntry("app", ["app.shop.internal"], { location: "MESH_INTERNAL", resolution: "STATIC", endpoints: [{ address: "10.0.0.1", labels: { app: "app", version: "v1" } }, { address: "10.0.0.2", labels: { app: "app", version: "v2" } }] }, "shop"),
  doc("DestinationRule", "app", { host: "app.shop.internal", subsets: [{ name: "v1", labels: { version: "v1" } }, { name: "v2", labels: { version: "v2" } }] }, "shop"),
  virtualService("app", ["app.example.com"], [{ route: [{ destination: { host: "app.shop.internal", subset: "v1" }, weight: 50 }, { destination: { host: "app.shop.internal", subset: "v2" }, weight: 50 }] }], {}, "shop"),
  serviceEntry("site", ["site.web.internal"], { location: "MESH_INTERNAL" }, "web"),
  virtualService("site", ["site.example.com"], [{ route: [{ destination: { host: "site.web.internal" } }] }], {}, "web"),
];

function planOf(snapshot: Snapshot, cluster?: string): TelemetryPlanDef {
  const t = snapshot.telemetry;
  if (!t) throw new Error("no telemetry in the snapshot");
  const i = cluster !== undefined ? (t.clusterPlans[cluster] ?? 0) : 0;
  return t.plans[i] as TelemetryPlanDef;
}

const V1 = "outbound|80|v1|app.shop.internal";
const V2 = "outbound|80|v2|app.shop.internal";
const SITE = "outbound|80||site.web.internal";

describe("Telemetry compile: providers and settings", () => {
  it("fills in every default; providers receive traces and metrics unless told otherwise", async () => {
    const snapshot = await snapshotOf(gatewayConfig(), ...traffic);
    expect(snapshot.telemetry?.providers).toEqual([
      { name: "otel", endpoint: "http://collector.example:4318", protocol: "http/protobuf", headers: [], timeoutMs: 10_000, signals: ["traces", "metrics"] },
    ]);
    expect(snapshot.telemetry?.settings).toEqual({
      resourceAttributes: { "service.name": "isthmus" },
      flushIntervalMs: 5_000,
      flushRequests: 500,
      maxSeries: 2_000,
      exportRetries: 2,
      propagators: ["tracecontext"],
      sourceWorkload: "isthmus",
      sourceNamespace: "istio-system",
    });
    // Istio's defaults: 1% sampling; metrics on; no access log.
    expect(planOf(snapshot)).toEqual({
      tracing: { provider: 0, samplingPercent: 1, customTags: [] },
      metrics: { providers: [0], prometheus: true, disabled: [], disabledCustom: [], tags: {} },
      accessLog: { console: false, providers: [] },
    });
  });

  it("without providers or access logging, keeps only Istio's default metrics for a Prometheus endpoint, which a runtime without one drops", async () => {
    const snapshot = await snapshotOf(...traffic);
    expect(snapshot.telemetry?.providers).toEqual([]);
    expect(planOf(snapshot)).toEqual({ metrics: { providers: [], prometheus: true, disabled: [], disabledCustom: [], tags: {} }, accessLog: { console: false, providers: [] } });
    const def = snapshot.telemetry as NonNullable<Snapshot["telemetry"]>;
    // Cloudflare (nothing scrapes): no telemetry at all, so the pipeline times nothing.
    expect(hydrateTelemetry(def)).toBeUndefined();
    expect(hydrate(snapshot).telemetry).toBeUndefined();
    // isthmus serve --metrics-port: metrics for the scrape endpoint only.
    const scraped = hydrate(snapshot, { prometheus: true }).telemetry;
    expect(scraped?.plans[0]).toMatchObject({ active: true, metrics: true, prometheus: true, accessLog: false });
  });

  it("refuses values a Worker cannot honour, naming the field", async () => {
    const result = await build(
      doc(
        "GatewayConfig",
        "gw",
        {
          extensionProviders: [provider({ headers: [{ name: "authorization", secret: "my token" }], timeout: "40s" }), provider({}, "envoy")],
          telemetry: { flushInterval: "60s", maxSeries: 5, exportRetries: 9 },
        },
        "istio-system",
      ),
    );
    const errs = errors(result).join("\n");
    expect(errs).toMatch(/extensionProviders\[0\]\.opentelemetry\.headers\[0\]\.secret: expected the name of a Worker secret/);
    expect(errs).toMatch(/extensionProviders\[0\]\.opentelemetry\.timeout: expected a duration between 1ms and 25s/);
    expect(errs).toMatch(/extensionProviders\[1\]\.name: "envoy" is the name of an Istio built-in provider/);
    expect(errs).toMatch(/telemetry\.flushInterval: expected a duration between 1s and 25s/);
    expect(errs).toMatch(/telemetry\.maxSeries: expected between 10 and 100000/);
    expect(errs).toMatch(/telemetry\.exportRetries: expected at most 5/);
  });

  it("no longer warns that telemetry fields are not acted on", async () => {
    const result = await build(gatewayConfig({ telemetry: { flushInterval: "2s" } }), telemetry("mesh", { tracing: [{ randomSamplingPercentage: 10 }] }), ...traffic);
    expect(warnings(result).join("\n")).not.toMatch(/not acted on/);
  });
});

describe("Telemetry compile: precedence", () => {
  it("root namespace → namespace → workload, later levels overriding field by field", async () => {
    const snapshot = await snapshotOf(
      gatewayConfig(),
      ...traffic,
      telemetry("mesh", { tracing: [{ randomSamplingPercentage: 10, customTags: { env: { literal: { value: "prod" } } } }] }),
      telemetry("shop", { tracing: [{ randomSamplingPercentage: 50 }] }, "shop"),
      telemetry("v2", { selector: { matchLabels: { version: "v2" } }, tracing: [{ customTags: { tier: { header: { name: "X-Tier", defaultValue: "free" } } } }] }, "shop"),
    );
    expect(planOf(snapshot).tracing).toEqual({ provider: 0, samplingPercent: 10, customTags: [{ tag: "env", literal: "prod" }] });
    expect(planOf(snapshot, SITE).tracing?.samplingPercent).toBe(10);
    expect(planOf(snapshot, V1).tracing).toEqual({ provider: 0, samplingPercent: 50, customTags: [{ tag: "env", literal: "prod" }] });
    // customTags replace (a shallow merge, as Istio's); the sampling rate is inherited.
    expect(planOf(snapshot, V2).tracing).toEqual({ provider: 0, samplingPercent: 50, customTags: [{ tag: "tier", header: "x-tier", defaultValue: "free" }] });
  });

  it("keeps the oldest Telemetry of a level and warns about the others", async () => {
    const older = { ...telemetry("a", { tracing: [{ randomSamplingPercentage: 20 }] }), metadata: { name: "a", namespace: "istio-system", creationTimestamp: "2024-01-01T00:00:00Z" } };
    const newer = { ...telemetry("b", { tracing: [{ randomSamplingPercentage: 80 }] }), metadata: { name: "b", namespace: "istio-system", creationTimestamp: "2025-01-01T00:00:00Z" } };
    const result = await build(gatewayConfig(), ...traffic, newer, older);
    expect(planOf(result.snapshot as Snapshot).tracing?.samplingPercent).toBe(20);
    expect(warnings(result).join("\n")).toMatch(/Telemetry\/istio-system\/b: metadata\.name: ignored: Telemetry\/istio-system\/a is the older mesh-wide/);
  });

  it("breaks a creation-time tie by name, as Istio does, not by file order", async () => {
    const at = "2024-01-01T00:00:00Z";
    const zeta = { ...telemetry("zeta", { tracing: [{ randomSamplingPercentage: 80 }] }), metadata: { name: "zeta", namespace: "istio-system", creationTimestamp: at } };
    const alpha = { ...telemetry("alpha", { tracing: [{ randomSamplingPercentage: 20 }] }), metadata: { name: "alpha", namespace: "istio-system", creationTimestamp: at } };
    const result = await build(gatewayConfig(), ...traffic, zeta, alpha);
    expect(planOf(result.snapshot as Snapshot).tracing?.samplingPercent).toBe(20);
  });

  it("a Telemetry selecting the gateway's labels applies to all traffic", async () => {
    const snapshot = await snapshotOf(gatewayConfig(), ...traffic, telemetry("gw", { selector: { matchLabels: { istio: "ingressgateway" } }, tracing: [{ randomSamplingPercentage: 100 }] }));
    expect(planOf(snapshot).tracing?.samplingPercent).toBe(100);
    expect(planOf(snapshot, SITE).tracing?.samplingPercent).toBe(100);
  });

  it("disableSpanReporting stops span reporting for that traffic only, and keeps its tracing (propagation and sampling)", async () => {
    const snapshot = await snapshotOf(gatewayConfig(), ...traffic, telemetry("web", { tracing: [{ disableSpanReporting: true, randomSamplingPercentage: 20 }] }, "web"));
    expect(planOf(snapshot).tracing).toEqual({ provider: 0, samplingPercent: 1, customTags: [] });
    // Istio: "This does NOT impact context propagation or trace sampling behavior."
    expect(planOf(snapshot, SITE).tracing).toEqual({ provider: 0, samplingPercent: 20, customTags: [], reportSpans: false });
    const runtime = hydrateTelemetry(snapshot.telemetry as NonNullable<Snapshot["telemetry"]>);
    expect(runtime?.planFor(SITE).active).toBe(true);
  });

  it("a later level's disableSpanReporting: false reports spans again", async () => {
    const snapshot = await snapshotOf(
      gatewayConfig(),
      ...traffic,
      telemetry("mesh", { tracing: [{ disableSpanReporting: true }] }),
      telemetry("web", { tracing: [{ disableSpanReporting: false }] }, "web"),
    );
    expect(planOf(snapshot).tracing?.reportSpans).toBe(false);
    expect(planOf(snapshot, SITE).tracing).toEqual({ provider: 0, samplingPercent: 1, customTags: [] });
  });

  it("a provider name GatewayConfig does not define leaves tracing off, with a warning", async () => {
    const result = await build(gatewayConfig(), ...traffic, telemetry("mesh", { tracing: [{ providers: [{ name: "zipkin" }] }] }));
    expect(planOf(result.snapshot as Snapshot).tracing).toBeUndefined();
    expect(warnings(result)).toEqual([
      expect.stringMatching(
        /tracing\[0\]\.providers\[0\]\.name: GatewayConfig defines no opentelemetry provider named "zipkin"; this entry still replaces the default providers \(as in Istio\), so unless it names another provider that exists, tracing is off for the traffic it covers$/,
      ),
    ]);
  });

  it("a metrics or access-log provider name GatewayConfig does not define turns that signal off, with a warning saying so", async () => {
    const result = await build(
      gatewayConfig({ extensionProviders: [provider({ signals: ["traces", "metrics", "logs"] })] }),
      ...traffic,
      telemetry("mesh", { metrics: [{ providers: [{ name: "stackdriver" }] }], accessLogging: [{ providers: [{ name: "otel-als" }] }] }),
    );
    expect(planOf(result.snapshot as Snapshot)).toMatchObject({ metrics: { providers: [], prometheus: false }, accessLog: { console: false, providers: [] } });
    expect(warnings(result)).toEqual([
      expect.stringMatching(/metrics\[0\]\.providers\[0\]\.name: GatewayConfig defines no opentelemetry provider named "stackdriver" .*; this entry still replaces the default providers \(as in Istio\), so unless it names another provider that exists, metrics reporting is off for the traffic it covers$/),
      expect.stringMatching(/accessLogging\[0\]\.providers\[0\]\.name: GatewayConfig defines no opentelemetry provider named "otel-als" .*; this entry still replaces the default providers \(as in Istio\), so unless it names another provider that exists, access logging is off for the traffic it covers$/),
    ]);
  });

  it("warns that SERVER-only entries do not apply to a gateway", async () => {
    const result = await build(gatewayConfig(), ...traffic, telemetry("mesh", { tracing: [{ match: { mode: "SERVER" }, randomSamplingPercentage: 100 }] }));
    expect(planOf(result.snapshot as Snapshot).tracing?.samplingPercent).toBe(1);
    expect(warnings(result).join("\n")).toMatch(/tracing\[0\]\.match\.mode: applies to SERVER only/);
  });
});

describe("Telemetry compile: metrics", () => {
  it("overrides accumulate: disable a metric, drop and add labels", async () => {
    const snapshot = await snapshotOf(
      gatewayConfig(),
      ...traffic,
      telemetry("mesh", { metrics: [{ providers: [{ name: "prometheus" }], overrides: [{ match: { metric: "REQUEST_SIZE" }, disabled: true }] }] }),
      telemetry(
        "shop",
        { metrics: [{ overrides: [{ match: { metric: "REQUEST_COUNT" }, tagOverrides: { request_host: { value: "request.host" }, source_principal: { operation: "REMOVE" } } }] }] },
        "shop",
      ),
    );
    expect(planOf(snapshot).metrics).toEqual({ providers: [0], prometheus: true, disabled: ["REQUEST_SIZE"], disabledCustom: [], tags: {} });
    expect(planOf(snapshot, V1).metrics).toEqual({
      providers: [0],
      prometheus: true,
      disabled: ["REQUEST_SIZE"],
      disabledCustom: [],
      tags: { REQUEST_COUNT: [{ tag: "request_host", value: "request.host" }, { tag: "source_principal", remove: true }] },
    });
  });

  it("ALL_METRICS disabled at the root turns metrics off; a namespace override turns them back on there", async () => {
    const snapshot = await snapshotOf(
      gatewayConfig(),
      ...traffic,
      telemetry("mesh", { metrics: [{ overrides: [{ match: { metric: "ALL_METRICS" }, disabled: true }] }] }),
      telemetry("web", { metrics: [{ overrides: [{ match: { metric: "REQUEST_DURATION" }, disabled: false }] }] }, "web"),
    );
    expect(planOf(snapshot).metrics.providers).toEqual([]);
    expect(planOf(snapshot, V1).metrics.providers).toEqual([]);
    expect(planOf(snapshot, SITE).metrics.providers).toEqual([0]);
    expect([planOf(snapshot).metrics.prometheus, planOf(snapshot, V1).metrics.prometheus, planOf(snapshot, SITE).metrics.prometheus]).toEqual([false, false, true]);
  });

  it("warns that metrics settings without an opentelemetry provider reach only isthmus serve's Prometheus endpoint", async () => {
    const result = await build(...traffic, telemetry("mesh", { metrics: [{ overrides: [{ match: { metric: "REQUEST_SIZE" }, disabled: true }] }] }));
    expect(warnings(result).join("\n")).toMatch(/spec\.metrics: applies only to the Prometheus endpoint of `isthmus serve --metrics-port`: GatewayConfig defines no opentelemetry provider/);
    expect(planOf(result.snapshot as Snapshot).metrics).toMatchObject({ providers: [], prometheus: true, disabled: ["REQUEST_SIZE"] });
  });

  it("sends metrics to Prometheus by default and while a level naming providers names `prometheus`", async () => {
    const metricsTo = (...names: string[]) => ({ metrics: [{ providers: names.map((name) => ({ name })) }] });
    const snapshot = await snapshotOf(
      gatewayConfig(),
      ...traffic,
      telemetry("shop", metricsTo("otel"), "shop"),
      telemetry("site", metricsTo("prometheus"), "web"),
    );
    // The gateway-wide plan: Istio's default provider and the providers that list metrics.
    expect(planOf(snapshot).metrics).toMatchObject({ providers: [0], prometheus: true });
    // shop names only its collector: the scrape endpoint no longer gets its traffic.
    expect(planOf(snapshot, V1).metrics).toMatchObject({ providers: [0], prometheus: false });
    // web names `prometheus`: the scrape endpoint, and (as before) the providers that list metrics.
    expect(planOf(snapshot, SITE).metrics).toMatchObject({ providers: [0], prometheus: true });
  });

  it("refuses a tag value outside the supported expressions and names Isthmus metrics for customMetric", async () => {
    const result = await build(
      gatewayConfig(),
      ...traffic,
      telemetry("mesh", {
        metrics: [
          {
            overrides: [
              { match: { metric: "REQUEST_COUNT" }, tagOverrides: { x: { value: "filter_state['wasm.upstream_peer']" } } },
              { match: { customMetric: "isthmus_mirror_requests_total" }, disabled: true },
              { match: { customMetric: "my_metric" }, disabled: true },
              { match: { metric: "TCP_SENT_BYTES" }, disabled: true },
            ],
          },
        ],
      }),
    );
    expect(errors(result).join("\n")).toMatch(/overrides\[0\]\.tagOverrides\.x\.value: expected an expression of the supported CEL subset/);
    const warns = warnings(result).join("\n");
    expect(warns).toMatch(/overrides\[2\]\.match\.customMetric: no metric named "my_metric"/);
    expect(warns).toMatch(/overrides\[3\]\.match\.metric: TCP_SENT_BYTES is a TCP or gRPC streaming metric/);
  });
});

describe("Telemetry compile: tag override names", () => {
  const overriding = (tagOverrides: Record<string, unknown>, metric = "ALL_METRICS") => telemetry("mesh", { metrics: [{ overrides: [{ match: { metric }, tagOverrides }] }] });

  it("refuses a name that is not a Prometheus label name, le, or a name starting with __ (one bad label fails a whole scrape)", async () => {
    const result = await build(
      gatewayConfig(),
      ...traffic,
      overriding({
        "source.principal": { value: "request.auth.principal" },
        "request-host": { value: "request.host" },
        "1st": { value: "'x'" },
        "": { value: "'x'" },
        le: { value: "request.host" },
        __name__: { value: "'x'" },
        "x.y": { operation: "REMOVE" },
      }),
    );
    const errs = errors(result).join("\n");
    for (const name of ["source.principal", "request-host", "1st", "", "x.y"]) {
      expect(errs).toContain(`Telemetry/istio-system/mesh: spec.metrics[0].overrides[0].tagOverrides[${JSON.stringify(name)}]: expected a Prometheus label name (letters, digits and _, not starting with a digit), got ${JSON.stringify(name)}`);
    }
    expect(errs).toMatch(/tagOverrides\.le: "le" is the bucket label of Prometheus histograms; choose another name/);
    expect(errs).toMatch(/tagOverrides\.__name__: names starting with "__" are reserved by Prometheus; choose another name/);
    expect(result.snapshot).toBeUndefined();
  });

  it("accepts Istio's label names and new plain ones", async () => {
    const snapshot = await snapshotOf(gatewayConfig(), ...traffic, overriding({ request_host: { value: "request.host" }, _tenant: { value: "'a'" }, source_principal: { operation: "REMOVE" } }, "REQUEST_COUNT"));
    expect(planOf(snapshot).metrics.tags.REQUEST_COUNT?.map((o) => o.tag)).toEqual(["_tenant", "request_host", "source_principal"]);
  });
});

describe("Telemetry compile: access logging", () => {
  it("is off by default, on with Istio's envoy provider (the console), with a filter", async () => {
    const snapshot = await snapshotOf(gatewayConfig(), ...traffic, telemetry("mesh", { accessLogging: [{ providers: [{ name: "envoy" }], filter: { expression: "response.code >= 400" } }] }));
    expect(planOf(snapshot).accessLog).toEqual({ console: true, providers: [], filter: "response.code >= 400" });
  });

  it("an entry naming no provider logs to the console when no provider lists the logs signal, else to those providers", async () => {
    const console = await snapshotOf(...traffic, telemetry("mesh", { accessLogging: [{}] }));
    expect(planOf(console).accessLog).toEqual({ console: true, providers: [] });
    const otlp = await snapshotOf(doc("GatewayConfig", "gw", { extensionProviders: [provider({ signals: ["logs"] })] }, "istio-system"), ...traffic, telemetry("mesh", { accessLogging: [{}] }));
    expect(planOf(otlp).accessLog).toEqual({ console: false, providers: [0] });
  });

  it("a namespace can turn access logs off for its traffic", async () => {
    const snapshot = await snapshotOf(
      gatewayConfig(),
      ...traffic,
      telemetry("mesh", { accessLogging: [{ providers: [{ name: "envoy" }] }] }),
      telemetry("web", { accessLogging: [{ disabled: true }] }, "web"),
    );
    expect(planOf(snapshot).accessLog.console).toBe(true);
    expect(planOf(snapshot, SITE).accessLog.console).toBe(false);
    expect(planOf(snapshot, V1).accessLog.console).toBe(true);
  });

  it("refuses a filter outside the supported expressions", async () => {
    const result = await build(...traffic, telemetry("mesh", { accessLogging: [{ filter: { expression: "response.code >= 400 &&" } }] }));
    expect(errors(result).join("\n")).toMatch(/Telemetry\/istio-system\/mesh: spec\.accessLogging\[0\]\.filter\.expression: expected an expression of the supported CEL subset/);
  });
});
