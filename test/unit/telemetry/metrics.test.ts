/**
 * The isolate's metric aggregation: Envoy's buckets, delta intervals, and
 * the cardinality cap that folds overflow into one series and counts it.
 */
import { describe, expect, it } from "vitest";
import { MetricsStore } from "../../../src/telemetry/metrics.ts";
import { attr } from "../../../src/telemetry/otlp/model.ts";
import { ENVOY_BUCKETS } from "../../../src/telemetry/metric-names.ts";

const labels = (code: string) => () => [attr("response_code", code)];

describe("MetricsStore", () => {
  it("counts per series and reports delta sums", () => {
    const store = new MetricsStore(100, 1_000);
    store.add("istio_requests_total", "200", labels("200"));
    store.add("istio_requests_total", "200", labels("200"));
    store.add("istio_requests_total", "503", labels("503"));
    const [metric] = store.collect(2_000);
    expect(metric?.name).toBe("istio_requests_total");
    expect(metric?.sum?.aggregationTemporality).toBe(1);
    expect(metric?.sum?.isMonotonic).toBe(true);
    expect(metric?.sum?.dataPoints.map((p) => [p.attributes[0]?.value, p.asInt, p.startTimeUnixNano, p.timeUnixNano])).toEqual([
      [{ stringValue: "200" }, 2, 1_000, 2_000],
      [{ stringValue: "503" }, 1, 1_000, 2_000],
    ]);
    // The next interval starts where this one ended, from zero.
    expect(store.empty).toBe(true);
    store.add("istio_requests_total", "200", labels("200"));
    const next = store.collect(3_000)[0]?.sum?.dataPoints[0];
    expect([next?.asInt, next?.startTimeUnixNano, next?.timeUnixNano]).toEqual([1, 2_000, 3_000]);
  });

  it("puts values in Envoy's default buckets, a value on a bound in that bound's bucket", () => {
    const store = new MetricsStore(100, 0);
    for (const v of [0, 0.5, 0.7, 5, 42, 3_600_000, 9_999_999]) store.record("istio_request_duration_milliseconds", "k", labels("200"), v);
    const p = store.collect(1)[0]?.histogram?.dataPoints[0];
    expect(p?.explicitBounds).toEqual(ENVOY_BUCKETS);
    expect(p?.bucketCounts.length).toBe(ENVOY_BUCKETS.length + 1);
    const expected = new Array(ENVOY_BUCKETS.length + 1).fill(0);
    expected[0] = 2; // 0, 0.5 (≤ 0.5)
    expected[1] = 1; // 0.7
    expected[2] = 1; // 5
    expected[5] = 1; // 42 (≤ 50)
    expected[18] = 1; // 3,600,000
    expected[19] = 1; // above the last bound
    expect(p?.bucketCounts).toEqual(expected);
    expect([p?.count, p?.sum, p?.min, p?.max]).toEqual([7, 0 + 0.5 + 0.7 + 5 + 42 + 3_600_000 + 9_999_999, 0, 9_999_999]);
  });

  it("folds series beyond the cap into one overflow series per metric and counts the folds", () => {
    const store = new MetricsStore(10, 0);
    let built = 0;
    for (let i = 0; i < 25; i++) {
      store.add("istio_requests_total", `path-${i}`, () => {
        built++;
        return [attr("path", `/p${i}`)];
      });
    }
    expect(built).toBe(10);
    const metrics = store.collect(1);
    const requests = metrics.find((m) => m.name === "istio_requests_total");
    expect(requests?.sum?.dataPoints.length).toBe(11);
    const overflow = requests?.sum?.dataPoints.find((p) => p.attributes[0]?.key === "otel.metric.overflow");
    expect(overflow?.asInt).toBe(15);
    expect(metrics.find((m) => m.name === "isthmus_telemetry_series_folded_total")?.sum?.dataPoints[0]?.asInt).toBe(15);
    // Memory is given back once an interval passes without the series.
    expect(store.size).toBe(11);
    expect(store.collect(2)).toEqual([]);
    expect(store.size).toBe(0);
  });

  it("keeps a series measured in one interval for the next: built once, each interval its own delta", () => {
    const store = new MetricsStore(100, 0);
    let built = 0;
    const attributes = () => {
      built++;
      return [attr("response_code", "200")];
    };
    store.add("istio_requests_total", "200", attributes);
    store.record("istio_request_duration_milliseconds", "200", attributes, 7);
    const first = store.collect(1);
    store.add("istio_requests_total", "200", attributes, 3);
    store.record("istio_request_duration_milliseconds", "200", attributes, 2_000);
    const second = store.collect(2);
    expect(built).toBe(2);
    const point = (metrics: typeof first, name: string) => metrics.find((m) => m.name === name);
    expect(point(second, "istio_requests_total")?.sum?.dataPoints[0]?.asInt).toBe(3);
    const h = point(second, "istio_request_duration_milliseconds")?.histogram?.dataPoints[0];
    expect([h?.count, h?.sum, h?.min, h?.max, h?.startTimeUnixNano]).toEqual([1, 2_000, 2_000, 2_000, 1]);
    // What the first export carries is not changed by the second interval's measurements.
    expect(point(first, "istio_requests_total")?.sum?.dataPoints[0]?.asInt).toBe(1);
    const h1 = point(first, "istio_request_duration_milliseconds")?.histogram?.dataPoints[0];
    expect([h1?.count, h1?.sum, h1?.bucketCounts.reduce((a, b) => a + b, 0)]).toEqual([1, 7, 1]);
    // An interval without measurements exports nothing and forgets the series.
    expect(store.empty).toBe(true);
    expect(store.collect(3)).toEqual([]);
    expect(store.size).toBe(0);
  });

  it("keeps the last value of a gauge", () => {
    const store = new MetricsStore(10, 0);
    store.set("isthmus_config_version_info", "v1", () => [attr("version", "v1")], 1);
    store.set("isthmus_config_version_info", "v1", () => [attr("version", "v1")], 1);
    expect(store.collect(1)[0]?.gauge?.dataPoints.map((p) => p.asInt)).toEqual([1]);
  });
});

describe("MetricsStore.measureRequest", () => {
  const NAMES = { count: "istio_requests_total", duration: "istio_request_duration_milliseconds", requestSize: "istio_request_bytes", responseSize: "istio_response_bytes" };
  const request = (durationMs: number) => ({ durationMs, requestBytes: 300 + durationMs, responseBytes: 1_200 + durationMs });

  /** The same requests through `add` and `record`, metric by metric. */
  function oneByOne(store: MetricsStore, names: Partial<typeof NAMES>, key: string, m: ReturnType<typeof request>): void {
    if (names.count) store.add(names.count, key, labels(key));
    if (names.duration) store.record(names.duration, key, labels(key), m.durationMs);
    if (names.requestSize) store.record(names.requestSize, key, labels(key), m.requestBytes);
    if (names.responseSize) store.record(names.responseSize, key, labels(key), m.responseBytes);
  }

  it("reports what add and record report, over intervals, for the metrics named", () => {
    const names = { ...NAMES, requestSize: undefined };
    const together = new MetricsStore(100, 0);
    const apart = new MetricsStore(100, 0);
    // Interval 2 measures only key b: a's series is dropped there and opened again in interval 3.
    const intervals = [["a", "b", "a"], ["b"], ["a", "a", "b"]];
    intervals.forEach((keys, i) => {
      keys.forEach((key, j) => {
        together.measureRequest(names, key, labels(key), request(j * 7));
        oneByOne(apart, names, key, request(j * 7));
      });
      expect(together.collect(i + 1)).toEqual(apart.collect(i + 1));
    });
  });

  it("measures a series the previous interval reported, after the collection", () => {
    // The series found stay known only for their interval: collected, they are no longer touched.
    const store = new MetricsStore(100, 0);
    store.measureRequest(NAMES, "a", labels("a"), request(1));
    store.collect(1);
    store.measureRequest(NAMES, "a", labels("a"), request(2));
    const counted = store.collect(2).find((m) => m.name === NAMES.count);
    expect(counted?.sum?.dataPoints.map((p) => p.asInt)).toEqual([1]);
  });

  it("follows a plan whose metrics change under the same key", () => {
    const store = new MetricsStore(100, 0);
    store.measureRequest({ ...NAMES, duration: undefined }, "a", labels("a"), request(1));
    store.measureRequest(NAMES, "a", labels("a"), request(2));
    const metrics = store.collect(1);
    expect(metrics.find((m) => m.name === NAMES.count)?.sum?.dataPoints[0]?.asInt).toBe(2);
    expect(metrics.find((m) => m.name === NAMES.duration)?.histogram?.dataPoints[0]?.count).toBe(1);
  });

  it("counts a fold per metric and request beyond the cap, as add and record do", () => {
    const together = new MetricsStore(4, 0);
    const apart = new MetricsStore(4, 0);
    for (const key of ["a", "b", "b", "a", "c"]) {
      together.measureRequest(NAMES, key, labels(key), request(3));
      oneByOne(apart, NAMES, key, request(3));
    }
    const collected = together.collect(1);
    expect(collected).toEqual(apart.collect(1));
    expect(collected.find((m) => m.name === "isthmus_telemetry_series_folded_total")?.sum?.dataPoints[0]?.asInt).toBe(12);
  });
});

describe("MetricsStore.set", () => {
  it("reports a gauge set on every request in each interval it is set in", () => {
    const store = new MetricsStore(100, 0);
    const version = () => [attr("version", "v1")];
    store.set("isthmus_config_version", "v1", version, 1);
    store.set("isthmus_config_version", "v1", version, 1);
    expect(store.collect(1)[0]?.gauge?.dataPoints.map((p) => p.asInt)).toEqual([1]);
    // Known from the last interval, it must be touched again to be reported.
    store.set("isthmus_config_version", "v1", version, 1);
    expect(store.collect(2)[0]?.gauge?.dataPoints.map((p) => p.asInt)).toEqual([1]);
    store.set("isthmus_config_version", "v2", () => [attr("version", "v2")], 1);
    expect(store.collect(3)[0]?.gauge?.dataPoints.map((p) => p.attributes[0]?.value)).toEqual([{ stringValue: "v2" }]);
  });
});
