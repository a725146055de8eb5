/**
 * What the RateLimiter object stores: a floor under the live count, 1% of
 * the burst ahead, rewritten only when the live count passes it. Whatever
 * the traffic and wherever a restart falls, the state read back never
 * holds more tokens than the live count had (no over-admission) and at
 * most 1% of the burst fewer.
 */
import { describe, expect, it } from "vitest";
import { wholeTokens } from "../../../src/ratelimit/algorithms.ts";
import { acquire, floorHolds, floorFor, type AcquireRequest, type BucketSet } from "../../../src/ratelimit/bucket-set.ts";

const ALGORITHMS = ["TOKEN_BUCKET", "GCRA"] as const;
const HOUR = 3_600_000;

const tokens = (set: BucketSet, now: number) => set.buckets.map((b) => wholeTokens(b.state, b.limit, now));

/** A seeded generator, so a failure replays. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe("the stored floor", () => {
  it("spends 1% of each bucket's burst ahead (nothing under a burst of 100)", () => {
    for (const algorithm of ALGORITHMS) {
      const request: AcquireRequest = { algorithm, limits: [{ requests: 1_000, windowMs: HOUR, burst: 1_000 }, { requests: 99, windowMs: HOUR, burst: 99 }], want: 1, partial: false, returning: 0 };
      const { set } = acquire(undefined, request, 0);
      expect(tokens(set, 0), algorithm).toEqual([999, 98]);
      expect(tokens(floorFor(set, 0), 0), algorithm).toEqual([989, 98]);
    }
  });

  it("covers the live count until it spends past the floor; nothing stored covers only full buckets", () => {
    for (const algorithm of ALGORITHMS) {
      const request: AcquireRequest = { algorithm, limits: [{ requests: 1_000, windowMs: HOUR, burst: 1_000 }], want: 1, partial: false, returning: 0 };
      let { set } = acquire(undefined, request, 0);
      expect(floorHolds(undefined, set, 0), algorithm).toBe(false);
      expect(floorHolds(undefined, set, HOUR), algorithm).toBe(true);
      const floor = floorFor(set, 0);
      for (let i = 0; i < 10; i++) {
        set = acquire(set, request, 0).set;
        expect(floorHolds(floor, set, 0), `${algorithm} after ${i + 2}`).toBe(true);
      }
      set = acquire(set, request, 0).set;
      expect(floorHolds(floor, set, 0), algorithm).toBe(false);
      // Refill moves both alike: still uncovered a second later.
      expect(floorHolds(floor, set, 1_000), algorithm).toBe(false);
    }
  });

  it("does not cover a live count under other limits or another algorithm", () => {
    const request: AcquireRequest = { algorithm: "TOKEN_BUCKET", limits: [{ requests: 1_000, windowMs: HOUR, burst: 1_000 }], want: 1, partial: false, returning: 0 };
    const { set } = acquire(undefined, request, 0);
    const floor = floorFor(set, 0);
    expect(floorHolds(floor, acquire(set, { ...request, limits: [{ requests: 2_000, windowMs: HOUR, burst: 1_000 }] }, 0).set, 0)).toBe(false);
    expect(floorHolds(floor, acquire(set, { ...request, algorithm: "GCRA" }, 0).set, 0)).toBe(false);
  });

  it("never reads back more tokens than the live count had, nor more than 1% of the burst fewer, under random traffic and restarts", () => {
    for (const algorithm of ALGORITHMS) {
      const random = prng(algorithm === "GCRA" ? 7 : 11);
      const limits = [
        { requests: 2_000, windowMs: 60_000, burst: 2_000 },
        { requests: 50_000, windowMs: HOUR, burst: 5_000 },
      ];
      let live: BucketSet | undefined;
      let stored: BucketSet | undefined;
      let writes = 0;
      let admitted = 0;
      let now = 0;
      for (let step = 0; step < 20_000; step++) {
        now += Math.floor(random() * 40);
        const want = random() < 0.05 ? 1 + Math.floor(random() * 30) : 1;
        const returning = random() < 0.02 ? Math.floor(random() * 20) : 0;
        const out = acquire(live, { algorithm, limits, want, partial: want > 1, returning }, now);
        live = out.set;
        admitted += out.grant.granted;
        // The object's rule: write a new floor whenever the stored one no longer covers the live count.
        if (!floorHolds(stored, live, now)) {
          stored = floorFor(live, now);
          writes++;
        }
        const read = stored ?? live;
        const liveTokens = tokens(live, now);
        const readTokens = tokens(read, now);
        readTokens.forEach((t, i) => {
          const have = liveTokens[i] as number;
          if (t > have) throw new Error(`${algorithm} step ${step}: a restart would read ${t} tokens in bucket ${i}, the live count has ${have}`);
          const reserve = Math.floor((limits[i] as { burst: number }).burst * 0.01);
          if (t < have - reserve - 1) throw new Error(`${algorithm} step ${step}: a restart would lose ${have - t} tokens in bucket ${i}, more than ${reserve}`);
        });
        // A restart now and then: the object goes on from what storage holds.
        if (random() < 0.001) live = stored;
      }
      expect(admitted, algorithm).toBeGreaterThan(5_000);
      // Far fewer writes than admissions: about one per 1% of the smaller burst spent.
      expect(writes, algorithm).toBeLessThan(admitted / 5);
    }
  });
});
