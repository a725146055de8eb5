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

export type AttemptOutcome = "response" | "connect-failure" | "per-try-timeout" | "route-timeout" | "body-too-large";

/** One upstream attempt (1 + retries). */
export interface AttemptTiming {
  /** 1 for the first attempt, 2 for the first retry, … (x-envoy-attempt-count). */
  attempt: number;
  /** `address:port`. */
  endpoint: string;
  url: string;
  start: number;
  end: number;
  outcome: AttemptOutcome;
  status?: number;
  /** The CLIENT span id sent upstream as the traceparent's parent, when traced. */
  spanId?: string;
  /** The outlier detector ejected the endpoint after this attempt. */
  ejected?: string;
}

/**
 * The time a stage starts, when the snapshot reports telemetry (else no
 * clock is read); pass it to `endStage`.
 */
export function startStage(ctx: RequestContext): number | undefined {
  return ctx.snapshot.telemetry ? ctx.deps.now() : undefined;
}

/** Notes a stage's timing on the record (a no-op when `start` is undefined). */
export function endStage(ctx: RequestContext, name: StageName, start: number | undefined, attributes: StageTiming["attributes"] = {}): void {
  if (start === undefined) return;
  (ctx.record.stages ??= []).push({ name, start, end: ctx.deps.now(), attributes });
}
