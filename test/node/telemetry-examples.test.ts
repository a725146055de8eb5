/**
 * examples/telemetry must not drift from the code: the Isthmus YAML
 * validates with the bookinfo demo and turns on what it says, the Collector
 * config wires OTLP → deltatocumulative → Prometheus with the demo's token,
 * Prometheus shows Isthmus's metric names unchanged, and every metric and
 * label the Grafana dashboard queries is one the gateway reports.
 * (test/e2e/telemetry-examples.test.ts checks the same names against what a
 * running gateway actually exports.)
 */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parse } from "yaml";
import { buildConfig } from "../../src/config/build.ts";
import { readSources } from "../../src/cli/files.ts";
import { MetricsStore } from "../../src/telemetry/metrics.ts";
import { ISTHMUS_METRIC, ISTHMUS_METRICS, ISTIO_METRIC_NAMES } from "../../src/telemetry/metric-names.ts";
import { dashboardQueries, HISTOGRAMS, ISTHMUS_LABELS, queryProblems, readDashboard } from "../helpers/dashboard.ts";
import { attr } from "../../src/telemetry/otlp/model.ts";
import { hydrate } from "../../src/routing/hydrate.ts";
import type { Snapshot } from "../../src/config/snapshot.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const read = (path: string) => readFileSync(join(ROOT, path), "utf8");

/**
 * The Prometheus exporter's name for an OTLP metric with the default
 * translation (UnderscoreEscapingWithSuffixes): prometheus/otlptranslator
 * metric_namer.go `normalizeName` — a unit suffix unless the name already
 * has that token, then `_total` once for monotonic sums.
 */
function prometheusName(name: string, unit: string | undefined, monotonicSum: boolean): string {
  const UNITS: Record<string, string> = { ms: "milliseconds", s: "seconds", By: "bytes", "1": "" };
  let tokens = name.split(/[^a-zA-Z0-9:]+/).filter(Boolean);
  const suffix = unit ? (UNITS[unit] ?? unit) : "";
  if (suffix && !tokens.includes(suffix)) tokens.push(suffix);
  if (monotonicSum) tokens = [...tokens.filter((t) => t !== "total"), "total"];
  return tokens.join("_");
}

describe("the Isthmus example", () => {
  const bookinfo = () => readSources([join(ROOT, "examples/bookinfo/config")]);
  const telemetry = { path: "examples/telemetry/isthmus-telemetry.yaml", text: read("examples/telemetry/isthmus-telemetry.yaml") };

  it("validates with the bookinfo demo, without a warning, and turns on traces, metrics and failed-request logs to the otel provider", async () => {
    const result = await buildConfig([...bookinfo(), telemetry]);
    expect(result.problems).toEqual([]);
    const def = result.snapshot?.telemetry;
    expect(def?.providers).toEqual([
      { name: "otel", endpoint: "http://127.0.0.1:4318", protocol: "http/protobuf", headers: [["authorization", "OTLP_AUTHORIZATION"]], timeoutMs: 2000, signals: [] },
    ]);
    expect(def?.plans[0]).toMatchObject({
      tracing: { provider: 0, samplingPercent: 100 },
      metrics: { providers: [0], disabled: [] },
      accessLog: { console: true, providers: [0], filter: "response.code >= 400" },
    });
    // One plan for every destination: the Telemetry is mesh-wide.
    expect(def?.clusterPlans).toEqual({});
  });

  it("leaves the demo without telemetry when it is not applied (the provider is a default for no signal)", async () => {
    const result = await buildConfig(bookinfo());
    expect(result.problems).toEqual([]);
    expect(result.snapshot).toBeDefined();
    // The provider receives nothing; Istio's default metrics are kept for a Prometheus endpoint, which only
    // `isthmus serve --metrics-port` has.
    expect(result.snapshot?.telemetry?.plans).toEqual([{ metrics: { providers: [], prometheus: true, disabled: [], disabledCustom: [], tags: {} }, accessLog: { console: false, providers: [] } }]);
    expect(hydrate(result.snapshot as Snapshot).telemetry).toBeUndefined();
  });
});

describe("the Collector config", () => {
  const collector = parse(read("examples/telemetry/otel-collector.yaml")) as {
    extensions: Record<string, { scheme?: string; token?: string }>;
    receivers: { otlp: { protocols: { http: { endpoint: string; auth?: { authenticator: string } } } } };
    processors: Record<string, unknown>;
    exporters: Record<string, { endpoint?: string }>;
    service: { extensions: string[]; pipelines: Record<string, { receivers: string[]; processors: string[]; exporters: string[] }> };
  };

  it("sends metrics from the otlp receiver through deltatocumulative to the prometheus exporter on :8889", () => {
    const metrics = collector.service.pipelines.metrics;
    expect(metrics?.receivers).toEqual(["otlp"]);
    expect(metrics?.exporters).toEqual(["prometheus"]);
    // Delta → cumulative before anything else sees the points.
    expect(metrics?.processors[0]).toBe("deltatocumulative");
    expect(collector.exporters.prometheus?.endpoint).toMatch(/:8889$/);
    expect(collector.service.pipelines.traces?.receivers).toEqual(["otlp"]);
    expect(collector.service.pipelines.logs?.receivers).toEqual(["otlp"]);
  });

  it("defines every component its pipelines use", () => {
    for (const [name, p] of Object.entries(collector.service.pipelines)) {
      for (const r of p.receivers) expect(collector.receivers, `${name} receiver ${r}`).toHaveProperty([r]);
      for (const r of p.processors) expect(collector.processors, `${name} processor ${r}`).toHaveProperty([r]);
      for (const r of p.exporters) expect(collector.exporters, `${name} exporter ${r}`).toHaveProperty([r]);
    }
    for (const e of collector.service.extensions) expect(collector.extensions).toHaveProperty([e]);
  });

  it("listens where the demo's provider sends, and accepts exactly the header the demo's secret holds", async () => {
    const http = collector.receivers.otlp.protocols.http;
    const provider = (await buildConfig([...readSources([join(ROOT, "examples/bookinfo/config")])])).resources.find((r) => r.kind === "GatewayConfig") as unknown as {
      spec: { extensionProviders: { opentelemetry: { endpoint: string; headers: { name: string; secret: string }[] } }[] };
    };
    const otel = provider.spec.extensionProviders[0]?.opentelemetry;
    expect(new URL(otel?.endpoint ?? "").port).toBe(http.endpoint.split(":").at(-1));
    expect(otel?.headers).toEqual([{ name: "authorization", secret: "OTLP_AUTHORIZATION" }]);

    const authenticator = http.auth?.authenticator as string;
    expect(collector.service.extensions).toContain(authenticator);
    const auth = collector.extensions[authenticator];
    const envVar = /^\$\{env:([A-Z_]+)\}$/.exec(auth?.token ?? "")?.[1];
    expect(envVar).toBeDefined();
    // bearertokenauth accepts `authorization: <scheme> <token>`; the demo's secret file and the
    // command line in the README set the two sides.
    const secret = /^OTLP_AUTHORIZATION=(.*)$/m.exec(read("examples/telemetry/dev.vars.example"))?.[1];
    const readme = read("examples/telemetry/README.md");
    const token = new RegExp(`${envVar}=(\\S+)`).exec(readme)?.[1];
    expect(token).toBeDefined();
    expect(secret).toBe(`${auth?.scheme ?? "Bearer"} ${token}`);
  });
});

describe("Prometheus names", () => {
  it("are the gateway's metric names unchanged (units and _total already in the names)", () => {
    const store = new MetricsStore(100, 0);
    const none = () => [attr("k", "v")];
    for (const name of Object.values(ISTIO_METRIC_NAMES)) {
      if (HISTOGRAMS.has(name)) store.record(name, "k", none, 1);
      else store.add(name, "k", none);
    }
    for (const name of ISTHMUS_METRICS) {
      if (name === ISTHMUS_METRIC.configVersion) store.set(name, "k", none, 1);
      else store.add(name, "k", none);
    }
    const exported = store.collect(1);
    expect(exported.map((m) => m.name).sort()).toEqual([...Object.values(ISTIO_METRIC_NAMES), ...ISTHMUS_METRICS].sort());
    for (const m of exported) expect(prometheusName(m.name, m.unit, m.sum?.isMonotonic === true), `${m.name} (unit ${m.unit})`).toBe(m.name);
    // The rule itself: a metric without the unit in its name would change.
    expect(prometheusName("istio_request_duration", "ms", false)).toBe("istio_request_duration_milliseconds");
    expect(prometheusName("isthmus_upstream_retries", undefined, true)).toBe("isthmus_upstream_retries_total");
  });

  it("the label list covers every Isthmus metric, and each label is one the gateway sets", () => {
    expect(Object.keys(ISTHMUS_LABELS).sort()).toEqual([...ISTHMUS_METRICS].sort());
    const source = read("src/telemetry/telemetry.ts") + read("src/telemetry/exporter.ts");
    for (const label of new Set(Object.values(ISTHMUS_LABELS).flat())) expect(source, label).toContain(`attr("${label}"`);
  });
});

describe("the Grafana dashboard", () => {
  const dashboard = readDashboard();
  const queries = dashboardQueries(dashboard);
  const targets = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, ...t })));

  it("is a dashboard of schema ~39 with unique panel ids, a Prometheus data source variable, and destination variables", () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const vars = Object.fromEntries(dashboard.templating.list.map((v) => [v.name, v]));
    expect(vars.datasource).toMatchObject({ type: "datasource", query: "prometheus" });
    expect(vars.destination_service?.type).toBe("query");
    expect(vars.destination_version?.type).toBe("query");
    for (const p of dashboard.panels.filter((x) => x.type !== "row")) expect(p.datasource?.uid, p.title).toBe("${datasource}");
    expect(targets.length).toBeGreaterThan(10);
  });

  it("queries only metrics the gateway reports, by labels it sets on them", () => {
    const problems = queries.flatMap((q) => queryProblems(q.expr, q.legend).map((p) => `${q.where}: ${p}`));
    expect(problems).toEqual([]);
  });

  it("has the panels the issue asks for", () => {
    const exprs = targets.map((t) => t.expr);
    const has = (re: RegExp) => exprs.some((e) => re.test(e));
    expect(has(/sum by \(destination_service, destination_version\) \(rate\(istio_requests_total\{/)).toBe(true);
    expect(has(/response_code=~"5\.\."[^/]*\/ sum by/)).toBe(true);
    expect(has(/histogram_quantile\(0\.95, sum by \(le, destination_service, destination_version\) \(rate\(istio_request_duration_milliseconds_bucket/)).toBe(true);
    expect(has(/sum by \([^)]*outcome[^)]*\) \(rate\(isthmus_rate_limit_decisions_total/)).toBe(true);
  });

  it("the checker catches a wrong name or label (so the test above can fail)", () => {
    expect(queryProblems('sum(rate(istio_request_total{reporter="source"}[5m]))')).toEqual([expect.stringContaining("istio_request_total is not a metric")]);
    expect(queryProblems('sum(rate(istio_request_duration_seconds_bucket{reporter="source"}[5m]))')).toHaveLength(1);
    expect(queryProblems('sum by (destination_workload_version) (rate(istio_requests_total{reporter="source"}[5m]))')).toEqual([expect.stringContaining("label destination_workload_version")]);
    expect(queryProblems("sum by (le) (rate(isthmus_rate_limit_decisions_total[5m]))")).toEqual([expect.stringContaining("label le")]);
    expect(queryProblems("sum by (outcome) (rate(isthmus_upstream_retries_total[5m]))")).toEqual([expect.stringContaining("label outcome")]);
    expect(queryProblems("sum(rate(istio_requests_total[5m]))", "{{destination_service}}")).toEqual([]);
    expect(queryProblems('sum(rate(istio_requests_total{response_code="200"}[5m]))')).toEqual([expect.stringContaining('without reporter="source"')]);
    expect(queryProblems("sum(rate(isthmus_upstream_retries_total[5m]))", "{{outcome}}")).toEqual([expect.stringContaining("label outcome")]);
  });
});
