/**
 * The Worker reaches each key's RateLimiter object by an id it derives once
 * per isolate (src/ratelimit/object-ids.ts): the same object `getByName`
 * reaches, with the name's HMAC computed once instead of on every request.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { AcquireRequest } from "../../../src/ratelimit/bucket-set.ts";
import { withCachedIds } from "../../../src/ratelimit/object-ids.ts";

const request: AcquireRequest = { algorithm: "TOKEN_BUCKET", limits: [{ requests: 5, windowMs: 86_400_000, burst: 5 }], want: 1, partial: false, returning: 0 };

describe("withCachedIds", () => {
  it("reaches the same object as getByName", async () => {
    const name = `same-object-${crypto.randomUUID()}`;
    const objects = withCachedIds(env.RATE_LIMITER);
    const first = await objects.getByName(name).acquire(request);
    const second = await env.RATE_LIMITER.getByName(name).acquire(request);
    const third = await objects.getByName(name).acquire(request);
    expect([first.remaining, second.remaining, third.remaining]).toEqual([[4], [3], [2]]);
  });

  it("derives a key's id once, keeps a key in use through a flood of new ones, and at most `max` ids", async () => {
    const derived: string[] = [];
    const namespace = {
      idFromName: (name: string) => {
        derived.push(name);
        return env.RATE_LIMITER.idFromName(name);
      },
      get: (id: DurableObjectId) => env.RATE_LIMITER.get(id),
    };
    // Two generations of 2.
    const objects = withCachedIds(namespace, 4);
    const [a, b, c, d, e, f, g] = ["a", "b", "c", "d", "e", "f", "g"].map((k) => `bounded-${k}-${crypto.randomUUID()}`) as [string, string, string, string, string, string, string];
    for (const name of [a, a, b, a, b]) await objects.getByName(name).acquire(request);
    expect(derived).toEqual([a, b]);
    expect(objects.cached).toBe(2);
    // a is asked for between new keys: its id is never derived again; b is not, and it is.
    for (const name of [c, a, d, e, a, f, g, a, b]) {
      await objects.getByName(name).acquire(request);
      expect(objects.cached).toBeLessThanOrEqual(4);
    }
    expect(derived).toEqual([a, b, c, d, e, f, g, b]);
  });
});
