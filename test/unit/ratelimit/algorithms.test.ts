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

  it.each(ALGORITHMS)("%s: admits exactly the burst at a real clock, at rates up to 1e9 a minute", (algorithm) => {
    // Epoch milliseconds, as Date.now() gives them: at 1.77e12 a double's step is 2^-12 ms, coarser than one
    // token's interval at these rates, so time kept as an absolute number would round every take.
    const now = 1_767_000_000_000;
    for (const [requests, burst] of [
      [200_000_000, 1_000],
      [60_000_000, 100_000],
      [1_000_000_000, 10],
      [1_000_000_000, 100_000],
      [1_000_000, 100_000],
    ] as const) {
      let set: BucketSet | undefined;
      let admitted = 0;
      for (let i = 0; i <= burst; i++) {
        const out = acquire(set, req(algorithm, requests, 60_000, burst), now);
        set = out.set;
        admitted += out.grant.granted;
      }
      expect({ requests, burst, admitted }).toEqual({ requests, burst, admitted: burst });
      // Full again once it has had time to refill.
      expect(acquire(set, req(algorithm, requests, 60_000, burst, { want: burst }), now + (burst * 60_000) / requests + 1).grant.granted).toBe(burst);
    }
    // And refills at the stated rate: 1,000,000 a minute is 50 tokens in 3 ms.
    let set: BucketSet | undefined;
    for (let i = 0; i < 1_000; i++) set = acquire(set, req(algorithm, 1_000_000, 60_000, 1_000), now).set;
    expect(acquire(set, req(algorithm, 1_000_000, 60_000, 1_000, { want: 51 }), now + 3).grant.granted).toBe(0);
    expect(acquire(set, req(algorithm, 1_000_000, 60_000, 1_000, { want: 50 }), now + 3).grant.granted).toBe(50);
  });

  it.each(ALGORITHMS)("%s: a leased bucket at a real clock grants exactly its burst", (algorithm) => {
    const now = 1_767_000_000_000;
    let set: BucketSet | undefined;
    let granted = 0;
    for (let i = 0; i < 20_000; i++) {
      const out = acquire(set, req(algorithm, 200_000_000, 60_000, 100_000, { want: 10, partial: true }), now);
      set = out.set;
      granted += out.grant.granted;
    }
    expect(granted).toBe(100_000);
  });

  it.each(ALGORITHMS)("%s: a clock that steps back and then forward again does not refill twice", (algorithm) => {
    // 10 a minute, burst 10: a token every 6 s. At T nine are taken; at T+1 s the object runs on a clock 30 s behind
    // and asks once; at T+2 s it is back on time and asks 20 times. The true bucket had 10 tokens and 2 s of refill:
    // 10 admitted in all, and the next token 6 s after the tenth was taken.
    const T = 1_767_000_000_000;
    let set: BucketSet | undefined;
    const ask = (t: number, times = 1) => {
      let granted = 0;
      for (let i = 0; i < times; i++) {
        const out = acquire(set, req(algorithm, 10, 60_000), t);
        set = out.set;
        granted += out.grant.granted;
      }
      return granted;
    };
    expect(ask(T, 9)).toBe(9);
    expect(ask(T + 1_000 - 30_000) + ask(T + 2_000, 20)).toBe(1);
    expect(ask(T + 5_999)).toBe(0);
    expect(ask(T + 6_000)).toBe(1);
  });

  it("states how long a set takes to refill from empty", () => {
    expect(refillMs([{ requests: 10, windowMs: 1000, burst: 10 }])).toBe(1000);
    expect(refillMs([{ requests: 10, windowMs: 1000, burst: 10 }, { requests: 100, windowMs: 3_600_000, burst: 100 }])).toBe(3_600_000);
    expect(refillMs([{ requests: 10, windowMs: 1000, burst: 30 }])).toBe(3000);
  });
});

describe("a configuration change", () => {
  const sec = { requests: 100, windowMs: 1_000, burst: 100 };
  const day = { requests: 200, windowMs: 86_400_000, burst: 200 };
  const T = 1_767_000_000_000;
  const ask = (set: BucketSet | undefined, limits: AcquireRequest["limits"], t: number, want = 1) => acquire(set, { algorithm: "TOKEN_BUCKET", limits, want, partial: false, returning: 0 }, t);
  /** Spends the day limit's 200 under `limits` over three seconds; the set afterwards. */
  const spendDay = (limits: AcquireRequest["limits"]) => {
    let set: BucketSet | undefined;
    let admitted = 0;
    for (const t of [T, T + 1_000, T + 2_000]) {
      for (let i = 0; i < 150; i++) {
        const out = ask(set, limits, t);
        set = out.set;
        admitted += out.grant.granted;
      }
    }
    expect(admitted).toBe(200);
    return set as BucketSet;
  };
  /** Admitted in the 10 s after the change, at 500 attempts a second (the day is spent: 0 is right). */
  const next10s = (start: BucketSet, limits: AcquireRequest["limits"]) => {
    let set: BucketSet | undefined = start;
    let admitted = 0;
    for (let s = 3; s < 13; s++) {
      for (let i = 0; i < 500; i++) {
        const out = ask(set, limits, T + s * 1_000);
        set = out.set;
        admitted += out.grant.granted;
      }
    }
    return admitted;
  };

  it.each([
    ["unchanged", [sec, day], [sec, day]],
    ["reordered", [sec, day], [day, sec]],
    ["a per-second limit removed", [sec, day], [day]],
    ["a per-second limit added in front", [day], [sec, day]],
    ["a per-second limit added after", [day], [day, sec]],
  ] as const)("keeps each limit's state with that limit, not its position: %s", (_, before, after) => {
    expect(next10s(spendDay([...before]), [...after])).toBe(0);
  });

  it("keeps the tokens of a limit whose numbers change (same unit), capped at the new burst, and starts a new unit full", () => {
    const minute = { requests: 10, windowMs: 60_000, burst: 10 };
    let set: BucketSet | undefined;
    for (let i = 0; i < 7; i++) set = ask(set, [minute, day], T).set;
    // 10/min → 20/min: the 3 tokens left are kept, not 20.
    expect(ask(set, [{ requests: 20, windowMs: 60_000, burst: 20 }, day], T).grant.remaining).toEqual([2, 192]);
    // 10/min → 2/min: capped at the new burst.
    expect(ask(set, [{ requests: 2, windowMs: 60_000, burst: 2 }, day], T).grant.remaining).toEqual([1, 192]);
    // A per-hour limit added next to them starts full.
    expect(ask(set, [minute, { requests: 50, windowMs: 3_600_000, burst: 50 }, day], T).grant.remaining).toEqual([2, 49, 192]);
    // 10/min → 600/h (the unit changed, nothing else matches): it keeps the per-minute limit's tokens.
    expect(ask(set, [{ requests: 600, windowMs: 3_600_000, burst: 600 }, day], T).grant.remaining).toEqual([2, 192]);
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

  it("lets one request at a time ask for a key's lease; another takes over a call older than the decision timeout", async () => {
    const leases = new Leases();
    const first = leases.lead("k", 0, 250);
    expect(first).toBeGreaterThan(0);
    expect(leases.lead("k", 100, 250)).toBe(0);
    expect(leases.lead("other", 100, 250)).toBeGreaterThan(0);
    const waiting = leases.waitFor("k", 10_000);
    // The first call's request never settles it (cancelled, say): at 250 ms another request asks instead.
    const second = leases.lead("k", 250, 250);
    expect(second).toBeGreaterThan(first);
    leases.settle("k", first, "too late to count");
    leases.settle("k", second, "the rate limiter failed: boom");
    expect(await waiting).toBe("the rate limiter failed: boom");
    expect(await leases.waitFor("k", 10_000)).toBeUndefined();
    // A waiter whose own time runs out wakes by itself.
    leases.lead("k", 300, 250);
    expect(await leases.waitFor("k", 5)).toBeUndefined();
  });

  it("never holds more than one lease's tokens of a key: the excess goes back with the next call", () => {
    const leases = new Leases();
    const grant = { granted: 10, remaining: [0], resetMs: [0], retryAfterMs: 0, wantReadyMs: 0 };
    leases.add("k", 9, 100, grant, 9);
    leases.add("k", 9, 100, grant, 9);
    expect(leases.held("k")).toBe(9);
    expect(leases.takeReturns("k")).toBe(9);
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
