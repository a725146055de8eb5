/**
 * A finished request, as every telemetry signal sees it: status, Envoy
 * response flags and details, sizes on the wire and times. Built once per
 * request after its response body has been sent, off the request's path.
 */
import type { RequestContext, RequestRecord } from "../gateway/context.ts";
import type { AttributeReader } from "./expression.ts";
import { declaredLength } from "../gateway/content-length.ts";
import { pseudoHeader } from "../gateway/request-header.ts";
import { pathWithQuery } from "../gateway/facts.ts";

export interface Completed {
  request: Request;
  context?: RequestContext;
  record: RequestRecord;
  response: Response;
  /** 0 when the client went away before the response was sent (flag DC). */
  status: number;
  /** Envoy's short flags, comma-joined, or `-`. */
  flags: string;
  details: string;
  method: string;
  host: string;
  /** Path as routed (normalized), without the query. */
  path: string;
  query: string;
  scheme: "http" | "https";
  start: number;
  end: number;
  durationMs: number;
  requestBytes: number;
  requestBodyBytes: number;
  responseBytes: number;
  responseBodyBytes: number;
  grpc: boolean;
  grpcStatus: string;
}

const FLAG_DETAILS: Record<string, string> = {
  NR: "route_not_found",
  UH: "no_healthy_upstream",
  UF: "upstream_reset_before_response_started{connection_failure}",
  UO: "upstream_reset_before_response_started{overflow}",
  NC: "cluster_not_found",
  UT: "upstream_response_timeout",
  FI: "fault_filter_abort",
  RL: "local_rate_limited",
  RLSE: "rate_limiter_error",
  UAEX: "ext_authz_denied",
  DPE: "http1.codec_error",
  DC: "downstream_remote_disconnect",
};

/** Envoy's RESPONSE_CODE_DETAILS for the request. */
export function responseCodeDetails(record: RequestRecord, fromUpstream: boolean): string {
  if (record.details) return record.details;
  for (const flag of record.flags) {
    const detail = FLAG_DETAILS[flag];
    if (detail && flag !== "URX" && flag !== "DI") return detail;
  }
  return fromUpstream ? "via_upstream" : "direct_response";
}

/** The HTTP/1.1 size of a header block: `name: value\r\n` per header. */
export function headerBytes(headers: Headers): number {
  return scan(headers, 0).bytes;
}

/** What telemetry reads of a response before its body is sent, each read once. */
export interface ResponseHead {
  status: number;
  /** The HTTP/1.1 size of the header block (`name: value\r\n` per header). */
  bytes: number;
  contentType: string;
  /** `grpc-status`, "" when absent. */
  grpcStatus: string;
  /** `content-length`, null when absent. */
  contentLength: string | null;
  /** `content-encoding`, "" when absent (a body fetch() decoded: its length is not the declared one). */
  contentEncoding: string;
}

/**
 * The response's status and what telemetry reads of its headers, in one
 * pass. Both are native getters in workerd (a crossing into C++ each), so
 * the reports read them from here. Read after the last change to the
 * response's headers.
 */
export function responseHead(response: Response): ResponseHead {
  return scan(response.headers, response.status);
}

/**
 * `responseHead` of a response whose headers the caller is about to thin:
 * the same pass finds which of the `dropped` names it holds (returned in
 * `present`, for the caller to delete) and leaves their bytes out. The
 * upstream's response is copied with this pass when telemetry counts it,
 * instead of deleting every hop-by-hop name blindly and reading the
 * headers again at the end (a `delete` crosses into workerd, ~2.2k
 * instructions, whether or not the name is there). Whoever changes the
 * headers afterwards keeps `bytes` in step, or leaves the head unused.
 *
 * @example
 * const { head, present } = responseHeadWithout(response, HOP_BY_HOP);
 * for (const name of present) response.headers.delete(name); // head.bytes already leaves them out
 */
export function responseHeadWithout(response: Response, dropped: ReadonlySet<string>): { head: ResponseHead; present: string[] } {
  const present: string[] = [];
  return { head: scan(response.headers, response.status, dropped, present), present };
}

/**
 * One `forEach` over a header block: its size and the values telemetry
 * reads. workerd's `forEach` costs ~2,400 instructions less per header than
 * `for…of` (no iterator result or entry array per header), and the values
 * come with it instead of three more `get` calls (bench/NOTES.md, eleventh
 * and twelfth passes). Names in `dropped` are listed in `present` instead
 * of counted.
 */
function scan(headers: Headers, status: number, dropped?: ReadonlySet<string>, present?: string[]): ResponseHead {
  // Created whole: an object that gains a field later goes through a map V8 holds weakly, and
  // code optimized on it is thrown away at each major GC (bench/NOTES.md, tenth and twelfth passes).
  const head: ResponseHead = { status, bytes: 0, contentType: "", grpcStatus: "", contentLength: null, contentEncoding: "" };
  headers.forEach((value, name) => {
    if (dropped?.has(name)) {
      present?.push(name);
      return;
    }
    head.bytes += name.length + value.length + 4;
    if (name === "content-type") head.contentType = value;
    else if (name === "content-length") head.contentLength = value;
    else if (name === "grpc-status") head.grpcStatus = value;
    else if (name === "content-encoding") head.contentEncoding = value;
  });
  return head;
}

const REASON_LENGTH: Record<number, number> = { 200: 2, 404: 9, 503: 19 };

/**
 * The client's HTTP version (`request.cf.httpProtocol`), read only by the
 * signals that report it: on Cloudflare `request.cf` is built for the
 * request on its first read, which most requests never need.
 */
export function protocolOf(request: { readonly cf?: unknown }): string {
  return (request.cf as { httpProtocol?: string } | undefined)?.httpProtocol ?? "HTTP/1.1";
}

/** Builds the view of a finished request. */
export function completeRequest(input: {
  request: Request;
  context?: RequestContext;
  record: RequestRecord;
  response: Response;
  end: number;
  responseBodyBytes: number;
  disconnected: boolean;
  /** The response's status and headers as sent (`responseHead`); read from `response` when absent. */
  head?: ResponseHead;
}): Completed {
  const { request, context, record, response } = input;
  const facts = context?.facts;
  // A body a timeout cut off (flag UT, set first) ended by the gateway's doing, not the client's.
  const disconnected = input.disconnected && !record.flags.includes("UT");
  if (disconnected && !record.flags.includes("DC")) record.flags.push("DC");
  const url = facts ? undefined : new URL(request.url);
  const method = facts?.method ?? request.method;
  const path = facts?.path ?? url?.pathname ?? "/";
  const query = facts ? facts.query : (url?.search.slice(1) ?? "");
  const fromUpstream = record.upstreamServiceTimeMs !== undefined;
  const requestBodyBytes = (facts ? facts.bodyLength : declaredLength(request.headers)) ?? 0;
  // Request line + headers + blank line + body, as HTTP/1.1 puts them on the wire.
  const requestBytes = method.length + path.length + (query ? query.length + 1 : 0) + 11 + (facts?.receivedHeaderBytes ?? headerBytes(request.headers)) + 2 + requestBodyBytes;
  const sent = input.head ?? responseHead(response);
  const status = disconnected && input.responseBodyBytes === 0 ? 0 : sent.status;
  const responseBytes = 15 + (REASON_LENGTH[sent.status] ?? 8) + sent.bytes + 2 + input.responseBodyBytes;
  const grpc = sent.contentType.startsWith("application/grpc");
  const start = record.startedAt ?? input.end;
  return {
    request,
    context,
    record,
    response,
    status,
    flags: record.flags.length > 0 ? record.flags.join(",") : "-",
    details: responseCodeDetails(record, fromUpstream),
    method,
    host: facts?.authority ?? url?.host ?? "",
    path,
    query,
    scheme: facts?.scheme ?? (url?.protocol === "https:" ? "https" : "http"),
    start,
    end: input.end,
    durationMs: Math.max(0, input.end - start),
    requestBytes,
    requestBodyBytes,
    responseBytes,
    responseBodyBytes: input.responseBodyBytes,
    grpc,
    grpcStatus: grpc ? sent.grpcStatus : "",
  };
}

/** The attributes the CEL subset reads (src/telemetry/expression.ts), for one finished request. */
export function attributesOf(c: Completed): AttributeReader {
  const facts = c.context?.facts;
  const headers = facts?.headers ?? c.request.headers;
  return (name, key) => {
    switch (name) {
      case "request.path":
        return pathWithQuery(c);
      case "request.url_path":
        return c.path;
      case "request.host":
        return c.host;
      case "request.scheme":
        return c.scheme;
      case "request.method":
        return c.method;
      case "request.headers":
        // The compiler lets only header names and Envoy's pseudo-headers through (expression.ts).
        if ((key as string).startsWith(":")) return pseudoHeader(key as string, { authority: c.host, path: c.path, query: c.query, method: c.method, scheme: c.scheme });
        return headers.get(key as string);
      case "request.useragent":
        return headers.get("user-agent");
      case "request.id":
        return headers.get("x-request-id");
      case "request.protocol":
        return protocolOf(c.request);
      case "request.query":
        return c.query;
      case "request.size":
        return c.requestBodyBytes;
      case "request.total_size":
        return c.requestBytes;
      case "request.duration":
        return c.durationMs;
      case "request.auth.principal":
        return c.record.requestPrincipal;
      case "response.code":
        return c.status;
      case "response.code_details":
        return c.details;
      case "response.grpc_status":
        return c.grpcStatus === "" ? null : Number(c.grpcStatus);
      case "response.headers":
        return c.response.headers.get(key as string);
      case "response.size":
        return c.responseBodyBytes;
      case "response.total_size":
        return c.responseBytes;
      case "source.address":
        return facts?.remoteIp || c.request.headers.get("cf-connecting-ip");
      case "upstream.address":
        return c.record.upstreamHost;
      case "xds.route_name":
        return c.record.routeName;
      case "xds.cluster_name":
        return c.record.cluster;
      case "connection.mtls":
        return c.record.peerPrincipal !== undefined;
      case "connection.requested_server_name":
        return c.scheme === "https" ? (facts?.host ?? null) : null;
      default:
        return null;
    }
  };
}
