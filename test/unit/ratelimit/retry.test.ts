/**
 * GLOBAL decisions ask the key's object again, through a fresh stub, after a
 * failure the runtime marks retryable (the object was reset or is moving to
 * another machine), within the rule's decision timeout; never after one it
 * marks overloaded, or any other. A call given up on at the timeout that the
 * object still answers gives its grant back.
 *
 * Timing: a call meant to outlive its decision is applied by the object at
 * once but answered only when the test releases it, after the decision has
 * given up, so it is late whatever the machine's load; every other call is
 * a real object call with a decision timeout (1 s, or more) far above what
 * one takes even on a loaded machine (50 ms was once exceeded on 2 cores).
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { decideGlobal, rateLimitEnv, retryable, type RateLimiterNamespace, type RateLimiterStub } from "../../../src/ratelimit/decide.ts";
import { hydrate } from "../../../src/routing/hydrate.ts";
import type { RuntimeRule } from "../../../src/ratelimit/hydrate.ts";
import { bucketName } from "../../../src/ratelimit/key.ts";
import type { Grant } from "../../../src/ratelimit/bucket-set.ts";
import { doc, snapshotOf } from "../support.ts";

let policies = 0;

/** An error as workerd raises it for a Durable Object call, with its flags. */
function objectError(message: string, flags: { retryable?: boolean; overloaded?: boolean }): Error {
  return Object.assign(new Error(message), flags);
}

interface RuleOptions {
  decisionTimeout?: string;
  failureMode?: "CLOSED";
  /** Per day; 2 unless said. */
  requests?: number;
  /** Lease mode with leases of this many tokens. */
  lease?: number;
}

/**
 * A rule of `requests` per day (`failureMode` OPEN unless said) whose object answers
 * the first `failures` calls through `failing`, then is the real RateLimiter;
 * counts the stubs asked for, and keeps what the decisions left to run
 * after them (waitUntil).
 */
async function limiter(failing: (n: string) => RateLimiterStub, failures: number, { decisionTimeout = "2s", failureMode, requests = 2, lease }: RuleOptions = {}) {
  const name = `retry${++policies}`;
  const runtime = hydrate(await snapshotOf(doc("RateLimitPolicy", name, { rules: [{ name: "r", decisionTimeout, ...(failureMode ? { failureMode } : {}), limits: [{ requests, unit: "day" }], ...(lease ? { lease: { size: lease } } : {}) }] }, "istio-system")));
  const rule = runtime.rateLimits?.rules[0] as RuntimeRule;
  const bucket = await bucketName(rule.def.id, []);
  let stubs = 0;
  const objects: RateLimiterNamespace = {
    getByName: (n) => {
      stubs++;
      return stubs <= failures ? failing(n) : env.RATE_LIMITER.getByName(n);
    },
  };
  const isolate = rateLimitEnv(objects);
  const background: Promise<unknown>[] = [];
  const decide = () => decideGlobal(rule, bucket, rule.base, isolate, () => Date.now(), (p) => background.push(p));
  return { decide, stubs: () => stubs, background: () => Promise.all(background) };
}

/** An object that fails its first `failures` calls with `error`. */
const flaky = (error: Error, failures: number, decisionTimeout?: string) => limiter(() => ({ acquire: () => Promise.reject(error) }), failures, { decisionTimeout });

/** The decision timeout of rules whose calls are answered late on purpose: how long a real call may take. */
const TIMEOUT = "1s";
const TIMED_OUT = "the rate limiter did not answer within 1000ms";

/**
 * Answers held back: `hold(call)` is the object's answer to `call` (which the object applies at once), given only
 * once `release()` is called, after the decisions have given up on it; `release()` then waits for every answer.
 */
function lateAnswers() {
  let open: () => void = () => undefined;
  const opened = new Promise<void>((resolve) => (open = resolve));
  const held: Promise<Grant>[] = [];
  return {
    hold(call: Promise<Grant>): Promise<Grant> {
      const answer = call.then(async (grant) => {
        await opened;
        return grant;
      });
      held.push(answer);
      return answer;
    },
    async release(): Promise<void> {
      open();
      await Promise.all(held);
    },
  };
}

/** An object that applies its first `lateCalls` calls at once but answers them only when `answered()` releases them (and waits for them). */
async function slow(lateCalls: number, failureMode?: "CLOSED") {
  const late = lateAnswers();
  const delayed = (n: string): RateLimiterStub => ({ acquire: (request) => late.hold(env.RATE_LIMITER.getByName(n).acquire(request)) });
  return { ...(await limiter(delayed, lateCalls, { decisionTimeout: TIMEOUT, failureMode })), answered: () => late.release() };
}

describe("retrying a GLOBAL decision", () => {
  it("asks again through a fresh stub after retryable failures, and the object's count is the one that decides", async () => {
    const { decide, stubs } = await flaky(objectError("Network connection lost.", { retryable: true }), 3, "10s");
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
    const { decide, stubs } = await flaky(objectError("Network connection lost.", { retryable: true }), 1_000, "300ms");
    const started = Date.now();
    const decision = await decide();
    expect(decision.outcome).toBe("failed-open");
    expect(decision.error).toMatch(/^the rate limiter failed: Network connection lost\. \(\d+ attempts\)$/);
    // 10, 20, 40 and 80 ms waits fit in 300 ms (the fifth attempt at 150 ms); the next (160 ms) would not. Timers may
    // fire up to 150 ms late in all before the count or the time is off.
    expect(stubs()).toBe(5);
    expect(Date.now() - started).toBeLessThan(300);
  });

  it("gives the grant of a call answered after the timeout back when failureMode refused the request: the limit is still admitted whole", async () => {
    const { decide, answered, background } = await slow(1, "CLOSED");
    const late = await decide();
    expect([late.outcome, late.error]).toEqual(["failed-closed", TIMED_OUT]);
    await answered();
    await background();
    expect([(await decide()).outcome, (await decide()).outcome, (await decide()).outcome]).toEqual(["allowed", "allowed", "limited"]);
  });

  it("counts the late grant's token against a request failureMode OPEN let through, as if the object had answered in time", async () => {
    const { decide, answered, background } = await slow(1);
    expect((await decide()).outcome).toBe("failed-open");
    await answered();
    await background();
    expect([(await decide()).outcome, (await decide()).outcome]).toEqual(["allowed", "limited"]);
  });

  it("asks the object again instead of answering from a remembered refusal once a late grant is to be given back", async () => {
    const { decide, answered, background } = await slow(1, "CLOSED");
    const first = decide();
    // While the first call's answer is on its way: the last token, then a refusal the isolate remembers.
    expect([(await decide()).outcome, (await decide()).outcome]).toEqual(["allowed", "limited"]);
    expect((await first).outcome).toBe("failed-closed");
    await answered();
    await background();
    expect([(await decide()).outcome, (await decide()).outcome]).toEqual(["allowed", "limited"]);
  });

  it("forgets a remembered refusal once a call giving late grants back is granted: what they returned is still admitted", async () => {
    const { decide, answered, background } = await slow(2, "CLOSED");
    // Two calls the decisions give up on: the object applies both (the limit is spent) and answers late.
    expect((await Promise.all([decide(), decide()])).map((d) => d.outcome)).toEqual(["failed-closed", "failed-closed"]);
    // Meanwhile the object refuses, and the isolate remembers it.
    expect((await decide()).outcome).toBe("limited");
    await answered();
    await background();
    // One call gives both tokens back and takes one; the other is still there for the next request.
    expect([(await decide()).outcome, (await decide()).outcome, (await decide()).outcome]).toEqual(["allowed", "allowed", "limited"]);
  });

  it("in lease mode too: a full lease granted to a call giving tokens back forgets the short one remembered before", async () => {
    // 6 per day, leases of 2. Calls 1–2 are applied at once but answered late; then the object. (One isolate asks
    // for one lease of a key at a time, so the two calls are made one after the other.)
    let calls = 0;
    const late = lateAnswers();
    const stub = (n: string): RateLimiterStub => ({
      acquire: (request) => {
        const applied = env.RATE_LIMITER.getByName(n).acquire(request);
        return ++calls > 2 ? applied : late.hold(applied);
      },
    });
    const { decide, background } = await limiter(stub, 1_000, { decisionTimeout: TIMEOUT, failureMode: "CLOSED", requests: 6, lease: 2 });
    // Given up on: their four tokens are to be given back. Then a lease of the last two, and an empty one remembered.
    expect([(await decide()).outcome, (await decide()).outcome]).toEqual(["failed-closed", "failed-closed"]);
    const before = [(await decide()).outcome, (await decide()).outcome, (await decide()).outcome];
    expect(before).toEqual(["allowed", "allowed", "limited"]);
    await late.release();
    await background();
    // The next call gives the four back and takes a lease of two; once it is spent, the two left are asked for.
    const after: string[] = [];
    for (let i = 0; i < 5; i++) after.push((await decide()).outcome);
    expect(after).toEqual(["allowed", "allowed", "allowed", "allowed", "limited"]);
  });

  it("gives tokens back once when a call that gave them is asked again: a retry cannot admit more than the limit", async () => {
    // 6 per day. Calls 1–2 reach the object; 3–4 are applied at once but answered late; 5 is applied and then
    // fails as if the connection were lost before its answer (retryable); then the object again.
    let calls = 0;
    const late = lateAnswers();
    const stub = (n: string): RateLimiterStub => ({
      acquire: (request) => {
        const call = ++calls;
        const applied = env.RATE_LIMITER.getByName(n).acquire(request);
        if (call === 3 || call === 4) return late.hold(applied);
        if (call === 5) return applied.then(() => Promise.reject(objectError("Network connection lost.", { retryable: true })));
        return applied;
      },
    });
    const { decide, background } = await limiter(stub, 1_000, { decisionTimeout: TIMEOUT, failureMode: "CLOSED", requests: 6 });
    expect([(await decide()).outcome, (await decide()).outcome]).toEqual(["allowed", "allowed"]);
    // Given up on (failureMode CLOSED spent nothing): their two tokens are to be given back.
    expect((await Promise.all([decide(), decide()])).map((d) => d.outcome)).toEqual(["failed-closed", "failed-closed"]);
    await late.release();
    await background();
    // Call 5 gives the two back and takes one, then fails; its retry takes one more (counted twice: refusing early is
    // the safe side) and must not give the two back again, or the day would admit 7.
    const outcomes: string[] = [];
    for (let i = 0; i < 6; i++) outcomes.push((await decide()).outcome);
    expect(outcomes).toEqual(["allowed", "allowed", "allowed", "limited", "limited", "limited"]);
  });

  it("reads the runtime's flags", () => {
    expect(retryable(objectError("x", { retryable: true }))).toBe(true);
    expect(retryable(objectError("x", { retryable: true, overloaded: true }))).toBe(false);
    expect(retryable(new Error("x"))).toBe(false);
    expect(retryable("Network connection lost.")).toBe(false);
    expect(retryable(null)).toBe(false);
  });
});
