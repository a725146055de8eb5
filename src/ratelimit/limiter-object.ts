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
 * minute, hour or day limit) are written with the synchronous SQLite-backed
 * KV API before the reply leaves the object (the output gate holds it), so
 * the count survives eviction, restarts and deploys. Faster buckets live in
 * memory only: losing one costs at most one extra burst. An alarm set for
 * when every bucket is full again deletes the stored state, so idle keys
 * cost no storage.
 */
import { DurableObject } from "cloudflare:workers";
import type { LimitDef } from "../config/snapshot.ts";
import { acquire, allFull, msUntilFull, refillMs, type AcquireRequest, type BucketSet, type Grant } from "./bucket-set.ts";

/** Buckets refilling faster than this (ms, empty to full) are not persisted. */
export const PERSIST_AFTER_MS = 1_000;

const STATE_KEY = "buckets";
/** Margin after the computed full time, so the alarm does not wake a moment too early. */
const ALARM_SLACK_MS = 1_000;

interface Stored {
  set: BucketSet;
  /** When the cleanup alarm is set for (ms since the epoch), if it is. */
  alarmAt?: number;
}

export class RateLimiter extends DurableObject {
  private stored: Stored | undefined;
  private loaded = false;

  /**
   * Gives back `returning` unused tokens, then grants up to `want` tokens
   * (all or nothing unless `partial`).
   *
   * @example
   * const grant = await env.RATE_LIMITER.getByName(name).acquire({ algorithm: "TOKEN_BUCKET", limits, want: 1, partial: false, returning: 0 });
   */
  acquire(request: AcquireRequest): Grant {
    checkRequest(request);
    const now = Date.now();
    const previous = this.load();
    const { set, grant } = acquire(previous?.set, request, now);
    const stored: Stored = { set };
    if (previous?.alarmAt !== undefined) stored.alarmAt = previous.alarmAt;
    this.stored = stored;
    if (refillMs(request.limits) > PERSIST_AFTER_MS) this.persist(stored, now);
    return grant;
  }

  override async alarm(): Promise<void> {
    const stored = this.load();
    if (!stored) return;
    const now = Date.now();
    if (allFull(stored.set, now)) {
      this.stored = undefined;
      await this.ctx.storage.deleteAll();
      return;
    }
    const at = now + msUntilFull(stored.set, now) + ALARM_SLACK_MS;
    stored.alarmAt = at;
    this.ctx.storage.kv.put(STATE_KEY, stored);
    await this.ctx.storage.setAlarm(at);
  }

  private load(): Stored | undefined {
    if (!this.loaded) {
      this.stored = this.ctx.storage.kv.get<Stored>(STATE_KEY);
      this.loaded = true;
    }
    return this.stored;
  }

  private persist(stored: Stored, now: number): void {
    if (stored.alarmAt === undefined || stored.alarmAt <= now) {
      const at = now + msUntilFull(stored.set, now) + ALARM_SLACK_MS;
      stored.alarmAt = at;
      this.ctx.storage.setAlarm(at).catch((error: unknown) => {
        console.error(JSON.stringify({ message: "isthmus: rate limiter could not set its cleanup alarm", error: String(error) }));
      });
    }
    this.ctx.storage.kv.put(STATE_KEY, stored);
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
