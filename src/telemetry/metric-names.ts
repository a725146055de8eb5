/**
 * The metrics Isthmus reports: Istio's standard HTTP metrics (semantics
 * reference §5.1) and Isthmus's own, with Envoy's default histogram buckets.
 */
import type { IstioMetric } from "../config/snapshot-telemetry.ts";

/** Istio's metric names (as Prometheus shows them), by Telemetry `metric` enum. */
export const ISTIO_METRIC_NAMES: Record<IstioMetric, string> = {
  REQUEST_COUNT: "istio_requests_total",
  REQUEST_DURATION: "istio_request_duration_milliseconds",
  REQUEST_SIZE: "istio_request_bytes",
  RESPONSE_SIZE: "istio_response_bytes",
};

/** Isthmus's own metrics; Telemetry `customMetric` can disable them by name. */
export const ISTHMUS_METRIC = {
  rateLimitDecisions: "isthmus_rate_limit_decisions_total",
  retries: "isthmus_upstream_retries_total",
  outlierEjections: "isthmus_outlier_ejections_total",
  mirrors: "isthmus_mirror_requests_total",
  jwksFetches: "isthmus_jwks_fetches_total",
  configVersion: "isthmus_config_version_info",
  foldedSeries: "isthmus_telemetry_series_folded_total",
  dropped: "isthmus_telemetry_dropped_total",
} as const;

export const ISTHMUS_METRICS: string[] = Object.values(ISTHMUS_METRIC);

/** What each metric counts: Prometheus's `# HELP` lines (docs/CONFIG.md, "Metrics", says the same). */
export const METRIC_HELP: Record<string, string> = {
  istio_requests_total: "Requests the gateway answered, by Istio's standard labels.",
  istio_request_duration_milliseconds: "Time from a request's arrival to the last byte of its response body, in milliseconds.",
  istio_request_bytes: "Size of each request as received (headers and body), in bytes.",
  istio_response_bytes: "Size of each response as sent (headers and body), in bytes.",
  [ISTHMUS_METRIC.rateLimitDecisions]: "Rate limit decisions, by rule, scope, mode, outcome and source.",
  [ISTHMUS_METRIC.retries]: "Upstream attempts beyond the first, by upstream cluster.",
  [ISTHMUS_METRIC.outlierEjections]: "Endpoints ejected by outlier detection, by upstream cluster, endpoint and reason.",
  [ISTHMUS_METRIC.mirrors]: "Mirrored requests, by upstream cluster, outcome and response code.",
  [ISTHMUS_METRIC.jwksFetches]: "JWKS fetches, by source and outcome.",
  [ISTHMUS_METRIC.configVersion]: "The configuration version served (1 for the version label).",
  [ISTHMUS_METRIC.foldedSeries]: "Measurements folded into an overflow series because telemetry.maxSeries was reached.",
  [ISTHMUS_METRIC.dropped]: "Spans, metric points and log records lost to failed exports or full buffers.",
};

/**
 * Envoy's default histogram buckets (source/common/stats/histogram_impl.cc);
 * Istio sets none, so all three histograms use them — milliseconds for
 * durations, and the same bounds for byte sizes.
 */
export const ENVOY_BUCKETS: readonly number[] = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];

/** Istio's standard labels, in Istio's order. */
export const ISTIO_LABELS = [
  "reporter",
  "source_workload",
  "source_workload_namespace",
  "source_principal",
  "source_app",
  "source_version",
  "source_canonical_service",
  "source_canonical_revision",
  "source_cluster",
  "destination_workload",
  "destination_workload_namespace",
  "destination_principal",
  "destination_app",
  "destination_version",
  "destination_service",
  "destination_service_name",
  "destination_service_namespace",
  "destination_canonical_service",
  "destination_canonical_revision",
  "destination_cluster",
  "request_protocol",
  "response_flags",
  "connection_security_policy",
  "response_code",
  "grpc_response_status",
] as const;
