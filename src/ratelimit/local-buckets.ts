/**
 * The isolate's buckets for LOCAL rules: the same bucket arithmetic as the
 * Durable Object, kept in this isolate's memory. Cheap (no I/O) and
 * approximate by design: every isolate counts on its own, like every
 * Envoy process counts its own local_ratelimit bucket.
 *
 * Bounded: at most `capacity` keys are remembered; the least recently used
 * is forgotten first (forgetting a bucket refills it), so a flood of
 * distinct keys cannot exhaust the isolate's memory.
 */
import { acquire, type AcquireRequest, type BucketSet, type Grant } from "./bucket-set.ts";

export const LOCAL_BUCKETS_CAPACITY = 10_000;

export class LocalBuckets {
  private readonly sets = new Map<string, BucketSet>();
  private readonly capacity: number;

  constructor(capacity = LOCAL_BUCKETS_CAPACITY) {
    this.capacity = capacity;
  }

  /** Takes from (or gives back to) the buckets named `name`. */
  acquire(name: string, request: AcquireRequest, now: number): Grant {
    const previous = this.sets.get(name);
    if (previous) this.sets.delete(name);
    const { set, grant } = acquire(previous, request, now);
    this.sets.set(name, set);
    if (this.sets.size > this.capacity) {
      const oldest = this.sets.keys().next().value;
      if (oldest !== undefined) this.sets.delete(oldest);
    }
    return grant;
  }

  get size(): number {
    return this.sets.size;
  }
}
