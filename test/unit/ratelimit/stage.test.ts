/**
 * Stage 8 through the whole pipeline (runPipeline) with the real
 * RateLimiter Durable Object binding: what the client gets (status, body,
 * headers), what the request record says, and how many object calls were
 * made. The binding is wrapped only to count calls; every call reaches the
 * real object.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { runPipeline, type PipelineDeps } from "../../../src/gateway/pipeline.ts";
import { rateLimitEnv, type RateLimiterNamespace } from "../../../src/ratelimit/decide.ts";
import { Balancer } from "../../../src/routing/balancer.ts";
import { hydrate, type RuntimeSnapshot } from "../../../src/routing/hydrate.ts";
import { doc, snapshotOf, virtualService } from "../support.ts";

afterEach(() => vi.restoreAllMocks());

let policies = 0;

/** A gateway whose routes answer directly, plus one RateLimitPolicy (a fresh name, so fresh buckets). */
async function gateway(spec: Record<string, unknown>, namespace = "istio-system") {
  const name = `p${++policies}`;
  const runtime = hydrate(
    await snapshotOf(
      virtualService(
        "v",
        ["api.test"],
        [
          { name: "orders", match: [{ uri: { prefix: "/orders" } }], directResponse: { status: 200, body: { string: "orders" } } },
          { name: "rest", directResponse: { status: 200, body: { string: "ok" } } },
        ],
        {},
        "istio-system",
      ),
      doc("RateLimitPolicy", name, spec, namespace),
    ),
  );
  return { runtime, ruleId: (rule: string) => `${namespace}/${name}/${rule}` };
}

/** One isolate's dependencies; `binding: null` for a Worker without the RATE_LIMITER binding. */
function isolate(binding: RateLimiterNamespace | null = env.RATE_LIMITER) {
  const calls: string[] = [];
  const objects: RateLimiterNamespace | undefined = binding
    ? {
        getByName: (name) => {
          calls.push(name);
          return binding.getByName(name);
        },
      }
    : undefined;
  const deps: PipelineDeps = {
    fetch: () => Promise.reject(new Error("no upstream in these tests")),
    balancer: new Balancer(() => 0),
    random: () => 0,
    requestId: () => "rid",
    now: () => Date.now(),
    sleep: (ms) => scheduler.wait(ms),
    rateLimits: rateLimitEnv(objects),
  };
  return { deps, calls };
}

async function get(runtime: RuntimeSnapshot, deps: PipelineDeps, path = "/", headers: Record<string, string> = {}, method = "GET") {
  const { response, record } = await runPipeline(new Request(`http://api.test${path}`, { headers: { "cf-connecting-ip": "203.0.113.7", ...headers }, method }), runtime, deps);
  return { status: response.status, body: await response.text(), headers: Object.fromEntries(response.headers), record };
}

/** A generous decision timeout: these tests are about decisions, not about a cold object in a busy test runner. */
const perUser = (extra: Record<string, unknown> = {}) => ({ name: "per-user", key: ["request.headers[x-user]"], limits: [{ requests: 3, unit: "day" }], decisionTimeout: "10s", ...extra });

describe("requests no route takes", () => {
  it("count towards a gateway-wide limit before their 404, as Envoy's rate limit filters run before its router (a scanner is limited too)", async () => {
    const { runtime } = await gateway({
      rules: [
        { name: "per-ip", scope: "LOCAL", key: ["remote.ip"], limits: [{ requests: 2, unit: "minute" }] },
        { name: "orders-only", scope: "LOCAL", match: { routes: ["orders"] }, limits: [{ requests: 1, unit: "minute" }] },
      ],
    });
    const { deps } = isolate(null);
    const unknown = async () => {
      const { response, record } = await runPipeline(new Request("http://no-such-host.test/wp-login.php", { headers: { "cf-connecting-ip": "203.0.113.9" } }), runtime, deps);
      return [response.status, record.flags.join(",")];
    };
    // The route-scoped rule never sees them; the per-IP one refuses the third with 429 (flag RL, not NR).
    expect([await unknown(), await unknown(), await unknown()]).toEqual([[404, "NR"], [404, "NR"], [429, "RL"]]);
  });
});

describe("rate limiting in the pipeline", () => {
  it("admits exactly the limit, then answers Envoy's 429 with Retry-After and the IETF fields", async () => {
    const { runtime } = await gateway({ rules: [perUser()] });
    const { deps } = isolate();
    const replies = [];
    for (let i = 0; i < 5; i++) replies.push(await get(runtime, deps, "/", { "x-user": "alice" }));
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 429, 429]);
    const limited = replies[3]!;
    expect(limited.body).toBe("local_rate_limited");
    expect(limited.record.flags).toEqual(["RL"]);
    expect(limited.headers["x-envoy-ratelimited"]).toBe("true");
    expect(limited.headers["ratelimit-policy"]).toBe('"per-user";q=3;w=86400');
    expect(limited.headers.ratelimit).toMatch(/^"per-user";r=0;t=(\d+)$/);
    // One token every 86400/3 s = 28800 s.
    const retry = Number(limited.headers["retry-after"]);
    expect(retry).toBeGreaterThan(28_700);
    expect(retry).toBeLessThanOrEqual(28_800);
    expect(Number(/t=(\d+)/.exec(limited.headers.ratelimit ?? "")?.[1])).toBe(retry);
    // Admitted responses carry no fields unless the policy asks (onAllowed).
    expect(replies[0]!.headers["ratelimit"]).toBeUndefined();
    expect(replies[0]!.record.rateLimit).toEqual([{ rule: expect.stringMatching(/\/per-user$/), scope: "GLOBAL", mode: "ENFORCE", outcome: "allowed", source: "object", remaining: 2 }]);
    expect(limited.record.rateLimit).toEqual([expect.objectContaining({ outcome: "limited", remaining: 0 })]);
  });

  it("counts each key on its own, skips requests without the key by default, and shares one bucket under missingKey SHARED", async () => {
    const { runtime } = await gateway({ rules: [perUser({ limits: [{ requests: 2, unit: "day" }] })] });
    const { deps } = isolate();
    const statuses = async (headers: Record<string, string>, n: number) => {
      const out = [];
      for (let i = 0; i < n; i++) out.push((await get(runtime, deps, "/", headers)).status);
      return out;
    };
    expect(await statuses({ "x-user": "alice" }, 3)).toEqual([200, 200, 429]);
    expect(await statuses({ "x-user": "bob" }, 3)).toEqual([200, 200, 429]);
    expect(await statuses({ "x-user": "Alice" }, 1)).toEqual([200]);
    const skipped = await get(runtime, deps, "/");
    expect([skipped.status, skipped.record.rateLimit]).toEqual([200, undefined]);
    expect(await statuses({}, 4)).toEqual([200, 200, 200, 200]);

    const shared = await gateway({ rules: [perUser({ missingKey: "SHARED", limits: [{ requests: 2, unit: "day" }] })] });
    const out = [];
    for (let i = 0; i < 3; i++) out.push((await get(shared.runtime, deps, "/")).status);
    expect(out).toEqual([200, 200, 429]);
    expect((await get(shared.runtime, deps, "/", { "x-user": "carol" })).status).toBe(200);
  });

  it("shadow mode never refuses, but records and logs what it would have refused", async () => {
    const { runtime } = await gateway({ rules: [perUser({ mode: "SHADOW", limits: [{ requests: 1, unit: "day" }] })] });
    const { deps } = isolate();
    const log = vi.spyOn(console, "log");
    const first = await get(runtime, deps, "/orders/1", { "x-user": "dave" });
    const second = await get(runtime, deps, "/orders/1", { "x-user": "dave" });
    expect([first.status, second.status, second.body]).toEqual([200, 200, "orders"]);
    expect(second.headers["retry-after"]).toBeUndefined();
    expect(first.record.rateLimit?.[0]?.outcome).toBe("allowed");
    expect(second.record.rateLimit?.[0]).toMatchObject({ mode: "SHADOW", outcome: "shadow-limited" });
    const lines = log.mock.calls.map((c) => String(c[0])).filter((l) => l.includes("rate limit (shadow)"));
    expect(lines.map((l) => JSON.parse(l))).toEqual([{ message: "isthmus: rate limit (shadow)", rule: expect.stringMatching(/\/per-user$/), outcome: "shadow-limited", host: "api.test", path: "/orders/1" }]);
  });

  it("decides LOCAL rules in the isolate, without a Durable Object call", async () => {
    const { runtime } = await gateway({ rules: [perUser({ scope: "LOCAL", limits: [{ requests: 2, unit: "minute" }] })] });
    const { deps, calls } = isolate();
    const out = [];
    for (let i = 0; i < 3; i++) out.push(await get(runtime, deps, "/", { "x-user": "erin" }));
    expect(out.map((r) => r.status)).toEqual([200, 200, 429]);
    expect(out[2]!.record.rateLimit).toEqual([expect.objectContaining({ scope: "LOCAL", outcome: "limited", source: "isolate" })]);
    expect(calls).toEqual([]);
    // Another isolate has its own buckets.
    expect((await get(runtime, isolate().deps, "/", { "x-user": "erin" })).status).toBe(200);
  });

  it("asks no Durable Object once an enforced LOCAL rule refused, and lets the strictest of several limits decide", async () => {
    const { runtime } = await gateway({
      rules: [
        { name: "local", scope: "LOCAL", limits: [{ requests: 4, unit: "day" }] },
        { name: "global", key: ["request.headers[x-user]"], limits: [{ requests: 10, unit: "second" }, { requests: 2, unit: "day" }], decisionTimeout: "10s" },
      ],
    });
    const { deps, calls } = isolate();
    const out: Awaited<ReturnType<typeof get>>[] = [];
    for (let i = 0; i < 5; i++) out.push(await get(runtime, deps, "/", { "x-user": "frank" }));
    expect(out.map((r) => r.status)).toEqual([200, 200, 429, 429, 429]);
    // The global rule refused the third (its daily limit); the isolate remembers that refusal for the
    // fourth, until the object's next token; the local rule refused the fifth, which reached no object.
    const outcomes = (i: number) => out[i]!.record.rateLimit?.map((r) => [r.rule.split("/")[2], r.outcome, r.source]);
    expect(outcomes(2)).toEqual([["local", "allowed", "isolate"], ["global", "limited", "object"]]);
    expect(outcomes(3)).toEqual([["local", "allowed", "isolate"], ["global", "limited", "cache"]]);
    expect(outcomes(4)).toEqual([["local", "limited", "isolate"]]);
    expect(calls.length).toBe(3);
    expect(Number(out[3]!.headers["retry-after"])).toBeGreaterThan(43_000);
    expect(out[2]!.headers["ratelimit-policy"]).toBe('"local";q=4;w=86400, "global.0";q=10;w=1, "global.1";q=2;w=86400');
    expect(out[2]!.headers.ratelimit).toMatch(/^"local";r=1;t=\d+, "global.0";r=\d+;t=\d, "global.1";r=0;t=\d+$/);
  });

  it("applies only to requests its match and when select", async () => {
    const { runtime } = await gateway({
      rules: [
        {
          name: "writes",
          match: { routes: ["orders"], methods: ["POST"], paths: ["/orders/*"], notHosts: ["internal.test"] },
          when: [{ key: "request.headers[x-plan]", notValues: ["unlimited"] }],
          limits: [{ requests: 1, unit: "day" }],
          decisionTimeout: "10s",
        },
      ],
    });
    const { deps } = isolate();
    const post = (path: string, headers: Record<string, string> = {}) => get(runtime, deps, path, headers, "POST");
    expect((await post("/orders/1")).status).toBe(200);
    expect((await post("/orders/2")).status).toBe(429);
    expect((await get(runtime, deps, "/orders/3")).status).toBe(200);
    expect((await post("/other")).status).toBe(200);
    expect((await post("/orders/4", { "x-plan": "unlimited" })).status).toBe(200);
  });

  it("gives per-key overrides their own limits (tenant tiers)", async () => {
    const { runtime } = await gateway({
      rules: [
        {
          name: "tenants",
          key: ["request.headers[x-tenant]"],
          limits: [{ requests: 1, unit: "day" }],
          decisionTimeout: "10s",
          overrides: [{ values: ["gold-*", "acme"], limits: [{ requests: 3, unit: "day" }] }],
        },
      ],
    });
    const { deps } = isolate();
    const run = async (tenant: string) => {
      const out = [];
      for (let i = 0; i < 4; i++) out.push((await get(runtime, deps, "/", { "x-tenant": tenant })).status);
      return out;
    };
    expect(await run("gold-1")).toEqual([200, 200, 200, 429]);
    expect(await run("acme")).toEqual([200, 200, 200, 429]);
    expect(await run("free")).toEqual([200, 429, 429, 429]);
  });

  it("adds the quota fields to admitted responses when the policy asks, in the IETF or Envoy's draft-03 form", async () => {
    const ietf = await gateway({ responseHeaders: { onAllowed: true }, rules: [perUser({ limits: [{ requests: 5, unit: "minute" }] })] });
    const { deps } = isolate();
    const ok = await get(ietf.runtime, deps, "/", { "x-user": "gina" });
    expect(ok.status).toBe(200);
    expect(ok.headers["ratelimit-policy"]).toBe('"per-user";q=5;w=60');
    expect(ok.headers.ratelimit).toBe('"per-user";r=4;t=12');

    const draft = await gateway({ responseHeaders: { format: "DRAFT_VERSION_03", onAllowed: true }, rules: [perUser({ limits: [{ requests: 5, unit: "minute" }, { requests: 100, unit: "hour" }] })] });
    const d = await get(draft.runtime, deps, "/", { "x-user": "gina" });
    expect([d.headers["x-ratelimit-limit"], d.headers["x-ratelimit-remaining"], d.headers["x-ratelimit-reset"]]).toEqual(["5, 5;w=60, 100;w=3600", "4", "12"]);
    expect(d.headers["ratelimit"]).toBeUndefined();

    const none = await gateway({ responseHeaders: { format: "NONE" }, rules: [perUser({ limits: [{ requests: 1, unit: "minute" }] })] });
    await get(none.runtime, deps, "/", { "x-user": "gina" });
    const refused = await get(none.runtime, deps, "/", { "x-user": "gina" });
    expect(refused.status).toBe(429);
    expect(Object.keys(refused.headers).filter((h) => h.includes("ratelimit") && h !== "x-envoy-ratelimited")).toEqual([]);
    expect(refused.headers["retry-after"]).toBe("60");
  });

  it("refuses everything for requests: 0, without asking an object", async () => {
    const { runtime } = await gateway({ rules: [{ name: "closed", match: { paths: ["/orders*"] }, limits: [{ requests: 0, unit: "hour" }] }] });
    const { deps, calls } = isolate();
    const r = await get(runtime, deps, "/orders");
    expect([r.status, r.headers["retry-after"], r.record.rateLimit?.[0]?.source]).toEqual([429, "3600", "config"]);
    expect((await get(runtime, deps, "/")).status).toBe(200);
    expect(calls).toEqual([]);
  });

  it("fails open, or closed with Envoy's 500 RLSE, when the Worker has no RATE_LIMITER binding", async () => {
    const open = await gateway({ rules: [perUser()] });
    const closed = await gateway({ rules: [perUser({ failureMode: "CLOSED" })] });
    const { deps } = isolate(null);
    const error = vi.spyOn(console, "error").mockImplementation(() => {});
    const a = await get(open.runtime, deps, "/", { "x-user": "hank" });
    expect([a.status, a.record.rateLimit?.[0]?.outcome]).toEqual([200, "failed-open"]);
    const b = await get(closed.runtime, deps, "/", { "x-user": "hank" });
    expect([b.status, b.body, b.record.flags, b.record.rateLimit?.[0]?.outcome]).toEqual([500, "", ["RLSE"], "failed-closed"]);
    expect(error.mock.calls.map((c) => JSON.parse(String(c[0])).error)).toEqual([
      "the Worker has no RATE_LIMITER Durable Object binding",
      "the Worker has no RATE_LIMITER Durable Object binding",
    ]);
  });

  it("in lease mode makes one object call per lease, not per request", async () => {
    const { runtime } = await gateway({ rules: [perUser({ limits: [{ requests: 1000, unit: "minute" }], lease: { size: 10 } })] });
    const { deps, calls } = isolate();
    const out = [];
    for (let i = 0; i < 100; i++) out.push(await get(runtime, deps, "/", { "x-user": "ivy" }));
    expect(out.every((r) => r.status === 200)).toBe(true);
    expect(calls.length).toBe(10);
    expect(out.map((r) => r.record.rateLimit?.[0]?.source).filter((s) => s === "lease").length).toBe(90);
    // What the admin /status endpoint reports for this isolate.
    expect(deps.rateLimits?.decisions).toEqual({ isolate: 0, object: 10, lease: 90, cache: 0, config: 0 });
  });
});
