/**
 * Lease mode against the real RateLimiter object, with several isolates:
 * each simulated isolate is its own rate-limit state (leases, remembered
 * refusals), exactly what one Worker isolate keeps, all sharing the one
 * object of a hot key. Measures object calls per request and
 * over-admission, and checks them against the documented bounds.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { decideGlobal, rateLimitEnv, type RateLimiterNamespace } from "../../../src/ratelimit/decide.ts";
import { acquire, type AcquireRequest, type BucketSet } from "../../../src/ratelimit/bucket-set.ts";
import type { LimitSet } from "../../../src/ratelimit/hydrate.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import type { RuntimeRule } from "../../../src/ratelimit/hydrate.ts";
import { bucketName } from "../../../src/ratelimit/key.ts";
import { doc, snapshotOf } from "../support.ts";

let policies = 0;

async function hotKey(rule: Record<string, unknown>) {
  const name = `lease${++policies}`;
  const runtime = hydrate(await snapshotOf(doc("RateLimitPolicy", name, { rules: [{ name: "hot", decisionTimeout: "20s", ...rule }] }, "istio-system")));
  const hot = runtime.rateLimits?.rules[0] as RuntimeRule;
  const bucket = await bucketName(hot.def.id, []);
  let calls = 0;
  const counting: RateLimiterNamespace = {
    getByName: (n) => {
      calls++;
      return env.RATE_LIMITER.getByName(n);
    },
  };
  const isolates = (k: number) => Array.from({ length: k }, () => rateLimitEnv(counting));
  const decide = (isolate: ReturnType<typeof rateLimitEnv>) => decideGlobal(hot, bucket, hot.base, isolate, () => Date.now(), () => undefined);
  return { isolates, decide, calls: () => calls, bucket };
}

describe("lease mode", () => {
  it("admits exactly the limit across isolates over the long run, with an order of magnitude fewer object calls", async () => {
    const results: Record<string, { admitted: number; requests: number; calls: number }> = {};
    for (const lease of [undefined, { size: 10, ttl: "60s" }]) {
      const { isolates, decide, calls } = await hotKey({ limits: [{ requests: 200, unit: "day" }], ...(lease ? { lease } : {}) });
      const all = isolates(8);
      let admitted = 0;
      let requests = 0;
      for (let round = 0; round < 60; round++) {
        const outcomes = await Promise.all(all.map((i) => decide(i)));
        requests += outcomes.length;
        admitted += outcomes.filter((o) => o.outcome === "allowed").length;
      }
      results[lease ? "lease" : "exact"] = { admitted, requests, calls: calls() };
    }
    console.log(JSON.stringify({ scenario: "200/day, 8 isolates, 480 requests", ...results }));
    expect(results.exact?.admitted).toBe(200);
    expect(results.lease?.admitted).toBe(200);
    // Without leases: one call per admitted request (refusals are then remembered).
    expect(results.exact?.calls).toBeGreaterThanOrEqual(200);
    // With leases of 10: a call per lease plus one refusal per isolate.
    expect(results.lease?.calls).toBeLessThanOrEqual(200 / 10 + 8 + 8);
  });

  it("gives unspent tokens of an expired lease back with the isolate's next call", async () => {
    const { isolates, decide, calls } = await hotKey({ limits: [{ requests: 20, unit: "day" }], lease: { size: 10, ttl: "50ms" } });
    const [a, b] = isolates(2) as [ReturnType<typeof rateLimitEnv>, ReturnType<typeof rateLimitEnv>];
    const first = await decide(a);
    expect([first.source, first.grant?.granted, first.grant?.remaining, first.held]).toEqual(["object", 10, [10], 9]);
    const second = await decide(b);
    expect([second.grant?.granted, second.grant?.remaining]).toEqual([10, [0]]);
    // The object is empty; a's lease expires with 9 tokens unspent.
    await scheduler.wait(80);
    const third = await decide(a);
    // Its next call gives the 9 back and leases what there is: those same 9.
    expect([third.source, third.grant?.granted, third.grant?.remaining]).toEqual(["object", 9, [0]]);
    expect(calls()).toBe(3);
  });

  it("over-admits a refilling hot key by no more than min(isolates × size, rate × ttl) in any window", async () => {
    const rate = 100; // per second, burst 100
    const size = 10;
    const ttlMs = 1_000;
    const k = 4;
    const { isolates, decide, calls } = await hotKey({ limits: [{ requests: rate, unit: "second" }], lease: { size, ttl: `${ttlMs}ms` } });
    const admittedAt: number[] = [];
    let requests = 0;
    const start = Date.now();
    const runMs = 3_000;
    await Promise.all(
      isolates(k).map(async (isolate) => {
        while (Date.now() - start < runMs) {
          const d = await decide(isolate);
          requests++;
          if (d.outcome === "allowed") admittedAt.push(Date.now());
          await scheduler.wait(2);
        }
      }),
    );
    admittedAt.sort((a, b) => a - b);
    const windowMs = 1_000;
    let worst = 0;
    for (let i = 0; i < admittedAt.length; i++) {
      let j = i;
      while (j < admittedAt.length && (admittedAt[j] as number) < (admittedAt[i] as number) + windowMs) j++;
      worst = Math.max(worst, j - i);
    }
    const bucketBound = rate + (rate * windowMs) / 1000;
    const leaseBound = Math.min(k * size, (rate * ttlMs) / 1000);
    const elapsed = Date.now() - start;
    const longRun = rate + (rate * elapsed) / 1000;
    console.log(
      JSON.stringify({
        scenario: `${rate}/s burst ${rate}, lease ${size} for ${ttlMs}ms, ${k} isolates, ${elapsed} ms`,
        requests,
        admitted: admittedAt.length,
        calls: calls(),
        callsPerRequest: +(calls() / requests).toFixed(3),
        worstWindow: worst,
        bucketBound,
        overAdmission: Math.max(0, worst - bucketBound),
        leaseBound,
        longRunBound: Math.round(longRun),
      }),
    );
    expect(worst - bucketBound).toBeLessThanOrEqual(leaseBound);
    // Every admitted request spent a token the object granted.
    expect(admittedAt.length).toBeLessThanOrEqual(longRun + leaseBound);
    expect(calls() / requests).toBeLessThan(0.5);
  });

  it("asks the object for one lease at a time per key, however many of the isolate's requests find its pool empty", async () => {
    const { isolates, decide, calls, bucket } = await hotKey({ limits: [{ requests: 1_000, unit: "day" }], lease: { size: 10, ttl: "60s" } });
    const [isolate] = isolates(1) as [ReturnType<typeof rateLimitEnv>];
    // 25 requests arrive together at one isolate: a lease of 10 serves 10 of them, the next lease the next 10, a third the rest.
    const outcomes = await Promise.all(Array.from({ length: 25 }, () => decide(isolate)));
    expect(outcomes.map((o) => o.outcome)).toEqual(Array.from({ length: 25 }, () => "allowed"));
    expect(calls()).toBe(3);
    expect(outcomes.filter((o) => o.source === "object").length).toBe(3);
    expect(isolate.leases.held(bucket)).toBe(5);
  });

  it("keeps the documented bound, min(isolates × size, rate × ttl), with concurrent requests in one isolate", async () => {
    // One isolate; 100/s with a burst of 1000, leases of 10 for 1 s; an object that runs the real bucket arithmetic on
    // a clock the test moves. At t0, `k` requests arrive together; from t0 + 990 ms a request every ms, with 3000 more
    // at t0 + 990 ms. Admissions in the 1 s window from t0 + 990 ms: at most 1000 + 100 + min(1 × 10, 100) = 1110.
    const measured: Record<string, { heldAfterT0: number; admittedInWindow: number; objectCalls: number }> = {};
    for (const k of [1, 10, 20]) {
      const fake = fakeObject(1_767_000_000_000);
      const isolate = rateLimitEnv(fake.objects);
      const decide = () => decideGlobal(FAKE_RULE, "k", FAKE_SET, isolate, () => fake.clock, () => undefined);
      const t0 = fake.clock;
      const first = await Promise.all(Array.from({ length: k }, decide));
      expect(first.every((d) => d.outcome === "allowed")).toBe(true);
      const held = isolate.leases.held("k");
      fake.clock = t0 + 990;
      let admitted = 0;
      for (let i = 0; i < 1_000; i++, fake.clock++) {
        for (let j = 0; j < (i === 0 ? 3_000 : 5); j++) if ((await decide()).outcome === "allowed") admitted++;
      }
      measured[`${k} concurrent at t0`] = { heldAfterT0: held, admittedInWindow: admitted, objectCalls: fake.calls };
      expect(admitted, `${k} concurrent at t0`).toBeLessThanOrEqual(1_110);
      // What the isolate held after t0: at most one lease's unspent tokens.
      expect(held, `${k} concurrent at t0`).toBeLessThanOrEqual(9);
    }
    console.log(JSON.stringify({ scenario: "100/s burst 1000, lease 10 for 1 s, one isolate, 1 s window from t0 + 990 ms (bound 1110)", ...measured }));
  });

  it("lets the requests that waited for a lease call that failed follow the rule's failure mode, with its error", async () => {
    for (const failureMode of ["OPEN", "CLOSED"] as const) {
      let calls = 0;
      const failing: RateLimiterNamespace = { getByName: () => ({ acquire: () => (calls++, Promise.reject(new Error("internal error"))) }) };
      const isolate = rateLimitEnv(failing);
      const rule = { ...FAKE_RULE, def: { ...FAKE_RULE.def, failureMode } } as RuntimeRule;
      const outcomes = await Promise.all(Array.from({ length: 5 }, () => decideGlobal(rule, "k", FAKE_SET, isolate, () => Date.now(), () => undefined)));
      expect(outcomes.map((o) => [o.outcome, o.error])).toEqual(Array.from({ length: 5 }, () => [failureMode === "OPEN" ? "failed-open" : "failed-closed", "the rate limiter failed: internal error"]));
      expect(calls).toBe(1);
    }
  });

  it("does not wait past the decision timeout for a lease call another request started", async () => {
    // The object never answers: the first request gives up at its timeout, and so do those that waited on it.
    const silent: RateLimiterNamespace = { getByName: () => ({ acquire: () => new Promise(() => undefined) }) };
    const isolate = rateLimitEnv(silent);
    const rule = { ...FAKE_RULE, def: { ...FAKE_RULE.def, timeoutMs: 100 } } as RuntimeRule;
    const started = Date.now();
    const outcomes = await Promise.all(Array.from({ length: 3 }, () => decideGlobal(rule, "k", FAKE_SET, isolate, () => Date.now(), () => undefined)));
    expect(outcomes.map((o) => [o.outcome, o.error])).toEqual(Array.from({ length: 3 }, () => ["failed-open", "the rate limiter did not answer within 100ms"]));
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

/** A lease rule for `decideGlobal` alone: 100/s, burst 1000, leases of 10 for 1 s. */
const FAKE_RULE = {
  def: { id: "ns/p/r", name: "r", mode: "ENFORCE", failureMode: "OPEN", timeoutMs: 250, algorithm: "TOKEN_BUCKET", lease: { size: 10, ttlMs: 1_000 } },
} as unknown as RuntimeRule;
const FAKE_LIMITS = [{ requests: 100, windowMs: 1_000, burst: 1_000 }];
const FAKE_SET: LimitSet = { limits: FAKE_LIMITS, policyNames: ["r"], signature: JSON.stringify(FAKE_LIMITS) };

/** An object running the real bucket arithmetic synchronously (as the RateLimiter does), on a clock the test sets. */
function fakeObject(start: number) {
  const fake = { clock: start, calls: 0, bucket: undefined as BucketSet | undefined, objects: undefined as unknown as RateLimiterNamespace };
  fake.objects = {
    getByName: () => ({
      acquire: async (request: AcquireRequest) => {
        fake.calls++;
        const out = acquire(fake.bucket, request, fake.clock);
        fake.bucket = out.set;
        return out.grant;
      },
    }),
  };
  return fake;
}

