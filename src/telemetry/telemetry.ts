/**
 * The isolate's telemetry: after the pipeline has answered, `observe`
 * measures the response body as it streams to the client; once it is
 * complete, the request is reported — Istio's metrics, spans when traced,
 * the access log — off the request's path, in its `waitUntil`. Nothing
 * here can change a response or delay it: the only change is that the
 * body passes through a counting stream.
 *
 * @example
 * const telemetry = new Telemetry({ fetch, now: Date.now, sleep, random: Math.random, secret: (n) => env[n], log });
 * return telemetry.observe(request, result, snapshot, (p) => ctx.waitUntil(p));
 */
import { countingStream, type BodyEnd } from "../upstream/response-body.ts";
import type { PipelineResult } from "../gateway/context.ts";
import { isEncoded, parseLength } from "../gateway/content-length.ts";
import type { RuntimeSnapshot } from "../routing/hydrate.ts";
import type { IstioMetric, OtlpProviderDef } from "../config/snapshot-telemetry.ts";
import { accessLogEntry, accessLogRecord } from "./access-log.ts";
import { attributesOf, completeRequest, responseHead, type Completed, type ResponseHead } from "./completed.ts";
import { Exporter, type ExporterDeps } from "./exporter.ts";
import type { RuntimePlan, RuntimeTelemetry } from "./hydrate.ts";
import { istioLabels, type LabelValues } from "./istio-labels.ts";
import { ISTHMUS_METRIC, ISTIO_LABELS, ISTIO_METRIC_NAMES } from "./metric-names.ts";
import type { MetricsStore } from "./metrics.ts";
import type { PrometheusRegistry } from "./prometheus.ts";
import { attr, type KeyValue, type Resource } from "./otlp/model.ts";
import { buildSpans } from "./spans.ts";
import { randomHex } from "./trace-context.ts";
import { traceWhenReported } from "./tracing.ts";

export interface TelemetryDeps extends ExporterDeps {
  /** Writes an access-log line (console.log in the Worker). */
  write?: (line: string) => void;
  /** Where the built-in `prometheus` provider's metrics are kept for scrapes (`isthmus serve --metrics-port`). */
  prometheus?: PrometheusRegistry;
}

const METRICS: IstioMetric[] = ["REQUEST_COUNT", "REQUEST_DURATION", "REQUEST_SIZE", "RESPONSE_SIZE"];

export class Telemetry {
  readonly exporter: Exporter;
  private readonly deps: TelemetryDeps;
  private readonly instanceId: string;
  private colo: string | undefined;
  /** request.cf is read once per isolate for the colo (a Worker isolate serves one location). */
  private coloRead = false;
  private resource: { def: object; value: Resource } | undefined;
  /** The stores each plan's metrics go to (see `stores`). */
  private readonly planStores = new WeakMap<RuntimePlan, MetricsStore[]>();
  /** The telemetry of the snapshot last served, for metrics not tied to a request (JWKS fetches). */
  private current: { telemetry: RuntimeTelemetry; version: string } | undefined;

  constructor(deps: TelemetryDeps) {
    this.deps = deps;
    this.exporter = new Exporter(deps);
    this.instanceId = `${randomHex(8, deps.random)}-${randomHex(8, deps.random)}`;
  }

  /**
   * Notes the snapshot a request is about to be served with, so that what
   * happens during the request but outside it (the JWKS fetch its token
   * triggers) is counted under that snapshot's telemetry.
   */
  serving(snapshot: RuntimeSnapshot): void {
    const telemetry = snapshot.telemetry;
    if (telemetry && this.current?.telemetry !== telemetry) this.current = { telemetry, version: snapshot.version };
  }

  /**
   * Reports a request once its response has been sent. Returns the
   * response to give the client (the same one, its body metered).
   */
  observe(request: Request, result: PipelineResult, snapshot: RuntimeSnapshot, waitUntil: (promise: Promise<unknown>) => void): Response {
    const telemetry = snapshot.telemetry;
    if (!telemetry) return result.response;
    this.serving(snapshot);
    if (!this.coloRead) {
      this.coloRead = true;
      this.colo = (request.cf as { colo?: string } | undefined)?.colo;
    }
    const plan = telemetry.planFor(result.context?.cluster?.name);
    if (!plan.active) return result.response;
    // The response is final here: its status and headers are read once, for the meter and the report
    // (or were counted when it was copied from the upstream's, see countedDownstreamResponse).
    const head = result.context?.responseHead ?? responseHead(result.response);
    // A body the upstream stage watches to its end is not piped again (workerd cannot chain two TransformStreams).
    const bodyDone = result.record.bodyDone;
    const metered = bodyDone ? watchedMeter(result.response, head, bodyDone) : meterBody(result.response, head);
    const { response } = metered;
    /** Reports the request; returns the export to keep alive, if one is due. A failure is logged, never thrown. */
    const finish = (sent: Sent): Promise<void> | undefined => {
      try {
        const end = this.deps.now();
        const completed = completeRequest({ request, context: result.context, record: result.record, response, end, responseBodyBytes: sent.bytes, disconnected: sent.disconnected, head });
        this.report(completed, telemetry, plan, snapshot.version);
        // Without an OTLP provider (metrics for Prometheus only) there is nothing to export.
        return telemetry.def.providers.length > 0 ? this.exporter.finishedRequest(telemetry.def, this.resourceFor(telemetry), end) : undefined;
      } catch (err) {
        this.deps.log("telemetry: reporting a request failed", { error: String(err) });
        return undefined;
      }
    };
    const mirrors = result.record.mirrorsDone;
    if (metered.sent && !mirrors) {
      // Sent with the headers (a small body): reported now, with no waitUntil unless an export is due.
      // Under workerd this runs before the response is written either way (a resolved promise's callback
      // runs in the same microtask checkpoint), so nothing is delayed that was not before.
      const flushing = finish(metered.sent);
      if (flushing) waitUntil(flushing);
      return response;
    }
    waitUntil(
      metered.done.then(async (sent) => {
        if (mirrors) await mirrors.catch(() => {});
        await finish(sent);
      }),
    );
    return response;
  }

  /** A JWKS fetch by the isolate's cache (counted under the gateway-wide plan). */
  jwksFetch(source: string, ok: boolean): void {
    const current = this.current;
    if (!current) return;
    const plan = current.telemetry.plans[0] as RuntimePlan;
    for (const store of this.stores(current.telemetry, plan, ISTHMUS_METRIC.jwksFetches)) {
      const outcome = ok ? "success" : "failure";
      store.add(ISTHMUS_METRIC.jwksFetches, `${source}|${outcome}`, () => [attr("source", source), attr("outcome", outcome)]);
    }
  }

  /**
   * The OTLP resource of this isolate: the configured attributes, with
   * `service.instance.id` unique to the isolate (a configured value gets
   * the isolate's id appended), and Cloudflare's cloud attributes unless set.
   */
  private resourceFor(telemetry: RuntimeTelemetry): Resource {
    const def = telemetry.def.settings;
    if (this.resource?.def === def) return this.resource.value;
    const attributes: KeyValue[] = Object.entries(def.resourceAttributes).map(([k, v]) => (k === "service.instance.id" ? attr(k, instanceIdOf(v, this.instanceId)) : attr(k, v)));
    const has = (k: string) => k in def.resourceAttributes;
    if (!has("service.instance.id")) attributes.push(attr("service.instance.id", this.instanceId));
    if (!has("cloud.provider")) attributes.push(attr("cloud.provider", "cloudflare"));
    if (!has("cloud.platform")) attributes.push(attr("cloud.platform", "cloudflare_workers"));
    if (!has("cloud.region") && this.colo) attributes.push(attr("cloud.region", this.colo));
    this.resource = { def, value: { attributes } };
    return this.resource.value;
  }

  /**
   * The metrics stores of the plan's providers (none when the metric is
   * disabled there). Without `custom`, kept per plan: a provider's store
   * lives as long as the isolate, and a new configuration brings new plans
   * (and so applies its `maxSeries`).
   */
  private stores(telemetry: RuntimeTelemetry, plan: RuntimePlan, custom?: string): MetricsStore[] {
    if (custom === undefined) {
      let stores = this.planStores.get(plan);
      if (!stores) this.planStores.set(plan, (stores = this.openStores(telemetry, plan)));
      return stores;
    }
    return plan.disabledCustom.has(custom) ? [] : this.openStores(telemetry, plan);
  }

  private openStores(telemetry: RuntimeTelemetry, plan: RuntimePlan): MetricsStore[] {
    if (!plan.metrics) return [];
    const max = telemetry.def.settings.maxSeries;
    const stores = plan.def.metrics.providers.map((i) => this.exporter.metrics(telemetry.def.providers[i] as OtlpProviderDef, max));
    if (plan.prometheus && this.deps.prometheus) stores.push(this.deps.prometheus.metrics(max));
    return stores;
  }

  private report(c: Completed, telemetry: RuntimeTelemetry, plan: RuntimePlan, version: string): void {
    const def = telemetry.def;
    if (plan.metrics) this.recordMetrics(c, telemetry, plan, version);

    const tracing = plan.def.tracing;
    if (tracing) {
      // Requests answered before any upstream call decide their trace here (x-request-id marked as on the request's path).
      const trace = c.record.trace ?? traceWhenReported(c.request, c.context, c.record, tracing.samplingPercent, this.deps.random);
      // disableSpanReporting: the trace was propagated, but no span is built or sent.
      if (trace.sampled && plan.spans) {
        const provider = def.providers[tracing.provider] as OtlpProviderDef;
        const spans = buildSpans({ completed: c, trace, customTags: tracing.customTags, environment: this.deps.secret, random: this.deps.random, configVersion: version });
        this.exporter.addSpans(provider, def.settings.maxSeries, spans);
      }
    }

    if (plan.accessLog && plan.logFilter(attributesOf(c))) {
      const entry = accessLogEntry(c);
      const line = JSON.stringify(entry);
      if (plan.def.accessLog.console) (this.deps.write ?? console.log)(line);
      for (const i of plan.def.accessLog.providers) {
        this.exporter.addLog(def.providers[i] as OtlpProviderDef, def.settings.maxSeries, accessLogRecord(entry, line, c, plan.spans));
      }
    }
  }

  private recordMetrics(c: Completed, telemetry: RuntimeTelemetry, plan: RuntimePlan, version: string): void {
    const stores = this.stores(telemetry, plan);
    if (stores.length === 0) return;
    const labels = istioLabels(c, telemetry.def.settings);
    let held: LabelValues | undefined;
    const values = () => (held ??= labels.values());
    const baseKey = labels.key;
    // One attribute list for the request's new series of every Istio metric (never modified once built).
    let baseAttributes: KeyValue[] | undefined;
    const base = () => {
      const v = values();
      return (baseAttributes ??= ISTIO_LABELS.map((name, i) => attr(name, v[i] as string)));
    };
    const record = c.record;
    // Without label changes the four metrics share the key, and each store finds their series at once.
    const together = plan.requestMetrics;
    if (together) for (const store of stores) store.measureRequest(together, baseKey, base, c);
    else recordTagged(c, plan, stores, baseKey, base, values);

    const cluster = record.cluster ?? "unknown";
    // Isthmus's own metrics go to the same stores, unless the plan disables them one by one.
    const storesOf = (metric: string) => (plan.disabledCustom.has(metric) ? [] : stores);
    const count = (metric: string, key: string, labels: () => KeyValue[], value = 1) => {
      for (const store of storesOf(metric)) store.add(metric, key, labels, value);
    };
    for (const d of record.rateLimit ?? []) {
      count(ISTHMUS_METRIC.rateLimitDecisions, `${d.rule}|${d.scope}|${d.mode}|${d.outcome}|${d.source}`, () => [
        attr("rule", d.rule),
        attr("scope", d.scope),
        attr("mode", d.mode),
        attr("outcome", d.outcome),
        attr("source", d.source),
      ]);
    }
    if ((record.attempts ?? 0) > 1) count(ISTHMUS_METRIC.retries, cluster, () => [attr("upstream_cluster", cluster)], (record.attempts as number) - 1);
    for (const a of record.upstreamAttempts ?? []) {
      const reason = a.ejected;
      if (reason) count(ISTHMUS_METRIC.outlierEjections, `${cluster}|${a.endpoint}|${reason}`, () => [attr("upstream_cluster", cluster), attr("endpoint", a.endpoint), attr("reason", reason)]);
    }
    for (const m of record.mirrors ?? []) {
      const code = m.outcome === "sent" ? String(m.status) : "0";
      count(ISTHMUS_METRIC.mirrors, `${m.cluster}|${m.outcome}|${code}`, () => [attr("upstream_cluster", m.cluster), attr("outcome", m.outcome), attr("response_code", code)]);
    }
    for (const store of storesOf(ISTHMUS_METRIC.configVersion)) {
      store.set(ISTHMUS_METRIC.configVersion, version, () => [attr("version", version)], 1);
    }
  }
}

/**
 * The `service.instance.id` exported for a configured one: the value with
 * the isolate's id appended. Metrics are delta per isolate, and OTLP allows
 * one writer per stream: isolates sharing an id would send overlapping
 * points of the same series, which a collector's deltatocumulative drops.
 *
 * @example
 * instanceIdOf("edge-prod", "5f1c9a0b7e2d4c13-0a1b2c3d4e5f6a7b") // "edge-prod-5f1c9a0b7e2d4c13-0a1b2c3d4e5f6a7b"
 */
function instanceIdOf(configured: string, isolate: string): string {
  return configured === "" ? isolate : `${configured}-${isolate}`;
}

/** Istio's request metrics when the plan changes some of their labels (`tags`): each metric has its own key. */
function recordTagged(c: Completed, plan: RuntimePlan, stores: MetricsStore[], baseKey: string, base: () => KeyValue[], values: () => LabelValues): void {
  let read: ReturnType<typeof attributesOf> | undefined;
  for (const metric of METRICS) {
    if (plan.disabled.has(metric)) continue;
    const name = ISTIO_METRIC_NAMES[metric];
    let key = baseKey;
    let attributes = base;
    const overrides = plan.tags[metric];
    if (overrides) {
      read ??= attributesOf(c);
      const v = values();
      const tags = new Map<string, string>(ISTIO_LABELS.map((n, i) => [n, v[i] as string]));
      for (const o of overrides) {
        if (o.value) tags.set(o.tag, o.value(read));
        else tags.delete(o.tag);
      }
      key = [...tags].map(([k, t]) => `${k}=${t}`).join("\u0001");
      attributes = () => [...tags].map(([k, t]) => attr(k, t));
    }
    for (const store of stores) {
      if (metric === "REQUEST_COUNT") store.add(name, key, attributes);
      else if (metric === "REQUEST_DURATION") store.record(name, key, attributes, c.durationMs);
      else if (metric === "REQUEST_SIZE") store.record(name, key, attributes, c.requestBytes);
      else store.record(name, key, attributes, c.responseBytes);
    }
  }
}

/** What was sent of a response body. */
export interface Sent {
  bytes: number;
  /** The client went away before the body was complete. */
  disconnected: boolean;
}

/** A metered response: `done` settles once its body is sent; `sent` is set when that is known at once. */
export interface Metered {
  response: Response;
  done: Promise<Sent>;
  sent?: Sent;
}

function known(response: Response, sent: Sent): Metered {
  return { response, done: Promise.resolve(sent), sent };
}

/** Bodies of declared length up to this are reported when the response starts (see meterBody). */
export const SMALL_BODY_BYTES = 65_536;

/**
 * The meter of a body the upstream stage already watches (watchedBody): its
 * end and size come from there. A body cut off by the route timeout ends
 * incomplete; completeRequest reads that as the timeout (flag UT), not as
 * the client going away.
 */
function watchedMeter(response: Response, head: Pick<ResponseHead, "contentLength">, bodyDone: Promise<BodyEnd>): Metered {
  const declared = parseLength(head.contentLength);
  return { response, done: bodyDone.then((end) => ({ bytes: end.bytes ?? (end.completed ? (declared ?? 0) : 0), disconnected: !end.completed })) };
}

/**
 * Lets telemetry know when the body has been sent. `done` settles when it
 * has (or at once without a body), with its size and whether the client
 * went away first; `sent` holds the same at once when nothing is left to
 * wait for (no body, or a small one).
 *
 * - A body of declared length up to SMALL_BODY_BYTES is not wrapped at all:
 *   it follows the headers at once, so the request is reported when the
 *   response starts, with the declared size (a disconnect during it is not
 *   seen). Wrapping it cost about 0.1 ms of workerd CPU per request.
 * - A larger body of declared length goes through workerd's native
 *   FixedLengthStream (bytes pumped natively; the size is the declared
 *   length, 0 when the client goes away during it).
 * - Other bodies (chunked, or outside workerd) are counted by a JavaScript
 *   TransformStream (about 0.5 ms per request; bench/NOTES.md).
 */
export function meterBody(response: Response, head: Pick<ResponseHead, "status" | "contentLength" | "contentEncoding"> = responseHead(response)): Metered {
  const body = response.body;
  // A WebSocket upgrade keeps its own Response (its socket would be lost in a copy). workerd refuses a
  // WebSocket on any other status, so the status says it without reading `webSocket` (a native getter).
  if (head.status === 101 || !body) return known(response, { bytes: 0, disconnected: false });
  const declared = parseLength(head.contentLength);
  if (declared !== undefined && declared <= SMALL_BODY_BYTES) return known(response, { bytes: declared, disconnected: false });
  if (declared !== undefined && typeof FixedLengthStream === "function") {
    // An encoded body (gzip, br) comes out of fetch() decoded, longer than its Content-Length: a
    // FixedLengthStream of that length would refuse it. The declared (encoded) size is what is reported.
    const pipe = isEncoded(head.contentEncoding) ? new IdentityTransformStream() : new FixedLengthStream(declared);
    const done = body.pipeTo(pipe.writable).then(
      () => ({ bytes: declared, disconnected: false }),
      () => ({ bytes: 0, disconnected: true }),
    );
    return { response: new Response(pipe.readable, response), done };
  }
  const counter = countingStream();
  const done = body.pipeTo(counter.writable).then(
    () => ({ bytes: counter.bytes(true) ?? 0, disconnected: !counter.complete() }),
    () => ({ bytes: counter.bytes(false) ?? 0, disconnected: true }),
  );
  return { response: new Response(counter.readable, response), done };
}
