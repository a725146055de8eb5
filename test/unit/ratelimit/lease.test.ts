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
  return { isolates, decide, calls: () => calls };
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
});
