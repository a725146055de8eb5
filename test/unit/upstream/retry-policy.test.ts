/**
 * Retry decisions and backoff (semantics reference §1.9), and the
 * per-isolate circuit breaker (§2.4).
 */
import { describe, expect, it } from "vitest";
import type { RetryDef } from "../../../src/config/snapshot.ts";
import { ISTIO_DEFAULT_RETRY } from "../../../src/upstream/retry-on.ts";
import { backoffMs, excludedLevels, retriable, type AttemptOutcome } from "../../../src/upstream/retry-policy.ts";
import { ClusterLimits } from "../../../src/upstream/limits.ts";

const policy = (retryOn: string[], extra: Partial<RetryDef> = {}): RetryDef => ({ ...ISTIO_DEFAULT_RETRY, retryOn, ...extra });
const response = (status: number, headers: Record<string, string> = {}): AttemptOutcome => ({ type: "response", status, headers: new Headers(headers) });
const refused: AttemptOutcome = { type: "connect-failure" };
const perTry: AttemptOutcome = { type: "per-try-timeout" };

describe("retryOn", () => {
  it("Istio's default retries connection failures and gRPC UNAVAILABLE/CANCELLED, but not HTTP 503 (Istio >= 1.24)", () => {
    const p = ISTIO_DEFAULT_RETRY;
    expect(retriable(p, refused, "GET", false)).toBe(true);
    expect(retriable(p, response(503), "GET", false)).toBe(false);
    expect(retriable(p, response(500), "GET", false)).toBe(false);
    // gRPC is always POST: its statuses are retried only where non-idempotent methods are (the annotation).
    expect(retriable(p, response(200, { "grpc-status": "14" }), "POST", true)).toBe(true);
    expect(retriable(p, response(200, { "grpc-status": "1" }), "POST", true)).toBe(true);
    expect(retriable(p, response(200, { "grpc-status": "13" }), "POST", true)).toBe(false);
    expect(retriable(p, perTry, "GET", false)).toBe(false);
  });

  it("does not retry gRPC UNAVAILABLE without isthmus.dev/retry-non-idempotent: gRPC is POST, and the origin had the request", () => {
    const p = ISTIO_DEFAULT_RETRY;
    expect(retriable(p, response(200, { "grpc-status": "14" }), "POST", false)).toBe(false);
    expect(retriable(p, response(200, { "grpc-status": "1" }), "POST", false)).toBe(false);
    // A failure Cloudflare reports before the request reached the origin is retried for any method.
    expect(retriable(p, response(522, { server: "cloudflare" }), "POST", false)).toBe(true);
  });

  it("5xx covers 5xx responses, connection failures and per-try timeouts", () => {
    const p = policy(["5xx"]);
    for (const o of [response(500), response(503), response(599), refused, perTry]) expect(retriable(p, o, "GET", false)).toBe(true);
    expect(retriable(p, response(404), "GET", false)).toBe(false);
  });

  it("gateway-error covers 502/503/504 only; retriable-4xx covers 409 only", () => {
    const gw = policy(["gateway-error"]);
    expect([500, 502, 503, 504].map((s) => retriable(gw, response(s), "GET", false))).toEqual([false, true, true, true]);
    const c4 = policy(["retriable-4xx"]);
    expect([400, 409, 429].map((s) => retriable(c4, response(s), "GET", false))).toEqual([false, true, false]);
  });

  it("retriable-status-codes retries the listed statuses; a listed 504 does not cover per-try timeouts (Envoy retries those as resets)", () => {
    const p = policy(["retriable-status-codes"], { statusCodes: [429, 504] });
    expect(retriable(p, response(429), "GET", false)).toBe(true);
    expect(retriable(p, response(504), "GET", false)).toBe(true);
    expect(retriable(p, response(503), "GET", false)).toBe(false);
    expect(retriable(p, perTry, "GET", false)).toBe(false);
    // Per-try timeouts are retried under reset, 5xx and gateway-error only.
    expect(["reset", "5xx", "gateway-error", "connect-failure", "reset-before-request"].map((t) => retriable(policy([t]), perTry, "GET", false))).toEqual([true, true, true, false, false]);
  });

  it("envoy-ratelimited retries a response carrying x-envoy-ratelimited", () => {
    const p = policy(["envoy-ratelimited"]);
    expect(retriable(p, response(429, { "x-envoy-ratelimited": "true" }), "GET", false)).toBe(true);
    expect(retriable(p, response(503, { "x-envoy-ratelimited": "true" }), "GET", false)).toBe(true);
    expect(retriable(p, response(429), "GET", false)).toBe(false);
  });

  it("never retries a response carrying x-envoy-ratelimited without envoy-ratelimited, whatever its status (Envoy's wouldRetryFromHeaders)", () => {
    const limited = (status: number) => response(status, { "x-envoy-ratelimited": "true" });
    expect(retriable(policy(["5xx"]), limited(503), "GET", false)).toBe(false);
    expect(retriable(policy(["gateway-error"]), limited(503), "GET", false)).toBe(false);
    expect(retriable(policy(["retriable-status-codes"], { statusCodes: [429, 503] }), limited(429), "GET", false)).toBe(false);
    expect(retriable(policy(["unavailable"]), response(200, { "x-envoy-ratelimited": "true", "grpc-status": "14" }), "GET", false)).toBe(false);
    // The same responses without the header are retried.
    expect(retriable(policy(["5xx"]), response(503), "GET", false)).toBe(true);
    expect(retriable(policy(["5xx", "envoy-ratelimited"]), limited(503), "GET", false)).toBe(true);
  });

  it("never matches what a Worker cannot observe: refused-stream, http3-post-connect-failure, retriable-headers", () => {
    const p = policy(["refused-stream", "http3-post-connect-failure", "retriable-headers"]);
    for (const o of [refused, perTry, response(503)]) expect(retriable(p, o, "GET", false)).toBe(false);
  });

  it("does not retry non-idempotent methods unless the request never reached the origin (or the route opts in)", () => {
    const p = policy(["5xx", "connect-failure"]);
    expect(retriable(p, refused, "POST", false)).toBe(false);
    expect(retriable(p, response(503), "PATCH", false)).toBe(false);
    expect(retriable(p, refused, "PUT", false)).toBe(true);
    expect(retriable(p, refused, "POST", true)).toBe(true);
    // Cloudflare's 522 (connection timed out) never reached the origin.
    expect(retriable(p, response(522, { server: "cloudflare" }), "POST", false)).toBe(true);
    expect(retriable(p, response(522), "POST", false)).toBe(false);
    expect(retriable(policy(["connect-failure"]), response(521, { server: "cloudflare" }), "GET", false)).toBe(true);
  });

  it("retries nothing with attempts: 0", () => {
    expect(retriable(policy(["5xx"], { attempts: 0 }), response(503), "GET", false)).toBe(false);
  });
});

describe("backoff", () => {
  it("is fully jittered in [0, (2^n − 1) × 25 ms), capped at 250 ms", () => {
    const p = ISTIO_DEFAULT_RETRY;
    expect(backoffMs(p, 1, () => 0)).toBe(0);
    expect(backoffMs(p, 1, () => 0.999)).toBe(24);
    expect(backoffMs(p, 2, () => 0.999)).toBe(74);
    expect(backoffMs(p, 3, () => 0.999)).toBe(174);
    expect(backoffMs(p, 4, () => 0.999)).toBe(250);
    expect(backoffMs(p, 10, () => 0.5)).toBe(250);
  });
});

describe("previous priorities (retryRemoteLocalities)", () => {
  it("leaves out the levels of the first two attempts from the third on", () => {
    expect([...excludedLevels([], 1)]).toEqual([]);
    expect([...excludedLevels([0], 2)]).toEqual([]);
    expect([...excludedLevels([0, 0], 3)]).toEqual([0]);
    expect([...excludedLevels([0, 0, 1], 4)].sort()).toEqual([0]);
    expect([...excludedLevels([0, 0, 1, 1], 5)].sort()).toEqual([0, 1]);
  });
});

describe("circuit breaker (per isolate)", () => {
  it("overflows past http2MaxRequests when no pending requests are allowed", async () => {
    const l = new ClusterLimits();
    const pool = { maxRequests: 2 };
    expect(await l.acquire(pool)).toBe("ok");
    expect(await l.acquire(pool)).toBe("ok");
    expect(await l.acquire(pool)).toBe("overflow");
    l.release();
    expect(await l.acquire(pool)).toBe("ok");
  });

  it("queues up to http1MaxPendingRequests, hands freed slots over in order, and times a waiter out", async () => {
    const l = new ClusterLimits();
    const pool = { maxRequests: 1, maxPendingRequests: 2 };
    expect(await l.acquire(pool)).toBe("ok");
    const first = l.acquire(pool);
    const timeout = new AbortController();
    const second = l.acquire(pool, timeout.signal);
    expect(await l.acquire(pool)).toBe("overflow");
    expect(l.snapshot()).toEqual({ active: 1, pending: 2, retries: 0 });
    timeout.abort();
    expect(await second).toBe("timeout");
    l.release();
    expect(await first).toBe("ok");
    expect(l.snapshot()).toEqual({ active: 1, pending: 0, retries: 0 });
  });

  it("allows maxRetries concurrent retries", () => {
    const l = new ClusterLimits();
    expect(l.tryRetry({ maxRetries: 1 }, undefined)).toBe(true);
    expect(l.tryRetry({ maxRetries: 1 }, undefined)).toBe(false);
    l.endRetry();
    expect(l.tryRetry({ maxRetries: 1 }, undefined)).toBe(true);
  });

  it("with a retry budget allows max(minRetryConcurrency, percent of active requests) retries", async () => {
    const l = new ClusterLimits();
    for (let i = 0; i < 20; i++) await l.acquire(undefined);
    const budget = { percent: 20, minRetryConcurrency: 3 };
    const allowed = Array.from({ length: 6 }, () => l.tryRetry(undefined, budget)).filter(Boolean).length;
    expect(allowed).toBe(4);
    const small = new ClusterLimits();
    await small.acquire(undefined);
    expect(Array.from({ length: 5 }, () => small.tryRetry(undefined, budget)).filter(Boolean).length).toBe(3);
  });
});
