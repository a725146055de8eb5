/**
 * What the pipeline notes on the request record for telemetry: stage and
 * attempt timings, the trace. Times are `deps.now()` milliseconds; inside
 * workerd the clock advances only on I/O, so a stage that only computes
 * (a JWT verified with a cached key, a policy evaluation) lasts 0 ms.
 */
import type { RequestContext } from "../gateway/context.ts";

export type StageName = "authentication" | "authorization" | "rate_limit";

export interface StageTiming {
  name: StageName;
  start: number;
  end: number;
  attributes: Record<string, string | number | boolean>;
}

export type AttemptOutcome = "response" | "connect-failure" | "per-try-timeout" | "route-timeout" | "body-too-large" | "body-unreadable";

/** One upstream attempt (1 + retries). */
export interface AttemptTiming {
  /** 1 for the first attempt, 2 for the first retry, … (x-envoy-attempt-count). */
  attempt: number;
  /** `address:port`. */
  endpoint: string;
  url: string;
  /** When it was sent; 0 when the request's trace is not sampled (attempt times serve only its spans). */
  start: number;
  /** When it ended; 0 while it runs, and when not timed. */
  end: number;
  outcome: AttemptOutcome;
  status?: number;
  /** The CLIENT span id sent upstream as the traceparent's parent, when traced. */
  spanId?: string;
  /** The outlier detector ejected the endpoint after this attempt. */
  ejected?: string;
}

/**
 * The time a stage starts, when a span may need it: the snapshot reports
 * spans and the request's trace is sampled or not decided yet (else no
 * clock is read); pass it to `endStage`. Stage timings serve only spans.
 */
export function startStage(ctx: RequestContext): number | undefined {
  if (!ctx.snapshot.telemetry?.spans) return undefined;
  const trace = ctx.record.trace;
  return trace && !trace.sampled ? undefined : ctx.deps.now();
}

/**
 * Notes a stage's timing on the record, with the span attributes
 * `attributes` builds: a no-op when `start` is undefined, and then the
 * attributes are never built.
 */
export function endStage(ctx: RequestContext, name: StageName, start: number | undefined, attributes: () => StageTiming["attributes"] = () => ({})): void {
  if (start === undefined) return;
  (ctx.record.stages ??= []).push({ name, start, end: ctx.deps.now(), attributes: attributes() });
}
