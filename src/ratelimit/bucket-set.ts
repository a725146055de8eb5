/**
 * The buckets of one key: one per limit of the rule (e.g. 10/s and
 * 1000/h), decided together. A request is admitted only when every bucket
 * holds a token, and then takes one from each, so the strictest limit
 * decides and a refused request spends nothing. Pure: the Durable Object
 * (global scope) and the isolate (local scope) both run it.
 */
import type { LimitDef } from "../config/snapshot.ts";
import { available, convert, EPSILON, fullBucket, giveBack, isFull, loadedState, msUntil, msUntilNextToken, storedState, take, wholeTokens, type Algorithm, type BucketState } from "./algorithms.ts";

export interface BucketSet {
  algorithm: Algorithm;
  buckets: { limit: LimitDef; state: BucketState }[];
}

export interface AcquireRequest {
  algorithm: Algorithm;
  limits: LimitDef[];
  /** Tokens wanted: 1 for one request, the lease size for a lease. */
  want: number;
  /** Grant fewer than `want` when that is all there is (a lease); otherwise all or nothing. */
  partial: boolean;
  /** Tokens given back before anything is taken: an expired lease's unspent ones, or those of a grant that arrived after its decision gave up. */
  returning: number;
}

export interface Grant {
  granted: number;
  /** Per limit: whole tokens left after the grant. */
  remaining: number[];
  /** Per limit: ms until the next token (0 when the bucket is full). */
  resetMs: number[];
  /** When nothing was granted: ms until a token is available in every bucket (0 otherwise). */
  retryAfterMs: number;
  /** Ms until `want` tokens are available in every bucket again (when a lease would be granted whole). */
  wantReadyMs: number;
}

/**
 * A Grant as received over RPC, copied into one literal shape. The
 * deserializer builds an object property by property, through map
 * transitions a major GC frees when no such object is alive, and every
 * optimized function that handled one is then deoptimized; the code past
 * the call only ever sees this shape.
 */
export function shapedGrant(g: Grant): Grant {
  return { granted: g.granted, remaining: g.remaining, resetMs: g.resetMs, retryAfterMs: g.retryAfterMs, wantReadyMs: g.wantReadyMs };
}

/** An AcquireRequest as received over RPC, copied into one literal shape (see `shapedGrant`). */
export function shapedRequest(r: AcquireRequest): AcquireRequest {
  return {
    algorithm: r.algorithm,
    limits: r.limits.map((l) => ({ requests: l.requests, windowMs: l.windowMs, burst: l.burst })),
    want: r.want,
    partial: r.partial,
    returning: r.returning,
  };
}

/**
 * Gives back, then takes, at `now`. When the limits changed since the last
 * call, each limit keeps its own bucket, found by what it is, not where it
 * is in the list (see `reconcile`).
 *
 * @example
 * const { set, grant } = acquire(undefined, { algorithm: "TOKEN_BUCKET", limits: [{ requests: 10, windowMs: 1000, burst: 10 }], want: 1, partial: false, returning: 0 }, Date.now());
 * grant.granted // 1
 */
export function acquire(previous: BucketSet | undefined, request: AcquireRequest, now: number): { set: BucketSet; grant: Grant } {
  const set = reconcile(previous, request.algorithm, request.limits, now);
  if (request.returning > 0) {
    for (const b of set.buckets) b.state = giveBack(b.state, b.limit, request.returning, now);
  }
  let available = Number.POSITIVE_INFINITY;
  for (const b of set.buckets) available = Math.min(available, wholeTokens(b.state, b.limit, now));
  const want = Math.max(0, Math.floor(request.want));
  const granted = request.partial ? Math.min(want, available) : available >= want ? want : 0;
  if (granted > 0) {
    for (const b of set.buckets) b.state = take(b.state, b.limit, granted, now);
  }
  const remaining = set.buckets.map((b) => wholeTokens(b.state, b.limit, now));
  const resetMs = set.buckets.map((b) => finite(msUntilNextToken(b.state, b.limit, now), b.limit.windowMs));
  let retryAfterMs = 0;
  if (granted === 0 && want > 0) {
    for (const b of set.buckets) retryAfterMs = Math.max(retryAfterMs, finite(msUntil(b.state, b.limit, 1, now), b.limit.windowMs));
  }
  let wantReadyMs = 0;
  for (const b of set.buckets) wantReadyMs = Math.max(wantReadyMs, finite(msUntil(b.state, b.limit, want, now), b.limit.windowMs));
  return { set, grant: { granted, remaining, resetMs, retryAfterMs, wantReadyMs } };
}

/** Milliseconds until every bucket is full again (then the set can be forgotten). */
export function msUntilFull(set: BucketSet, now: number): number {
  let ms = 0;
  for (const b of set.buckets) ms = Math.max(ms, finite(msUntil(b.state, b.limit, b.limit.burst, now), 0));
  return ms;
}

export function allFull(set: BucketSet, now: number): boolean {
  return set.buckets.every((b) => isFull(b.state, b.limit, now));
}

/**
 * The share of a bucket's burst that a persisted state spends ahead of the
 * live count (rounded down, so a burst under 100 reserves nothing and is
 * written on every change). See `floorFor` and limiter-object.ts.
 */
export const PERSIST_RESERVE = 0.01;

/** Tokens a stored floor spends ahead of the live count in a bucket of this limit. */
function reserveOf(limit: LimitDef): number {
  return Math.floor(limit.burst * PERSIST_RESERVE);
}

/**
 * The state to store for `set` at `now`: every bucket with
 * `floor(burst × PERSIST_RESERVE)` more tokens taken than the live count
 * has spent. Loaded after a restart it is a floor under the true count
 * (it can only refuse more, never admit more), and while the live count
 * stays at or above it (`floorHolds`) nothing needs writing.
 *
 * @example
 * floorFor(set, now) // a burst of 1,000 with 990 left is stored as 980
 */
export function floorFor(set: BucketSet, now: number): BucketSet {
  return {
    algorithm: set.algorithm,
    buckets: set.buckets.map((b) => ({ limit: b.limit, state: take(b.state, b.limit, reserveOf(b.limit), now) })),
  };
}

/**
 * True when a stored state (`floor`; none stored means every bucket full)
 * is still a valid floor under the live `set` at `now`: the same algorithm
 * and limits, and in every bucket no more tokens than the live count and
 * at most the reserve fewer (tokens given back by a lease widen the gap).
 * Both refill at the same rate up to the same burst, so a floor that holds
 * now holds until the live count spends or takes back again.
 */
export function floorHolds(floor: BucketSet | undefined, set: BucketSet, now: number): boolean {
  if (!floor) return allFull(set, now);
  if (floor.algorithm !== set.algorithm || floor.buckets.length !== set.buckets.length) return false;
  return set.buckets.every((b, i) => {
    const f = floor.buckets[i];
    if (f === undefined || !sameLimit(f.limit, b.limit)) return false;
    const gap = available(b.state, b.limit, now) - available(f.state, f.limit, now);
    return gap >= -EPSILON && gap <= reserveOf(b.limit) + EPSILON;
  });
}

/** The longest time any bucket of the set takes to refill from empty, in ms. */
export function refillMs(limits: readonly LimitDef[]): number {
  let ms = 0;
  for (const l of limits) if (l.requests > 0) ms = Math.max(ms, (l.burst * l.windowMs) / l.requests);
  return ms;
}

/**
 * The buckets for `limits`, from the previous set's. The usual case — the
 * same limits in the same order, under the same algorithm — reuses every
 * state as it is. After a configuration change each new limit takes the
 * bucket of the old limit it is, not of the one at its position (adding a
 * per-second limit in front of a spent day limit must not hand the day a
 * full bucket):
 *
 * 1. an identical limit (requests, window and burst): its state as it is;
 * 2. else a limit of the same window whose numbers changed: its tokens,
 *    capped at the new burst;
 * 3. else, in order, an old limit left over (a unit changed: 100/minute
 *    became 6000/hour): its tokens, capped at the new burst;
 * 4. else none: the bucket starts full, as every new bucket does.
 *
 * Old buckets no limit took are dropped. A change of algorithm keeps every
 * bucket's tokens.
 */
function reconcile(previous: BucketSet | undefined, algorithm: Algorithm, limits: readonly LimitDef[], now: number): BucketSet {
  if (previous && previous.algorithm === algorithm && sameLimits(previous.buckets, limits)) {
    return { algorithm, buckets: limits.map((limit, i) => ({ limit, state: (previous.buckets[i] as BucketSet["buckets"][number]).state })) };
  }
  const old = previous?.buckets ?? [];
  const taken = matchBuckets(old, limits);
  const buckets = limits.map((limit, i) => {
    const from = taken[i] === undefined ? undefined : old[taken[i]];
    if (!from || !previous) return { limit, state: fullBucket(algorithm, limit, now) };
    if (previous.algorithm === algorithm && sameLimit(from.limit, limit)) return { limit, state: from.state };
    return { limit, state: convert(from.state, from.limit, limit, algorithm, now) };
  });
  return { algorithm, buckets };
}

/** True when `buckets` are for exactly `limits`, in that order. */
function sameLimits(buckets: BucketSet["buckets"], limits: readonly LimitDef[]): boolean {
  if (buckets.length !== limits.length) return false;
  for (let i = 0; i < limits.length; i++) {
    if (!sameLimit((buckets[i] as BucketSet["buckets"][number]).limit, limits[i] as LimitDef)) return false;
  }
  return true;
}

/** For each new limit, the index of the old bucket it takes over (see `reconcile`), or undefined. */
function matchBuckets(old: BucketSet["buckets"], limits: readonly LimitDef[]): (number | undefined)[] {
  const used = old.map(() => false);
  const taken: (number | undefined)[] = limits.map(() => undefined);
  const passes: ((from: LimitDef, to: LimitDef) => boolean)[] = [sameLimit, (from, to) => from.windowMs === to.windowMs, () => true];
  for (const fits of passes) {
    limits.forEach((limit, i) => {
      if (taken[i] !== undefined) return;
      const j = old.findIndex((b, k) => !used[k] && fits(b.limit, limit));
      if (j < 0) return;
      used[j] = true;
      taken[i] = j;
    });
  }
  return taken;
}

/** A set read from storage (written by this version or an earlier one), in the form this version computes with. */
export function loadedSet(set: BucketSet): BucketSet {
  return { algorithm: set.algorithm, buckets: set.buckets.map((b) => ({ limit: b.limit, state: loadedState(b.state) })) };
}

/** A set to store: what an earlier version can read too (a rollback), see `storedState`. */
export function storedSet(set: BucketSet): BucketSet {
  return { algorithm: set.algorithm, buckets: set.buckets.map((b) => ({ limit: b.limit, state: storedState(b.state, b.limit) })) };
}

function sameLimit(a: LimitDef, b: LimitDef): boolean {
  return a.requests === b.requests && a.windowMs === b.windowMs && a.burst === b.burst;
}

/** Whole milliseconds, rounded up (a wait is never reported shorter than it is; float dust is ignored). */
function finite(ms: number, fallback: number): number {
  return Number.isFinite(ms) ? Math.max(0, Math.ceil(ms - 1e-6)) : fallback;
}
