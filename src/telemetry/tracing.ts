/**
 * The pipeline's side of tracing: deciding the request's trace (as it
 * enters when every Telemetry plan samples alike, else once its traffic,
 * and so its plan, is known, else as it is reported), marking
 * `x-request-id`, and the attempt observer that times each upstream
 * attempt and writes the trace context it carries.
 */
import type { RequestContext, RequestRecord } from "../gateway/context.ts";
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
  // Stages may have rewritten x-request-id since ingress set it (claim or ext-authz headers): read it.
  return decide(ctx, tracing.samplingPercent, ctx.facts.headers.get("x-request-id"));
}

/**
 * Decides the trace as the request enters, when every Telemetry plan
 * samples at the same rate (`RuntimeTelemetry.sampling`): Envoy's order,
 * the decision and the x-request-id mark before any filter runs. Stages
 * then know whether they are timed for a span (`startStage`), and
 * x-request-id is the one ingress generated, so it is not read back.
 * Otherwise the trace waits for routing (`traceOf`).
 */
export function traceAtEntry(ctx: RequestContext): void {
  const sampling = ctx.snapshot.telemetry?.sampling;
  if (sampling === undefined) return;
  decide(ctx, sampling, ctx.facts.requestId ?? ctx.facts.headers.get("x-request-id"));
}

/**
 * The trace of a request whose plan has tracing but which was answered
 * before anything decided it (an authorization denial, a 404, a rate
 * limit, when plans sample at different rates): decided as it is reported,
 * and x-request-id marked as `traceOf` marks it, so that the access log and
 * the spans show the marked id (the response has already gone out).
 * Without a context (ingress refused the request) there is no generated id
 * to mark.
 */
export function traceWhenReported(request: Request, context: RequestContext | undefined, record: RequestRecord, samplingPercent: number, random: () => number): TraceContext {
  const trace = context
    ? decide(context, samplingPercent, context.facts.headers.get("x-request-id"), random)
    : decideTrace(request.headers, samplingPercent, random);
  record.trace = trace;
  return trace;
}

/** Decides the trace and marks the request id with it; a header is written only when the mark changes it. */
function decide(ctx: RequestContext, samplingPercent: number, requestId: string | null, random: () => number = ctx.deps.random): TraceContext {
  const headers = ctx.facts.headers;
  const trace = decideTrace(headers, samplingPercent, random, ctx.facts.traceContext ?? true);
  ctx.record.trace = trace;
  if (requestId) {
    // A generated UUID (version 4) already reads "not sampled": most requests write nothing here.
    const marked = markRequestId(requestId, trace.sampled, trace.forced);
    if (marked !== requestId) headers.set("x-request-id", marked);
  }
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
  // Attempt times serve only the CLIENT spans of a sampled trace, when spans are reported: otherwise no clock is read (0).
  const now = trace?.sampled && telemetry.spans ? () => deps.now() : () => 0;
  const clientContext = ctx.facts.traceContext ?? true;
  return {
    sending(attempt, endpoint, url, headers) {
      const spanId = trace ? randomHex(8, deps.random) : undefined;
      // Every field present from the start, so the object never changes shape (see newRecord).
      const timing: (typeof attempts)[number] = {
        attempt,
        endpoint: `${endpoint.address}:${endpoint.port}`,
        url,
        start: now(),
        end: 0,
        outcome: "response",
        status: undefined,
        spanId,
        ejected: undefined,
      };
      if (trace && spanId) propagate(headers, trace, spanId, propagators, clientContext);
      attempts.push(timing);
    },
    ended(attempt, end, ejection) {
      const timing = attempts.find((a) => a.attempt === attempt);
      if (!timing) return;
      timing.end = now();
      if ("status" in end) timing.status = end.status;
      else timing.outcome = end.failure;
      if (ejection) timing.ejected = ejection.reason;
    },
  };
}

/**
 * Writes the trace context of each mirrored copy (its own CLIENT span, which
 * the gateway reports); undefined when not traced. The copy is marked not
 * sampled, as Istio's mirror policy sets (`trace_sampled: false`), so the
 * shadow service does not add its spans to the production trace.
 */
export function mirrorDecorator(ctx: RequestContext): ((headers: Headers, index: number) => void) | undefined {
  const trace = traceOf(ctx);
  const telemetry = ctx.snapshot.telemetry;
  if (!trace || !telemetry) return undefined;
  const spans = (ctx.record.mirrorSpans ??= []);
  const unsampled = trace.sampled ? { ...trace, sampled: false } : trace;
  return (headers, index) => {
    const spanId = randomHex(8, ctx.deps.random);
    spans[index] = spanId;
    propagate(headers, unsampled, spanId, telemetry.def.settings.propagators);
  };
}
