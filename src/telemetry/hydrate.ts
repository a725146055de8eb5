/**
 * The Snapshot's telemetry part → runtime plans: filter and tag
 * expressions parsed once, per-plan flags, the plan lookup by cluster.
 * Runs once per snapshot per isolate.
 */
import type { IstioMetric, TelemetryDef, TelemetryPlanDef } from "../config/snapshot-telemetry.ts";
import { evaluate, parseExpression, tagValue, type AttributeReader, type Node } from "./expression.ts";
import { ISTIO_METRIC_NAMES } from "./metric-names.ts";
import type { RequestMetricNames } from "./metrics.ts";

export interface TagOverride {
  tag: string;
  /** Absent: the label is removed. */
  value?: (read: AttributeReader) => string;
}

export interface RuntimePlan {
  def: TelemetryPlanDef;
  /** Anything to report for this traffic (metrics, spans or access logs). */
  active: boolean;
  metrics: boolean;
  /** The metrics go to this runtime's Prometheus endpoint (one exists, and the plan names `prometheus`). */
  prometheus: boolean;
  disabled: ReadonlySet<IstioMetric>;
  disabledCustom: ReadonlySet<string>;
  /** Label changes per metric; absent when the metric keeps Istio's labels. */
  tags: Partial<Record<IstioMetric, TagOverride[]>>;
  /**
   * The request metrics reported, when every one keeps Istio's labels (no
   * `tags`): their series then share one key, and a store measures them
   * together (`MetricsStore.measureRequest`). Undefined otherwise.
   */
  requestMetrics: RequestMetricNames | undefined;
  accessLog: boolean;
  /** Spans are built and sent for this traffic (it is traced, and `disableSpanReporting` is not set). */
  spans: boolean;
  /** True when the request should be logged (always true without a filter). */
  logFilter: (read: AttributeReader) => boolean;
}

export interface RuntimeTelemetry {
  def: TelemetryDef;
  plans: RuntimePlan[];
  /** The plan for traffic routed to a cluster (plan 0 without one). */
  planFor(cluster: string | undefined): RuntimePlan;
  /**
   * The sampling percentage, when every plan traces at the same one: the
   * trace then does not depend on where the request goes, and is decided as
   * it enters (Envoy decides before its filters run). Undefined when some
   * traffic is not traced or is sampled at another rate: the trace is
   * decided once routing has picked the cluster.
   */
  sampling?: number;
  /**
   * Some plan reports spans. When none does (tracing only propagates, with
   * `disableSpanReporting`), stages and attempts are never timed: their
   * times serve only spans.
   */
  spans: boolean;
}

/** What the runtime offers besides the snapshot's OTLP providers. */
export interface TelemetryRuntime {
  /** A Prometheus endpoint is scraped here (`isthmus serve --metrics-port`). */
  prometheus?: boolean;
}

/**
 * The runtime plans, or undefined when nothing in them reports anything in
 * this runtime (metrics for Prometheus only, where nothing scrapes): the
 * pipeline then reads no clock and times nothing.
 */
export function hydrateTelemetry(def: TelemetryDef, runtime: TelemetryRuntime = {}): RuntimeTelemetry | undefined {
  const plans = def.plans.map((plan) => hydratePlan(plan, runtime.prometheus === true));
  if (!plans.some((p) => p.active)) return undefined;
  const byCluster = new Map(Object.entries(def.clusterPlans).map(([name, i]) => [name, plans[i] as RuntimePlan]));
  const fallback = plans[0] as RuntimePlan;
  return {
    def,
    plans,
    planFor: (cluster) => (cluster !== undefined ? (byCluster.get(cluster) ?? fallback) : fallback),
    sampling: uniformSampling(def.plans),
    spans: plans.some((p) => p.spans),
  };
}

/** The sampling percentage every plan traces at, or undefined when some plan does not trace or samples otherwise. */
function uniformSampling(plans: readonly TelemetryPlanDef[]): number | undefined {
  const first = plans[0]?.tracing?.samplingPercent;
  if (first === undefined) return undefined;
  return plans.every((p) => p.tracing?.samplingPercent === first) ? first : undefined;
}

function compiled(source: string): Node {
  const parsed = parseExpression(source);
  // Compile already rejected invalid expressions; a snapshot from elsewhere fails loudly here, once.
  if (!parsed.ok) throw new Error(`telemetry expression "${source}": ${parsed.error}`);
  return parsed.node;
}

function hydratePlan(def: TelemetryPlanDef, scraped: boolean): RuntimePlan {
  const prometheus = scraped && def.metrics.prometheus === true;
  const metrics = def.metrics.providers.length > 0 || prometheus;
  const accessLog = def.accessLog.console || def.accessLog.providers.length > 0;
  const tags: RuntimePlan["tags"] = {};
  for (const [metric, overrides] of Object.entries(def.metrics.tags) as [IstioMetric, NonNullable<TelemetryPlanDef["metrics"]["tags"][IstioMetric]>][]) {
    tags[metric] = overrides.map((o): TagOverride => {
      if ("remove" in o) return { tag: o.tag };
      const node = compiled(o.value);
      return { tag: o.tag, value: (read) => tagValue(evaluate(node, read)) };
    });
  }
  const filter = def.accessLog.filter !== undefined ? compiled(def.accessLog.filter) : undefined;
  const disabled = new Set(def.metrics.disabled);
  const reported = (metric: IstioMetric) => (disabled.has(metric) ? undefined : ISTIO_METRIC_NAMES[metric]);
  return {
    def,
    active: metrics || accessLog || def.tracing !== undefined,
    metrics,
    prometheus,
    disabled,
    disabledCustom: new Set(def.metrics.disabledCustom),
    tags,
    requestMetrics:
      Object.keys(tags).length === 0
        ? { count: reported("REQUEST_COUNT"), duration: reported("REQUEST_DURATION"), requestSize: reported("REQUEST_SIZE"), responseSize: reported("RESPONSE_SIZE") }
        : undefined,
    accessLog,
    spans: def.tracing !== undefined && def.tracing.reportSpans !== false,
    logFilter: filter ? (read) => evaluate(filter, read) === true : () => true,
  };
}
