/**
 * Metrics aggregated in the isolate between two exports, with delta
 * temporality: each export reports what happened since the previous one
 * and starts again from zero, so no isolate has to keep state forever, and
 * many isolates (each its own `service.instance.id`) add up.
 *
 * A series measured in an interval is kept (zeroed) for the next one, so a
 * steady request mix reuses its series and their attributes instead of
 * building them again after every export; a series the next interval does
 * not measure is dropped when that interval is collected.
 *
 * Memory is bounded: at most `maxSeries` series are held. A measurement
 * that would open one more is folded into one overflow series of its
 * metric (attribute `otel.metric.overflow: true`, the OpenTelemetry SDK's
 * convention), and the folds are counted in `isthmus_telemetry_series_folded_total`.
 */
import { attr, DELTA, type HistogramDataPoint, type KeyValue, type Metric, type Millis, type NumberDataPoint } from "./otlp/model.ts";
import { ENVOY_BUCKETS, ISTHMUS_METRIC } from "./metric-names.ts";

interface CounterSeries {
  kind: "counter";
  name: string;
  attributes: KeyValue[];
  /** Measured in the current interval. */
  touched: boolean;
  value: number;
}

interface GaugeSeries {
  kind: "gauge";
  name: string;
  attributes: KeyValue[];
  /** Measured in the current interval. */
  touched: boolean;
  value: number;
}

interface HistogramSeries {
  kind: "histogram";
  name: string;
  attributes: KeyValue[];
  /** Measured in the current interval. */
  touched: boolean;
  buckets: number[];
  count: number;
  sum: number;
  min: number;
  max: number;
}

type Series = CounterSeries | GaugeSeries | HistogramSeries;

/**
 * The names of Istio's four request metrics a plan reports, each undefined
 * when the plan disables it (`measureRequest`). One object per plan: the
 * store knows a request's series by it.
 */
export interface RequestMetricNames {
  count: string | undefined;
  duration: string | undefined;
  requestSize: string | undefined;
  responseSize: string | undefined;
}

/** A key's request series in the current interval (see `measureRequest`). */
interface RequestSeries {
  names: RequestMetricNames;
  count: CounterSeries | undefined;
  duration: HistogramSeries | undefined;
  requestSize: HistogramSeries | undefined;
  responseSize: HistogramSeries | undefined;
}

const OVERFLOW: KeyValue[] = [attr("otel.metric.overflow", true)];

/** Units of the metrics that have one (OTLP `unit`, UCUM). */
const UNITS: Record<string, string> = {
  istio_request_duration_milliseconds: "ms",
  istio_request_bytes: "By",
  istio_response_bytes: "By",
};

export class MetricsStore {
  /** Series by metric name, then by the caller's key. */
  private readonly series = new Map<string, Map<string, Series>>();
  /** The overflow series of each metric that has one. */
  private readonly overflow = new Map<string, Series>();
  /** Istio's request series by key, found in this interval (`measureRequest`); cleared when it is collected. */
  private readonly requests = new Map<string, RequestSeries>();
  /** The gauge `set` last, in this interval (see `set`). */
  private lastGauge: { name: string; key: string; series: GaugeSeries } | undefined;
  private count = 0;
  private folded = 0;
  private measured = false;
  /** The cap on series held; set again when a configuration changes `telemetry.maxSeries` (series beyond a lowered cap stay until dropped). */
  maxSeries: number;
  /** Start of the current delta interval. */
  private since: Millis;

  constructor(maxSeries: number, now: Millis) {
    this.maxSeries = maxSeries;
    this.since = now;
  }

  /** Series held now (for tests and the admin view). */
  get size(): number {
    return this.count + this.overflow.size;
  }

  /**
   * Adds to a counter. `key` identifies the series among the metric's
   * series; `attributes` builds its attributes, called only for a new series.
   */
  add(name: string, key: string, attributes: () => KeyValue[], value = 1): void {
    const s = this.find(name, key, attributes, "counter") as CounterSeries;
    s.value += value;
  }

  /**
   * Sets a gauge to its last value in the interval. The gauge set last is
   * kept for the interval: a gauge set on every request (the config version)
   * is then not looked up again.
   */
  set(name: string, key: string, attributes: () => KeyValue[], value: number): void {
    const last = this.lastGauge;
    if (last !== undefined && last.name === name && last.key === key) {
      this.measured = true;
      last.series.value = value;
      return;
    }
    const s = this.find(name, key, attributes, "gauge") as GaugeSeries;
    s.value = value;
    // An overflow series counts a fold per measurement: it is always found again.
    this.lastGauge = s.attributes === OVERFLOW ? undefined : { name, key, series: s };
  }

  /** Records a value in a histogram with Envoy's default buckets. */
  record(name: string, key: string, attributes: () => KeyValue[], value: number): void {
    observe(this.find(name, key, attributes, "histogram") as HistogramSeries, value);
  }

  /**
   * Measures one request in Istio's four request metrics (those `names`
   * holds), whose series share `key`: the same as `add` and three `record`s,
   * but the series are looked up once per key and interval, not eight times
   * per request.
   *
   * @example
   * store.measureRequest(plan.requestMetrics, labels.key, attributes, { durationMs: 12, requestBytes: 310, responseBytes: 1208 });
   */
  measureRequest(names: RequestMetricNames, key: string, attributes: () => KeyValue[], m: { durationMs: number; requestBytes: number; responseBytes: number }): void {
    let s = this.requests.get(key);
    if (s === undefined || s.names !== names) s = this.requestSeries(names, key, attributes);
    else this.measured = true;
    if (s.count) s.count.value += 1;
    if (s.duration) observe(s.duration, m.durationMs);
    if (s.requestSize) observe(s.requestSize, m.requestBytes);
    if (s.responseSize) observe(s.responseSize, m.responseBytes);
  }

  /** Finds (or opens) a key's request series; kept for the interval unless one of them is an overflow series, whose folds are counted per measurement. */
  private requestSeries(names: RequestMetricNames, key: string, attributes: () => KeyValue[]): RequestSeries {
    const histogram = (name: string | undefined) => (name === undefined ? undefined : (this.find(name, key, attributes, "histogram") as HistogramSeries));
    const s: RequestSeries = {
      names,
      count: names.count === undefined ? undefined : (this.find(names.count, key, attributes, "counter") as CounterSeries),
      duration: histogram(names.duration),
      requestSize: histogram(names.requestSize),
      responseSize: histogram(names.responseSize),
    };
    const overflowed = [s.count, s.duration, s.requestSize, s.responseSize].some((series) => series !== undefined && series.attributes === OVERFLOW);
    if (!overflowed) this.requests.set(key, s);
    return s;
  }

  private find(name: string, key: string, attributes: () => KeyValue[], kind: Series["kind"]): Series {
    this.measured = true;
    let byKey = this.series.get(name);
    if (!byKey) this.series.set(name, (byKey = new Map()));
    const known = byKey.get(key);
    if (known) {
      known.touched = true;
      return known;
    }
    if (this.size >= this.maxSeries) {
      this.folded++;
      let overflow = this.overflow.get(name);
      if (!overflow) this.overflow.set(name, (overflow = newSeries(kind, name, OVERFLOW)));
      overflow.touched = true;
      return overflow;
    }
    const created = newSeries(kind, name, attributes());
    byKey.set(key, created);
    this.count++;
    return created;
  }

  /** True when nothing was measured since the last collection. */
  get empty(): boolean {
    return !this.measured && this.folded === 0;
  }

  /** The interval's metrics as OTLP, then starts a new interval. */
  collect(now: Millis): Metric[] {
    const start = this.since;
    const byName = new Map<string, Metric>();
    const metricOf = (s: Series): Metric => {
      let m = byName.get(s.name);
      if (!m) {
        m = { name: s.name };
        const unit = UNITS[s.name];
        if (unit) m.unit = unit;
        if (s.kind === "histogram") m.histogram = { dataPoints: [], aggregationTemporality: DELTA };
        else if (s.kind === "gauge") m.gauge = { dataPoints: [] };
        else m.sum = { dataPoints: [], aggregationTemporality: DELTA, isMonotonic: true };
        byName.set(s.name, m);
      }
      return m;
    };
    const report = (s: Series): boolean => {
      if (!s.touched) return false;
      const m = metricOf(s);
      if (s.kind === "histogram") {
        const p: HistogramDataPoint = {
          attributes: s.attributes,
          startTimeUnixNano: start,
          timeUnixNano: now,
          count: s.count,
          sum: s.sum,
          bucketCounts: s.buckets,
          explicitBounds: ENVOY_BUCKETS,
          min: s.min,
          max: s.max,
        };
        m.histogram?.dataPoints.push(p);
        // The data point keeps the old bucket array; the next interval counts in a new one.
        s.buckets = emptyBuckets();
        s.count = 0;
        s.sum = 0;
        s.min = Infinity;
        s.max = -Infinity;
      } else {
        const p: NumberDataPoint = { attributes: s.attributes, startTimeUnixNano: start, timeUnixNano: now, asInt: s.value };
        (s.kind === "gauge" ? m.gauge : m.sum)?.dataPoints.push(p);
        s.value = 0;
      }
      s.touched = false;
      return true;
    };
    // A series the interval did not measure is dropped; the others stay, zeroed, for the next.
    for (const [name, byKey] of this.series) {
      for (const [key, s] of byKey) {
        if (!report(s)) {
          byKey.delete(key);
          this.count--;
        }
      }
      const overflow = this.overflow.get(name);
      if (overflow && !report(overflow)) this.overflow.delete(name);
      if (byKey.size === 0 && !this.overflow.has(name)) this.series.delete(name);
    }
    if (this.folded > 0) {
      byName.set(ISTHMUS_METRIC.foldedSeries, {
        name: ISTHMUS_METRIC.foldedSeries,
        sum: { dataPoints: [{ attributes: [], startTimeUnixNano: start, timeUnixNano: now, asInt: this.folded }], aggregationTemporality: DELTA, isMonotonic: true },
      });
    }
    this.folded = 0;
    this.measured = false;
    this.since = now;
    this.requests.clear();
    this.lastGauge = undefined;
    return [...byName.values()];
  }
}

function observe(s: HistogramSeries, value: number): void {
  s.count++;
  s.sum += value;
  if (value < s.min) s.min = value;
  if (value > s.max) s.max = value;
  let i = 0;
  while (i < ENVOY_BUCKETS.length && value > (ENVOY_BUCKETS[i] as number)) i++;
  s.buckets[i] = (s.buckets[i] as number) + 1;
}

function emptyBuckets(): number[] {
  return new Array<number>(ENVOY_BUCKETS.length + 1).fill(0);
}

function newSeries(kind: Series["kind"], name: string, attributes: KeyValue[]): Series {
  return kind === "histogram"
    ? { kind, name, attributes, touched: true, buckets: emptyBuckets(), count: 0, sum: 0, min: Infinity, max: -Infinity }
    : { kind, name, attributes, touched: true, value: 0 };
}
