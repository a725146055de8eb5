/**
 * The isolate's OTLP/HTTP exporter: buffers spans and log records, holds a
 * metrics store per provider, and sends them in batches — every
 * `flushInterval`, or once `flushRequests` requests have finished —
 * always inside a request's `waitUntil`, never on a request's path.
 *
 * - One flush at a time per isolate; while one runs, data keeps
 *   accumulating (bounded: MAX_BUFFERED spans and log records per
 *   provider, `maxSeries` series), and what does not fit is dropped and
 *   counted.
 * - A failed export (network error, timeout, 429, 502, 503, 504) is
 *   retried `exportRetries` times with backoff, honouring Retry-After,
 *   all within FLUSH_BUDGET_MS; then its items are counted as dropped
 *   (`isthmus_telemetry_dropped_total`, reported with the next metrics).
 *   Other statuses are not retried (the OTLP specification's rule).
 * - When traffic stops, the request that buffered the last data waits in
 *   its waitUntil until the interval is over and flushes, so nothing is
 *   held longer than `flushInterval` while the isolate lives.
 *
 * Fetch, clock, timers and randomness are injected.
 */
import type { OtlpProviderDef, Signal, TelemetryDef } from "../config/snapshot-telemetry.ts";
import type { Fetch } from "../routing/forward.ts";
import { MetricsStore } from "./metrics.ts";
import { ISTHMUS_METRIC } from "./metric-names.ts";
import { encodeJson } from "./otlp/json.ts";
import { attr, type InstrumentationScope, type LogRecord, type Resource, type Span } from "./otlp/model.ts";
import { encodeProtobuf } from "./otlp/protobuf.ts";
import { LOGS_REQUEST, METRICS_REQUEST, TRACES_REQUEST, type Message } from "./otlp/schema.ts";

/** Spans and log records held per provider between flushes. */
export const MAX_BUFFERED = 4096;
/** A flush and all its retries end within this (waitUntil gives ~30 s after the response). */
export const FLUSH_BUDGET_MS = 25_000;
/** A flush running longer than this (its request's waitUntil was cut) no longer blocks the next one. */
const STALE_FLUSH_MS = 30_000;
const RETRYABLE = new Set([429, 502, 503, 504]);

export const SCOPE: InstrumentationScope = { name: "isthmus", version: "0.1.0" };

export interface ExporterDeps {
  fetch: Fetch;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
  random: () => number;
  /** A Worker secret or variable by binding name. */
  secret: (name: string) => string | undefined;
  log: (message: string, fields: Record<string, unknown>) => void;
}

interface ProviderBuffers {
  spans: Span[];
  logs: LogRecord[];
  metrics: MetricsStore;
  dropped: Record<Signal, number>;
}

export class Exporter {
  private readonly buffers = new Map<string, ProviderBuffers>();
  private readonly deps: ExporterDeps;
  private finished = 0;
  private lastFlush: number;
  private flushingSince: number | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  /** A flush asked for while one ran wanted metrics too. */
  private againWithMetrics = false;
  private scheduledAt: number | undefined;
  private readonly warned = new Set<string>();
  /** Exports sent and failed since the isolate started (admin view, tests). */
  readonly stats = { sent: 0, failed: 0, dropped: 0 };

  constructor(deps: ExporterDeps) {
    this.deps = deps;
    this.lastFlush = deps.now();
  }

  private buffersFor(provider: OtlpProviderDef, maxSeries: number): ProviderBuffers {
    let b = this.buffers.get(provider.name);
    if (!b) {
      b = { spans: [], logs: [], metrics: new MetricsStore(maxSeries, this.deps.now()), dropped: { traces: 0, metrics: 0, logs: 0 } };
      this.buffers.set(provider.name, b);
    }
    // A configuration that changed telemetry.maxSeries applies to the series opened from now on.
    b.metrics.maxSeries = maxSeries;
    return b;
  }

  metrics(provider: OtlpProviderDef, maxSeries: number): MetricsStore {
    return this.buffersFor(provider, maxSeries).metrics;
  }

  addSpans(provider: OtlpProviderDef, maxSeries: number, spans: Span[]): void {
    const b = this.buffersFor(provider, maxSeries);
    const room = MAX_BUFFERED - b.spans.length;
    if (room >= spans.length) b.spans.push(...spans);
    else {
      b.spans.push(...spans.slice(0, Math.max(0, room)));
      b.dropped.traces += spans.length - Math.max(0, room);
    }
  }

  addLog(provider: OtlpProviderDef, maxSeries: number, record: LogRecord): void {
    const b = this.buffersFor(provider, maxSeries);
    if (b.logs.length < MAX_BUFFERED) b.logs.push(record);
    else b.dropped.logs++;
  }

  /**
   * Called once per finished request: flushes when due, else makes sure a
   * flush is scheduled. Returns the promise the request must keep alive in
   * its waitUntil, or undefined when there is nothing to wait for. `now`
   * is the time the request finished, when the caller has read the clock.
   */
  finishedRequest(def: TelemetryDef, resource: Resource, now: number = this.deps.now()): Promise<void> | undefined {
    this.finished++;
    const settings = def.settings;
    if (now - this.lastFlush >= settings.flushIntervalMs) return this.flush(def, resource);
    // A count-triggered export carries the buffered spans and log records (memory that grows with
    // traffic); metrics are aggregated, bounded by maxSeries, and go every flushInterval (an export
    // of Istio's series is hundreds of KiB, so sending it every few hundred requests cost ~10 µs each).
    if (this.finished >= settings.flushRequests && this.hasEvents()) return this.flush(def, resource, false);
    if (this.scheduledAt !== undefined && now - this.scheduledAt < settings.flushIntervalMs + 5_000) return undefined;
    this.scheduledAt = now;
    return this.flushWhenDue(def, resource);
  }

  /**
   * Sleeps until the interval since the last metrics export is over, then
   * flushes. A request may have flushed meanwhile (under traffic one finishes
   * as the interval ends, about when this wakes): then nothing is due, and it
   * sleeps until the end of the new interval instead of sending a second,
   * nearly empty export. So what was measured after that export still goes
   * if traffic stops.
   */
  private flushWhenDue(def: TelemetryDef, resource: Resource): Promise<void> {
    const interval = def.settings.flushIntervalMs;
    return this.deps.sleep(Math.max(0, this.lastFlush + interval - this.deps.now())).then(() => {
      if (this.deps.now() - this.lastFlush < interval) {
        this.scheduledAt = this.deps.now();
        return this.flushWhenDue(def, resource);
      }
      this.scheduledAt = undefined;
      return this.flush(def, resource);
    });
  }

  /**
   * Sends everything buffered. At most one flush runs at a time: a call
   * made while one runs returns that flush's promise, and data buffered
   * meanwhile is sent by a follow-up flush as soon as it ends (so a slow or
   * hanging collector does not strand the data of the last requests).
   */
  flush(def: TelemetryDef, resource: Resource, metrics = true): Promise<void> {
    const now = this.deps.now();
    if (this.running && this.flushingSince !== undefined && now - this.flushingSince < STALE_FLUSH_MS) {
      this.again = true;
      this.againWithMetrics ||= metrics;
      return this.running;
    }
    const run = this.flushLoop(def, resource, metrics);
    this.running = run;
    return run;
  }

  private async flushLoop(def: TelemetryDef, resource: Resource, metrics: boolean): Promise<void> {
    let withMetrics = metrics;
    try {
      do {
        this.again = false;
        this.againWithMetrics = false;
        await this.flushOnce(def, resource, withMetrics);
        withMetrics = this.againWithMetrics;
      } while (this.again && this.hasData());
    } finally {
      this.flushingSince = undefined;
      this.running = undefined;
    }
  }

  private hasData(): boolean {
    for (const b of this.buffers.values()) {
      if (b.spans.length > 0 || b.logs.length > 0 || !b.metrics.empty || b.dropped.traces + b.dropped.metrics + b.dropped.logs > 0) return true;
    }
    return false;
  }

  /** True when spans or log records are buffered. */
  private hasEvents(): boolean {
    for (const b of this.buffers.values()) if (b.spans.length > 0 || b.logs.length > 0) return true;
    return false;
  }

  private async flushOnce(def: TelemetryDef, resource: Resource, metrics: boolean): Promise<void> {
    const now = this.deps.now();
    this.flushingSince = now;
    this.finished = 0;
    if (metrics) this.lastFlush = now;
    const deadline = now + FLUSH_BUDGET_MS;
    const sends: Promise<void>[] = [];
    for (const provider of def.providers) {
      const b = this.buffers.get(provider.name);
      if (!b) continue;
      sends.push(this.flushProvider(provider, b, def, resource, deadline, metrics));
    }
    await Promise.all(sends);
  }

  private async flushProvider(provider: OtlpProviderDef, b: ProviderBuffers, def: TelemetryDef, resource: Resource, deadline: number, withMetrics: boolean): Promise<void> {
    const spans = b.spans;
    const logs = b.logs;
    b.spans = [];
    b.logs = [];
    const now = this.deps.now();
    for (const signal of ["traces", "metrics", "logs"] as const) {
      if (b.dropped[signal] > 0) {
        b.metrics.add(ISTHMUS_METRIC.dropped, signal, () => [attr("signal", signal), attr("provider", provider.name)], b.dropped[signal]);
        b.dropped[signal] = 0;
      }
    }
    const metrics = !withMetrics || b.metrics.empty ? [] : b.metrics.collect(now);
    const jobs: Promise<void>[] = [];
    if (spans.length > 0) {
      jobs.push(this.send(provider, "traces", TRACES_REQUEST, { resourceSpans: [{ resource, scopeSpans: [{ scope: SCOPE, spans }] }] }, spans.length, b, def, deadline));
    }
    if (metrics.length > 0) {
      const points = metrics.reduce((n, m) => n + (m.sum?.dataPoints.length ?? m.histogram?.dataPoints.length ?? m.gauge?.dataPoints.length ?? 0), 0);
      jobs.push(this.send(provider, "metrics", METRICS_REQUEST, { resourceMetrics: [{ resource, scopeMetrics: [{ scope: SCOPE, metrics }] }] }, points, b, def, deadline));
    }
    if (logs.length > 0) {
      jobs.push(this.send(provider, "logs", LOGS_REQUEST, { resourceLogs: [{ resource, scopeLogs: [{ scope: SCOPE, logRecords: logs }] }] }, logs.length, b, def, deadline));
    }
    await Promise.all(jobs);
  }

  private headersFor(provider: OtlpProviderDef): Headers {
    const headers = new Headers({ "content-type": provider.protocol === "http/json" ? "application/json" : "application/x-protobuf" });
    for (const [name, secret] of provider.headers) {
      const value = this.deps.secret(secret);
      if (value !== undefined) headers.set(name, value);
      else if (!this.warned.has(secret)) {
        this.warned.add(secret);
        this.deps.log("isthmus: telemetry exporter header secret is not set; the header is not sent", { provider: provider.name, header: name, secret });
      }
    }
    return headers;
  }

  private async send(provider: OtlpProviderDef, signal: Signal, schema: Message, message: object, items: number, b: ProviderBuffers, def: TelemetryDef, deadline: number): Promise<void> {
    const body = provider.protocol === "http/json" ? encodeJson(schema, message) : encodeProtobuf(schema, message);
    const url = `${provider.endpoint}/v1/${signal}`;
    const retries = def.settings.exportRetries;
    let error = "";
    for (let attempt = 0; attempt <= retries; attempt++) {
      const remaining = deadline - this.deps.now();
      if (remaining <= 0) break;
      let retryAfterMs: number | undefined;
      try {
        const response = await this.deps.fetch(url, { method: "POST", headers: this.headersFor(provider), body, signal: AbortSignal.timeout(Math.min(provider.timeoutMs, remaining)) });
        await response.body?.cancel().catch(() => {});
        if (response.ok) {
          this.stats.sent++;
          return;
        }
        error = `HTTP ${response.status}`;
        if (!RETRYABLE.has(response.status)) break;
        retryAfterMs = retryAfter(response.headers.get("retry-after"), this.deps.now());
      } catch (e) {
        error = e instanceof Error ? e.message : String(e);
      }
      if (attempt === retries) break;
      const backoff = retryAfterMs ?? Math.round(250 * 2 ** attempt * (0.5 + this.deps.random()));
      const wait = Math.min(backoff, deadline - this.deps.now());
      if (wait <= 0) break;
      await this.deps.sleep(wait);
    }
    this.stats.failed++;
    this.stats.dropped += items;
    b.dropped[signal] += items;
    this.deps.log("isthmus: telemetry export failed; dropped", { provider: provider.name, signal, items, error });
  }
}

/** Retry-After as seconds or an HTTP date → milliseconds from now. */
function retryAfter(value: string | null, now: number): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
