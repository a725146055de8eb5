/**
 * Refusals an isolate remembers: when a key's object refuses a request
 * and says no token comes before `retryAfterMs`, every request for that
 * key until then is refused here, without another object call. A key
 * flooded far above its limit therefore costs its object one call per
 * token, not one per request.
 *
 * For an exact rule this admits less only when tokens are given back
 * meanwhile: the object's buckets gain no token from refill before then
 * (its `retryAfterMs` is the time until every limit has one), but another
 * isolate may give back an expired lease's unspent tokens, or a grant that
 * arrived after its decision gave up; this isolate then refuses until the
 * time the object named (never more than the limit). Its own give-backs
 * ask the object, and a grant forgets the refusal. For a lease rule, an
 * isolate whose lease came back short (or empty) waits until a whole lease
 * is ready (`wantReadyMs`, at most the lease's ttl) before asking again:
 * on a saturated hot key that keeps object calls near one per lease, at
 * the cost of leaving a lease's worth of tokens in the bucket a little
 * longer (for other isolates, or for later: nothing is lost below the
 * burst). The entry is keyed by the
 * limits as well, so a configuration change is seen at once. The time is
 * counted from when the call was sent, so clock differences between the
 * isolate and the object only shorten it.
 */
import type { Grant } from "./bucket-set.ts";

export const REFUSALS_CAPACITY = 10_000;

interface Refusal {
  until: number;
  at: number;
  grant: Grant;
}

export class Refusals {
  private readonly entries = new Map<string, Refusal>();
  private readonly capacity: number;

  constructor(capacity = REFUSALS_CAPACITY) {
    this.capacity = capacity;
  }

  /** No refusal is remembered (the usual case: callers then need not build a key to ask). */
  get empty(): boolean {
    return this.entries.size === 0;
  }

  /** The remembered refusal for `key`, as the grant the object would give at `now`; undefined when none holds. */
  get(key: string, now: number): Grant | undefined {
    const r = this.entries.get(key);
    if (!r) return undefined;
    if (r.until <= now) {
      this.entries.delete(key);
      return undefined;
    }
    const elapsed = now - r.at;
    return {
      granted: 0,
      remaining: r.grant.remaining,
      resetMs: r.grant.resetMs.map((ms) => Math.max(0, ms - elapsed)),
      retryAfterMs: r.until - now,
      wantReadyMs: Math.max(0, r.grant.wantReadyMs - elapsed),
    };
  }

  /** Forgets the refusal for `key`: the object has since granted what was asked. */
  delete(key: string): void {
    this.entries.delete(key);
  }

  /** Remembers a refusal the object made (asked at `at`) until `until`. */
  set(key: string, at: number, until: number, grant: Grant): void {
    if (until <= at) return;
    this.entries.delete(key);
    this.entries.set(key, { at, until, grant });
    if (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
  }
}
