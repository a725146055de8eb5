/**
 * The OTLP messages Isthmus sends (opentelemetry-proto: collector trace,
 * metrics and logs v1), as plain objects with the field names of OTLP's JSON
 * mapping. Two deviations keep the hot path cheap; the encoders undo them:
 *
 * - times are milliseconds since the epoch (`Millis`), written as
 *   nanoseconds;
 * - trace and span ids are lower-case hex strings, written as bytes in
 *   protobuf and as hex in JSON (OTLP's JSON rule for ids).
 */

/** Milliseconds since the epoch; encoded as `*TimeUnixNano`. */
export type Millis = number;

export type AnyValue =
  | { stringValue: string }
  | { boolValue: boolean }
  | { intValue: number }
  | { doubleValue: number }
  | { arrayValue: { values: AnyValue[] } }
  | { kvlistValue: { values: KeyValue[] } };

export interface KeyValue {
  key: string;
  value: AnyValue;
}

export interface Resource {
  attributes: KeyValue[];
}

export interface InstrumentationScope {
  name: string;
  version?: string;
}

/** SpanKind. */
export const SPAN_KIND = { INTERNAL: 1, SERVER: 2, CLIENT: 3 } as const;
/** Status.code. */
export const STATUS_CODE = { UNSET: 0, OK: 1, ERROR: 2 } as const;
/** AggregationTemporality. */
export const DELTA = 1;

export interface Span {
  traceId: string;
  spanId: string;
  traceState?: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: Millis;
  endTimeUnixNano: Millis;
  attributes: KeyValue[];
  status?: { code: number; message?: string };
}

export interface NumberDataPoint {
  attributes: KeyValue[];
  startTimeUnixNano: Millis;
  timeUnixNano: Millis;
  asInt?: number;
  asDouble?: number;
}

export interface HistogramDataPoint {
  attributes: KeyValue[];
  startTimeUnixNano: Millis;
  timeUnixNano: Millis;
  count: number;
  sum: number;
  bucketCounts: number[];
  explicitBounds: readonly number[];
  min?: number;
  max?: number;
}

export interface Metric {
  name: string;
  description?: string;
  unit?: string;
  gauge?: { dataPoints: NumberDataPoint[] };
  sum?: { dataPoints: NumberDataPoint[]; aggregationTemporality: number; isMonotonic: boolean };
  histogram?: { dataPoints: HistogramDataPoint[]; aggregationTemporality: number };
}

export interface LogRecord {
  timeUnixNano: Millis;
  observedTimeUnixNano: Millis;
  severityNumber: number;
  severityText: string;
  body: AnyValue;
  attributes: KeyValue[];
  traceId?: string;
  spanId?: string;
}

export interface ExportTraceServiceRequest {
  resourceSpans: { resource: Resource; scopeSpans: { scope: InstrumentationScope; spans: Span[] }[] }[];
}

export interface ExportMetricsServiceRequest {
  resourceMetrics: { resource: Resource; scopeMetrics: { scope: InstrumentationScope; metrics: Metric[] }[] }[];
}

export interface ExportLogsServiceRequest {
  resourceLogs: { resource: Resource; scopeLogs: { scope: InstrumentationScope; logRecords: LogRecord[] }[] }[];
}

/** A string attribute. */
export function attr(key: string, value: string | number | boolean): KeyValue {
  if (typeof value === "string") return { key, value: { stringValue: value } };
  if (typeof value === "boolean") return { key, value: { boolValue: value } };
  return { key, value: Number.isInteger(value) ? { intValue: value } : { doubleValue: value } };
}
