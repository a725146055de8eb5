/**
 * The built-in `prometheus` provider's registry: cumulative series across
 * scrapes, Prometheus's text format (types, histogram buckets, label
 * names and escapes), gauges that name only their latest value, and the
 * series cap.
 */
import { describe, expect, it } from "vitest";
import { PrometheusRegistry } from "../../../src/telemetry/prometheus.ts";
import { acceptsGzip, exposition, scrapeHeaders } from "../../../src/telemetry/prometheus-text.ts";
import { ENVOY_BUCKETS, ISTHMUS_METRICS, ISTIO_METRIC_NAMES, METRIC_HELP } from "../../../src/telemetry/metric-names.ts";
import { attr } from "../../../src/telemetry/otlp/model.ts";
import { parseScrape, samplesOf, total } from "../../helpers/prometheus.ts";

const code = (c: string) => () => [attr("response_code", c), attr("destination_service", "app.shop.internal")];

describe("PrometheusRegistry", () => {
  it("scrapes nothing before anything is recorded", () => {
    const registry = new PrometheusRegistry(0);
    expect(registry.scrape(1)).toBe("");
    registry.metrics(100);
    expect(registry.scrape(2)).toBe("");
  });

  it("keeps counters cumulative across scrapes, including series the last interval did not touch", () => {
    const registry = new PrometheusRegistry(0);
    const store = registry.metrics(100);
    store.add("istio_requests_total", "200", code("200"));
    store.add("istio_requests_total", "200", code("200"));
    store.add("istio_requests_total", "503", code("503"));
    const first = parseScrape(registry.scrape(1_000));
    expect(first.types.get("istio_requests_total")).toBe("counter");
    expect(samplesOf(first, "istio_requests_total").map((s) => [s.labels, s.value])).toEqual([
      [{ response_code: "200", destination_service: "app.shop.internal" }, 2],
      [{ response_code: "503", destination_service: "app.shop.internal" }, 1],
    ]);

    store.add("istio_requests_total", "200", code("200"));
    const second = parseScrape(registry.scrape(2_000));
    expect(total(second, "istio_requests_total", { response_code: "200" })).toBe(3);
    // Not measured since the last scrape, still there: a counter never goes away while the process lives.
    expect(total(second, "istio_requests_total", { response_code: "503" })).toBe(1);
    // A scrape with nothing new repeats the same values.
    expect(registry.scrape(3_000)).toBe(registry.scrape(4_000));
  });

  it("renders histograms as cumulative le buckets ending in +Inf, with _sum and _count, adding across scrapes", () => {
    const registry = new PrometheusRegistry(0);
    const store = registry.metrics(100);
    for (const ms of [0.3, 4, 4, 70]) store.record("istio_request_duration_milliseconds", "200", code("200"), ms);
    registry.scrape(1);
    store.record("istio_request_duration_milliseconds", "200", code("200"), 20_000);
    const scrape = parseScrape(registry.scrape(2));
    expect(scrape.types.get("istio_request_duration_milliseconds")).toBe("histogram");
    const buckets = samplesOf(scrape, "istio_request_duration_milliseconds_bucket");
    expect(buckets.map((b) => b.labels.le)).toEqual([...ENVOY_BUCKETS.map(String), "+Inf"]);
    // Envoy's spelling (fixed point), so that series from Istio's gateways and from Isthmus add up by le.
    expect(buckets.map((b) => b.labels.le).slice(-4)).toEqual(["600000", "1800000", "3600000", "+Inf"]);
    const le = (bound: string) => buckets.find((b) => b.labels.le === bound)?.value;
    expect([le("0.5"), le("1"), le("5"), le("50"), le("100"), le("10000"), le("30000"), le("+Inf")]).toEqual([1, 1, 3, 3, 4, 4, 5, 5]);
    expect(buckets[0]?.labels).toEqual({ response_code: "200", destination_service: "app.shop.internal", le: "0.5" });
    expect(total(scrape, "istio_request_duration_milliseconds_count")).toBe(5);
    expect(total(scrape, "istio_request_duration_milliseconds_sum")).toBeCloseTo(0.3 + 4 + 4 + 70 + 20_000);
  });

  it("shows a gauge's latest series only: the config version served now, not every one since start", () => {
    const registry = new PrometheusRegistry(0);
    const store = registry.metrics(100);
    store.set("isthmus_config_version_info", "v1", () => [attr("version", "v1")], 1);
    expect(samplesOf(parseScrape(registry.scrape(1)), "isthmus_config_version_info").map((s) => s.labels.version)).toEqual(["v1"]);
    store.set("isthmus_config_version_info", "v2", () => [attr("version", "v2")], 1);
    const scrape = parseScrape(registry.scrape(2));
    expect(scrape.types.get("isthmus_config_version_info")).toBe("gauge");
    expect(samplesOf(scrape, "isthmus_config_version_info").map((s) => [s.labels.version, s.value])).toEqual([["v2", 1]]);
    // Untouched since: still v2.
    expect(samplesOf(parseScrape(registry.scrape(3)), "isthmus_config_version_info").map((s) => s.labels.version)).toEqual(["v2"]);
  });

  it("holds at most maxSeries series: later ones are added into one overflow series per metric, and the folds are counted", () => {
    const registry = new PrometheusRegistry(0);
    const store = registry.metrics(10);
    // Each scrape empties the store, so the store itself never folds: the registry's cap is what holds.
    for (let i = 0; i < 25; i++) {
      store.add("istio_requests_total", `p${i}`, () => [attr("path", `/p${i}`)]);
      registry.scrape(i + 1);
    }
    const scrape = parseScrape(registry.scrape(100));
    const series = samplesOf(scrape, "istio_requests_total");
    expect(series).toHaveLength(11);
    expect(registry.size).toBe(11);
    expect(series.at(-1)).toEqual({ name: "istio_requests_total", labels: { otel_metric_overflow: "true" }, value: 15 });
    expect(total(scrape, "istio_requests_total")).toBe(25);
    expect(total(scrape, "isthmus_telemetry_series_folded_total")).toBe(15);
  });

  it("follows a configuration that changes maxSeries, keeping every series it holds", () => {
    const registry = new PrometheusRegistry(0);
    const add = (i: number) => registry.metrics(cap).add("istio_requests_total", `p${i}`, () => [attr("path", `/p${i}`)]);
    let cap = 10;
    for (let i = 0; i < 12; i++) {
      add(i);
      registry.scrape(i + 1);
    }
    expect(registry.size).toBe(11); // 10 and the overflow series
    cap = 20; // a new snapshot raises telemetry.maxSeries
    for (let i = 12; i < 20; i++) {
      add(i);
      registry.scrape(i + 1);
    }
    const raised = parseScrape(registry.scrape(100));
    expect(samplesOf(raised, "istio_requests_total").filter((s) => s.labels.path !== undefined)).toHaveLength(18);
    cap = 5; // lowered: nothing held goes away, nothing new is opened
    add(99);
    const lowered = parseScrape(registry.scrape(200));
    expect(samplesOf(lowered, "istio_requests_total", { path: "/p99" })).toEqual([]);
    expect(samplesOf(lowered, "istio_requests_total").filter((s) => s.labels.path !== undefined)).toHaveLength(18);
    expect(total(lowered, "istio_requests_total")).toBe(21);
  });

  it("adds the store's own folds (between two scrapes) to the same counter", () => {
    const registry = new PrometheusRegistry(0);
    const store = registry.metrics(10);
    for (let i = 0; i < 12; i++) store.add("istio_requests_total", `p${i}`, () => [attr("path", `/p${i}`)]);
    const scrape = parseScrape(registry.scrape(1));
    expect(total(scrape, "istio_requests_total")).toBe(12);
    expect(total(scrape, "isthmus_telemetry_series_folded_total")).toBe(2);
    expect(scrape.types.get("isthmus_telemetry_series_folded_total")).toBe("counter");
  });
});

describe("PrometheusRegistry.stream", () => {
  it("sends the same text as scrape, in pieces of whole series, rendered as they are read", async () => {
    const registry = new PrometheusRegistry(0);
    const store = registry.metrics(2_000);
    // 300 label sets of Istio's width: a scrape of several MB.
    for (let i = 0; i < 300; i++) {
      const labels = () => [attr("destination_service", `svc-${i}.shop.svc.cluster.local`), attr("destination_workload", `svc-${i}-v1`), attr("response_code", "200")];
      store.add("istio_requests_total", `k${i}`, labels);
      store.record("istio_request_duration_milliseconds", `k${i}`, labels, i);
    }
    const reader = registry.stream(1).getReader();
    const decoder = new TextDecoder();
    const pieces: string[] = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      pieces.push(decoder.decode(value));
    }
    expect(pieces.length).toBeGreaterThan(5);
    for (const piece of pieces) expect(piece.endsWith("\n")).toBe(true);
    // Each piece ends with a whole series: a histogram's last line is its _count.
    for (const piece of pieces.slice(0, -1)) expect(piece.slice(piece.lastIndexOf("\n", piece.length - 2) + 1)).toMatch(/^istio_(requests_total|request_duration_milliseconds_count)\{/);
    const text = pieces.join("");
    expect(text).toBe(registry.scrape(2));
    expect(total(parseScrape(text), "istio_requests_total")).toBe(300);
  });
});

describe("exposition", () => {
  it("makes label names valid and escapes backslashes, quotes and line feeds in values", () => {
    const registry = new PrometheusRegistry(0);
    registry.metrics(100).add("isthmus_rate_limit_decisions_total", "k", () => [attr("rule.name", 'say "hi"\\now\nthen'), attr("9lives", true), attr("n", 3)]);
    const text = registry.scrape(1);
    expect(text).toBe('# HELP isthmus_rate_limit_decisions_total Rate limit decisions, by rule, scope, mode, outcome and source.\n# TYPE isthmus_rate_limit_decisions_total counter\nisthmus_rate_limit_decisions_total{rule_name="say \\"hi\\"\\\\now\\nthen",_9lives="true",n="3"} 1\n');
    expect(samplesOf(parseScrape(text), "isthmus_rate_limit_decisions_total")[0]?.labels).toEqual({ rule_name: 'say "hi"\\now\nthen', _9lives: "true", n: "3" });
  });

  it("writes a HELP line for every metric the gateway reports, escaping backslashes and line feeds", () => {
    const registry = new PrometheusRegistry(0);
    const store = registry.metrics(100);
    store.add("istio_requests_total", "k", () => []);
    store.record("istio_request_duration_milliseconds", "k", () => [], 1);
    const text = registry.scrape(1);
    expect(text.split("\n").filter((l) => l.startsWith("# "))).toEqual([
      "# HELP istio_requests_total Requests the gateway answered, by Istio's standard labels.",
      "# TYPE istio_requests_total counter",
      "# HELP istio_request_duration_milliseconds Time from a request's arrival to the last byte of its response body, in milliseconds.",
      "# TYPE istio_request_duration_milliseconds histogram",
    ]);
    for (const name of [...Object.values(ISTIO_METRIC_NAMES), ...ISTHMUS_METRICS]) expect(METRIC_HELP[name], name).toBeTruthy();
    const escaped = exposition([{ name: "x", help: "a\\b\nc", kind: "gauge", bounds: [], series: new Map([["", { labels: "", value: 1, buckets: [], count: 0, sum: 0 }]]) }]);
    expect(escaped).toBe("# HELP x a\\\\b\\nc\n# TYPE x gauge\nx 1\n");
  });

  it("renders a series without labels, and leaves out a family without series", () => {
    const text = exposition([
      { name: "a_total", kind: "counter", bounds: [], series: new Map([["", { labels: "", value: 2, buckets: [], count: 0, sum: 0 }]]) },
      { name: "b_total", kind: "counter", bounds: [], series: new Map() },
      { name: "c", kind: "histogram", bounds: [1], series: new Map([["", { labels: "", value: 0, buckets: [1, 1], count: 2, sum: 3.5 }]]) },
    ]);
    expect(text).toBe('# TYPE a_total counter\na_total 2\n# TYPE c histogram\nc_bucket{le="1"} 1\nc_bucket{le="+Inf"} 2\nc_sum 3.5\nc_count 2\n');
    parseScrape(text);
  });

  it("the reader rejects what Prometheus would (so the tests above can fail)", () => {
    expect(() => parseScrape("x_total 1\n")).toThrow(/before its TYPE/);
    expect(() => parseScrape('# TYPE x counter\nx{a="1} 1\n')).toThrow(/unterminated|expected/);
    expect(() => parseScrape('# TYPE x counter\nx{a.b="1"} 1\n')).toThrow(/bad label/);
    expect(() => parseScrape('# TYPE x counter\nx{a="\\t"} 1\n')).toThrow(/bad escape/);
    expect(() => parseScrape("# TYPE x counter\nx one\n")).toThrow(/bad value/);
  });
});

describe("scrapeHeaders", () => {
  it("asks the runtime for gzip when the scraper accepts it, by name or wildcard, unless its q-value is 0", () => {
    // Prometheus's own header.
    expect(scrapeHeaders("gzip")).toEqual({ "content-type": "text/plain; version=0.0.4; charset=utf-8", "content-encoding": "gzip", vary: "accept-encoding" });
    expect(scrapeHeaders(null)).toEqual({ "content-type": "text/plain; version=0.0.4; charset=utf-8", vary: "accept-encoding" });
    const cases: [string, boolean][] = [
      ["gzip, deflate, br", true],
      ["br;q=1.0, GZIP;q=0.5", true],
      ["x-gzip", true],
      ["*", true],
      ["identity", false],
      ["gzip;q=0", false],
      ["gzip;q=0.000, *", false],
      ["*;q=0", false],
      ["deflate, *;q=0.1", true],
      ["", false],
    ];
    for (const [header, expected] of cases) expect(acceptsGzip(header), header).toBe(expected);
  });
});
