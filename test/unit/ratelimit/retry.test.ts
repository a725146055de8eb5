/**
 * GLOBAL decisions ask the key's object again, through a fresh stub, after a
 * failure the runtime marks retryable (the object was reset or is moving to
 * another machine), within the rule's decision timeout; never after one it
 * marks overloaded, or any other.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { decideGlobal, rateLimitEnv, retryable, type RateLimiterNamespace } from "../../../src/ratelimit/decide.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import type { RuntimeRule } from "../../../src/ratelimit/hydrate.ts";
import { bucketName } from "../../../src/ratelimit/key.ts";
import { doc, snapshotOf } from "../support.ts";

let policies = 0;

/** An error as workerd raises it for a Durable Object call, with its flags. */
function objectError(message: string, flags: { retryable?: boolean; overloaded?: boolean }): Error {
  return Object.assign(new Error(message), flags);
}

/**
 * A rule of 2 per day whose object fails the first `failures` calls with
 * `error`, then is the real RateLimiter; counts the stubs asked for.
 */
async function flaky(error: Error, failures: number, decisionTimeout = "2s") {
  const name = `retry${++policies}`;
  const runtime = hydrate(await snapshotOf(doc("RateLimitPolicy", name, { rules: [{ name: "r", decisionTimeout, limits: [{ requests: 2, unit: "day" }] }] }, "istio-system")));
  const rule = runtime.rateLimits?.rules[0] as RuntimeRule;
  const bucket = await bucketName(rule.def.id, []);
  let stubs = 0;
  const objects: RateLimiterNamespace = {
    getByName: (n) => {
      stubs++;
      if (stubs <= failures) return { acquire: () => Promise.reject(error) };
      return env.RATE_LIMITER.getByName(n);
    },
  };
  const isolate = rateLimitEnv(objects);
  return { decide: () => decideGlobal(rule, bucket, rule.base, isolate, () => Date.now()), stubs: () => stubs };
}

describe("retrying a GLOBAL decision", () => {
  it("asks again through a fresh stub after retryable failures, and the object's count is the one that decides", async () => {
    const { decide, stubs } = await flaky(objectError("Network connection lost.", { retryable: true }), 3);
    expect((await decide()).outcome).toBe("allowed");
    expect(stubs()).toBe(4);
    expect((await decide()).outcome).toBe("allowed");
    expect((await decide()).outcome).toBe("limited");
  });

  it("fails at once on an overloaded object or a failure that is not retryable", async () => {
    for (const error of [objectError("Durable Object is overloaded.", { retryable: true, overloaded: true }), objectError("internal error", {})]) {
      const { decide, stubs } = await flaky(error, 1);
      const decision = await decide();
      expect([decision.outcome, decision.error, stubs()]).toEqual(["failed-open", `the rate limiter failed: ${error.message}`, 1]);
    }
  });

  it("gives up when the decision timeout would pass, saying how many attempts it made", async () => {
    const { decide, stubs } = await flaky(objectError("Network connection lost.", { retryable: true }), 1_000, "100ms");
    const started = Date.now();
    const decision = await decide();
    expect(decision.outcome).toBe("failed-open");
    expect(decision.error).toMatch(/^the rate limiter failed: Network connection lost\. \(\d+ attempts\)$/);
    // 10, 20, 40 ms waits fit in 100 ms; the next (80 ms) would not.
    expect(stubs()).toBe(4);
    expect(Date.now() - started).toBeLessThan(100);
  });

  it("reads the runtime's flags", () => {
    expect(retryable(objectError("x", { retryable: true }))).toBe(true);
    expect(retryable(objectError("x", { retryable: true, overloaded: true }))).toBe(false);
    expect(retryable(new Error("x"))).toBe(false);
    expect(retryable("Network connection lost.")).toBe(false);
    expect(retryable(null)).toBe(false);
  });
});
