/**
 * Quota fields: what a client reads, in each format, from the numbers a
 * decision reports; DRAFT_VERSION_03 as Envoy's local rate limit states it.
 */
import { describe, expect, it } from "vitest";
import type { LimitDef, RateLimitHeaderFormat } from "../../../src/config/snapshot.ts";
import { acquire, type BucketSet, type Grant } from "../../../src/ratelimit/bucket-set.ts";
import type { RuleDecision } from "../../../src/ratelimit/decide.ts";
import { allowedHeaders, limitedHeaders } from "../../../src/ratelimit/headers.ts";
import type { RuntimeRule } from "../../../src/ratelimit/hydrate.ts";

/** The decision of the `taken`th request against a fresh bucket of `limits`, for a rule asking for `format` on every response. */
function decision(format: RateLimitHeaderFormat, limits: LimitDef[], taken: number): RuleDecision {
  let set: BucketSet | undefined;
  let grant: Grant | undefined;
  for (let i = 0; i < taken; i++) ({ set, grant } = acquire(set, { algorithm: "TOKEN_BUCKET", limits, want: 1, partial: false, returning: 0 }, 1_767_000_000_000));
  const rule = { def: { name: "local_rate_limit", mode: "ENFORCE", headers: { format, onAllowed: true } } } as unknown as RuntimeRule;
  const policyNames = limits.length === 1 ? ["local_rate_limit"] : limits.map((_, i) => `local_rate_limit.${i}`);
  return { rule, limits, policyNames, outcome: grant && grant.granted > 0 ? "allowed" : "limited", source: "isolate", grant };
}

const draft = (headers: Record<string, string> | undefined) => [headers?.["x-ratelimit-limit"], headers?.["x-ratelimit-remaining"], headers?.["x-ratelimit-reset"]];

describe("DRAFT_VERSION_03 fields", () => {
  it("states the bucket's max_tokens as the limit, as Envoy's local rate limit does, then the quota policy", () => {
    // token_bucket {max_tokens: 100, tokens_per_fill: 10, fill_interval: 1s}, one request in.
    expect(draft(allowedHeaders([decision("DRAFT_VERSION_03", [{ requests: 10, windowMs: 1_000, burst: 100 }], 1)]))).toEqual(["100, 10;w=1", "99", "1"]);
    // A RateLimitPolicy limit of 10/s with a burst of 20: the limit is never below what remains.
    expect(draft(allowedHeaders([decision("DRAFT_VERSION_03", [{ requests: 10, windowMs: 1_000, burst: 20 }], 1)]))).toEqual(["20, 10;w=1", "19", "1"]);
  });

  it("states a fill interval that is not whole seconds over whole seconds, never as 0", () => {
    // max_tokens 5, 1 per 1.5 s: w is the interval rounded up (2 s), q what refills in it, whole (1).
    expect(draft(allowedHeaders([decision("DRAFT_VERSION_03", [{ requests: 1, windowMs: 1_500, burst: 5 }], 1)]))).toEqual(["5, 1;w=2", "4", "2"]);
    // 3 per 2.5 s → 3 per 3 s; 2 per 500 ms → 4 per 1 s; 1 per 50 ms → 20 per 1 s.
    expect(draft(allowedHeaders([decision("DRAFT_VERSION_03", [{ requests: 3, windowMs: 2_500, burst: 3 }], 1)]))[0]).toBe("3, 3;w=3");
    expect(draft(allowedHeaders([decision("DRAFT_VERSION_03", [{ requests: 2, windowMs: 500, burst: 3 }], 1)]))[0]).toBe("3, 4;w=1");
    expect(draft(allowedHeaders([decision("DRAFT_VERSION_03", [{ requests: 1, windowMs: 50, burst: 1 }], 1)]))[0]).toBe("1, 20;w=1");
    // And on the 429.
    const refused = decision("DRAFT_VERSION_03", [{ requests: 1, windowMs: 1_500, burst: 1 }], 2);
    expect(draft(limitedHeaders([refused], [refused]))).toEqual(["1, 1;w=2", "0", "2"]);
  });

  it("states the limit closest to exhaustion first, every limit after it", () => {
    const d = decision("DRAFT_VERSION_03", [{ requests: 10, windowMs: 1_000, burst: 20 }, { requests: 100, windowMs: 3_600_000, burst: 5 }], 1);
    expect(draft(allowedHeaders([d]))).toEqual(["5, 10;w=1, 100;w=3600", "4", "36"]);
  });
});

describe("IETF fields", () => {
  it("states each limit's quota over whole seconds, never as 0", () => {
    const h = allowedHeaders([decision("IETF", [{ requests: 1, windowMs: 1_500, burst: 5 }, { requests: 10, windowMs: 60_000, burst: 10 }], 1)]);
    expect(h?.["ratelimit-policy"]).toBe('"local_rate_limit.0";q=1;w=2, "local_rate_limit.1";q=10;w=60');
    expect(h?.ratelimit).toBe('"local_rate_limit.0";r=4;t=2, "local_rate_limit.1";r=9;t=6');
  });
});
