/**
 * The pipeline's side of tracing: deciding the request's trace once its
 * traffic (and so its Telemetry plan) is known, marking `x-request-id`,
 * and the attempt observer that times each upstream attempt and writes
 * the trace context it carries.
 */
import type { RequestContext } from "../gateway/context.ts";
import type { AttemptObserver } from "../upstream/attempts.ts";
import { decideTrace, markRequestId, propagate, randomHex, type TraceContext } from "./trace-context.ts";

/**
 * The request's trace, decided on first call: undefined when the traffic
 * has no tracing (the client's trace headers then pass unchanged).
 */
export function traceOf(ctx: RequestContext): TraceContext | undefined {
  if (ctx.record.trace) return ctx.record.trace;
  const tracing = ctx.snapshot.telemetry?.planFor(ctx.cluster?.name).def.tracing;
  if (!tracing) return undefined;
  const headers = ctx.facts.headers;
  const trace = decideTrace(headers, tracing.samplingPercent, ctx.deps.random, ctx.facts.traceContext ?? true);
  ctx.record.trace = trace;
  const id = headers.get("x-request-id");
  if (id) headers.set("x-request-id", markRequestId(id, trace.sampled, trace.forced));
  return trace;
}

/** Times every attempt and gives each its CLIENT span id in the trace context it sends. Undefined without telemetry. */
export function attemptObserver(ctx: RequestContext): AttemptObserver | undefined {
  const telemetry = ctx.snapshot.telemetry;
  if (!telemetry) return undefined;
  const trace = traceOf(ctx);
  const propagators = telemetry.def.settings.propagators;
  const attempts = (ctx.record.upstreamAttempts ??= []);
  const { deps } = ctx;
  return {
    sending(attempt, endpoint, url, headers) {
      const timing: (typeof attempts)[number] = { attempt, endpoint: `${endpoint.address}:${endpoint.port}`, url, start: deps.now(), end: 0, outcome: "response" };
      if (trace) {
        timing.spanId = randomHex(8, deps.random);
        propagate(headers, trace, timing.spanId, propagators);
      }
      attempts.push(timing);
    },
    ended(attempt, end, ejection) {
      const timing = attempts.find((a) => a.attempt === attempt);
      if (!timing) return;
      timing.end = deps.now();
      if ("status" in end) timing.status = end.status;
      else timing.outcome = end.failure;
      if (ejection) timing.ejected = ejection.reason;
    },
  };
}

/** Writes the trace context of each mirrored copy (its own CLIENT span); undefined when not traced. */
export function mirrorDecorator(ctx: RequestContext): ((headers: Headers, index: number) => void) | undefined {
  const trace = traceOf(ctx);
  const telemetry = ctx.snapshot.telemetry;
  if (!trace || !telemetry) return undefined;
  const spans = (ctx.record.mirrorSpans ??= []);
  return (headers, index) => {
    const spanId = randomHex(8, ctx.deps.random);
    spans[index] = spanId;
    propagate(headers, trace, spanId, telemetry.def.settings.propagators);
  };
}
