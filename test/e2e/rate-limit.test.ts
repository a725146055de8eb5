/**
 * Rate limiting end to end: the real gateway (`isthmus dev`, so wrangler
 * dev running the Worker and its RateLimiter Durable Objects) in front of a
 * real Node origin. Each case has its own namespace, host and policy; a
 * refused request must never reach the origin.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type Gateway } from "../helpers/gateway.ts";
import { startIdp, type Idp } from "../helpers/idp.ts";
import { send, sendRaw, type Reply } from "../helpers/http.ts";
import { startOrigin, type Origin } from "../helpers/origin.ts";
import { requestAuthentication, routedService } from "../helpers/istio-yaml.ts";

let gw: Gateway;
let app: Origin;
let idp: Idp;
/** An origin that records each request's x-api-key lines as sent (Node's req.headers would join them). */
let keys: Server;
let keysPort = 0;
const keyLines: string[][] = [];

/** One namespace per case: `<ns>.rl.test` → `svc.<ns>.internal`, with the policy spec given (YAML, indented under spec). */
const CASES: Record<string, string> = {
  sequence: `
  rules:
  - name: per-user
    key: ["request.headers[x-user]"]
    limits: [{requests: 3, unit: day}]
    decisionTimeout: 10s`,
  burst: `
  rules:
  - name: burst
    limits: [{requests: 50, unit: day}]
    failureMode: CLOSED
    decisionTimeout: 30s`,
  refill: `
  rules:
  - name: refill
    limits: [{requests: 4, unit: second, burst: 1}]
    decisionTimeout: 10s`,
  shadow: `
  rules:
  - name: shadow
    mode: SHADOW
    limits: [{requests: 1, unit: day}]
    decisionTimeout: 10s`,
  local: `
  rules:
  - name: local
    scope: LOCAL
    key: [remote.ip]
    limits: [{requests: 2, unit: minute}]`,
  allowed: `
  responseHeaders: {format: DRAFT_VERSION_03, onAllowed: true}
  rules:
  - name: quota
    limits: [{requests: 5, unit: minute}, {requests: 100, unit: hour}]
    decisionTimeout: 10s`,
  tenants: `
  rules:
  - name: by-subject
    key: ["request.auth.claims[sub]"]
    limits: [{requests: 2, unit: hour}]
    overrides: [{values: ["vip-*"], limits: [{requests: 4, unit: hour}]}]
    decisionTimeout: 10s`,
  apikey: `
  rules:
  - name: per-key
    key: ["request.headers[x-api-key]"]
    limits: [{requests: 2, unit: day}]
    decisionTimeout: 10s`,
};

function config(): string {
  const docs = [
    requestAuthentication(idp),
  ];
  for (const [ns, spec] of Object.entries(CASES)) {
    docs.push(`apiVersion: isthmus.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: limits, namespace: ${ns}}
spec:${spec}`);
    docs.push(routedService({ hosts: `${ns}.rl.test`, name: "svc", namespace: ns, virtualServiceName: "vs", endpoints: [ns === "apikey" ? keysPort : app.port] }));
  }
  return docs.join("\n---\n");
}

beforeAll(async () => {
  [app, idp] = await Promise.all([startOrigin("app"), startIdp()]);
  keys = createServer((req, res) => {
    const lines: string[] = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]?.toLowerCase() === "x-api-key") lines.push(req.rawHeaders[i + 1] ?? "");
    keyLines.push(lines);
    res.end("ok");
  });
  await new Promise<void>((resolve) => keys.listen(0, "127.0.0.1", resolve));
  keysPort = (keys.address() as AddressInfo).port;
  gw = await startGateway(config());
}, 180_000);

afterAll(async () => {
  await gw?.stop();
  await Promise.all([app, idp].map((s) => s?.close()));
  await new Promise<void>((resolve) => (keys ? keys.close(() => resolve()) : resolve()));
});

const reached = (ns: string) => app.received.filter((r) => r.headers["x-forwarded-host"] === `${ns}.rl.test`).length;

async function get(ns: string, headers: Record<string, string> = {}): Promise<Reply> {
  return send(gw.url, "/", { host: `${ns}.rl.test`, headers });
}

describe("rate limiting through the gateway", () => {
  it("admits exactly the limit in sequence, per key, then answers 429 local_rate_limited with Retry-After and RateLimit fields", async () => {
    const alice: Reply[] = [];
    for (let i = 0; i < 5; i++) alice.push(await get("sequence", { "x-user": "alice" }));
    expect(alice.map((r) => r.status)).toEqual([200, 200, 200, 429, 429]);
    const limited = alice[3] as Reply;
    expect(limited.body).toBe("local_rate_limited");
    expect(limited.headers["x-envoy-ratelimited"]).toBe("true");
    expect(limited.headers["ratelimit-policy"]).toBe('"per-user";q=3;w=86400');
    expect(limited.headers.ratelimit).toMatch(/^"per-user";r=0;t=\d+$/);
    expect(Number(limited.headers["retry-after"])).toBeGreaterThan(28_000);
    expect(alice[0]?.headers.ratelimit).toBeUndefined();
    // Keys are counted apart; a request without the key is not counted at all (missingKey: SKIP).
    const bob: number[] = [];
    for (let i = 0; i < 4; i++) bob.push((await get("sequence", { "x-user": "bob" })).status);
    expect(bob).toEqual([200, 200, 200, 429]);
    for (let i = 0; i < 4; i++) expect((await get("sequence")).status).toBe(200);
    expect(reached("sequence")).toBe(3 + 3 + 4);
  });

  it("admits exactly 50 of 200 concurrent requests against a limit of 50", async () => {
    const replies = await Promise.all(Array.from({ length: 200 }, () => get("burst")));
    const statuses = replies.map((r) => r.status);
    expect(statuses.filter((s) => s === 200).length).toBe(50);
    expect(statuses.filter((s) => s === 429).length).toBe(150);
    expect(reached("burst")).toBe(50);
  });

  it("refills at the configured rate (4/s, burst 1: a token every 250 ms; tolerance +750 ms for wrangler dev)", async () => {
    // t0 before the request that takes the token, so the reply's own
    // latency cannot shorten the measured wait below 250 ms.
    const t0 = Date.now();
    expect((await get("refill")).status).toBe(200);
    const refused = await get("refill");
    expect([refused.status, refused.headers["retry-after"]]).toEqual([429, "1"]);
    let elapsed = -1;
    while (Date.now() - t0 < 3_000) {
      await new Promise((r) => setTimeout(r, 20));
      if ((await get("refill")).status === 200) {
        elapsed = Date.now() - t0;
        break;
      }
    }
    expect(elapsed).toBeGreaterThanOrEqual(230);
    expect(elapsed).toBeLessThanOrEqual(1_000);
  });

  it("never refuses in shadow mode", async () => {
    for (let i = 0; i < 5; i++) expect((await get("shadow")).status).toBe(200);
    expect(reached("shadow")).toBe(5);
  });

  it("limits LOCAL rules in the isolate (wrangler dev runs one)", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await get("local")).status);
    expect(statuses).toEqual([200, 200, 429]);
  });

  it("adds Envoy's x-ratelimit-* fields to admitted responses when asked", async () => {
    const first = await get("allowed");
    expect(first.status).toBe(200);
    expect([first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"], first.headers["x-ratelimit-reset"]]).toEqual(["5, 5;w=60, 100;w=3600", "4", "12"]);
  });

  it("counts verified JWT subjects apart, with per-key overrides", async () => {
    const token = (sub: string) => idp.sign({}, { subject: sub }).then((t) => ({ authorization: `Bearer ${t}` }));
    const run = async (sub: string, n: number) => {
      const headers = await token(sub);
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push((await get("tenants", headers)).status);
      return out;
    };
    expect(await run("carol", 3)).toEqual([200, 200, 429]);
    expect(await run("dave", 3)).toEqual([200, 200, 429]);
    expect(await run("vip-erin", 5)).toEqual([200, 200, 200, 200, 429]);
    // Without a token the key is missing: not counted.
    for (let i = 0; i < 3; i++) expect((await get("tenants")).status).toBe(200);
  });

  it("does not let a second header line take a key past its limit: the origin receives the value counted, on one line", async () => {
    const status = async (lines: string[]) => {
      const reply = await sendRaw(gw.url, `GET / HTTP/1.1\r\nHost: apikey.rl.test\r\n${lines.map((v) => `x-api-key: ${v}\r\n`).join("")}Connection: close\r\n\r\n`);
      return Number(reply.split(" ")[1]);
    };
    const alone: number[] = [];
    for (let i = 0; i < 3; i++) alone.push(await status(["K1"]));
    expect(alone).toEqual([200, 200, 429]);
    // workerd counts "K1, r<i>" (its Headers join the lines); the origin must not see K1 on a line of its own.
    for (let i = 0; i < 3; i++) await status(["K1", `r${i}`]);
    expect(keyLines.filter((lines) => lines.length !== 1)).toEqual([]);
    expect(keyLines.filter((lines) => lines[0] === "K1").length).toBe(2);
    expect(keyLines.slice(2)).toEqual([["K1, r0"], ["K1, r1"], ["K1, r2"]]);
  });
});
