/**
 * RateLimiter: the Durable Object that holds the buckets of one key of
 * one GLOBAL rule. Objects are addressed by name (`getByName`), the name
 * being a hash of the rule and the key (see key.ts), so keys spread over
 * as many objects as there are keys, and each object decides alone.
 *
 * Exactness: `acquire` is synchronous — no `await` between reading and
 * writing the buckets — and a Durable Object runs one event at a time, so
 * any number of concurrent requests see the buckets one after another:
 * for a limit of N, exactly N are admitted.
 *
 * Persistence: buckets that take longer than a second to refill (any
 * minute, hour or day limit) survive eviction, restarts and deploys. What
 * is stored is a floor under the live count: the buckets with 1% of their
 * burst spent ahead (`floorFor`). It is written with the synchronous
 * SQLite-backed KV API before the reply leaves the object (the output gate
 * holds it) whenever the live count drops below the stored floor, so a
 * restart can only ever find fewer tokens than there were — at most 1% of
 * the burst fewer — never more. A burst under 100 reserves nothing and is
 * written on every admission (exact); a burst of 1,000,000 is written once
 * its live count has spent 10,000 tokens past the floor, or the floor has
 * refilled above it (the reserve refills in 0.6 s at 1,000,000/minute),
 * instead of on every admission; a refusal never writes.
 * Faster buckets live in memory only: losing one costs at most one extra
 * burst. An alarm a minute after every bucket is full again deletes the
 * stored state, so idle keys cost no storage.
 */
import { DurableObject } from "cloudflare:workers";
import type { LimitDef } from "../config/snapshot.ts";
import { acquire, shapedRequest, allFull, floorHolds, floorFor, loadedSet, msUntilFull, refillMs, storedSet, type AcquireRequest, type BucketSet, type Grant } from "./bucket-set.ts";

/** Buckets refilling faster than this (ms, empty to full) are not persisted. */
export const PERSIST_AFTER_MS = 1_000;

const STATE_KEY = "buckets";
/**
 * How long after its buckets are full again a key's state is deleted. The
 * margin keeps a busy key with a high limit — nearly full all the time —
 * from being deleted and written again every second or two (`deleteAll`
 * costs milliseconds), at the price of idle keys holding their few bytes a
 * minute longer.
 */
const CLEANUP_DELAY_MS = 60_000;

/** What storage holds under STATE_KEY. */
interface Stored {
  /** A floor under the live buckets (see `floorFor`). */
  set: BucketSet;
  /** When the cleanup alarm is set for (ms since the epoch), if it is. */
  alarmAt?: number;
}

export class RateLimiter extends DurableObject {
  /** The live count (undefined: every bucket full). */
  private buckets: BucketSet | undefined;
  /** What storage holds (undefined: nothing, which reads as every bucket full). */
  private stored: Stored | undefined;
  private loaded = false;

  /**
   * Gives back `returning` unused tokens, then grants up to `want` tokens
   * (all or nothing unless `partial`).
   *
   * @example
   * const grant = await env.RATE_LIMITER.getByName(name).acquire({ algorithm: "TOKEN_BUCKET", limits, want: 1, partial: false, returning: 0 });
   */
  acquire(received: AcquireRequest): Grant {
    checkRequest(received);
    const request = shapedRequest(received);
    const now = Date.now();
    this.load();
    const { set, grant } = acquire(this.buckets, request, now);
    this.buckets = set;
    if (refillMs(request.limits) > PERSIST_AFTER_MS && !floorHolds(this.stored?.set, set, now)) this.persist(set, now);
    return grant;
  }

  override async alarm(): Promise<void> {
    this.load();
    const now = Date.now();
    if (!this.buckets || allFull(this.buckets, now)) {
      this.buckets = undefined;
      this.stored = undefined;
      await this.ctx.storage.deleteAll();
      return;
    }
    const at = now + msUntilFull(this.buckets, now) + CLEANUP_DELAY_MS;
    if (this.stored) {
      this.stored = { set: this.stored.set, alarmAt: at };
      this.write(this.stored);
    }
    await this.ctx.storage.setAlarm(at);
  }

  private load(): void {
    if (this.loaded) return;
    const stored = this.ctx.storage.kv.get<Stored>(STATE_KEY);
    // Read in this version's form, whichever version wrote it.
    if (stored) this.stored = stored.alarmAt === undefined ? { set: loadedSet(stored.set) } : { set: loadedSet(stored.set), alarmAt: stored.alarmAt };
    this.buckets = this.stored?.set;
    this.loaded = true;
  }

  /** Writes `stored` in the form every version reads (see `storedSet`). */
  private write(stored: Stored): void {
    this.ctx.storage.kv.put(STATE_KEY, stored.alarmAt === undefined ? { set: storedSet(stored.set) } : { set: storedSet(stored.set), alarmAt: stored.alarmAt });
  }

  /** Stores a new floor under `set`; the cleanup alarm is set unless one is still pending. */
  private persist(set: BucketSet, now: number): void {
    const floor = floorFor(set, now);
    const pending = this.stored?.alarmAt;
    const keep = pending !== undefined && pending > now;
    const at = keep ? pending : now + msUntilFull(floor, now) + CLEANUP_DELAY_MS;
    // One literal shape (see shapedGrant in bucket-set.ts).
    const stored: Stored = { set: floor, alarmAt: at };
    if (!keep) {
      this.ctx.storage.setAlarm(at).catch((error: unknown) => {
        console.error(JSON.stringify({ message: "isthmus: rate limiter could not set its cleanup alarm", error: String(error) }));
      });
    }
    this.write(stored);
    this.stored = stored;
  }
}

const MAX_LIMITS = 16;

/** The object is only reachable from this Worker, but a malformed call must fail loudly, not corrupt a bucket. */
function checkRequest(r: AcquireRequest): void {
  const count = (n: unknown) => typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
  const limit = (l: LimitDef) => count(l.requests) && count(l.burst) && typeof l.windowMs === "number" && l.windowMs > 0 && Number.isFinite(l.windowMs);
  const ok =
    (r.algorithm === "TOKEN_BUCKET" || r.algorithm === "GCRA") &&
    Array.isArray(r.limits) &&
    r.limits.length > 0 &&
    r.limits.length <= MAX_LIMITS &&
    r.limits.every((l) => limit(l) && l.requests > 0) &&
    count(r.want) &&
    count(r.returning) &&
    typeof r.partial === "boolean";
  if (!ok) throw new TypeError("RateLimiter.acquire: malformed request");
}
