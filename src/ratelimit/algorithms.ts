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
 *
 * Precision: clocks are epoch milliseconds (about 1.8e12), where a double
 * steps by 2^-12 ms, more than one token's interval at 1e9 a minute. So no
 * state adds a token's interval to an absolute time: GCRA keeps its TAT as
 * the time it was last updated (`at`, a clock reading) and the tokens
 * `owed` at that time (TAT = at + owed × interval), so a take adds whole
 * tokens, exactly, and both algorithms subtract two clock readings before
 * applying a rate. They then differ only in which way they count: tokens
 * left, or tokens owed.
 *
 * A clock that steps back (an object moving to a machine whose clock is
 * behind) never moves `at` back: time before it is not refilled twice when
 * the clock steps forward again (GCRA's TAT never moves back either).
 */
import type { LimitDef } from "../config/snapshot.ts";

export type Algorithm = "TOKEN_BUCKET" | "GCRA";

/**
 * TOKEN_BUCKET: `tokens` left at `at`. GCRA: `owed` tokens at `at`, i.e. a
 * theoretical arrival time `at + owed × interval`.
 */
export type BucketState = { tokens: number; at: number } | { owed: number; at: number };

/** Float slack, so that 50 × 1.0 taken from 50.0 leaves a usable 0 and not -1e-15. */
export const EPSILON = 1e-9;

/** Tokens per ms. */
export function rateOf(limit: LimitDef): number {
  return limit.requests / limit.windowMs;
}

/** A full bucket (a bucket starts full, as Envoy's does). */
export function fullBucket(algorithm: Algorithm, limit: LimitDef, now: number): BucketState {
  return algorithm === "GCRA" ? { owed: 0, at: now } : { tokens: limit.burst, at: now };
}

/** GCRA: the tokens owed at `now` (0 once `now` has reached the TAT; more than at `at` when the clock is behind it). */
function owedAt(state: { owed: number; at: number }, limit: LimitDef, now: number): number {
  return Math.max(0, state.owed - (now - state.at) * rateOf(limit));
}

/** Tokens available at `now` (fractional). */
export function available(state: BucketState, limit: LimitDef, now: number): number {
  if (limit.burst <= 0) return 0;
  if ("owed" in state) return limit.burst - owedAt(state, limit, now);
  return Math.min(limit.burst, state.tokens + Math.max(0, now - state.at) * rateOf(limit));
}

/** The state after taking `n` tokens at `now` (the caller has checked they are available). */
export function take(state: BucketState, limit: LimitDef, n: number, now: number): BucketState {
  const at = Math.max(state.at, now);
  if ("owed" in state) return { owed: owedAt(state, limit, at) + n, at };
  return { tokens: available(state, limit, now) - n, at };
}

/** The state after `n` unused tokens come back at `now`, never above `burst`. */
export function giveBack(state: BucketState, limit: LimitDef, n: number, now: number): BucketState {
  const at = Math.max(state.at, now);
  if ("owed" in state) return { owed: Math.max(0, owedAt(state, limit, at) - n), at };
  return { tokens: Math.min(limit.burst, available(state, limit, now) + n), at };
}

/**
 * A state read from storage, in the form this version computes with: a
 * GCRA state stored by an earlier version is a TAT alone (`{ tat }`), one
 * stored by this version also carries it (see `storedState`), which is
 * dropped.
 */
export function loadedState(state: BucketState | StoredGcra | { tat: number }): BucketState {
  if ("owed" in state) return { owed: state.owed, at: state.at };
  if ("tokens" in state) return state;
  return { owed: 0, at: state.tat };
}

/** A GCRA state as stored: with its TAT as one absolute time too, which is all an earlier version reads. */
export type StoredGcra = { owed: number; at: number; tat: number };

/**
 * A state to store: GCRA states also carry their TAT as one absolute time,
 * so that an earlier version (a rollback) reads them as it always did
 * (rounded as it always was) instead of as a bucket it cannot count.
 */
export function storedState(state: BucketState, limit: LimitDef): BucketState | StoredGcra {
  return "owed" in state ? { owed: state.owed, at: state.at, tat: state.at + state.owed / rateOf(limit) } : state;
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
  const at = Math.max(state.at, now);
  return algorithm === "GCRA" ? { owed: to.burst - tokens, at } : { tokens, at };
}

/** True when the bucket holds `burst` tokens (it carries no information and may be forgotten). */
export function isFull(state: BucketState, limit: LimitDef, now: number): boolean {
  return available(state, limit, now) + EPSILON >= limit.burst;
}
