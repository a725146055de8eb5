/**
 * Fault injection (Envoy's fault filter): a delay and an abort, each drawn
 * independently against its percentage, so a request may be delayed and
 * then aborted.
 */
import type { FaultDef } from "../config/snapshot.ts";
import type { LocalReply } from "../gateway/local-reply.ts";

export interface FaultDecision {
  delayMs?: number;
  abort?: LocalReply;
}

/**
 * Decides the faults for one request; `random` returns values in [0, 1).
 * `headers` are the request's: a `grpcStatus` abort is gRPC-shaped only for a gRPC request.
 *
 * @example
 * decideFault({ abort: { status: 200, grpcStatus: 14, percent: 100 } }, Math.random, new Headers({ "content-type": "application/grpc" }))
 * // { abort: { status: 200, body: "", flag: "FI", headers: { "grpc-status": "14", … } } }
 */
export function decideFault(fault: FaultDef, random: () => number, headers: Headers): FaultDecision {
  const out: FaultDecision = {};
  if (fault.delay && random() * 100 < fault.delay.percent) out.delayMs = fault.delay.ms;
  if (fault.abort && random() * 100 < fault.abort.percent) out.abort = abortReply(fault.abort, headers);
  return out;
}

/**
 * Envoy's abort reply: the status with body `fault filter abort`, flag FI.
 * A gRPC abort sends HTTP status 200 with the gRPC status (abortStatus), and
 * Envoy's local reply makes that a trailers-only gRPC response only when the
 * request is gRPC; any other client gets a plain 200 `fault filter abort`.
 */
function abortReply(abort: NonNullable<FaultDef["abort"]>, headers: Headers): LocalReply {
  if (abort.grpcStatus === undefined) return { status: abort.status, body: "fault filter abort", flag: "FI" };
  if (!isGrpc(headers.get("content-type"))) return { status: 200, body: "fault filter abort", flag: "FI" };
  return {
    status: 200,
    body: "",
    flag: "FI",
    headers: { "content-type": "application/grpc", "grpc-status": String(abort.grpcStatus), "grpc-message": "fault filter abort" },
  };
}

/** Envoy's hasGrpcContentType: `application/grpc` exactly or `application/grpc+…` (not grpc-web). */
function isGrpc(contentType: string | null): boolean {
  return contentType !== null && contentType.startsWith("application/grpc") && (contentType.length === 16 || contentType[16] === "+");
}
