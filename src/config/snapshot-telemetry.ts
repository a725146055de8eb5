/**
 * The telemetry part of the Snapshot: the OTLP exporters of GatewayConfig
 * and, per scope of traffic, what the Telemetry resources ask for (tracing,
 * metrics, access logging), already merged with Istio's precedence (root
 * namespace → gateway → namespace → destination workload). Plain JSON; the
 * Worker hydrates it once per isolate (src/telemetry/hydrate.ts).
 *
 * Plan 0 applies to requests without a destination cluster; a cluster whose
 * traffic is shaped by more Telemetry resources has its own plan.
 */

/** Istio's standard HTTP metrics, by their Telemetry `metric` enum name. */
export type IstioMetric = "REQUEST_COUNT" | "REQUEST_DURATION" | "REQUEST_SIZE" | "RESPONSE_SIZE";

/** Trace context formats (the OTEL_PROPAGATORS vocabulary). */
export type Propagator = "tracecontext" | "b3" | "b3multi";

export type Signal = "traces" | "metrics" | "logs";

/** GatewayConfig `extensionProviders[].opentelemetry`. */
export interface OtlpProviderDef {
  name: string;
  /** Base URL; `/v1/traces`, `/v1/metrics`, `/v1/logs` are appended. */
  endpoint: string;
  protocol: "http/protobuf" | "http/json";
  /** Header name → the Worker secret (binding name) holding its value. */
  headers: [name: string, secret: string][];
  timeoutMs: number;
  /** The signals this provider receives when no Telemetry resource names providers (Istio's defaultProviders). */
  signals: Signal[];
}

export interface TelemetrySettingsDef {
  /** OTLP resource attributes (service.name defaults to `isthmus`). */
  resourceAttributes: Record<string, string>;
  flushIntervalMs: number;
  flushRequests: number;
  maxSeries: number;
  exportRetries: number;
  propagators: Propagator[];
  /** `source_workload` / `source_workload_namespace` of Istio's metrics: the gateway itself. */
  sourceWorkload: string;
  sourceNamespace: string;
}

/** Where a custom span tag takes its value from (Telemetry `tracing[].customTags`). */
export type CustomTagDef =
  | { tag: string; literal: string }
  | { tag: string; header: string; defaultValue?: string }
  | { tag: string; environment: string; defaultValue?: string };

/** A tag override of one metric: remove a label, or set it from an expression. */
export type TagOverrideDef = { tag: string; remove: true } | { tag: string; value: string };

export interface TracingPlanDef {
  /** Index into `providers`. */
  provider: number;
  /** 0–100; applies to requests without a sampled or unsampled parent. */
  samplingPercent: number;
  customTags: CustomTagDef[];
  /**
   * `false` (Telemetry `disableSpanReporting`): no span is built or sent for
   * this traffic; its trace is still decided, propagated upstream and marked
   * in x-request-id, as Istio's field does not change propagation or
   * sampling. Absent: spans are reported.
   */
  reportSpans?: false;
}

export interface MetricsPlanDef {
  /** Indexes into `providers`; empty means no metrics for this traffic. */
  providers: number[];
  /**
   * The metrics also go to Istio's built-in `prometheus` provider: the
   * scrape endpoint of `isthmus serve --metrics-port` (Cloudflare has no
   * place to scrape, so there it adds nothing). True by default, as Istio
   * reports to Prometheus unless a Telemetry names providers without it.
   */
  prometheus: boolean;
  disabled: IstioMetric[];
  /** Isthmus metrics (by name) turned off through `customMetric`. */
  disabledCustom: string[];
  tags: Partial<Record<IstioMetric, TagOverrideDef[]>>;
}

export interface AccessLogPlanDef {
  /** Istio's built-in `envoy` provider: one JSON line per request through console.log. */
  console: boolean;
  /** OTLP log providers (indexes into `providers`). */
  providers: number[];
  /** A filter expression (the CEL subset of src/telemetry/expression.ts); absent logs every request. */
  filter?: string;
}

export interface TelemetryPlanDef {
  /** Absent: no trace (no spans, no trace context written: client headers pass unchanged). */
  tracing?: TracingPlanDef;
  metrics: MetricsPlanDef;
  accessLog: AccessLogPlanDef;
}

export interface TelemetryDef {
  providers: OtlpProviderDef[];
  settings: TelemetrySettingsDef;
  /** Plan 0 is for requests without a destination cluster. */
  plans: TelemetryPlanDef[];
  /** Cluster name → index into `plans` (absent: plan 0). */
  clusterPlans: Record<string, number>;
}
