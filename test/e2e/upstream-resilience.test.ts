/**
 * Upstream resilience end to end (issue 8): the real gateway (`isthmus
 * dev`) in front of real Node origins that fail on cue — refusing
 * connections, resetting them, answering 500, hanging, recovering — and
 * what clients see: retries (Istio's default and configured), outlier
 * ejection and its timing, circuit breaker overflow, timeouts, and
 * consistent hashing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type Gateway } from "../helpers/gateway.ts";
import { echoAs, failWith, hang, resetConnection, startOrigin, type Origin, type OriginHandler } from "../helpers/origin.ts";
import { send, type Reply } from "../helpers/http.ts";
import { request as httpRequest } from "node:http";
import { serviceEntry, virtualService } from "../helpers/istio-yaml.ts";

let gw: Gateway;
const o: Record<string, Origin> = {};
const NAMES = ["r1", "r2", "r3", "e1", "e2", "e3", "p1", "p2", "p3", "t1", "t2", "t3", "slow", "hang1", "hang2", "ok1", "h1", "h2", "h3", "d1", "d2", "d3", "trickle"] as const;

/** The ServiceEntry `<name>.edge.internal`, with one endpoint per origin named in `origins`. */
const service = (name: string, origins: string[]) => serviceEntry({ name, namespace: "edge", endpoints: origins.map((n) => o[n]!.port) });

/** The VirtualService `name` routing `host` to `<to>.edge.internal`, with more fields of its one route. */
const route = (name: string, host: string, to: string, routeFields?: Record<string, string>, annotations?: Record<string, string>) =>
  virtualService({ name, namespace: "edge", hosts: host, destination: `${to}.edge.internal`, routeFields, annotations });

const destinationRule = (service: string, policy: string) => `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ${service}, namespace: edge}
spec:
  host: ${service}.edge.internal
  trafficPolicy:
${policy}
`;

const config = () =>
  [
    service("refusing", ["r1", "r2", "r3"]),
    route("refusing", "refusing.example.com", "refusing"),
    route("refusing-post", "post.example.com", "refusing", undefined, { "isthmus.dev/retry-non-idempotent": "true" }),
    destinationRule("refusing", "    loadBalancer: {simple: ROUND_ROBIN}"),

    service("ejecting", ["e1", "e2", "e3"]),
    route("ejecting", "ejecting.example.com", "ejecting", { retries: "{attempts: 2, retryOn: 5xx}" }),
    destinationRule("ejecting", "    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 50}"),

    service("plain", ["p1", "p2", "p3"]),
    route("plain", "plain.example.com", "plain"),

    service("defaults", ["d1", "d2", "d3"]),
    route("defaults", "defaults.example.com", "defaults"),
    destinationRule("defaults", "    outlierDetection: {}"),

    service("timed", ["t1", "t2", "t3"]),
    route("timed", "timed.example.com", "timed"),
    destinationRule("timed", "    outlierDetection: {consecutive5xxErrors: 2, interval: 250ms, baseEjectionTime: 2s, maxEjectionPercent: 50}"),

    service("slow", ["slow"]),
    route("slow", "slow.example.com", "slow"),
    destinationRule("slow", "    connectionPool: {http: {http2MaxRequests: 2}}"),

    service("hanging", ["hang1", "hang2"]),
    route("hanging", "hanging.example.com", "hanging", { timeout: "500ms", retries: "{attempts: 5, perTryTimeout: 150ms, retryOn: 5xx}" }),
    service("mixed", ["hang1", "ok1"]),
    route("route-timeout", "route-timeout.example.com", "mixed", { timeout: "300ms", retries: "{attempts: 0}" }),
    route("per-try", "per-try.example.com", "mixed", { retries: "{attempts: 1, perTryTimeout: 200ms, retryOn: 5xx}" }),
    destinationRule("mixed", "    loadBalancer: {simple: ROUND_ROBIN}"),
    service("uploads", ["ok1"]),
    route("upload-timeout", "upload-timeout.example.com", "uploads", { timeout: "300ms", retries: "{attempts: 0}" }),
    route("upload-per-try", "upload-per-try.example.com", "uploads", { retries: "{attempts: 1, perTryTimeout: 300ms, retryOn: 5xx}" }),
    service("upload-hanging", ["hang1"]),
    route("upload-hang", "upload-hang.example.com", "upload-hanging", { timeout: "300ms", retries: "{attempts: 0}" }),

    service("trickle", ["trickle"]),
    route("body-timeout", "body-timeout.example.com", "trickle", { timeout: "600ms", retries: "{attempts: 0}" }),
    service("held", ["trickle"]),
    route("held", "held.example.com", "held"),
    destinationRule("held", "    connectionPool: {http: {http2MaxRequests: 1}}"),

    service("hashed", ["h1", "h2", "h3"]),
    route("hashed", "hashed.example.com", "hashed"),
    destinationRule("hashed", "    loadBalancer: {consistentHash: {httpHeaderName: x-user}}"),
    route("cookie", "cookie.example.com", "hashed-cookie"),
    service("hashed-cookie", ["h1", "h2", "h3"]),
    destinationRule("hashed-cookie", "    loadBalancer: {consistentHash: {httpCookie: {name: affinity, path: /, ttl: 3600s}, maglev: {}}}"),
  ].join("\n---\n");

interface Outcome extends Reply {
  origin: string;
  ms: number;
}

/** Sends `n` requests for `host`, `concurrency` at a time. */
async function load(host: string, n: number, options: { concurrency?: number; method?: string; body?: string; headers?: (i: number) => Record<string, string> } = {}): Promise<Outcome[]> {
  const out: Outcome[] = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const started = Date.now();
      const res = await send(gw.url, "/", { host, method: options.method ?? "GET", ...(options.body !== undefined ? { body: options.body } : {}), headers: options.headers?.(i) ?? {} });
      out.push({ ...res, origin: res.headers["x-origin"] ?? `status-${res.status}`, ms: Date.now() - started });
    }
  };
  await Promise.all(Array.from({ length: options.concurrency ?? 8 }, worker));
  return out;
}

const share = (list: Outcome[], pred: (o: Outcome) => boolean) => list.filter(pred).length / list.length;

beforeAll(async () => {
  for (const name of NAMES) o[name] = await startOrigin(name);
  gw = await startGateway(config());
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all(Object.values(o).map((origin) => origin.close()));
});

describe("Istio's default retry policy (2 retries on connect-failure)", () => {
  it("keeps ≥ 99.9% of 1,000 requests succeeding while one of three endpoints refuses connections", async () => {
    await o.r2!.refuse();
    try {
      const results = await load("refusing.example.com", 1_000);
      expect(share(results, (r) => r.status === 200)).toBeGreaterThanOrEqual(0.999);
      expect(results.some((r) => r.origin === "r2")).toBe(false);
      // The retries really happened: r1 and r3 saw second attempts.
      const retried = [...o.r1!.received, ...o.r3!.received].filter((r) => r.headers["x-envoy-attempt-count"] === "2");
      expect(retried.length).toBeGreaterThan(100);
    } finally {
      await o.r2!.accept();
    }
  }, 120_000);

  it("also recovers from an endpoint that resets connections", async () => {
    o.r3!.respond(resetConnection);
    try {
      const results = await load("refusing.example.com", 300);
      expect(share(results, (r) => r.status === 200)).toBeGreaterThanOrEqual(0.999);
    } finally {
      o.r3!.respond(echoAs("r3"));
    }
  }, 60_000);

  it("does not retry a POST after a failed connection, unless the route opts in (isthmus.dev/retry-non-idempotent)", async () => {
    await o.r2!.refuse();
    try {
      // Round robin over three endpoints: one POST in three meets the refusing one.
      const plain = await load("refusing.example.com", 30, { method: "POST", body: "order", concurrency: 1 });
      expect(plain.filter((r) => r.status === 503)).toHaveLength(10);
      expect(plain.find((r) => r.status === 503)?.body).toBe("upstream connect error or disconnect/reset before headers. reset reason: connection failure");
      const [before1, before3] = [o.r1!.received.length, o.r3!.received.length];
      const optedIn = await load("post.example.com", 30, { method: "POST", body: "order", concurrency: 1 });
      expect(optedIn.every((r) => r.status === 200)).toBe(true);
      const bodies = [...o.r1!.received.slice(before1), ...o.r3!.received.slice(before3)].map((r) => r.body);
      expect(bodies).toHaveLength(30);
      expect(bodies.every((b) => b === "order")).toBe(true);
    } finally {
      await o.r2!.accept();
    }
  }, 60_000);
});

describe("outlier detection", () => {
  it("with one of three answering 500, keeps ≥ 99% succeeding once the endpoint is ejected (retries on 5xx)", async () => {
    o.e2!.respond(failWith("e2", 500));
    const results = await load("ejecting.example.com", 600);
    expect(share(results, (r) => r.status === 200)).toBeGreaterThanOrEqual(0.99);
    // Three consecutive 500s eject it; it then gets nothing for the 60 s ejection.
    const hits = o.e2!.received.length;
    expect(hits).toBeGreaterThanOrEqual(3);
    expect(hits).toBeLessThanOrEqual(10);
    const more = await load("ejecting.example.com", 100);
    expect(more.every((r) => r.status === 200)).toBe(true);
    expect(o.e2!.received.length).toBe(hits);
    const state = (await (await gw.admin("/upstreams")).json()) as { clusters: Record<string, { endpoints: { endpoint: string; healthy: boolean }[] }> };
    const endpoints = state.clusters["outbound|80||ejecting.edge.internal"]!.endpoints;
    expect(endpoints.find((e) => e.endpoint === `127.0.0.1:${o.e2!.port}`)?.healthy).toBe(false);
  }, 120_000);

  it("without outlier detection and 5xx retries, passes the 500s to clients, as Istio does", async () => {
    o.p3!.respond(failWith("p3", 500));
    const results = await load("plain.example.com", 300);
    const failed = share(results, (r) => r.status === 500);
    expect(failed).toBeGreaterThan(0.15);
    expect(failed).toBeLessThan(0.5);
    expect(results.find((r) => r.status === 500)?.body).toBe("p3 failed with 500");
  }, 60_000);

  it("with Envoy's defaults (maxEjectionPercent 10%) never ejects one of three endpoints", async () => {
    o.d3!.respond(failWith("d3", 500));
    const results = await load("defaults.example.com", 150);
    const failed = share(results, (r) => r.status === 500);
    expect(failed).toBeGreaterThan(0.15);
    expect(results.slice(-50).some((r) => r.status === 500)).toBe(true);
    const state = (await (await gw.admin("/upstreams")).json()) as { clusters: Record<string, { endpoints: { endpoint: string; healthy: boolean }[] }> };
    expect(state.clusters["outbound|80||defaults.edge.internal"]!.endpoints.every((e) => e.healthy)).toBe(true);
  }, 60_000);

  it("ejects for baseEjectionTime, then twice as long after a second ejection, and takes a recovered endpoint back", async () => {
    o.t3!.respond(failWith("t3", 500));
    const seen = o.t3!.received;
    const stop = Date.now() + 11_000;
    const sender = (async () => {
      while (Date.now() < stop) await load("timed.example.com", 8, { concurrency: 4 });
    })();
    // Gaps in t3's traffic longer than 1 s are its ejections.
    const gaps = (): number[] => {
      const at = seen.map((r) => r.at);
      const out: number[] = [];
      for (let i = 1; i < at.length; i++) if (at[i]! - at[i - 1]! > 1_000) out.push(at[i]! - at[i - 1]!);
      return out;
    };
    while (Date.now() < stop && gaps().length < 2) await new Promise((r) => setTimeout(r, 100));
    const [first, second] = gaps();
    // base 2 s, un-ejected on the next 250 ms sweep; the traffic's own spacing adds ~0.3 s on an idle
    // machine, more on a loaded CI one. The upper bounds stay short of the next ejection's length (4 s, 6 s),
    // so a doubling that did not happen (or happened twice) still fails.
    expect(first).toBeGreaterThanOrEqual(1_900);
    expect(first).toBeLessThan(3_400);
    expect(second).toBeGreaterThanOrEqual(3_900);
    expect(second).toBeLessThan(5_400);
    // Healed while ejected: when the third ejection (6 s) ends it serves again, and stays in.
    o.t3!.respond(echoAs("t3"));
    await sender;
    const healedAt = Date.now();
    let back: Outcome[] = [];
    while (Date.now() - healedAt < 12_000 && !back.some((r) => r.origin === "t3")) back = await load("timed.example.com", 8, { concurrency: 4 });
    expect(back.some((r) => r.origin === "t3")).toBe(true);
    const after = await load("timed.example.com", 60, { concurrency: 4 });
    expect(after.every((r) => r.status === 200)).toBe(true);
    expect(share(after, (r) => r.origin === "t3")).toBeGreaterThan(0.15);
  }, 60_000);
});

describe("circuit breaking", () => {
  it("answers 503 UO with Envoy's overflow body beyond http2MaxRequests", async () => {
    o.slow!.respond((_req, res) => setTimeout(() => res.end("slow"), 600));
    const results = await load("slow.example.com", 6, { concurrency: 6 });
    const overflow = results.filter((r) => r.status === 503);
    expect(results.filter((r) => r.status === 200)).toHaveLength(2);
    expect(overflow).toHaveLength(4);
    expect(overflow[0]?.body).toBe("upstream connect error or disconnect/reset before headers. reset reason: overflow");
    expect(o.slow!.received).toHaveLength(2);
  }, 30_000);
});

describe("timeouts", () => {
  beforeAll(() => {
    o.hang1!.respond(hang);
    o.hang2!.respond(hang);
  });

  it("answers 504 upstream request timeout when the route timeout passes (300 ms)", async () => {
    const results: Outcome[] = [];
    for (let i = 0; i < 4; i++) results.push(...(await load("route-timeout.example.com", 1, { concurrency: 1 })));
    const timedOut = results.filter((r) => r.status === 504);
    expect(timedOut.length).toBe(2);
    for (const r of timedOut) {
      expect(r.body).toBe("upstream request timeout");
      expect(r.ms).toBeGreaterThanOrEqual(290);
      expect(r.ms).toBeLessThan(1_300);
    }
  }, 30_000);

  it("retries an attempt that passes perTryTimeout on another endpoint", async () => {
    const results = await load("per-try.example.com", 6, { concurrency: 1 });
    expect(results.every((r) => r.status === 200 && r.origin === "ok1")).toBe(true);
    const slow = results.filter((r) => r.ms >= 190);
    expect(slow.length).toBe(3);
  }, 30_000);

  it("bounds all attempts with the route timeout: 504 after 500 ms although retries remain", async () => {
    const [r] = await load("hanging.example.com", 1, { concurrency: 1 });
    expect(r?.status).toBe(504);
    expect(r?.body).toBe("upstream request timeout");
    expect(r?.ms).toBeGreaterThanOrEqual(490);
    expect(r?.ms).toBeLessThan(1_500);
    const attempts = [...o.hang1!.received, ...o.hang2!.received].map((x) => Number(x.headers["x-envoy-attempt-count"]));
    expect(Math.max(...attempts)).toBeGreaterThanOrEqual(3);
  }, 30_000);
});

/** Whether the trickle origin got to finish each response it started. */
const finished: boolean[] = [];

/** Headers at once, then four 1 KiB parts `gap` ms apart (the path says how long), with or without a Content-Length. */
const trickle: OriginHandler = (req, res) => {
  const url = new URL(req.url, "http://origin");
  const gap = Number(url.searchParams.get("gap"));
  res.writeHead(200, url.searchParams.has("length") ? { "content-length": "4096", "x-origin": "trickle" } : { "x-origin": "trickle" });
  let sent = 0;
  const next = () => {
    res.write("x".repeat(1024));
    if (++sent === 4) res.end();
    else timer = setTimeout(next, gap);
  };
  let timer = setTimeout(next, 0);
  res.on("close", () => {
    clearTimeout(timer);
    finished.push(res.writableFinished);
  });
};

/** GETs `path` and reads the body to its end or until the gateway cuts it off. */
const download = (host: string, path: string) =>
  new Promise<{ status: number; bytes: number; complete: boolean; ms: number }>((resolve, reject) => {
    const started = Date.now();
    const url = new URL(gw.url);
    const req = httpRequest({ host: url.hostname, port: url.port, path, headers: { host } }, (res) => {
      let bytes = 0;
      res.on("data", (c: Buffer) => (bytes += c.length));
      res.on("error", () => {});
      res.on("close", () => resolve({ status: res.statusCode ?? 0, bytes, complete: res.complete, ms: Date.now() - started }));
    });
    req.on("error", reject);
    req.end();
  });

describe("a circuit breaker's request slot is held until the response body ends, as Envoy's is", () => {
  beforeAll(() => {
    o.trickle!.respond(trickle);
  });

  it("refuses a second request while the first one's body is still streaming (http2MaxRequests: 1)", async () => {
    const first = download("held.example.com", "/?gap=300");
    await new Promise((r) => setTimeout(r, 150));
    // The first response's headers arrived long ago; its body has ~750 ms to go.
    const second = await send(gw.url, "/", { host: "held.example.com" });
    expect([second.status, second.body]).toEqual([503, "upstream connect error or disconnect/reset before headers. reset reason: overflow"]);
    expect((await first).complete).toBe(true);
    // Once it has ended, the slot is free again (the gateway learns it just after the client has the last byte).
    await new Promise((r) => setTimeout(r, 100));
    const third = await download("held.example.com", "/?gap=0");
    expect([third.status, third.complete]).toEqual([200, true]);
  }, 30_000);
});

describe("the route timeout covers the response body, as Envoy's does (§1.8)", () => {
  beforeAll(() => {
    o.trickle!.respond(trickle);
  });

  it("sends a body that ends within the timeout whole (4 parts over 150 ms, timeout 600 ms)", async () => {
    for (const path of ["/?gap=50", "/?gap=50&length"]) {
      const res = await download("body-timeout.example.com", path);
      expect({ path, ...res, ms: undefined }).toEqual({ path, status: 200, bytes: 4096, complete: true, ms: undefined });
    }
  }, 30_000);

  it("cuts off a body still arriving when the route timeout passes, and resets the upstream request (4 parts over 1.2 s)", async () => {
    for (const path of ["/?gap=400", "/?gap=400&length"]) {
      finished.length = 0;
      const res = await download("body-timeout.example.com", path);
      expect({ path, status: res.status, complete: res.complete }).toEqual({ path, status: 200, complete: false });
      expect(res.bytes).toBeLessThan(4096);
      expect(res.ms).toBeGreaterThanOrEqual(550);
      expect(res.ms).toBeLessThan(1_150);
      await expect.poll(() => finished, { timeout: 3_000 }).toEqual([false]);
    }
  }, 30_000);
});

describe("timeouts start at the end of the request, as Envoy's do (§1.8)", () => {
  /** A chunked POST whose parts arrive `gapMs` apart: the body is streamed to the origin, not buffered first. */
  const upload = async (host: string, parts: string[], gapMs: number) => {
    const started = Date.now();
    const res = await send(gw.url, "/upload", { host, method: "POST", slowBody: { parts, gapMs } });
    return { ...res, ms: Date.now() - started };
  };

  it("does not count a streamed body's upload against the route timeout (800 ms upload, timeout 300 ms)", async () => {
    const res = await upload("upload-timeout.example.com", ["a".repeat(1_000), "b".repeat(1_000), "c".repeat(1_000), "d".repeat(1_000)], 200);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).body).toHaveLength(4_000);
    expect(res.ms).toBeGreaterThanOrEqual(750);
  }, 30_000);

  it("starts a streamed body's per-try timeout when the body has arrived too (120 KiB over 1.25 s, perTryTimeout 300 ms)", async () => {
    // Above maxRetryBodyBytes (64 KiB): the first 64 KiB are read, then the rest is streamed in one attempt.
    const parts = Array.from({ length: 6 }, (_, i) => String(i).repeat(20_480));
    const res = await upload("upload-per-try.example.com", parts, 250);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).body).toHaveLength(122_880);
  }, 30_000);

  it("still times out an origin that hangs once it has the streamed body: 504 a route timeout after the upload", async () => {
    const res = await upload("upload-hang.example.com", ["a".repeat(1_000), "b".repeat(1_000), "c".repeat(1_000)], 200);
    expect([res.status, res.body]).toEqual([504, "upstream request timeout"]);
    expect(res.ms).toBeGreaterThanOrEqual(850);
    expect(res.ms).toBeLessThan(3_000);
  }, 30_000);
});

describe("consistent hashing", () => {
  it("keeps each x-user on one endpoint and spreads users over the endpoints", async () => {
    const byUser = new Map<string, Set<string>>();
    const results = await load("hashed.example.com", 240, { headers: (i) => ({ "x-user": `user-${i % 30}` }) });
    expect(results.every((r) => r.status === 200)).toBe(true);
    // Each origin records which users it served.
    for (const name of ["h1", "h2", "h3"]) {
      for (const req of o[name]!.received) {
        if (req.headers["x-user"] === undefined) continue;
        const user = String(req.headers["x-user"]);
        if (!byUser.has(user)) byUser.set(user, new Set());
        byUser.get(user)!.add(name);
      }
    }
    expect(byUser.size).toBe(30);
    for (const origins of byUser.values()) expect(origins.size).toBe(1);
    const used = new Set([...byUser.values()].map((s) => [...s][0]));
    expect(used.size).toBeGreaterThanOrEqual(2);
  }, 60_000);

  it("sets the affinity cookie when ttl is set and the client has none, and sticks to it", async () => {
    const first = await send(gw.url, "/", { host: "cookie.example.com" });
    const cookie = first.headers["set-cookie"] ?? "";
    expect(cookie).toMatch(/^affinity="[0-9a-f]{16}"; Max-Age=3600; Path=\/; HttpOnly$/);
    const value = cookie.split(";")[0]!;
    const origins = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const res = await send(gw.url, "/", { host: "cookie.example.com", headers: { cookie: value } });
      expect(res.headers["set-cookie"]).toBeUndefined();
      origins.add(res.headers["x-origin"] ?? "");
    }
    expect(origins).toEqual(new Set([first.headers["x-origin"]]));
  }, 30_000);
});
