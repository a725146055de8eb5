/**
 * The bucket arithmetic with an injected clock: both algorithms make the
 * same decisions, refill continuously, never exceed the burst, and report
 * exact waits.
 */
import { describe, expect, it } from "vitest";
import { acquire, msUntilFull, refillMs, type AcquireRequest, type BucketSet } from "../../../src/ratelimit/bucket-set.ts";
import { LocalBuckets } from "../../../src/ratelimit/local-buckets.ts";
import { Leases } from "../../../src/ratelimit/lease.ts";
import { Refusals } from "../../../src/ratelimit/refusals.ts";
import { bucketName, localBucketKey } from "../../../src/ratelimit/key.ts";

const ALGORITHMS = ["TOKEN_BUCKET", "GCRA"] as const;
const req = (algorithm: (typeof ALGORITHMS)[number], requests: number, windowMs: number, burst = requests, extra: Partial<AcquireRequest> = {}): AcquireRequest => ({
  algorithm,
  limits: [{ requests, windowMs, burst }],
  want: 1,
  partial: false,
  returning: 0,
  ...extra,
});

/** Runs requests at the given times against one bucket set; returns which were admitted. */
function run(request: AcquireRequest, times: number[]): boolean[] {
  let set: BucketSet | undefined;
  return times.map((t) => {
    const out = acquire(set, request, t);
    set = out.set;
    return out.grant.granted === 1;
  });
}

describe("token bucket and GCRA", () => {
  it.each(ALGORITHMS)("%s: starts full, admits the burst at once, then one request per interval", (algorithm) => {
    // 10 per second, burst 3: a token every 100 ms.
    const r = req(algorithm, 10, 1000, 3);
    expect(run(r, [0, 0, 0, 0, 99, 100, 150, 199, 200])).toEqual([true, true, true, false, false, true, false, false, true]);
  });

  it.each(ALGORITHMS)("%s: never holds more than the burst however long it idles", (algorithm) => {
    const r = req(algorithm, 10, 1000, 3);
    expect(run(r, [0, 0, 0, 10_000, 10_000, 10_000, 10_000])).toEqual([true, true, true, true, true, true, false]);
  });

  it("makes the same decisions with both algorithms on an irregular arrival pattern", () => {
    const times: number[] = [];
    let t = 0;
    for (let i = 0; i < 500; i++) {
      t += (i * 7919) % 23;
      times.push(t);
    }
    expect(run(req("GCRA", 7, 60, 4), times)).toEqual(run(req("TOKEN_BUCKET", 7, 60, 4), times));
  });

  it.each(ALGORITHMS)("%s: reports the wait until the next token, remaining tokens and the time to full", (algorithm) => {
    let set: BucketSet | undefined;
    let grant;
    for (let i = 0; i < 4; i++) ({ set, grant } = acquire(set, req(algorithm, 4, 60_000), 1_000));
    expect(grant).toEqual({ granted: 1, remaining: [0], resetMs: [15_000], retryAfterMs: 0, wantReadyMs: 15_000 });
    ({ set, grant } = acquire(set, req(algorithm, 4, 60_000), 6_000));
    expect(grant).toEqual({ granted: 0, remaining: [0], resetMs: [10_000], retryAfterMs: 10_000, wantReadyMs: 10_000 });
    expect(msUntilFull(set as BucketSet, 6_000)).toBe(55_000);
  });

  it.each(ALGORITHMS)("%s: leases take what there is, and given-back tokens never overfill", (algorithm) => {
    const lease = (want: number, returning = 0) => req(algorithm, 25, 86_400_000, 25, { want, partial: true, returning });
    let set: BucketSet | undefined;
    const granted = [10, 10, 10, 10].map((want) => {
      const out = acquire(set, lease(want), 0);
      set = out.set;
      return out.grant.granted;
    });
    expect(granted).toEqual([10, 10, 5, 0]);
    expect(acquire(set, lease(0, 100), 0).grant.remaining).toEqual([25]);
  });

  it("states how long a set takes to refill from empty", () => {
    expect(refillMs([{ requests: 10, windowMs: 1000, burst: 10 }])).toBe(1000);
    expect(refillMs([{ requests: 10, windowMs: 1000, burst: 10 }, { requests: 100, windowMs: 3_600_000, burst: 100 }])).toBe(3_600_000);
    expect(refillMs([{ requests: 10, windowMs: 1000, burst: 30 }])).toBe(3000);
  });
});

describe("bucket names", () => {
  it("names a global bucket by the SHA-256 of rule and key, and a local one by the key itself unless it is long", async () => {
    expect(await bucketName("ns/p/r", ["alice"])).toMatch(/^[0-9a-f]{64}$/);
    expect(await bucketName("ns/p/r", ["alice"])).not.toBe(await bucketName("ns/p/r", ["alice", null]));
    expect(await bucketName("ns/p/r", ["a", "b"])).not.toBe(await bucketName("ns/p/r", ["a,b"]));
    expect(localBucketKey("ns/p/r", ["alice"])).toBe('ns/p/r\u0000["alice"]');
    const long = await localBucketKey("ns/p/r", ["x".repeat(600)]);
    expect(long).toBe(await bucketName("ns/p/r", ["x".repeat(600)]));
  });

  it("remembers a warm key's name (no digest the second time) and gives the same name", async () => {
    const first = await bucketName("ns/p/memo", ["bob"]);
    const again = bucketName("ns/p/memo", ["bob"]);
    expect(again).toBe(first);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode('ns/p/memo\u0000["bob"]')));
    expect(first).toBe([...digest].map((b) => b.toString(16).padStart(2, "0")).join(""));
  });

  it("remembers keys of several parts and missing parts apart from a value that spells them", async () => {
    const sha = async (text: string) => [...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)))].map((b) => b.toString(16).padStart(2, "0")).join("");
    for (let round = 0; round < 2; round++) {
      // The second round answers from what the first remembered, and must give the same names.
      expect(await bucketName("ns/p/parts", ["a", "b"])).toBe(await sha('ns/p/parts\u0000["a","b"]'));
      expect(await bucketName("ns/p/parts", [null])).toBe(await sha("ns/p/parts\u0000[null]"));
      expect(await bucketName("ns/p/parts", ["null"])).toBe(await sha('ns/p/parts\u0000["null"]'));
      expect(await bucketName("ns/p/parts", ["[null]"])).toBe(await sha('ns/p/parts\u0000["[null]"]'));
      expect(await bucketName("ns/p/other", ["a", "b"])).toBe(await sha('ns/p/other\u0000["a","b"]'));
    }
    expect(typeof bucketName("ns/p/parts", ["a", "b"])).toBe("string");
    expect(typeof bucketName("ns/p/parts", [null])).toBe("string");
  });

  it("keeps a name in use through a flood of new keys, and forgets one that is not (two generations of 5,000)", async () => {
    const warm = await bucketName("ns/p/flood", ["warm"]);
    const cold = await bucketName("ns/p/flood", ["cold"]);
    for (let i = 0; i < 30_000; i++) {
      await bucketName("ns/p/flood", [`user-${i}`]);
      // Used once per 4,000 new keys: always answered at once, and the same name.
      if (i % 4_000 === 3_999) expect(bucketName("ns/p/flood", ["warm"])).toBe(warm);
    }
    expect(bucketName("ns/p/flood", ["warm"])).toBe(warm);
    // Not used for 30,000 new keys: digested again (a promise), to the same name.
    const again = bucketName("ns/p/flood", ["cold"]);
    expect(again).toBeInstanceOf(Promise);
    expect(await again).toBe(cold);
  });
});

describe("isolate state", () => {
  it("forgets the least recently used key first once full, which refills it", () => {
    const local = new LocalBuckets(2);
    const r = req("TOKEN_BUCKET", 1, 86_400_000);
    expect(local.acquire("a", r, 0).granted).toBe(1);
    expect(local.acquire("b", r, 0).granted).toBe(1);
    expect(local.acquire("a", r, 0).granted).toBe(0); // a is now the most recent
    expect(local.acquire("c", r, 0).granted).toBe(1); // b is forgotten
    expect(local.size).toBe(2);
    expect(local.acquire("a", r, 0).granted).toBe(0);
    expect(local.acquire("b", r, 0).granted).toBe(1);
  });

  it("spends leases oldest first, and sets aside what expires unspent", () => {
    const leases = new Leases();
    const grant = { granted: 3, remaining: [7], resetMs: [0], retryAfterMs: 0, wantReadyMs: 0 };
    leases.add("k", 2, 100, grant);
    leases.add("k", 3, 200, grant);
    expect(leases.take("k", 50)).toMatchObject({ taken: true, lease: { tokens: 4 } });
    expect(leases.take("k", 150)).toMatchObject({ taken: true, lease: { tokens: 2 } });
    expect(leases.takeReturns("k")).toBe(1);
    expect(leases.takeReturns("k")).toBe(0);
    expect(leases.take("k", 250)).toEqual({ taken: false });
    expect(leases.takeReturns("k")).toBe(2);
  });

  it("remembers a refusal until it expires, counting down the wait", () => {
    const refusals = new Refusals();
    expect(refusals.empty).toBe(true);
    refusals.set("k", 1_000, 1_500, { granted: 0, remaining: [0], resetMs: [500], retryAfterMs: 500, wantReadyMs: 500 });
    expect(refusals.empty).toBe(false);
    expect(refusals.get("k", 1_200)).toEqual({ granted: 0, remaining: [0], resetMs: [300], retryAfterMs: 300, wantReadyMs: 300 });
    expect(refusals.get("k", 1_500)).toBeUndefined();
    // The expired refusal was forgotten when read: callers skip building keys again.
    expect(refusals.empty).toBe(true);
    expect(refusals.get("other", 1_200)).toBeUndefined();
  });
});
