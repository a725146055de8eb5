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

/** Decides the faults for one request; `random` returns values in [0, 1). */
export function decideFault(fault: FaultDef, random: () => number): FaultDecision {
  const out: FaultDecision = {};
  if (fault.delay && random() * 100 < fault.delay.percent) out.delayMs = fault.delay.ms;
  if (fault.abort && random() * 100 < fault.abort.percent) out.abort = abortReply(fault.abort);
  return out;
}

/**
 * Envoy's abort reply: the status with body `fault filter abort`, flag FI.
 * A gRPC abort is a trailers-only gRPC response: HTTP 200 with grpc-status.
 */
function abortReply(abort: NonNullable<FaultDef["abort"]>): LocalReply {
  if (abort.grpcStatus !== undefined) {
    return {
      status: 200,
      body: "",
      flag: "FI",
      headers: { "content-type": "application/grpc", "grpc-status": String(abort.grpcStatus), "grpc-message": "fault filter abort" },
    };
  }
  return { status: abort.status, body: "fault filter abort", flag: "FI" };
}
