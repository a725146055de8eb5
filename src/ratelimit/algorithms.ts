/**
 * The two bucket algorithms, pure and clock-injected. Both implement the
 * same limit — at most `burst` requests at once, refilled continuously at
 * `requests / windowMs` — and make the same decisions; they differ in the
 * state they keep:
 *
 * - TOKEN_BUCKET keeps the tokens left and when they were counted (Envoy's
 *   local rate limit bucket, refilled lazily instead of on a timer);
 * - GCRA keeps one timestamp, the theoretical arrival time (TAT) of the
 *   next request: a request is conforming when the bucket, which is full
 *   once `now ≥ TAT`, still holds a token.
 *
 * A bucket can be asked for several tokens (a lease) and be given unused
 * ones back; it never holds more than `burst`.
 */
import type { LimitDef } from "../config/snapshot.ts";

export type Algorithm = "TOKEN_BUCKET" | "GCRA";

export type BucketState = { tokens: number; at: number } | { tat: number };

/** Float slack, so that 50 × 1.0 taken from 50.0 leaves a usable 0 and not -1e-15. */
export const EPSILON = 1e-9;

/** Tokens per ms. */
export function rateOf(limit: LimitDef): number {
  return limit.requests / limit.windowMs;
}

/** A full bucket (a bucket starts full, as Envoy's does). */
export function fullBucket(algorithm: Algorithm, limit: LimitDef, now: number): BucketState {
  return algorithm === "GCRA" ? { tat: now } : { tokens: limit.burst, at: now };
}

/** Tokens available at `now` (fractional). */
export function available(state: BucketState, limit: LimitDef, now: number): number {
  if (limit.burst <= 0) return 0;
  if ("tat" in state) {
    const interval = 1 / rateOf(limit);
    return Math.min(limit.burst, limit.burst - Math.max(0, state.tat - now) / interval);
  }
  return Math.min(limit.burst, state.tokens + Math.max(0, now - state.at) * rateOf(limit));
}

/** The state after taking `n` tokens at `now` (the caller has checked they are available). */
export function take(state: BucketState, limit: LimitDef, n: number, now: number): BucketState {
  if ("tat" in state) {
    const interval = 1 / rateOf(limit);
    return { tat: Math.max(state.tat, now) + n * interval };
  }
  return { tokens: available(state, limit, now) - n, at: now };
}

/** The state after `n` unused tokens come back at `now`, never above `burst`. */
export function giveBack(state: BucketState, limit: LimitDef, n: number, now: number): BucketState {
  if ("tat" in state) {
    const interval = 1 / rateOf(limit);
    return { tat: Math.max(now, state.tat - n * interval) };
  }
  return { tokens: Math.min(limit.burst, available(state, limit, now) + n), at: now };
}

/** Whole tokens available at `now`. */
export function wholeTokens(state: BucketState, limit: LimitDef, now: number): number {
  return Math.max(0, Math.floor(available(state, limit, now) + EPSILON));
}

/** Milliseconds until `n` tokens are available (0 when they are; Infinity when they never will be). */
export function msUntil(state: BucketState, limit: LimitDef, n: number, now: number): number {
  if (n > limit.burst) return Number.POSITIVE_INFINITY;
  const missing = n - available(state, limit, now);
  if (missing <= EPSILON) return 0;
  const rate = rateOf(limit);
  return rate > 0 ? missing / rate : Number.POSITIVE_INFINITY;
}

/** Milliseconds until the next whole token (0 when the bucket is full). */
export function msUntilNextToken(state: BucketState, limit: LimitDef, now: number): number {
  const a = available(state, limit, now);
  if (a + EPSILON >= limit.burst) return 0;
  const next = Math.floor(a + EPSILON) + 1;
  return msUntil(state, limit, next, now);
}

/**
 * The same bucket under another limit or algorithm, keeping the tokens it
 * holds (capped at the new burst): used when the configuration changes
 * while a bucket is partly spent.
 */
export function convert(state: BucketState, from: LimitDef, to: LimitDef, algorithm: Algorithm, now: number): BucketState {
  const tokens = Math.min(to.burst, available(state, from, now));
  if (algorithm === "GCRA") return { tat: now + (to.burst - tokens) / rateOf(to) };
  return { tokens, at: now };
}

/** True when the bucket holds `burst` tokens (it carries no information and may be forgotten). */
export function isFull(state: BucketState, limit: LimitDef, now: number): boolean {
  return available(state, limit, now) + EPSILON >= limit.burst;
}
