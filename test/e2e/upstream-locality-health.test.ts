/**
 * Multi-cloud locality failover and active health checks end to end.
 *
 * `wrangler dev` gives every request the same placeholder request.cf
 * (colo DFW, Austin, US), so the GatewayConfig locality rule for DFW is
 * what makes the AWS origins "near" here; unit tests cover other
 * locations (test/unit/upstream/forwarding.test.ts). Health checks run
 * from the UpstreamHealth Durable Object's alarm and reach the gateway's
 * isolate through it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type Gateway } from "../helpers/gateway.ts";
import { echoAs, failWith, startOrigin, type Origin } from "../helpers/origin.ts";
import { send } from "../helpers/http.ts";
import { routedService } from "../helpers/istio-yaml.ts";

let gw: Gateway;
const o: Record<string, Origin> = {};

const config = () => `
apiVersion: isthmus.dev/v1alpha1
kind: GatewayConfig
metadata: {name: isthmus}
spec:
  healthSyncInterval: 500ms
  locality:
    rules:
    - {match: {colos: [FRA, AMS]}, locality: gcp/europe-west3/a}
    - {match: {colos: [DFW, IAH]}, locality: aws/us-east-1/us-east-1a}
  healthChecks:
  - {host: checked.edge.internal, path: /healthz, interval: 1s, timeout: 500ms, unhealthyThreshold: 2, healthyThreshold: 2}
---
${routedService({
  hosts: "shop.example.com",
  name: "shop",
  namespace: "edge",
  endpoints: [
    { port: o.aws1!.port, locality: "aws/us-east-1/us-east-1a" },
    { port: o.aws2!.port, locality: "aws/us-east-1/us-east-1a" },
    { port: o.gcp!.port, locality: "gcp/us-central1/a" },
  ],
})}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop, namespace: edge}
spec:
  host: shop.edge.internal
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, interval: 250ms, baseEjectionTime: 2s, maxEjectionPercent: 100}
---
${routedService({ hosts: "checked.example.com", name: "checked", namespace: "edge", endpoints: [o.c1!.port, o.c2!.port, o.c3!.port] })}
`;

/** Sends `n` requests, 4 at a time, and returns who answered each (or the status). */
async function load(host: string, n: number): Promise<string[]> {
  const out: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next++ < n) {
      const res = await send(gw.url, "/", { host });
      out.push(res.status === 200 ? (res.headers["x-origin"] ?? "?") : `status-${res.status}`);
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  return out;
}

const count = (list: string[]) => list.reduce<Record<string, number>>((acc, k) => ((acc[k] = (acc[k] ?? 0) + 1), acc), {});

/** Polls until `done` holds for a batch of requests, up to `ms`. */
async function until(host: string, ms: number, done: (batch: string[]) => boolean): Promise<string[]> {
  const deadline = Date.now() + ms;
  let batch: string[] = [];
  while (Date.now() < deadline) {
    batch = await load(host, 12);
    if (done(batch)) return batch;
    await new Promise((r) => setTimeout(r, 100));
  }
  return batch;
}

beforeAll(async () => {
  for (const name of ["aws1", "aws2", "gcp", "c1", "c2", "c3"]) o[name] = await startOrigin(name);
  // c3 serves traffic but fails its health check.
  o.c3!.respond((req, res) => (req.url === "/healthz" ? failWith("c3", 503)(req, res) : echoAs("c3")(req, res)));
  gw = await startGateway(config());
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all(Object.values(o).map((origin) => origin.close()));
});

// First in the file: no request has reached the gateway's routes yet.
describe("active health checks before any traffic", () => {
  it("probes every checked endpoint from the start, and the gateway takes the failing one out before its first request", async () => {
    const checked = [o.c1!, o.c2!, o.c3!];
    const probed = () => checked.every((origin) => origin.received.some((r) => r.url === "/healthz"));
    const deadline = Date.now() + 15_000;
    while (!probed() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(probed()).toBe(true);
    expect(checked.flatMap((origin) => origin.received.filter((r) => r.url !== "/healthz"))).toEqual([]);
    let c3: string | undefined;
    while (c3 !== "failing" && Date.now() < deadline + 5_000) {
      const state = (await (await gw.admin("/upstreams")).json()) as { clusters: Record<string, { endpoints: { endpoint: string; healthCheck?: string }[] }> };
      c3 = state.clusters["outbound|80||checked.edge.internal"]?.endpoints.find((e) => e.endpoint === `127.0.0.1:${o.c3!.port}`)?.healthCheck;
      if (c3 !== "failing") await new Promise((r) => setTimeout(r, 300));
    }
    expect(c3).toBe("failing");
  }, 60_000);
});

describe("locality failover across clouds", () => {
  it("sends everything to the AWS zone the Cloudflare location maps to, none to GCP", async () => {
    const c = count(await load("shop.example.com", 200));
    expect(c.gcp).toBeUndefined();
    expect((c.aws1 ?? 0) + (c.aws2 ?? 0)).toBe(200);
    expect(c.aws1).toBeGreaterThan(40);
    expect(c.aws2).toBeGreaterThan(40);
  }, 60_000);

  it("moves traffic to the next priority (GCP) when the whole AWS zone fails, without failing requests, and back when it heals", async () => {
    await Promise.all([o.aws1!.refuse(), o.aws2!.refuse()]);
    // Each refused connection ejects its endpoint; the retry goes on, to GCP once the zone is empty.
    const during = await load("shop.example.com", 200);
    const failed = during.filter((r) => r.startsWith("status-"));
    expect(failed.length).toBeLessThanOrEqual(2);
    const c = count(await load("shop.example.com", 100));
    expect(c).toEqual({ gcp: 100 });

    await Promise.all([o.aws1!.accept(), o.aws2!.accept()]);
    // Both back: with one still ejected the zone's health is 70 and a batch of 12 is all AWS by chance 1.4% of
    // the time (the test then saw 30% GCP just after); an ejected endpoint takes no traffic, so both must answer.
    const healed = await until("shop.example.com", 15_000, (batch) => batch.every((r) => r === "aws1" || r === "aws2") && batch.includes("aws1") && batch.includes("aws2"));
    expect(healed.every((r) => r === "aws1" || r === "aws2")).toBe(true);
    const after = count(await load("shop.example.com", 100));
    expect(after.gcp).toBeUndefined();
  }, 60_000);

  it("spills part of the traffic to GCP while only half of the AWS zone is healthy (overprovisioning 1.4 → 70/30)", async () => {
    o.aws1!.respond(failWith("aws1", 503));
    try {
      // aws1 is ejected after its first 503 and re-ejected each time it comes back.
      const c = count(await load("shop.example.com", 400));
      const served = (c.aws2 ?? 0) + (c.gcp ?? 0);
      expect(c.gcp ?? 0).toBeGreaterThan(served * 0.18);
      expect(c.gcp ?? 0).toBeLessThan(served * 0.42);
    } finally {
      o.aws1!.respond(echoAs("aws1"));
    }
  }, 60_000);
});

describe("active health checks (Durable Object alarm)", () => {
  it("takes an endpoint failing its health check out of the pool, though it answers traffic", async () => {
    const out = await until("checked.example.com", 20_000, (batch) => !batch.includes("c3"));
    expect(out.includes("c3")).toBe(false);
    const c = count(await load("checked.example.com", 120));
    expect(c.c3).toBeUndefined();
    expect(c.c1).toBeGreaterThan(20);
    expect(c.c2).toBeGreaterThan(20);
    expect(o.c3!.received.some((r) => r.url === "/healthz")).toBe(true);
    const state = (await (await gw.admin("/upstreams")).json()) as { clusters: Record<string, { endpoints: { endpoint: string; healthCheck?: string }[] }> };
    const c3 = state.clusters["outbound|80||checked.edge.internal"]!.endpoints.find((e) => e.endpoint === `127.0.0.1:${o.c3!.port}`);
    expect(c3?.healthCheck).toBe("failing");
  }, 60_000);

  it("returns it once its health check passes again", async () => {
    o.c3!.respond(echoAs("c3"));
    const back = await until("checked.example.com", 20_000, (batch) => batch.includes("c3"));
    expect(back.includes("c3")).toBe(true);
  }, 60_000);
});
