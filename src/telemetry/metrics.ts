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

  /** Sets a gauge to its last value in the interval. */
  set(name: string, key: string, attributes: () => KeyValue[], value: number): void {
    const s = this.find(name, key, attributes, "gauge") as GaugeSeries;
    s.value = value;
  }

  /** Records a value in a histogram with Envoy's default buckets. */
  record(name: string, key: string, attributes: () => KeyValue[], value: number): void {
    const s = this.find(name, key, attributes, "histogram") as HistogramSeries;
    s.count++;
    s.sum += value;
    if (value < s.min) s.min = value;
    if (value > s.max) s.max = value;
    let i = 0;
    while (i < ENVOY_BUCKETS.length && value > (ENVOY_BUCKETS[i] as number)) i++;
    s.buckets[i] = (s.buckets[i] as number) + 1;
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
    return [...byName.values()];
  }
}

function emptyBuckets(): number[] {
  return new Array<number>(ENVOY_BUCKETS.length + 1).fill(0);
}

function newSeries(kind: Series["kind"], name: string, attributes: KeyValue[]): Series {
  return kind === "histogram"
    ? { kind, name, attributes, touched: true, buckets: emptyBuckets(), count: 0, sum: 0, min: Infinity, max: -Infinity }
    : { kind, name, attributes, touched: true, value: 0 };
}
