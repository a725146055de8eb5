/**
 * Istio's built-in `prometheus` provider where something can scrape it:
 * `isthmus serve --metrics-port` answers `GET /stats/prometheus` from this
 * registry, as Istio's gateways answer it on port 15090.
 *
 * Requests are recorded in a MetricsStore, exactly as for an OTLP
 * provider; each scrape collects the store's delta and adds it to
 * cumulative series, since Prometheus expects counters and histograms that
 * only grow while the process lives (a restart starts them from zero, which
 * `rate()` handles). Under `isthmus serve` the Worker is one isolate for the
 * process's life, so one registry sees every request the process serves.
 *
 * Memory is bounded as in the store: at most `maxSeries` cumulative series;
 * beyond that, a metric's new series are added into its one overflow series
 * (label `otel_metric_overflow="true"`), and `isthmus_telemetry_series_folded_total`
 * counts the folds (the store's, one per measurement, and the registry's,
 * one per series and scrape).
 *
 * @example
 * const registry = new PrometheusRegistry(Date.now());
 * registry.metrics(1000).add("istio_requests_total", "200", () => [attr("response_code", "200")]);
 * registry.scrape(Date.now()); // "# HELP istio_requests_total …\n# TYPE istio_requests_total counter\nistio_requests_total{response_code=\"200\"} 1\n"
 */
import { MetricsStore } from "./metrics.ts";
import { ISTHMUS_METRIC, METRIC_HELP } from "./metric-names.ts";
import type { KeyValue, Metric, Millis } from "./otlp/model.ts";
import { exposition, expositionChunks, labelSet, type Family, type Series } from "./prometheus-text.ts";

/** The overflow series' labels (the OpenTelemetry SDK's attribute, as Prometheus names it). */
const OVERFLOW_LABELS = labelSet([{ key: "otel.metric.overflow", value: { boolValue: true } }]);

export class PrometheusRegistry {
  private store: MetricsStore | undefined;
  private readonly families = new Map<string, Family>();
  private count = 0;
  private readonly started: Millis;

  constructor(now: Millis) {
    this.started = now;
  }

  /**
   * The store requests are recorded in, capped at the served snapshot's
   * `maxSeries`. A change of it applies to series opened from then on:
   * series already held stay (a counter must not vanish).
   */
  metrics(maxSeries: number): MetricsStore {
    this.store ??= new MetricsStore(maxSeries, this.started);
    this.store.maxSeries = maxSeries;
    return this.store;
  }

  /** Cumulative series held now. */
  get size(): number {
    return this.count;
  }

  /** Adds what was recorded since the last scrape, then renders every series in Prometheus's text format (0.0.4). */
  scrape(now: Millis): string {
    this.collect(now);
    return exposition(this.families.values());
  }

  /**
   * The same as a byte stream, rendered a piece (~64 KiB) at a time as the
   * scraper reads it: a scrape of Istio's metrics runs to megabytes, and
   * rendering it whole would hold the isolate for tens of milliseconds,
   * while requests wait. Between pieces they run.
   */
  stream(now: Millis): ReadableStream<Uint8Array> {
    this.collect(now);
    const chunks = expositionChunks(this.families.values());
    const encoder = new TextEncoder();
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        const next = chunks.next();
        if (next.done) controller.close();
        else controller.enqueue(encoder.encode(next.value));
      },
    });
  }

  private collect(now: Millis): void {
    if (this.store && !this.store.empty) for (const metric of this.store.collect(now)) this.add(metric);
  }

  private add(metric: Metric): void {
    if (metric.histogram) {
      const family = this.family(metric.name, "histogram");
      for (const p of metric.histogram.dataPoints) {
        const s = this.series(family, p.attributes, p.bucketCounts.length);
        s.count += p.count;
        s.sum += p.sum;
        p.bucketCounts.forEach((n, i) => (s.buckets[i] = (s.buckets[i] as number) + n));
      }
      family.bounds = metric.histogram.dataPoints[0]?.explicitBounds ?? family.bounds;
    } else if (metric.gauge) {
      // A gauge reports its last values: those of this interval replace the family's (an info metric
      // such as isthmus_config_version_info then names the version served now, not every one since start).
      const family = this.family(metric.name, "gauge");
      this.count -= family.series.size;
      family.series.clear();
      for (const p of metric.gauge.dataPoints) this.series(family, p.attributes, 0).value = p.asInt ?? p.asDouble ?? 0;
    } else if (metric.name === ISTHMUS_METRIC.foldedSeries) {
      for (const p of metric.sum?.dataPoints ?? []) this.folds().value += p.asInt ?? 0;
    } else if (metric.sum) {
      const family = this.family(metric.name, "counter");
      for (const p of metric.sum.dataPoints) this.series(family, p.attributes, 0).value += p.asInt ?? p.asDouble ?? 0;
    }
  }

  private family(name: string, kind: Family["kind"]): Family {
    let family = this.families.get(name);
    if (!family) {
      family = { name, kind, series: new Map(), bounds: [] };
      const help = METRIC_HELP[name];
      if (help) family.help = help;
      this.families.set(name, family);
    }
    return family;
  }

  private series(family: Family, attributes: KeyValue[], buckets: number): Series {
    const labels = labelSet(attributes);
    const known = family.series.get(labels);
    if (known) return known;
    // The store's own overflow series (already counted as folds) is kept like the registry's.
    // The cap is the store's (series reach the registry only through it).
    if (this.count >= (this.store?.maxSeries ?? Infinity) && labels !== OVERFLOW_LABELS) {
      this.folds().value++;
      return family.series.get(OVERFLOW_LABELS) ?? this.create(family, OVERFLOW_LABELS, buckets);
    }
    return this.create(family, labels, buckets);
  }

  private create(family: Family, labels: string, buckets: number): Series {
    const s: Series = { labels, value: 0, buckets: new Array<number>(buckets).fill(0), count: 0, sum: 0 };
    family.series.set(labels, s);
    this.count++;
    return s;
  }

  /** The one series counting folds, the store's and the registry's (outside the cap, so it is always kept). */
  private folds(): Series {
    const family = this.family(ISTHMUS_METRIC.foldedSeries, "counter");
    let s = family.series.get("");
    if (!s) family.series.set("", (s = { labels: "", value: 0, buckets: [], count: 0, sum: 0 }));
    return s;
  }
}
