/**
 * The UpstreamHealth Durable Object shares ejections between isolates.
 * Two UpstreamState objects stand for two isolates; they talk to the real
 * Durable Object (SQLite-backed, through RPC) as the gateway does.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { ClusterDef, Snapshot } from "../../../src/config/snapshot.ts";
import { UpstreamState, type HealthExchange } from "../../../src/upstream/state.ts";

const cluster: ClusterDef = {
  name: "outbound|80||app.shop.internal",
  service: "app.shop.internal",
  source: "ServiceEntry/shop/app",
  namespace: "shop",
  port: 80,
  scheme: "http",
  endpoints: ["a", "b", "c", "d"].map((n) => ({ address: `${n}.internal`, port: 80, labels: {}, weight: 1 })),
  loadBalancer: "LEAST_REQUEST",
  outlierDetection: {
    consecutive5xxErrors: 2,
    consecutiveGatewayErrors: 0,
    splitExternalLocalOriginErrors: false,
    consecutiveLocalOriginFailures: 5,
    intervalMs: 100,
    baseEjectionTimeMs: 1_000,
    maxEjectionTimeMs: 300_000,
    maxEjectionPercent: 25,
  },
  panicThreshold: 0,
};

const snapshot = { version: "test", settings: { healthSyncMs: 500 }, clusters: { [cluster.name]: cluster } } as unknown as Snapshot;

const endpoint = (i: number) => cluster.endpoints[i]!;

describe("ejections shared through the Durable Object", () => {
  it("reaches another isolate on its next exchange, and ends when the ejection time is over", async () => {
    const pendingA: Promise<unknown>[] = [];
    const pendingB: Promise<unknown>[] = [];
    const exchange: HealthExchange = { sync: (request) => env.UPSTREAM_HEALTH.getByName("share").sync(request) };
    const a = new UpstreamState({ exchange, log: () => {} });
    const b = new UpstreamState({ exchange, log: () => {} });
    a.observe(cluster, endpoint(0), { type: "status", status: 503 }, (p) => pendingA.push(p), "test");
    const ejection = a.observe(cluster, endpoint(0), { type: "status", status: 503 }, (p) => pendingA.push(p), "test");
    expect(ejection?.endpoint).toBe("a.internal:80");
    await Promise.all(pendingA);
    expect(a.healthy(cluster, endpoint(0))).toBe(false);
    expect(b.healthy(cluster, endpoint(0))).toBe(true);
    b.maybeSync(snapshot, (p) => pendingB.push(p));
    await Promise.all(pendingB.splice(0));
    expect(b.healthy(cluster, endpoint(0))).toBe(false);
    expect(b.healthy(cluster, endpoint(1))).toBe(true);
    // base 1 s on a 100 ms sweep grid: back by ~1.1 s in both isolates.
    await scheduler.wait(1_250);
    expect(a.healthy(cluster, endpoint(0))).toBe(true);
    expect(b.healthy(cluster, endpoint(0))).toBe(true);
    // The object's first exchange opens its SQLite storage: seconds on a loaded 2-core machine (it timed out at 5 s).
  }, 15_000);

  it("applies maxEjectionPercent across isolates", async () => {
    const exchange: HealthExchange = { sync: (request) => env.UPSTREAM_HEALTH.getByName("cap").sync(request) };
    const pending: Promise<unknown>[] = [];
    const a = new UpstreamState({ exchange, log: () => {} });
    const b = new UpstreamState({ exchange, log: () => {} });
    // 25% of 4 endpoints: one may be ejected. Isolate A ejects a; isolate B, not knowing yet, ejects b locally.
    for (let i = 0; i < 2; i++) a.observe(cluster, endpoint(0), { type: "status", status: 500 }, (p) => pending.push(p), "test");
    await Promise.all(pending.splice(0));
    for (let i = 0; i < 2; i++) b.observe(cluster, endpoint(1), { type: "status", status: 500 }, (p) => pending.push(p), "test");
    await Promise.all(pending.splice(0));
    // The object kept only the first; B learns about a, A never hears about b.
    a.maybeSync(snapshot, (p) => pending.push(p));
    await Promise.all(pending.splice(0));
    expect(b.healthy(cluster, endpoint(0))).toBe(false);
    expect(a.healthy(cluster, endpoint(1))).toBe(true);
  });
});

describe("an isolate's own ejections echoed back by the Durable Object", () => {
  it("count once towards maxEjectionPercent", async () => {
    const half: ClusterDef = { ...cluster, name: "outbound|80||half.shop.internal", outlierDetection: { ...cluster.outlierDetection!, maxEjectionPercent: 50 } };
    const exchange: HealthExchange = { sync: (request) => env.UPSTREAM_HEALTH.getByName("echo").sync(request) };
    const pending: Promise<unknown>[] = [];
    const a = new UpstreamState({ exchange, log: () => {} });
    for (let i = 0; i < 2; i++) a.observe(half, endpoint(0), { type: "status", status: 500 }, (p) => pending.push(p), "test");
    await Promise.all(pending.splice(0));
    // The view now lists a's own ejection; a second one (2 of 4 = 50%) is still allowed.
    for (let i = 0; i < 2; i++) a.observe(half, endpoint(1), { type: "status", status: 500 }, (p) => pending.push(p), "test");
    await Promise.all(pending.splice(0));
    expect(a.healthy(half, endpoint(1))).toBe(false);
    for (let i = 0; i < 2; i++) a.observe(half, endpoint(2), { type: "status", status: 500 }, (p) => pending.push(p), "test");
    expect(a.healthy(half, endpoint(2))).toBe(true);
  });
});
