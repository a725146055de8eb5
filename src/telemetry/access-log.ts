/**
 * Istio's JSON access-log entry (EnvoyJSONLogFormatIstio, semantics
 * reference §5.3) for one finished request. Values a Worker cannot know
 * (local and upstream socket addresses, connection termination) are null,
 * as Envoy's JSON formatter writes a missing value.
 */
import { protocolOf, type Completed } from "./completed.ts";
import { attr, type KeyValue, type LogRecord } from "./otlp/model.ts";
import { pathWithQuery } from "../gateway/facts.ts";

export interface AccessLogEntry {
  start_time: string;
  route_name: string | null;
  method: string;
  path: string;
  protocol: string;
  response_code: number;
  response_flags: string;
  response_code_details: string;
  connection_termination_details: null;
  upstream_transport_failure_reason: string | null;
  bytes_received: number;
  bytes_sent: number;
  duration: number;
  upstream_service_time: string | null;
  x_forwarded_for: string | null;
  user_agent: string | null;
  request_id: string | null;
  authority: string;
  upstream_host: string | null;
  upstream_cluster: string | null;
  upstream_local_address: null;
  downstream_local_address: null;
  downstream_remote_address: string | null;
  requested_server_name: string | null;
}

export function accessLogEntry(c: Completed): AccessLogEntry {
  const headers = c.context?.facts.headers ?? c.request.headers;
  const remote = c.context?.facts.remoteIp || c.request.headers.get("cf-connecting-ip");
  const failure = c.record.upstreamAttempts?.findLast((a) => a.outcome === "connect-failure");
  return {
    start_time: new Date(c.start).toISOString(),
    route_name: c.record.routeName || null,
    method: c.method,
    // The path as requested (normalized), before any rewrite: %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%.
    path: pathWithQuery(c),
    protocol: protocolOf(c.request),
    response_code: c.status,
    response_flags: c.flags,
    response_code_details: c.details,
    connection_termination_details: null,
    upstream_transport_failure_reason: failure ? "connection_failure" : null,
    bytes_received: c.requestBodyBytes,
    bytes_sent: c.responseBodyBytes,
    duration: Math.round(c.durationMs),
    upstream_service_time: c.record.upstreamServiceTimeMs !== undefined ? String(c.record.upstreamServiceTimeMs) : null,
    x_forwarded_for: headers.get("x-forwarded-for"),
    user_agent: headers.get("user-agent"),
    request_id: headers.get("x-request-id"),
    authority: c.host,
    upstream_host: c.record.upstreamHost ?? null,
    upstream_cluster: c.record.cluster ?? null,
    upstream_local_address: null,
    downstream_local_address: null,
    downstream_remote_address: remote ? `${remote.includes(":") ? `[${remote}]` : remote}:0` : null,
    requested_server_name: c.scheme === "https" ? (c.context?.facts.host ?? null) : null,
  };
}

/**
 * The entry as an OTLP log record: the JSON line as body, every non-null
 * field as an attribute, and the sampled trace's ids (its span id only when
 * `spansReported`: with `disableSpanReporting` the gateway's span is never sent).
 */
export function accessLogRecord(entry: AccessLogEntry, line: string, c: Completed, spansReported = true): LogRecord {
  const attributes: KeyValue[] = [];
  for (const [key, value] of Object.entries(entry)) if (value !== null) attributes.push(attr(key, value as string | number));
  const record: LogRecord = {
    timeUnixNano: c.start,
    observedTimeUnixNano: c.end,
    severityNumber: 9,
    severityText: "INFO",
    body: { stringValue: line },
    attributes,
  };
  const trace = c.record.trace;
  if (trace?.sampled) {
    record.traceId = trace.traceId;
    if (spansReported) record.spanId = trace.spanId;
  }
  return record;
}
