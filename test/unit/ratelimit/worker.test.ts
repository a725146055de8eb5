/**
 * Global rate limiting through the real Worker entry in workerd, with the
 * real RateLimiter objects: exactness under concurrency, refill timing,
 * eviction survival, and what happens when an object is too slow or fails.
 *
 * Failures are real, induced inside the real object with the test-only
 * `runInDurableObject` helper (no client request can reach it): holding
 * the object's input gate (`blockConcurrencyWhile`) makes it answer late;
 * throwing from that callback resets the object, which fails the calls
 * waiting on it.
 */
import { env, exports } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { bucketName } from "../../../src/ratelimit/key.ts";
import { wholeTokens } from "../../../src/ratelimit/algorithms.ts";
import type { BucketSet } from "../../../src/ratelimit/bucket-set.ts";
import { applyConfig } from "../helpers/apply.ts";

const policy = (name: string, path: string, extra: string) => `
apiVersion: isthmus.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: ${name}, namespace: istio-system}
spec:
  rules:
  - name: r
    match: {paths: ["${path}"]}
    key: ["request.headers[x-user]"]
${extra}`;

const config = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: istio-system}
spec:
  hosts: [rl.test]
  http:
  - directResponse: {status: 200, body: {string: "ok"}}
---${policy("burst", "/burst", `    limits: [{requests: 50, unit: day}]\n    decisionTimeout: 20s\n    failureMode: CLOSED`)}
---${policy("gcra", "/gcra", `    algorithm: GCRA\n    limits: [{requests: 50, unit: day}]\n    decisionTimeout: 20s\n    failureMode: CLOSED`)}
---${policy("refill", "/refill", `    limits: [{requests: 4, unit: second, burst: 1}]\n    decisionTimeout: 5s`)}
---${policy("refill-gcra", "/refill-gcra", `    algorithm: GCRA\n    limits: [{requests: 4, unit: second, burst: 1}]\n    decisionTimeout: 5s`)}
---${policy("durable", "/durable", `    limits: [{requests: 3, unit: hour}]\n    decisionTimeout: 5s`)}
---${policy("open", "/open", `    limits: [{requests: 100, unit: day}]\n    decisionTimeout: 100ms\n    failureMode: OPEN`)}
---${policy("closed", "/closed", `    limits: [{requests: 100, unit: day}]\n    decisionTimeout: 100ms\n    failureMode: CLOSED`)}
---${policy("late", "/late", `    limits: [{requests: 3, unit: day}]\n    decisionTimeout: 100ms\n    failureMode: CLOSED`)}
---${policy("open-err", "/open-err", `    limits: [{requests: 100, unit: day}]\n    decisionTimeout: 5s\n    failureMode: OPEN`)}
---${policy("closed-err", "/closed-err", `    limits: [{requests: 100, unit: day}]\n    decisionTimeout: 5s\n    failureMode: CLOSED`)}
`;

beforeAll(async () => {
  await applyConfig(config, "http://rl.test/");
});
afterEach(() => vi.restoreAllMocks());

const get = async (path: string, user: string) => {
  const res = await exports.default.fetch(`http://rl.test${path}`, { headers: { "x-user": user } });
  return { status: res.status, body: await res.text(), headers: Object.fromEntries(res.headers) };
};

/** The object that holds `user`'s buckets for the rule of policy `name`. */
const objectOf = async (name: string, user: string) => env.RATE_LIMITER.getByName(await bucketName(`istio-system/${name}/r`, [user]));

describe("global rate limiting through the Worker", () => {
  it("admits exactly 50 of 200 concurrent requests against a limit of 50, for both algorithms", async () => {
    for (const path of ["/burst", "/gcra"]) {
      const replies = await Promise.all(Array.from({ length: 200 }, () => get(path, "crowd")));
      const statuses = replies.map((r) => r.status);
      expect(statuses.filter((s) => s === 200).length, path).toBe(50);
      expect(statuses.filter((s) => s === 429).length, path).toBe(150);
      // And the bucket stays exact afterwards.
      expect((await get(path, "crowd")).status).toBe(429);
    }
  });

  it("refills at the configured rate: the next token comes 250 ms after the last (4/s, burst 1), within 230–650 ms", async () => {
    for (const path of ["/refill", "/refill-gcra"]) {
      const user = `refill-${path}`;
      // The clock starts before the request that takes the token: the
      // object decides after t0, so its next token cannot come sooner than
      // 250 ms after t0 (started after the reply, the reply's own latency
      // was subtracted from the wait and a loaded run read 219 ms).
      const t0 = Date.now();
      expect((await get(path, user)).status).toBe(200);
      const refused = await get(path, user);
      expect(refused.status).toBe(429);
      expect(refused.headers["retry-after"]).toBe("1");
      let admittedAt = 0;
      while (Date.now() - t0 < 2_000) {
        await scheduler.wait(10);
        if ((await get(path, user)).status === 200) {
          admittedAt = Date.now();
          break;
        }
      }
      const elapsed = admittedAt - t0;
      expect(elapsed, path).toBeGreaterThanOrEqual(230);
      expect(elapsed, path).toBeLessThanOrEqual(650);
    }
  });

  it("keeps the count of an hourly limit when the object is evicted", async () => {
    expect([(await get("/durable", "evicted")).status, (await get("/durable", "evicted")).status]).toEqual([200, 200]);
    await evictDurableObject(await objectOf("durable", "evicted"));
    expect([(await get("/durable", "evicted")).status, (await get("/durable", "evicted")).status]).toEqual([200, 429]);
  });

  it("fails open or closed when the object does not answer within decisionTimeout", async () => {
    const error = vi.spyOn(console, "error").mockImplementation(() => {});
    for (const [path, expected] of [["/open", 200], ["/closed", 500]] as const) {
      const stub = await objectOf(path.slice(1), "slow");
      const held = runInDurableObject(stub, (_, state) => state.blockConcurrencyWhile(() => scheduler.wait(1_000)));
      await scheduler.wait(100);
      const started = Date.now();
      const reply = await get(path, "slow");
      const waited = Date.now() - started;
      expect(reply.status, path).toBe(expected);
      expect(waited, path).toBeLessThan(800);
      await held;
      // Once the object answers again, decisions are made again.
      expect((await get(path, "slow")).status, path).toBe(200);
    }
    const failures = error.mock.calls.map((c) => JSON.parse(String(c[0])));
    expect(failures.map((f) => [f.outcome, f.error])).toEqual([
      ["failed-open", "the rate limiter did not answer within 100ms"],
      ["failed-closed", "the rate limiter did not answer within 100ms"],
    ]);
  });

  it("gives back what the object granted after the decision gave up: the request refused by failureMode CLOSED spends nothing", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const stub = await objectOf("late", "late");
    const held = runInDurableObject(stub, (_, state) => state.blockConcurrencyWhile(() => scheduler.wait(400)));
    await scheduler.wait(100);
    expect((await get("/late", "late")).status).toBe(500);
    await held;
    // The Worker kept the call it gave up on alive (waitUntil), as it must where the call may already have been
    // delivered (an object on another replica): the object applied it once its gate opened...
    await scheduler.wait(50);
    const stored = await runInDurableObject(stub, (_, state) => state.storage.kv.get<{ set: BucketSet }>("buckets"));
    expect(stored && wholeTokens(stored.set.buckets[0]!.state, stored.set.buckets[0]!.limit, Date.now())).toBe(2);
    // ...and its token comes back with the next call: the limit is admitted whole.
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await get("/late", "late")).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
  });

  it("fails open or closed when the object fails", async () => {
    const error = vi.spyOn(console, "error").mockImplementation(() => {});
    for (const [path, expected] of [["/open-err", 200], ["/closed-err", 500]] as const) {
      const stub = await objectOf(path.slice(1), "broken");
      const broken = runInDurableObject(stub, (_, state) =>
        state.blockConcurrencyWhile(async () => {
          await scheduler.wait(300);
          throw new Error("test-induced Durable Object failure");
        }),
      );
      await scheduler.wait(100);
      const reply = await get(path, "broken");
      expect(reply.status, path).toBe(expected);
      await expect(broken).rejects.toThrow(/test-induced Durable Object failure/);
      expect((await get(path, "broken")).status, path).toBe(200);
    }
    const failures = error.mock.calls.map((c) => JSON.parse(String(c[0])));
    expect(failures.map((f) => f.outcome)).toEqual(["failed-open", "failed-closed"]);
    expect(failures.map((f) => f.error)).toEqual(Array(2).fill("the rate limiter failed: test-induced Durable Object failure"));
  });
});
