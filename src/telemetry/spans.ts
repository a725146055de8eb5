/**
 * The spans of one traced request: a SERVER span for the request at the
 * gateway, INTERNAL children for authentication, authorization and rate
 * limiting, a CLIENT child per upstream attempt (its span id is the parent
 * the upstream saw in traceparent) and per mirrored copy. Attributes follow
 * the OpenTelemetry HTTP semantic conventions, plus Envoy's and Istio's
 * tags (`response_flags`, `upstream_cluster`, `guid:x-request-id`).
 *
 * Times come from `deps.now()`: in workerd the clock only advances on I/O,
 * so spans of pure computation last 0 ms (docs/ARCHITECTURE.md, Telemetry).
 */
import type { CustomTagDef } from "../config/snapshot.ts";
import type { MirrorOutcome } from "../routing/mirror.ts";
import { protocolOf, type Completed } from "./completed.ts";
import { attr, SPAN_KIND, STATUS_CODE, type KeyValue, type Span } from "./otlp/model.ts";
import type { TraceContext } from "./trace-context.ts";
import { randomHex } from "./trace-context.ts";

export interface SpanInput {
  completed: Completed;
  trace: TraceContext;
  customTags: readonly CustomTagDef[];
  /** Worker bindings (vars and secrets), for `environment` custom tags. */
  environment: (name: string) => string | undefined;
  random: () => number;
  configVersion?: string;
}

/** The SERVER span's name: Istio's `<service>:<port>/*` when routed to a service, else `<authority>/*`. */
function serverSpanName(c: Completed): string {
  const cluster = c.context?.cluster;
  if (cluster) return `${cluster.service}:${cluster.port}/*`;
  return `${c.host}/*`;
}

function customTagAttributes(input: SpanInput): KeyValue[] {
  const headers = input.completed.context?.facts.headers ?? input.completed.request.headers;
  const out: KeyValue[] = [];
  for (const tag of input.customTags) {
    let value: string | undefined;
    if ("literal" in tag) value = tag.literal;
    else if ("header" in tag) value = headers.get(tag.header) ?? tag.defaultValue;
    else value = input.environment(tag.environment) ?? tag.defaultValue;
    if (value !== undefined) out.push(attr(tag.tag, value));
  }
  return out;
}

/** The spans of a sampled request (see the file's comment): the SERVER span first, then its children. */
export function buildSpans(input: SpanInput): Span[] {
  const { completed: c, trace } = input;
  const record = c.record;
  const headers = c.context?.facts.headers ?? c.request.headers;
  const attributes: KeyValue[] = [
    attr("http.request.method", c.method),
    attr("url.scheme", c.scheme),
    attr("url.path", c.path),
    attr("server.address", c.context?.facts.host ?? c.host),
    attr("network.protocol.version", protocolOf(c.request).replace(/^HTTP\//, "")),
    attr("http.response.status_code", c.status),
    attr("response_flags", c.flags),
    attr("istio.response_code_details", c.details),
    attr("http.request.body.size", c.requestBodyBytes),
    attr("http.response.body.size", c.responseBodyBytes),
  ];
  if (c.query) attributes.push(attr("url.query", c.query));
  if (c.context) attributes.push(attr("server.port", c.context.facts.port));
  const client = c.context?.facts.remoteIp;
  if (client) attributes.push(attr("client.address", client));
  const agent = headers.get("user-agent");
  if (agent) attributes.push(attr("user_agent.original", agent));
  const requestId = headers.get("x-request-id");
  if (requestId) attributes.push(attr("guid:x-request-id", requestId));
  if (record.routeName) attributes.push(attr("isthmus.route.name", record.routeName));
  if (record.cluster) attributes.push(attr("upstream_cluster", record.cluster));
  if (record.upstreamHost) attributes.push(attr("upstream_host", record.upstreamHost));
  if (record.requestPrincipal) attributes.push(attr("isthmus.request.principal", record.requestPrincipal));
  if (input.configVersion) attributes.push(attr("isthmus.config.version", input.configVersion));
  attributes.push(...customTagAttributes(input));
  const error = c.status === 0 || c.status >= 500;
  const server: Span = {
    traceId: trace.traceId,
    spanId: trace.spanId,
    name: serverSpanName(c),
    kind: SPAN_KIND.SERVER,
    startTimeUnixNano: c.start,
    endTimeUnixNano: c.end,
    attributes,
    status: error ? { code: STATUS_CODE.ERROR, message: c.flags !== "-" ? c.flags : `HTTP ${c.status}` } : { code: STATUS_CODE.UNSET },
  };
  if (trace.parentSpanId) server.parentSpanId = trace.parentSpanId;
  if (trace.traceState) server.traceState = trace.traceState;
  const spans: Span[] = [server];

  for (const stage of record.stages ?? []) {
    spans.push({
      traceId: trace.traceId,
      spanId: randomHex(8, input.random),
      parentSpanId: trace.spanId,
      name: stage.name,
      kind: SPAN_KIND.INTERNAL,
      startTimeUnixNano: stage.start,
      endTimeUnixNano: stage.end,
      attributes: Object.entries(stage.attributes).map(([k, v]) => attr(k, v)),
    });
  }

  const cluster = record.cluster ?? "unknown";
  for (const a of record.upstreamAttempts ?? []) {
    const [address, port] = splitHostPort(a.endpoint);
    const at: KeyValue[] = [
      attr("http.request.method", c.method),
      attr("url.full", a.url),
      attr("server.address", address),
      attr("server.port", port),
      attr("upstream_cluster", cluster),
      attr("isthmus.attempt", a.attempt),
    ];
    if (a.attempt > 1) at.push(attr("http.request.resend_count", a.attempt - 1));
    if (a.status !== undefined) at.push(attr("http.response.status_code", a.status));
    if (a.outcome !== "response") at.push(attr("error.type", a.outcome));
    if (a.ejected) at.push(attr("isthmus.outlier.ejected", a.ejected));
    // A CLIENT span is an error for 4xx as well as 5xx (OpenTelemetry HTTP semantic conventions).
    const failed = a.outcome !== "response" || (a.status ?? 0) >= 400;
    spans.push({
      traceId: trace.traceId,
      spanId: a.spanId ?? randomHex(8, input.random),
      parentSpanId: trace.spanId,
      name: `router ${cluster} egress`,
      kind: SPAN_KIND.CLIENT,
      startTimeUnixNano: a.start,
      endTimeUnixNano: a.end || a.start,
      attributes: at,
      status: failed ? { code: STATUS_CODE.ERROR, message: a.outcome !== "response" ? a.outcome : `HTTP ${a.status}` } : { code: STATUS_CODE.UNSET },
    });
  }

  (record.mirrors ?? []).forEach((m, i) => {
    const spanId = record.mirrorSpans?.[i];
    if (!spanId) return;
    const at: KeyValue[] = [attr("upstream_cluster", m.cluster), attr("isthmus.mirror.outcome", m.outcome), attr("http.request.method", c.method)];
    if (m.outcome === "sent") at.push(attr("http.response.status_code", m.status));
    spans.push({
      traceId: trace.traceId,
      spanId,
      parentSpanId: trace.spanId,
      name: `mirror ${m.cluster}`,
      kind: SPAN_KIND.CLIENT,
      startTimeUnixNano: record.mirrorsStarted ?? c.start,
      endTimeUnixNano: record.mirrorsEnded ?? c.end,
      attributes: at,
      status: mirrorStatus(m),
    });
  });
  return spans;
}

/** A mirrored copy's CLIENT span status: an error when it was not sent or was answered 4xx or 5xx. */
function mirrorStatus(m: MirrorOutcome): NonNullable<Span["status"]> {
  if (m.outcome !== "sent") return { code: STATUS_CODE.ERROR, message: m.outcome };
  return m.status >= 400 ? { code: STATUS_CODE.ERROR, message: `HTTP ${m.status}` } : { code: STATUS_CODE.UNSET };
}

function splitHostPort(endpoint: string): [string, number] {
  const i = endpoint.lastIndexOf(":");
  return i < 0 ? [endpoint, 0] : [endpoint.slice(0, i).replace(/^\[|\]$/g, ""), Number(endpoint.slice(i + 1))];
}
