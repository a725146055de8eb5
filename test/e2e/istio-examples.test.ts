/**
 * The Istio documentation's traffic-management examples, applied with
 * their YAML unchanged except for the served host names: request routing
 * by header, a 90/10 canary with a header override, a blue-green cutover,
 * A/B cohorts, and mirroring (the bookinfo and httpbin samples).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type Gateway } from "../helpers/gateway.ts";
import { startOrigin, type Origin } from "../helpers/origin.ts";
import { send } from "../helpers/http.ts";

let gw: Gateway;
let reviews: Record<"v1" | "v2" | "v3", Origin>;
let httpbin: Record<"v1" | "v2", Origin>;

/** The cluster side: services and subsets, as the bookinfo and httpbin samples define them. */
const services = () => `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: ${reviews.v1.port}}, labels: {app: reviews, version: v1}}
  - {address: 127.0.0.1, ports: {http: ${reviews.v2.port}}, labels: {app: reviews, version: v2}}
  - {address: 127.0.0.1, ports: {http: ${reviews.v3.port}}, labels: {app: reviews, version: v3}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: RANDOM
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
  - name: v3
    labels:
      version: v3
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin}
spec:
  hosts: [httpbin.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8000, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: ${httpbin.v1.port}}, labels: {app: httpbin, version: v1}}
  - {address: 127.0.0.1, ports: {http: ${httpbin.v2.port}}, labels: {app: httpbin, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
    - httpbin.example.com
  http:
  - route:
    - destination:
        host: httpbin
        subset: v1
      weight: 100
    mirror:
      host: httpbin
      subset: v2
    mirrorPercentage:
      value: 100.0
`;

/** virtual-service-reviews-test-v2 with the 90-10 split as the default: a canary with a header override. */
const canary = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews.example.com
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 90
    - destination:
        host: reviews
        subset: v2
      weight: 10
`;

/** virtual-service-all-v1 for reviews: everything on the blue version. */
const blue = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews.example.com
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
`;

/** virtual-service-reviews-v3: everything on the green version. */
const green = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews.example.com
  http:
  - route:
    - destination:
        host: reviews
        subset: v3
`;

/**
 * virtual-service-reviews-50-v3 plus the Isthmus sticky-cohort annotation
 * (users stay in their variant), and the canary blog's cookie-based rule
 * sending company users to v2.
 */
const abTest = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  annotations:
    isthmus.dev/sticky-cohort: "cookie:user"
spec:
  hosts:
    - reviews.example.com
  http:
  - match:
    - headers:
        cookie:
          regex: "^(.*?;)?(email=[^;]*@some-company-name.com)(;.*)?$"
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 50
    - destination:
        host: reviews
        subset: v3
      weight: 50
`;

const who = async (headers: Record<string, string> = {}) => (await send(gw.url, "/reviews/0", { host: "reviews.example.com", headers })).headers["x-origin"];

beforeAll(async () => {
  const [r1, r2, r3, h1, h2] = await Promise.all(["reviews-v1", "reviews-v2", "reviews-v3", "httpbin-v1", "httpbin-v2"].map((n) => startOrigin(n)));
  reviews = { v1: r1 as Origin, v2: r2 as Origin, v3: r3 as Origin };
  httpbin = { v1: h1 as Origin, v2: h2 as Origin };
  gw = await startGateway(`${services()}---${canary}`);
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([...Object.values(reviews ?? {}), ...Object.values(httpbin ?? {})].map((o) => o.close()));
});

describe("canary: 90/10 with a header override (request routing + traffic shifting tasks)", () => {
  it("always sends end-user jason to v2", async () => {
    for (let i = 0; i < 20; i++) expect(await who({ "end-user": "jason" })).toBe("reviews-v2");
  });

  it("splits everyone else 90/10 within ±5%", async () => {
    const counts: Record<string, number> = {};
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next++ < 1000) {
          const o = (await who()) ?? "none";
          counts[o] = (counts[o] ?? 0) + 1;
        }
      }),
    );
    expect(Math.abs((counts["reviews-v1"] ?? 0) / 1000 - 0.9)).toBeLessThanOrEqual(0.05);
    expect(Math.abs((counts["reviews-v2"] ?? 0) / 1000 - 0.1)).toBeLessThanOrEqual(0.05);
    expect(counts["reviews-v3"]).toBeUndefined();
  });
});

describe("blue-green cutover", () => {
  it("moves all traffic from blue to green at once, with no failed request", async () => {
    await gw.reconfigure(`${services()}---${blue}`);
    for (let i = 0; i < 10; i++) expect(await who()).toBe("reviews-v1");
    const seen: string[] = [];
    const statuses: number[] = [];
    let stop = false;
    const traffic = (async () => {
      while (!stop) {
        const res = await send(gw.url, "/reviews/0", { host: "reviews.example.com" });
        statuses.push(res.status);
        seen.push(res.headers["x-origin"] ?? "");
      }
    })();
    await gw.reconfigure(`${services()}---${green}`);
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await traffic;
    expect(statuses.every((s) => s === 200)).toBe(true);
    // Once green appears, blue never comes back.
    const firstGreen = seen.indexOf("reviews-v3");
    expect(firstGreen).toBeGreaterThanOrEqual(0);
    expect(seen.slice(firstGreen).every((o) => o === "reviews-v3")).toBe(true);
    for (let i = 0; i < 10; i++) expect(await who()).toBe("reviews-v3");
  });
});

describe("A/B test with cohorts", () => {
  it("keeps each user in one variant, splits users between A and B, and routes company users by cookie", async () => {
    await gw.reconfigure(`${services()}---${abTest}`);
    const variants: string[] = [];
    for (let u = 0; u < 30; u++) {
      const seen = new Set<string>();
      for (let i = 0; i < 3; i++) seen.add((await who({ cookie: `theme=dark; user=u${u}` })) ?? "");
      expect(seen.size).toBe(1);
      variants.push([...seen][0] as string);
    }
    expect(variants.filter((v) => v === "reviews-v1").length).toBeGreaterThan(3);
    expect(variants.filter((v) => v === "reviews-v3").length).toBeGreaterThan(3);
    expect(await who({ cookie: "email=ann@some-company-name.com; user=u1" })).toBe("reviews-v2");
  });
});

describe("mirroring (httpbin)", () => {
  it("serves from v1 and mirrors every request to v2", async () => {
    const before = httpbin.v2.received.length;
    for (let i = 0; i < 5; i++) {
      const res = await send(gw.url, `/headers?i=${i}`, { host: "httpbin.example.com" });
      expect(res.headers["x-origin"]).toBe("httpbin-v1");
    }
    const deadline = Date.now() + 5_000;
    while (httpbin.v2.received.length < before + 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(httpbin.v2.received.slice(before).map((r) => r.url).sort()).toEqual([0, 1, 2, 3, 4].map((i) => `/headers?i=${i}`));
  });
});
