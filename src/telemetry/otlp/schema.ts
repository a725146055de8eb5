/**
 * Field numbers and types of the OTLP messages in ./model.ts, from
 * opentelemetry-proto (collector/{trace,metrics,logs}/v1, trace/v1,
 * metrics/v1, logs/v1, common/v1, resource/v1). One description drives
 * both encoders (protobuf.ts and json.ts). Fields Isthmus never sends are
 * left out; a decoder skips what it does not see.
 */

export type Scalar =
  /** UTF-8 string. */
  | "string"
  /** Lower-case hex in the model; bytes in protobuf, hex in JSON. */
  | "hexBytes"
  | "bool"
  /** Varint: int32, uint32 and enums. */
  | "varint"
  /** Varint int64 (JSON: a decimal string). */
  | "int64"
  /** fixed64 (JSON: a decimal string). */
  | "fixed64"
  /** sfixed64 (JSON: a decimal string). */
  | "sfixed64"
  /** Milliseconds in the model; fixed64 nanoseconds on the wire. */
  | "millisAsNanos"
  | "double"
  /** repeated fixed64, packed. */
  | "packedFixed64"
  /** repeated double, packed. */
  | "packedDouble";

export interface Field {
  no: number;
  name: string;
  type: Scalar | (() => Message);
  repeated?: boolean;
}

export type Message = readonly Field[];

/** A message description built once, on first use (they refer to each other). */
function message(build: () => Message): () => Message {
  let built: Message | undefined;
  return () => (built ??= build());
}

/** An attribute: the encoder keeps the bytes of string-valued ones (metric labels repeat in every export). */
export const KeyValue = message(() => [
  { no: 1, name: "key", type: "string" },
  { no: 2, name: "value", type: AnyValue },
]);
const ArrayValue = message(() => [{ no: 1, name: "values", type: AnyValue, repeated: true }]);
const KeyValueList = message(() => [{ no: 1, name: "values", type: KeyValue, repeated: true }]);
const AnyValue = message(() => [
  { no: 1, name: "stringValue", type: "string" },
  { no: 2, name: "boolValue", type: "bool" },
  { no: 3, name: "intValue", type: "int64" },
  { no: 4, name: "doubleValue", type: "double" },
  { no: 5, name: "arrayValue", type: ArrayValue },
  { no: 6, name: "kvlistValue", type: KeyValueList },
]);
const Resource = message(() => [{ no: 1, name: "attributes", type: KeyValue, repeated: true }]);
const Scope = message(() => [
  { no: 1, name: "name", type: "string" },
  { no: 2, name: "version", type: "string" },
]);

const Status = message(() => [
  { no: 2, name: "message", type: "string" },
  { no: 3, name: "code", type: "varint" },
]);
const Span = message(() => [
  { no: 1, name: "traceId", type: "hexBytes" },
  { no: 2, name: "spanId", type: "hexBytes" },
  { no: 3, name: "traceState", type: "string" },
  { no: 4, name: "parentSpanId", type: "hexBytes" },
  { no: 5, name: "name", type: "string" },
  { no: 6, name: "kind", type: "varint" },
  { no: 7, name: "startTimeUnixNano", type: "millisAsNanos" },
  { no: 8, name: "endTimeUnixNano", type: "millisAsNanos" },
  { no: 9, name: "attributes", type: KeyValue, repeated: true },
  { no: 15, name: "status", type: Status },
]);
const ScopeSpans = message(() => [
  { no: 1, name: "scope", type: Scope },
  { no: 2, name: "spans", type: Span, repeated: true },
]);
const ResourceSpans = message(() => [
  { no: 1, name: "resource", type: Resource },
  { no: 2, name: "scopeSpans", type: ScopeSpans, repeated: true },
]);
export const TRACES_REQUEST: Message = [{ no: 1, name: "resourceSpans", type: ResourceSpans, repeated: true }];

const NumberDataPoint = message(() => [
  { no: 7, name: "attributes", type: KeyValue, repeated: true },
  { no: 2, name: "startTimeUnixNano", type: "millisAsNanos" },
  { no: 3, name: "timeUnixNano", type: "millisAsNanos" },
  { no: 4, name: "asDouble", type: "double" },
  { no: 6, name: "asInt", type: "sfixed64" },
]);
const HistogramDataPoint = message(() => [
  { no: 9, name: "attributes", type: KeyValue, repeated: true },
  { no: 2, name: "startTimeUnixNano", type: "millisAsNanos" },
  { no: 3, name: "timeUnixNano", type: "millisAsNanos" },
  { no: 4, name: "count", type: "fixed64" },
  { no: 5, name: "sum", type: "double" },
  { no: 6, name: "bucketCounts", type: "packedFixed64" },
  { no: 7, name: "explicitBounds", type: "packedDouble" },
  { no: 11, name: "min", type: "double" },
  { no: 12, name: "max", type: "double" },
]);
const Gauge = message(() => [{ no: 1, name: "dataPoints", type: NumberDataPoint, repeated: true }]);
const Sum = message(() => [
  { no: 1, name: "dataPoints", type: NumberDataPoint, repeated: true },
  { no: 2, name: "aggregationTemporality", type: "varint" },
  { no: 3, name: "isMonotonic", type: "bool" },
]);
const Histogram = message(() => [
  { no: 1, name: "dataPoints", type: HistogramDataPoint, repeated: true },
  { no: 2, name: "aggregationTemporality", type: "varint" },
]);
const Metric = message(() => [
  { no: 1, name: "name", type: "string" },
  { no: 2, name: "description", type: "string" },
  { no: 3, name: "unit", type: "string" },
  { no: 5, name: "gauge", type: Gauge },
  { no: 7, name: "sum", type: Sum },
  { no: 9, name: "histogram", type: Histogram },
]);
const ScopeMetrics = message(() => [
  { no: 1, name: "scope", type: Scope },
  { no: 2, name: "metrics", type: Metric, repeated: true },
]);
const ResourceMetrics = message(() => [
  { no: 1, name: "resource", type: Resource },
  { no: 2, name: "scopeMetrics", type: ScopeMetrics, repeated: true },
]);
export const METRICS_REQUEST: Message = [{ no: 1, name: "resourceMetrics", type: ResourceMetrics, repeated: true }];

const LogRecord = message(() => [
  { no: 1, name: "timeUnixNano", type: "millisAsNanos" },
  { no: 11, name: "observedTimeUnixNano", type: "millisAsNanos" },
  { no: 2, name: "severityNumber", type: "varint" },
  { no: 3, name: "severityText", type: "string" },
  { no: 5, name: "body", type: AnyValue },
  { no: 6, name: "attributes", type: KeyValue, repeated: true },
  { no: 9, name: "traceId", type: "hexBytes" },
  { no: 10, name: "spanId", type: "hexBytes" },
]);
const ScopeLogs = message(() => [
  { no: 1, name: "scope", type: Scope },
  { no: 2, name: "logRecords", type: LogRecord, repeated: true },
]);
const ResourceLogs = message(() => [
  { no: 1, name: "resource", type: Resource },
  { no: 2, name: "scopeLogs", type: ScopeLogs, repeated: true },
]);
export const LOGS_REQUEST: Message = [{ no: 1, name: "resourceLogs", type: ResourceLogs, repeated: true }];
